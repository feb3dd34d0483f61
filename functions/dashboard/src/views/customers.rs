//! Customers: the searchable list (name, external id, Stripe link, contracts, totals billed
//! and paid, last payment) and "Add customer".

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use billing::api_key::Scope;
use billing::customer::{CreateCustomer, Customer};
use billing::ids::CustomerId;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::form::Kind;
use crate::page::{self, FormState, Page};

use super::{next_link, page_request, query};

/// One row of the list.
pub struct Row {
    /// Our id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The business's own id.
    pub external_id: String,
    /// The linked Stripe customer, if any.
    pub stripe: Option<String>,
    /// Contracts, any status.
    pub contracts: usize,
    /// Billed so far (per currency, joined).
    pub billed: String,
    /// Paid so far.
    pub paid: String,
    /// When the last payment arrived.
    pub last_payment: String,
}

#[derive(Template)]
#[template(path = "customers.html")]
struct List {
    page: Page,
    q: String,
    rows: Vec<Row>,
    next: Option<String>,
    searched: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
}

fn joined(map: &std::collections::BTreeMap<billing::money::Currency, i64>) -> String {
    if map.values().all(|v| *v == 0) {
        return "—".to_owned();
    }
    map.iter()
        .filter(|(_, v)| **v != 0)
        .map(|(c, v)| page::minor(*v, *c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The rows of a page of customers: one batched read for their totals, one concurrent read
/// of their contract indexes.
pub async fn rows(state: &AppState, customers: Vec<Customer>) -> billing::Result<Vec<Row>> {
    let ids: Vec<CustomerId> = customers.iter().map(|c| c.id.clone()).collect();
    let (totals, counts) = tokio::join!(
        state.billing.customer_totals(&ids),
        state.billing.contract_counts(&ids)
    );
    let (totals, counts) = (totals?, counts?);
    Ok(customers
        .into_iter()
        .map(|c| {
            let t = totals.get(&c.id).cloned().unwrap_or_default();
            Row {
                id: c.id.to_string(),
                name: c.name.as_str().to_owned(),
                external_id: c
                    .external_customer_id
                    .as_ref()
                    .map(|x| x.as_str().to_owned())
                    .unwrap_or_default(),
                stripe: c
                    .payment_provider
                    .map(|p| p.customer_id.as_str().to_owned()),
                contracts: counts.get(&c.id).copied().unwrap_or(0),
                billed: joined(&t.billed),
                paid: joined(&t.collected),
                last_payment: t
                    .last_payment_at
                    .map(page::moment)
                    .unwrap_or_else(|| "—".into()),
            }
        })
        .collect())
}

/// `GET /dashboard/customers[?q=…]`: a page of customers, or the one a search finds by our id
/// or the external customer ID (the identifiers the table can find in one read).
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Customers", "customers");
    if let Err(e) = signed.require(Scope::CustomersRead) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    let search = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let found = match search {
        Some(text) if text.starts_with("cus_") && CustomerId::parse(text).is_ok() => {
            match state.billing.customer(text).await {
                Ok(c) => Ok(billing::pagination::Page {
                    items: vec![c],
                    next: None,
                }),
                Err(e) if e.kind == billing::ErrorKind::NotFound => Ok(billing::pagination::Page {
                    items: vec![],
                    next: None,
                }),
                Err(e) => Err(e),
            }
        }
        Some(text) => match state
            .billing
            .customers(&page_request(None), Some(text))
            .await
        {
            Err(e)
                if e.kind != billing::ErrorKind::Internal
                    && e.kind != billing::ErrorKind::Unavailable =>
            {
                Ok(billing::pagination::Page {
                    items: vec![],
                    next: None,
                })
            }
            other => other,
        },
        None => {
            state
                .billing
                .customers(&page_request(q.cursor.as_deref()), None)
                .await
        }
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return page::error(Some(page), e),
    };
    let next = next_link("/dashboard/customers", &[], found.next.as_ref());
    match rows(&state, found.items).await {
        Ok(rows) => page::render(&List {
            page,
            q: search.unwrap_or_default().to_owned(),
            rows,
            next,
            searched: search.is_some(),
        }),
        Err(e) => page::error(Some(page), e),
    }
}

#[derive(Template)]
#[template(path = "customer_new.html")]
struct New {
    page: Page,
    form: FormState,
}

/// The fields of "Add customer", named as the API names them.
fn fields() -> Vec<String> {
    [
        "name",
        "contacts[0].email",
        "externalCustomerId",
        "paymentProviderId",
        "paymentMethodId",
    ]
    .map(String::from)
    .to_vec()
}

/// `GET /dashboard/customers/new`.
pub async fn new(signed: Signed) -> Response {
    let page = signed.page("Add customer", "customers");
    if let Err(e) = signed.require(Scope::CustomersWrite) {
        return page::error(Some(page), e);
    }
    page::render(&New {
        page,
        form: FormState::default(),
    })
}

/// `POST /dashboard/customers`: "Create customer".
pub async fn create(
    State(state): State<AppState>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    let page = signed.page("Add customer", "customers");
    if let Err(e) = signed.require(Scope::CustomersWrite) {
        return page::error(Some(page), e);
    }
    let created = match form.request::<CreateCustomer>(|_| Kind::Text) {
        Ok(request) => state.billing.create_customer(request).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(customer) => page::see_other(&format!("/dashboard/customers/{}", customer.id)),
        Err(e) if is_form_error(&e) => page::render_with(
            page::status_of(&e),
            &New {
                page,
                form: FormState::failed(form.values(), &e, &fields()),
            },
        ),
        Err(e) => page::error(Some(page), e),
    }
}

/// Whether an error is about what was typed (shown on the form) rather than a failure.
pub fn is_form_error(e: &billing::Error) -> bool {
    use billing::ErrorKind::*;
    matches!(e.kind, InvalidRequest | Unprocessable | Conflict | NotFound)
}
