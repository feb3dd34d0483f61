//! Receives Stripe webhooks at `POST /webhooks/stripe`: the raw body and the
//! `Stripe-Signature` header go to `billing::provider_webhooks::Webhooks`, which verifies
//! before anything else. 400 for a bad, stale or missing signature; 200 for handled, duplicate
//! and ignored events; 5xx (so Stripe retries) when handling failed.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use billing::ports::Clock;
use billing::provider_webhooks::{Delivery, Webhooks};
use billing::{Error, ErrorKind};
use billing_http::ApiError;

/// The receiver and the clock its signature check reads.
#[derive(Clone)]
struct Receiver {
    webhooks: Webhooks,
    clock: Arc<dyn Clock>,
}

/// The webhook route, with the edge's JSON fallbacks for anything else.
pub fn app(webhooks: Webhooks, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/webhooks/stripe", post(receive))
        .route_layer(axum::middleware::from_fn(billing_http::trace::request_span))
        .fallback(billing_http::route_not_found)
        .method_not_allowed_fallback(billing_http::method_not_allowed)
        .with_state(Receiver { webhooks, clock })
}

/// The route when the receiver cannot be built (no `STRIPE_WEBHOOK_SECRET`): every delivery
/// gets 503, so Stripe keeps retrying and shows the failures; nothing is acknowledged unchecked.
pub fn unconfigured(reason: String) -> Router {
    let refuse = move || {
        let reason = reason.clone();
        async move {
            ApiError(Error::new(
                ErrorKind::Unavailable,
                "webhooks_not_configured",
                reason,
            ))
        }
    };
    Router::new()
        .route("/webhooks/stripe", post(refuse))
        .fallback(billing_http::route_not_found)
        .method_not_allowed_fallback(billing_http::method_not_allowed)
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(payload) = std::str::from_utf8(&body) else {
        return ApiError(Error::invalid("invalid_payload", "the body is not UTF-8"))
            .into_response();
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    // The signature's age is judged by the real time (Stripe signed it with its clock); the
    // delivery's effects are dated by the platform's clock (simulated on the local stack).
    let signed_now = chrono::Utc::now();
    let now = receiver.clock.now();
    match receiver
        .webhooks
        .receive_at(payload, signature, signed_now, now)
        .await
    {
        Ok(Delivery::Handled { kind }) => {
            axum::Json(serde_json::json!({ "received": true, "handled": kind })).into_response()
        }
        Ok(Delivery::Duplicate) => {
            axum::Json(serde_json::json!({ "received": true, "duplicate": true })).into_response()
        }
        Err(e) => {
            if e.kind != ErrorKind::InvalidRequest {
                tracing::error!(error = %e, "webhook handling failed");
            }
            ApiError(e).into_response()
        }
    }
}
