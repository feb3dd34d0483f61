//! `/v1/contracts`: create (pre-generating invoices), read, list, cancel.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use billing::api_key::Scope;
use billing::contract::{Contract, CreateContract};
use billing::pagination::PageRequest;
use serde::Deserialize;

use super::List;
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId, QueryParams};

/// `POST /v1/contracts` → 201; its invoices exist from this moment.
pub async fn create(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateContract>,
) -> Result<(StatusCode, Json<Contract>), ApiError> {
    caller.require(Scope::ContractsWrite)?;
    Ok((
        StatusCode::CREATED,
        Json(billing.create_contract(body).await?),
    ))
}

/// `GET /v1/contracts/{id}`.
pub async fn get(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<Contract>, ApiError> {
    caller.require(Scope::ContractsRead)?;
    Ok(Json(billing.contract(&id).await?))
}

/// Query parameters of `GET /v1/contracts`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContractQuery {
    limit: Option<String>,
    cursor: Option<String>,
    customer_id: Option<String>,
}

/// `GET /v1/contracts[?customerId]`, oldest first.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<ContractQuery>,
) -> Result<Json<List<Contract>>, ApiError> {
    caller.require(Scope::ContractsRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let contracts = billing
        .contracts(&page, query.customer_id.as_deref())
        .await?;
    Ok(Json(List::from_page(contracts, |c| c)))
}

/// `POST /v1/contracts/{id}/cancel`: ends at the end of the current period; later invoices
/// are voided. Cancelling twice returns the same contract.
pub async fn cancel(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<Contract>, ApiError> {
    caller.require(Scope::ContractsWrite)?;
    Ok(Json(billing.cancel_contract(&id).await?))
}
