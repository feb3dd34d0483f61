//! A contract's page: its terms and invoices, and "Cancel contract", which asks for
//! confirmation on a page of its own (no script, so no dialog).

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use billing::api_key::Scope;
use billing::contract::ContractStatus;
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::page::{self, Page};

use super::customer::{InvoiceRow, contract_status, span};
use super::{next_link, page_request, query};

#[derive(Template)]
#[template(path = "contract.html")]
struct Show {
    page: Page,
    id: String,
    customer: String,
    customer_name: String,
    plan: String,
    plan_name: String,
    span: String,
    status: String,
    active: bool,
    currency: String,
    net_terms: String,
    auto_pay: bool,
    invoices: Vec<InvoiceRow>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    cursor: Option<String>,
}

/// `GET /dashboard/contracts/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Contract", "contracts");
    if let Err(e) = signed.require(Scope::ContractsRead) {
        return page::error(Some(page), e);
    }
    let contract = match state.billing.contract(&id).await {
        Ok(c) => c,
        Err(e) => return page::error(Some(page), e),
    };
    let q: ShowQuery = query(raw.as_deref());
    let invoices = if signed.can.read_invoices {
        match state
            .billing
            .invoices(
                &page_request(q.cursor.as_deref()),
                None,
                Some(contract.id.as_str()),
                None,
            )
            .await
        {
            Ok(p) => Some(p),
            Err(e) => return page::error(Some(page), e),
        }
    } else {
        None
    };
    let base = format!("/dashboard/contracts/{}", contract.id);
    let (customers, plans) = tokio::join!(
        super::customer_names(&state, [contract.customer_id.as_str()]),
        super::plan_names(&state, [contract.plan_id.as_str()]),
    );
    page::render(&Show {
        page: Page {
            title: format!(
                "Contract of {}",
                customers
                    .get(contract.customer_id.as_str())
                    .map_or(contract.customer_id.as_str(), String::as_str)
            ),
            ..page
        },
        id: contract.id.to_string(),
        customer: contract.customer_id.to_string(),
        customer_name: customers
            .get(contract.customer_id.as_str())
            .cloned()
            .unwrap_or_default(),
        plan: contract.plan_id.to_string(),
        plan_name: plans
            .get(contract.plan_id.as_str())
            .cloned()
            .unwrap_or_default(),
        span: span(&contract),
        status: contract_status(&contract),
        active: contract.status == ContractStatus::Active,
        currency: contract.currency.code().to_owned(),
        net_terms: super::plans::net_terms(contract.net_terms),
        auto_pay: contract.auto_pay,
        next: invoices
            .as_ref()
            .and_then(|p| next_link(&base, &[], p.next.as_ref())),
        invoices: invoices
            .map(|p| p.items.iter().map(InvoiceRow::of).collect())
            .unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "contract_cancel.html")]
struct Confirm {
    page: Page,
    id: String,
    customer: String,
}

/// `GET /dashboard/contracts/{id}/cancel`: "Cancel contract?" with the consequences.
pub async fn confirm_cancel(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let page = signed.page("Cancel contract", "contracts");
    if let Err(e) = signed.require(Scope::ContractsWrite) {
        return page::error(Some(page), e);
    }
    match state.billing.contract(&id).await {
        Ok(c) => page::render(&Confirm {
            page,
            id: c.id.to_string(),
            customer: c.customer_id.to_string(),
        }),
        Err(e) => page::error(Some(page), e),
    }
}

/// `POST /dashboard/contracts/{id}/cancel`: cancels at the end of the current period.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { signed, .. }: SignedForm,
) -> Response {
    let page = signed.page("Cancel contract", "contracts");
    if let Err(e) = signed.require(Scope::ContractsWrite) {
        return page::error(Some(page), e);
    }
    match state.billing.cancel_contract(&id).await {
        Ok(c) => page::see_other(&format!("/dashboard/contracts/{}", c.id)),
        Err(e) => page::error(Some(page), e),
    }
}
