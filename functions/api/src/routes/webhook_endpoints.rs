//! `/v1/webhook-endpoints`: where the platform sends its signed events. Create (the secret is
//! shown once), read, list, change, delete, rotate the secret; an endpoint's deliveries, and a
//! manual retry of one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use billing::api_key::Scope;
use billing::pagination::PageRequest;
use billing::use_cases::CreatedEndpoint;
use billing::webhooks::delivery::DeliveryAttempt;
use billing::webhooks::{
    CreateEndpoint, Delivery, DeliveryStatus, UpdateEndpoint, WebhookEndpoint,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{List, ListQuery};
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId, PathIds, QueryParams};

/// An endpoint as shown; the secret only in [`CreatedView`].
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    id: String,
    url: String,
    events: Vec<&'static str>,
    description: Option<String>,
    disabled: bool,
    disabled_reason: Option<String>,
    failing_since: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<WebhookEndpoint> for EndpointView {
    fn from(e: WebhookEndpoint) -> Self {
        Self {
            events: e.events.names(),
            id: e.id.into(),
            url: e.url.as_str().to_owned(),
            description: e.description.map(Into::into),
            disabled: e.disabled,
            disabled_reason: e.disabled_reason,
            failing_since: e.failing_since,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// An endpoint with its secret: the answer to a creation and a rotation, the only times the
/// secret is shown.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedView {
    #[serde(flatten)]
    endpoint: EndpointView,
    secret: String,
}

impl From<CreatedEndpoint> for CreatedView {
    fn from(c: CreatedEndpoint) -> Self {
        Self {
            endpoint: c.endpoint.into(),
            secret: c.secret,
        }
    }
}

/// A delivery as shown: its event, status, attempts (status code, duration, error, the start
/// of the answer) and when it is tried next.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    id: String,
    event_id: String,
    event_type: &'static str,
    status: DeliveryStatus,
    attempts: Vec<DeliveryAttempt>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id(),
            event_id: d.event_id.into(),
            event_type: d.event_type.as_str(),
            status: d.status,
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// `POST /v1/webhook-endpoints` → 201 with the secret.
pub async fn create(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateEndpoint>,
) -> Result<(StatusCode, Json<CreatedView>), ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let created = billing.create_webhook_endpoint(body).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// `GET /v1/webhook-endpoints`, in creation order.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<List<EndpointView>>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let endpoints = billing.webhook_endpoints(&page).await?;
    Ok(Json(List::from_page(endpoints, EndpointView::from)))
}

/// `GET /v1/webhook-endpoints/{id}`.
pub async fn get(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    Ok(Json(billing.webhook_endpoint(&id).await?.into()))
}

/// `PATCH /v1/webhook-endpoints/{id}`: `url`, `events`, `description`, `disabled`.
pub async fn update(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<UpdateEndpoint>,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    Ok(Json(
        billing.update_webhook_endpoint(&id, body).await?.into(),
    ))
}

/// `DELETE /v1/webhook-endpoints/{id}`: answers the endpoint as it was.
pub async fn delete(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<EndpointView>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    Ok(Json(billing.delete_webhook_endpoint(&id).await?.into()))
}

/// `POST /v1/webhook-endpoints/{id}/rotate-secret`: a new secret (shown once); the old one
/// also signs for 24 hours.
pub async fn rotate_secret(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<CreatedView>, ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    Ok(Json(billing.rotate_webhook_secret(&id).await?.into()))
}

/// `GET /v1/webhook-endpoints/{id}/deliveries`, newest first.
pub async fn deliveries(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<List<DeliveryView>>, ApiError> {
    caller.require(Scope::WebhooksRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let deliveries = billing.webhook_deliveries(&id, &page).await?;
    Ok(Json(List::from_page(deliveries, DeliveryView::from)))
}

/// `POST /v1/webhook-endpoints/{id}/deliveries/{deliveryId}/retry` → 202: sent again shortly.
pub async fn retry(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathIds(id, delivery): PathIds,
) -> Result<(StatusCode, Json<DeliveryView>), ApiError> {
    caller.require(Scope::WebhooksWrite)?;
    let delivery = billing.retry_webhook_delivery(&id, &delivery).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}
