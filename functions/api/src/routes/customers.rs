//! `/v1/customers`: create, read, list (or find by `externalCustomerId`), and patch.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use billing::Billing;
use billing::api_key::Scope;
use billing::customer::{CreateCustomer, UpdateCustomer};
use billing::pagination::PageRequest;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::List;
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId, QueryParams};
use billing_http::views::CustomerView;

/// `POST /v1/customers` → 201.
pub async fn create(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    JsonBody(body): JsonBody<CreateCustomer>,
) -> Result<(StatusCode, Json<CustomerView>), ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let customer = billing.create_customer(body).await?;
    Ok((StatusCode::CREATED, Json(customer.into())))
}

/// `GET /v1/customers/{id}`.
pub async fn get(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<CustomerView>, ApiError> {
    caller.require(Scope::CustomersRead)?;
    Ok(Json(billing.customer(&id).await?.into()))
}

/// Query parameters of `GET /v1/customers`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
    external_customer_id: Option<String>,
}

/// `GET /v1/customers[?limit&cursor|externalCustomerId]`, oldest first.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<ListQuery>,
) -> Result<Json<List<CustomerView>>, ApiError> {
    caller.require(Scope::CustomersRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let page = billing
        .customers(&page, query.external_customer_id.as_deref())
        .await?;
    Ok(Json(List::from_page(page, CustomerView::from)))
}

/// `PATCH /v1/customers/{id}`: absent fields are kept, `null` clears.
pub async fn update(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<UpdateCustomer>,
) -> Result<Json<CustomerView>, ApiError> {
    caller.require(Scope::CustomersWrite)?;
    Ok(Json(billing.update_customer(&id, body).await?.into()))
}

/// Query parameters of `GET /v1/customers/{id}/usage`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UsageQuery {
    meter_code: Option<String>,
}

/// One usage line of the current period.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageLineView {
    contract_id: String,
    invoice_id: String,
    line_id: String,
    meter_id: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<std::collections::BTreeMap<String, String>>,
    quantity: String,
    unit_amount: Option<String>,
    amount: String,
    currency: &'static str,
    period_start: DateTime<Utc>,
    period_end: DateTime<Utc>,
}

/// The current period's usage.
#[derive(Serialize)]
pub struct UsageView {
    data: Vec<UsageLineView>,
}

/// `GET /v1/customers/{id}/usage[?meterCode]`: quantity and amount so far per usage line of the
/// period containing today.
pub async fn usage(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
    QueryParams(query): QueryParams<UsageQuery>,
) -> Result<Json<UsageView>, ApiError> {
    caller.require(Scope::UsageRead)?;
    let lines = billing
        .customer_usage(&id, query.meter_code.as_deref())
        .await?;
    let midnight = |d: chrono::NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc();
    Ok(Json(UsageView {
        data: lines
            .into_iter()
            .map(|u| UsageLineView {
                contract_id: u.contract_id.into(),
                invoice_id: u.invoice_id.into(),
                line_id: u.line.line.id.to_string(),
                meter_id: u.meter_id.into(),
                description: u.line.line.description.clone(),
                dimensions: u.line.line.dimensions.clone(),
                quantity: u.line.line.quantity.normalize().to_string(),
                unit_amount: u.line.unit_amount.map(|a| a.to_string()),
                amount: format!("{:.*}", u.currency.minor_units() as usize, u.line.amount),
                currency: u.currency.code(),
                period_start: midnight(u.period.start),
                period_end: midnight(u.period.end),
            })
            .collect(),
    }))
}

/// A SetupIntent's client secret, for a Stripe Elements form.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SetupIntentView {
    id: String,
    client_secret: String,
}

/// `POST /v1/customers/{id}/setup-intents` → 201: collects a payment method for off-session
/// charges; the method is saved on the customer by the `setup_intent.succeeded` webhook.
pub async fn setup_intent(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<(StatusCode, Json<SetupIntentView>), ApiError> {
    caller.require(Scope::CustomersWrite)?;
    let intent = billing.create_setup_intent(&id).await?;
    Ok((
        StatusCode::CREATED,
        Json(SetupIntentView {
            id: intent.id,
            client_secret: intent.client_secret,
        }),
    ))
}
