//! Payments test support: a fake Stripe process per test (infra/stripe/launcher.py), and an
//! app wired to it with a table of its own, so one test's billing run (which closes and charges
//! every due invoice in its table) never touches another test's invoices.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::{TestApp, require_local_stack, usage_queue};

/// The secret key the fake accepts (any `sk_…`).
pub const STRIPE_KEY: &str = "sk_test_local";

/// One fake Stripe process; killed when dropped.
pub struct FakeStripe {
    child: Child,
    /// Its base URL.
    pub base: String,
    client: reqwest::Client,
}

impl FakeStripe {
    /// Starts the launcher on a free loopback port (fails clearly when infra/install.sh has not
    /// installed it).
    pub fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the workspace root")
            .to_path_buf();
        let python = root.join("infra/.venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run infra/install.sh (it installs the fake Stripe)",
            python.display()
        );
        let log = std::env::temp_dir().join(format!("fake_stripe_{}.log", uuid::Uuid::new_v4()));
        let mut child = Command::new(&python)
            .arg(root.join("infra/stripe/launcher.py"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("a log file"))
            .spawn()
            .expect("start infra/stripe/launcher.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            for _ in lines {}
        });
        let first = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            other => {
                let _ = child.kill();
                panic!(
                    "the fake Stripe did not start ({other:?}); log: {}",
                    log.display()
                )
            }
        };
        let port = first
            .strip_prefix("LISTENING ")
            .unwrap_or_else(|| panic!("unexpected first line from the launcher: {first}"))
            .to_owned();
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// The adapter, pointed at this fake.
    pub fn gateway(&self) -> billing::adapters::stripe::StripeGateway {
        billing::adapters::stripe::StripeGateway::new(STRIPE_KEY, Some(&self.base))
            .expect("a gateway")
    }

    /// A raw API call that must succeed, to look behind the adapter.
    pub async fn api(&self, method: reqwest::Method, path: &str) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(STRIPE_KEY)
            .send()
            .await
            .expect("fake Stripe answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }

    /// A GET of the fake's API.
    pub async fn get(&self, path: &str) -> Value {
        self.api(reqwest::Method::GET, path).await
    }

    /// A Stripe customer's default payment method for invoices.
    pub async fn default_method(
        &self,
        customer: &billing::customer::ProviderCustomerId,
    ) -> Option<String> {
        self.get(&format!("/v1/customers/{}", customer.as_str()))
            .await["invoice_settings"]["default_payment_method"]
            .as_str()
            .map(str::to_owned)
    }

    /// Pays a Checkout Session the way the hosted page would (the fake's test-only route).
    pub async fn complete_checkout(&self, session: &str) {
        let response = self
            .post_form(&format!("/_test/checkout/sessions/{session}/complete"), &[])
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// A form POST (test-only and config routes).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(STRIPE_KEY)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"))
            .send()
            .await
            .expect("fake Stripe answers")
    }

    /// Every PaymentIntent of a Stripe customer.
    pub async fn payment_intents(&self, customer: &str) -> Vec<Value> {
        self.get(&format!(
            "/v1/payment_intents?customer={customer}&limit=100"
        ))
        .await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A table of this test's own, with the schema of the stack's (which bootstrap.py made from
/// template.yaml): describe, then create the same keys and indexes under a new name.
async fn own_table() -> String {
    use aws_sdk_dynamodb::types::{
        BillingMode, GlobalSecondaryIndex, Projection, TimeToLiveSpecification,
    };
    let config = billing::adapters::aws_config().await;
    let client = aws_sdk_dynamodb::Client::new(&config);
    let template = std::env::var("TABLE_NAME").expect("TABLE_NAME");
    let described = client
        .describe_table()
        .table_name(&template)
        .send()
        .await
        .expect("describe the stack's table")
        .table
        .expect("table");
    let name = format!("billing-{}", uuid::Uuid::new_v4().simple());
    let indexes: Vec<GlobalSecondaryIndex> = described
        .global_secondary_indexes()
        .iter()
        .map(|g| {
            let projection = g
                .projection()
                .cloned()
                .unwrap_or_else(|| Projection::builder().build());
            GlobalSecondaryIndex::builder()
                .index_name(g.index_name().unwrap_or_default())
                .set_key_schema(Some(g.key_schema().to_vec()))
                .projection(projection)
                .build()
                .expect("index")
        })
        .collect();
    client
        .create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .set_attribute_definitions(Some(described.attribute_definitions().to_vec()))
        .set_key_schema(Some(described.key_schema().to_vec()))
        .set_global_secondary_indexes(Some(indexes))
        .send()
        .await
        .expect("create the test's table");
    client
        .update_time_to_live()
        .table_name(&name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("expiresAt")
                .enabled(true)
                .build()
                .expect("ttl"),
        )
        .send()
        .await
        .expect("TTL");
    name
}

/// One call of moto's SES query API (SES v1 calls, which no SDK crate here includes).
async fn moto_ses(params: &[(&str, &str)]) -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let mut form = vec![("Version", "2010-12-01")];
    form.extend_from_slice(params);
    let answer = reqwest::Client::new()
        .post(&endpoint)
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(form).expect("form"))
        .send()
        .await
        .expect("moto answers");
    assert!(
        answer.status().is_success(),
        "SES {params:?}: {}",
        answer.status()
    );
    answer.text().await.expect("body")
}

/// Verifies the sender in moto's SES, which refuses mail from unverified addresses as SES does.
async fn verify_sender(address: &str) {
    moto_ses(&[("Action", "VerifyEmailIdentity"), ("EmailAddress", address)]).await;
}

/// How many mails moto's SES has sent (all tests together).
pub async fn mails_sent() -> u64 {
    let answer = moto_ses(&[("Action", "GetSendQuota")]).await;
    let start =
        answer.find("<SentLast24Hours>").expect("SentLast24Hours") + "<SentLast24Hours>".len();
    let end = answer[start..].find('<').expect("end tag") + start;
    answer[start..end].trim().parse::<f64>().expect("a number") as u64
}

/// The webhook signing secret every payments test uses with its own fake.
pub const WEBHOOK_SECRET: &str = "whsec_integration_tests";

impl TestApp {
    /// An app with payments: its own table, its own usage queue (matched by the poller),
    /// Stripe at `stripe`, webhooks from it delivered to this app, SES mail from a verified
    /// sender, and payment links under this app's URL.
    ///
    /// Sets process environment variables: nextest runs every test in its own process.
    pub async fn spawn_with_payments(stripe: &FakeStripe) -> Self {
        require_local_stack();
        let table = own_table().await;
        let queue = usage_queue(5).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let sender = "billing@example.com";
        verify_sender(sender).await;
        let mut key = [0u8; 32];
        key.iter_mut().for_each(|b| *b = rand_byte());
        let vars = [
            ("TABLE_NAME", table),
            ("STRIPE_SECRET_KEY", STRIPE_KEY.to_owned()),
            ("STRIPE_API_BASE", stripe.base.clone()),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            (
                "PORTAL_SIGNING_KEY",
                key.iter().map(|b| format!("{b:02x}")).collect(),
            ),
            ("PUBLIC_BASE_URL", url.clone()),
            ("MAIL_FROM", sender.to_owned()),
        ];
        for (name, value) in vars {
            // SAFETY: set before the server (and any other thread reading the environment)
            // starts; nextest gives each test a process of its own.
            unsafe { std::env::set_var(name, value) };
        }
        let registered = stripe
            .post_form(
                "/_config/webhooks/app",
                &[
                    ("url", &format!("{url}/webhooks/stripe")),
                    ("secret", WEBHOOK_SECRET),
                ],
            )
            .await;
        assert!(
            registered.status().is_success(),
            "register the webhook: {}",
            registered.status()
        );
        Self::start_on(listener, true, Some(queue)).await
    }
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}
