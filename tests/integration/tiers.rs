//! Tiered prices end to end: usage summed across tier edges (100, 101, 1,000 and 1,001 units)
//! from events spread over several requests and matched by three matchers at once, priced by
//! the graduated, volume and package models, closed by the billing run and charged to a card.
//! Every amount below was computed by hand from the tiers `[upTo 100 @ 0.10, upTo 1000 @ 0.08,
//! rest @ 0.05]` and packages of 100 @ 2.00.

use chrono::Days;
use futures::future::join_all;
use integration_tests::payments::TestStripe;
use integration_tests::{Pollers, TestApp, unique, unique_code};
use serde_json::{Value, json};

use crate::payments::{first_invoice, invoice, previous_month, run_billing, subscribed_last_month};

/// (model, quantity, the line's amount, the charge in cents)
const CASES: [(&str, u64, &str, i64); 12] = [
    ("GRADUATED", 100, "10.00", 1000),
    ("GRADUATED", 101, "10.08", 1008),  // 10 + 1 × 0.08
    ("GRADUATED", 1000, "82.00", 8200), // 10 + 900 × 0.08
    ("GRADUATED", 1001, "82.05", 8205), // 82 + 1 × 0.05
    ("VOLUME", 100, "10.00", 1000),
    ("VOLUME", 101, "8.08", 808),     // 101 × 0.08
    ("VOLUME", 1000, "80.00", 8000),  // 1000 × 0.08
    ("VOLUME", 1001, "50.05", 5005),  // 1001 × 0.05
    ("PACKAGE", 100, "2.00", 200),    // 1 package
    ("PACKAGE", 101, "4.00", 400),    // 2 packages, the second started
    ("PACKAGE", 1000, "20.00", 2000), // 10 packages
    ("PACKAGE", 1001, "22.00", 2200), // 11 packages
];

/// Splits `quantity` into events of uneven sizes, so the running sum crosses tier edges in
/// the middle of batches.
fn parts(quantity: u64) -> Vec<u64> {
    let pattern = [1u64, 7, 92, 250, 333, 18];
    let mut left = quantity;
    let mut out = Vec::new();
    for size in pattern.iter().cycle() {
        if left == 0 {
            break;
        }
        let take = (*size).min(left);
        out.push(take);
        left -= take;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_prices_are_billed_and_charged_exactly_across_tier_edges() {
    let stripe = TestStripe::start();
    let app = TestApp::spawn_with_payments(&stripe).await;
    // Two more matchers beside the dev server's poller, on the app's own queue.
    let pollers = Pollers::start(app.queue.as_deref().expect("its own queue"), 2).await;
    let event_name = unique("units");
    let meter = app
        .meter(
            json!({"code": unique_code("UNITS"), "eventName": event_name, "displayName": "Units",
                      "aggregationType": "SUM", "aggregationKey": "units"}),
        )
        .await;
    let tiers = json!([{"upTo": "100", "unitAmount": "0.10"}, {"upTo": "1000", "unitAmount": "0.08"},
                       {"unitAmount": "0.05"}]);
    let mut plans = std::collections::HashMap::new();
    for model in ["GRADUATED", "VOLUME", "PACKAGE"] {
        let price = if model == "PACKAGE" {
            json!({"model": "USAGE", "meterId": meter["id"], "tiering": "PACKAGE",
                   "packageSize": "100", "unitAmount": "2.00"})
        } else {
            json!({"model": "USAGE", "meterId": meter["id"], "tiering": model, "tiers": tiers})
        };
        let plan = app
            .plan(json!({"name": model, "netTerms": 0, "autoPay": true, "prices": [price]}))
            .await;
        plans.insert(model, plan);
    }
    let mut subscribed = Vec::new();
    for (model, quantity, _, _) in CASES {
        let (customer, stripe_id, contract) = subscribed_last_month(
            &app,
            &stripe,
            &format!("{model} {quantity}"),
            json!({"paymentMethodId": "pm_card_visa"}),
            &plans[model],
        )
        .await;
        subscribed.push((
            customer["id"].as_str().unwrap().to_owned(),
            stripe_id,
            contract,
        ));
    }

    // Every customer's usage in uneven parts, interleaved across customers, sent as six
    // requests at once: the parts of one invoice travel in different messages and batches,
    // and three matchers race on each invoice.
    let (_, end) = previous_month();
    let at = (end - Days::new(1))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc()
        .to_rfc3339();
    let mut events = Vec::new();
    let per_customer: Vec<Vec<u64>> = CASES.iter().map(|c| parts(c.1)).collect();
    let longest = per_customer.iter().map(Vec::len).max().unwrap();
    for i in 0..longest {
        for (c, customer_parts) in per_customer.iter().enumerate() {
            if let Some(units) = customer_parts.get(i) {
                events.push(
                    json!({"customerId": subscribed[c].0, "eventName": event_name,
                    "idempotencyKey": format!("part-{i}"), "timestamp": at,
                    "properties": {"units": units}}),
                );
            }
        }
    }
    let requests = events.chunks(events.len().div_ceil(6)).map(|chunk| {
        let app = &app;
        let body = json!({ "events": chunk });
        async move { app.post("/v1/events/batch", body).await }
    });
    for answer in join_all(requests).await {
        let body = answer.expect(202);
        assert_eq!(body["rejected"].as_array().map(Vec::len), Some(0), "{body}");
        assert_eq!(body["failed"].as_array().map(Vec::len), Some(0), "{body}");
    }
    for (c, (customer, _, _)) in subscribed.iter().enumerate() {
        app.wait_for_events(
            &format!("customerId={customer}&status=matched"),
            per_customer[c].len(),
        )
        .await;
    }
    app.wait_until_settled().await;
    assert!(
        pollers.received.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "our matchers took part"
    );
    drop(pollers);

    // Priced as computed by hand, before and after the run closes them.
    let mut invoices = Vec::new();
    for ((model, quantity, amount, cents), (_, _, contract)) in CASES.iter().zip(&subscribed) {
        let open = first_invoice(&app, contract).await;
        let line = &open["lineItems"][0];
        assert_eq!(
            (line["quantity"].as_str(), line["amount"].as_str()),
            (Some(quantity.to_string().as_str()), Some(*amount)),
            "{model} {quantity}: {open}"
        );
        assert_eq!(open["totalCents"], *cents, "{model} {quantity}");
        invoices.push(open["id"].as_str().unwrap().to_owned());
    }
    let report = run_billing(&app, end).await;
    assert_eq!(
        (report["sent"].as_u64(), report["charged"].as_u64()),
        (Some(12), Some(12)),
        "{report}"
    );
    assert!(report["errors"].as_array().unwrap().is_empty(), "{report}");
    for (((model, quantity, amount, cents), (_, stripe_id, _)), id) in
        CASES.iter().zip(&subscribed).zip(&invoices)
    {
        let paid: Value = invoice(&app, id).await;
        assert_eq!(paid["status"], "PAID", "{model} {quantity}");
        assert_eq!(paid["total"], *amount, "{model} {quantity}");
        assert_eq!(
            paid["payment"]["amountDueMinorUnits"], *cents,
            "{model} {quantity}"
        );
        let charges = stripe.payment_intents(stripe_id).await;
        let charged: Vec<i64> = charges
            .iter()
            .map(|c| c["amount"].as_i64().unwrap())
            .collect();
        assert_eq!(
            charged,
            [*cents],
            "{model} {quantity}: one charge of the total"
        );
    }
}
