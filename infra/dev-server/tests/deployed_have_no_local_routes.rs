//! The `/_local/…` routes (the test clock, the on-demand billing run) exist only in the dev
//! server. The routers the Lambda binaries serve answer them as any unknown route: 404
//! `route_not_found`, whatever the method. (`infra/check-domain.sh` checks the built binaries
//! themselves: no function links this crate or carries the `/_local/` paths.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use billing::ports::{Clock, SystemClock};
use billing::provider_webhooks::Webhooks;
use billing::testing::{FakeVerifier, World};
use tower::ServiceExt;

async fn status_and_code(app: axum::Router, method: Method, path: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk_anything")
        .body(Body::from(r#"{"now": "2027-01-01T00:00:00Z"}"#))
        .expect("a request");
    let response = app.oneshot(request).await.expect("the router answers");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    let body: serde_json::Value = serde_json::from_slice(&body).expect("a JSON error");
    (
        status,
        body["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    )
}

const LOCAL_ROUTES: [(&str, &str); 4] = [
    ("GET", "/_local/clock"),
    ("POST", "/_local/clock"),
    ("DELETE", "/_local/clock"),
    ("POST", "/_local/run/billing"),
];

#[tokio::test]
async fn the_api_function_has_no_local_routes() {
    let world = World::at("2026-12-01T00:00:00Z".parse().unwrap());
    for (method, path) in LOCAL_ROUTES {
        let app = api::app(world.billing.clone());
        let (status, code) = status_and_code(app, method.parse().unwrap(), path).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "route_not_found"),
            "{method} {path} on the api function"
        );
    }
}

#[tokio::test]
async fn the_stripe_webhook_function_has_no_local_routes() {
    let world = World::at("2026-12-01T00:00:00Z".parse().unwrap());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    for (method, path) in LOCAL_ROUTES {
        let webhooks = Webhooks::new(
            world.store.clone(),
            Arc::new(FakeVerifier::new()),
            Some(world.gateway.clone()),
        );
        let app = stripe_webhook::app(webhooks, clock.clone());
        let (status, code) = status_and_code(app, method.parse().unwrap(), path).await;
        assert_eq!(
            (status, code.as_str()),
            (StatusCode::NOT_FOUND, "route_not_found"),
            "{method} {path} on the stripe-webhook function"
        );
    }
}
