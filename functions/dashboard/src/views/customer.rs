//! A customer's page: details and contacts, contracts, invoices, the current period's usage
//! per meter with a daily chart, and the "Pause auto-pay" switch.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use billing::api_key::Scope;
use billing::customer::UpdateCustomer;
use billing::pagination::PageRequest;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::chart::{self, Bar};
use crate::page::{self, Page};

use super::PAGE_SIZE;

/// A contract row.
pub struct ContractRow {
    /// Its id.
    pub id: String,
    /// Its plan's id.
    pub plan: String,
    /// Its plan's name.
    pub plan_name: String,
    /// `1 Nov 2026 – rolling`.
    pub span: String,
    /// Active or canceled.
    pub status: String,
    /// Whether auto-pay is on.
    pub auto_pay: bool,
}

/// An invoice row, shared with the other screens that list invoices.
pub struct InvoiceRow {
    /// Its id.
    pub id: String,
    /// `INV-000001`, or "Draft".
    pub number: String,
    /// In words.
    pub status: &'static str,
    /// Badge class.
    pub class: &'static str,
    /// The period.
    pub period: String,
    /// The due date.
    pub due: String,
    /// The total with currency.
    pub total: String,
    /// The customer's id (the invoices list links it).
    pub customer: String,
    /// The customer's name, where a list shows it.
    pub customer_name: String,
}

impl InvoiceRow {
    /// A row for a priced invoice.
    pub fn of(p: &billing::invoice::PricedInvoice) -> Self {
        let i = &p.invoice;
        Self {
            id: i.id.to_string(),
            number: i
                .invoice_number
                .clone()
                .unwrap_or_else(|| format!("Draft of {}", page::date(i.period.start))),
            status: page::status_label(i.status),
            class: page::status_class(i.status),
            period: page::period(i.period),
            due: page::date(i.due_date),
            total: page::money(p.total, i.currency),
            customer: i.customer_id.to_string(),
            customer_name: String::new(),
        }
    }
}

/// Current usage of one meter.
pub struct UsageRow {
    /// The line's description (the meter's display name).
    pub description: String,
    /// Quantity so far.
    pub quantity: String,
    /// Amount so far.
    pub amount: String,
    /// The period.
    pub period: String,
}

/// A chart of one meter's events per day.
pub struct UsageChart {
    /// Its heading.
    pub title: String,
    /// The SVG.
    pub svg: String,
    /// The text alternative.
    pub label: String,
}

#[derive(Template)]
#[template(path = "customer.html")]
struct Show {
    page: Page,
    id: String,
    name: String,
    legal_name: String,
    external_id: String,
    stripe: Option<String>,
    payment_method: String,
    contacts: Vec<(String, String)>,
    auto_pay_paused: bool,
    billed: String,
    paid: String,
    last_payment: String,
    contracts: Vec<ContractRow>,
    invoices: Vec<InvoiceRow>,
    more_invoices: bool,
    usage: Vec<UsageRow>,
    charts: Vec<UsageChart>,
    chart_capped: bool,
}

/// A contract's span in words.
pub fn span(c: &billing::contract::Contract) -> String {
    match c.end_date {
        Some(end) => format!(
            "{} – {}",
            page::date(c.start_date),
            page::date(end.pred_opt().unwrap_or(end))
        ),
        None => format!("{} – rolling", page::date(c.start_date)),
    }
}

/// A contract's status in words.
pub fn contract_status(c: &billing::contract::Contract) -> String {
    match c.status {
        billing::contract::ContractStatus::Active => "Active".into(),
        billing::contract::ContractStatus::Canceled => "Canceled".into(),
    }
}

/// `GET /dashboard/customers/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let page = signed.page("Customer", "customers");
    if let Err(e) = signed.require(Scope::CustomersRead) {
        return page::error(Some(page), e);
    }
    let customer = match state.billing.customer(&id).await {
        Ok(c) => c,
        Err(e) => return page::error(Some(page), e),
    };
    let list = PageRequest {
        limit: PAGE_SIZE,
        after: None,
    };
    let b = &state.billing;
    let ids = [customer.id.clone()];
    let (totals, contracts, invoices, usage) = tokio::join!(
        b.customer_totals(&ids),
        async {
            if signed.can.read_contracts {
                b.contracts(&list, Some(customer.id.as_str()))
                    .await
                    .map(|p| p.items)
            } else {
                Ok(vec![])
            }
        },
        async {
            if signed.can.read_invoices {
                b.invoices(&list, Some(customer.id.as_str()), None, None)
                    .await
                    .map(Some)
            } else {
                Ok(None)
            }
        },
        b.customer_usage(customer.id.as_str(), None),
    );
    let (totals, contracts, invoices, usage) = match (totals, contracts, invoices, usage) {
        (Ok(t), Ok(c), Ok(i), Ok(u)) => (t, c, i, u),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return page::error(Some(page), e);
        }
    };
    let mut charts = Vec::new();
    let mut chart_capped = false;
    if signed.can.read_usage
        && let Some(first) = usage.first()
    {
        match b
            .customer_daily_usage(customer.id.as_str(), first.period)
            .await
        {
            Ok((daily, capped)) => {
                chart_capped = capped;
                for meter in daily {
                    let title = usage
                        .iter()
                        .find(|u| u.meter_id == meter.meter_id)
                        .map(|u| u.line.line.description.clone())
                        .unwrap_or_else(|| meter.meter_id.to_string());
                    let bars: Vec<Bar> = meter
                        .per_day
                        .iter()
                        .map(|(d, n)| Bar {
                            label: d.format("%-d %b").to_string(),
                            value: *n as f64,
                        })
                        .collect();
                    let total: u64 = meter.per_day.iter().map(|(_, n)| n).sum();
                    let busiest = meter.per_day.iter().max_by_key(|(_, n)| *n);
                    let label = format!(
                        "{title}: billed events per day, {}. {total} events in all{}.",
                        page::period(meter.period),
                        busiest
                            .filter(|(_, n)| *n > 0)
                            .map(|(d, n)| format!("; busiest day {} with {n}", page::date(*d)))
                            .unwrap_or_default()
                    );
                    if let Some(svg) = chart::bars(&bars, "Events", 640, 200) {
                        charts.push(UsageChart { title, svg, label });
                    }
                }
            }
            Err(e) => return page::error(Some(page), e),
        }
    }
    let plans = super::plan_names(&state, contracts.iter().map(|c| c.plan_id.as_str())).await;
    let t = totals.get(&customer.id).cloned().unwrap_or_default();
    let sum = |m: &std::collections::BTreeMap<billing::money::Currency, i64>| {
        let parts: Vec<String> = m
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(c, v)| page::minor(*v, *c))
            .collect();
        if parts.is_empty() {
            "—".to_owned()
        } else {
            parts.join(", ")
        }
    };
    let more_invoices = invoices.as_ref().is_some_and(|p| p.next.is_some());
    page::render(&Show {
        page: Page {
            title: customer.name.as_str().to_owned(),
            ..page
        },
        id: customer.id.to_string(),
        name: customer.name.as_str().to_owned(),
        legal_name: customer
            .legal_name
            .as_ref()
            .map(|l| l.as_str().to_owned())
            .unwrap_or_default(),
        external_id: customer
            .external_customer_id
            .as_ref()
            .map(|x| x.as_str().to_owned())
            .unwrap_or_default(),
        stripe: customer
            .payment_provider
            .as_ref()
            .map(|p| p.customer_id.as_str().to_owned()),
        payment_method: customer
            .payment_method
            .as_ref()
            .map(|m| m.id.as_str().to_owned())
            .unwrap_or_default(),
        contacts: customer
            .contacts
            .iter()
            .map(|c| {
                (
                    c.email.as_str().to_owned(),
                    c.roles
                        .iter()
                        .map(|r| r.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                )
            })
            .collect(),
        auto_pay_paused: customer.auto_pay_paused,
        billed: sum(&t.billed),
        paid: sum(&t.collected),
        last_payment: t
            .last_payment_at
            .map(page::moment)
            .unwrap_or_else(|| "—".into()),
        contracts: contracts
            .iter()
            .map(|c| ContractRow {
                id: c.id.to_string(),
                plan: c.plan_id.to_string(),
                plan_name: plans
                    .get(c.plan_id.as_str())
                    .cloned()
                    .unwrap_or_else(|| c.plan_id.to_string()),
                span: span(c),
                status: contract_status(c),
                auto_pay: c.auto_pay,
            })
            .collect(),
        invoices: invoices
            .map(|p| p.items.iter().map(InvoiceRow::of).collect())
            .unwrap_or_default(),
        more_invoices,
        usage: usage
            .iter()
            .map(|u| UsageRow {
                description: u.line.line.description.clone(),
                quantity: u.line.line.quantity.normalize().to_string(),
                amount: page::money(u.line.amount, u.currency),
                period: page::period(u.period),
            })
            .collect(),
        charts,
        chart_capped,
    })
}

/// `POST /dashboard/customers/{id}/auto-pay`: the "Pause auto-pay" switch.
pub async fn auto_pay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    let page = signed.page("Customer", "customers");
    if let Err(e) = signed.require(Scope::CustomersWrite) {
        return page::error(Some(page), e);
    }
    let paused = form.get("autoPayPaused") == Some("true");
    let update = UpdateCustomer {
        auto_pay_paused: Some(paused),
        ..UpdateCustomer::default()
    };
    match state.billing.update_customer(&id, update).await {
        Ok(c) => page::see_other(&format!("/dashboard/customers/{}", c.id)),
        Err(e) => page::error(Some(page), e),
    }
}
