//! An invoice as `GET /v1/invoices/{id}` returns it: money as decimal strings with the
//! currency's minor units.

use std::collections::BTreeMap;

use billing::invoice::{InvoicePayment, InvoiceStatus, PricedInvoice, PricedLine};
use billing::period::Period;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// A period as two RFC 3339 instants, `[start, end)` at 00:00 UTC.
#[derive(Serialize)]
pub struct PeriodView {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl From<Period> for PeriodView {
    fn from(p: Period) -> Self {
        Self {
            start: p.start.and_time(chrono::NaiveTime::MIN).and_utc(),
            end: p.end.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }
}

/// One line as shown.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineView {
    id: String,
    price_id: String,
    description: String,
    is_metered: bool,
    quantity: String,
    unit_amount: Option<String>,
    amount: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<BTreeMap<String, String>>,
    service_period: PeriodView,
}

/// An invoice as shown: money as decimal strings with the currency's minor units, plus
/// `totalCents` (the total in minor units, whatever the currency).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceView {
    id: String,
    invoice_number: Option<String>,
    customer_id: String,
    contract_id: String,
    status: InvoiceStatus,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
    invoice_date: NaiveDate,
    due_date: NaiveDate,
    currency: &'static str,
    subtotal: String,
    total: String,
    total_cents: i64,
    auto_pay: bool,
    line_items: Vec<LineView>,
    /// The customer's payment page; set once the invoice is sent (and links are configured).
    payment_link: Option<String>,
    payment: InvoicePayment,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn money(amount: Decimal, minor_units: u32) -> String {
    format!("{:.*}", minor_units as usize, amount)
}

impl InvoiceView {
    /// The view with the invoice's payment link, when it has one.
    pub fn with_link(p: PricedInvoice, link: Option<String>) -> Self {
        let mut view = Self::from(p);
        view.payment_link = link;
        view
    }
}

impl From<PricedInvoice> for InvoiceView {
    fn from(p: PricedInvoice) -> Self {
        let minor = p.invoice.currency.minor_units();
        let period = PeriodView::from(p.invoice.period);
        let line = |l: PricedLine| LineView {
            is_metered: l.line.is_metered(),
            id: l.line.id.into(),
            price_id: l.line.price_id.into(),
            description: l.line.description,
            quantity: l.line.quantity.normalize().to_string(),
            unit_amount: l.unit_amount.map(|u| u.to_string()),
            amount: money(l.amount, minor),
            dimensions: l.line.dimensions,
            service_period: l.line.service_period.into(),
        };
        Self {
            id: p.invoice.id.into(),
            invoice_number: p.invoice.invoice_number,
            customer_id: p.invoice.customer_id.into(),
            contract_id: p.invoice.contract_id.into(),
            status: p.invoice.status,
            period_start: period.start,
            period_end: period.end,
            invoice_date: p.invoice.invoice_date,
            due_date: p.invoice.due_date,
            currency: p.invoice.currency.code(),
            subtotal: money(p.subtotal, minor),
            total: money(p.total, minor),
            total_cents: p.total_minor_units,
            auto_pay: p.invoice.auto_pay,
            line_items: p.lines.into_iter().map(line).collect(),
            payment_link: None,
            payment: p.invoice.payment,
            created_at: p.invoice.created_at,
            updated_at: p.invoice.updated_at,
        }
    }
}
