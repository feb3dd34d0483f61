//! Usage through the real API and matcher: the guide's scenario, every aggregation, dimensional
//! lines with fallback, every reason an event cannot be billed, and late usage.

use std::sync::Arc;

use chrono::{Datelike, Duration, Months, NaiveDate, Utc};
use integration_tests::{TestApp, unique, unique_code};
use serde_json::{Value, json};

use crate::catalog::guide_catalog;
use crate::payments::{invoice, run_billing};

fn first_of_month() -> NaiveDate {
    Utc::now().date_naive().with_day(1).unwrap()
}

async fn subscribe(app: &TestApp, customer: &str, plan: &Value, start: NaiveDate) -> Value {
    app.post(
        "/v1/contracts",
        json!({"customerId": customer, "planId": plan["id"], "startDate": start.to_string()}),
    )
    .await
    .expect(201)
    .clone()
}

async fn current_invoice(app: &TestApp, contract: &Value) -> Value {
    let id = contract["id"].as_str().unwrap();
    app.get(&format!("/v1/invoices/upcoming?contractId={id}"))
        .await
        .expect(200)
        .clone()
}

fn line<'a>(invoice: &'a Value, description: &str) -> &'a Value {
    invoice["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["description"] == description)
        .unwrap_or_else(|| panic!("no line '{description}' in {invoice}"))
}

#[tokio::test]
async fn the_guide_s_free_and_pro_customers_are_billed_for_their_calls() {
    let app = TestApp::spawn_with_matcher().await;
    let (meter, free, pro) = guide_catalog(&app).await;
    let call_count = meter["eventName"].as_str().unwrap();
    let alice = app.customer("Alice (Free)").await;
    let bob = app.customer("Bob (Pro)").await;
    let free_contract = subscribe(&app, &alice, &free, first_of_month()).await;
    let pro_contract = subscribe(&app, &bob, &pro, first_of_month()).await;
    // The guide's own spelling, as users copy it.
    for i in 0..7 {
        app.send_event(json!({"customer_id": alice, "event_name": call_count, "idempotency_key": format!("a{i}")}))
            .await;
    }
    let batch: Vec<Value> = (0..12)
        .map(|i| json!({"customerId": bob, "eventName": call_count, "idempotencyKey": format!("b{i}")}))
        .collect();
    let answer = app
        .post("/v1/events/batch", json!({ "events": batch }))
        .await;
    assert_eq!(answer.expect(202)["accepted"], 12);
    // Resends never count twice.
    app.send_event(json!({"customerId": bob, "eventName": call_count, "idempotencyKey": "b0"}))
        .await;
    app.wait_for_events(&format!("customerId={alice}"), 7).await;
    app.wait_for_events(&format!("customerId={bob}&status=matched"), 12)
        .await;
    // Every message sent so far, the resend's included, has been processed: only now does
    // "no second record" below say something.
    app.wait_until_settled().await;

    let free_invoice = current_invoice(&app, &free_contract).await;
    assert_eq!(free_invoice["status"], "IN_PROGRESS");
    let calls = line(&free_invoice, "API Calls");
    assert_eq!(
        (calls["quantity"].as_str(), calls["amount"].as_str()),
        (Some("7"), Some("0.70"))
    );
    assert_eq!(free_invoice["total"], "0.70");

    let pro_invoice = current_invoice(&app, &pro_contract).await;
    assert_eq!(pro_invoice["status"], "IN_PROGRESS");
    assert_eq!(line(&pro_invoice, "Pro plan")["amount"], "50.00");
    let calls = line(&pro_invoice, "API Calls");
    assert_eq!(
        (calls["quantity"].as_str(), calls["amount"].as_str()),
        (Some("12"), Some("0.96"))
    );
    assert_eq!(
        (
            pro_invoice["total"].as_str(),
            pro_invoice["totalCents"].as_i64()
        ),
        (Some("50.96"), Some(5096))
    );
    // The resend is not a second record.
    assert_eq!(app.events(&format!("customerId={bob}")).await.len(), 12);
    let usage = app.get(&format!("/v1/customers/{bob}/usage")).await;
    let usage = usage.expect(200);
    assert_eq!(usage["data"][0]["quantity"], "12");
    assert_eq!(usage["data"][0]["amount"], "0.96");
}

#[tokio::test]
async fn every_aggregation_type_counts_as_documented() {
    let app = TestApp::spawn_with_matcher().await;
    let tag = unique("agg");
    let meter = |code: &str, aggregation: &str, key: Option<&str>| {
        let mut body = json!({"code": unique_code(code), "eventName": format!("{tag}_{}", code.to_lowercase()),
                              "displayName": code, "aggregationType": aggregation});
        if let Some(key) = key {
            body["aggregationKey"] = json!(key);
        }
        body
    };
    let count = app.meter(meter("COUNT", "COUNT", None)).await;
    let sum = app.meter(meter("SUM", "SUM", Some("tokens"))).await;
    let max = app.meter(meter("MAX", "MAX", Some("gb"))).await;
    let min = app.meter(meter("MIN", "MIN", Some("latency"))).await;
    let unique_users = app
        .meter(meter("UNIQUE", "UNIQUE_COUNT", Some("user")))
        .await;
    let price = |m: &Value| json!({"model": "USAGE", "meterId": m["id"], "unitAmount": "1"});
    let plan = app
        .plan(json!({"name": "All", "prices": [price(&count), price(&sum), price(&max), price(&min), price(&unique_users)]}))
        .await;
    let customer = app.customer("Aggregated").await;
    let contract = subscribe(&app, &customer, &plan, first_of_month()).await;
    let events = [
        (&count, json!({})),
        (&count, json!({"anything": 1})),
        (&sum, json!({"tokens": 0.1})),
        (&sum, json!({"tokens": 0.2})),
        (&sum, json!({"tokens": "ignored-if-text?"})),
        (&max, json!({"gb": 3})),
        (&max, json!({"gb": 7.5})),
        (&max, json!({"gb": 2})),
        (&min, json!({"latency": 30})),
        (&min, json!({"latency": 12.25})),
        (&unique_users, json!({"user": "a"})),
        (&unique_users, json!({"user": "b"})),
        (&unique_users, json!({"user": "a"})),
        (&unique_users, json!({"user": "1"})),
        (&unique_users, json!({"user": 1})),
    ];
    let batch: Vec<Value> = events
        .iter()
        .enumerate()
        .map(|(i, (m, props))| {
            json!({"customerId": customer, "eventName": m["eventName"], "idempotencyKey": format!("e{i}"), "properties": props})
        })
        .collect();
    app.post("/v1/events/batch", json!({ "events": batch }))
        .await
        .expect(202);
    let records = app
        .wait_for_events(&format!("customerId={customer}"), events.len())
        .await;
    let invalid: Vec<&Value> = records
        .iter()
        .filter(|r| r["status"] == "invalid_property")
        .collect();
    assert_eq!(
        invalid.len(),
        1,
        "the text value of a SUM is refused: {records:?}"
    );
    let invoice = current_invoice(&app, &contract).await;
    let quantities: Vec<(&str, &str)> = ["COUNT", "SUM", "MAX", "MIN", "UNIQUE"]
        .iter()
        .map(|d| (*d, line(&invoice, d)["quantity"].as_str().unwrap()))
        .collect();
    assert_eq!(
        quantities,
        [
            ("COUNT", "2"),
            ("SUM", "0.3"),
            ("MAX", "7.5"),
            ("MIN", "12.25"),
            ("UNIQUE", "4")
        ],
        "the text '1' and the number 1 are distinct values; 'a' counts once"
    );
}

#[tokio::test]
async fn dimensional_rates_get_a_line_per_combination_with_fallback() {
    let app = TestApp::spawn_with_matcher().await;
    let event_name = unique("llm");
    let tokens = app
        .meter(json!({"code": unique_code("TOKENS"), "eventName": event_name, "displayName": "Tokens",
                      "aggregationType": "SUM", "aggregationKey": "tokens", "groupKeys": ["region", "model"]}))
        .await;
    let with_fallback = app
        .plan(json!({"name": "AI", "prices": [{"model": "USAGE", "meterId": tokens["id"], "dimensionalRates": [
            {"dimensions": {"region": "eu", "model": "gpt-4"}, "unitAmount": "0.03"},
            {"dimensions": {"region": "us", "model": "gpt-4"}, "unitAmount": "0.02"}],
            "fallbackUnitAmount": "0.01"}]}))
        .await;
    let without_fallback = app
        .plan(json!({"name": "AI strict", "prices": [{"model": "USAGE", "meterId": tokens["id"], "dimensionalRates": [
            {"dimensions": {"region": "eu", "model": "gpt-4"}, "unitAmount": "0.03"}]}]}))
        .await;
    let flexible = app.customer("Flexible").await;
    let strict = app.customer("Strict").await;
    let contract = subscribe(&app, &flexible, &with_fallback, first_of_month()).await;
    subscribe(&app, &strict, &without_fallback, first_of_month()).await;
    let e = |customer: &str, region: &str, model: &str, tokens: u32, key: &str| {
        json!({"customerId": customer, "eventName": event_name, "idempotencyKey": key,
               "properties": {"region": region, "model": model, "tokens": tokens}})
    };
    let batch = vec![
        e(&flexible, "eu", "gpt-4", 100, "1"),
        e(&flexible, "eu", "gpt-4", 50, "2"),
        e(&flexible, "us", "gpt-4", 10, "3"),
        e(&flexible, "ap", "claude", 5, "4"),
        e(&strict, "eu", "gpt-4", 10, "5"),
        e(&strict, "ap", "claude", 5, "6"),
    ];
    app.post("/v1/events/batch", json!({ "events": batch }))
        .await
        .expect(202);
    app.wait_for_events(&format!("customerId={flexible}"), 4)
        .await;
    let strict_records = app
        .wait_for_events(&format!("customerId={strict}"), 2)
        .await;
    let invoice = current_invoice(&app, &contract).await;
    let mut lines: Vec<(String, String, String)> = invoice["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["description"].as_str().unwrap().to_owned(),
                l["quantity"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            (
                "Tokens (model=claude, region=ap)".to_owned(),
                "5".to_owned(),
                "0.05".to_owned()
            ),
            (
                "Tokens (model=gpt-4, region=eu)".to_owned(),
                "150".to_owned(),
                "4.50".to_owned()
            ),
            (
                "Tokens (model=gpt-4, region=us)".to_owned(),
                "10".to_owned(),
                "0.20".to_owned()
            ),
        ]
    );
    assert_eq!(invoice["total"], "4.75");
    let no_rate: Vec<&Value> = strict_records
        .iter()
        .filter(|r| r["status"] == "no_rate")
        .collect();
    assert_eq!(no_rate.len(), 1, "{strict_records:?}");
    assert_eq!(no_rate[0]["idempotencyKey"], "6");
}

#[tokio::test]
async fn every_event_that_cannot_be_billed_is_recorded_with_its_reason() {
    let app = TestApp::spawn_with_matcher().await;
    let (meter, free, _) = guide_catalog(&app).await;
    let call = meter["eventName"].as_str().unwrap();
    let tag = unique("why");
    let sum = app
        .meter(json!({"code": unique_code("BYTES"), "eventName": format!("{tag}_bytes"), "aggregationType": "SUM", "aggregationKey": "bytes"}))
        .await;
    let plan = app
        .plan(json!({"name": "Bytes", "prices": [{"model": "USAGE", "meterId": sum["id"], "unitAmount": "1"}]}))
        .await;
    let subscribed = app.customer("Subscribed").await;
    let unsubscribed = app.customer("No contract").await;
    // A contract that starts in two months: today is not covered.
    let later = first_of_month().checked_add_months(Months::new(2)).unwrap();
    subscribe(&app, &subscribed, &plan, first_of_month()).await;
    subscribe(&app, &unsubscribed, &free, later).await;
    let ghost = "cus_0190ffffffffffffffffffffffffffff";
    let ghost_external = unique("ghost");
    let bytes = format!("{tag}_bytes");
    let batch = vec![
        json!({"customerId": subscribed, "eventName": format!("{tag}_nobody_listens"), "idempotencyKey": "unmatched"}),
        json!({"customerId": ghost, "eventName": call, "idempotencyKey": format!("{tag}-ghost")}),
        json!({"externalCustomerId": ghost_external, "eventName": call, "idempotencyKey": "ghost-ext"}),
        json!({"customerId": unsubscribed, "eventName": call, "idempotencyKey": "no-contract"}),
        json!({"customerId": subscribed, "eventName": bytes, "idempotencyKey": "missing"}),
        json!({"customerId": subscribed, "eventName": bytes, "idempotencyKey": "invalid", "properties": {"bytes": "many"}}),
        json!({"customerId": subscribed, "eventName": bytes, "idempotencyKey": "negative", "properties": {"bytes": -5}}),
        json!({"customerId": subscribed, "eventName": bytes, "idempotencyKey": "ok", "properties": {"bytes": 5}}),
    ];
    app.post("/v1/events/batch", json!({ "events": batch }))
        .await
        .expect(202);
    let mine = app
        .wait_for_events(&format!("customerId={subscribed}"), 5)
        .await;
    let status_of = |records: &[Value], key: &str| {
        records
            .iter()
            .find(|r| r["idempotencyKey"] == key)
            .map(|r| r["status"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no record {key} in {records:?}"))
    };
    assert_eq!(status_of(&mine, "unmatched"), "unmatched");
    assert_eq!(status_of(&mine, "missing"), "missing_property");
    assert_eq!(status_of(&mine, "invalid"), "invalid_property");
    assert_eq!(status_of(&mine, "negative"), "invalid_property");
    assert_eq!(status_of(&mine, "ok"), "matched");
    let ghosts = app.wait_for_events(&format!("customerId={ghost}"), 1).await;
    assert!(ghosts.iter().any(|r| r["status"] == "unknown_customer"));
    let ghost_ext = app
        .wait_for_events(&format!("externalCustomerId={ghost_external}"), 1)
        .await;
    assert_eq!(status_of(&ghost_ext, "ghost-ext"), "unknown_customer");
    let none = app
        .wait_for_events(&format!("customerId={unsubscribed}"), 1)
        .await;
    assert_eq!(status_of(&none, "no-contract"), "no_contract");
    // Every reason is queryable by status too.
    let reasons = app
        .get("/v1/events?status=missing_property&limit=100")
        .await;
    assert!(!reasons.expect(200)["data"].as_array().unwrap().is_empty());
    app.get("/v1/events")
        .await
        .expect_error(400, "missing_filter");
    app.get("/v1/events?status=lost")
        .await
        .expect_error(400, "invalid_status");

    // As the store reads records back: the resolved customer, also where a record leaves it
    // out (the event named the customer by that id), and none for a customer that does not
    // exist.
    use billing::ports::{EventFilter, EventOwner, UsageStore};
    use billing::usage::CustomerRef;
    let store = integration_tests::startup().await.store();
    let resolved = |owner: EventOwner| {
        let store = &store;
        async move {
            let filter = EventFilter {
                customer: Some(owner),
                status: None,
            };
            let page = store
                .list_events(&filter, &billing::pagination::PageRequest::default())
                .await
                .unwrap();
            assert!(!page.items.is_empty());
            page.items
                .into_iter()
                .map(|r| r.customer_id.map(|c| c.to_string()))
                .collect::<Vec<_>>()
        }
    };
    let subscribed_ids = resolved(EventOwner::Customer(
        billing::ids::CustomerId::parse(&subscribed).unwrap(),
    ))
    .await;
    assert!(
        subscribed_ids
            .iter()
            .all(|id| id.as_deref() == Some(subscribed.as_str())),
        "{subscribed_ids:?}"
    );
    for unknown in [
        CustomerRef::Id(billing::ids::CustomerId::parse(ghost).unwrap()),
        CustomerRef::External(
            billing::customer::ExternalCustomerId::parse(&ghost_external).unwrap(),
        ),
    ] {
        let unknown = EventOwner::Unknown(unknown);
        let ids = resolved(unknown).await;
        assert!(ids.iter().all(Option::is_none), "{ids:?}");
    }
}

#[tokio::test]
async fn an_invoice_takes_usage_until_its_end_plus_grace_and_later_usage_goes_to_a_late_line() {
    // A table of its own: the billing run closes every due invoice of the table it runs on.
    let app = TestApp::spawn_with_own_table().await;
    let (meter, _, _) = guide_catalog(&app).await;
    let plan = app
        .plan(json!({"name": "Grace", "gracePeriodDays": 3,
                     "prices": [{"model": "USAGE", "meterId": meter["id"], "unitAmount": "0.10"}]}))
        .await;
    let customer = app.customer("Late").await;
    let end = first_of_month();
    let previous = end.checked_sub_months(Months::new(1)).unwrap();
    let contract = subscribe(&app, &customer, &plan, previous).await;
    let invoices = app
        .contract_invoices(contract["id"].as_str().unwrap())
        .await;
    let (last_month, this_month) = (&invoices[0], &invoices[1]);
    let id = last_month["id"].as_str().unwrap();
    // Twelve hours before this period began: the previous period, at most 31.5 days ago.
    let then = (end.and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::hours(12)).to_rfc3339();
    let send = |key: String| {
        let event = json!({"customerId": customer, "eventName": meter["eventName"], "idempotencyKey": key, "timestamp": then});
        let app = &app;
        async move {
            app.send_event(event).await;
        }
    };
    send("before-end".to_owned()).await;
    app.wait_for_events(&format!("customerId={customer}&status=matched"), 1)
        .await;

    // The run on the period end, and on end + grace - 1, leaves the invoice open: usage of its
    // period still lands on it.
    for (i, day) in [end, end + chrono::Days::new(2)].into_iter().enumerate() {
        let report = run_billing(&app, day).await;
        assert_eq!(report["sent"], 0, "{day}: {report}");
        let open = invoice(&app, id).await;
        assert_eq!(open["status"], "IN_PROGRESS", "{day}");
        assert!(open["invoiceNumber"].is_null());
        send(format!("in-grace-{i}")).await;
        app.wait_for_events(&format!("customerId={customer}&status=matched"), i + 2)
            .await;
    }
    assert_eq!(invoice(&app, id).await["lineItems"][0]["quantity"], "3");

    // The run on end + grace closes it, with the grace days' usage on it.
    let report = run_billing(&app, end + chrono::Days::new(3)).await;
    assert_eq!(report["sent"], 1, "{report}");
    let closed = invoice(&app, id).await;
    assert_eq!(closed["status"], "SENT");
    assert_eq!(closed["invoiceNumber"], "INV-000001");
    assert_eq!(closed["lineItems"][0]["quantity"], "3");
    assert_eq!(
        (
            closed["total"].as_str(),
            closed["payment"]["amountDueMinorUnits"].as_i64()
        ),
        (Some("0.30"), Some(30))
    );

    // Usage of that period arriving later goes to a labelled line of the next invoice.
    send("after-close".to_owned()).await;
    let late = app
        .wait_for_events(&format!("customerId={customer}&status=late"), 1)
        .await;
    assert_eq!(late[0]["matches"][0]["invoiceId"], this_month["id"]);
    let is_late = |l: &Value| l["description"].as_str().unwrap().contains("late usage");
    let current = app
        .wait_for_invoice(this_month["id"].as_str().unwrap(), "late line", |i| {
            i["lineItems"].as_array().unwrap().iter().any(is_late)
        })
        .await;
    let late_line = current["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| is_late(l))
        .unwrap_or_else(|| panic!("no late line in {current}"));
    assert_eq!(late_line["quantity"], "1");
    assert_eq!(late_line["amount"], "0.10");
    assert_eq!(
        late_line["servicePeriod"]["start"],
        last_month["periodStart"]
    );
    assert_eq!(late_line["servicePeriod"]["end"], last_month["periodEnd"]);
    app.wait_until_settled().await;
    assert_eq!(
        invoice(&app, id).await,
        closed,
        "a sent invoice never changes"
    );
}

#[tokio::test]
async fn usage_at_a_period_boundary_belongs_to_the_period_its_utc_instant_falls_in() {
    let app = TestApp::spawn_with_matcher().await;
    let (meter, _, _) = guide_catalog(&app).await;
    let plan = app
        .plan(json!({"name": "Boundary",
                     "prices": [{"model": "USAGE", "meterId": meter["id"], "unitAmount": "1"}]}))
        .await;
    let customer = app.customer("Boundary").await;
    let boundary = first_of_month();
    let previous = boundary.checked_sub_months(Months::new(1)).unwrap();
    let contract = subscribe(&app, &customer, &plan, previous).await;
    let invoices = app
        .contract_invoices(contract["id"].as_str().unwrap())
        .await;
    let (last_month, this_month) = (&invoices[0], &invoices[1]);
    assert_eq!(last_month["periodEnd"], format!("{boundary}T00:00:00Z"));
    let eve = boundary.pred_opt().unwrap();
    // (key, timestamp as sent, the period it belongs to)
    let cases = [
        ("at-period-end", format!("{boundary}T00:00:00Z"), this_month),
        ("one-ms-before", format!("{eve}T23:59:59.999Z"), last_month),
        (
            "one-ms-after",
            format!("{boundary}T00:00:00.001Z"),
            this_month,
        ),
        // Local times whose date differs from the UTC date: the UTC instant decides.
        (
            "plus-one-hour",
            format!("{boundary}T00:30:00+01:00"),
            last_month,
        ),
        (
            "minus-one-hour",
            format!("{eve}T23:30:00-01:00"),
            this_month,
        ),
    ];
    let events: Vec<Value> = cases
        .iter()
        .map(|(key, at, _)| json!({"customerId": customer, "eventName": meter["eventName"], "idempotencyKey": key, "timestamp": at}))
        .collect();
    app.post("/v1/events/batch", json!({ "events": events }))
        .await
        .expect(202);
    let records = app
        .wait_for_events(
            &format!("customerId={customer}&status=matched"),
            cases.len(),
        )
        .await;
    for (key, at, period) in &cases {
        let record = records
            .iter()
            .find(|r| r["idempotencyKey"] == *key)
            .unwrap_or_else(|| panic!("no record {key}"));
        assert_eq!(
            record["matches"][0]["invoiceId"], period["id"],
            "{key} ({at}) belongs to the period starting {}",
            period["periodStart"]
        );
    }
    for (period, count) in [(last_month, "2"), (this_month, "3")] {
        let read = invoice(&app, period["id"].as_str().unwrap()).await;
        assert_eq!(read["lineItems"][0]["quantity"], count, "{read}");
    }
}

#[tokio::test]
async fn an_archived_meter_stops_matching_new_events() {
    // A fresh matcher (no cache) sees the archive at once; warm ones within CACHE_TTL.
    let app = TestApp::spawn().await;
    let (meter, free, _) = guide_catalog(&app).await;
    let customer = app.customer("Archive").await;
    subscribe(&app, &customer, &free, first_of_month()).await;
    app.post(
        &format!("/v1/meters/{}/archive", meter["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .expect(200);
    let input: billing::usage::EventInput = serde_json::from_value(
        json!({"customerId": customer, "eventName": meter["eventName"], "idempotencyKey": "archived"}),
    )
    .unwrap();
    let event = input.parse(Utc::now()).unwrap();
    let matcher = Arc::new(integration_tests::startup().await.matcher());
    let report = matcher
        .process(vec![billing::matcher::LaneMessage::new(vec![event])])
        .await
        .unwrap();
    assert_eq!(report.by_status.get("unmatched"), Some(&1), "{report:?}");
}

#[tokio::test]
async fn ingestion_validates_each_event_on_its_own() {
    let app = TestApp::spawn().await;
    let customer = app.customer("Validated").await;
    let answer = app
        .post(
            "/v1/events/batch",
            json!({"events": [
                {"customerId": customer, "eventName": "ok"},
                {"customerId": customer},
                {"customerId": customer, "eventName": "e", "timestamp": "2000-01-01T00:00:00Z"},
                {"customerId": customer, "eventName": "e", "properties": {"nested": {"a": 1}}},
                "not an object",
                {"customerId": customer, "eventName": "e", "colour": "red"}
            ]}),
        )
        .await;
    let body = answer.expect(202);
    assert_eq!(body["accepted"], 1);
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["error"]["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        [
            (1, "missing_field"),
            (2, "timestamp_too_old"),
            (3, "invalid_usage_value"),
            (4, "invalid_field"),
            (5, "unknown_field")
        ]
    );
    app.post("/v1/events/batch", json!({"events": []}))
        .await
        .expect_error(422, "invalid_batch_size");
    app.post("/v1/events", json!({"customerId": customer}))
        .await
        .expect_error(400, "missing_field");
    app.post(
        "/v1/events",
        json!({"customerId": customer, "eventName": "e", "timestamp": "2999-01-01T00:00:00Z"}),
    )
    .await
    .expect_error(422, "timestamp_in_future");
    let reader = app.key_with(&["usage:read"]).await;
    app.send_as(
        &reader,
        reqwest::Method::POST,
        "/v1/events",
        Some(json!({"customerId": customer, "eventName": "e"})),
    )
    .await
    .expect_error(403, "insufficient_scope");
}

#[tokio::test]
async fn events_the_queue_does_not_accept_are_never_acknowledged() {
    let app = TestApp::spawn_with_broken_queue().await;
    let customer = app.customer("Unqueued").await;
    app.post(
        "/v1/events",
        json!({"customerId": customer, "eventName": "e"}),
    )
    .await
    .expect_error(503, "service_unavailable");
    let batch = app
        .post(
            "/v1/events/batch",
            json!({"events": [{"customerId": customer, "eventName": "e"}, {"eventName": "bad"}]}),
        )
        .await;
    batch.expect_error(503, "service_unavailable");
}

/// A listing filtered by outcome reads a bounded stretch of records per page, since a filter
/// is applied only after DynamoDB reads (and bills) the items: a page may come back short, with
/// a cursor, and following the cursors finds every event once. Late events are found through
/// the outcome index, as unbillable ones are, so they never wait on a scan of the table. (The
/// store's budget is shrunk so a few hundred records show what tens of thousands would.)
#[tokio::test]
async fn listings_by_outcome_read_a_bounded_stretch_per_page_and_miss_nothing() {
    use billing::ids::CustomerId;
    use billing::pagination::{Cursor, PageRequest};
    use billing::ports::{EventFilter, EventOwner, RecordPut, UsageStore};
    use billing::usage::{EventInput, EventRecord, EventStatus, MessageNonce};
    use billing_aws::dynamodb::ReadBudget;

    let tiny = ReadBudget {
        step: 4,
        bucket_calls: 1,
        scan_calls: 1,
    };
    let store = (*integration_tests::startup().await.store())
        .clone()
        .with_read_budget(tiny);
    let customer = CustomerId::parse(&format!("cus_{}", uuid::Uuid::now_v7().simple())).unwrap();
    let now = Utc::now();
    let record = |key: &str, status: EventStatus| {
        let input: EventInput = serde_json::from_value(json!({
            "customerId": customer.to_string(),
            "eventName": "api_call",
            "idempotencyKey": key,
        }))
        .unwrap();
        EventRecord {
            event: Arc::new(input.parse(now).unwrap()),
            customer_id: Some(customer.clone()),
            status,
            matches: vec![],
            processed_at: now,
            nonce: MessageNonce::generate(),
        }
    };
    let late = ["late-a", "late-m", "late-z"];
    let mut records: Vec<EventRecord> = (0..300)
        .map(|i| record(&format!("m-{i:03}"), EventStatus::Matched))
        .collect();
    records.extend(late.iter().map(|k| record(k, EventStatus::Late)));
    records.extend(["miss-a", "miss-b"].map(|k| record(k, EventStatus::MissingProperty)));
    for put in store.put_records(&records).await {
        assert!(
            matches!(put.unwrap(), RecordPut::Written),
            "a fresh record is written"
        );
    }

    /// Every page of a listing: its keys, and whether it was short yet said more follow.
    async fn walk(
        store: &billing_aws::dynamodb::DynamoStore,
        filter: &EventFilter,
        limit: usize,
        pages_at_most: usize,
    ) -> Vec<(Vec<String>, bool)> {
        let mut pages = Vec::new();
        let mut after: Option<Cursor> = None;
        for _ in 0..pages_at_most {
            let request = PageRequest {
                limit,
                after: after.take(),
            };
            let page = store.list_events(filter, &request).await.unwrap();
            let keys = page
                .items
                .iter()
                .map(|r| r.event.idempotency_key.as_str().to_owned())
                .collect::<Vec<_>>();
            pages.push((keys.clone(), page.next.is_some() && keys.len() < limit));
            match page.next {
                Some(next) => after = Some(next),
                None => return pages,
            }
        }
        pages
    }
    let of_customer = |status| EventFilter {
        customer: Some(EventOwner::Customer(customer.clone())),
        status,
    };

    // The customer's late events: each page looks at 4 records a bucket, so most pages are
    // short, yet every late event turns up once, in key order.
    let pages = walk(&store, &of_customer(Some(EventStatus::Late)), 10, 200).await;
    let found: Vec<String> = pages.iter().flat_map(|(keys, _)| keys.clone()).collect();
    assert_eq!(found, late, "pages: {pages:?}");
    assert!(
        pages.iter().any(|(_, short)| *short),
        "a bounded read ends some page early: {pages:?}"
    );
    // Unfiltered, nothing is dropped after the read: full pages of every record, in key order.
    let pages = walk(&store, &of_customer(None), 100, 10).await;
    assert!(pages.iter().all(|(_, short)| !short), "{pages:?}");
    let every: Vec<String> = pages.into_iter().flat_map(|(keys, _)| keys).collect();
    let mut expected: Vec<String> = records
        .iter()
        .map(|r| r.event.idempotency_key.as_str().to_owned())
        .collect();
    expected.sort();
    assert_eq!(every, expected);

    // Late events of every customer come from the outcome index: full pages whatever the
    // budget, oldest processed first, and ours among them.
    let all_late = EventFilter {
        customer: None,
        status: Some(EventStatus::Late),
    };
    let pages = walk(&store, &all_late, 2, 10_000).await;
    assert!(pages.iter().all(|(_, short)| !short), "{pages:?}");
    let listed: Vec<String> = pages.into_iter().flat_map(|(keys, _)| keys).collect();
    for key in late {
        assert!(listed.iter().any(|k| k == key), "{key} is listed as late");
    }

    // Matched events of every customer: a scan, bounded per page; its cursor resumes where the
    // scan stopped, so pages never repeat a record.
    let all_matched = EventFilter {
        customer: None,
        status: Some(EventStatus::Matched),
    };
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    for _ in 0..5 {
        let request = PageRequest { limit: 10, after };
        let page = store.list_events(&all_matched, &request).await.unwrap();
        assert!(page.items.len() <= 4, "one call of 4 items a page");
        for r in &page.items {
            assert_eq!(r.status, EventStatus::Matched);
            assert!(seen.insert(r.key()), "{} listed twice", r.key());
        }
        after = Some(
            page.next
                .expect("the table holds more than five short pages"),
        );
    }
}
