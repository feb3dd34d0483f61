//! Request extractors that parse at the edge and fail through [`ApiError`]: the caller's
//! identity, JSON bodies and query strings. Axum's own extractors answer in plain text, which
//! would break the one-error-shape promise, so these replace them.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use billing::api_key::Principal;
use billing::{Billing, Error, ErrorKind};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The authenticated caller. Extract it first in a handler, so a request without a valid key
/// gets 401 before anything else about it is examined.
pub struct Caller(pub Principal);

impl FromRequestParts<Billing> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, billing: &Billing) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(billing::use_cases::missing_credentials)?;
        let secret = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, secret)| secret.trim())
            .filter(|secret| !secret.is_empty())
            .ok_or_else(billing::use_cases::missing_credentials)?;
        Ok(Caller(billing.authenticate(secret).await?))
    }
}

/// A JSON body decoded into `T`. Malformed JSON, wrong types and unknown fields are 400 with the
/// offending field's path; a body over the route's limit is 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Error::new(
                    ErrorKind::PayloadTooLarge,
                    "payload_too_large",
                    format!("the request body exceeds {} bytes", crate::MAX_BODY_BYTES),
                )
            } else {
                Error::invalid("unreadable_body", rejection.body_text())
            }
        })?;
        decode_json(&bytes).map(JsonBody).map_err(ApiError)
    }
}

/// Decodes JSON, naming the failing field's path when the JSON is well-formed but does not fit.
pub fn decode_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid(
            "missing_body",
            "a JSON request body is required",
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        (path, e.into_inner())
    });
    // Trailing characters after the JSON value are malformed JSON too.
    let value = value.and_then(|v| de.end().map(|()| v).map_err(|e| (".".to_owned(), e)));
    value.map_err(|(path, inner)| {
        let message = inner.to_string();
        match inner.classify() {
            serde_json::error::Category::Data => {
                let code = if message.starts_with("unknown field") {
                    "unknown_field"
                } else if message.starts_with("missing field") {
                    "missing_field"
                } else {
                    "invalid_field"
                };
                let mut e = Error::invalid(code, message);
                if path != "." {
                    e = e.at(path);
                }
                e
            }
            _ => Error::invalid(
                "invalid_json",
                format!("the body is not valid JSON: {message}"),
            ),
        }
    })
}

/// A query string decoded into `T` (use `deny_unknown_fields` so typos are refused).
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(query)
            .map(QueryParams)
            .map_err(|e| {
                ApiError(Error::invalid(
                    "invalid_query",
                    format!("query string: {e}"),
                ))
            })
    }
}

/// The `{id}` of a route. An id that is not even valid text names nothing we store, so it is a
/// 404 in the API's error shape (axum's own `Path` would answer in plain text).
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(id)| PathId(id))
            .map_err(|_| {
                ApiError(Error::new(
                    ErrorKind::NotFound,
                    "resource_missing",
                    "no resource with that id",
                ))
            })
    }
}

/// The `{id}` and the child's id of a nested route (`/v1/…/{id}/…/{child}`), with the same 404
/// as [`PathId`].
pub struct PathIds(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path((id, child))| PathIds(id, child))
            .map_err(|_| {
                ApiError(Error::new(
                    ErrorKind::NotFound,
                    "resource_missing",
                    "no resource with that id",
                ))
            })
    }
}
