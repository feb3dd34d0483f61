//! Stripe's failures in our terms: an outage is `Unavailable` (503, retry later), a refusal of
//! the caller's ids is `Unprocessable` with a stable code naming the id, a key or account
//! problem is ours (500).

use stripe::{ApiErrors, ApiErrorsCode, ApiErrorsType, StripeError};

use crate::REQUEST_TIMEOUT;
use billing::error::{Error, ErrorKind};

/// The message async-stripe gives when a non-2xx answer has no readable Stripe error body
/// (an HTML page from a proxy, a truncated answer): an outage, not a refusal.
pub(crate) const UNREADABLE_ERROR_BODY: &str = "error deserializing Stripe error";

/// Which of the caller's ids a `resource_missing` answer is about, for a precise error.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Subject<'a> {
    /// The Stripe customer.
    Customer(&'a str),
    /// The payment method.
    PaymentMethod(&'a str),
    /// The PaymentIntent.
    PaymentIntent(&'a str),
    /// Unknown or not applicable.
    Nothing,
}

/// The id a `resource_missing` names, from its `param` or its message ("No such customer: …").
pub(crate) fn named_subject<'a>(
    api: &ApiErrors,
    customer: &'a str,
    method: Option<&'a str>,
) -> Option<Subject<'a>> {
    let param = api.param.as_deref().unwrap_or_default();
    let message = api
        .message
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if param == "customer" || message.contains("no such customer") {
        return Some(Subject::Customer(customer));
    }
    let method = method?;
    if param.starts_with("payment_method")
        || message.contains("no such paymentmethod")
        || message.contains("no such payment_method")
    {
        return Some(Subject::PaymentMethod(method));
    }
    None
}

/// Whether Stripe says an object does not exist.
pub(crate) fn is_missing(api: &ApiErrors, status: u16) -> bool {
    status == 404 || matches!(api.code, Some(ApiErrorsCode::ResourceMissing))
}

/// A Stripe failure in our terms.
pub(crate) fn provider_error(error: StripeError, subject: Subject<'_>) -> Error {
    match error {
        StripeError::Stripe(api, status) => api_error(&api, status, subject),
        StripeError::JSONDeserialize(message) if message == UNREADABLE_ERROR_BODY => {
            unavailable("Stripe answered with an unreadable error")
        }
        StripeError::JSONDeserialize(message) => Error::new(
            ErrorKind::Internal,
            "payment_provider_response_invalid",
            format!("cannot read Stripe's answer: {message}"),
        ),
        StripeError::ClientError(message) => unavailable(format!("cannot reach Stripe: {message}")),
        StripeError::Timeout => unavailable(format!(
            "Stripe did not answer within {} s",
            REQUEST_TIMEOUT.as_secs()
        )),
        StripeError::ConfigError(message) => {
            Error::internal(format!("Stripe client configuration: {message}"))
        }
    }
}

/// An error answer of the Stripe API in our terms.
pub(crate) fn api_error(api: &ApiErrors, status: u16, subject: Subject<'_>) -> Error {
    let code = api.code.as_ref().map(|c| c.as_str().to_owned());
    let message = api.message.clone().unwrap_or_default();
    let detail = format!(
        "Stripe answered {status} {}{}: {message}",
        api.type_.as_str(),
        code.as_deref()
            .map(|c| format!(" ({c})"))
            .unwrap_or_default()
    );
    let retry_later = status == 409
        || status == 429
        || status >= 500
        || matches!(api.type_, ApiErrorsType::ApiError)
        || matches!(api.code, Some(ApiErrorsCode::RateLimit));
    if retry_later {
        return unavailable(detail);
    }
    if status == 401 || status == 403 {
        return Error::new(ErrorKind::Internal, "payment_provider_auth_failed", detail);
    }
    if matches!(api.type_, ApiErrorsType::IdempotencyError) {
        return Error::conflict("payment_provider_idempotency_conflict", detail);
    }
    if is_missing(api, status) {
        return match subject {
            Subject::Customer(id) => Error::unprocessable(
                "payment_provider_customer_not_found",
                format!("Stripe has no customer '{id}'"),
            ),
            Subject::PaymentMethod(id) => Error::unprocessable(
                "payment_method_not_found",
                format!("Stripe has no payment method '{id}'"),
            ),
            Subject::PaymentIntent(id) => Error::unprocessable(
                "payment_intent_not_found",
                format!("Stripe has no payment '{id}'"),
            ),
            Subject::Nothing => Error::unprocessable("payment_provider_resource_missing", detail),
        };
    }
    if matches!(api.type_, ApiErrorsType::CardError) {
        // A card refused outside a charge (e.g. declined when attached): the card's problem.
        let code = code.unwrap_or_else(|| "card_error".to_owned());
        let message = if message.is_empty() { detail } else { message };
        return Error::unprocessable(code, message);
    }
    Error::unprocessable("payment_provider_rejected", detail)
}

/// A dependency failure the caller may retry (503).
pub(crate) fn unavailable(message: impl Into<String>) -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "payment_provider_unavailable",
        message,
    )
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    fn api(type_: &str, code: Option<&str>, message: &str) -> ApiErrors {
        ApiErrors {
            advice_code: None,
            charge: None,
            code: code.map(|c| ApiErrorsCode::from_str(c).unwrap()),
            decline_code: None,
            doc_url: None,
            message: Some(message.to_owned()),
            network_advice_code: None,
            network_decline_code: None,
            param: None,
            payment_intent: None,
            payment_method: None,
            payment_method_type: None,
            request_log_url: None,
            setup_intent: None,
            source: None,
            type_: ApiErrorsType::from_str(type_).unwrap(),
        }
    }

    #[test]
    fn provider_errors_map_to_our_kinds() {
        let missing = api(
            "invalid_request_error",
            Some("resource_missing"),
            "No such customer: 'cus_X'",
        );
        let e = api_error(
            &missing,
            400,
            named_subject(&missing, "cus_X", Some("pm_1")).unwrap(),
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (
                ErrorKind::Unprocessable,
                "payment_provider_customer_not_found"
            )
        );
        let missing = api(
            "invalid_request_error",
            Some("resource_missing"),
            "No such PaymentMethod: 'pm_1'",
        );
        let e = api_error(
            &missing,
            404,
            named_subject(&missing, "cus_X", Some("pm_1")).unwrap(),
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::Unprocessable, "payment_method_not_found")
        );
        for status in [429, 500, 502, 503, 409] {
            let e = api_error(&api("api_error", None, "oops"), status, Subject::Nothing);
            assert_eq!(
                (e.kind, e.code.as_ref()),
                (ErrorKind::Unavailable, "payment_provider_unavailable")
            );
        }
        let e = api_error(
            &api("invalid_request_error", None, "Invalid API Key"),
            401,
            Subject::Nothing,
        );
        assert_eq!(e.kind, ErrorKind::Internal);
        let e = api_error(
            &api(
                "idempotency_error",
                None,
                "Keys for idempotent requests ...",
            ),
            400,
            Subject::Nothing,
        );
        assert_eq!(e.kind, ErrorKind::Conflict);
        let e = api_error(
            &api(
                "card_error",
                Some("card_declined"),
                "Your card was declined.",
            ),
            402,
            Subject::Nothing,
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::Unprocessable, "card_declined")
        );
        let e = api_error(
            &api(
                "invalid_request_error",
                Some("amount_too_small"),
                "too small",
            ),
            400,
            Subject::Nothing,
        );
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::Unprocessable, "payment_provider_rejected")
        );
        for error in [
            StripeError::ClientError("connection refused".into()),
            StripeError::Timeout,
            StripeError::JSONDeserialize(UNREADABLE_ERROR_BODY.into()),
        ] {
            assert_eq!(
                provider_error(error, Subject::Nothing).kind,
                ErrorKind::Unavailable
            );
        }
    }
}
