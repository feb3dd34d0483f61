//! Receives Stripe webhooks at `POST /webhooks/stripe`. Not built yet: it answers 501 with the
//! API's error shape, so Stripe keeps retrying (and shows failures) rather than believing its
//! events were handled.

use axum::Router;
use axum::routing::post;
use billing::{Error, ErrorKind};

use api::error::ApiError;

/// The webhook route, with the API's JSON fallbacks for anything else.
pub fn app() -> Router {
    Router::new()
        .route("/webhooks/stripe", post(receive))
        .fallback(api::error::route_not_found)
        .method_not_allowed_fallback(api::error::method_not_allowed)
}

async fn receive() -> ApiError {
    ApiError(Error::new(
        ErrorKind::NotImplemented,
        "not_implemented",
        "the Stripe webhook receiver is not implemented yet",
    ))
}
