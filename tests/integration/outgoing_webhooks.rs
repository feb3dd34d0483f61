//! Outgoing webhooks end to end: the real API, matcher, billing run and Stripe receiver write
//! events with their changes; the dev server's dispatcher (the real `webhook-dispatcher`
//! handler on an SQS queue of the test's own) signs and sends them to a real receiver on
//! 127.0.0.1 (tests/webhooks/receiver.py), which verifies every signature with the PyPI
//! `standardwebhooks` library. Retries run on a compressed schedule (seconds, not hours), and
//! what needs a minute to pass (coalesced usage events, leases of a killed dispatcher) moves
//! the dev server's test clock instead of waiting. Also: the operator's invoice actions (void,
//! mark paid, send again), concurrent ones included, and the endpoints' scopes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Days, SubsecRound, TimeDelta, Utc};
use integration_tests::TestApp;
use integration_tests::payments::{TestStripe, mails_to, own_address};
use integration_tests::webhooks::{Received, Receiver, outbox_entries};
use reqwest::Method;
use serde_json::{Value, json};

use crate::catalog::guide_catalog;
use crate::payments::{
    deliver, event, first_invoice, invoice, previous_month, run_billing, subscribed_last_month,
};

/// A receiver with an endpoint pointing at it (every type, or `events`), verifying with the
/// endpoint's secret: (receiver, endpoint id, secret).
async fn subscribe(app: &TestApp, events: Option<&[&str]>) -> (Receiver, String, String) {
    let receiver = Receiver::start();
    let endpoint = app.webhook_endpoint(&receiver.url, events).await;
    let secret = endpoint["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    assert!(secret.starts_with("whsec_"), "{endpoint}");
    receiver.secrets(&[&secret]).await;
    (
        receiver,
        endpoint["id"].as_str().unwrap().to_owned(),
        secret,
    )
}

/// Sets the dev server's test clock.
async fn set_clock(app: &TestApp, now: DateTime<Utc>) {
    app.post("/_local/clock", json!({ "now": now.to_rfc3339() }))
        .await
        .expect(200);
}

/// The body is `{id, type, createdAt, data}`, `webhook-id` is the body's id, and the
/// Standard Webhooks headers are there (the receiver's library verified the signature).
#[track_caller]
fn assert_standard_delivery(r: &Received) {
    assert!(r.verified, "not verified: {r:?}");
    let body = r.json.as_object().expect("a JSON object body");
    let keys: BTreeSet<&str> = body.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        BTreeSet::from(["id", "type", "createdAt", "data"]),
        "{}",
        r.body
    );
    assert_eq!(r.json["id"], r.id.as_str(), "webhook-id is the body's id");
    assert!(r.id.starts_with("msg_"), "{}", r.id);
    assert_eq!(r.json["type"], r.event_type.as_str());
    assert!(
        r.json["createdAt"]
            .as_str()
            .is_some_and(|t| t.parse::<DateTime<Utc>>().is_ok()),
        "{}",
        r.body
    );
    assert_eq!(r.headers["content-type"], "application/json");
    let timestamp: i64 = r.headers["webhook-timestamp"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("a numeric webhook-timestamp");
    assert!(
        (Utc::now().timestamp() - timestamp).abs() < 120,
        "the signature's timestamp is the real time of the attempt: {timestamp}"
    );
    let signature = r.headers["webhook-signature"].as_str().unwrap_or_default();
    assert!(
        signature.split(' ').all(|s| s.starts_with("v1,")),
        "{signature}"
    );
}

/// Each id once, keeping the first copy (deliveries are at least once).
fn distinct(received: &[Received]) -> Vec<Received> {
    let mut seen = BTreeSet::new();
    received
        .iter()
        .filter(|r| seen.insert(r.id.clone()))
        .cloned()
        .collect()
}

/// Accepted events about the resource `id` (`data.id`), each once.
fn about(received: &[Received], id: &str) -> Vec<Received> {
    distinct(
        &received
            .iter()
            .filter(|r| r.accepted() && r.json["data"]["id"] == id)
            .cloned()
            .collect::<Vec<_>>(),
    )
}

fn types_of(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.event_type.clone()).collect()
}

/// Every accepted delivery is listed by the API as delivered, with its type and a 2xx attempt.
async fn assert_listed_as_delivered(app: &TestApp, endpoint: &str, received: &[Received]) {
    let listed: BTreeMap<String, Value> = app
        .deliveries(endpoint)
        .await
        .into_iter()
        .map(|d| (d["eventId"].as_str().unwrap().to_owned(), d))
        .collect();
    for r in distinct(received).iter().filter(|r| r.accepted()) {
        let d = listed
            .get(&r.id)
            .unwrap_or_else(|| panic!("{} ({}) is not listed", r.id, r.event_type));
        assert_eq!(d["eventType"], r.event_type.as_str(), "{d}");
        assert_eq!(d["status"], "delivered", "{d}");
        assert_eq!(
            d["id"].as_str().unwrap().trim_start_matches("dlv_"),
            r.id.trim_start_matches("msg_")
        );
        let last = d["attempts"].as_array().unwrap().last().cloned().unwrap();
        assert!(
            last["statusCode"]
                .as_u64()
                .is_some_and(|c| (200..300).contains(&c)),
            "{d}"
        );
        assert!(last["durationMs"].is_u64(), "{d}");
    }
}

const ALL_TYPES: [&str; 13] = [
    "customer.created",
    "customer.updated",
    "contract.created",
    "contract.updated",
    "contract.terminated",
    "invoice.created",
    "invoice.updated",
    "invoice.sent",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.refunded",
    "usage.unbillable",
];

/// Every event type, each caused the way it happens in production: API calls, the billing run
/// (closing, auto-pay charging and failing through the fake Stripe), Stripe's refund notice,
/// and the usage matcher (coalesced per minute: the test clock moves past the minute).
#[tokio::test]
async fn every_event_type_arrives_signed_with_the_resource_as_its_get_returns_it() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_webhooks(Some(&stripe), "1s,1s").await;
    let (receiver, endpoint, _) = subscribe(&app, None).await;
    let (meter, free, pro) = guide_catalog(&app).await;

    // customer.created, contract.created, invoice.created; then customer.updated.
    let (alice, _, alice_contract) = subscribed_last_month(
        &app,
        &stripe,
        "Alice",
        json!({"paymentMethodId": "pm_card_visa"}),
        &pro,
    )
    .await;
    let alice_id = alice["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/v1/customers/{alice_id}"),
        json!({"legalName": "Alice Ltd", "tags": ["webhooks"]}),
    )
    .await
    .expect(200);
    let (_, _, carol_contract) = subscribed_last_month(
        &app,
        &stripe,
        "Carol",
        json!({"paymentMethodId": "pm_card_chargeCustomerFail"}),
        &pro,
    )
    .await;

    // The run on the period end: both invoices sent (invoice.sent); Alice's charged
    // (invoice.paid), Carol's declined (invoice.payment_failed).
    let (_, end) = previous_month();
    let report = run_billing(&app, end).await;
    assert_eq!(
        (report["sent"].as_u64(), report["charged"].as_u64()),
        (Some(2), Some(1)),
        "{report}"
    );
    // Stripe's notice of a full refund of Alice's payment: invoice.refunded.
    let alice_invoice = first_invoice(&app, &alice_contract).await;
    assert_eq!(alice_invoice["status"], "PAID", "{alice_invoice}");
    let alice_invoice_id = alice_invoice["id"].as_str().unwrap().to_owned();
    let pi = alice_invoice["payment"]["paymentIntent"].clone();
    deliver(
        &app,
        event(
            "charge.refunded",
            json!({"id": format!("ch_{}", uuid::Uuid::new_v4().simple()), "object": "charge",
                "amount": 5000, "amount_captured": 5000, "amount_refunded": 5000,
                "billing_details": {}, "captured": true, "created": 1, "currency": "usd",
                "disputed": false, "livemode": false, "metadata": {}, "paid": true,
                "refunded": true, "status": "succeeded", "payment_intent": pi}),
        ),
    )
    .await;
    assert_eq!(invoice(&app, &alice_invoice_id).await["status"], "REFUNDED");
    // Carol's retries after 1, 3 and 5 days fail too; the fourth failure turns auto-pay off
    // on her contract: contract.updated.
    let mut date = end;
    for days in [1u64, 3, 5] {
        date = date + Days::new(days);
        run_billing(&app, date).await;
    }
    let carol_contract_id = carol_contract["id"].as_str().unwrap();
    let carol_contract = app
        .get(&format!("/v1/contracts/{carol_contract_id}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(carol_contract["autoPay"], false, "{carol_contract}");

    // Dave cancels (contract.terminated, and his next period's invoice voided with it), and
    // his current invoice is voided by hand (invoice.voided).
    let dave = app.customer("Dave").await;
    let dave_contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": dave, "planId": free["id"],
                "startDate": end.to_string()}),
        )
        .await
        .expect(201)
        .clone();
    let dave_contract_id = dave_contract["id"].as_str().unwrap().to_owned();
    app.post(
        &format!("/v1/contracts/{dave_contract_id}/cancel"),
        json!({}),
    )
    .await
    .expect(200);
    let dave_current = first_invoice(&app, &dave_contract).await;
    let dave_current_id = dave_current["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/invoices/{dave_current_id}/void"), json!({}))
        .await
        .expect(200);

    // Usage, on the test clock: one event on Alice's open invoice (invoice.updated) and one
    // for a customer nobody knows (usage.unbillable), both coalesced per minute; then the
    // clock moves past the minute, and the dispatcher's sweep sends them.
    let now = Utc::now().trunc_subsecs(3);
    set_clock(&app, now).await;
    let unknown = format!("nobody-{}", uuid::Uuid::new_v4().simple());
    let unknown_key = uuid::Uuid::new_v4().to_string();
    app.send_event(
        json!({"eventName": meter["eventName"], "customerId": alice_id,
        "idempotencyKey": uuid::Uuid::new_v4().to_string()}),
    )
    .await;
    app.send_event(
        json!({"eventName": meter["eventName"], "externalCustomerId": unknown,
        "idempotencyKey": unknown_key}),
    )
    .await;
    app.wait_for_events(&format!("customerId={alice_id}&status=matched"), 1)
        .await;
    app.wait_for_events(
        &format!("externalCustomerId={unknown}&status=unknown_customer"),
        1,
    )
    .await;
    app.wait_until_settled().await;
    set_clock(&app, now + TimeDelta::minutes(4)).await;

    let got = receiver.wait_for_types(60, &ALL_TYPES).await;
    let all = receiver.requests().await;
    assert!(
        all.iter().all(|r| r.verified),
        "every delivery verifies: {:?}",
        all.iter().filter(|r| !r.verified).collect::<Vec<_>>()
    );
    for r in &got {
        assert_standard_delivery(r);
    }
    let types: BTreeSet<String> = types_of(&got).into_iter().collect();
    assert_eq!(
        types,
        ALL_TYPES.iter().map(|t| t.to_string()).collect(),
        "every type, nothing else"
    );

    // `data` is the resource as its GET returns it: the event of the resource's last change
    // was rendered after it, so it equals the GET now.
    let get = |path: String| {
        let app = &app;
        async move { app.get(&path).await.expect(200).clone() }
    };
    for (path, id) in [
        (format!("/v1/customers/{alice_id}"), alice_id.clone()),
        (
            format!("/v1/invoices/{alice_invoice_id}"),
            alice_invoice_id.clone(),
        ),
        (
            format!("/v1/invoices/{dave_current_id}"),
            dave_current_id.clone(),
        ),
        (
            format!("/v1/contracts/{dave_contract_id}"),
            dave_contract_id.clone(),
        ),
        (
            format!("/v1/contracts/{carol_contract_id}"),
            carol_contract_id.to_owned(),
        ),
    ] {
        let now = get(path.clone()).await;
        let events = about(&got, &id);
        assert!(
            events.iter().any(|r| r.json["data"] == now),
            "no event about {id} carries its GET {path}: {now:#}\nevents: {:#?}",
            events
                .iter()
                .map(|r| (&r.event_type, &r.json["data"]))
                .collect::<Vec<_>>()
        );
    }
    // Which resource each type was about.
    let of_type = |t: &str| -> Vec<Received> {
        distinct(
            &got.iter()
                .filter(|r| r.event_type == t)
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let data_ids = |t: &str| -> BTreeSet<String> {
        of_type(t)
            .iter()
            .filter_map(|r| r.json["data"]["id"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(data_ids("customer.updated").contains(&alice_id));
    assert!(data_ids("invoice.refunded").contains(&alice_invoice_id));
    assert!(data_ids("invoice.paid").contains(&alice_invoice_id));
    assert!(data_ids("contract.updated").contains(carol_contract_id));
    assert_eq!(
        data_ids("contract.terminated"),
        BTreeSet::from([dave_contract_id.clone()])
    );
    let dave_invoices = app.contract_invoices(&dave_contract_id).await;
    let voided: BTreeSet<String> = dave_invoices
        .iter()
        .filter(|i| i["status"] == "VOID")
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(voided.contains(&dave_current_id) && voided.len() >= 2);
    assert_eq!(data_ids("invoice.voided"), voided, "each void told once");
    let failed = of_type("invoice.payment_failed");
    assert_eq!(failed.len(), 4, "four declined attempts");
    assert!(failed.iter().all(|r| r.json["data"]["status"] == "SENT"));
    // invoice.updated carries the invoice with the minute's usage counted.
    let updated = of_type("invoice.updated");
    let usage_update = updated
        .iter()
        .find(|r| r.json["data"]["customerId"] == alice_id.as_str())
        .unwrap_or_else(|| panic!("no invoice.updated for Alice's usage: {updated:#?}"));
    let lines = usage_update.json["data"]["lineItems"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l["isMetered"] == true && l["quantity"] == "1"),
        "{lines:#?}"
    );
    // usage.unbillable: who, why, how many, and the first event as GET /v1/events lists it.
    let unbillable = of_type("usage.unbillable");
    assert_eq!(unbillable.len(), 1, "{unbillable:#?}");
    let data = &unbillable[0].json["data"];
    assert_eq!(data["externalCustomerId"], unknown.as_str(), "{data}");
    assert_eq!(data["status"], "unknown_customer", "{data}");
    assert!(data["reason"].as_str().is_some_and(|r| !r.is_empty()));
    assert_eq!(data["count"], 1, "{data}");
    let listed = app
        .events(&format!(
            "externalCustomerId={unknown}&status=unknown_customer"
        ))
        .await;
    assert_eq!(data["firstEvent"], listed[0], "{data}");
    assert_eq!(data["firstEvent"]["idempotencyKey"], unknown_key.as_str());

    assert_listed_as_delivered(&app, &endpoint, &got).await;
}

/// 500 (with a 3 KB body), then 503, then 200: three attempts a second apart, the same id and
/// body each time, and the deliveries list shows each attempt's status, duration and the
/// first kilobyte of the answer.
#[tokio::test]
async fn a_receiver_that_fails_then_answers_gets_the_retry_with_the_same_id_and_body() {
    let app = TestApp::spawn_with_webhooks(None, "1s,1s,1s").await;
    let (receiver, endpoint, _) = subscribe(&app, Some(&["customer.created"])).await;
    receiver.fail_next(&[500, 503], 3000).await;
    let customer = app.customer("Retried").await;

    let got = receiver
        .wait_until(30, "a success after two failures", |got| {
            got.iter().any(Received::accepted)
        })
        .await;
    assert_eq!(got.len(), 3, "{got:#?}");
    let answered: Vec<Value> = got.iter().map(|r| r.answered.clone()).collect();
    assert_eq!(answered, [json!(500), json!(503), json!(200)]);
    for r in &got {
        assert_standard_delivery(r);
        assert_eq!(r.id, got[0].id, "a redelivered event keeps its id");
        assert_eq!(r.body, got[0].body, "every attempt sends the same body");
    }
    assert_eq!(got[0].json["data"]["id"], customer.as_str());

    let delivery = app
        .wait_for_delivery(&endpoint, &got[0].id, 10, |d| d["status"] == "delivered")
        .await;
    assert_eq!(delivery["eventType"], "customer.created");
    assert!(delivery["nextAttemptAt"].is_null(), "{delivery}");
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{delivery:#}");
    for (attempt, code) in attempts.iter().zip([500, 503, 200]) {
        assert_eq!(attempt["statusCode"], code, "{attempt}");
        assert!(attempt["durationMs"].is_u64(), "{attempt}");
        assert_eq!(attempt["manual"], false);
    }
    assert_eq!(attempts[0]["error"], "answered 500");
    assert_eq!(
        attempts[0]["responseBody"].as_str().unwrap(),
        "x".repeat(1024),
        "at most 1 KB of the answer is kept"
    );
    assert!(attempts[2]["error"].is_null(), "{delivery:#}");
    let at = |i: usize| {
        attempts[i]["at"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
    };
    assert!(
        at(1) - at(0) >= TimeDelta::seconds(1) && at(2) - at(1) >= TimeDelta::seconds(1),
        "attempts follow the schedule: {delivery:#}"
    );
}

/// Down for every attempt of the (compressed) schedule: the delivery ends `failed`, each
/// attempt with its connection error. A manual retry while it still hangs up fails and leaves
/// it failed; once it is up, a manual retry delivers it, with the id it always had; a retry of
/// a delivered one sends it again, same id.
#[tokio::test]
async fn a_receiver_down_for_the_whole_window_ends_failed_and_a_manual_retry_then_delivers() {
    let app = TestApp::spawn_with_webhooks(None, "1s,1s").await;
    let (receiver, endpoint, _) = subscribe(&app, Some(&["customer.created"])).await;
    receiver.down().await;
    let customer = app.customer("Unreachable").await;

    let failed = loop_until(30, "a failed delivery", || async {
        app.deliveries(&endpoint)
            .await
            .into_iter()
            .find(|d| d["status"] == "failed")
    })
    .await;
    let attempts = failed["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "{failed:#}");
    for a in attempts {
        assert!(a["statusCode"].is_null(), "{a}");
        let error = a["error"].as_str().unwrap_or_default();
        assert!(error.contains("could not connect"), "{error}");
    }
    assert!(failed["nextAttemptAt"].is_null());
    assert!(receiver.requests().await.is_empty());
    let id = failed["id"].as_str().unwrap().to_owned();
    let event_id = failed["eventId"].as_str().unwrap().to_owned();
    let retry_path = format!("/v1/webhook-endpoints/{endpoint}/deliveries/{id}/retry");

    // A manual retry while the receiver hangs up: recorded, and the delivery stays failed.
    receiver.hang_up().await;
    let retried = app.post(&retry_path, json!({})).await;
    assert_eq!(retried.expect(202)["status"], "pending");
    let still = app
        .wait_for_delivery(&endpoint, &event_id, 20, |d| {
            d["attempts"].as_array().unwrap().len() == 4
        })
        .await;
    assert_eq!(still["status"], "failed", "{still:#}");
    assert_eq!(still["attempts"][3]["manual"], true);
    assert!(still["attempts"][3]["statusCode"].is_null(), "{still:#}");
    assert!(still["attempts"][3]["error"].is_string(), "{still:#}");

    // Up again: a manual retry delivers it.
    receiver.up().await;
    app.post(&retry_path, json!({})).await.expect(202);
    let delivered = app
        .wait_for_delivery(&endpoint, &event_id, 20, |d| d["status"] == "delivered")
        .await;
    let attempts = delivered["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 5, "{delivered:#}");
    assert_eq!(attempts[4]["manual"], true);
    assert_eq!(attempts[4]["statusCode"], 200);
    let got = receiver.accepted().await;
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_standard_delivery(&got[0]);
    assert_eq!(got[0].id, event_id);
    assert_eq!(got[0].json["data"]["id"], customer.as_str());

    // Sent again on request: the same id, so the receiver can tell it is the same event.
    app.post(&retry_path, json!({})).await.expect(202);
    let again = receiver
        .wait_until(20, "the redelivery", |got| {
            got.iter().filter(|r| r.accepted()).count() == 2
        })
        .await;
    let accepted: Vec<&Received> = again.iter().filter(|r| r.accepted()).collect();
    assert_eq!(accepted[1].id, event_id, "a redelivered event keeps its id");
    assert_eq!(accepted[1].body, accepted[0].body);

    // Unknown deliveries, and a disabled endpoint.
    app.post(
        &format!("/v1/webhook-endpoints/{endpoint}/deliveries/dlv_nope/retry"),
        json!({}),
    )
    .await
    .expect_error(404, "resource_missing");
    app.patch(
        &format!("/v1/webhook-endpoints/{endpoint}"),
        json!({"disabled": true}),
    )
    .await
    .expect(200);
    app.post(&retry_path, json!({}))
        .await
        .expect_error(409, "endpoint_disabled");
}

/// Polls `probe` every 150 ms until it answers something, failing after `secs` seconds.
async fn loop_until<T, F, Fut>(secs: u64, what: &str, probe: F) -> T
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// The dispatcher is killed twice in the middle of dispatching (its server dropped: every
/// task aborted wherever it was, attempts in flight cut off), and a new one takes over on the
/// same table and queue each time. Every event reaches both endpoints (perhaps twice, always
/// with the same id), the outbox ends empty and every delivery delivered. The next dispatcher
/// runs on a test clock three minutes ahead, so the killed one's leases (60 s) have run out
/// and its sweep finds what the dead one left (entries and deliveries over 2 minutes late).
#[tokio::test]
async fn killing_the_dispatcher_halfway_loses_nothing() {
    const CUSTOMERS: usize = 24;
    let first = TestApp::spawn_with_webhooks(None, "1s,1s,1s,1s,1s").await;
    let receiver = Receiver::start();
    let mut endpoints = Vec::new();
    let mut secrets = Vec::new();
    for path in ["a", "b"] {
        let url = format!("{}/{path}", receiver.url);
        let created = first
            .webhook_endpoint(&url, Some(&["customer.created"]))
            .await;
        endpoints.push(created["id"].as_str().unwrap().to_owned());
        secrets.push(created["secret"].as_str().unwrap().to_owned());
    }
    receiver
        .secrets(&secrets.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
    // Slow answers, so the kill finds attempts in flight.
    receiver.delay(400).await;
    let mut customers = BTreeSet::new();
    for i in 0..CUSTOMERS {
        customers.insert(first.customer(&format!("Customer {i}")).await);
    }
    let expected = CUSTOMERS * endpoints.len();

    let count = |got: &[Received]| got.iter().filter(|r| r.accepted()).count();
    let at_first_kill = count(
        &receiver
            .wait_until(60, "a third of the deliveries", |got| {
                count(got) >= expected / 3
            })
            .await,
    );
    let usage_queue = first.queue.clone();
    drop(first);
    assert!(
        at_first_kill < expected,
        "killed after everything was sent ({at_first_kill} of {expected}): the test proves nothing"
    );
    let second = TestApp::spawn_beside(usage_queue.clone(), true).await;
    set_clock(&second, Utc::now() + TimeDelta::minutes(3)).await;
    let at_second_kill = count(
        &receiver
            .wait_until(60, "two thirds of the deliveries", |got| {
                count(got) >= at_first_kill + (expected - at_first_kill) / 2
            })
            .await,
    );
    // On a fast engine the second dispatcher may have finished before it is killed: the first
    // kill (checked above to come mid-way) is what this test needs; the second adds a take-over
    // of a take-over when it comes in time.
    drop(second);
    eprintln!("second kill after {at_second_kill} of {expected} deliveries");
    let third = TestApp::spawn_beside(usage_queue, true).await;
    set_clock(&third, Utc::now() + TimeDelta::minutes(6)).await;
    receiver.delay(0).await;

    // Every (endpoint, customer) arrives, each event under one id wherever it arrives.
    let got = receiver
        .wait_until(90, "every delivery", |got| {
            let pairs: BTreeSet<(String, String)> = got
                .iter()
                .filter(|r| r.accepted())
                .map(|r| (r.path.clone(), data_id(r)))
                .collect();
            pairs.len() == expected
        })
        .await;
    let mut ids_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in got.iter().filter(|r| r.accepted()) {
        assert_standard_delivery(r);
        ids_of.entry(data_id(r)).or_default().insert(r.id.clone());
    }
    assert_eq!(
        ids_of.keys().cloned().collect::<BTreeSet<_>>(),
        customers,
        "every customer.created"
    );
    assert!(
        ids_of.values().all(|ids| ids.len() == 1),
        "one id per event, whichever endpoint and however often: {ids_of:#?}"
    );
    eprintln!(
        "killed at {at_first_kill} and {at_second_kill} of {expected} deliveries; {} requests in all ({} duplicates)",
        got.len(),
        got.iter().filter(|r| r.accepted()).count() - expected
    );
    let endpoint_refs: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    third.wait_until_dispatched(&endpoint_refs, 60).await;
    assert!(outbox_entries(true).await.is_empty());
    for endpoint in &endpoints {
        let listed = third.deliveries(endpoint).await;
        assert_eq!(
            listed.len(),
            CUSTOMERS,
            "one delivery per event and endpoint"
        );
        assert!(
            listed.iter().all(|d| d["status"] == "delivered"),
            "{listed:#?}"
        );
    }
}

fn data_id(r: &Received) -> String {
    r.json["data"]["id"].as_str().unwrap_or_default().to_owned()
}

/// Creation refuses SSRF targets (metadata, private and unique-local addresses, metadata
/// names) and `http` except to loopback; an endpoint answering a redirect is not followed.
#[tokio::test]
async fn ssrf_targets_are_refused_and_redirects_are_not_followed() {
    let app = TestApp::spawn_with_webhooks(None, "1s").await;
    for (url, code) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "url_not_allowed",
        ),
        ("https://169.254.169.254/", "url_not_allowed"),
        ("https://10.0.0.5/hook", "url_not_allowed"),
        ("https://192.168.1.10/hook", "url_not_allowed"),
        ("https://[fd00:ec2::254]/", "url_not_allowed"),
        ("https://[::ffff:169.254.169.254]/", "url_not_allowed"),
        (
            "https://metadata.google.internal/computeMetadata/v1/",
            "url_not_allowed",
        ),
        ("http://hooks.example.com/billing", "invalid_url"),
        ("ftp://hooks.example.com/", "invalid_url"),
        ("https://user:secret@hooks.example.com/", "invalid_url"),
    ] {
        let answer = app
            .post("/v1/webhook-endpoints", json!({ "url": url }))
            .await;
        answer.expect_error(422, code);
        assert_eq!(answer.param(), "url", "{url}");
    }
    assert!(
        app.get("/v1/webhook-endpoints").await.expect(200)["data"]
            .as_array()
            .unwrap()
            .is_empty(),
        "a refused endpoint writes nothing"
    );
    // Loopback http is the local stack's exception; a PATCH is held to the same rules.
    let (receiver, endpoint, _) = subscribe(&app, Some(&["customer.created"])).await;
    app.patch(
        &format!("/v1/webhook-endpoints/{endpoint}"),
        json!({"url": "https://169.254.169.254/"}),
    )
    .await
    .expect_error(422, "url_not_allowed");

    // A redirect (to the receiver itself, so following it would show) is an answer, not a
    // hop: the attempt records the 302, and the retry delivers.
    let followed = receiver.url.replace("/hook", "/followed");
    receiver
        .configure(json!({"fail": [302], "failLocation": followed}))
        .await;
    app.customer("Redirected").await;
    let got = receiver
        .wait_until(20, "the retry after the redirect", |got| {
            got.iter().any(Received::accepted)
        })
        .await;
    assert!(
        got.iter().all(|r| r.path == "/hook"),
        "the redirect was followed: {got:#?}"
    );
    assert_eq!(got.len(), 2, "{got:#?}");
    let delivery = app
        .wait_for_delivery(&endpoint, &got[0].id, 10, |d| d["status"] == "delivered")
        .await;
    assert_eq!(delivery["attempts"][0]["statusCode"], 302);
    assert_eq!(delivery["attempts"][0]["error"], "answered 302");
}

/// Deployed rules (https, public addresses only): a name is checked after DNS resolution, at
/// each delivery. This machine's own hostname resolves to a loopback or private address, so an
/// endpoint naming it is accepted (it is a name) and refused when delivering, with the reason
/// in the attempt; nothing reaches the address.
#[tokio::test]
async fn a_name_that_resolves_to_a_refused_address_is_refused_when_delivering() {
    // SAFETY: before the server starts; each test runs in a process of its own.
    unsafe { std::env::set_var("WEBHOOK_ALLOW_LOOPBACK_HTTP", "0") };
    let app = TestApp::spawn_with_webhooks(None, "1s").await;
    let receiver = Receiver::start();
    app.post("/v1/webhook-endpoints", json!({ "url": receiver.url }))
        .await
        .expect_error(422, "url_not_allowed");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the hostname")
        .trim()
        .to_owned();
    let resolved: Vec<std::net::IpAddr> = tokio::net::lookup_host((host.as_str(), 443))
        .await
        .unwrap_or_else(|e| panic!("{host} does not resolve ({e}): this test needs it to"))
        .map(|a| a.ip())
        .collect();
    assert!(
        resolved
            .iter()
            .all(|ip| !billing::webhooks::UrlPolicy::PublicHttps.allows_ip(*ip)),
        "{host} resolves to {resolved:?}, a public address: this test needs a name that \
         resolves to a loopback or private one"
    );
    let created = app
        .webhook_endpoint(
            &format!("https://{host}:{}/hook", receiver.port),
            Some(&["customer.created"]),
        )
        .await;
    let endpoint = created["id"].as_str().unwrap();
    app.customer("Resolved").await;
    let failed = loop_until(20, "a failed delivery", || async {
        app.deliveries(endpoint)
            .await
            .into_iter()
            .find(|d| d["status"] == "failed")
    })
    .await;
    let attempts = failed["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{failed:#}");
    for a in attempts {
        assert!(a["statusCode"].is_null(), "{a}");
        let error = a["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(&format!("refused: {host} resolves to")),
            "{error}"
        );
    }
    assert!(receiver.requests().await.is_empty());
}

/// A plan billed in arrears with net terms (no auto-pay), a customer with a contact of the
/// test's own, subscribed since last month; last month closed and sent by the run: (customer,
/// contact, contract, sent invoice).
async fn sent_invoice(app: &TestApp, name: &str) -> (String, String, Value, Value) {
    let plan = app
        .plan(json!({"name": "Net 30", "currency": "USD", "netTerms": 30,
            "prices": [{"model": "FLAT", "flatAmount": "10.00", "description": "Base"}]}))
        .await;
    let contact = own_address(name);
    let customer = app
        .post(
            "/v1/customers",
            json!({"name": name, "contacts": [{"email": contact}]}),
        )
        .await
        .expect(201)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (start, end) = previous_month();
    let contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": customer, "planId": plan["id"], "startDate": start.to_string()}),
        )
        .await
        .expect(201)
        .clone();
    run_billing(app, end).await;
    let sent = first_invoice(app, &contract).await;
    assert_eq!(sent["status"], "SENT", "{sent}");
    (customer, contact, contract, sent)
}

/// Void: a sent invoice and a draft; its payment page then says Void; usage for its period
/// goes late to the next open invoice; voiding again changes nothing; each void is one
/// `invoice.voided`.
#[tokio::test]
async fn void_takes_sent_and_open_invoices_and_later_usage_for_the_period_goes_late() {
    let app = TestApp::spawn_with_webhooks(None, "1s").await;
    let (receiver, endpoint, _) = subscribe(&app, Some(&["invoice.voided"])).await;
    let code = integration_tests::unique_code("VOIDED");
    let meter = app
        .meter(json!({"code": code, "eventName": code.to_lowercase(), "aggregationType": "COUNT"}))
        .await;
    let plan = app
        .plan(json!({"name": "Usage", "currency": "USD", "netTerms": 30,
            "prices": [{"model": "USAGE", "meterCode": code, "unitAmount": "1.00"}]}))
        .await;
    let customer = app.customer("Voided").await;
    let (start, end) = previous_month();
    let contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": customer, "planId": plan["id"], "startDate": start.to_string()}),
        )
        .await
        .expect(201)
        .clone();
    let contract_id = contract["id"].as_str().unwrap();
    app.send_event(
        json!({"eventName": meter["eventName"], "customerId": customer,
        "timestamp": format!("{}T12:00:00Z", end - Days::new(2))}),
    )
    .await;
    app.wait_for_events(&format!("customerId={customer}&status=matched"), 1)
        .await;
    app.wait_until_settled().await;
    run_billing(&app, end).await;
    let invoices = app.contract_invoices(contract_id).await;
    let (last_month, this_month) = (&invoices[0], &invoices[1]);
    assert_eq!(last_month["status"], "SENT", "{last_month}");
    assert_eq!(last_month["total"], "1.00", "{last_month}");
    let next = invoices
        .iter()
        .find(|i| i["status"] == "DRAFTED" && i["id"] != this_month["id"])
        .unwrap_or_else(|| panic!("no draft after this month's: {invoices:#?}"));

    // The sent invoice: void, and its page says so.
    let sent_id = last_month["id"].as_str().unwrap();
    let voided = app
        .post(&format!("/v1/invoices/{sent_id}/void"), json!({}))
        .await
        .expect(200)
        .clone();
    assert_eq!(voided["status"], "VOID");
    assert!(voided["payment"]["nextAttemptOn"].is_null());
    let page = reqwest::get(last_month["paymentLink"].as_str().expect("a payment link"))
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("Void") && html.contains("Nothing is due"),
        "{html}"
    );
    // Again: the same void invoice, no new event.
    let again = app
        .post(&format!("/v1/invoices/{sent_id}/void"), json!({}))
        .await
        .expect(200)
        .clone();
    assert_eq!(again, voided, "voiding again changes nothing");
    // A draft of a period to come.
    let next_id = next["id"].as_str().unwrap();
    app.post(&format!("/v1/invoices/{next_id}/void"), json!({}))
        .await
        .expect(200);
    app.post("/v1/invoices/inv_nope/void", json!({}))
        .await
        .expect_error(404, "resource_missing");

    // Usage of the voided period arriving now takes the late path, to this month's invoice.
    app.send_event(
        json!({"eventName": meter["eventName"], "customerId": customer,
        "timestamp": format!("{}T12:00:00Z", end - Days::new(1))}),
    )
    .await;
    let late = app
        .wait_for_events(&format!("customerId={customer}&status=late"), 1)
        .await;
    assert_eq!(late[0]["matches"][0]["invoiceId"], this_month["id"]);
    app.wait_for_invoice(this_month["id"].as_str().unwrap(), "late usage line", |i| {
        i["lineItems"].as_array().unwrap().iter().any(|l| {
            l["description"].as_str().unwrap().contains("late usage") && l["quantity"] == "1"
        })
    })
    .await;
    assert_eq!(
        invoice(&app, sent_id).await,
        voided,
        "a void invoice never changes"
    );

    app.wait_until_dispatched(&[&endpoint], 30).await;
    let got = distinct(&receiver.accepted().await);
    let ids: Vec<&str> = got
        .iter()
        .map(|r| r.json["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{:#?}", types_of(&got));
    assert!(ids.contains(&sent_id) && ids.contains(&next_id), "{ids:?}");
    let sent_event = got
        .iter()
        .find(|r| r.json["data"]["id"] == sent_id)
        .unwrap();
    assert_eq!(
        sent_event.json["data"], voided,
        "data is the invoice as GET shows it"
    );
}

/// Mark paid: a bank transfer recorded on a sent auto-pay invoice (whose customer's auto-pay
/// was paused); the receipt is mailed once; repeating it answers the same; the run no longer
/// charges it; the refusals.
#[tokio::test]
async fn mark_paid_records_the_transfer_stops_auto_pay_and_repeats_safely() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_webhooks(Some(&stripe), "1s").await;
    let (receiver, endpoint, _) = subscribe(&app, Some(&["invoice.paid"])).await;
    let (_, _, pro) = guide_catalog(&app).await;
    let contact = own_address("transfer");
    let (customer, stripe_id, contract) = subscribed_last_month(
        &app,
        &stripe,
        "Transfer",
        json!({"paymentMethodId": "pm_card_visa", "autoPayPaused": true,
            "contacts": [{"email": contact}]}),
        &pro,
    )
    .await;
    let (_, end) = previous_month();
    let report = run_billing(&app, end).await;
    assert_eq!(report["paused"], 1, "{report}");
    let invoices = app
        .contract_invoices(contract["id"].as_str().unwrap())
        .await;
    let (sent, open) = (&invoices[0], &invoices[1]);
    assert_eq!(sent["status"], "SENT");
    assert!(sent["payment"]["nextAttemptOn"].is_string(), "{sent}");
    let id = sent["id"].as_str().unwrap();
    let mark = |body: Value| {
        let app = &app;
        async move {
            app.post(&format!("/v1/invoices/{id}/mark-paid"), body)
                .await
        }
    };

    mark(json!({})).await.expect_error(400, "missing_field");
    mark(json!({"reference": "X", "paidAt": (Utc::now() + TimeDelta::days(2)).to_rfc3339()}))
        .await
        .expect_error(422, "paid_at_in_future");
    mark(json!({"reference": "X", "amount": "50.00"}))
        .await
        .expect_error(400, "unknown_field");
    app.post(
        &format!("/v1/invoices/{}/mark-paid", open["id"].as_str().unwrap()),
        json!({"reference": "X"}),
    )
    .await
    .expect_error(409, "invoice_not_sent");

    let paid_at = format!("{}T09:30:00Z", end + Days::new(1));
    let paid = mark(json!({"paidAt": paid_at, "reference": "BANK-TRANSFER-0042"}))
        .await
        .expect(200)
        .clone();
    assert_eq!(paid["status"], "PAID");
    assert_eq!(paid["payment"]["externalReference"], "BANK-TRANSFER-0042");
    assert_eq!(
        paid["payment"]["paidAt"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        paid_at.parse::<DateTime<Utc>>().unwrap()
    );
    assert!(
        paid["payment"]["nextAttemptOn"].is_null(),
        "auto-pay stops: {paid}"
    );
    // Repeating it is safe; another reference, or voiding it, is a conflict.
    let again = mark(json!({"paidAt": paid_at, "reference": "BANK-TRANSFER-0042"}))
        .await
        .expect(200)
        .clone();
    assert_eq!(again, paid);
    mark(json!({"reference": "ANOTHER"}))
        .await
        .expect_error(409, "invoice_already_paid");
    app.post(&format!("/v1/invoices/{id}/void"), json!({}))
        .await
        .expect_error(409, "invoice_paid");

    // Auto-pay resumes for the customer, but this invoice is not charged.
    app.patch(
        &format!("/v1/customers/{}", customer["id"].as_str().unwrap()),
        json!({"autoPayPaused": false}),
    )
    .await
    .expect(200);
    let report = run_billing(&app, end + Days::new(1)).await;
    assert_eq!(report["charged"], 0, "{report}");
    assert!(stripe.payment_intents(&stripe_id).await.is_empty());
    assert_eq!(invoice(&app, id).await, paid);
    // The receipt, once, sent with the run's mail outbox.
    let number = paid["invoiceNumber"].as_str().unwrap();
    let receipts: Vec<_> = mails_to(std::slice::from_ref(&contact))
        .await
        .into_iter()
        .filter(|m| m.subject == format!("Payment received for invoice {number}"))
        .collect();
    assert_eq!(receipts.len(), 1, "{receipts:?}");

    app.wait_until_dispatched(&[&endpoint], 30).await;
    let got = about(&receiver.accepted().await, id);
    assert_eq!(
        types_of(&got),
        ["invoice.paid"],
        "one event for the two calls"
    );
    assert_eq!(got[0].json["data"], paid);
}

/// Send: mails the invoice again (one more mail to its contact, with its number and total)
/// and emits `invoice.sent`; an open or void invoice cannot be sent.
#[tokio::test]
async fn send_mails_the_invoice_again_and_emits_invoice_sent() {
    let app = TestApp::spawn_with_webhooks(None, "1s").await;
    let (receiver, endpoint, _) = subscribe(&app, Some(&["invoice.sent"])).await;
    let (_, contact, contract, sent) = sent_invoice(&app, "resent").await;
    let id = sent["id"].as_str().unwrap();
    let number = sent["invoiceNumber"].as_str().unwrap();
    let subject = format!("Invoice {number}: USD 10.00");
    let mails = || async {
        mails_to(std::slice::from_ref(&contact))
            .await
            .into_iter()
            .filter(|m| m.subject == subject)
            .count()
    };
    assert_eq!(mails().await, 1, "sent once by the run");
    let resent = app
        .post(&format!("/v1/invoices/{id}/send"), json!({}))
        .await
        .expect(200)
        .clone();
    assert_eq!(resent["status"], "SENT");
    assert!(resent["payment"]["resentAt"].is_string(), "{resent}");
    assert_eq!(mails().await, 2, "mailed again, at once");

    let invoices = app
        .contract_invoices(contract["id"].as_str().unwrap())
        .await;
    let open = invoices[1]["id"].as_str().unwrap();
    app.post(&format!("/v1/invoices/{open}/send"), json!({}))
        .await
        .expect_error(409, "invoice_not_sent");
    app.post(&format!("/v1/invoices/{open}/void"), json!({}))
        .await
        .expect(200);
    app.post(&format!("/v1/invoices/{open}/send"), json!({}))
        .await
        .expect_error(409, "invoice_voided");
    assert_eq!(mails().await, 2);

    app.wait_until_dispatched(&[&endpoint], 30).await;
    let got = about(&receiver.accepted().await, id);
    assert_eq!(
        types_of(&got),
        ["invoice.sent", "invoice.sent"],
        "closed and sent by the run, then sent again"
    );
    assert!(got.iter().any(|r| r.json["data"] == resent));
}

/// Five voids and five mark-paids at once on each of three sent invoices: each ends either
/// void (every void 200, every mark-paid 409) or paid (every mark-paid 200 with the same
/// answer, every void 409), and tells it in exactly one event.
#[tokio::test]
async fn concurrent_void_and_mark_paid_leave_one_outcome_and_one_event() {
    let app = TestApp::spawn_with_webhooks(None, "1s").await;
    let (receiver, endpoint, _) = subscribe(
        &app,
        Some(&["invoice.voided", "invoice.paid", "invoice.updated"]),
    )
    .await;
    let mut outcomes = Vec::new();
    for round in 0..3 {
        let (_, _, _, sent) = sent_invoice(&app, &format!("raced{round}")).await;
        let id = sent["id"].as_str().unwrap().to_owned();
        let calls = (0..10).map(|i| {
            let (app, id) = (&app, id.clone());
            async move {
                if i % 2 == 0 {
                    (
                        "void",
                        app.post(&format!("/v1/invoices/{id}/void"), json!({}))
                            .await,
                    )
                } else {
                    (
                        "paid",
                        app.post(
                            &format!("/v1/invoices/{id}/mark-paid"),
                            json!({"reference": "WIRE-7"}),
                        )
                        .await,
                    )
                }
            }
        });
        let answers = futures::future::join_all(calls).await;
        let status = invoice(&app, &id).await["status"].clone();
        let winner = if status == "VOID" { "void" } else { "paid" };
        assert!(status == "VOID" || status == "PAID", "{status}");
        let mut bodies = BTreeSet::new();
        for (kind, answer) in &answers {
            if *kind == winner {
                bodies.insert(answer.expect(200).to_string());
            } else if winner == "void" {
                answer.expect_error(409, "invoice_voided");
            } else {
                answer.expect_error(409, "invoice_paid");
            }
        }
        assert_eq!(
            bodies.len(),
            1,
            "every winning call answers the same invoice"
        );
        outcomes.push((id, status));
    }
    let ids: Vec<&str> = outcomes.iter().map(|(id, _)| id.as_str()).collect();
    app.wait_until_dispatched(&[&endpoint], 30).await;
    let got = receiver.accepted().await;
    for (id, status) in &outcomes {
        let about_it = about(&got, id);
        let expected = if status == "VOID" {
            "invoice.voided"
        } else {
            "invoice.paid"
        };
        assert_eq!(types_of(&about_it), [expected], "{id} ({ids:?})");
        assert_eq!(about_it[0].json["data"]["status"], *status);
    }
}

/// Rotation: during the overlap each delivery is signed with both secrets, and a receiver
/// holding either verifies it; a day later only the new one signs.
#[tokio::test]
async fn rotating_the_secret_signs_with_both_during_the_overlap() {
    let app = TestApp::spawn_with_webhooks(None, "1s").await;
    let (receiver, endpoint, old) = subscribe(&app, Some(&["customer.created"])).await;
    let before = app.customer("Before").await;
    receiver
        .wait_until(20, "the first delivery", |got| {
            got.iter().any(Received::accepted)
        })
        .await;

    let rotated = app
        .post(
            &format!("/v1/webhook-endpoints/{endpoint}/rotate-secret"),
            json!({}),
        )
        .await
        .expect(200)
        .clone();
    let new = rotated["secret"].as_str().unwrap().to_owned();
    assert!(new.starts_with("whsec_") && new != old, "{rotated}");
    let shown = app
        .get(&format!("/v1/webhook-endpoints/{endpoint}"))
        .await
        .expect(200)
        .clone();
    assert!(shown.get("secret").is_none(), "shown once: {shown}");

    // Verified with each secret on its own, and the header carries two signatures.
    receiver.secrets(&[&old, &new]).await;
    let during = app.customer("During").await;
    let got = receiver
        .wait_until(20, "a delivery during the overlap", |got| {
            got.iter().any(|r| r.json["data"]["id"] == during.as_str())
        })
        .await;
    let r = got
        .iter()
        .find(|r| r.json["data"]["id"] == during.as_str())
        .unwrap();
    assert_standard_delivery(r);
    assert_eq!(r.verified_with, [0, 1], "both secrets verify it");
    assert_eq!(
        r.headers["webhook-signature"]
            .as_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );

    // A day and an hour later (on the test clock), the old secret no longer signs.
    set_clock(&app, Utc::now() + TimeDelta::hours(25)).await;
    let after = app.customer("After").await;
    let got = receiver
        .wait_until(20, "a delivery after the overlap", |got| {
            got.iter().any(|r| r.json["data"]["id"] == after.as_str())
        })
        .await;
    let r = got
        .iter()
        .find(|r| r.json["data"]["id"] == after.as_str())
        .unwrap();
    assert_standard_delivery(r);
    assert_eq!(r.verified_with, [1], "only the new secret");
    assert_eq!(
        about(&got, &before)[0].verified_with,
        [0],
        "the old secret, the only one then, verified the first, before the rotation"
    );
}

/// `webhooks:read` lists and reads but cannot create, change, rotate or retry;
/// `invoices:read` cannot void, mark paid or send.
#[tokio::test]
async fn scopes_guard_endpoints_and_invoice_actions() {
    let app = TestApp::spawn().await;
    let reader = app.key_with(&["webhooks:read"]).await;
    let writer = app.key_with(&["webhooks:write"]).await;
    let invoices_reader = app.key_with(&["invoices:read"]).await;
    let body = json!({"url": "https://hooks.example.com/billing"});
    app.send_as(
        &reader,
        Method::POST,
        "/v1/webhook-endpoints",
        Some(body.clone()),
    )
    .await
    .expect_error(403, "insufficient_scope");
    let created = app
        .send_as(&writer, Method::POST, "/v1/webhook-endpoints", Some(body))
        .await
        .expect(201)
        .clone();
    let id = created["id"].as_str().unwrap();
    // Walks the list, since the shared table may hold endpoints of other tests (and runs).
    let listed = app
        .every_page_as(&reader, "/v1/webhook-endpoints")
        .await
        .iter()
        .any(|e| e["id"] == id);
    assert!(listed, "a reader lists the endpoint {id}");
    for (method, path) in [
        (Method::PATCH, format!("/v1/webhook-endpoints/{id}")),
        (Method::DELETE, format!("/v1/webhook-endpoints/{id}")),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        ),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{id}/deliveries/dlv_x/retry"),
        ),
    ] {
        app.send_as(&reader, method, &path, Some(json!({})))
            .await
            .expect_error(403, "insufficient_scope");
    }
    app.send_as(
        &reader,
        Method::GET,
        &format!("/v1/webhook-endpoints/{id}/deliveries"),
        None,
    )
    .await
    .expect(200);
    app.send_as(&writer, Method::GET, "/v1/webhook-endpoints", None)
        .await
        .expect_error(403, "insufficient_scope");
    for action in ["void", "mark-paid", "send"] {
        app.send_as(
            &invoices_reader,
            Method::POST,
            &format!("/v1/invoices/inv_x/{action}"),
            Some(json!({"reference": "X"})),
        )
        .await
        .expect_error(403, "insufficient_scope");
    }
}
