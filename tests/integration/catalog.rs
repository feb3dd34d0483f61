//! Meters and plans: the guide's catalog, every price model accepted, and validation errors that
//! name the offending field.

use integration_tests::{TestApp, unique_code};
use serde_json::{Value, json};

#[tokio::test]
async fn meters_are_created_read_listed_and_archived() {
    let app = TestApp::spawn().await;
    let code = unique_code("API_CALL");
    let meter = app
        .meter(json!({"code": code, "eventName": "call_count", "displayName": "API Calls", "aggregationType": "COUNT"}))
        .await;
    let id = meter["id"].as_str().unwrap();
    assert!(id.starts_with("mtr_"));
    assert_eq!(meter["status"], "active");
    assert_eq!(
        app.get(&format!("/v1/meters/{id}")).await.expect(200),
        &meter
    );

    let clash = app
        .post(
            "/v1/meters",
            json!({"code": code, "eventName": "other", "aggregationType": "COUNT"}),
        )
        .await;
    clash.expect_error(409, "meter_code_taken");
    assert_eq!(clash.body["error"]["existingId"], id);

    let archived = app
        .post(&format!("/v1/meters/{id}/archive"), json!({}))
        .await;
    let archived = archived.expect(200).clone();
    assert_eq!(archived["status"], "archived");
    let again = app
        .post(&format!("/v1/meters/{id}/archive"), json!({}))
        .await;
    assert_eq!(
        again.expect(200),
        &archived,
        "archiving twice changes nothing"
    );

    // Listing walks every page to find it.
    let found = app
        .every_page("/v1/meters")
        .await
        .iter()
        .any(|m| m["id"] == id);
    assert!(found);
}

#[tokio::test]
async fn meter_validation_names_the_field() {
    let app = TestApp::spawn().await;
    let cases = [
        (
            json!({"code": "lower", "eventName": "e", "aggregationType": "COUNT"}),
            422,
            "invalid_meter_code",
            "code",
        ),
        (
            json!({"code": "A", "eventName": "e", "aggregationType": "SUM"}),
            422,
            "aggregation_key_required",
            "aggregationKey",
        ),
        (
            json!({"code": "A", "eventName": "e", "aggregationType": "COUNT", "aggregationKey": "x"}),
            422,
            "aggregation_key_not_allowed",
            "aggregationKey",
        ),
        (
            json!({"code": "A", "eventName": "e", "aggregationType": "AVERAGE"}),
            422,
            "invalid_aggregation_type",
            "aggregationType",
        ),
        (
            json!({"eventName": "e", "aggregationType": "COUNT"}),
            400,
            "missing_field",
            "code",
        ),
        (
            json!({"code": "A", "eventName": "e", "aggregationType": "COUNT", "groupKeys": "region"}),
            400,
            "invalid_field",
            "groupKeys",
        ),
    ];
    for (body, status, code, param) in cases {
        let answer = app.post("/v1/meters", body.clone()).await;
        answer.expect_error(status, code);
        assert_eq!(answer.param(), param, "{body}");
    }
    app.get("/v1/meters/mtr_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa")
        .await
        .expect_error(404, "resource_missing");
}

/// The guide's catalog: API_CALL counted on `call_count`; Free at $0.10 per call, net 30; Pro at
/// $50 a month plus $0.08 per call, due on receipt, auto-pay on.
/// Codes and event names get a unique suffix (`API_CALL_…`, `call_count_…`) so tests running
/// side by side on one table never read each other's meters.
pub async fn guide_catalog(app: &TestApp) -> (Value, Value, Value) {
    let code = unique_code("API_CALL");
    let event_name = format!("call_count_{}", uuid::Uuid::new_v4().simple());
    let meter = app
        .meter(json!({"code": code, "eventName": event_name, "displayName": "API Calls", "aggregationType": "COUNT"}))
        .await;
    let free = app
        .plan(json!({
            "name": "Free", "currency": "USD", "netTerms": 30,
            "prices": [{"model": "USAGE", "meterCode": code, "unitAmount": "0.10"}]
        }))
        .await;
    let pro = app
        .plan(json!({
            "name": "Pro", "currency": "USD", "netTerms": 0, "autoPay": true,
            "prices": [
                {"model": "FLAT", "flatAmount": "50.00", "description": "Pro plan"},
                {"model": "USAGE", "meterId": meter["id"], "unitAmount": "0.08"}
            ]
        }))
        .await;
    (meter, free, pro)
}

#[tokio::test]
async fn the_guide_s_free_and_pro_plans() {
    let app = TestApp::spawn().await;
    let (meter, free, pro) = guide_catalog(&app).await;
    assert_eq!(free["netTerms"], 30);
    assert_eq!(free["autoPay"], false);
    assert_eq!(free["billingInterval"], "MONTH");
    assert_eq!(free["prices"][0]["unitAmount"], "0.10");
    assert_eq!(free["prices"][0]["meterId"], meter["id"]);
    assert_eq!(free["prices"][0]["description"], "API Calls");
    assert_eq!(pro["autoPay"], true);
    assert_eq!(pro["prices"][0]["model"], "FLAT");
    assert_eq!(pro["prices"][0]["flatAmount"], "50.00");
    assert_eq!(pro["prices"][1]["meterCode"], meter["code"]);
    let id = pro["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/plans/{id}")).await.expect(200), &pro);
}

#[tokio::test]
async fn every_price_model_is_accepted_and_read_back() {
    let app = TestApp::spawn().await;
    let tokens = app
        .meter(
            json!({"code": unique_code("TOKENS"), "eventName": "llm", "aggregationType": "SUM",
                      "aggregationKey": "tokens", "groupKeys": ["region", "model"]}),
        )
        .await;
    let storage = app
        .meter(json!({"code": unique_code("STORAGE"), "eventName": "storage", "aggregationType": "MAX", "aggregationKey": "gb"}))
        .await;
    let seats = app
        .meter(json!({"code": unique_code("SEATS"), "eventName": "login", "aggregationType": "UNIQUE_COUNT", "aggregationKey": "user"}))
        .await;
    let calls = app
        .meter(
            json!({"code": unique_code("CALLS"), "eventName": "call", "aggregationType": "COUNT"}),
        )
        .await;
    let plan = app
        .plan(json!({
            "name": "Everything", "currency": "EUR", "billingInterval": "QUARTER", "gracePeriodDays": 3,
            "prices": [
                {"model": "USAGE", "meterId": tokens["id"], "dimensionalRates": [
                    {"dimensions": {"region": "eu", "model": "gpt-4"}, "unitAmount": "0.00003"},
                    {"dimensions": {"region": "us", "model": "gpt-4"}, "unitAmount": "0.00002"}
                 ], "fallbackUnitAmount": "0.00001"},
                {"model": "USAGE", "meterId": storage["id"], "tiering": "GRADUATED", "tiers": [
                    {"upTo": "100", "unitAmount": "0.10"}, {"upTo": null, "unitAmount": "0.05", "flatAmount": "1.00"}]},
                {"model": "USAGE", "meterId": seats["id"], "tiering": "VOLUME", "tiers": [
                    {"upTo": "10", "unitAmount": "5"}, {"upTo": null, "unitAmount": "4"}]},
                {"model": "USAGE", "meterId": calls["id"], "tiering": "PACKAGE", "packageSize": "1000", "unitAmount": "2.00"}
            ]
        }))
        .await;
    assert_eq!(plan["currency"], "EUR");
    assert_eq!(plan["billingInterval"], "QUARTER");
    assert_eq!(plan["prices"][0]["tiering"], "NONE");
    assert_eq!(plan["prices"][0]["fallbackUnitAmount"], "0.00001");
    assert_eq!(plan["prices"][1]["tiers"][1]["upTo"], Value::Null);
    assert_eq!(plan["prices"][3]["packageSize"], "1000");
    let id = plan["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/v1/plans/{id}")).await.expect(200), &plan);
}

/// Stripe and Lago write counts as JSON integers (`"packageSize": 100`, `"up_to": 1000`):
/// accepted exactly, and read back as decimal strings. Money as a JSON number stays refused.
#[tokio::test]
async fn counts_may_be_json_integers_but_money_may_not() {
    let app = TestApp::spawn().await;
    let calls = app
        .meter(json!({"code": unique_code("INT"), "eventName": "int", "aggregationType": "COUNT"}))
        .await;
    let rows = app
        .meter(json!({"code": unique_code("ROWS"), "eventName": "int", "aggregationType": "COUNT"}))
        .await;
    let plan = app
        .plan(json!({
            "name": "Integers",
            "prices": [
                {"model": "USAGE", "meterId": calls["id"], "tiering": "PACKAGE", "packageSize": 100, "unitAmount": "2.00"},
                {"model": "USAGE", "meterId": rows["id"], "tiering": "GRADUATED", "tiers": [
                    {"upTo": 1000, "unitAmount": "0.10"}, {"upTo": null, "unitAmount": "0.05"}]}
            ]
        }))
        .await;
    assert_eq!(plan["prices"][0]["packageSize"], "100");
    assert_eq!(plan["prices"][1]["tiers"][0]["upTo"], "1000");
    let refused = app
        .post(
            "/v1/plans",
            json!({"name": "Float", "prices": [{"model": "USAGE", "meterId": calls["id"], "tiering": "PACKAGE", "packageSize": 100.5, "unitAmount": "2"}]}),
        )
        .await;
    refused.expect_error(400, "invalid_field");
    assert_eq!(refused.param(), "prices[0].packageSize");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not JSON numbers with a fraction"),
        "{}",
        refused.body
    );
    let refused = app
        .post(
            "/v1/plans",
            json!({"name": "Money", "prices": [{"model": "FLAT", "flatAmount": 50}]}),
        )
        .await;
    refused.expect_error(400, "invalid_field");
    assert_eq!(refused.param(), "prices[0].flatAmount");
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("amounts are decimal strings"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn plan_validation_names_the_field_path() {
    let app = TestApp::spawn().await;
    let code = unique_code("V");
    let meter = app
        .meter(json!({"code": code, "eventName": "v", "aggregationType": "COUNT", "groupKeys": ["region"]}))
        .await;
    let archived = app
        .meter(json!({"code": unique_code("OLD"), "eventName": "v", "aggregationType": "COUNT"}))
        .await;
    app.post(
        &format!("/v1/meters/{}/archive", archived["id"].as_str().unwrap()),
        json!({}),
    )
    .await
    .expect(200);
    let usage = |extra: Value| {
        let mut p = json!({"model": "USAGE", "meterCode": code});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        p
    };
    let cases = [
        (
            json!({"name": "A", "netTerms": 30, "autoPay": true, "prices": [usage(json!({"unitAmount": "1"}))]}),
            422,
            "auto_pay_requires_net_0",
            "autoPay",
        ),
        (
            json!({"name": "A", "currency": "XXY", "prices": [usage(json!({"unitAmount": "1"}))]}),
            422,
            "invalid_currency",
            "currency",
        ),
        (
            json!({"name": "A", "prices": []}),
            422,
            "invalid_prices",
            "prices",
        ),
        (
            json!({"name": "A", "prices": [{"model": "FLAT", "flatAmount": "1"}, usage(json!({"tiering": "GRADUATED", "tiers": [
            {"upTo": "10", "unitAmount": "1"}, {"upTo": "5", "unitAmount": "1"}, {"upTo": null, "unitAmount": "1"}]}))]}),
            422,
            "invalid_tiers",
            "prices[1].tiers[1].upTo",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"tiering": "VOLUME", "tiers": [{"upTo": "10", "unitAmount": "1"}]}))]}),
            422,
            "invalid_tiers",
            "prices[0].tiers[0].upTo",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"unitAmount": 0.1}))]}),
            400,
            "invalid_field",
            "prices[0].unitAmount",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"unitAmount": "-1"}))]}),
            400,
            "invalid_field",
            "prices[0].unitAmount",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"tiering": "PACKAGE", "unitAmount": "1"}))]}),
            422,
            "missing_field",
            "prices[0].packageSize",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"tiering": "PACKAGE", "packageSize": "0", "unitAmount": "1"}))]}),
            422,
            "invalid_package_size",
            "prices[0].packageSize",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"unitAmount": "1", "tiers": []}))]}),
            422,
            "field_not_allowed",
            "prices[0].tiers",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"dimensionalRates": [{"dimensions": {"zone": "eu"}, "unitAmount": "1"}]}))]}),
            422,
            "dimension_keys_mismatch",
            "prices[0].dimensionalRates[0].dimensions",
        ),
        (
            json!({"name": "A", "prices": [{"model": "USAGE", "meterCode": "NO_SUCH_METER_X", "unitAmount": "1"}]}),
            422,
            "unknown_meter",
            "prices[0].meterCode",
        ),
        (
            json!({"name": "A", "prices": [{"model": "USAGE", "meterId": archived["id"], "unitAmount": "1"}]}),
            422,
            "meter_archived",
            "prices[0].meterId",
        ),
        (
            json!({"name": "A", "prices": [usage(json!({"unitAmount": "1"})), {"model": "USAGE", "meterId": meter["id"], "unitAmount": "2"}]}),
            422,
            "duplicate_meter",
            "prices[1].meterId",
        ),
        (
            json!({"name": "A", "prices": [{"model": "FLAT"}]}),
            422,
            "missing_field",
            "prices[0].flatAmount",
        ),
        (
            json!({"name": "A", "prices": [{"model": "TIER", "flatAmount": "1"}]}),
            422,
            "invalid_model",
            "prices[0].model",
        ),
        (
            json!({"name": "A", "prices": [{"model": "FLAT", "flatAmount": "1", "color": "red"}]}),
            400,
            "unknown_field",
            "prices[0].color",
        ),
    ];
    for (body, status, code, param) in cases {
        let answer = app.post("/v1/plans", body.clone()).await;
        answer.expect_error(status, code);
        assert_eq!(answer.param(), param, "{body}");
    }
}
