//! What every entry point does at cold start: read the configuration once ([`Config`]), then
//! wire the domain's use cases to their adapters. The Lambda mains and the dev server build
//! everything through [`Startup`], so a function runs against DynamoDB Local, LocalStack or
//! AWS with only its environment changed.

mod config;

use std::sync::Arc;

pub use config::{
    Config, ConfigError, PortalConfig, ScheduleConfig, SessionSecret, StripeConfig, WebhookConfig,
};

use billing::billing_run::BillingRun;
use billing::matcher::Matcher;
use billing::portal::PortalLinks;
use billing::ports::{Clock, PaymentGateway, SystemClock};
use billing::provider_webhooks::Webhooks;
use billing::webhooks::Dispatcher;
use billing::{Billing, Error, Result};
use billing_aws::dynamodb::DynamoStore;
use billing_aws::scheduler::EventBridgeRetryScheduler;
use billing_aws::ses::SesMailer;
use billing_aws::sqs::SqsEventQueue;
use billing_aws::webhook_queue::SqsWebhookQueue;
use billing_http::views::JsonRepresentation;
use billing_stripe::{StripeGateway, StripeWebhookVerifier};
use billing_webhook_sender::HttpWebhookSender;

/// The configuration and the AWS clients' settings, from which each function builds what it
/// runs.
#[derive(Clone)]
pub struct Startup {
    config: Config,
    aws: aws_config::SdkConfig,
    store: Arc<DynamoStore>,
    clock: Arc<dyn Clock>,
}

impl Startup {
    /// Reads the environment: the configuration, then the AWS settings (endpoints from the
    /// standard `AWS_ENDPOINT_URL*` variables). Fails naming the first bad variable.
    pub async fn from_env() -> Result<Self> {
        let config = Config::from_env()?;
        tracing::debug!(?config, "configuration read");
        Ok(Self::new(config, billing_aws::aws_config().await))
    }

    /// From a configuration and AWS settings read elsewhere.
    pub fn new(config: Config, aws: aws_config::SdkConfig) -> Self {
        let mut store =
            DynamoStore::from_config(&aws, &config.table_name, &config.usage_table_name);
        if let Some(url) = &config.webhooks.queue_url {
            store = store.with_webhook_queue(Arc::new(SqsWebhookQueue::new(&aws, url)));
        }
        let store = Arc::new(store);
        Self {
            config,
            aws,
            store,
            clock: Arc::new(SystemClock),
        }
    }

    /// Uses `clock` for "now" instead of the system's (the local stack's simulated clock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration read.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The AWS settings, for clients the functions make themselves (the dev server's poller).
    pub fn aws(&self) -> &aws_config::SdkConfig {
        &self.aws
    }

    /// The table, shared by everything built here.
    pub fn store(&self) -> Arc<DynamoStore> {
        self.store.clone()
    }

    /// The clock everything built here reads.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// The API's use cases: the table, the usage queue, Stripe and payment links as configured.
    pub fn billing(&self) -> Result<Billing> {
        let mut billing = Billing::new(
            self.store(),
            self.clock(),
            self.config.bootstrap_key.clone(),
        );
        if let Some(gateway) = self.gateway()? {
            billing = billing.with_gateway(gateway);
        }
        if let Some(links) = self.links() {
            billing = billing.with_links(links);
        }
        if let Some(url) = &self.config.usage_queue_url {
            billing = billing.with_queue(Arc::new(self.queue(url)));
        }
        if let Some(queue) = self.webhook_queue() {
            billing = billing.with_webhook_queue(Arc::new(queue));
        }
        if let Some(from) = &self.config.mail_from {
            billing = billing.with_mailer(Arc::new(SesMailer::new(&self.aws, from)));
        }
        Ok(billing.with_url_policy(self.config.webhooks.url_policy))
    }

    /// The usage queue at `url`.
    pub fn queue(&self, url: &str) -> SqsEventQueue {
        SqsEventQueue::new(&self.aws, url)
    }

    /// The usage matcher over the table.
    pub fn matcher(&self) -> Matcher {
        let store = self.store();
        Matcher::new(store.clone(), store.clone(), self.clock()).with_webhooks(store)
    }

    /// The webhook dispatcher's queue, when configured.
    pub fn webhook_queue(&self) -> Option<SqsWebhookQueue> {
        self.config
            .webhooks
            .queue_url
            .as_ref()
            .map(|url| SqsWebhookQueue::new(&self.aws, url))
    }

    /// The webhook dispatcher: the table, the HTTP sender under the configured URL policy, its
    /// queue (required), payment links, and SES for the operator's alerts.
    pub fn dispatcher(&self) -> Result<Dispatcher> {
        let queue = self
            .webhook_queue()
            .ok_or_else(|| Error::internal("WEBHOOK_QUEUE_URL: is not set (see template.yaml)"))?;
        let sender =
            HttpWebhookSender::new(self.config.webhooks.url_policy).map_err(Error::internal)?;
        let mut dispatcher = Dispatcher::new(
            self.store(),
            Arc::new(JsonRepresentation),
            Arc::new(sender),
            Arc::new(queue),
        )
        .with_schedule(self.config.webhooks.retry_schedule.clone())
        .with_clock(self.clock());
        if let Some(links) = self.links() {
            dispatcher = dispatcher.with_links(Arc::new(links));
        }
        if let Some(from) = &self.config.mail_from {
            dispatcher = dispatcher.with_alerts(
                Arc::new(SesMailer::new(&self.aws, from)),
                self.config.webhooks.operator_email.clone(),
            );
        }
        Ok(dispatcher)
    }

    /// The daily billing run: the table, plus Stripe, SES, EventBridge Scheduler and payment
    /// links as configured (each optional, so a deployment without Stripe still closes
    /// invoices).
    pub fn billing_run(&self) -> Result<BillingRun> {
        let mut run = BillingRun::new(self.store()).with_clock(self.clock());
        if let Some(gateway) = self.gateway()? {
            run = run.with_gateway(gateway);
        }
        if let Some(from) = &self.config.mail_from {
            run = run.with_mailer(Arc::new(SesMailer::new(&self.aws, from)));
        }
        if let Some(schedules) = &self.config.retry_schedules {
            run = run.with_scheduler(Arc::new(EventBridgeRetryScheduler::new(
                &self.aws,
                &schedules.target_arn,
                &schedules.role_arn,
                &schedules.group,
            )));
        }
        if let Some(links) = self.links() {
            run = run.with_links(Arc::new(links));
        }
        Ok(run)
    }

    /// The Stripe webhook receiver; an error when `STRIPE_WEBHOOK_SECRET` is not set, since
    /// without it no delivery can be trusted.
    pub fn webhooks(&self) -> Result<Webhooks> {
        let secret = self
            .config
            .stripe_webhook_secret
            .as_deref()
            .ok_or_else(|| {
                Error::internal("STRIPE_WEBHOOK_SECRET: is not set (see template.yaml)")
            })?;
        let verifier = StripeWebhookVerifier::new(secret)?;
        Ok(Webhooks::new(
            self.store(),
            Arc::new(verifier),
            self.gateway()?,
        ))
    }

    /// The payment provider, when configured.
    pub fn gateway(&self) -> Result<Option<Arc<dyn PaymentGateway>>> {
        self.config
            .stripe
            .as_ref()
            .map(|stripe| {
                StripeGateway::new(&stripe.secret_key, stripe.api_base.as_deref())
                    .map(|g| Arc::new(g) as Arc<dyn PaymentGateway>)
            })
            .transpose()
    }

    /// Payment links, when configured.
    pub fn links(&self) -> Option<PortalLinks> {
        self.config
            .portal
            .as_ref()
            .map(|p| PortalLinks::new(p.key.clone(), &p.public_base_url))
    }
}
