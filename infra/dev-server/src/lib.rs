//! The local dev server: one process standing in for API Gateway (serving the `api`,
//! `dashboard` and `stripe-webhook` handlers through real payload-format-2.0 events), the SQS
//! event sources of `usage-matcher` and `webhook-dispatcher`, EventBridge Scheduler for
//! `billing-run` (on demand) and the dispatcher's sweep, and a test clock ([`clock`]) for
//! everything it hosts. Never deployed.

pub mod clock;
pub mod gateway;
pub mod sqs;

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Query, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use billing::api_key::Scopes;
use billing_startup::Startup;
use lambda_http::{Context, LambdaEvent};
use serde::Deserialize;
use serde_json::json;

use crate::clock::SimulatedClock;

/// How the dev server is set up.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A secret to seed with scope `*` (the local stack's `LOCAL_API_KEY`).
    pub seed_api_key: Option<String>,
    /// Whether to poll the usage queue and invoke the matcher.
    pub poll_usage_queue: bool,
    /// The usage queue to send to and poll; `USAGE_QUEUE_URL` when `None`. Tests give each
    /// server a queue of its own, so a test that ends cannot strand another test's messages.
    pub usage_queue_url: Option<String>,
    /// Whether to run the webhook dispatcher: poll `WEBHOOK_QUEUE_URL` and sweep every few
    /// seconds (tests that use it give each server a queue of its own).
    pub dispatch_webhooks: bool,
}

/// How often the dev server sweeps for webhook jobs that were lost (deployed: every minute).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A running dev server.
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The test clock every hosted handler reads (real time until set).
    pub clock: std::sync::Arc<SimulatedClock>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The base URL, e.g. `http://127.0.0.1:3000`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops (it does not, unless its task fails).
    pub async fn wait(mut self) {
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Builds the handlers from the environment (exactly as their Lambda mains do) and serves them
/// on `listener`.
pub async fn start(
    listener: tokio::net::TcpListener,
    options: Options,
) -> Result<Running, billing::Error> {
    let clock = std::sync::Arc::new(SimulatedClock::default());
    let startup = Startup::from_env().await?.with_clock(clock.clone());
    let mut billing = startup.billing()?;
    if let Some(url) = &options.usage_queue_url {
        billing = billing.with_queue(std::sync::Arc::new(startup.queue(url)));
    }
    if let Some(secret) = &options.seed_api_key {
        billing.seed_api_key(secret, Scopes::all()).await?;
    }
    // The dashboard signs its sessions with DASHBOARD_SESSION_KEY; a local server started
    // without one (plain `cargo run`) makes one up, so sessions end when it restarts.
    let session_key = startup
        .config()
        .dashboard_session_key
        .clone()
        .unwrap_or_else(billing_startup::SessionSecret::generate);
    let dashboard = dashboard::app(
        billing.clone(),
        dashboard::Settings::new(&session_key, startup.config().secure_cookies),
    );
    let api = api::app(billing);
    let webhook = match startup.webhooks() {
        Ok(webhooks) => stripe_webhook::app(webhooks, startup.clock()),
        Err(e) => {
            tracing::warn!(error = %e, "Stripe webhooks are off");
            stripe_webhook::unconfigured(e.message)
        }
    };
    let run = std::sync::Arc::new(startup.billing_run()?);
    let app = Router::new()
        .merge(clock::routes(clock.clone()))
        .route(
            "/_local/run/billing",
            post(move |query: Query<RunQuery>| run_billing(run.clone(), query)),
        )
        .route(
            "/dashboard",
            any({
                let dashboard = dashboard.clone();
                move |ConnectInfo(source): ConnectInfo<SocketAddr>, request: Request| {
                    gateway::invoke(dashboard.clone(), request, source)
                }
            }),
        )
        .route(
            "/dashboard/{*rest}",
            any(
                move |ConnectInfo(source): ConnectInfo<SocketAddr>, request: Request| {
                    gateway::invoke(dashboard.clone(), request, source)
                },
            ),
        )
        .route(
            "/webhooks/stripe",
            any(
                move |ConnectInfo(source): ConnectInfo<SocketAddr>, request: Request| {
                    gateway::invoke(webhook.clone(), request, source)
                },
            ),
        )
        .fallback(
            move |ConnectInfo(source): ConnectInfo<SocketAddr>, request: Request| {
                gateway::invoke(api.clone(), request, source)
            },
        );
    let addr = listener
        .local_addr()
        .map_err(|e| billing::Error::internal(e.to_string()))?;
    let mut tasks = vec![tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            tracing::error!(error = %e, "dev server stopped");
        }
    })];
    if options.poll_usage_queue {
        let queue_url = options
            .usage_queue_url
            .clone()
            .or_else(|| startup.config().usage_queue_url.clone())
            .ok_or_else(|| {
                billing::Error::internal("USAGE_QUEUE_URL: is not set (see template.yaml)")
            })?;
        let client = aws_sdk_sqs::Client::new(startup.aws());
        let matcher = startup.matcher();
        tasks.push(tokio::spawn(sqs::poll(client, queue_url, matcher)));
    }
    if options.dispatch_webhooks {
        let queue_url = startup.config().webhooks.queue_url.clone().ok_or_else(|| {
            billing::Error::internal("WEBHOOK_QUEUE_URL: is not set (see template.yaml)")
        })?;
        let sqs = aws_sdk_sqs::Client::new(startup.aws());
        let dispatcher = startup.dispatcher()?;
        let sweeper = dispatcher.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::time::sleep(SWEEP_EVERY).await;
                if let Err(e) = sweeper.sweep().await {
                    tracing::warn!(error = %e, "webhook sweep failed");
                }
            }
        }));
        let runtime = webhook_dispatcher::Runtime {
            dispatcher,
            sqs: sqs.clone(),
            queue_url: queue_url.clone(),
        };
        tasks.push(tokio::spawn(sqs::poll(sqs, queue_url, runtime)));
    }
    Ok(Running { addr, clock, tasks })
}

/// `?date=YYYY-MM-DD` of the billing-run trigger.
#[derive(Deserialize)]
struct RunQuery {
    date: Option<String>,
}

/// `POST /_local/run/billing?date=YYYY-MM-DD`: invokes `billing-run` with the payload the
/// daily schedule sends, scheduled at 00:15 UTC of that date (template.yaml's cron). Without
/// `date`, the run is for the clock's day, as of the clock's "now" (the test clock when set).
async fn run_billing(
    run: std::sync::Arc<billing::billing_run::BillingRun>,
    Query(query): Query<RunQuery>,
) -> Response {
    let time = match query.date.as_deref() {
        None => Some(run.now()),
        Some(date) => match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
            Ok(date) => date.and_hms_opt(0, 15, 0).map(|t| t.and_utc()),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_date",
                    "pass ?date=YYYY-MM-DD (the run date), or no date for the clock's day",
                );
            }
        },
    };
    let payload = json!({ "kind": "daily", "time": time });
    let event = match serde_json::from_value(payload) {
        Ok(event) => event,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_event",
                &e.to_string(),
            );
        }
    };
    match billing_run::handle(&run, LambdaEvent::new(event, Context::default())).await {
        Ok(report) => (StatusCode::OK, axum::Json(report)).into_response(),
        // Lambda reports a failed invocation as a function error; so do we.
        Err(e) => error(StatusCode::BAD_GATEWAY, "function_error", &e.to_string()),
    }
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "type": "api_error", "code": code, "message": message } });
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_default()
}
