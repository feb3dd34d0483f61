//! Contracts pre-generate their invoices atomically; periods are anchored on the start date;
//! one meter has one home per customer and day; cancellation voids what follows.

use chrono::{Datelike, Days, Months, NaiveDate, Utc};
use futures::future::join_all;
use integration_tests::{TestApp, unique_code};
use serde_json::{Value, json};

use crate::catalog::guide_catalog;

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap()
}

async fn contract(app: &TestApp, body: Value) -> Value {
    app.post("/v1/contracts", body).await.expect(201).clone()
}

#[tokio::test]
async fn the_guide_s_customers_get_their_draft_invoices() {
    let app = TestApp::spawn().await;
    let (_, free, pro) = guide_catalog(&app).await;
    let start = first_of_month(today());
    let alice = app.customer("Alice (Free)").await;
    let bob = app.customer("Bob (Pro)").await;
    let free_contract = contract(
        &app,
        json!({"customerId": alice, "planId": free["id"], "startDate": start.to_string()}),
    )
    .await;
    let pro_contract = contract(
        &app,
        json!({"customerId": bob, "planId": pro["id"], "startDate": start.to_string()}),
    )
    .await;
    assert_eq!(
        pro_contract["autoPay"], true,
        "auto-pay defaults to the plan's"
    );
    assert_eq!(free_contract["autoPay"], false);

    // Rolling: the current period and the next one.
    let next = start.checked_add_months(Months::new(1)).unwrap();
    let pro_invoices = app
        .contract_invoices(pro_contract["id"].as_str().unwrap())
        .await;
    assert_eq!(pro_invoices.len(), 2);
    let current = &pro_invoices[0];
    assert_eq!(current["status"], "DRAFTED");
    assert_eq!(current["periodStart"], format!("{start}T00:00:00Z"));
    assert_eq!(current["periodEnd"], format!("{next}T00:00:00Z"));
    assert_eq!(current["invoiceDate"], next.to_string());
    assert_eq!(
        current["dueDate"],
        next.to_string(),
        "net 0: due on receipt"
    );
    assert_eq!(current["currency"], "USD");
    assert_eq!(current["autoPay"], true);
    assert_eq!(current["invoiceNumber"], Value::Null);
    let lines = current["lineItems"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["description"], "Pro plan");
    assert_eq!(lines[0]["isMetered"], false);
    assert_eq!(
        (lines[0]["quantity"].as_str(), lines[0]["amount"].as_str()),
        (Some("1"), Some("50.00"))
    );
    assert_eq!(lines[1]["description"], "API Calls");
    assert_eq!(lines[1]["isMetered"], true);
    assert_eq!(lines[1]["unitAmount"], "0.08");
    assert_eq!(
        (lines[1]["quantity"].as_str(), lines[1]["amount"].as_str()),
        (Some("0"), Some("0.00"))
    );
    assert_eq!(lines[1]["servicePeriod"]["start"], current["periodStart"]);
    assert_eq!(
        (current["subtotal"].as_str(), current["total"].as_str()),
        (Some("50.00"), Some("50.00"))
    );
    assert_eq!(current["totalCents"], 5000);
    assert_eq!(pro_invoices[1]["periodStart"], format!("{next}T00:00:00Z"));

    let free_invoices = app
        .contract_invoices(free_contract["id"].as_str().unwrap())
        .await;
    assert_eq!(free_invoices[0]["total"], "0.00");
    assert_eq!(
        free_invoices[0]["dueDate"],
        next.checked_add_days(Days::new(30)).unwrap().to_string(),
        "net 30"
    );
    // The same invoice reads back by id, and appears in the customer's list.
    let id = current["id"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/v1/invoices/{id}")).await.expect(200),
        current
    );
    let bobs = app.get(&format!("/v1/invoices?customerId={bob}")).await;
    assert_eq!(bobs.expect(200)["data"].as_array().unwrap().len(), 2);
    let upcoming = app
        .get(&format!(
            "/v1/invoices/upcoming?contractId={}",
            pro_contract["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(upcoming.expect(200)["id"], current["id"]);
}

#[tokio::test]
async fn a_fixed_term_contract_from_january_31_bills_month_ends_and_is_cut_at_its_end() {
    let app = TestApp::spawn().await;
    let (_, free, _) = guide_catalog(&app).await;
    let customer = app.customer("Month-end").await;
    let c = contract(
        &app,
        json!({"customerId": customer, "planId": free["id"], "startDate": "2028-01-31", "endDate": "2028-05-15"}),
    )
    .await;
    let invoices = app.contract_invoices(c["id"].as_str().unwrap()).await;
    let periods: Vec<(String, String)> = invoices
        .iter()
        .map(|i| {
            (
                i["periodStart"].as_str().unwrap()[..10].to_owned(),
                i["periodEnd"].as_str().unwrap()[..10].to_owned(),
            )
        })
        .collect();
    let expected = [
        ("2028-01-31", "2028-02-29"),
        ("2028-02-29", "2028-03-31"),
        ("2028-03-31", "2028-04-30"),
        ("2028-04-30", "2028-05-15"),
    ];
    assert_eq!(
        periods,
        expected
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn one_meter_has_one_home_per_customer_and_day() {
    let app = TestApp::spawn().await;
    let (_, free, pro) = guide_catalog(&app).await;
    let customer = app.customer("Overlap").await;
    let first = contract(
        &app,
        json!({"customerId": customer, "planId": free["id"], "startDate": "2027-01-01", "endDate": "2027-04-01"}),
    )
    .await;
    let clash = app
        .post(
            "/v1/contracts",
            json!({"customerId": customer, "planId": pro["id"], "startDate": "2027-03-15"}),
        )
        .await;
    clash.expect_error(409, "overlapping_contract");
    assert_eq!(clash.body["error"]["existingId"], first["id"]);
    // Right after the first ends is fine.
    contract(
        &app,
        json!({"customerId": customer, "planId": pro["id"], "startDate": "2027-04-01", "endDate": "2027-06-01"}),
    )
    .await;
    // A plan on another meter may overlap.
    let other_meter = app
        .meter(
            json!({"code": unique_code("SEATS"), "eventName": "seat", "aggregationType": "COUNT"}),
        )
        .await;
    let other_plan = app
        .plan(json!({"name": "Seats", "prices": [{"model": "USAGE", "meterId": other_meter["id"], "unitAmount": "3"}]}))
        .await;
    contract(
        &app,
        json!({"customerId": customer, "planId": other_plan["id"], "startDate": "2027-01-01", "endDate": "2027-02-01"}),
    )
    .await;
}

#[tokio::test]
async fn concurrent_overlapping_contracts_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let (_, free, _) = guide_catalog(&app).await;
    let customer = app.customer("Racer").await;
    let answers = join_all((0..8).map(|i| {
        let app = &app;
        let body = json!({"customerId": customer, "planId": free["id"],
                          "startDate": format!("2027-0{}-01", 1 + i % 3), "endDate": "2027-12-01"});
        async move { app.post("/v1/contracts", body).await }
    }))
    .await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    assert_eq!(created, 1, "{answers:?}");
    for a in answers.iter().filter(|a| a.status != 201) {
        a.expect_error(409, "overlapping_contract");
    }
    let listed = app
        .get(&format!("/v1/contracts?customerId={customer}"))
        .await;
    assert_eq!(listed.expect(200)["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn cancelling_ends_the_current_period_and_voids_the_rest() {
    let app = TestApp::spawn().await;
    let (_, _, pro) = guide_catalog(&app).await;
    let customer = app.customer("Leaver").await;
    let start = first_of_month(today());
    let c = contract(
        &app,
        json!({"customerId": customer, "planId": pro["id"], "startDate": start.to_string(),
               "endDate": start.checked_add_months(Months::new(6)).unwrap().to_string()}),
    )
    .await;
    let id = c["id"].as_str().unwrap();
    assert_eq!(app.contract_invoices(id).await.len(), 6);
    let canceled = app
        .post(&format!("/v1/contracts/{id}/cancel"), json!({}))
        .await;
    let canceled = canceled.expect(200).clone();
    let next = start.checked_add_months(Months::new(1)).unwrap();
    assert_eq!(canceled["status"], "CANCELED");
    assert_eq!(canceled["endDate"], next.to_string());
    let statuses: Vec<String> = app
        .contract_invoices(id)
        .await
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["DRAFTED", "VOID", "VOID", "VOID", "VOID", "VOID"]
    );
    let voided = app
        .get(&format!("/v1/invoices?contractId={id}&status=VOID&limit=2"))
        .await;
    let voided = voided.expect(200);
    assert_eq!(voided["data"].as_array().unwrap().len(), 2);
    assert_eq!(voided["hasMore"], true);
    let again = app
        .post(&format!("/v1/contracts/{id}/cancel"), json!({}))
        .await;
    assert_eq!(
        again.expect(200),
        &canceled,
        "cancelling twice changes nothing"
    );
    // The customer is free to start another contract on the same meter afterwards.
    contract(
        &app,
        json!({"customerId": customer, "planId": pro["id"], "startDate": next.to_string()}),
    )
    .await;
}

/// `n` events of `meter` for `customer`, now; waits until the matcher has recorded them all.
async fn calls(app: &TestApp, customer: &str, meter: &Value, n: usize) {
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"customerId": customer, "eventName": meter["eventName"], "idempotencyKey": format!("c{i}")}))
        .collect();
    app.post("/v1/events/batch", json!({ "events": events }))
        .await
        .expect(202);
    app.wait_for_events(&format!("customerId={customer}&status=matched"), n)
        .await;
}

async fn upcoming(app: &TestApp, contract: &Value) -> Value {
    let id = contract["id"].as_str().unwrap();
    app.get(&format!("/v1/invoices/upcoming?contractId={id}"))
        .await
        .expect(200)
        .clone()
}

#[tokio::test]
async fn overrides_change_the_contract_s_prices_and_usage_is_priced_at_the_override() {
    let app = TestApp::spawn_with_matcher().await;
    let (meter, _, pro) = guide_catalog(&app).await;
    let customer = app.customer("Discounted").await;
    let flat = pro["prices"][0]["id"].as_str().unwrap();
    let usage = pro["prices"][1]["id"].as_str().unwrap();
    let c = contract(
        &app,
        json!({"customerId": customer, "planId": pro["id"], "startDate": first_of_month(today()).to_string(),
               "overrides": [{"priceId": flat, "unitAmount": "40.00"}, {"priceId": usage, "unitAmount": "0.05"}],
               "metadata": {"deal": "Q1"}}),
    )
    .await;
    assert_eq!(c["metadata"]["deal"], "Q1");
    calls(&app, &customer, &meter, 7).await;
    let invoice = upcoming(&app, &c).await;
    let lines = &invoice["lineItems"];
    assert_eq!(lines[0]["amount"], "40.00");
    assert_eq!(
        (
            lines[1]["quantity"].as_str(),
            lines[1]["unitAmount"].as_str(),
            lines[1]["amount"].as_str()
        ),
        (Some("7"), Some("0.05"), Some("0.35")),
        "7 calls at the override's 0.05, not the plan's 0.08: {invoice}"
    );
    assert_eq!(
        (invoice["total"].as_str(), invoice["totalCents"].as_i64()),
        (Some("40.35"), Some(4035))
    );
}

#[tokio::test]
async fn a_yen_plan_has_no_minor_units_and_rounds_usage_to_whole_yen() {
    let app = TestApp::spawn_with_matcher().await;
    let meter = app
        .meter(json!({"code": unique_code("JP"), "eventName": unique_code("jp").to_lowercase(), "aggregationType": "COUNT"}))
        .await;
    let plan = app
        .plan(json!({"name": "Tokyo", "currency": "JPY", "prices": [
            {"model": "FLAT", "flatAmount": "1000"},
            {"model": "USAGE", "meterId": meter["id"], "unitAmount": "0.5"}]}))
        .await;
    let customer = app.customer("Yamada").await;
    let c = contract(
        &app,
        json!({"customerId": customer, "planId": plan["id"], "startDate": first_of_month(today()).to_string()}),
    )
    .await;
    calls(&app, &customer, &meter, 5).await;
    let invoice = upcoming(&app, &c).await;
    assert_eq!(invoice["currency"], "JPY");
    let usage = &invoice["lineItems"][1];
    assert_eq!(
        (usage["quantity"].as_str(), usage["amount"].as_str()),
        (Some("5"), Some("3")),
        "5 × 0.5 = 2.5 yen, rounded half away from zero to 3 (not to the even 2): {invoice}"
    );
    assert_eq!(invoice["total"], "1003");
    assert_eq!(invoice["totalCents"], 1003, "yen have no minor unit");
}

#[tokio::test]
async fn month_end_and_leap_day_anchors_give_periods_without_gaps_or_overlaps() {
    let app = TestApp::spawn().await;
    let (_, free, _) = guide_catalog(&app).await;
    // Ends computed by hand: each from the anchor, clamped to the month's last day.
    let cases = [
        (
            "2028-01-31",
            "2029-04-30",
            vec![
                "2028-02-29",
                "2028-03-31",
                "2028-04-30",
                "2028-05-31",
                "2028-06-30",
                "2028-07-31",
                "2028-08-31",
                "2028-09-30",
                "2028-10-31",
                "2028-11-30",
                "2028-12-31",
                "2029-01-31",
                "2029-02-28",
                "2029-03-31",
                "2029-04-30",
            ],
        ),
        (
            "2028-02-29",
            "2029-03-29",
            vec![
                "2028-03-29",
                "2028-04-29",
                "2028-05-29",
                "2028-06-29",
                "2028-07-29",
                "2028-08-29",
                "2028-09-29",
                "2028-10-29",
                "2028-11-29",
                "2028-12-29",
                "2029-01-29",
                "2029-02-28",
                "2029-03-29",
            ],
        ),
    ];
    for (anchor, end, ends) in cases {
        let customer = app.customer(&format!("Anchored {anchor}")).await;
        let c = contract(
            &app,
            json!({"customerId": customer, "planId": free["id"], "startDate": anchor, "endDate": end}),
        )
        .await;
        let invoices = app.contract_invoices(c["id"].as_str().unwrap()).await;
        let day = |v: &Value| v.as_str().unwrap()[..10].to_owned();
        let periods: Vec<(String, String)> = invoices
            .iter()
            .map(|i| (day(&i["periodStart"]), day(&i["periodEnd"])))
            .collect();
        assert_eq!(
            periods[0].0, anchor,
            "the first period starts on the anchor"
        );
        for pair in periods.windows(2) {
            assert_eq!(
                pair[1].0, pair[0].1,
                "{anchor}: no gap and no overlap: {periods:?}"
            );
        }
        let got: Vec<&str> = periods.iter().map(|(_, e)| e.as_str()).collect();
        assert_eq!(got, ends, "{anchor}");
        for i in &invoices {
            assert_eq!(
                i["invoiceDate"],
                &i["periodEnd"].as_str().unwrap()[..10],
                "{i}"
            );
        }
    }
}

#[tokio::test]
async fn contract_validation() {
    let app = TestApp::spawn().await;
    let (_, free, pro) = guide_catalog(&app).await;
    let customer = app.customer("Validated").await;
    let cases = [
        (
            json!({"planId": free["id"], "startDate": "2027-01-01"}),
            400,
            "missing_field",
            "customerId",
        ),
        (
            json!({"customerId": "cus_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "planId": free["id"], "startDate": "2027-01-01"}),
            422,
            "unknown_customer",
            "customerId",
        ),
        (
            json!({"customerId": customer, "planId": "plan_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa", "startDate": "2027-01-01"}),
            422,
            "unknown_plan",
            "planId",
        ),
        (
            json!({"customerId": customer, "planId": free["id"], "startDate": "2027-02-30"}),
            422,
            "invalid_date",
            "startDate",
        ),
        (
            json!({"customerId": customer, "planId": free["id"], "startDate": "2027-02-01", "endDate": "2027-01-01"}),
            422,
            "invalid_end_date",
            "endDate",
        ),
        (
            json!({"customerId": customer, "planId": free["id"], "startDate": "2027-01-01", "autoPay": true}),
            422,
            "auto_pay_requires_net_0",
            "autoPay",
        ),
        (
            json!({"customerId": customer, "planId": pro["id"], "startDate": "2027-01-01", "netTerms": 15, "autoPay": true}),
            422,
            "auto_pay_requires_net_0",
            "autoPay",
        ),
        (
            json!({"customerId": customer, "planId": free["id"], "startDate": "2027-01-01", "overrides": [{"priceId": "price_x", "unitAmount": "1"}]}),
            422,
            "unknown_price",
            "overrides[0].priceId",
        ),
        (
            json!({"customerId": customer, "planId": free["id"], "startDate": "2027-01-01",
                "metadata": (0..11).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}),
            422,
            "too_many_metadata_keys",
            "metadata",
        ),
        (
            json!({"customerId": customer, "planId": free["id"], "startDate": "2027-01-01", "endDate": "2040-01-01"}),
            422,
            "too_many_periods",
            "endDate",
        ),
    ];
    for (body, status, code, param) in cases {
        let answer = app.post("/v1/contracts", body.clone()).await;
        answer.expect_error(status, code);
        assert_eq!(answer.param(), param, "{body}");
    }
    // Nothing was written by any of them.
    let listed = app
        .get(&format!("/v1/contracts?customerId={customer}"))
        .await;
    assert_eq!(listed.expect(200)["data"], json!([]));
    app.get("/v1/invoices?status=LATE")
        .await
        .expect_error(400, "invalid_status");
    app.get("/v1/invoices/upcoming")
        .await
        .expect_error(400, "missing_field");
    app.get("/v1/contracts/ctr_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .await
        .expect_error(404, "resource_missing");
}
