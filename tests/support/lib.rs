//! What every integration test needs: the real dev server (API Gateway conversion included)
//! serving the real handlers against the local emulators, and a small HTTP client for it.
//! Tests run only against the local stack; `make test` starts it and exports its environment.

pub mod helper_process;
pub mod payments;
pub mod webhooks;

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// One running app per test: its own server, and its own admin key (scope `*`).
pub struct TestApp {
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    /// A key with scope `*`, seeded for this test.
    pub admin_key: String,
    /// The usage queue it sends events to, when it is the test's own (see [`usage_queue`]).
    pub queue: Option<String>,
    client: reqwest::Client,
    _server: dev_server::Running,
}

/// An HTTP answer: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The decoded body.
    pub body: Value,
}

impl Answer {
    /// The error `code` of an error answer, or "" when there is none.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The error `param`, or "" when there is none.
    pub fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or("")
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.body
        );
        &self.body
    }

    /// Asserts an error answer's status and code.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status.as_u16(), self.code()),
            (status, code),
            "unexpected answer: {}",
            self.body
        );
        assert!(
            self.body["error"]["type"].is_string() && self.body["error"]["message"].is_string(),
            "error shape: {}",
            self.body
        );
    }
}

fn require_local_stack() {
    static CHECKED: AtomicBool = AtomicBool::new(false);
    if CHECKED.swap(true, Ordering::SeqCst) {
        return;
    }
    wait_out_the_month_end();
    for var in [
        "TABLE_NAME",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL",
    ] {
        assert!(
            std::env::var(var).is_ok(),
            "{var} is not set: integration tests run against the local stack. \
             Run `make test`, or `infra/stack.sh start test && . \"$(infra/stack.sh env test)\"` first."
        );
    }
}

/// Tests read "this month" from the wall clock, and the server reads it again, so a test
/// running across 00:00 UTC on the 1st would see two months (two draft invoices where one is
/// due, usage in the next period). No test takes five minutes, so one starting in a month's
/// last five waits for the next month first; every test starts here (once per process).
fn wait_out_the_month_end() {
    if let Some(left) = month_end_wait(chrono::Utc::now()) {
        eprintln!("waiting {left} for the month to turn: this test reads the month twice");
        std::thread::sleep(left.to_std().expect("a positive wait"));
    }
}

/// How long a test starting at `now` waits: until a second into the next month (UTC) when that
/// is under five minutes away.
fn month_end_wait(now: chrono::DateTime<chrono::Utc>) -> Option<chrono::Duration> {
    use chrono::{Datelike, Months};
    let next_month = (now.date_naive().with_day(1)? + Months::new(1))
        .and_hms_opt(0, 0, 1)?
        .and_utc();
    let left = next_month - now;
    (left < chrono::Duration::minutes(5)).then_some(left)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().expect("an instant")
    }

    #[test]
    fn a_test_starting_in_a_month_s_last_five_minutes_waits_for_the_next() {
        let wait = super::month_end_wait;
        assert_eq!(wait(at("2026-11-30T23:54:59Z")), None);
        assert_eq!(
            wait(at("2026-11-30T23:57:00Z")),
            Some(Duration::seconds(181))
        );
        assert_eq!(wait(at("2026-12-31T23:59:59Z")), Some(Duration::seconds(2)));
        assert_eq!(wait(at("2026-12-01T00:00:01Z")), None);
        assert_eq!(
            wait(at("2026-12-15T23:58:00Z")),
            None,
            "mid-month midnights are fine"
        );
    }
}

/// The functions' wiring from the local stack's environment, exactly as their Lambda mains
/// build it.
pub async fn startup() -> billing_startup::Startup {
    require_local_stack();
    billing_startup::Startup::from_env()
        .await
        .expect("the local stack's environment")
}

/// A unique suffix, so tests sharing one table never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    /// Starts the dev server on a free loopback port with a fresh admin key.
    pub async fn spawn() -> Self {
        Self::start(false, None).await
    }

    /// Starts a dev server sending usage to `queue` (template.yaml's `USAGE_QUEUE_URL` when
    /// `None`), polling it for the matcher when `poll`.
    async fn start(poll: bool, queue: Option<String>) -> Self {
        require_local_stack();
        // Without payments, whatever the shell says: a Stripe key given for the payments tests
        // (Stripe's test mode) must not turn every other test's customers into Stripe ones.
        for name in [
            "STRIPE_SECRET_KEY",
            "STRIPE_API_BASE",
            "STRIPE_WEBHOOK_SECRET",
        ] {
            // SAFETY: before the server (and any other thread reading the environment) starts;
            // nextest gives each test a process of its own.
            unsafe { std::env::remove_var(name) };
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        Self::start_on(listener, poll, queue, false).await
    }

    /// [`TestApp::start`] on a listener bound by the caller (who needed its address first).
    async fn start_on(
        listener: tokio::net::TcpListener,
        poll: bool,
        queue: Option<String>,
        dispatch_webhooks: bool,
    ) -> Self {
        let admin_key = format!("sk_test_{}", uuid::Uuid::new_v4().simple());
        let server = dev_server::start(
            listener,
            dev_server::Options {
                seed_api_key: Some(admin_key.clone()),
                poll_usage_queue: poll,
                usage_queue_url: queue.clone(),
                dispatch_webhooks,
            },
        )
        .await
        .expect("start the dev server against the local stack");
        Self {
            url: server.url(),
            admin_key,
            queue,
            client: reqwest::Client::new(),
            _server: server,
        }
    }

    /// Sends a request with `key` (none when `None`) and an optional raw body.
    pub async fn send_raw(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Answer {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request
            .send()
            .await
            .expect("request reaches the dev server");
        let status = response.status();
        let bytes = response.bytes().await.expect("read body");
        Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    /// Sends JSON with the admin key.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let key = self.admin_key.clone();
        self.send_as(&key, method, path, body).await
    }

    /// Sends JSON with a given key.
    pub async fn send_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        self.send_raw(
            method,
            path,
            Some(key),
            body.map(|b| b.to_string().into_bytes()),
        )
        .await
    }

    /// `GET` with the admin key.
    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    /// `POST` JSON with the admin key.
    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    /// `PATCH` JSON with the admin key.
    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(body)).await
    }

    /// Creates an API key with `scopes` and returns its secret.
    pub async fn key_with(&self, scopes: &[&str]) -> String {
        let answer = self
            .post(
                "/v1/api-keys",
                serde_json::json!({ "name": "test", "scopes": scopes }),
            )
            .await;
        answer.expect(201)["secret"]
            .as_str()
            .expect("secret in the answer")
            .to_owned()
    }
}

/// A unique UPPER_SNAKE meter code, so tests sharing one table never collide.
pub fn unique_code(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple()).to_uppercase()
}

impl TestApp {
    /// Creates a meter and returns it.
    pub async fn meter(&self, body: serde_json::Value) -> Value {
        self.post("/v1/meters", body).await.expect(201).clone()
    }

    /// Creates a plan and returns it.
    pub async fn plan(&self, body: serde_json::Value) -> Value {
        self.post("/v1/plans", body).await.expect(201).clone()
    }

    /// Creates a customer named `name` and returns its id.
    pub async fn customer(&self, name: &str) -> String {
        let answer = self
            .post("/v1/customers", serde_json::json!({ "name": name }))
            .await;
        answer.expect(201)["id"]
            .as_str()
            .expect("customer id")
            .to_owned()
    }

    /// All of a contract's invoices, in period order.
    pub async fn contract_invoices(&self, contract: &str) -> Vec<Value> {
        let answer = self
            .get(&format!("/v1/invoices?contractId={contract}&limit=100"))
            .await;
        answer.expect(200)["data"].as_array().expect("data").clone()
    }
}

impl TestApp {
    /// Like [`TestApp::spawn`], with the dev server's SQS poller on: queued usage events are
    /// matched by the real `usage-matcher` handler. The server gets a usage queue of its own
    /// (created like template.yaml's, with a short visibility timeout), so no other test's
    /// poller holds its messages.
    pub async fn spawn_with_matcher() -> Self {
        require_local_stack();
        Self::start(true, Some(usage_queue(5).await)).await
    }

    /// Every event record listed by `query` (e.g. `customerId=cus_…&status=matched`).
    pub async fn events(&self, query: &str) -> Vec<Value> {
        self.every_page(&format!("/v1/events?{query}")).await
    }

    /// Every item of the listing at `path`, page after page of 100, with the admin key.
    pub async fn every_page(&self, path: &str) -> Vec<Value> {
        let key = self.admin_key.clone();
        self.every_page_as(&key, path).await
    }

    /// Every item of the listing at `path` (which may carry a query), page after page of
    /// 100, read with `key`: tests share the tables, so what a test wrote may be on any page.
    pub async fn every_page_as(&self, key: &str, path: &str) -> Vec<Value> {
        let first = format!(
            "{path}{}limit=100",
            if path.contains('?') { '&' } else { '?' }
        );
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("{first}&cursor={c}"),
                None => first.clone(),
            };
            let page = self.send_as(key, Method::GET, &path, None).await;
            let page = page.expect(200);
            all.extend(page["data"].as_array().expect("data").iter().cloned());
            match page["nextCursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    /// Waits until `query` lists `count` event records (the matcher runs asynchronously),
    /// failing after 90 s.
    pub async fn wait_for_events(&self, query: &str, count: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        loop {
            let events = self.events(query).await;
            if events.len() >= count {
                return events;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "only {} of {count} events recorded for {query} after 90 s",
                events.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Waits until invoice `id` (as `GET /v1/invoices/{id}` answers) satisfies `ready`, failing
    /// after 30 s with `what` and the last answer: the matcher writes an event's record before
    /// the invoice's usage share, so a listed record can come a moment before its line.
    pub async fn wait_for_invoice(
        &self,
        id: &str,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let invoice = self
                .get(&format!("/v1/invoices/{id}"))
                .await
                .expect(200)
                .clone();
            if ready(&invoice) {
                return invoice;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {what} after 30 s: {invoice:#}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    }

    /// Sends one usage event and expects 202.
    pub async fn send_event(&self, event: Value) {
        self.post("/v1/events", event).await.expect(202);
    }
}

/// Creates a usage queue for one test (FIFO, as template.yaml's), its messages coming back
/// `visibility_timeout` seconds after a poller received them without deleting them.
pub async fn usage_queue(visibility_timeout: u32) -> String {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let config = billing_aws::aws_config().await;
    aws_sdk_sqs::Client::new(&config)
        .create_queue()
        .queue_name(format!("usage-{}.fifo", uuid::Uuid::new_v4().simple()))
        .attributes(A::FifoQueue, "true")
        .attributes(A::DeduplicationScope, "messageGroup")
        .attributes(A::FifoThroughputLimit, "perMessageGroupId")
        .attributes(A::VisibilityTimeout, visibility_timeout.to_string())
        .send()
        .await
        .expect("create a test queue")
        .queue_url
        .expect("queue url")
}

/// Creates a webhook dispatcher queue for one test (standard, as template.yaml's), so its
/// server's dispatcher sees only its own jobs.
pub async fn webhook_queue() -> String {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let config = billing_aws::aws_config().await;
    aws_sdk_sqs::Client::new(&config)
        .create_queue()
        .queue_name(format!("webhooks-{}", uuid::Uuid::new_v4().simple()))
        .attributes(A::VisibilityTimeout, "30")
        .send()
        .await
        .expect("create a test webhook queue")
        .queue_url
        .expect("queue url")
}

impl TestApp {
    /// Like [`TestApp::spawn`], with usage events sent to `queue_url` (see [`usage_queue`]) and,
    /// when `poll`, matched from it by the dev server's poller; the test may poll it too.
    pub async fn spawn_on_queue(queue_url: &str, poll: bool) -> Self {
        Self::start(poll, Some(queue_url.to_owned())).await
    }
}

impl TestApp {
    /// A server whose usage queue does not exist, so every enqueue fails: for testing that
    /// nothing is acknowledged that SQS did not accept.
    pub async fn spawn_with_broken_queue() -> Self {
        require_local_stack();
        let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
        let missing = format!(
            "{endpoint}/123456789012/missing-{}",
            uuid::Uuid::new_v4().simple()
        );
        Self::start(false, Some(missing)).await
    }
}

/// How many messages a queue holds: waiting to be received, received and not yet deleted (a
/// poller is working on them, or failed them and they come back after the visibility timeout),
/// and delayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Waiting for a poller.
    pub visible: u64,
    /// Received and not deleted.
    pub in_flight: u64,
    /// Not deliverable yet.
    pub delayed: u64,
}

/// A queue's depth, as SQS counts it (moto's counts are exact).
pub async fn queue_depth(queue_url: &str) -> QueueDepth {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let config = billing_aws::aws_config().await;
    let attrs = aws_sdk_sqs::Client::new(&config)
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes")
        .attributes
        .unwrap_or_default();
    let count = |name: A| {
        attrs
            .get(&name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name:?} of {queue_url}: {attrs:?}"))
    };
    QueueDepth {
        visible: count(A::ApproximateNumberOfMessages),
        in_flight: count(A::ApproximateNumberOfMessagesNotVisible),
        delayed: count(A::ApproximateNumberOfMessagesDelayed),
    }
}

/// Waits until `queue_url` is settled: empty, and no message held by a poller. A poller deletes
/// a message only after the matcher returned for it, so an empty queue with nothing in flight
/// means every event sent before the call has been processed and no poller is mid-batch (a
/// failed batch would come back and show). Fails after 90 s.
pub async fn wait_until_settled(queue_url: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let depth = queue_depth(queue_url).await;
        if depth.visible == 0 && depth.in_flight == 0 && depth.delayed == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queue_url} not settled after 90 s: {depth:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl TestApp {
    /// Waits until the app's own usage queue is settled (see [`wait_until_settled`]): every
    /// event it accepted so far has been processed by the matcher.
    pub async fn wait_until_settled(&self) {
        let queue = self
            .queue
            .as_deref()
            .expect("an app with a usage queue of its own (spawn_with_matcher and the like)");
        wait_until_settled(queue).await;
    }
}

/// Matchers of a test's own, polling a queue beside the dev server's poller (each through
/// `dev_server::sqs::poll_once`, the real handler included); stopped when dropped.
pub struct Pollers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Messages received so far.
    pub received: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Poll errors so far.
    pub errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Pollers {
    /// `count` matchers polling `queue_url`.
    pub async fn start(queue_url: &str, count: usize) -> Self {
        use std::sync::atomic::Ordering;
        let config = billing_aws::aws_config().await;
        let client = aws_sdk_sqs::Client::new(&config);
        let arn = client
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .expect("queue arn");
        let received = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..count {
            let matcher = startup().await.matcher();
            let (client, url, arn) = (client.clone(), queue_url.to_owned(), arn.clone());
            let (received, errors) = (received.clone(), errors.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    match dev_server::sqs::poll_once(&client, &url, &arn, &matcher).await {
                        Ok(n) => {
                            received.fetch_add(n, Ordering::SeqCst);
                        }
                        Err(e) => {
                            errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        }
                    }
                }
            }));
        }
        Self {
            tasks,
            received,
            errors,
        }
    }
}

impl Drop for Pollers {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
