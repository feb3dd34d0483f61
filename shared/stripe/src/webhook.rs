//! Stripe's signed notifications: the `Stripe-Signature` header checked, and the event read in
//! our terms ([`ProviderEvent`]).

use chrono::{DateTime, Utc};
use stripe_webhook::{EventObject, Webhook, WebhookError};

use billing::customer::{PaymentMethodId, ProviderCustomerId};
use billing::error::{Error, Result};
use billing::ids::CustomerId;
use billing::ports::{ProviderEvent, ProviderEventKind, WebhookVerifier};

use crate::invoice_in;
use crate::{META_CUSTOMER, META_SAVE};

/// Checks Stripe's `Stripe-Signature` header (HMAC-SHA256 with the endpoint secret, 300 s
/// tolerance) and reads the event in our terms.
#[derive(Clone)]
pub struct StripeWebhookVerifier {
    secret: String,
}

impl std::fmt::Debug for StripeWebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeWebhookVerifier")
            .finish_non_exhaustive()
    }
}

impl StripeWebhookVerifier {
    /// A verifier for the endpoint's signing secret (`whsec_…`). An empty secret is refused:
    /// anyone could sign with it.
    pub fn new(secret: &str) -> Result<Self> {
        if secret.trim().is_empty() {
            return Err(Error::internal("the Stripe webhook secret is empty"));
        }
        Ok(Self {
            secret: secret.to_owned(),
        })
    }
}

impl WebhookVerifier for StripeWebhookVerifier {
    fn verify(
        &self,
        payload: &str,
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent> {
        let signature = signature
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                Error::invalid(
                    "missing_signature",
                    "the Stripe-Signature header is missing",
                )
            })?;
        match Webhook::construct_event_with_timestamp(
            payload,
            signature,
            &self.secret,
            now.timestamp(),
        ) {
            Ok(event) => Ok(provider_event(event)),
            Err(WebhookError::BadSignature | WebhookError::BadHeader(_)) => Err(Error::invalid(
                "invalid_signature",
                "the Stripe-Signature header does not sign this payload with our secret",
            )),
            Err(WebhookError::BadTimestamp(at)) => Err(Error::invalid(
                "invalid_signature",
                format!(
                    "the signature's timestamp {at} is more than 300 s from now ({})",
                    now.timestamp()
                ),
            )),
            Err(WebhookError::BadKey) => Err(Error::internal("the webhook secret is unusable")),
            Err(WebhookError::BadParse(reason)) => unparsed_event(payload, &reason),
        }
    }
}

/// The event types mapped to something other than [`ProviderEventKind::Other`].
const HANDLED_EVENTS: [&str; 7] = [
    "checkout.session.completed",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "setup_intent.succeeded",
    "customer.created",
    "customer.updated",
    "charge.refunded",
];

/// A correctly signed payload async-stripe could not read. An event we ignore anyway is
/// acknowledged as `Other` (so Stripe stops resending it); one we need is `invalid_payload`.
fn unparsed_event(payload: &str, reason: &str) -> Result<ProviderEvent> {
    let invalid = || {
        Error::invalid(
            "invalid_payload",
            format!("unreadable Stripe event: {reason}"),
        )
    };
    let value: serde_json::Value = serde_json::from_str(payload).map_err(|_| invalid())?;
    let id = value.get("id").and_then(serde_json::Value::as_str);
    let kind = value.get("type").and_then(serde_json::Value::as_str);
    match (id, kind) {
        (Some(id), Some(kind)) if !HANDLED_EVENTS.contains(&kind) => Ok(ProviderEvent {
            id: id.to_owned(),
            kind: ProviderEventKind::Other {
                kind: kind.to_owned(),
            },
        }),
        _ => Err(invalid()),
    }
}

/// A verified Stripe event in our terms.
fn provider_event(event: stripe_webhook::Event) -> ProviderEvent {
    let type_name = event.type_.as_str().to_owned();
    let other = || ProviderEventKind::Other {
        kind: type_name.clone(),
    };
    let kind = match event.data.object {
        EventObject::CheckoutSessionCompleted(session) => {
            let metadata = session.metadata.as_ref();
            ProviderEventKind::CheckoutCompleted {
                invoice_id: metadata.and_then(invoice_in),
                payment_intent: session
                    .payment_intent
                    .as_ref()
                    .map(|pi| pi.id().as_str().to_owned()),
                customer: session
                    .customer
                    .as_ref()
                    .and_then(|c| ProviderCustomerId::parse(c.id().as_str()).ok()),
                save_payment_method: metadata
                    .and_then(|m| m.get(META_SAVE))
                    .is_some_and(|v| v == "true"),
            }
        }
        EventObject::PaymentIntentSucceeded(intent) => ProviderEventKind::PaymentSucceeded {
            invoice_id: invoice_in(&intent.metadata),
            payment_intent: intent.id.as_str().to_owned(),
        },
        EventObject::PaymentIntentPaymentFailed(intent) => ProviderEventKind::PaymentFailed {
            invoice_id: invoice_in(&intent.metadata),
            payment_intent: intent.id.as_str().to_owned(),
            message: intent
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "the payment failed".to_owned()),
        },
        EventObject::SetupIntentSucceeded(intent) => ProviderEventKind::SetupSucceeded {
            customer: intent
                .customer
                .as_ref()
                .and_then(|c| ProviderCustomerId::parse(c.id().as_str()).ok()),
            payment_method: intent
                .payment_method
                .as_ref()
                .and_then(|m| PaymentMethodId::parse(m.id().as_str()).ok()),
        },
        EventObject::CustomerCreated(customer) | EventObject::CustomerUpdated(customer) => {
            match ProviderCustomerId::parse(customer.id.as_str()) {
                Ok(id) => ProviderEventKind::CustomerUpserted {
                    customer: id,
                    name: customer.name.clone(),
                    email: customer.email.clone(),
                    our_id: customer
                        .metadata
                        .as_ref()
                        .and_then(|m| m.get(META_CUSTOMER))
                        .and_then(|v| CustomerId::parse(v).ok()),
                },
                Err(_) => {
                    tracing::warn!(customer = %customer.id, "ignoring a customer event with an unexpected id");
                    other()
                }
            }
        }
        EventObject::ChargeRefunded(charge)
            if charge.amount > 0 && charge.amount_refunded >= charge.amount =>
        {
            ProviderEventKind::Refunded {
                invoice_id: invoice_in(&charge.metadata),
                payment_intent: charge
                    .payment_intent
                    .as_ref()
                    .map(|pi| pi.id().as_str().to_owned()),
            }
        }
        _ => other(),
    };
    ProviderEvent {
        id: event.id.as_str().to_owned(),
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StripeGateway;
    use billing::error::ErrorKind;
    use billing::ids::InvoiceId;
    use chrono::TimeZone;
    use serde_json::{Value, json};

    const SECRET: &str = "whsec_test_secret";
    const INVOICE: &str = "inv_0123456789abcdef0123456789abcdef";
    const OUR_CUSTOMER: &str = "cus_0123456789abcdef0123456789abcdef";

    fn now() -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000, 0).single().unwrap()
    }

    fn verifier() -> StripeWebhookVerifier {
        StripeWebhookVerifier::new(SECRET).unwrap()
    }

    fn event(kind: &str, object: Value) -> String {
        json!({
            "id": "evt_1",
            "object": "event",
            "api_version": "2026-09-30.endive",
            "created": 1_800_000_000,
            "livemode": false,
            "pending_webhooks": 1,
            "type": kind,
            "data": { "object": object },
        })
        .to_string()
    }

    fn signed(payload: &str) -> String {
        Webhook::generate_test_header(payload, SECRET, Some(now().timestamp()))
    }

    fn verify(payload: &str) -> Result<ProviderEvent> {
        verifier().verify(payload, Some(&signed(payload)), now())
    }

    fn session(metadata: Value) -> Value {
        json!({
            "id": "cs_test_1",
            "object": "checkout.session",
            "automatic_tax": { "enabled": false },
            "created": 1_800_000_000,
            "custom_fields": [],
            "custom_text": {},
            "expires_at": 1_800_086_400,
            "livemode": false,
            "mode": "payment",
            "payment_method_types": ["card"],
            "payment_status": "paid",
            "shipping_options": [],
            "status": "complete",
            "customer": "cus_Stripe123",
            "payment_intent": "pi_123",
            "metadata": metadata,
        })
    }

    fn payment_intent(status: &str, metadata: Value, last_error: Value) -> Value {
        json!({
            "id": "pi_123",
            "object": "payment_intent",
            "amount": 4500,
            "amount_capturable": 0,
            "amount_received": 0,
            "capture_method": "automatic",
            "confirmation_method": "automatic",
            "created": 1_800_000_000,
            "currency": "usd",
            "livemode": false,
            "metadata": metadata,
            "payment_method_types": ["card"],
            "status": status,
            "last_payment_error": last_error,
        })
    }

    fn charge(amount: i64, refunded: i64) -> Value {
        json!({
            "id": "ch_1",
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": refunded,
            "billing_details": {},
            "captured": true,
            "created": 1_800_000_000,
            "currency": "usd",
            "disputed": false,
            "livemode": false,
            "metadata": { "invoiceId": INVOICE },
            "paid": true,
            "refunded": refunded == amount,
            "status": "succeeded",
            "payment_intent": "pi_123",
        })
    }

    fn code_of(result: Result<ProviderEvent>) -> String {
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::InvalidRequest, "{error}");
        error.code.into_owned()
    }

    #[test]
    fn a_good_signature_gives_the_checkout_in_our_terms() {
        let payload = event(
            "checkout.session.completed",
            session(json!({ "invoiceId": INVOICE, "savePaymentMethod": "true" })),
        );
        let event = verify(&payload).unwrap();
        assert_eq!(event.id, "evt_1");
        assert_eq!(
            event.kind,
            ProviderEventKind::CheckoutCompleted {
                invoice_id: Some(InvoiceId::parse(INVOICE).unwrap()),
                payment_intent: Some("pi_123".into()),
                customer: Some(ProviderCustomerId::parse("cus_Stripe123").unwrap()),
                save_payment_method: true,
            }
        );
    }

    #[test]
    fn a_foreign_invoice_id_is_none_and_save_defaults_to_false() {
        let payload = event(
            "checkout.session.completed",
            session(json!({ "invoiceId": "order-17" })),
        );
        let ProviderEventKind::CheckoutCompleted {
            invoice_id,
            save_payment_method,
            ..
        } = verify(&payload).unwrap().kind
        else {
            panic!("not a checkout");
        };
        assert_eq!(invoice_id, None);
        assert!(!save_payment_method);
    }

    #[test]
    fn a_bad_signature_is_refused() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        let other = Webhook::generate_test_header(&payload, "whsec_other", Some(now().timestamp()));
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&other), now())),
            "invalid_signature"
        );
        let tampered = payload.replace("cus_A", "cus_B");
        assert_eq!(
            code_of(verifier().verify(&tampered, Some(&signed(&payload)), now())),
            "invalid_signature"
        );
        for header in ["garbage", "t=abc,v1=00", "t=1800000000", "v1=00"] {
            assert_eq!(
                code_of(verifier().verify(&payload, Some(header), now())),
                "invalid_signature"
            );
        }
    }

    #[test]
    fn a_stale_or_future_signature_is_refused() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        let header = signed(&payload);
        let later = now() + chrono::Duration::seconds(301);
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&header), later)),
            "invalid_signature"
        );
        let earlier = now() - chrono::Duration::seconds(301);
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&header), earlier)),
            "invalid_signature"
        );
        let within = now() + chrono::Duration::seconds(299);
        assert!(verifier().verify(&payload, Some(&header), within).is_ok());
    }

    #[test]
    fn a_missing_header_is_refused() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        assert_eq!(
            code_of(verifier().verify(&payload, None, now())),
            "missing_signature"
        );
        assert_eq!(
            code_of(verifier().verify(&payload, Some("  "), now())),
            "missing_signature"
        );
    }

    #[test]
    fn one_matching_v1_among_several_is_enough() {
        let payload = event(
            "customer.created",
            json!({ "id": "cus_A", "created": 1, "livemode": false }),
        );
        let good = signed(&payload);
        let good_v1 = good.split_once(",v1=").unwrap().1;
        let header = format!(
            "t={},v1={},v0=abc,v1={good_v1}",
            now().timestamp(),
            "ab".repeat(32)
        );
        assert!(verifier().verify(&payload, Some(&header), now()).is_ok());
        let none_match = format!(
            "t={},v1={},v1={}",
            now().timestamp(),
            "ab".repeat(32),
            "cd".repeat(32)
        );
        assert_eq!(
            code_of(verifier().verify(&payload, Some(&none_match), now())),
            "invalid_signature"
        );
    }

    #[test]
    fn unknown_and_unhandled_types_are_other() {
        let payload = event("invoice.paid", json!({ "id": "in_1", "object": "invoice" }));
        assert_eq!(
            verify(&payload).unwrap(),
            ProviderEvent {
                id: "evt_1".into(),
                kind: ProviderEventKind::Other {
                    kind: "invoice.paid".into()
                },
            }
        );
        let payload = event("made.up_event", json!({}));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Other {
                kind: "made.up_event".into()
            }
        );
        // A known type async-stripe cannot read, that we ignore anyway: acknowledged.
        let payload = event("payment_intent.created", json!({ "id": "pi_1" }));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Other {
                kind: "payment_intent.created".into()
            }
        );
    }

    #[test]
    fn an_unreadable_payload_is_refused() {
        assert_eq!(code_of(verify("not json")), "invalid_payload");
        assert_eq!(code_of(verify(r#"{"id":"evt_1"}"#)), "invalid_payload");
        // A type we act on, with an object we cannot read.
        let payload = event("payment_intent.succeeded", json!({ "id": "pi_1" }));
        assert_eq!(code_of(verify(&payload)), "invalid_payload");
    }

    #[test]
    fn payments_carry_their_invoice() {
        let payload = event(
            "payment_intent.succeeded",
            payment_intent(
                "succeeded",
                json!({ "invoiceId": INVOICE, "attempt": "1" }),
                Value::Null,
            ),
        );
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::PaymentSucceeded {
                invoice_id: Some(InvoiceId::parse(INVOICE).unwrap()),
                payment_intent: "pi_123".into(),
            }
        );
        let payload = event(
            "payment_intent.payment_failed",
            payment_intent(
                "requires_payment_method",
                json!({ "invoiceId": "nope" }),
                json!({ "type": "card_error", "code": "card_declined", "message": "Your card was declined." }),
            ),
        );
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::PaymentFailed {
                invoice_id: None,
                payment_intent: "pi_123".into(),
                message: "Your card was declined.".into(),
            }
        );
    }

    #[test]
    fn setups_and_customers_are_read() {
        let payload = event(
            "setup_intent.succeeded",
            json!({
                "id": "seti_1", "object": "setup_intent", "created": 1, "livemode": false,
                "payment_method_types": ["card"], "status": "succeeded", "usage": "off_session",
                "customer": "cus_Stripe123", "payment_method": "pm_123",
            }),
        );
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::SetupSucceeded {
                customer: Some(ProviderCustomerId::parse("cus_Stripe123").unwrap()),
                payment_method: Some(PaymentMethodId::parse("pm_123").unwrap()),
            }
        );
        for kind in ["customer.created", "customer.updated"] {
            let payload = event(
                kind,
                json!({
                    "id": "cus_Stripe123", "object": "customer", "created": 1, "livemode": false,
                    "name": "Acme", "email": "billing@acme.test",
                    "metadata": { "customerId": OUR_CUSTOMER },
                }),
            );
            assert_eq!(
                verify(&payload).unwrap().kind,
                ProviderEventKind::CustomerUpserted {
                    customer: ProviderCustomerId::parse("cus_Stripe123").unwrap(),
                    name: Some("Acme".into()),
                    email: Some("billing@acme.test".into()),
                    our_id: Some(CustomerId::parse(OUR_CUSTOMER).unwrap()),
                }
            );
        }
        let payload = event(
            "customer.updated",
            json!({ "id": "cus_Stripe123", "object": "customer", "created": 1, "livemode": false }),
        );
        let ProviderEventKind::CustomerUpserted { our_id, name, .. } =
            verify(&payload).unwrap().kind
        else {
            panic!("not a customer");
        };
        assert_eq!((our_id, name), (None, None));
    }

    #[test]
    fn only_a_full_refund_is_a_refund() {
        let payload = event("charge.refunded", charge(4500, 4500));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Refunded {
                invoice_id: Some(InvoiceId::parse(INVOICE).unwrap()),
                payment_intent: Some("pi_123".into()),
            }
        );
        let payload = event("charge.refunded", charge(4500, 1000));
        assert_eq!(
            verify(&payload).unwrap().kind,
            ProviderEventKind::Other {
                kind: "charge.refunded".into()
            }
        );
    }

    #[test]
    fn an_empty_secret_is_refused() {
        assert!(StripeWebhookVerifier::new(" ").is_err());
        assert!(StripeGateway::new("", None).is_err());
    }
}
