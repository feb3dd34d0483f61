//! Plans (under Products): the list, and "Create plan" with its pricing items added in the
//! same form.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use billing::api_key::Scope;
use billing::pagination::PageRequest;
use billing::plan::{CreatePlan, Plan, PriceKind};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::form::Kind;
use crate::page::{self, Choice, FormState, Page};

use super::customers::is_form_error;
use super::plan_form::{self, Add, PriceRow};
use super::{next_link, page_request, query};

/// The billing intervals: (wire name, words).
pub const INTERVALS: [(&str, &str); 4] = [
    ("MONTH", "Monthly"),
    ("WEEK", "Weekly"),
    ("QUARTER", "Quarterly"),
    ("YEAR", "Yearly"),
];

/// A row of the list.
pub struct Row {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// ISO code.
    pub currency: String,
    /// "Net 30", or "Due on receipt".
    pub net_terms: String,
    /// Monthly, …
    pub interval: String,
    /// Whether auto-pay is on by default.
    pub auto_pay: bool,
    /// Prices in words.
    pub prices: String,
}

/// "Net 30", or "Due on receipt (Net 0)".
pub fn net_terms(days: u16) -> String {
    if days == 0 {
        "Due on receipt (Net 0)".into()
    } else {
        format!("Net {days}")
    }
}

/// A plan's interval in words.
pub fn interval(plan: &Plan) -> String {
    let wire = serde_json::to_value(plan.billing_interval)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    INTERVALS
        .iter()
        .find(|(w, _)| *w == wire)
        .map_or(wire.clone(), |(_, words)| (*words).to_owned())
}

impl Row {
    fn of(p: &Plan) -> Self {
        let prices: Vec<String> = p
            .prices
            .iter()
            .map(|price| match &price.kind {
                PriceKind::Flat { flat_amount } => {
                    format!("Fixed {}", page::money(flat_amount.value(), p.currency))
                }
                PriceKind::Usage(u) => format!(
                    "{}: {}",
                    u.meter_code,
                    super::plan::rate_text(&u.rate, p.currency)
                ),
            })
            .collect();
        Self {
            id: p.id.to_string(),
            name: p.name.as_str().to_owned(),
            currency: p.currency.code().to_owned(),
            net_terms: net_terms(p.net_terms),
            interval: interval(p),
            auto_pay: p.auto_pay,
            prices: prices.join("; "),
        }
    }
}

#[derive(Template)]
#[template(path = "plans.html")]
struct List {
    page: Page,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    cursor: Option<String>,
}

/// `GET /dashboard/plans`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Plans", "plans");
    if let Err(e) = signed.require(Scope::PricingRead) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    match state
        .billing
        .plans(&page_request(q.cursor.as_deref()))
        .await
    {
        Ok(found) => page::render(&List {
            page,
            rows: found.items.iter().map(Row::of).collect(),
            next: next_link("/dashboard/plans", &[], found.next.as_ref()),
        }),
        Err(e) => page::error(Some(page), e),
    }
}

#[derive(Template)]
#[template(path = "plan_new.html")]
struct New {
    page: Page,
    form: FormState,
    intervals: Vec<Choice>,
    rows: Vec<PriceRow>,
    no_meters: bool,
}

fn kind(name: &str) -> Kind {
    match name {
        "netTerms" | "gracePeriodDays" => Kind::Number,
        "autoPay" => Kind::Flag,
        "prices.dimensionalRates.dimensions" => Kind::Pairs,
        _ => Kind::Text,
    }
}

/// The active meters' (code, display name), for the usage prices' "Meter" select (the first
/// hundred: a catalog rarely has more).
async fn meters(state: &AppState) -> billing::Result<Vec<(String, String)>> {
    let page = PageRequest {
        limit: billing::pagination::MAX_LIMIT,
        after: None,
    };
    Ok(state
        .billing
        .meters(&page)
        .await?
        .items
        .into_iter()
        .filter(|m| m.status == billing::meter::MeterStatus::Active)
        .map(|m| {
            (
                m.code.to_string(),
                format!("{} ({})", m.display_name.as_str(), m.code),
            )
        })
        .collect())
}

async fn form_screen(
    state: &AppState,
    page: Page,
    form: FormState,
    status: axum::http::StatusCode,
) -> Response {
    let meters = match meters(state).await {
        Ok(m) => m,
        Err(e) => return page::error(Some(page), e),
    };
    let intervals = page::choices(INTERVALS, form.value("billingInterval"));
    let rows = plan_form::rows(&form, &meters);
    page::render_with(
        status,
        &New {
            page,
            intervals,
            rows,
            no_meters: meters.is_empty(),
            form,
        },
    )
}

/// `GET /dashboard/plans/new`.
pub async fn new(State(state): State<AppState>, signed: Signed) -> Response {
    let page = signed.page("Create plan", "plans");
    if let Err(e) = signed.require(Scope::PricingWrite) {
        return page::error(Some(page), e);
    }
    let mut form = FormState::default();
    form.values.insert("currency".into(), "USD".into());
    form.values.insert("netTerms".into(), "30".into());
    form.values.insert("gracePeriodDays".into(), "0".into());
    form_screen(&state, page, form, axum::http::StatusCode::OK).await
}

/// `POST /dashboard/plans`: an "Add …" button shows the form again with one more row;
/// "Create plan" creates it.
pub async fn create(
    State(state): State<AppState>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    let page = signed.page("Create plan", "plans");
    if let Err(e) = signed.require(Scope::PricingWrite) {
        return page::error(Some(page), e);
    }
    if let Some(what) = form.get("_add").and_then(Add::parse) {
        let mut values = form.values();
        plan_form::add(&mut values, &what);
        let state_form = FormState {
            values,
            ..FormState::default()
        };
        return form_screen(&state, page, state_form, axum::http::StatusCode::OK).await;
    }
    let created = match form.request::<CreatePlan>(kind) {
        Ok(request) => state.billing.create_plan(request).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(plan) => page::see_other(&format!("/dashboard/plans/{}", plan.id)),
        Err(mut e) if is_form_error(&e) => {
            // The form names meters by code; the domain may name the price's meter by id.
            if let Some(param) = e.param.as_mut().filter(|p| p.ends_with(".meterId")) {
                *param = param.replace(".meterId", ".meterCode");
            }
            let values = form.values();
            let probe = FormState {
                values: values.clone(),
                ..FormState::default()
            };
            let names = plan_form::field_names(&plan_form::rows(&probe, &[]));
            let failed = FormState::failed(values, &e, &names);
            form_screen(&state, page, failed, page::status_of(&e)).await
        }
        Err(e) => page::error(Some(page), e),
    }
}
