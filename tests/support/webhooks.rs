//! Outgoing webhooks test support: a real receiver (tests/webhooks/receiver.py, run from
//! infra/.venv) that verifies each delivery with the PyPI `standardwebhooks` library, records
//! it, and answers as the test tells it (failures before success, down, hanging up); and
//! helpers to create endpoints and read their deliveries through the API.

use std::process::{Child, ChildStdin};
use std::time::Duration;

use serde_json::{Value, json};

use crate::TestApp;

/// One hook request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    /// The request's path.
    pub path: String,
    /// The `webhook-id` header.
    pub id: String,
    /// The body's `type`.
    pub event_type: String,
    /// Every header, names in lower case.
    pub headers: Value,
    /// The body as sent.
    pub body: String,
    /// The body, decoded.
    pub json: Value,
    /// Whether a configured secret verified it (through `standardwebhooks`).
    pub verified: bool,
    /// The indices of the configured secrets that verify it.
    pub verified_with: Vec<u64>,
    /// Why it was refused.
    pub error: Option<String>,
    /// What the receiver answered (a status code, or `"hangup"`).
    pub answered: Value,
}

impl Received {
    fn from_json(v: &Value) -> Self {
        let body = v["body"].as_str().unwrap_or_default().to_owned();
        Self {
            path: v["path"].as_str().unwrap_or_default().to_owned(),
            id: v["id"].as_str().unwrap_or_default().to_owned(),
            event_type: v["type"].as_str().unwrap_or_default().to_owned(),
            headers: v["headers"].clone(),
            json: serde_json::from_str(&body).unwrap_or(Value::Null),
            body,
            verified: v["verified"].as_bool().unwrap_or(false),
            verified_with: v["verifiedWith"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default(),
            error: v["error"].as_str().map(str::to_owned),
            answered: v["answered"].clone(),
        }
    }

    /// Whether it was verified and answered 2xx (a delivery that counts).
    pub fn accepted(&self) -> bool {
        self.verified
            && self
                .answered
                .as_u64()
                .is_some_and(|c| (200..300).contains(&c))
    }
}

/// The receiver process (killed when dropped; it also exits when this test process ends,
/// since it watches its stdin).
pub struct Receiver {
    child: Child,
    _stdin: ChildStdin,
    control: String,
    /// Where hooks go: `http://127.0.0.1:<port>/hook`.
    pub url: String,
    /// The hook port (the same when taken down and brought up again).
    pub port: u16,
    client: reqwest::Client,
}

impl Receiver {
    /// Starts a receiver on free loopback ports, verifying with no secret yet (see
    /// [`Receiver::secrets`]); fails clearly when infra/install.sh has not installed it.
    pub fn start() -> Self {
        let started = crate::helper_process::start(
            "tests/webhooks/receiver.py",
            &[],
            true,
            Duration::from_secs(30),
            "the receiver",
            "standardwebhooks for the receiver",
        );
        let (child, stdin, ports) = (started.child, started.stdin.expect("stdin"), started.ports);
        Self {
            child,
            _stdin: stdin,
            control: format!("http://127.0.0.1:{}", ports[0]),
            url: format!("http://127.0.0.1:{}/hook", ports[1]),
            port: ports[1],
            client: reqwest::Client::new(),
        }
    }

    /// Changes any of its settings (see tests/webhooks/receiver.py).
    pub async fn configure(&self, settings: Value) {
        let answer = self
            .client
            .post(format!("{}/configure", self.control))
            .json(&settings)
            .send()
            .await
            .expect("the receiver's control port answers");
        assert!(
            answer.status().is_success(),
            "configure {settings}: {}",
            answer.status()
        );
    }

    /// Verifies with these secrets (a delivery passes when any of them verifies it).
    pub async fn secrets(&self, secrets: &[&str]) {
        self.configure(json!({ "secrets": secrets })).await;
    }

    /// Answers the next verified deliveries with these statuses (each with a body of
    /// `body_bytes` bytes), then 200.
    pub async fn fail_next(&self, statuses: &[u16], body_bytes: usize) {
        self.configure(json!({ "fail": statuses, "failBody": body_bytes }))
            .await;
    }

    /// Waits this long before answering each delivery.
    pub async fn delay(&self, ms: u64) {
        self.configure(json!({ "delayMs": ms })).await;
    }

    /// Closes the hook port: connections are refused.
    pub async fn down(&self) {
        self.configure(json!({ "mode": "down" })).await;
    }

    /// Reads each request and closes the connection without answering.
    pub async fn hang_up(&self) {
        self.configure(json!({ "mode": "hangup" })).await;
    }

    /// Opens the hook port again (on the same port) and answers normally.
    pub async fn up(&self) {
        self.configure(json!({ "mode": "up" })).await;
    }

    /// Every hook request so far, oldest first.
    pub async fn requests(&self) -> Vec<Received> {
        let all: Value = self
            .client
            .get(format!("{}/requests", self.control))
            .send()
            .await
            .expect("the receiver's control port answers")
            .json()
            .await
            .expect("JSON");
        all.as_array()
            .expect("a list")
            .iter()
            .map(Received::from_json)
            .collect()
    }

    /// Verified deliveries it accepted (2xx), oldest first.
    pub async fn accepted(&self) -> Vec<Received> {
        self.requests()
            .await
            .into_iter()
            .filter(Received::accepted)
            .collect()
    }

    /// Waits until `done(requests so far)` holds, failing after `secs` seconds with what came.
    pub async fn wait_until(
        &self,
        secs: u64,
        what: &str,
        done: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.requests().await;
            if done(&got) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {secs} s the receiver still waits for {what}; it got: {:#?}",
                got.iter()
                    .map(|r| (&r.event_type, &r.id, r.verified, &r.answered, &r.error))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until accepted deliveries cover every type in `types`; answers the accepted ones.
    pub async fn wait_for_types(&self, secs: u64, types: &[&str]) -> Vec<Received> {
        let got = self
            .wait_until(secs, &format!("{types:?}"), |got| {
                types
                    .iter()
                    .all(|t| got.iter().any(|r| r.accepted() && r.event_type == *t))
            })
            .await;
        got.into_iter().filter(Received::accepted).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestApp {
    /// Creates a webhook endpoint (`events` `None`: every type): the answer, secret included.
    pub async fn webhook_endpoint(&self, url: &str, events: Option<&[&str]>) -> Value {
        let mut body = json!({ "url": url, "description": "integration test receiver" });
        if let Some(events) = events {
            body["events"] = json!(events);
        }
        self.post("/v1/webhook-endpoints", body)
            .await
            .expect(201)
            .clone()
    }

    /// An endpoint's deliveries (every page), newest first.
    pub async fn deliveries(&self, endpoint: &str) -> Vec<Value> {
        self.every_page(&format!("/v1/webhook-endpoints/{endpoint}/deliveries"))
            .await
    }

    /// Waits until the endpoint's delivery of `event_id` satisfies `done`; answers it.
    pub async fn wait_for_delivery(
        &self,
        endpoint: &str,
        event_id: &str,
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let found = self
                .deliveries(endpoint)
                .await
                .into_iter()
                .find(|d| d["eventId"] == event_id);
            if let Some(d) = &found
                && done(d)
            {
                return d.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {secs} s the delivery of {event_id} is {found:#?}"
            );
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
}

/// Keys of the webhook outbox entries left in this process's table (`TABLE_NAME`): events
/// written with their change and not yet turned into deliveries. Coalesced entries (usage)
/// are left out unless `coalesced`: they wait for the end of their minute.
pub async fn outbox_entries(coalesced: bool) -> Vec<String> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let config = billing_aws::aws_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let table = std::env::var("TABLE_NAME").expect("TABLE_NAME");
    let mut keys = Vec::new();
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(&table)
            .filter_expression("begins_with(pk, :p)")
            .expression_attribute_values(":p", AttributeValue::S("WEBHOOK_OUTBOX#".into()))
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .expect("scan the test's table");
        for item in out.items() {
            if let Some(AttributeValue::S(pk)) = item.get("pk") {
                let key = pk.trim_start_matches("WEBHOOK_OUTBOX#").to_owned();
                if coalesced || key.starts_with("msg_") {
                    keys.push(key);
                }
            }
        }
        match out.last_evaluated_key {
            Some(k) if !k.is_empty() => start = Some(k),
            _ => return keys,
        }
    }
}

impl TestApp {
    /// Waits until every change's events have become deliveries (the outbox holds no entry but
    /// coalesced ones) and none of `endpoints`' deliveries is pending, so what the receivers
    /// got is all they will get; fails after `secs` seconds.
    pub async fn wait_until_dispatched(&self, endpoints: &[&str], secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let entries = outbox_entries(false).await;
            let mut pending = Vec::new();
            for endpoint in endpoints {
                pending.extend(
                    self.deliveries(endpoint)
                        .await
                        .into_iter()
                        .filter(|d| d["status"] == "pending"),
                );
            }
            if entries.is_empty() && pending.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after {secs} s, outbox entries {entries:?} and pending deliveries {pending:#?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
