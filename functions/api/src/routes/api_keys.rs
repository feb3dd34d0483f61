//! `/v1/api-keys`: create (the secret is shown once) and revoke. Both need scope `*`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use billing::api_key::{ApiKey, CreateApiKey, Scope};
use serde::Serialize;

use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId};

/// A key as shown after creation, with its secret this one time.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedKeyView {
    #[serde(flatten)]
    key: ApiKey,
    secret: String,
}

/// `POST /v1/api-keys` → 201 with `secret`.
pub async fn create(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> Result<(StatusCode, Json<CreatedKeyView>), ApiError> {
    caller.require(Scope::All)?;
    let created = billing.create_api_key(body).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKeyView {
            key: created.key,
            secret: created.secret,
        }),
    ))
}

/// `DELETE /v1/api-keys/{id}`: the key stops working at once.
pub async fn revoke(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<ApiKey>, ApiError> {
    caller.require(Scope::All)?;
    Ok(Json(billing.revoke_api_key(&id).await?))
}
