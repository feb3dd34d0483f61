//! Payments test support: the Stripe the tests run against, and an app wired to it with a
//! table of its own, so one test's billing run (which closes and charges every due invoice in
//! its table) never touches another test's invoices.
//!
//! By default each test starts a fake Stripe of its own (infra/stripe/launcher.py). When
//! `STRIPE_SECRET_KEY` holds a test-mode key (`sk_test_…`) the same tests run against that
//! Stripe instead: Stripe's own test mode at api.stripe.com, or whatever `STRIPE_API_BASE`
//! names. Stripe has no API for what a person does on its hosted Checkout page, and cannot
//! deliver webhooks to this machine's loopback address, so the steps that need the fake's
//! test-only routes say so on stderr and are left out there (see [`TestStripe::fake_only`]).

use std::process::Child;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::{TestApp, require_local_stack, usage_queue};

/// The secret key the fake accepts (any `sk_…`).
pub const STRIPE_KEY: &str = "sk_test_local";

/// Stripe's API, for a test-mode key without `STRIPE_API_BASE`.
const STRIPE_API: &str = "https://api.stripe.com";

/// A Stripe outside the tests (key, base URL), read from the environment once, before any test
/// sets `STRIPE_SECRET_KEY` for its app.
fn external_stripe() -> &'static Option<(String, String)> {
    static EXTERNAL: OnceLock<Option<(String, String)>> = OnceLock::new();
    EXTERNAL.get_or_init(|| {
        let key = std::env::var("STRIPE_SECRET_KEY")
            .ok()
            .filter(|k| !k.is_empty())?;
        assert!(
            key.starts_with("sk_test_") || key.starts_with("rk_test_"),
            "STRIPE_SECRET_KEY is not a test-mode key: the payments tests create customers and \
             charge cards, so they refuse live keys"
        );
        let base = std::env::var("STRIPE_API_BASE")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| STRIPE_API.to_owned());
        Some((key, base.trim_end_matches('/').to_owned()))
    })
}

/// The Stripe one test runs against: a fake process of its own (killed when dropped), or the
/// Stripe named by `STRIPE_SECRET_KEY`.
pub struct TestStripe {
    fake: Option<Child>,
    /// Its API base URL.
    pub base: String,
    key: String,
    client: reqwest::Client,
}

impl TestStripe {
    /// The fake on a free loopback port (failing clearly when infra/install.sh has not
    /// installed it), unless `STRIPE_SECRET_KEY` names a Stripe to use.
    pub fn start() -> Self {
        match external_stripe() {
            Some((key, base)) => {
                eprintln!("payments against the Stripe at {base} (STRIPE_SECRET_KEY is set)");
                Self {
                    fake: None,
                    base: base.clone(),
                    key: key.clone(),
                    client: reqwest::Client::new(),
                }
            }
            None => Self::start_fake(),
        }
    }

    fn start_fake() -> Self {
        let started = crate::helper_process::start(
            "infra/stripe/launcher.py",
            &["--port", "0"],
            false,
            Duration::from_secs(60),
            "the fake Stripe",
            "the fake Stripe",
        );
        let (child, port) = (started.child, started.ports[0]);
        Self {
            fake: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            key: STRIPE_KEY.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    /// Whether the step `what` can run here: only the fake has test-only routes (completing a
    /// hosted Checkout page, pushing webhooks to a loopback URL). Against another Stripe the
    /// step is named on stderr as left out, and the caller skips it.
    pub fn fake_only(&self, what: &str) -> bool {
        if self.fake.is_none() {
            eprintln!(
                "LEFT OUT against {}: {what} (needs the fake Stripe)",
                self.base
            );
        }
        self.fake.is_some()
    }

    /// The secret key the app and the adapter use with this Stripe.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where Checkout pages of this Stripe live: the fake serves them itself, Stripe from
    /// checkout.stripe.com.
    pub fn checkout_origin(&self) -> String {
        if self.base == STRIPE_API {
            "https://checkout.stripe.com/".to_owned()
        } else {
            format!("{}/", self.base)
        }
    }

    /// The adapter, pointed at this Stripe.
    pub fn gateway(&self) -> billing_stripe::StripeGateway {
        billing_stripe::StripeGateway::new(&self.key, Some(&self.base)).expect("a gateway")
    }

    /// A raw API call that must succeed, to look behind the adapter.
    pub async fn api(&self, method: reqwest::Method, path: &str) -> Value {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("Stripe answers");
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.expect("JSON")
    }

    /// A GET of the API.
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

    /// A Stripe customer made directly (as in the Stripe dashboard), for linking.
    pub async fn create_customer(&self, name: &str) -> String {
        let created = self.post_form("/v1/customers", &[("name", name)]).await;
        assert!(created.status().is_success(), "{}", created.status());
        let body: Value = created.json().await.expect("JSON");
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Pays a Checkout Session the way the hosted page would, through the fake's test-only
    /// route. Call only when [`Self::fake_only`] allowed it.
    pub async fn complete_checkout(&self, session: &str) {
        assert!(self.fake.is_some(), "only the fake can complete Checkout");
        let response = self
            .post_form(&format!("/_test/checkout/sessions/{session}/complete"), &[])
            .await;
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// Has the fake sign and push its events to `url`. Call only when [`Self::fake_only`]
    /// allowed it.
    pub async fn send_webhooks_to(&self, id: &str, url: &str, secret: &str) {
        assert!(self.fake.is_some(), "only the fake pushes to loopback URLs");
        let registered = self
            .post_form(
                &format!("/_config/webhooks/{id}"),
                &[("url", url), ("secret", secret)],
            )
            .await;
        assert!(
            registered.status().is_success(),
            "register the webhook: {}",
            registered.status()
        );
    }

    /// A form POST to the API.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).expect("form"))
            .send()
            .await
            .expect("Stripe answers")
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

impl Drop for TestStripe {
    fn drop(&mut self) {
        if let Some(child) = &mut self.fake {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A table of this test's own, with the schema of the stack's (which bootstrap.py made from
/// template.yaml): describe, then create the same keys and indexes under a new name.
async fn own_table() -> String {
    use aws_sdk_dynamodb::types::{
        BillingMode, GlobalSecondaryIndex, Projection, TimeToLiveSpecification,
    };
    let config = billing_aws::aws_config().await;
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

/// One mail the local SES sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// Its `To` addresses.
    pub to: Vec<String>,
    /// Its subject.
    pub subject: String,
}

/// Every mail the local SES has sent to any of `recipients`, oldest first: moto's record of
/// sent messages (`/moto-api/data.json`), or LocalStack's (`/_aws/ses`). Other tests' mail
/// is left out, so a test using addresses of its own counts exactly its own.
pub async fn mails_to(recipients: &[String]) -> Vec<SentMail> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let client = reqwest::Client::new();
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let moto = client
        .get(format!("{endpoint}/moto-api/data.json"))
        .send()
        .await
        .expect("the local AWS endpoint answers");
    let all: Vec<SentMail> = if moto.status().is_success() {
        let data: Value = moto.json().await.expect("moto's model data");
        data["ses"]["Message"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| SentMail {
                to: strings(&m["destinations"]["ToAddresses"]),
                subject: m["subject"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    } else {
        let data: Value = client
            .get(format!("{endpoint}/_aws/ses"))
            .send()
            .await
            .expect("LocalStack answers")
            .json()
            .await
            .expect("LocalStack's sent mail");
        data["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|m| SentMail {
                to: strings(&m["Destination"]["ToAddresses"]),
                subject: m["Subject"].as_str().unwrap_or_default().to_owned(),
            })
            .collect()
    };
    all.into_iter()
        .filter(|m| m.to.iter().any(|a| recipients.contains(a)))
        .collect()
}

/// An address no other test uses, for counting a test's own mail: `who-<uuid>@example.com`.
pub fn own_address(who: &str) -> String {
    format!("{who}-{}@example.com", uuid::Uuid::new_v4().simple())
}

/// The webhook signing secret every payments test uses with its own fake.
pub const WEBHOOK_SECRET: &str = "whsec_integration_tests";

impl TestApp {
    /// An app with payments: its own table, its own usage queue (matched by the poller),
    /// Stripe at `stripe`, webhooks from it delivered to this app (by the fake), SES mail from a verified
    /// sender, and payment links under this app's URL.
    ///
    /// Sets process environment variables: nextest runs every test in its own process.
    pub async fn spawn_with_payments(stripe: &TestStripe) -> Self {
        Self::spawn_with_own_table_and(Some(stripe)).await
    }

    /// An app with a table and usage queue of its own (matched by the poller) and no payment
    /// provider, for tests that run the billing run: it closes every due invoice of its table,
    /// so it must see only the test's own.
    ///
    /// Sets process environment variables: each test runs in a process of its own.
    pub async fn spawn_with_own_table() -> Self {
        Self::spawn_with_own_table_and(None).await
    }

    /// [`TestApp::spawn_with_payments`] (or without payments when `stripe` is `None`) with
    /// the webhook dispatcher running on a queue of its own, retrying on `schedule` (e.g.
    /// `1s,1s` compresses the day into seconds).
    pub async fn spawn_with_webhooks(stripe: Option<&TestStripe>, schedule: &str) -> Self {
        let queue = crate::webhook_queue().await;
        for (name, value) in [
            ("WEBHOOK_QUEUE_URL", queue.as_str()),
            ("WEBHOOK_RETRY_SCHEDULE", schedule),
        ] {
            // SAFETY: before the server (and any other thread reading the environment)
            // starts; nextest gives each test a process of its own.
            unsafe { std::env::set_var(name, value) };
        }
        Self::spawn_own(stripe, true).await
    }

    /// Another dev server on the table and queues this process's environment holds (as
    /// [`TestApp::spawn_with_webhooks`] or the like left it), sending usage to `usage_queue`
    /// (the first app's [`TestApp::queue`]), with the webhook dispatcher when
    /// `dispatch_webhooks`: a second instance of every function, or the one that takes over
    /// once the first app is dropped (its tasks aborted wherever they were).
    pub async fn spawn_beside(usage_queue: Option<String>, dispatch_webhooks: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        Self::start_on(listener, true, usage_queue, dispatch_webhooks).await
    }

    async fn spawn_with_own_table_and(stripe: Option<&TestStripe>) -> Self {
        Self::spawn_own(stripe, false).await
    }

    async fn spawn_own(stripe: Option<&TestStripe>, dispatch_webhooks: bool) -> Self {
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
        let mut vars = vec![
            ("TABLE_NAME", table),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
            (
                "PORTAL_SIGNING_KEY",
                key.iter().map(|b| format!("{b:02x}")).collect(),
            ),
            ("PUBLIC_BASE_URL", url.clone()),
            ("MAIL_FROM", sender.to_owned()),
        ];
        if let Some(stripe) = stripe {
            vars.push(("STRIPE_SECRET_KEY", stripe.key().to_owned()));
            vars.push(("STRIPE_API_BASE", stripe.base.clone()));
        } else {
            for name in ["STRIPE_SECRET_KEY", "STRIPE_API_BASE"] {
                // SAFETY: before the server (and any other thread reading the environment)
                // starts; each test runs in a process of its own.
                unsafe { std::env::remove_var(name) };
            }
        }
        for (name, value) in vars {
            // SAFETY: set before the server (and any other thread reading the environment)
            // starts; nextest gives each test a process of its own.
            unsafe { std::env::set_var(name, value) };
        }
        // Stripe itself cannot reach a loopback URL; webhook tests there sign their own events.
        if let Some(stripe) = stripe
            && stripe.fake.is_some()
        {
            stripe
                .send_webhooks_to("app", &format!("{url}/webhooks/stripe"), WEBHOOK_SECRET)
                .await;
        }
        Self::start_on(listener, true, Some(queue), dispatch_webhooks).await
    }
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

/// A step a test runs just before the first charge reaches Stripe.
pub type BeforeCharge = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What a test makes of the first charge's answer (Stripe charged; the run hears this).
pub type FirstAnswer = Box<
    dyn FnOnce(
            billing::Result<billing::ports::ChargeOutcome>,
        ) -> billing::Result<billing::ports::ChargeOutcome>
        + Send,
>;

/// The Stripe adapter with a test's hooks on the first charge: a step before it (another
/// payment landing between the run's read and its charge), and a changed answer (a payment
/// still processing, an answer lost). Every other call goes to Stripe as it is.
pub struct HookedGateway {
    stripe: billing_stripe::StripeGateway,
    before_first_charge: tokio::sync::Mutex<Option<BeforeCharge>>,
    first_answer: std::sync::Mutex<Option<FirstAnswer>>,
}

impl HookedGateway {
    /// No hooks yet.
    pub fn new(stripe: billing_stripe::StripeGateway) -> Self {
        Self {
            stripe,
            before_first_charge: tokio::sync::Mutex::new(None),
            first_answer: std::sync::Mutex::new(None),
        }
    }

    /// Runs `step` just before the first charge.
    pub fn before_first_charge(self, step: BeforeCharge) -> Self {
        *self.before_first_charge.try_lock().expect("unshared") = Some(step);
        self
    }

    /// Replaces the first charge's answer by `answer(the real one)`.
    pub fn first_answer(self, answer: FirstAnswer) -> Self {
        *self.first_answer.lock().expect("unpoisoned") = Some(answer);
        self
    }
}

#[async_trait::async_trait]
impl billing::ports::PaymentGateway for HookedGateway {
    async fn create_customer(
        &self,
        customer: &billing::ports::NewProviderCustomer,
    ) -> billing::Result<billing::customer::ProviderCustomerId> {
        self.stripe.create_customer(customer).await
    }

    async fn customer_exists(
        &self,
        customer: &billing::customer::ProviderCustomerId,
    ) -> billing::Result<bool> {
        self.stripe.customer_exists(customer).await
    }

    async fn delete_customer(
        &self,
        customer: &billing::customer::ProviderCustomerId,
    ) -> billing::Result<()> {
        self.stripe.delete_customer(customer).await
    }

    async fn attach_default_payment_method(
        &self,
        customer: &billing::customer::ProviderCustomerId,
        payment_method: &billing::customer::PaymentMethodId,
    ) -> billing::Result<billing::customer::PaymentMethodId> {
        self.stripe
            .attach_default_payment_method(customer, payment_method)
            .await
    }

    async fn refund_unneeded(
        &self,
        payment_intent: &str,
        invoice: &billing::ids::InvoiceId,
    ) -> billing::Result<()> {
        self.stripe.refund_unneeded(payment_intent, invoice).await
    }

    async fn create_setup_intent(
        &self,
        customer: &billing::customer::ProviderCustomerId,
    ) -> billing::Result<billing::ports::SetupIntent> {
        self.stripe.create_setup_intent(customer).await
    }

    async fn create_checkout(
        &self,
        request: &billing::ports::CheckoutRequest,
    ) -> billing::Result<billing::ports::CheckoutSession> {
        self.stripe.create_checkout(request).await
    }

    async fn payment_method_of(
        &self,
        payment_intent: &str,
    ) -> billing::Result<Option<billing::customer::PaymentMethodId>> {
        self.stripe.payment_method_of(payment_intent).await
    }

    async fn invoice_of_payment(
        &self,
        payment_intent: &str,
    ) -> billing::Result<Option<billing::ids::InvoiceId>> {
        self.stripe.invoice_of_payment(payment_intent).await
    }

    async fn charge(
        &self,
        request: &billing::ports::ChargeRequest,
    ) -> billing::Result<billing::ports::ChargeOutcome> {
        let step = self.before_first_charge.lock().await.take();
        if let Some(step) = step {
            step.await;
        }
        let answer = self.stripe.charge(request).await;
        let change = self.first_answer.lock().expect("unpoisoned").take();
        match change {
            Some(change) => change(answer),
            None => answer,
        }
    }
}
