//! `/pay/{token}`: the customer-facing payment page behind an invoice's signed link (HTML,
//! no API key: the link is the credential), and its Pay button. The pages are rendered by the
//! HTTP edge ([`billing_http::portal`]).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use billing::Billing;
use billing_http::portal::{invalid_link, respond};

/// `GET /pay/{token}`.
/// `?checkout=success|cancelled` (set by the provider's redirect back) adds a notice; any other
/// query is ignored, since a customer's browser must never see an error for it.
pub async fn page(
    State(billing): State<Billing>,
    token: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(Path(token)) = token else {
        return invalid_link();
    };
    let checkout =
        serde_urlencoded::from_str::<Vec<(String, String)>>(query.as_deref().unwrap_or(""))
            .unwrap_or_default()
            .into_iter()
            .find(|(k, _)| k == "checkout")
            .map(|(_, v)| v);
    let notice = match checkout.as_deref() {
        Some("success") => Some("Thank you: your payment is being confirmed."),
        Some("cancelled") => Some("Payment cancelled. Nothing was charged."),
        _ => None,
    };
    respond(billing.portal_page(&token).await, &token, notice)
}

/// `POST /pay/{token}` (the page's form): starts a checkout and redirects to it.
pub async fn pay(
    State(billing): State<Billing>,
    token: Result<Path<String>, PathRejection>,
    body: Bytes,
) -> Response {
    let Ok(Path(token)) = token else {
        return invalid_link();
    };
    let save = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "savePaymentMethod" && v == "true");
    respond(billing.portal_checkout(&token, save).await, &token, None)
}
