//! The Stripe adapter (`billing::adapters::stripe`) against the local fake Stripe
//! (`infra/stripe`, localstripe patched to answer like Stripe), or Stripe's test mode when
//! `STRIPE_SECRET_KEY` is a test key: every `PaymentGateway` call, and the signed webhooks the
//! fake sends, read back by `StripeWebhookVerifier`. Needs `infra/.venv` (`infra/install.sh`)
//! for the fake; without it the tests fail, they never pass silently.

use std::collections::HashSet;
use std::time::Duration;

use billing::ErrorKind;
use billing::customer::{Email, PaymentMethodId, ProviderCustomerId};
use billing::ids::{CustomerId, InvoiceId};
use billing::money::Currency;
use billing::ports::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, NewProviderCustomer, PaymentGateway,
    ProviderEventKind, WebhookVerifier,
};
use billing_stripe::{StripeGateway, StripeWebhookVerifier};
use integration_tests::payments::{STRIPE_KEY, TestStripe};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn new_customer(name: &str) -> NewProviderCustomer {
    NewProviderCustomer {
        customer_id: CustomerId::generate(),
        name: name.to_owned(),
        email: Some(Email::parse("billing@acme.test").unwrap()),
    }
}

fn checkout(
    invoice: &InvoiceId,
    customer: Option<&ProviderCustomerId>,
    save: bool,
) -> CheckoutRequest {
    CheckoutRequest {
        invoice_id: invoice.clone(),
        customer: customer.cloned(),
        amount_minor: 4500,
        currency: Currency::USD,
        description: "Invoice for March".to_owned(),
        save_payment_method: save,
        success_url: "https://example.test/paid?session={CHECKOUT_SESSION_ID}".to_owned(),
        cancel_url: "https://example.test/cancel".to_owned(),
    }
}

/// Asserts that a call failed with this kind and code.
#[track_caller]
fn fails_with<T: std::fmt::Debug>(result: billing::Result<T>, kind: ErrorKind, code: &str) {
    let error = result.unwrap_err();
    assert_eq!((error.kind, error.code.as_ref()), (kind, code), "{error}");
}

fn charge(
    invoice: &InvoiceId,
    attempt: u32,
    customer: &ProviderCustomerId,
    method: &str,
) -> ChargeRequest {
    ChargeRequest {
        invoice_id: invoice.clone(),
        attempt,
        customer: customer.clone(),
        payment_method: PaymentMethodId::parse(method).unwrap(),
        amount_minor: 4500,
        currency: Currency::USD,
        sent_at: chrono::Utc::now(),
    }
}

/// The payments of `customer` for `invoice`.
async fn payments_for(
    stripe: &TestStripe,
    customer: &ProviderCustomerId,
    invoice: &InvoiceId,
) -> Vec<Value> {
    let list = stripe
        .get(&format!(
            "/v1/payment_intents?customer={}&limit=100",
            customer.as_str()
        ))
        .await;
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pi| pi["metadata"]["invoiceId"] == invoice.as_str())
        .cloned()
        .collect()
}

#[tokio::test]
async fn every_gateway_call_works() {
    let stripe = TestStripe::start();
    let gateway = stripe.gateway();

    // create_customer: idempotent per our id, with our id in the metadata.
    let acme = new_customer("Acme");
    let customer = gateway.create_customer(&acme).await.unwrap();
    assert_eq!(gateway.create_customer(&acme).await.unwrap(), customer);
    let stored = stripe
        .get(&format!("/v1/customers/{}", customer.as_str()))
        .await;
    assert_eq!(stored["metadata"]["customerId"], acme.customer_id.as_str());
    assert_eq!(stored["name"], "Acme");
    assert_eq!(stored["email"], "billing@acme.test");
    let other = gateway
        .create_customer(&new_customer("Other"))
        .await
        .unwrap();
    assert_ne!(other, customer);

    // customer_exists: true, unknown, deleted (by delete_customer).
    assert!(gateway.customer_exists(&customer).await.unwrap());
    let unknown = ProviderCustomerId::parse("cus_DoesNotExist1").unwrap();
    assert!(!gateway.customer_exists(&unknown).await.unwrap());
    // delete_customer: gone, and deleting it again is fine.
    gateway.delete_customer(&other).await.unwrap();
    gateway.delete_customer(&other).await.unwrap();
    assert!(!gateway.customer_exists(&other).await.unwrap());

    // attach_default_payment_method: the attached method becomes the default; attaching it
    // again is fine; unknown ids are named.
    let visa = PaymentMethodId::parse("pm_card_visa").unwrap();
    gateway
        .attach_default_payment_method(&customer, &visa)
        .await
        .unwrap();
    let card = stripe
        .default_method(&customer)
        .await
        .expect("a default method");
    assert!(card.starts_with("pm_") && card != "pm_card_visa", "{card}");
    let attached = PaymentMethodId::parse(card.as_str()).unwrap();
    gateway
        .attach_default_payment_method(&customer, &attached)
        .await
        .unwrap();
    assert_eq!(
        stripe.default_method(&customer).await.as_deref(),
        Some(card.as_str())
    );
    let missing = PaymentMethodId::parse("pm_DoesNotExist1").unwrap();
    fails_with(
        gateway
            .attach_default_payment_method(&customer, &missing)
            .await,
        ErrorKind::Unprocessable,
        "payment_method_not_found",
    );
    fails_with(
        gateway.attach_default_payment_method(&unknown, &visa).await,
        ErrorKind::Unprocessable,
        "payment_provider_customer_not_found",
    );
    fails_with(
        gateway
            .attach_default_payment_method(
                &customer,
                &PaymentMethodId::parse("pm_card_visa_chargeDeclined").unwrap(),
            )
            .await,
        ErrorKind::Unprocessable,
        "card_declined",
    );

    // create_setup_intent: a client secret for the browser.
    let setup = gateway.create_setup_intent(&customer).await.unwrap();
    assert!(setup.id.starts_with("seti_"), "{}", setup.id);
    assert!(
        setup.client_secret.starts_with(&setup.id),
        "{}",
        setup.client_secret
    );
    let stored = stripe.get(&format!("/v1/setup_intents/{}", setup.id)).await;
    assert_eq!(stored["usage"], "off_session");
    assert_eq!(stored["customer"], customer.as_str());
    // (The fake does not check the customer of a SetupIntent, so no negative case here.)

    // create_checkout: a hosted page for the invoice, with the invoice in the metadata.
    let invoice = InvoiceId::generate();
    let session = gateway
        .create_checkout(&checkout(&invoice, Some(&customer), true))
        .await
        .unwrap();
    assert!(
        session.url.starts_with(&stripe.checkout_origin()),
        "{}",
        session.url
    );
    if stripe.fake_only("the hosted Checkout page's content") {
        let page = reqwest::get(&session.url).await.unwrap();
        assert!(page.status().is_success());
        assert!(page.text().await.unwrap().contains("45.00 USD"));
    }
    let stored = stripe
        .get(&format!("/v1/checkout/sessions/{}", session.id))
        .await;
    assert_eq!(stored["metadata"]["invoiceId"], invoice.as_str());
    assert_eq!(stored["metadata"]["savePaymentMethod"], "true");
    assert_eq!(stored["amount_total"], 4500);
    assert_eq!(stored["currency"], "usd");
    assert_eq!(stored["customer"], customer.as_str());
    // Opening the page again gives a new session (no idempotency key).
    let again = gateway
        .create_checkout(&checkout(&invoice, Some(&customer), true))
        .await
        .unwrap();
    assert_ne!(again.id, session.id);
    let anonymous = gateway
        .create_checkout(&checkout(&InvoiceId::generate(), None, false))
        .await
        .unwrap();
    let stored = stripe
        .get(&format!("/v1/checkout/sessions/{}", anonymous.id))
        .await;
    assert_eq!(stored["metadata"]["savePaymentMethod"], "false");
    assert!(stored["customer"].is_null());

    // payment_method_of: after the page is paid, the method it was paid with.
    if stripe.fake_only("paying on the hosted Checkout page") {
        stripe.complete_checkout(&session.id).await;
        let paid = stripe
            .get(&format!("/v1/checkout/sessions/{}", session.id))
            .await;
        let intent = paid["payment_intent"]
            .as_str()
            .expect("a paid session has a payment")
            .to_owned();
        let stored = stripe.get(&format!("/v1/payment_intents/{intent}")).await;
        assert_eq!(stored["metadata"]["invoiceId"], invoice.as_str());
        assert_eq!(stored["setup_future_usage"], "off_session");
        let method = gateway
            .payment_method_of(&intent)
            .await
            .unwrap()
            .expect("a method");
        assert_eq!(Some(method.as_str()), stored["payment_method"].as_str());
    }
    let error = gateway
        .payment_method_of("pi_DoesNotExist1")
        .await
        .unwrap_err();
    assert_eq!(error.code, "payment_intent_not_found");

    // charge: succeeds once per attempt, however often it is sent.
    let invoice = InvoiceId::generate();
    let first = gateway
        .charge(&charge(&invoice, 1, &customer, &card))
        .await
        .unwrap();
    let ChargeOutcome::Succeeded { payment_intent } = &first else {
        panic!("not charged: {first:?}");
    };
    assert_eq!(
        gateway
            .charge(&charge(&invoice, 1, &customer, &card))
            .await
            .unwrap(),
        first
    );
    let payments = payments_for(&stripe, &customer, &invoice).await;
    assert_eq!(payments.len(), 1, "{payments:#?}");
    assert_eq!(payments[0]["id"], payment_intent.as_str());
    assert_eq!(payments[0]["amount_received"], 4500);
    assert_eq!(payments[0]["metadata"]["attempt"], "1");

    // A card that attaches but is declined when charged.
    let failing = PaymentMethodId::parse("pm_card_chargeCustomerFail").unwrap();
    gateway
        .attach_default_payment_method(&customer, &failing)
        .await
        .unwrap();
    let failing = stripe.default_method(&customer).await.unwrap();
    assert_ne!(failing, card);
    let invoice = InvoiceId::generate();
    let declined = gateway
        .charge(&charge(&invoice, 1, &customer, &failing))
        .await
        .unwrap();
    let ChargeOutcome::Failed {
        payment_intent: Some(declined_intent),
        code,
        message,
    } = &declined
    else {
        panic!("not declined: {declined:?}");
    };
    assert_eq!(code, "card_declined");
    assert!(message.contains("declined"), "{message}");
    assert!(declined_intent.starts_with("pi_"));
    assert_eq!(
        gateway
            .charge(&charge(&invoice, 1, &customer, &failing))
            .await
            .unwrap(),
        declined
    );
    assert_eq!(payments_for(&stripe, &customer, &invoice).await.len(), 1);
    // The next attempt is a new payment, with the good card.
    let retried = gateway
        .charge(&charge(&invoice, 2, &customer, &card))
        .await
        .unwrap();
    assert!(
        matches!(retried, ChargeOutcome::Succeeded { .. }),
        "{retried:?}"
    );
    assert_eq!(payments_for(&stripe, &customer, &invoice).await.len(), 2);

    // Unknown ids are the caller's error, named, not an outage.
    fails_with(
        gateway
            .charge(&charge(&InvoiceId::generate(), 1, &unknown, &card))
            .await,
        ErrorKind::Unprocessable,
        "payment_provider_customer_not_found",
    );
    fails_with(
        gateway
            .charge(&charge(
                &InvoiceId::generate(),
                1,
                &customer,
                "pm_DoesNotExist1",
            ))
            .await,
        ErrorKind::Unprocessable,
        "payment_method_not_found",
    );
}

#[tokio::test]
async fn outages_and_bad_keys_are_told_apart() {
    // Nothing listens on a port we just freed: an outage the caller may retry.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway =
        StripeGateway::new(STRIPE_KEY, Some(&format!("http://127.0.0.1:{port}"))).unwrap();
    let customer = ProviderCustomerId::parse("cus_Any1").unwrap();
    fails_with(
        gateway.customer_exists(&customer).await,
        ErrorKind::Unavailable,
        "payment_provider_unavailable",
    );
    let invoice = InvoiceId::generate();
    let error = gateway
        .charge(&charge(&invoice, 1, &customer, "pm_card_visa"))
        .await
        .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unavailable);

    let stripe = TestStripe::start();
    let gateway = StripeGateway::new("not_a_key", Some(&stripe.base)).unwrap();
    fails_with(
        gateway.customer_exists(&customer).await,
        ErrorKind::Internal,
        "payment_provider_auth_failed",
    );
}

/// Receives webhook deliveries: (Stripe-Signature, body) per request.
async fn webhook_receiver() -> (
    u16,
    tokio::sync::mpsc::UnboundedReceiver<(Option<String>, String)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0_u8; 8192];
                let (head_end, length) = loop {
                    let n = socket.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed before the headers ended");
                    buffer.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
                        let length = header(&head, "content-length")
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while buffer.len() < head_end + length {
                    let n = socket.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed before the body ended");
                    buffer.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
                let body = String::from_utf8(buffer[head_end..head_end + length].to_vec()).unwrap();
                let _ = tx.send((header(&head, "stripe-signature"), body));
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .await;
                let _ = socket.shutdown().await;
            });
        }
    });
    (port, rx)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

#[tokio::test]
async fn the_fakes_signed_webhooks_read_in_our_terms() {
    let fake = TestStripe::start();
    if !fake.fake_only("the fake's signed webhooks") {
        return;
    }
    let gateway = fake.gateway();
    let (port, mut deliveries) = webhook_receiver().await;
    let secret = "whsec_fake_secret";
    fake.send_webhooks_to("test", &format!("http://127.0.0.1:{port}/hook"), secret)
        .await;
    let verifier = StripeWebhookVerifier::new(secret).unwrap();

    let acme = new_customer("Acme");
    let customer = gateway.create_customer(&acme).await.unwrap();
    let invoice = InvoiceId::generate();
    let session = gateway
        .create_checkout(&checkout(&invoice, Some(&customer), true))
        .await
        .unwrap();
    fake.complete_checkout(&session.id).await;

    let mut seen = HashSet::new();
    let mut kinds = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 {
        let (signature, body) = tokio::time::timeout_at(deadline, deliveries.recv())
            .await
            .unwrap_or_else(|_| panic!("missing webhooks; got {kinds:#?}"))
            .unwrap();
        // Every delivery verifies (read, or acknowledged as Other), and only with our secret.
        let event = verifier
            .verify(&body, signature.as_deref(), chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(event.id.starts_with("evt_"), "{}", event.id);
        let wrong = StripeWebhookVerifier::new("whsec_other").unwrap();
        assert_eq!(
            wrong
                .verify(&body, signature.as_deref(), chrono::Utc::now())
                .unwrap_err()
                .code,
            "invalid_signature"
        );
        match &event.kind {
            ProviderEventKind::CustomerUpserted {
                customer: c,
                our_id,
                name,
                ..
            } if c == &customer => {
                assert_eq!(our_id.as_ref(), Some(&acme.customer_id));
                assert_eq!(name.as_deref(), Some("Acme"));
                seen.insert("customer");
            }
            ProviderEventKind::CheckoutCompleted {
                invoice_id,
                payment_intent,
                customer: c,
                save_payment_method,
            } => {
                assert_eq!(invoice_id.as_ref(), Some(&invoice));
                assert!(
                    payment_intent
                        .as_deref()
                        .is_some_and(|p| p.starts_with("pi_"))
                );
                assert_eq!(c.as_ref(), Some(&customer));
                assert!(save_payment_method);
                seen.insert("checkout");
            }
            ProviderEventKind::PaymentSucceeded { invoice_id, .. } => {
                assert_eq!(invoice_id.as_ref(), Some(&invoice));
                seen.insert("payment");
            }
            _ => {}
        }
        kinds.push(event.kind);
    }
}
