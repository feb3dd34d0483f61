//! The dev server's test clock (`/_local/clock`): setting, reading and resetting it, and that
//! what the server hosts follows it: the API's timestamp bounds and dates, the matcher, the
//! billing run without a date, and portal links. (That the deployed functions have no such
//! route is checked in infra/dev-server/tests and infra/check-deployed.sh.)

use integration_tests::{TestApp, unique_code};
use reqwest::Method;
use serde_json::{Value, json};

async fn set_clock(app: &TestApp, now: &str) -> Value {
    app.post("/_local/clock", json!({ "now": now }))
        .await
        .expect(200)
        .clone()
}

#[tokio::test]
async fn the_clock_is_set_read_and_reset() {
    let app = TestApp::spawn().await;
    let real = app.get("/_local/clock").await.expect(200).clone();
    assert_eq!(real["simulated"], false, "{real}");

    for bad in [
        json!({ "now": "next tuesday" }),
        json!({ "now": "2027-01-01" }),
        json!({ "at": "2027-01-01T00:00:00Z" }),
        json!("2027-01-01T00:00:00Z"),
    ] {
        app.post("/_local/clock", bad.clone())
            .await
            .expect_error(400, "invalid_clock");
    }
    assert_eq!(
        app.get("/_local/clock").await.expect(200)["simulated"],
        false
    );

    let set = set_clock(&app, "2027-06-15T12:30:00.123456+02:00").await;
    assert_eq!(
        set,
        json!({ "now": "2027-06-15T10:30:00.123Z", "simulated": true })
    );
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(
        app.get("/_local/clock").await.expect(200),
        &set,
        "it stands still"
    );

    let reset = app
        .send(Method::DELETE, "/_local/clock", None)
        .await
        .expect(200)
        .clone();
    assert_eq!(reset["simulated"], false, "{reset}");
    let now: chrono::DateTime<chrono::Utc> = reset["now"].as_str().unwrap().parse().unwrap();
    assert!(
        (chrono::Utc::now() - now).num_seconds().abs() < 60,
        "{reset}"
    );
}

/// Two months on the clock: what the API dates, accepts and refuses, what the matcher counts as
/// on time or late, and what the billing run closes all follow the clock, not the wall.
#[tokio::test]
async fn the_api_the_matcher_and_the_billing_run_follow_the_clock() {
    let app = TestApp::spawn_with_own_table().await;
    set_clock(&app, "2027-02-01T09:00:00Z").await;
    let code = unique_code("CLOCK");
    let event = code.to_lowercase();
    app.meter(json!({"code": code, "eventName": event, "aggregationType": "COUNT"}))
        .await;
    let plan = app
        .plan(json!({"name": "Per call", "currency": "USD",
            "prices": [{"model": "USAGE", "meterCode": code, "unitAmount": "0.25"}]}))
        .await;
    let customer = app.customer("Clocked").await;
    let contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": customer, "planId": plan["id"], "startDate": "2027-02-01"}),
        )
        .await
        .expect(201)
        .clone();
    assert_eq!(contract["createdAt"], "2027-02-01T09:00:00Z", "{contract}");
    let contract_id = contract["id"].as_str().unwrap();

    // Timestamp bounds are judged against the clock: an hour ahead of it is accepted, a day
    // ahead is refused, and so is last year (older than 35 days by the clock).
    set_clock(&app, "2027-02-20T12:00:00Z").await;
    let call = |key: &str, at: &str| json!({"customerId": customer, "eventName": event, "idempotencyKey": key, "timestamp": at});
    app.send_event(call("feb-1", "2027-02-20T12:59:00Z")).await;
    app.send_event(call("feb-2", "2027-02-20T11:00:00Z")).await;
    app.post("/v1/events", call("tomorrow", "2027-02-21T12:00:00Z"))
        .await
        .expect_error(422, "timestamp_in_future");
    app.post(
        "/v1/events",
        call("real-today", &chrono::Utc::now().to_rfc3339()),
    )
    .await
    .expect_error(422, "timestamp_too_old");
    app.wait_for_events(&format!("customerId={customer}&status=matched"), 2)
        .await;

    // The run without a date bills the clock's day, as of the clock.
    set_clock(&app, "2027-03-01T00:15:00Z").await;
    let report = app
        .send(Method::POST, "/_local/run/billing", None)
        .await
        .expect(200)
        .clone();
    assert_eq!(report["date"], "2027-03-01", "{report}");
    assert_eq!(report["errors"], json!([]), "{report}");
    let invoices = app.contract_invoices(contract_id).await;
    let february = &invoices[0];
    assert_eq!(february["status"], "SENT", "{february}");
    assert_eq!(february["total"], "0.50", "{february}");
    assert_eq!(february["invoiceDate"], "2027-03-01", "{february}");
    assert_eq!(
        february["payment"]["sentAt"], "2027-03-01T00:15:00Z",
        "{february}"
    );

    // February's usage arriving on March 1 is late by the clock: it goes to March's invoice.
    set_clock(&app, "2027-03-01T08:00:00Z").await;
    app.send_event(call("feb-late", "2027-02-28T23:00:00Z"))
        .await;
    let late = app
        .wait_for_events(&format!("customerId={customer}&status=late"), 1)
        .await;
    let march_id = app.contract_invoices(contract_id).await[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        late[0]["matches"][0]["invoiceId"],
        march_id.as_str(),
        "{late:?}"
    );
    let march = app
        .wait_for_invoice(&march_id, "March total of 0.25", |i| i["total"] == "0.25")
        .await;
    assert_eq!(march["periodStart"], "2027-03-01T00:00:00Z", "{march}");

    // Back to real time: the same event timestamps are now far in the future.
    app.send(Method::DELETE, "/_local/clock", None)
        .await
        .expect(200);
    app.post("/v1/events", call("feb-3", "2027-02-20T11:00:00Z"))
        .await
        .expect_error(422, "timestamp_in_future");
}
