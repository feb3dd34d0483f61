//! The REST API as an axum router, served by lambda_http in Lambda and by the local dev server
//! (infra/dev-server) through the same API Gateway event conversion.

pub mod routes;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use billing::Billing;
use billing::portal::PAY_ROUTE;
use billing_http::MAX_BODY_BYTES;

/// The largest body of `POST /v1/events/batch`: 10,000 events of about 500 bytes, under
/// Lambda's 6 MB payload limit.
pub const MAX_BATCH_BODY_BYTES: usize = 5 * 1024 * 1024;

/// Every `/v1` route, with JSON 404 and 405 fallbacks.
pub fn app(billing: Billing) -> Router {
    Router::new()
        .route(
            "/v1/customers",
            get(routes::customers::list).post(routes::customers::create),
        )
        .route(
            "/v1/customers/{id}",
            get(routes::customers::get).patch(routes::customers::update),
        )
        .route(
            "/v1/meters",
            get(routes::meters::list).post(routes::meters::create),
        )
        .route("/v1/meters/{id}", get(routes::meters::get))
        .route("/v1/meters/{id}/archive", post(routes::meters::archive))
        .route(
            "/v1/plans",
            get(routes::plans::list).post(routes::plans::create),
        )
        .route("/v1/plans/{id}", get(routes::plans::get))
        .route(
            "/v1/contracts",
            get(routes::contracts::list).post(routes::contracts::create),
        )
        .route("/v1/contracts/{id}", get(routes::contracts::get))
        .route("/v1/contracts/{id}/cancel", post(routes::contracts::cancel))
        .route("/v1/invoices", get(routes::invoices::list))
        .route("/v1/invoices/upcoming", get(routes::invoices::upcoming))
        .route("/v1/invoices/{id}", get(routes::invoices::get))
        .route("/v1/invoices/{id}/void", post(routes::invoices::void))
        .route(
            "/v1/invoices/{id}/mark-paid",
            post(routes::invoices::mark_paid),
        )
        .route("/v1/invoices/{id}/send", post(routes::invoices::send))
        .route(
            "/v1/webhook-endpoints",
            get(routes::webhook_endpoints::list).post(routes::webhook_endpoints::create),
        )
        .route(
            "/v1/webhook-endpoints/{id}",
            get(routes::webhook_endpoints::get)
                .patch(routes::webhook_endpoints::update)
                .delete(routes::webhook_endpoints::delete),
        )
        .route(
            "/v1/webhook-endpoints/{id}/rotate-secret",
            post(routes::webhook_endpoints::rotate_secret),
        )
        .route(
            "/v1/webhook-endpoints/{id}/deliveries",
            get(routes::webhook_endpoints::deliveries),
        )
        .route(
            "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry",
            post(routes::webhook_endpoints::retry),
        )
        .route("/v1/customers/{id}/usage", get(routes::customers::usage))
        .route(
            "/v1/customers/{id}/setup-intents",
            post(routes::customers::setup_intent),
        )
        .route(
            PAY_ROUTE,
            get(routes::portal::page).post(routes::portal::pay),
        )
        .route(
            "/v1/events",
            get(routes::events::list).post(routes::events::ingest_one),
        )
        .route(
            "/v1/events/batch",
            post(routes::events::ingest_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)),
        )
        .route("/v1/api-keys", post(routes::api_keys::create))
        .route("/v1/api-keys/{id}", delete(routes::api_keys::revoke))
        .route("/v1/openapi.json", get(routes::openapi::get))
        .route_layer(axum::middleware::from_fn(billing_http::trace::request_span))
        .fallback(billing_http::route_not_found)
        .method_not_allowed_fallback(billing_http::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(billing)
}
