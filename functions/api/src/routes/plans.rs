//! `/v1/plans`: create, read, list. Plans never change; a change is a new plan.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use billing::api_key::Scope;
use billing::pagination::PageRequest;
use billing::plan::{CreatePlan, Plan};

use super::{List, ListQuery};
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId, QueryParams};

/// `POST /v1/plans` → 201.
pub async fn create(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreatePlan>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    caller.require(Scope::PricingWrite)?;
    Ok((StatusCode::CREATED, Json(billing.create_plan(body).await?)))
}

/// `GET /v1/plans/{id}`.
pub async fn get(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<Plan>, ApiError> {
    caller.require(Scope::PricingRead)?;
    Ok(Json(billing.plan(&id).await?))
}

/// `GET /v1/plans`, oldest first.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<List<Plan>>, ApiError> {
    caller.require(Scope::PricingRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    Ok(Json(List::from_page(billing.plans(&page).await?, |p| p)))
}
