//! The payment portal's pages: the HTML a customer's browser gets for a payment link, and the
//! one mapping from the portal's outcomes ([`PortalOutcome`]) to HTTP answers. Plain,
//! accessible HTML with inline CSS and no script or external asset, so it works in any browser
//! and leaks nothing to third parties. Every text is escaped.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use billing::invoice::{PricedInvoice, PricedLine};
use billing::money::Currency;
use billing::period::Period;
use billing::portal::{PortalState, pay_page_path};
use billing::use_cases::{PortalOutcome, PortalRefusal};
use chrono::NaiveDate;
use rust_decimal::Decimal;

/// The answer to a payment link's request: the invoice page, a redirect to the provider's
/// checkout, or a page saying why not. `notice` is a line shown on top of the invoice (after
/// returning from checkout). Failures on our side are logged here, and the customer sees a
/// generic page: never an error's text.
pub fn respond(outcome: PortalOutcome, token: &str, notice: Option<&str>) -> Response {
    match outcome {
        PortalOutcome::Page(page) => {
            let pay_action = pay_page_path(token);
            html(
                StatusCode::OK,
                render_invoice_page(&PortalView {
                    customer_name: &page.customer_name,
                    invoice: &page.invoice,
                    state: page.state,
                    notice,
                    pay_action: &pay_action,
                }),
            )
        }
        PortalOutcome::Redirect(url) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
        PortalOutcome::Refused(refusal) => refused(refusal),
    }
}

/// A link whose token is not even text (bad percent-encoding): the same page as a forged one.
pub fn invalid_link() -> Response {
    refused(PortalRefusal::InvalidLink)
}

fn refused(refusal: PortalRefusal) -> Response {
    let (status, title, text) = match refusal {
        PortalRefusal::NotConfigured => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Payments unavailable",
            "Online payment is not configured for this service.",
        ),
        PortalRefusal::InvalidLink => (
            StatusCode::NOT_FOUND,
            "Invalid payment link",
            "This payment link is not valid. Please use the link from your invoice email.",
        ),
        PortalRefusal::UnknownInvoice => (
            StatusCode::NOT_FOUND,
            "Invoice not found",
            "This invoice does not exist.",
        ),
        PortalRefusal::ProviderUnavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Payments unavailable",
            "Our payment provider cannot be reached right now. Please try again in a few minutes.",
        ),
        PortalRefusal::Failed(e) => {
            tracing::error!(code = %e.code, error = %e.message, "the payment page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "This page could not be shown. Please try again later.",
            )
        }
    };
    html(status, render_message_page(title, text))
}

/// An HTML answer that is never cached, and whose URL (it holds the token) is never sent on.
fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

/// Everything the invoice page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalView<'a> {
    /// The billed customer's display name.
    pub customer_name: &'a str,
    /// The invoice with its money computed (the page never computes amounts itself).
    pub invoice: &'a PricedInvoice,
    /// What the customer can do.
    pub state: PortalState,
    /// A one-line message at the top, e.g. "Payment received, thank you." after checkout.
    pub notice: Option<&'a str>,
    /// Where the Pay form posts (our URL, not the provider's).
    pub pay_action: &'a str,
}

/// The invoice page: plain, accessible HTML with inline CSS and no script or external asset,
/// so it works in any browser and leaks nothing to third parties. Every text is escaped.
pub fn render_invoice_page(view: &PortalView<'_>) -> String {
    let invoice = &view.invoice.invoice;
    let currency = invoice.currency;
    let label = invoice
        .invoice_number
        .as_deref()
        .unwrap_or(invoice.id.as_str());
    let total = format_amount(view.invoice.total, currency);

    let mut body = String::new();
    body.push_str(&format!("<h1>Invoice {}</h1>\n", escape_html(label)));
    if let Some(notice) = view.notice {
        body.push_str(&format!(
            "<p class=\"notice\" id=\"notice\" role=\"status\">{}</p>\n",
            escape_html(notice)
        ));
    }
    body.push_str(&format!(
        "<p id=\"status\">{}</p>\n",
        escape_html(state_label(&view.state))
    ));
    body.push_str(&format!(
        "<dl>\n<dt>Billed to</dt><dd id=\"customer\">{}</dd>\n\
         <dt>Invoice date</dt><dd id=\"invoice-date\">{}</dd>\n\
         <dt>Due date</dt><dd id=\"due-date\">{}</dd>\n\
         <dt>Amount due</dt><dd id=\"amount-due\">{}</dd>\n</dl>\n",
        escape_html(view.customer_name),
        date_element(invoice.invoice_date),
        date_element(invoice.due_date),
        escape_html(&total),
    ));

    body.push_str(
        "<div class=\"table-wrap\">\n<table>\n<caption>Charges</caption>\n<thead><tr>\
         <th scope=\"col\">Description</th>\
         <th scope=\"col\">Service period</th>\
         <th scope=\"col\" class=\"num\">Quantity</th>\
         <th scope=\"col\" class=\"num\">Unit price</th>\
         <th scope=\"col\" class=\"num\">Amount</th>\
         </tr></thead>\n<tbody>\n",
    );
    if view.invoice.lines.is_empty() {
        body.push_str("<tr><td colspan=\"5\">No charges</td></tr>\n");
    }
    for line in &view.invoice.lines {
        body.push_str(&line_row(line, currency));
    }
    body.push_str(&format!(
        "</tbody>\n<tfoot><tr><th scope=\"row\" colspan=\"4\">Total</th>\
         <td class=\"num\" id=\"total\">{}</td></tr></tfoot>\n</table>\n</div>\n",
        escape_html(&total)
    ));

    match &view.state {
        PortalState::Payable => body.push_str(&format!(
            "<form method=\"post\" action=\"{}\">\n\
             <p><input type=\"checkbox\" name=\"savePaymentMethod\" value=\"true\" id=\"save\"> \
             <label for=\"save\">Save payment method for future invoices</label></p>\n\
             <button type=\"submit\" id=\"pay\">Pay {}</button>\n\
             <p class=\"hint\">You will be taken to Stripe, our payment provider, to pay \
             securely.</p>\n</form>\n",
            escape_html(view.pay_action),
            escape_html(&total),
        )),
        other => {
            if let Some(text) = state_explanation(other) {
                body.push_str(&format!(
                    "<p id=\"explanation\">{}</p>\n",
                    escape_html(text)
                ));
            }
        }
    }

    page(
        &format!("Invoice {label} \u{2014} {}", view.customer_name),
        &body,
    )
}

/// A page with just a heading and a message, for links that cannot show an invoice (invalid,
/// unknown invoice, provider unavailable), styled like the invoice page.
pub fn render_message_page(title: &str, message: &str) -> String {
    page(
        title,
        &format!(
            "<h1>{}</h1>\n<p id=\"message\">{}</p>\n",
            escape_html(title),
            escape_html(message)
        ),
    )
}

/// An amount as the customer reads it: the currency code, then the value with exactly the
/// currency's minor units (`USD 50.00`, `JPY 500`, `KWD 1.250`), rounded to them. No grouping
/// separators, so no reader mistakes one for a decimal point.
pub fn format_amount(amount: Decimal, currency: Currency) -> String {
    let mut value = currency.round(amount);
    value.rescale(currency.minor_units());
    format!("{} {}", currency.code(), without_negative_zero(value))
}

/// A unit price: like [`format_amount`] but never rounded, since sub-cent prices (`USD
/// 0.0001`) are real; trailing zeros beyond the minor units are dropped.
pub fn format_unit_price(amount: Decimal, currency: Currency) -> String {
    let mut value = amount.normalize();
    if value.scale() < currency.minor_units() {
        value.rescale(currency.minor_units());
    }
    format!("{} {}", currency.code(), without_negative_zero(value))
}

/// A quantity as a plain decimal without trailing zeros (`2.50` → `2.5`, `1000` stays).
fn format_quantity(quantity: Decimal) -> String {
    without_negative_zero(quantity.normalize()).to_string()
}

/// `-0` (from rounding a tiny credit) shown as `0`.
fn without_negative_zero(value: Decimal) -> Decimal {
    if value.is_zero() { value.abs() } else { value }
}

/// One table row for a priced line.
fn line_row(line: &PricedLine, currency: Currency) -> String {
    let mut description = escape_html(&line.line.description);
    if let Some(dimensions) = line.line.dimensions.as_ref().filter(|d| !d.is_empty()) {
        let shown: Vec<String> = dimensions
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        description.push_str(&format!(
            "<br><span class=\"detail\">{}</span>",
            escape_html(&shown.join(", "))
        ));
    }
    let unit_price = line.unit_amount.map_or_else(
        || "Varies".to_owned(),
        |unit| format_unit_price(unit, currency),
    );
    format!(
        "<tr><td>{description}</td><td>{}</td><td class=\"num\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td></tr>\n",
        period_text(line.line.service_period),
        escape_html(&format_quantity(line.line.quantity)),
        escape_html(&unit_price),
        escape_html(&format_amount(line.amount, currency)),
    )
}

/// A date for people, machine-readable too: `<time datetime="2026-02-15">15 February 2026</time>`.
fn date_element(date: NaiveDate) -> String {
    format!(
        "<time datetime=\"{}\">{}</time>",
        date.format("%Y-%m-%d"),
        date.format("%-d %B %Y")
    )
}

/// A half-open period shown with its last day included, as customers count days.
fn period_text(period: Period) -> String {
    let last = period
        .end
        .pred_opt()
        .filter(|last| *last >= period.start)
        .unwrap_or(period.start);
    let short = |d: NaiveDate| d.format("%-d %b %Y").to_string();
    if last == period.start {
        short(period.start)
    } else {
        format!("{} to {}", short(period.start), short(last))
    }
}

/// The document around a page body: no script, no external asset, not indexed, and no
/// `Referer` (the URL holds the token) sent to anything it links or redirects to.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex, nofollow\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}</main>\n\
         </body>\n</html>\n",
        escape_html(title)
    )
}

/// The whole style sheet, inline: readable type, AA contrast, visible focus, narrow screens.
const STYLE: &str = "\
:root{color-scheme:light}\
body{margin:0;background:#f4f5f7;color:#1a1a1a;font:16px/1.5 system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif}\
main{max-width:48rem;margin:2rem auto;padding:2rem;background:#fff;border:1px solid #d0d5dd;border-radius:8px}\
h1{font-size:1.5rem;margin:0 0 1rem}\
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0 1.5rem}\
dt{font-weight:600}\
dd{margin:0}\
.table-wrap{overflow-x:auto}\
table{width:100%;border-collapse:collapse;margin:0 0 1.5rem}\
caption{text-align:left;font-weight:600;padding:0 0 .5rem}\
th,td{padding:.5rem;border-bottom:1px solid #d0d5dd;text-align:left;vertical-align:top}\
.num{text-align:right;white-space:nowrap}\
tfoot th{text-align:right}\
tfoot th,tfoot td{font-weight:700;border-bottom:0}\
.detail,.hint{color:#4a5565;font-size:.875rem}\
#status{display:inline-block;margin:0;padding:.25rem .75rem;border-radius:999px;background:#e8ebef;font-weight:600}\
.notice{padding:.75rem 1rem;border-left:4px solid #1d4ed8;background:#eef3ff}\
button{font:inherit;font-weight:600;padding:.75rem 1.5rem;border:0;border-radius:6px;background:#1d4ed8;color:#fff;cursor:pointer}\
button:hover{background:#1e3a8a}\
button:focus-visible,input:focus-visible{outline:3px solid #b45309;outline-offset:2px}\
@media (max-width:40rem){main{margin:0;border:0;border-radius:0;padding:1rem}}";

/// Escapes text for HTML element content and double- or single-quoted attributes.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// The status in words, as shown in the `status` element.
fn state_label(state: &PortalState) -> &'static str {
    match state {
        PortalState::Payable => "Awaiting payment",
        PortalState::Paid => "Paid",
        PortalState::Expired => "Link expired",
        PortalState::Void => "Void",
        PortalState::Refunded => "Refunded",
        PortalState::NotYetSent => "Not yet issued",
    }
}

/// What the state means for the customer, where it is not the Pay form.
fn state_explanation(state: &PortalState) -> Option<&'static str> {
    match state {
        PortalState::Payable => None,
        PortalState::Paid => Some("This invoice has been paid. Thank you!"),
        PortalState::Expired => Some(
            "This payment link has expired. Please contact the sender of this invoice \
                 for a new link.",
        ),
        PortalState::Void => Some("This invoice was cancelled. Nothing is due."),
        PortalState::Refunded => Some("This invoice was paid and then refunded in full."),
        PortalState::NotYetSent => Some(
            "This invoice is not final yet and its amounts may still change. It can be \
                 paid once it has been issued.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use billing::aggregation::Aggregation;
    use billing::ids::{ContractId, CustomerId, InvoiceId, LineId, MeterId, PriceId};
    use billing::invoice::{Invoice, InvoiceLine, InvoiceStatus, LineKind};
    use billing::money::Amount;
    use billing::plan::RateCard;
    use chrono::{DateTime, Utc};

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn invoice_id() -> InvoiceId {
        InvoiceId::derive("ctr_test:2026-02-01")
    }

    /// A sent invoice with a flat fee and a sub-cent metered line, priced by the real rules:
    /// 49.99 + round(123456.7 × 0.0001 = 12.34567) = 49.99 + 12.35 = 62.34 USD.
    fn priced(description: &str) -> PricedInvoice {
        let period = Period {
            start: date(2026, 2, 1),
            end: date(2026, 3, 1),
        };
        let id = invoice_id();
        let line = |price: &str, description: &str, kind: LineKind, quantity: &str| InvoiceLine {
            id: LineId::derive(&format!("{id}:{price}")),
            price_id: PriceId::derive(price),
            description: description.to_owned(),
            kind,
            quantity: dec(quantity),
            dimensions: None,
            service_period: period,
        };
        let mut usage = line(
            "price_api",
            "API calls",
            LineKind::Usage {
                meter_id: MeterId::derive("api_calls"),
                aggregation: Aggregation::Sum,
                rate: RateCard::PerUnit(Amount::parse("0.0001").unwrap()),
            },
            "123456.70",
        );
        usage.dimensions = Some(BTreeMap::from([("region".to_owned(), "eu".to_owned())]));
        let invoice = Invoice {
            id: id.clone(),
            invoice_number: Some("INV-0042".to_owned()),
            customer_id: CustomerId::derive("acme"),
            contract_id: ContractId::derive("ctr_test"),
            status: InvoiceStatus::Sent,
            period,
            invoice_date: period.end,
            due_date: date(2026, 3, 31),
            closes_on: period.end,
            currency: Currency::USD,
            auto_pay: false,
            lines: vec![
                line(
                    "price_flat",
                    description,
                    LineKind::Flat {
                        amount: Amount::parse("49.99").unwrap(),
                    },
                    "1",
                ),
                usage,
            ],
            payment: Default::default(),
            created_at: now(),
            updated_at: now(),
        };
        invoice.priced().unwrap()
    }

    fn view<'a>(invoice: &'a PricedInvoice, name: &'a str, state: PortalState) -> PortalView<'a> {
        PortalView {
            customer_name: name,
            invoice,
            state,
            notice: None,
            pay_action: "https://pay.example.com/pay/abc.def",
        }
    }

    fn payable() -> PortalState {
        PortalState::Payable
    }

    #[test]
    fn amounts_show_the_currency_code_and_its_minor_units() {
        let jpy = Currency::parse("JPY").unwrap();
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(format_amount(dec("50"), Currency::USD), "USD 50.00");
        assert_eq!(format_amount(dec("0.1"), Currency::USD), "USD 0.10");
        assert_eq!(format_amount(dec("12.345"), Currency::USD), "USD 12.35");
        assert_eq!(format_amount(dec("-0.001"), Currency::USD), "USD 0.00");
        assert_eq!(format_amount(dec("500"), jpy), "JPY 500");
        assert_eq!(format_amount(dec("1.25"), kwd), "KWD 1.250");
        assert_eq!(
            format_unit_price(dec("0.0001"), Currency::USD),
            "USD 0.0001"
        );
        assert_eq!(format_unit_price(dec("0.100"), Currency::USD), "USD 0.10");
        assert_eq!(format_unit_price(dec("0.35"), jpy), "JPY 0.35");
        assert_eq!(format_quantity(dec("2.50")), "2.5");
        assert_eq!(format_quantity(dec("1000")), "1000");
        assert_eq!(format_quantity(dec("1000.000")), "1000");
        assert_eq!(format_quantity(dec("0.000")), "0");
    }

    #[test]
    fn escaping_covers_the_five_special_characters() {
        assert_eq!(
            escape_html(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#x27;y&#x27;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_page_escapes_customer_names_and_line_descriptions() {
        let invoice = priced("Fee <script>alert('line')</script>");
        let html = render_invoice_page(&view(
            &invoice,
            "Evil <script>alert(\"name\")</script> & Co",
            payable(),
        ));
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("Fee &lt;script&gt;alert(&#x27;line&#x27;)&lt;/script&gt;"));
        assert!(
            html.contains("Evil &lt;script&gt;alert(&quot;name&quot;)&lt;/script&gt; &amp; Co")
        );
        assert!(html.contains(
            "<title>Invoice INV-0042 \u{2014} Evil &lt;script&gt;alert(&quot;name&quot;)\
             &lt;/script&gt; &amp; Co</title>"
        ));
    }

    #[test]
    fn a_payable_page_has_the_form_the_checkbox_and_the_button() {
        let invoice = priced("Platform fee");
        let html = render_invoice_page(&view(&invoice, "Acme", payable()));
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains("<title>Invoice INV-0042 \u{2014} Acme</title>"));
        assert!(html.contains("<h1>Invoice INV-0042</h1>"));
        assert!(
            html.contains("<form method=\"post\" action=\"https://pay.example.com/pay/abc.def\">")
        );
        assert!(html.contains(
            "<input type=\"checkbox\" name=\"savePaymentMethod\" value=\"true\" id=\"save\">"
        ));
        assert!(
            html.contains("<label for=\"save\">Save payment method for future invoices</label>")
        );
        assert!(html.contains("<button type=\"submit\" id=\"pay\">Pay USD 62.34</button>"));
        assert!(html.contains("<p id=\"status\">Awaiting payment</p>"));
        assert!(html.contains("<caption>Charges</caption>"));
        for header in [
            "Description",
            "Service period",
            "Quantity",
            "Unit price",
            "Amount",
        ] {
            assert!(html.contains(&format!(">{header}</th>")), "{header}");
        }
        assert_eq!(html.matches("<th scope=\"col\"").count(), 5);
        assert!(html.contains(
            "<dd id=\"due-date\"><time datetime=\"2026-03-31\">31 March 2026</time></dd>"
        ));
        // The metered line: its dimensions, normalized quantity, exact unit price, and the
        // service period with its last day included.
        assert!(html.contains("region: eu"));
        assert!(html.contains("<td class=\"num\">123456.7</td>"));
        assert!(html.contains("<td class=\"num\">USD 0.0001</td>"));
        assert!(html.contains("<td class=\"num\">USD 12.35</td>"));
        assert!(html.contains("1 Feb 2026 to 28 Feb 2026"));
        // No script and nothing loaded from elsewhere.
        for absent in ["<script", "<link", "src=", "http://", "<img"] {
            assert!(!html.contains(absent), "{absent}");
        }
    }

    #[test]
    fn the_total_shown_is_the_priced_total() {
        let invoice = priced("Platform fee");
        assert_eq!(invoice.total, dec("62.34"));
        let html = render_invoice_page(&view(&invoice, "Acme", PortalState::Paid));
        let shown = format!(
            "<td class=\"num\" id=\"total\">{}</td>",
            format_amount(invoice.total, Currency::USD)
        );
        assert!(html.contains(&shown), "{html}");
        assert!(html.contains("id=\"total\">USD 62.34<"));
    }

    #[test]
    fn a_paid_page_says_paid_and_has_no_form() {
        let invoice = priced("Platform fee");
        let mut view = view(&invoice, "Acme", PortalState::Paid);
        view.notice = Some("Payment received, thank you.");
        let html = render_invoice_page(&view);
        assert!(html.contains("<p id=\"status\">Paid</p>"));
        assert!(html.contains("role=\"status\">Payment received, thank you.</p>"));
        for absent in ["<form", "<button", "savePaymentMethod"] {
            assert!(!html.contains(absent), "{absent}");
        }
    }

    #[test]
    fn other_states_explain_themselves_without_a_button() {
        let invoice = priced("Platform fee");
        for (state, status, words) in [
            (PortalState::Expired, "Link expired", "has expired"),
            (PortalState::Void, "Void", "Nothing is due"),
            (PortalState::Refunded, "Refunded", "refunded"),
            (PortalState::NotYetSent, "Not yet issued", "not final"),
        ] {
            let html = render_invoice_page(&view(&invoice, "Acme", state));
            assert!(
                html.contains(&format!("<p id=\"status\">{status}</p>")),
                "{status}"
            );
            assert!(html.contains(words), "{status}");
            assert!(!html.contains("<form"), "{status}");
        }
    }

    #[test]
    fn an_invoice_without_a_number_is_titled_by_its_id() {
        let mut invoice = priced("Platform fee");
        invoice.invoice.invoice_number = None;
        invoice.lines.clear();
        let html = render_invoice_page(&view(&invoice, "Acme", PortalState::Paid));
        assert!(html.contains(&format!("<h1>Invoice {}</h1>", invoice_id())));
        assert!(html.contains("No charges"));
    }

    #[test]
    fn message_pages_escape_and_share_the_layout() {
        let html = render_message_page("Link <b>invalid</b>", "Ask for a new link & retry.");
        assert!(html.starts_with("<!DOCTYPE html>\n<html lang=\"en\">"));
        assert!(html.contains("<title>Link &lt;b&gt;invalid&lt;/b&gt;</title>"));
        assert!(html.contains("<h1>Link &lt;b&gt;invalid&lt;/b&gt;</h1>"));
        assert!(html.contains("<p id=\"message\">Ask for a new link &amp; retry.</p>"));
        assert!(html.contains("<style>"));
    }
}
