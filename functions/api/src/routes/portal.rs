//! `/pay/{token}`: the customer-facing payment page behind an invoice's signed link (HTML,
//! no API key: the link is the credential), and its Pay button.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use billing::Billing;
use billing::checkout::PortalAnswer;

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

/// A link whose token is not even text (bad percent-encoding): the same page as a forged one.
fn invalid_link() -> Response {
    respond(PortalAnswer::Page {
        status: 404,
        html: billing::portal::render_message_page(
            "Invalid payment link",
            "This payment link is not valid. Please use the link from your invoice email.",
        ),
    })
}

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
