//! The one place where domain errors become HTTP responses. Every route, the auth check, body
//! and query parsing, and the fallbacks answer through here, so clients see one JSON shape:
//! `{"error": {"type", "code", "message", "param"?, "existingId"?}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use billing::{Error, ErrorKind};
use serde::Serialize;

/// A domain error on its way out of the API.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

/// The HTTP status and error `type` of each kind.
pub fn status_and_type(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request"),
        ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, "authentication_error"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "permission_error"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "invalid_request"),
        ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "invalid_request"),
        ErrorKind::Conflict => (StatusCode::CONFLICT, "invalid_request"),
        ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "invalid_request"),
        ErrorKind::Unprocessable => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_request"),
        ErrorKind::NotImplemented => (StatusCode::NOT_IMPLEMENTED, "not_implemented"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "api_error"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "api_error"),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    param: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    existing_id: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let (status, kind) = status_and_type(e.kind);
        // Internal details go to the log, never to the client.
        let message = if e.kind == ErrorKind::Internal {
            tracing::error!(code = %e.code, message = %e.message, "internal error");
            "an internal error occurred; it has been logged"
        } else {
            &e.message
        };
        let body = Body {
            error: Detail {
                kind,
                code: &e.code,
                message,
                param: e.param.as_deref(),
                existing_id: e.existing_id.as_deref(),
            },
        };
        (status, Json(body)).into_response()
    }
}

/// Answer for paths no route serves.
pub async fn route_not_found() -> ApiError {
    ApiError(Error::new(
        ErrorKind::NotFound,
        "route_not_found",
        "no route matches this path; see /v1/openapi.json",
    ))
}

/// Answer for a known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError(Error::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        "this route does not accept that HTTP method",
    ))
}
