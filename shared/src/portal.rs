//! The customer-facing payment portal, pure part: signed payment links and the HTML pages they
//! lead to. Every sent invoice carries a `paymentLink`, `{base}/pay/{token}`; the `api`
//! function verifies the token, loads the invoice and answers with [`render_invoice_page`]
//! (or [`render_message_page`] when the link is no good). Nothing here does I/O, so links and
//! pages are tested without a server or a browser.
//!
//! # Token format
//!
//! ```text
//! token   = payload "." tag
//! payload = base64url_nopad(invoice_id "|" expires_at_unix_seconds)   e.g. "inv_…|1767225600"
//! tag     = base64url_nopad(HMAC-SHA256(key, "billing.portal.v1." || payload))
//! ```
//!
//! The tag covers the *encoded* payload, the exact characters in the URL, so a token has one
//! valid spelling and nothing is decoded before the tag is checked; the context prefix keeps a
//! tag from being valid for any other use of the same key. Tokens are unguessable because the
//! tag is: the payload is readable by anyone holding the link (it only names the invoice and
//! the expiry), but cannot be changed without the key.

use std::env::VarError;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rust_decimal::Decimal;
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::invoice::{InvoiceStatus, PricedInvoice, PricedLine};
use crate::money::Currency;
use crate::period::Period;

/// How long a payment link works: long enough for slow accounts-payable cycles, short enough
/// that an old forwarded email stops opening the invoice.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::days(90);

/// The environment variable holding the signing key, hex-encoded.
pub const SIGNING_KEY_VAR: &str = "PORTAL_SIGNING_KEY";

/// The shortest accepted key: HMAC-SHA256 is only as strong as its key, and 256 bits is its
/// full strength.
pub const MIN_KEY_BYTES: usize = 32;

/// Longest token [`PortalKey::verify`] looks at; real tokens are about 110 characters, so
/// anything longer is refused before any decoding work.
const MAX_TOKEN_CHARS: usize = 512;

/// Binds tags to this use and format version (see the module documentation).
const TAG_CONTEXT: &[u8] = b"billing.portal.v1.";

/// The secret that signs payment links. Kept as a keyed MAC ready to clone, never printed.
#[derive(Clone)]
pub struct PortalKey {
    mac: Hmac<Sha256>,
}

impl PortalKey {
    /// Accepts a raw secret of at least [`MIN_KEY_BYTES`] bytes.
    pub fn from_bytes(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(Error::internal(format!(
                "the portal signing key must be at least {MIN_KEY_BYTES} bytes \
                 ({} hex characters)",
                MIN_KEY_BYTES * 2
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| Error::internal("HMAC-SHA256 refused the portal signing key"))?;
        Ok(Self { mac })
    }

    /// Accepts the secret in hex, as configuration holds it (surrounding whitespace, such as a
    /// trailing newline from a secrets file, is ignored). The error never echoes the value.
    pub fn from_hex(raw: &str) -> Result<Self> {
        let secret = hex::decode(raw.trim()).map_err(|_| {
            Error::internal(format!(
                "the portal signing key must be hex, at least {} characters",
                MIN_KEY_BYTES * 2
            ))
        })?;
        Self::from_bytes(&secret)
    }

    /// Reads [`SIGNING_KEY_VAR`]: `Ok(None)` when it is unset or empty (payment links are then
    /// off), an error when it is set but unusable, so a bad deployment fails loudly.
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_var(std::env::var(SIGNING_KEY_VAR))
    }

    fn from_var(var: std::result::Result<String, VarError>) -> Result<Option<Self>> {
        match var {
            Ok(raw) if raw.trim().is_empty() => Ok(None),
            Ok(raw) => Self::from_hex(&raw).map(Some),
            Err(VarError::NotPresent) => Ok(None),
            Err(VarError::NotUnicode(_)) => Err(Error::internal(format!(
                "{SIGNING_KEY_VAR} is not valid Unicode"
            ))),
        }
    }

    /// A fresh random key, for local development and tests where no key is configured (links
    /// then stop working at restart, which is fine there).
    pub fn generate() -> Result<Self> {
        let mut secret = [0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::internal(format!("no randomness for a portal key: {e}")))?;
        Self::from_bytes(&secret)
    }

    /// The token for `token`'s invoice and expiry (format in the module documentation). The
    /// expiry is kept to whole seconds, rounded down.
    pub fn sign(&self, token: &PaymentToken) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            token.invoice_id,
            token.expires_at.timestamp()
        ));
        let tag = URL_SAFE_NO_PAD.encode(self.tag_for(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Checks a token from a URL: its tag first, in constant time (anything malformed or
    /// tampered with is [`PortalError::Invalid`], saying nothing about why), then its expiry,
    /// so [`PortalError::Expired`] only ever names an invoice we really linked to.
    pub fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<PaymentToken, PortalError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(PortalError::Invalid);
        }
        let (payload, tag) = token.split_once('.').ok_or(PortalError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| PortalError::Invalid)?;
        // `verify_slice` compares in constant time and refuses a tag of the wrong length.
        self.tag_for(payload)
            .verify_slice(&tag)
            .map_err(|_| PortalError::Invalid)?;
        let token = PaymentToken::decode_payload(payload).ok_or(PortalError::Invalid)?;
        if now >= token.expires_at {
            return Err(PortalError::Expired {
                invoice_id: token.invoice_id,
            });
        }
        Ok(token)
    }

    /// The MAC over the context and an encoded payload, ready to finalize or verify.
    fn tag_for(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(TAG_CONTEXT);
        mac.update(payload.as_bytes());
        mac
    }
}

impl fmt::Debug for PortalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortalKey(<redacted>)")
    }
}

/// What a payment link grants: viewing and paying one invoice until a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToken {
    /// The invoice the link opens.
    pub invoice_id: InvoiceId,
    /// The link works strictly before this moment.
    pub expires_at: DateTime<Utc>,
}

impl PaymentToken {
    /// The token for a link issued at `now` (an invoice being sent): valid for
    /// [`LINK_LIFETIME`], the expiry cut to whole seconds as the signed form carries it.
    pub fn for_invoice(invoice_id: InvoiceId, now: DateTime<Utc>) -> Self {
        let expires_at = now
            .checked_add_signed(LINK_LIFETIME)
            .and_then(|at| DateTime::from_timestamp(at.timestamp(), 0))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self {
            invoice_id,
            expires_at,
        }
    }

    /// Reads a payload whose tag has been checked; `None` when it is not ours after all.
    fn decode_payload(payload: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (id, expiry) = text.split_once('|')?;
        let invoice_id = InvoiceId::parse(id).ok()?;
        let expires_at = DateTime::from_timestamp(expiry.parse::<i64>().ok()?, 0)?;
        Some(Self {
            invoice_id,
            expires_at,
        })
    }
}

/// Why a payment link does not open an invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalError {
    /// Malformed, tampered with, or signed with another key. Deliberately one case: telling
    /// which would help someone forging links.
    #[error("this payment link is not valid")]
    Invalid,
    /// Genuine but past its expiry; the invoice is named so the page can still say which
    /// invoice it was and how to get a new link.
    #[error("the payment link for invoice {invoice_id} has expired")]
    Expired {
        /// The invoice the link was for.
        invoice_id: InvoiceId,
    },
}

/// The public address of an invoice's payment page, `{base_url}/pay/{token}`, the same
/// whether or not the base URL ends with a slash. The token is URL-safe as it is.
pub fn payment_link(base_url: &str, token: &str) -> String {
    format!("{}/pay/{token}", base_url.trim_end_matches('/'))
}

/// What the customer can do on the page, decided by the caller from the invoice and the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalState {
    /// Sent and unpaid: show the Pay form.
    Payable {
        /// Where the form posts to start a checkout (our URL, not the provider's).
        pay_action: String,
    },
    /// Paid: nothing to do.
    Paid,
    /// The link has expired: the customer needs a new one.
    Expired,
    /// Cancelled: nothing is due.
    Void,
    /// Paid, then refunded.
    Refunded,
    /// Still open (drafted, in progress): amounts may change, nothing to pay yet.
    NotYetSent,
}

impl PortalState {
    /// The state a valid link shows for an invoice in `status`, posting payments to
    /// `pay_action`; one place decides which statuses get a Pay button (only `SENT`).
    pub fn from_status(status: InvoiceStatus, pay_action: impl Into<String>) -> Self {
        match status {
            InvoiceStatus::Sent => Self::Payable {
                pay_action: pay_action.into(),
            },
            InvoiceStatus::Paid => Self::Paid,
            InvoiceStatus::Void => Self::Void,
            InvoiceStatus::Refunded => Self::Refunded,
            InvoiceStatus::Drafted | InvoiceStatus::InProgress => Self::NotYetSent,
        }
    }

    /// The status in words, as shown in the `status` element.
    fn label(&self) -> &'static str {
        match self {
            Self::Payable { .. } => "Awaiting payment",
            Self::Paid => "Paid",
            Self::Expired => "Link expired",
            Self::Void => "Void",
            Self::Refunded => "Refunded",
            Self::NotYetSent => "Not yet issued",
        }
    }

    /// What the state means for the customer, where it is not the Pay form.
    fn explanation(&self) -> Option<&'static str> {
        match self {
            Self::Payable { .. } => None,
            Self::Paid => Some("This invoice has been paid. Thank you!"),
            Self::Expired => Some(
                "This payment link has expired. Please contact the sender of this invoice \
                 for a new link.",
            ),
            Self::Void => Some("This invoice was cancelled. Nothing is due."),
            Self::Refunded => Some("This invoice was paid and then refunded in full."),
            Self::NotYetSent => Some(
                "This invoice is not final yet and its amounts may still change. It can be \
                 paid once it has been issued.",
            ),
        }
    }
}

/// Everything the invoice page shows, gathered by the caller.
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
        escape_html(view.state.label())
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
        PortalState::Payable { pay_action } => body.push_str(&format!(
            "<form method=\"post\" action=\"{}\">\n\
             <p><input type=\"checkbox\" name=\"savePaymentMethod\" value=\"true\" id=\"save\"> \
             <label for=\"save\">Save payment method for future invoices</label></p>\n\
             <button type=\"submit\" id=\"pay\">Pay {}</button>\n\
             <p class=\"hint\">You will be taken to Stripe, our payment provider, to pay \
             securely.</p>\n</form>\n",
            escape_html(pay_action),
            escape_html(&total),
        )),
        other => {
            if let Some(text) = other.explanation() {
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
fn format_unit_price(amount: Decimal, currency: Currency) -> String {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;

    use super::*;
    use crate::aggregation::Aggregation;
    use crate::ids::{ContractId, CustomerId, LineId, MeterId, PriceId};
    use crate::invoice::{Invoice, InvoiceLine, LineKind};
    use crate::money::Amount;
    use crate::plan::RateCard;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> PortalKey {
        PortalKey::from_hex(HEX_KEY).unwrap()
    }

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
        }
    }

    fn payable() -> PortalState {
        PortalState::Payable {
            pay_action: "https://pay.example.com/pay/abc.def".to_owned(),
        }
    }

    #[test]
    fn a_signed_token_verifies_back_to_itself() {
        let token = PaymentToken::for_invoice(invoice_id(), now());
        assert_eq!(token.expires_at, now() + LINK_LIFETIME);
        let signed = key().sign(&token);
        assert!(signed.len() < 160, "{signed}");
        assert!(
            signed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{signed}"
        );
        assert_eq!(key().verify(&signed, now()), Ok(token.clone()));
        let last_second = token.expires_at - TimeDelta::seconds(1);
        assert_eq!(key().verify(&signed, last_second), Ok(token));
    }

    #[test]
    fn expiry_is_kept_to_whole_seconds_rounded_down() {
        let now = now() + TimeDelta::milliseconds(999);
        let token = PaymentToken::for_invoice(invoice_id(), now);
        assert_eq!(token.expires_at, self::now() + LINK_LIFETIME);
        assert_eq!(LINK_LIFETIME, TimeDelta::days(90));
    }

    #[test]
    fn changing_any_character_invalidates_the_token() {
        let signed = key().sign(&PaymentToken::for_invoice(invoice_id(), now()));
        let dot = signed.find('.').unwrap();
        for (i, c) in signed.char_indices() {
            let replacement = if c == 'A' { 'B' } else { 'A' };
            let mut tampered = signed.clone();
            tampered.replace_range(i..=i, &replacement.to_string());
            assert_eq!(
                key().verify(&tampered, now()),
                Err(PortalError::Invalid),
                "position {i} ({}): {tampered}",
                if i < dot { "payload" } else { "tag" }
            );
        }
        // Truncated or extended tags too.
        for tampered in [signed[..signed.len() - 1].to_owned(), format!("{signed}A")] {
            assert_eq!(key().verify(&tampered, now()), Err(PortalError::Invalid));
        }
    }

    #[test]
    fn a_payload_for_another_invoice_does_not_borrow_a_valid_tag() {
        let signed = key().sign(&PaymentToken::for_invoice(invoice_id(), now()));
        let other = key().sign(&PaymentToken::for_invoice(
            InvoiceId::derive("ctr_test:2026-03-01"),
            now(),
        ));
        let (payload, _) = other.split_once('.').unwrap();
        let (_, tag) = signed.split_once('.').unwrap();
        assert_eq!(
            key().verify(&format!("{payload}.{tag}"), now()),
            Err(PortalError::Invalid)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let other = PortalKey::from_bytes(&[7u8; 32]).unwrap();
        let signed = other.sign(&PaymentToken::for_invoice(invoice_id(), now()));
        assert_eq!(key().verify(&signed, now()), Err(PortalError::Invalid));
        let generated = PortalKey::generate().unwrap();
        assert_eq!(
            generated.verify(
                &key().sign(&PaymentToken::for_invoice(invoice_id(), now())),
                now()
            ),
            Err(PortalError::Invalid)
        );
    }

    #[test]
    fn an_expired_token_names_its_invoice_only_once_its_tag_verified() {
        let token = PaymentToken::for_invoice(invoice_id(), now());
        let signed = key().sign(&token);
        let expired = Err(PortalError::Expired {
            invoice_id: invoice_id(),
        });
        assert_eq!(key().verify(&signed, token.expires_at), expired);
        assert_eq!(
            key().verify(&signed, token.expires_at + TimeDelta::days(400)),
            expired
        );
        // An expired token with a bad tag says nothing about the invoice.
        let mut tampered = signed.clone();
        let at = signed.len() - 2;
        let replacement = if &signed[at..=at] == "A" { "B" } else { "A" };
        tampered.replace_range(at..=at, replacement);
        assert_eq!(
            key().verify(&tampered, token.expires_at),
            Err(PortalError::Invalid)
        );
        let other = PortalKey::from_bytes(&[9u8; 40]).unwrap();
        assert_eq!(
            other.verify(&signed, token.expires_at),
            Err(PortalError::Invalid)
        );
    }

    #[test]
    fn garbage_is_invalid_without_panicking() {
        let huge = "A".repeat(1_000_000);
        let huge_dotted = format!("{huge}.{huge}");
        let many_dots = ".".repeat(10_000);
        for garbage in [
            "",
            ".",
            "..",
            "abc",
            "abc.",
            ".abc",
            "a.b",
            "a.b.c",
            "!!!!.????",
            "é.é",
            "aW52X3g.%%%",
            "aW52X3g=.aW52X3g=",
            "\0.\0",
            huge.as_str(),
            huge_dotted.as_str(),
            many_dots.as_str(),
        ] {
            assert_eq!(
                key().verify(garbage, now()),
                Err(PortalError::Invalid),
                "{}",
                garbage.chars().take(40).collect::<String>()
            );
        }
    }

    #[test]
    fn a_correctly_tagged_payload_that_is_not_ours_is_invalid() {
        // Only a key holder could make these; they must still not panic or decode.
        for raw in [
            String::new(),
            "inv_x|123".to_owned(),
            "|".to_owned(),
            "no-separator".to_owned(),
            format!("{}|not-a-number", invoice_id()),
            format!("{}|99999999999999999999", invoice_id()),
            format!("{}|{}", invoice_id(), i64::MAX),
            format!("{}|1|2", invoice_id()),
        ] {
            let payload = URL_SAFE_NO_PAD.encode(&raw);
            let tag = URL_SAFE_NO_PAD.encode(key().tag_for(&payload).finalize().into_bytes());
            assert_eq!(
                key().verify(&format!("{payload}.{tag}"), now()),
                Err(PortalError::Invalid),
                "{raw}"
            );
        }
    }

    #[test]
    fn keys_must_be_long_enough_and_never_print() {
        assert!(PortalKey::from_bytes(&[1u8; 31]).is_err());
        assert!(PortalKey::from_bytes(&[1u8; 32]).is_ok());
        assert!(PortalKey::from_hex(&HEX_KEY[..62]).is_err());
        assert!(PortalKey::from_hex(&format!("{HEX_KEY}\n")).is_ok());
        let e = PortalKey::from_hex(&format!("zz{}", &HEX_KEY[2..])).unwrap_err();
        assert!(!e.message.contains(&HEX_KEY[2..]), "{}", e.message);
        let shown = format!("{:?}", key());
        assert_eq!(shown, "PortalKey(<redacted>)");
        assert!(!shown.contains("0001"), "{shown}");
    }

    #[test]
    fn the_environment_key_is_optional_but_must_be_valid_when_set() {
        assert!(
            PortalKey::from_var(Err(VarError::NotPresent))
                .unwrap()
                .is_none()
        );
        assert!(PortalKey::from_var(Ok(String::new())).unwrap().is_none());
        assert!(
            PortalKey::from_var(Ok(HEX_KEY.to_owned()))
                .unwrap()
                .is_some()
        );
        assert!(PortalKey::from_var(Ok("abcd".to_owned())).is_err());
    }

    #[test]
    fn payment_links_join_base_and_token_with_one_slash() {
        assert_eq!(
            payment_link("https://billing.example.com", "abc.def"),
            "https://billing.example.com/pay/abc.def"
        );
        assert_eq!(
            payment_link("https://billing.example.com/prod/", "abc.def"),
            "https://billing.example.com/prod/pay/abc.def"
        );
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
    fn only_sent_invoices_are_payable() {
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Sent, "/pay/t"),
            PortalState::Payable {
                pay_action: "/pay/t".to_owned()
            }
        );
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Paid, "/pay/t"),
            PortalState::Paid
        );
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Void, "/pay/t"),
            PortalState::Void
        );
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Refunded, "/pay/t"),
            PortalState::Refunded
        );
        for open in [InvoiceStatus::Drafted, InvoiceStatus::InProgress] {
            assert_eq!(
                PortalState::from_status(open, "/pay/t"),
                PortalState::NotYetSent
            );
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
