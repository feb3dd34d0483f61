//! The customer slice end to end: create, read, list, find, patch, and uniqueness under races.

use futures::future::join_all;
use integration_tests::{TestApp, unique};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn a_created_customer_reads_back_with_every_field() {
    let app = TestApp::spawn().await;
    let external = unique("ext");
    let stripe = format!("cus_{}", uuid::Uuid::new_v4().simple());
    let created = app
        .post(
            "/v1/customers",
            json!({
                "name": "Acme AI",
                "legalName": "Acme AI, Inc.",
                "contacts": [{"email": "ap@acme.example", "roles": ["accounts_payable", "billing"]}],
                "externalCustomerId": external,
                "tags": ["ai", "beta"],
                "metadata": {"segment": "smb"},
                "paymentProviderId": stripe,
                "provider": "stripe",
                "paymentMethodId": "pm_card_visa",
                "paymentMethodType": "card"
            }),
        )
        .await;
    let created = created.expect(201).clone();
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("cus_"), "{id}");
    assert_eq!(created["paymentProviderId"], stripe.as_str());
    assert_eq!(created["provider"], "stripe");
    assert_eq!(created["paymentMethodType"], "card");
    assert_eq!(
        created["contacts"][0]["roles"],
        json!(["accounts_payable", "billing"])
    );
    assert!(created["createdAt"].as_str().unwrap().ends_with('Z'));

    let read = app.get(&format!("/v1/customers/{id}")).await;
    assert_eq!(read.expect(200), &created);

    let found = app
        .get(&format!("/v1/customers?externalCustomerId={external}"))
        .await;
    let found = found.expect(200);
    assert_eq!(found["data"], json!([created]));
    assert_eq!(found["hasMore"], false);
}

#[tokio::test]
async fn an_unknown_external_id_finds_an_empty_list() {
    let app = TestApp::spawn().await;
    let found = app
        .get(&format!(
            "/v1/customers?externalCustomerId={}",
            unique("none")
        ))
        .await;
    assert_eq!(found.expect(200)["data"], json!([]));
}

#[tokio::test]
async fn lists_page_in_creation_order_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let tag = unique("page");
    let mut mine = Vec::new();
    for i in 0..5 {
        let c = app
            .post(
                "/v1/customers",
                json!({"name": format!("Pager {i}"), "tags": [tag]}),
            )
            .await;
        mine.push(c.expect(201)["id"].as_str().unwrap().to_owned());
    }
    // Other tests write customers concurrently; ours must still appear once each, in order.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/customers?limit=2".to_owned(),
            Some(c) => format!("/v1/customers?limit=2&cursor={c}"),
        };
        let page = app.get(&path).await;
        let page = page.expect(200);
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|c| c["id"].as_str().unwrap().to_owned()));
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(page["hasMore"], true);
                cursor = Some(next.to_owned());
            }
            None => {
                assert_eq!(page["hasMore"], false);
                break;
            }
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no customer appears twice");
    let ours: Vec<&String> = seen.iter().filter(|id| mine.contains(id)).collect();
    assert_eq!(
        ours,
        mine.iter().collect::<Vec<_>>(),
        "ours appear once each, oldest first"
    );
}

#[tokio::test]
async fn patch_sets_keeps_and_clears_fields() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/v1/customers",
            json!({"name": "Before", "legalName": "Before Ltd", "tags": ["x"], "metadata": {"a": "1"}}),
        )
        .await;
    let created = created.expect(201).clone();
    let id = created["id"].as_str().unwrap();
    let patched = app
        .patch(
            &format!("/v1/customers/{id}"),
            json!({"name": "After", "legalName": null, "contacts": [{"email": "new@after.example"}]}),
        )
        .await;
    let patched = patched.expect(200).clone();
    assert_eq!(patched["name"], "After");
    assert_eq!(patched["legalName"], Value::Null);
    assert_eq!(patched["tags"], json!(["x"]), "absent fields are kept");
    assert_eq!(patched["metadata"], json!({"a": "1"}));
    assert_eq!(patched["contacts"][0]["email"], "new@after.example");
    assert_eq!(patched["createdAt"], created["createdAt"]);
    assert_ne!(patched["updatedAt"], created["updatedAt"]);
    assert_eq!(
        app.get(&format!("/v1/customers/{id}")).await.expect(200),
        &patched
    );
}

#[tokio::test]
async fn changing_the_external_id_moves_the_claim() {
    let app = TestApp::spawn().await;
    let (old, new) = (unique("old"), unique("new"));
    let first = app
        .post(
            "/v1/customers",
            json!({"name": "First", "externalCustomerId": old}),
        )
        .await;
    let first_id = first.expect(201)["id"].as_str().unwrap().to_owned();
    app.patch(
        &format!("/v1/customers/{first_id}"),
        json!({"externalCustomerId": new}),
    )
    .await
    .expect(200);
    // The old value is free again; the new one is taken by the first customer.
    let second = app
        .post(
            "/v1/customers",
            json!({"name": "Second", "externalCustomerId": old}),
        )
        .await;
    let second_id = second.expect(201)["id"].as_str().unwrap().to_owned();
    let clash = app
        .patch(
            &format!("/v1/customers/{second_id}"),
            json!({"externalCustomerId": new}),
        )
        .await;
    clash.expect_error(409, "external_customer_id_taken");
    assert_eq!(clash.body["error"]["existingId"], first_id.as_str());
    let found = app
        .get(&format!("/v1/customers?externalCustomerId={new}"))
        .await;
    assert_eq!(found.expect(200)["data"][0]["id"], first_id.as_str());
    // Clearing releases it.
    app.patch(
        &format!("/v1/customers/{first_id}"),
        json!({"externalCustomerId": null}),
    )
    .await
    .expect(200);
    app.patch(
        &format!("/v1/customers/{second_id}"),
        json!({"externalCustomerId": new}),
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn concurrent_patches_lose_no_change() {
    let app = TestApp::spawn().await;
    let created = app.post("/v1/customers", json!({"name": "Racy"})).await;
    let id = created.expect(201)["id"].as_str().unwrap().to_owned();
    // Each request sets a different field; with lost updates some would vanish.
    let fields = ["legalName", "externalCustomerId", "paymentMethodId"];
    let values = [unique("Legal"), unique("ext"), "pm_card_visa".to_owned()];
    let answers = join_all(fields.iter().zip(&values).map(|(field, value)| {
        let app = &app;
        let id = &id;
        async move {
            app.patch(&format!("/v1/customers/{id}"), json!({ *field: value }))
                .await
        }
    }))
    .await;
    for a in &answers {
        a.expect(200);
    }
    let read = app.get(&format!("/v1/customers/{id}")).await;
    let read = read.expect(200);
    for (field, value) in fields.iter().zip(&values) {
        assert_eq!(read[*field], value.as_str(), "{field} survived");
    }
}

/// Twenty creates race for one unique value: exactly one wins, every other answer is 409 naming
/// the winner, and exactly one customer holds the value afterwards.
async fn race_for_unique(field: &str, value: &str, code: &str) {
    let app = TestApp::spawn().await;
    let answers = join_all((0..20).map(|i| {
        let app = &app;
        async move {
            app.post(
                "/v1/customers",
                json!({"name": format!("Racer {i}"), field: value}),
            )
            .await
        }
    }))
    .await;
    let winners: Vec<_> = answers.iter().filter(|a| a.status == 201).collect();
    assert_eq!(winners.len(), 1, "exactly one create wins: {answers:?}");
    let winner = winners[0].body["id"].as_str().unwrap();
    for a in answers.iter().filter(|a| a.status != 201) {
        a.expect_error(409, code);
        assert_eq!(a.body["error"]["existingId"], winner, "{}", a.body);
        assert_eq!(a.param(), field);
    }
}

#[tokio::test]
async fn twenty_concurrent_creates_with_one_external_id_make_one_customer() {
    let value = unique("race");
    race_for_unique("externalCustomerId", &value, "external_customer_id_taken").await;
    let app = TestApp::spawn().await;
    let found = app
        .get(&format!("/v1/customers?externalCustomerId={value}"))
        .await;
    assert_eq!(found.expect(200)["data"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn twenty_concurrent_creates_with_one_stripe_customer_make_one_customer() {
    let value = format!("cus_{}", uuid::Uuid::new_v4().simple());
    race_for_unique("paymentProviderId", &value, "payment_provider_id_taken").await;
}

#[tokio::test]
async fn a_rejected_create_writes_nothing() {
    let app = TestApp::spawn().await;
    let external = unique("atomic");
    let rejected = app
        .post(
            "/v1/customers",
            json!({"name": "Bad", "externalCustomerId": external, "contacts": [{"email": "not-an-email"}]}),
        )
        .await;
    rejected.expect_error(422, "invalid_email");
    assert_eq!(rejected.param(), "contacts[0].email");
    // The unique value was not claimed by the rejected request.
    let found = app
        .get(&format!("/v1/customers?externalCustomerId={external}"))
        .await;
    assert_eq!(found.expect(200)["data"], json!([]));
    app.post(
        "/v1/customers",
        json!({"name": "Good", "externalCustomerId": external}),
    )
    .await
    .expect(201);
}

#[tokio::test]
async fn a_taken_stripe_link_is_refused_on_patch_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let stripe = format!("cus_{}", uuid::Uuid::new_v4().simple());
    let holder = app
        .post(
            "/v1/customers",
            json!({"name": "Holder", "paymentProviderId": stripe}),
        )
        .await;
    let holder_id = holder.expect(201)["id"].as_str().unwrap().to_owned();
    let other = app.post("/v1/customers", json!({"name": "Other"})).await;
    let other = other.expect(201).clone();
    let other_id = other["id"].as_str().unwrap();
    let clash = app
        .send(
            Method::PATCH,
            &format!("/v1/customers/{other_id}"),
            Some(json!({"name": "Renamed", "paymentProviderId": stripe})),
        )
        .await;
    clash.expect_error(409, "payment_provider_id_taken");
    assert_eq!(clash.body["error"]["existingId"], holder_id.as_str());
    let unchanged = app.get(&format!("/v1/customers/{other_id}")).await;
    assert_eq!(unchanged.expect(200), &other, "the whole patch was refused");
}
