//! One invoice paid twice: the customer pays on the payment page while auto-pay charges the
//! card. Whichever payment is recorded first pays the invoice; the other is refunded in full
//! (reason `duplicate`), and its `charge.refunded` does not mark the invoice refunded.
//! Both orders: the page's payment arriving after the run's charge (the webhook refunds it),
//! and arriving between the run's read and its charge (the run refunds its own charge).

use std::sync::Arc;
use std::time::Duration;

use billing::ids::InvoiceId;
use billing::invoice::InvoiceStatus;
use billing::ports::LedgerStore;
use integration_tests::TestApp;
use integration_tests::payments::{BeforeCharge, HookedGateway, TestStripe};
use serde_json::{Value, json};

use crate::catalog::guide_catalog;
use crate::payments::{
    deliver, first_invoice, invoice, press_pay, previous_month, run_billing, subscribed_last_month,
};

/// A customer with a card whose auto-pay is paused, and last month's invoice sent (not
/// charged): (customer, Stripe id, sent invoice).
async fn sent_while_paused(app: &TestApp, stripe: &TestStripe) -> (Value, String, Value) {
    let (_, _, pro) = guide_catalog(app).await;
    let (customer, stripe_id, contract) = subscribed_last_month(
        app,
        stripe,
        "Heidi",
        json!({"paymentMethodId": "pm_card_visa", "autoPayPaused": true,
            "contacts": [{"email": "heidi@example.com"}]}),
        &pro,
    )
    .await;
    let report = run_billing(app, previous_month().1).await;
    assert_eq!(report["paused"], 1, "{report}");
    (customer, stripe_id, first_invoice(app, &contract).await)
}

/// Opens the invoice's payment page and presses Pay: the Checkout Session's id.
async fn open_checkout(invoice: &Value) -> String {
    let link = invoice["paymentLink"].as_str().expect("a payment link");
    let checkout = press_pay(link, false).await;
    checkout.rsplit('/').next().unwrap().to_owned()
}

async fn unpause(app: &TestApp, customer: &Value) {
    let id = customer["id"].as_str().unwrap();
    app.patch(
        &format!("/v1/customers/{id}"),
        json!({"autoPayPaused": false}),
    )
    .await
    .expect(200);
}

/// The refunds of a payment, once there is one (the webhook's refund is asynchronous).
async fn refunds_of(stripe: &TestStripe, payment_intent: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let refunds = refunds_of_now(stripe, payment_intent).await;
        if !refunds.is_empty() || tokio::time::Instant::now() > deadline {
            return refunds;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stripe's `charge.refunded` for a payment, delivered to the app again under a new id so it
/// is handled now, whatever became of the fake's own delivery.
async fn redeliver_refund_notice(app: &TestApp, stripe: &TestStripe, payment_intent: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let notice = loop {
        let events = stripe.get("/v1/events?type=charge.refunded").await;
        let found = events["data"].as_array().and_then(|all| {
            all.iter()
                .find(|e| e["data"]["object"]["payment_intent"] == payment_intent)
                .cloned()
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no charge.refunded for {payment_intent}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut again = notice;
    again["id"] = json!(format!("evt_{}", uuid::Uuid::new_v4().simple()));
    let handled = deliver(app, again).await;
    assert_eq!(handled["handled"], "charge.refunded", "{handled}");
}

#[tokio::test]
async fn a_page_payment_after_auto_pay_charged_is_refunded_and_the_invoice_stays_paid() {
    let stripe = TestStripe::start();
    if !stripe.fake_only("paying on the hosted Checkout page") {
        return;
    }
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (customer, customer_stripe, sent) = sent_while_paused(&app, &stripe).await;
    let id = sent["id"].as_str().unwrap();
    // The customer opens the page; meanwhile auto-pay resumes and the next run charges.
    let session = open_checkout(&sent).await;
    unpause(&app, &customer).await;
    let report = run_billing(&app, previous_month().1 + chrono::Days::new(1)).await;
    assert_eq!(report["charged"], 1, "{report}");
    let paid = invoice(&app, id).await;
    let charged = paid["payment"]["paymentIntent"]
        .as_str()
        .unwrap()
        .to_owned();
    // Then the customer pays on the page too: that payment is refunded.
    stripe.complete_checkout(&session).await;
    let from_page = stripe
        .get(&format!("/v1/checkout/sessions/{session}"))
        .await["payment_intent"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(from_page, charged);
    let refunds = refunds_of(&stripe, &from_page).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["reason"], "duplicate");
    assert_eq!(refunds[0]["amount"], paid["payment"]["amountDueMinorUnits"]);
    assert!(refunds_of_now(&stripe, &charged).await.is_empty());
    // Stripe's notice of that refund does not touch the invoice: it was paid by the charge.
    redeliver_refund_notice(&app, &stripe, &from_page).await;
    let after = invoice(&app, id).await;
    assert_eq!(after["status"], "PAID", "{after}");
    assert_eq!(after["payment"]["paymentIntent"], charged.as_str());
    assert_eq!(after["payment"]["refundedDuplicates"], json!([from_page]));
    assert_eq!(stripe.payment_intents(&customer_stripe).await.len(), 2);
}

/// The refunds of a payment as they are now.
async fn refunds_of_now(stripe: &TestStripe, payment_intent: &str) -> Vec<Value> {
    stripe
        .get(&format!("/v1/refunds?payment_intent={payment_intent}"))
        .await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_page_payment_between_the_runs_read_and_its_charge_makes_the_run_refund_its_charge() {
    let stripe = TestStripe::start();
    if !stripe.fake_only("paying on the hosted Checkout page") {
        return;
    }
    let app = TestApp::spawn_with_payments(&stripe).await;
    let (customer, customer_stripe, sent) = sent_while_paused(&app, &stripe).await;
    let id = InvoiceId::parse(sent["id"].as_str().unwrap()).unwrap();
    let session = open_checkout(&sent).await;
    unpause(&app, &customer).await;
    // Just before the run charges, the page's payment completes and its webhook marks the
    // invoice paid.
    let (base, key) = (stripe.base.clone(), stripe.key().to_owned());
    let store = integration_tests::startup().await.store();
    let paid_id = id.clone();
    let page_payment: BeforeCharge = Box::pin(async move {
        let completed = reqwest::Client::new()
            .post(format!("{base}/_test/checkout/sessions/{session}/complete"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert!(completed.status().is_success(), "{}", completed.status());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while store
            .invoice_state(&paid_id)
            .await
            .unwrap()
            .is_some_and(|s| s.invoice.status != InvoiceStatus::Paid)
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "never paid on the page"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let run = integration_tests::startup()
        .await
        .billing_run()
        .unwrap()
        .with_gateway(Arc::new(
            HookedGateway::new(stripe.gateway()).before_first_charge(page_payment),
        ));
    let day = previous_month().1 + chrono::Days::new(1);
    let report = run
        .run_daily(day, day.and_hms_opt(0, 15, 0).unwrap().and_utc())
        .await
        .unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(
        (report.charged, report.refunded_unneeded),
        (0, 1),
        "{report:?}"
    );
    // The customer is told (the outbox holds the receipt and the refund notice).
    assert!(report.mails_sent >= 2, "{report:?}");
    // The page's payment paid the invoice; the run's charge is refunded.
    let paid = invoice(&app, id.as_str()).await;
    assert_eq!(paid["status"], "PAID");
    let from_page = paid["payment"]["paymentIntent"]
        .as_str()
        .unwrap()
        .to_owned();
    let intents = stripe.payment_intents(&customer_stripe).await;
    assert_eq!(intents.len(), 2, "{intents:?}");
    let charged = intents
        .iter()
        .map(|pi| pi["id"].as_str().unwrap())
        .find(|pi| *pi != from_page)
        .unwrap()
        .to_owned();
    let refunds = refunds_of_now(&stripe, &charged).await;
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(refunds[0]["reason"], "duplicate");
    assert!(refunds_of_now(&stripe, &from_page).await.is_empty());
    assert_eq!(paid["payment"]["refundedDuplicates"], json!([charged]));
    redeliver_refund_notice(&app, &stripe, &charged).await;
    assert_eq!(invoice(&app, id.as_str()).await["status"], "PAID");
}
