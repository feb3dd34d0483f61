//! `/v1/events`: usage ingestion (one event, or up to 10,000 in a batch) and the event records.
//! An event is acknowledged (202) only once it is durably on the usage queue.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::api_key::Scope;
use billing::pagination::PageRequest;
use billing::usage::{EventInput, MAX_BATCH_EVENTS, UsageEvent};
use billing::{Billing, Error};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::List;
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, QueryParams, decode_json};
use billing_http::views::EventView;

/// The answer to one accepted event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    status: &'static str,
    idempotency_key: String,
    request_id: String,
}

fn request_id() -> String {
    format!("req_{}", uuid::Uuid::now_v7().simple())
}

fn not_enqueued() -> Error {
    Error::unavailable("the usage queue did not accept the event; nothing was recorded, retry it")
}

/// `POST /v1/events` → 202 once the event is on the queue.
pub async fn ingest_one(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<EventInput>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    caller.require(Scope::UsageWrite)?;
    let event = body.parse(billing.now())?;
    let enqueued = billing.ingest(std::slice::from_ref(&event)).await?;
    if !enqueued.first().copied().unwrap_or(false) {
        return Err(not_enqueued().into());
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            status: "accepted",
            idempotency_key: event.idempotency_key.as_str().to_owned(),
            request_id: request_id(),
        }),
    ))
}

/// `POST /v1/events/batch` as sent: each event is decoded on its own, so one bad event does
/// not sink the others.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchInput {
    events: Vec<Box<RawValue>>,
}

/// One refused or failed event of a batch.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemError {
    index: usize,
    error: ItemErrorDetail,
}

/// Why an event of a batch was refused.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ItemErrorDetail {
    code: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<String>,
}

impl From<Error> for ItemErrorDetail {
    fn from(e: Error) -> Self {
        Self {
            code: e.code.into_owned(),
            message: e.message,
            param: e.param,
        }
    }
}

/// The answer to a batch: how many were accepted, which were refused (bad input, not retried)
/// and which failed to enqueue (retry those).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchAccepted {
    status: &'static str,
    accepted: usize,
    rejected: Vec<ItemError>,
    failed: Vec<ItemError>,
    idempotency_keys: Vec<Option<String>>,
    request_id: String,
}

/// `POST /v1/events/batch` → 202 with per-event results; 503 when nothing could be enqueued.
pub async fn ingest_batch(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<BatchInput>,
) -> Result<(StatusCode, Json<BatchAccepted>), ApiError> {
    caller.require(Scope::UsageWrite)?;
    if body.events.is_empty() || body.events.len() > MAX_BATCH_EVENTS {
        return Err(Error::unprocessable(
            "invalid_batch_size",
            format!("a batch carries 1 to {MAX_BATCH_EVENTS} events"),
        )
        .at("events")
        .into());
    }
    let now = billing.now();
    let mut rejected = Vec::new();
    let mut valid: Vec<UsageEvent> = Vec::with_capacity(body.events.len());
    let mut positions: Vec<usize> = Vec::with_capacity(body.events.len());
    for (index, raw) in body.events.iter().enumerate() {
        match decode_json::<EventInput>(raw.get().as_bytes()).and_then(|input| input.parse(now)) {
            Ok(event) => {
                valid.push(event);
                positions.push(index);
            }
            Err(e) => rejected.push(ItemError {
                index,
                error: e.into(),
            }),
        }
    }
    let mut keys: Vec<Option<String>> = vec![None; body.events.len()];
    let mut failed = Vec::new();
    let mut accepted = 0;
    if !valid.is_empty() {
        let enqueued = billing.ingest(&valid).await?;
        for ((event, index), ok) in valid.iter().zip(&positions).zip(enqueued) {
            if ok {
                accepted += 1;
                keys[*index] = Some(event.idempotency_key.as_str().to_owned());
            } else {
                failed.push(ItemError {
                    index: *index,
                    error: not_enqueued().into(),
                });
            }
        }
        if accepted == 0 {
            return Err(not_enqueued().into());
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(BatchAccepted {
            status: "accepted",
            accepted,
            rejected,
            failed,
            idempotency_keys: keys,
            request_id: request_id(),
        }),
    ))
}

/// Query parameters of `GET /v1/events`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventQuery {
    limit: Option<String>,
    cursor: Option<String>,
    customer_id: Option<String>,
    external_customer_id: Option<String>,
    status: Option<String>,
}

/// `GET /v1/events?customerId|externalCustomerId&status`: recorded events with their outcome.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<EventQuery>,
) -> Result<Json<List<EventView>>, ApiError> {
    caller.require(Scope::UsageRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let events = billing
        .events(
            &page,
            query.customer_id.as_deref(),
            query.external_customer_id.as_deref(),
            query.status.as_deref(),
        )
        .await?;
    Ok(Json(List::from_page(events, EventView::from)))
}
