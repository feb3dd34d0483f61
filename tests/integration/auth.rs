//! API keys: bearer auth, scopes, creation (secret shown once), revocation.

use integration_tests::TestApp;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn requests_without_a_valid_key_are_401() {
    let app = TestApp::spawn().await;
    app.send_raw(Method::GET, "/v1/customers", None, None)
        .await
        .expect_error(401, "missing_api_key");
    app.send_as("sk_nope", Method::GET, "/v1/customers", None)
        .await
        .expect_error(401, "invalid_api_key");
    // A valid secret in the wrong scheme is still no credential.
    let basic = reqwest::Client::new()
        .get(format!("{}/v1/customers", app.url))
        .header("authorization", format!("Basic {}", app.admin_key))
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
}

#[tokio::test]
async fn unauthenticated_writes_are_refused_before_the_body_is_read() {
    let app = TestApp::spawn().await;
    let answer = app
        .send_raw(
            Method::POST,
            "/v1/customers",
            None,
            Some(b"{not json".to_vec()),
        )
        .await;
    answer.expect_error(401, "missing_api_key");
}

#[tokio::test]
async fn scopes_limit_what_a_key_may_do() {
    let app = TestApp::spawn().await;
    let reader = app.key_with(&["customers:read"]).await;
    app.send_as(&reader, Method::GET, "/v1/customers", None)
        .await
        .expect(200);
    app.send_as(
        &reader,
        Method::POST,
        "/v1/customers",
        Some(json!({"name": "x"})),
    )
    .await
    .expect_error(403, "insufficient_scope");
    // Key management needs `*`.
    app.send_as(
        &reader,
        Method::POST,
        "/v1/api-keys",
        Some(json!({"scopes": ["customers:read"]})),
    )
    .await
    .expect_error(403, "insufficient_scope");
    let writer = app.key_with(&["customers:write"]).await;
    app.send_as(
        &writer,
        Method::POST,
        "/v1/customers",
        Some(json!({"name": "x"})),
    )
    .await
    .expect(201);
    app.send_as(&writer, Method::GET, "/v1/customers", None)
        .await
        .expect_error(403, "insufficient_scope");
}

#[tokio::test]
async fn a_new_key_shows_its_secret_once_and_revocation_is_immediate() {
    let app = TestApp::spawn().await;
    let created = app
        .post(
            "/v1/api-keys",
            json!({"name": "ci", "scopes": ["customers:read", "usage:write"]}),
        )
        .await;
    let created = created.expect(201).clone();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk_") && secret.len() == 67, "{secret}");
    assert_eq!(created["scopes"], json!(["customers:read", "usage:write"]));
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("key_"));

    app.send_as(&secret, Method::GET, "/v1/customers", None)
        .await
        .expect(200);
    let revoked = app
        .send(Method::DELETE, &format!("/v1/api-keys/{id}"), None)
        .await;
    let revoked = revoked.expect(200).clone();
    assert!(revoked["revokedAt"].is_string());
    assert!(
        revoked.get("secret").is_none(),
        "the secret is never shown again"
    );
    app.send_as(&secret, Method::GET, "/v1/customers", None)
        .await
        .expect_error(401, "invalid_api_key");
    // Revoking again changes nothing.
    let again = app
        .send(Method::DELETE, &format!("/v1/api-keys/{id}"), None)
        .await;
    assert_eq!(again.expect(200)["revokedAt"], revoked["revokedAt"]);
}

#[tokio::test]
async fn key_requests_are_validated() {
    let app = TestApp::spawn().await;
    let bad = app
        .post(
            "/v1/api-keys",
            json!({"scopes": ["customers:read", "root"]}),
        )
        .await;
    bad.expect_error(422, "invalid_scope");
    assert_eq!(bad.param(), "scopes[1]");
    app.post("/v1/api-keys", json!({"scopes": []}))
        .await
        .expect_error(422, "invalid_scope");
    app.post("/v1/api-keys", json!({"name": "no scopes"}))
        .await
        .expect_error(400, "missing_field");
    app.send(
        Method::DELETE,
        "/v1/api-keys/key_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        None,
    )
    .await
    .expect_error(404, "resource_missing");
    app.send(Method::DELETE, "/v1/api-keys/nope", None)
        .await
        .expect_error(404, "resource_missing");
}
