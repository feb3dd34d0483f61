//! `GET /v1/openapi.json`: the hand-written OpenAPI 3.1 document of every route
//! (`functions/api/openapi.json`), compiled in. No API key needed. `tests/openapi.rs` fails when
//! the document and the router disagree.

use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;

/// The document, as served.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

/// `GET /v1/openapi.json`.
pub async fn get() -> impl IntoResponse {
    ([(CONTENT_TYPE, "application/json")], DOCUMENT)
}
