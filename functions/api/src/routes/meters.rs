//! `/v1/meters`: create, read, list, archive.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use billing::api_key::Scope;
use billing::meter::{CreateMeter, Meter};
use billing::pagination::PageRequest;

use super::{List, ListQuery};
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId, QueryParams};

/// `POST /v1/meters` → 201.
pub async fn create(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateMeter>,
) -> Result<(StatusCode, Json<Meter>), ApiError> {
    caller.require(Scope::PricingWrite)?;
    Ok((StatusCode::CREATED, Json(billing.create_meter(body).await?)))
}

/// `GET /v1/meters/{id}`.
pub async fn get(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<Meter>, ApiError> {
    caller.require(Scope::PricingRead)?;
    Ok(Json(billing.meter(&id).await?))
}

/// `GET /v1/meters`, oldest first.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<List<Meter>>, ApiError> {
    caller.require(Scope::PricingRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    Ok(Json(List::from_page(billing.meters(&page).await?, |m| m)))
}

/// `POST /v1/meters/{id}/archive`: stops matching new events; idempotent.
pub async fn archive(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<Meter>, ApiError> {
    caller.require(Scope::PricingWrite)?;
    Ok(Json(billing.archive_meter(&id).await?))
}
