//! Contracts: the list, and "Create contract" (customer, plan, start date, end date, auto-pay).

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use billing::api_key::Scope;
use billing::contract::{Contract, CreateContract};
use billing::pagination::PageRequest;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::form::Kind;
use crate::page::{self, Choice, FormState, Page};

use super::customer::{contract_status, span};
use super::customers::is_form_error;
use super::{next_link, page_request, query};

/// A row of the list.
pub struct Row {
    /// Its id.
    pub id: String,
    /// The customer's id.
    pub customer: String,
    /// The customer's name.
    pub customer_name: String,
    /// The plan's id.
    pub plan: String,
    /// The plan's name.
    pub plan_name: String,
    /// Its term.
    pub span: String,
    /// Active or canceled.
    pub status: String,
    /// Whether auto-pay is on.
    pub auto_pay: bool,
}

impl Row {
    fn of(c: &Contract) -> Self {
        Self {
            id: c.id.to_string(),
            customer: c.customer_id.to_string(),
            customer_name: c.customer_id.to_string(),
            plan: c.plan_id.to_string(),
            plan_name: c.plan_id.to_string(),
            span: span(c),
            status: contract_status(c),
            auto_pay: c.auto_pay,
        }
    }
}

/// Puts the customers' and plans' names on the rows (one concurrent read per distinct id).
async fn named(state: &AppState, mut rows: Vec<Row>) -> Vec<Row> {
    let (customers, plans) = tokio::join!(
        super::customer_names(state, rows.iter().map(|r| r.customer.as_str())),
        super::plan_names(state, rows.iter().map(|r| r.plan.as_str())),
    );
    for row in &mut rows {
        if let Some(name) = customers.get(&row.customer) {
            row.customer_name = name.clone();
        }
        if let Some(name) = plans.get(&row.plan) {
            row.plan_name = name.clone();
        }
    }
    rows
}

#[derive(Template)]
#[template(path = "contracts.html")]
struct List {
    page: Page,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    cursor: Option<String>,
    customer: Option<String>,
    plan: Option<String>,
}

/// `GET /dashboard/contracts`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Contracts", "contracts");
    if let Err(e) = signed.require(Scope::ContractsRead) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    match state
        .billing
        .contracts(&page_request(q.cursor.as_deref()), None)
        .await
    {
        Ok(found) => page::render(&List {
            page,
            rows: named(&state, found.items.iter().map(Row::of).collect()).await,
            next: next_link("/dashboard/contracts", &[], found.next.as_ref()),
        }),
        Err(e) => page::error(Some(page), e),
    }
}

#[derive(Template)]
#[template(path = "contract_new.html")]
struct New {
    page: Page,
    form: FormState,
    customers: Option<Vec<Choice>>,
    plans: Vec<Choice>,
    auto_pay: Vec<Choice>,
}

fn fields() -> Vec<String> {
    ["customerId", "planId", "startDate", "endDate", "autoPay"]
        .map(String::from)
        .to_vec()
}

fn kind(name: &str) -> Kind {
    if name == "autoPay" {
        Kind::Bool
    } else {
        Kind::Text
    }
}

/// The choices of the form: customers as a select when there are at most a hundred (else a
/// text field for the id), plans as a select.
async fn screen(state: &AppState, page: Page, form: FormState, status: StatusCode) -> Response {
    let list = PageRequest {
        limit: billing::pagination::MAX_LIMIT,
        after: None,
    };
    let (customers, plans) = tokio::join!(
        state.billing.customers(&list, None),
        state.billing.plans(&list)
    );
    let (customers, plans) = match (customers, plans) {
        (Ok(c), Ok(p)) => (c, p),
        (Err(e), _) | (_, Err(e)) => return page::error(Some(page), e),
    };
    let customers = customers.next.is_none().then(|| {
        let options: Vec<(String, String)> = customers
            .items
            .iter()
            .map(|c| {
                let label = match &c.external_customer_id {
                    Some(x) => format!("{} ({})", c.name.as_str(), x.as_str()),
                    None => c.name.as_str().to_owned(),
                };
                (c.id.to_string(), label)
            })
            .collect();
        page::choices(
            options.iter().map(|(v, l)| (v.as_str(), l.as_str())),
            form.value("customerId"),
        )
    });
    let plan_options: Vec<(String, String)> = plans
        .items
        .iter()
        .map(|p| {
            (
                p.id.to_string(),
                format!("{} ({})", p.name.as_str(), p.currency.code()),
            )
        })
        .collect();
    let plans = page::choices(
        plan_options.iter().map(|(v, l)| (v.as_str(), l.as_str())),
        form.value("planId"),
    );
    let auto_pay = page::choices(
        [("", "As the plan says"), ("true", "On"), ("false", "Off")],
        form.value("autoPay"),
    );
    page::render_with(
        status,
        &New {
            page,
            form,
            customers,
            plans,
            auto_pay,
        },
    )
}

/// `GET /dashboard/contracts/new[?customer=…&plan=…]`.
pub async fn new(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Create contract", "contracts");
    if let Err(e) = signed.require(Scope::ContractsWrite) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    let mut form = FormState::default();
    if let Some(c) = q.customer {
        form.values.insert("customerId".into(), c);
    }
    if let Some(p) = q.plan {
        form.values.insert("planId".into(), p);
    }
    form.values.insert(
        "startDate".into(),
        state.billing.now().date_naive().to_string(),
    );
    screen(&state, page, form, StatusCode::OK).await
}

/// `POST /dashboard/contracts`: "Create contract".
pub async fn create(
    State(state): State<AppState>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    let page = signed.page("Create contract", "contracts");
    if let Err(e) = signed.require(Scope::ContractsWrite) {
        return page::error(Some(page), e);
    }
    let created = match form.request::<CreateContract>(kind) {
        Ok(request) => state.billing.create_contract(request).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(contract) => page::see_other(&format!("/dashboard/contracts/{}", contract.id)),
        Err(e) if is_form_error(&e) => {
            let failed = FormState::failed(form.values(), &e, &fields());
            screen(&state, page, failed, page::status_of(&e)).await
        }
        Err(e) => page::error(Some(page), e),
    }
}
