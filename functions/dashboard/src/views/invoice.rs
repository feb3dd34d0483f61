//! An invoice's page: number, status, period and dates; lines with quantity, unit price,
//! amount, service period and the late-usage label; the total, payment link and payment
//! attempts; for an open invoice, the contract's upcoming preview.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use billing::api_key::Scope;

use crate::AppState;
use crate::auth::Signed;
use crate::page::{self, Page};

/// A line.
pub struct Line {
    /// What it charges for.
    pub description: String,
    /// Dimensions, `region: eu`.
    pub dimensions: String,
    /// Quantity.
    pub quantity: String,
    /// Unit price, or "Varies" (tiers).
    pub unit_price: String,
    /// Amount.
    pub amount: String,
    /// The days it covers.
    pub service_period: String,
    /// Usage from an earlier, closed period.
    pub late: bool,
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct Show {
    page: Page,
    id: String,
    number: String,
    status: &'static str,
    class: &'static str,
    period: String,
    invoice_date: String,
    due_date: String,
    customer: String,
    customer_name: String,
    contract: String,
    lines: Vec<Line>,
    total: String,
    payment_link: Option<String>,
    attempts: u32,
    auto_pay: bool,
    next_attempt: String,
    last_error: String,
    paid_at: String,
    sent_at: String,
    open: bool,
    upcoming: Option<(String, String)>,
}

/// `GET /dashboard/invoices/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let page = signed.page("Invoice", "invoices");
    if let Err(e) = signed.require(Scope::InvoicesRead) {
        return page::error(Some(page), e);
    }
    let priced = match state.billing.invoice(&id).await {
        Ok(i) => i,
        Err(e) => return page::error(Some(page), e),
    };
    let invoice = &priced.invoice;
    let currency = invoice.currency;
    let open = invoice.status.is_open();
    let upcoming = if open {
        match state
            .billing
            .upcoming_invoice(invoice.contract_id.as_str())
            .await
        {
            Ok(u) => Some((
                u.invoice.id.to_string(),
                page::money(u.total, u.invoice.currency),
            )),
            Err(e) if e.kind == billing::ErrorKind::NotFound => None,
            Err(e) => return page::error(Some(page), e),
        }
    } else {
        None
    };
    let names = super::customer_names(&state, [invoice.customer_id.as_str()]).await;
    let number = invoice
        .invoice_number
        .clone()
        .unwrap_or_else(|| "Draft".to_owned());
    let payment = &invoice.payment;
    page::render(&Show {
        page: Page {
            title: format!("Invoice {number}"),
            ..page
        },
        id: invoice.id.to_string(),
        status: page::status_label(invoice.status),
        class: page::status_class(invoice.status),
        period: page::period(invoice.period),
        invoice_date: page::date(invoice.invoice_date),
        due_date: page::date(invoice.due_date),
        customer: invoice.customer_id.to_string(),
        customer_name: names
            .get(invoice.customer_id.as_str())
            .cloned()
            .unwrap_or_default(),
        contract: invoice.contract_id.to_string(),
        lines: priced
            .lines
            .iter()
            .map(|l| Line {
                description: l.line.description.clone(),
                dimensions: l
                    .line
                    .dimensions
                    .as_ref()
                    .map(|d| {
                        d.iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
                quantity: l.line.quantity.normalize().to_string(),
                unit_price: l
                    .unit_amount
                    .map_or_else(|| "Varies".to_owned(), |u| page::unit_price(u, currency)),
                amount: page::money(l.amount, currency),
                service_period: page::period(l.line.service_period),
                late: l.line.service_period != invoice.period,
            })
            .collect(),
        total: page::money(priced.total, currency),
        payment_link: state.billing.payment_link(invoice),
        attempts: payment.attempts,
        auto_pay: invoice.auto_pay,
        next_attempt: payment.next_attempt_on.map(page::date).unwrap_or_default(),
        last_error: payment.last_error.clone().unwrap_or_default(),
        paid_at: payment.paid_at.map(page::moment).unwrap_or_default(),
        sent_at: payment.sent_at.map(page::moment).unwrap_or_default(),
        number,
        open,
        upcoming,
    })
}
