//! `/pay/{token}`: the customer-facing payment page behind an invoice's signed link (HTML,
//! no API key: the link is the credential), and its Pay button.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use billing::Billing;
use billing::checkout::PortalAnswer;
use serde::Deserialize;

/// `?checkout=success|cancelled`, set by the provider's redirect back.
#[derive(Deserialize)]
pub struct PageQuery {
    checkout: Option<String>,
}

fn respond(answer: PortalAnswer) -> Response {
    match answer {
        PortalAnswer::Page { status, html } => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
                (header::REFERRER_POLICY, "no-referrer"),
            ],
            html,
        )
            .into_response(),
        PortalAnswer::Redirect(url) => (
            StatusCode::SEE_OTHER,
            [
                (header::LOCATION, url),
                (header::CACHE_CONTROL, "no-store".to_owned()),
            ],
        )
            .into_response(),
    }
}

/// `GET /pay/{token}`.
pub async fn page(
    State(billing): State<Billing>,
    Path(token): Path<String>,
    Query(query): Query<PageQuery>,
) -> Response {
    let notice = match query.checkout.as_deref() {
        Some("success") => Some("Thank you: your payment is being confirmed."),
        Some("cancelled") => Some("Payment cancelled. Nothing was charged."),
        _ => None,
    };
    respond(billing.portal_page(&token, notice).await)
}

/// `POST /pay/{token}` (the page's form): starts a checkout and redirects to it.
pub async fn pay(
    State(billing): State<Billing>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let save = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body)
        .unwrap_or_default()
        .iter()
        .any(|(k, v)| k == "savePaymentMethod" && v == "true");
    respond(billing.portal_checkout(&token, save).await)
}
