//! `/v1/invoices`: read and list (amounts computed when read), the upcoming preview, and the
//! operator's actions: void, mark paid, send again.

use axum::Json;
use axum::extract::State;
use billing::Billing;
use billing::api_key::Scope;
use billing::invoice::PricedInvoice;
use billing::pagination::PageRequest;
use billing::use_cases::MarkPaid;
use serde::Deserialize;

use super::List;
use billing_http::error::ApiError;
use billing_http::extract::{Caller, JsonBody, PathId, QueryParams};
use billing_http::views::InvoiceView;

/// The view of an invoice with its payment link.
fn view(billing: &Billing, p: PricedInvoice) -> InvoiceView {
    let link = billing.payment_link(&p.invoice);
    InvoiceView::with_link(p, link)
}

/// `GET /v1/invoices/{id}`.
pub async fn get(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<InvoiceView>, ApiError> {
    caller.require(Scope::InvoicesRead)?;
    let invoice = billing.invoice(&id).await?;
    Ok(Json(view(&billing, invoice)))
}

/// Query parameters of `GET /v1/invoices`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvoiceQuery {
    limit: Option<String>,
    cursor: Option<String>,
    customer_id: Option<String>,
    contract_id: Option<String>,
    status: Option<String>,
}

/// `GET /v1/invoices[?customerId&contractId&status]`, in period order.
pub async fn list(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<InvoiceQuery>,
) -> Result<Json<List<InvoiceView>>, ApiError> {
    caller.require(Scope::InvoicesRead)?;
    let page = PageRequest::parse(query.limit.as_deref(), query.cursor.as_deref())?;
    let invoices = billing
        .invoices(
            &page,
            query.customer_id.as_deref(),
            query.contract_id.as_deref(),
            query.status.as_deref(),
        )
        .await?;
    Ok(Json(List::from_page(invoices, |p| view(&billing, p))))
}

/// Query parameters of `GET /v1/invoices/upcoming`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpcomingQuery {
    contract_id: Option<String>,
}

/// `GET /v1/invoices/upcoming?contractId=`: the open invoice priced as if it closed now.
pub async fn upcoming(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<UpcomingQuery>,
) -> Result<Json<InvoiceView>, ApiError> {
    caller.require(Scope::InvoicesRead)?;
    let contract = query.contract_id.ok_or_else(|| {
        billing::Error::invalid("missing_field", "contractId is required").at("contractId")
    })?;
    Ok(Json(billing.upcoming_invoice(&contract).await?.into()))
}

/// `POST /v1/invoices/{id}/void`: any invoice not yet paid; voiding again answers it as is.
pub async fn void(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<InvoiceView>, ApiError> {
    caller.require(Scope::InvoicesWrite)?;
    let invoice = billing.void_invoice(&id).await?;
    Ok(Json(view(&billing, invoice)))
}

/// `POST /v1/invoices/{id}/mark-paid` with `{paidAt, reference}`: paid outside Stripe.
pub async fn mark_paid(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
    JsonBody(body): JsonBody<MarkPaid>,
) -> Result<Json<InvoiceView>, ApiError> {
    caller.require(Scope::InvoicesWrite)?;
    let invoice = billing.mark_invoice_paid(&id, body).await?;
    Ok(Json(view(&billing, invoice)))
}

/// `POST /v1/invoices/{id}/send`: mails a sent invoice to the customer again.
pub async fn send(
    State(billing): State<Billing>,
    Caller(caller): Caller,
    PathId(id): PathId,
) -> Result<Json<InvoiceView>, ApiError> {
    caller.require(Scope::InvoicesWrite)?;
    let invoice = billing.send_invoice(&id).await?;
    Ok(Json(view(&billing, invoice)))
}
