//! The billing domain: customers, API keys, meters, plans, contracts, invoices, usage matching
//! ([`matcher`]), the billing run ([`billing_run`]), provider webhooks ([`webhook`]) and the
//! payment portal ([`portal`], [`checkout`]). Rules live here; Lambda functions only decode
//! events, call these use cases, and encode results. AWS and Stripe appear only under
//! [`adapters`], behind the ports in [`store`] and [`payments`].

pub mod adapters;
pub mod aggregation;
pub mod api_key;
pub mod billing_run;
pub mod change;
pub mod checkout;
pub mod contract;
pub mod customer;
pub mod error;
pub mod ids;
pub mod invoice;
pub mod matcher;
pub mod meter;
pub mod money;
pub mod pagination;
pub mod payments;
pub mod period;
pub mod plan;
pub mod portal;
pub mod pricing;
pub mod refunds;
pub mod service;
pub mod store;
mod text;
pub mod usage;
pub mod webhook;

pub use error::{Error, ErrorKind, Result};
pub use service::Billing;

use std::sync::Arc;

/// Builds the use cases over DynamoDB from the standard environment (`TABLE_NAME`,
/// `BOOTSTRAP_API_KEY_SHA256`, AWS variables). Every entry point starts from this.
pub async fn billing_from_env() -> Result<Billing> {
    let config = adapters::aws_config().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::from_config(&config)?);
    let bootstrap_key = match std::env::var("BOOTSTRAP_API_KEY_SHA256") {
        Ok(hex) if !hex.is_empty() => Some(api_key::SecretDigest::from_hex(&hex)?),
        _ => None,
    };
    let mut billing = Billing::new(store, Arc::new(service::SystemClock), bootstrap_key);
    if let Some(gateway) = adapters::stripe::StripeGateway::from_env()? {
        billing = billing.with_gateway(Arc::new(gateway));
    }
    if let Some(links) = portal_links_from_env()? {
        billing = billing.with_links(links);
    }
    Ok(match std::env::var("USAGE_QUEUE_URL") {
        Ok(url) if !url.is_empty() => billing.with_queue(Arc::new(
            adapters::sqs::SqsEventQueue::from_config(&config)?,
        )),
        _ => billing,
    })
}

/// Builds the usage matcher over DynamoDB from the standard environment.
pub async fn matcher_from_env() -> Result<matcher::Matcher> {
    let config = adapters::aws_config().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::from_config(&config)?);
    Ok(matcher::Matcher::new(
        store.clone(),
        store,
        Arc::new(service::SystemClock),
    ))
}

/// Builds the daily billing run from the standard environment: DynamoDB, plus Stripe
/// (`STRIPE_SECRET_KEY`), SES (`MAIL_FROM`), EventBridge Scheduler (`BILLING_RUN_FUNCTION_ARN`,
/// `SCHEDULER_ROLE_ARN`) and payment links (`PORTAL_SIGNING_KEY`, `PUBLIC_BASE_URL`) when set.
pub async fn billing_run_from_env() -> Result<billing_run::BillingRun> {
    let config = adapters::aws_config().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::from_config(&config)?);
    let mut run = billing_run::BillingRun::new(store);
    if let Some(gateway) = adapters::stripe::StripeGateway::from_env()? {
        run = run.with_gateway(Arc::new(gateway));
    }
    if let Some(mailer) = adapters::ses::SesMailer::from_config(&config) {
        run = run.with_mailer(Arc::new(mailer));
    }
    if let Some(scheduler) = adapters::scheduler::EventBridgeRetryScheduler::from_config(&config) {
        run = run.with_scheduler(Arc::new(scheduler));
    }
    if let Some(links) = portal_links_from_env()? {
        run = run.with_links(Arc::new(links));
    }
    Ok(run)
}

/// Builds the webhook receiver from the standard environment (`STRIPE_WEBHOOK_SECRET` is
/// required: without it no delivery can be trusted).
pub async fn webhooks_from_env() -> Result<webhook::Webhooks> {
    let config = adapters::aws_config().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::from_config(&config)?);
    let verifier = adapters::stripe::StripeWebhookVerifier::from_env()?
        .ok_or_else(|| Error::internal("STRIPE_WEBHOOK_SECRET is not set; see template.yaml"))?;
    let gateway = adapters::stripe::StripeGateway::from_env()?
        .map(|g| Arc::new(g) as Arc<dyn payments::PaymentGateway>);
    Ok(webhook::Webhooks::new(store, Arc::new(verifier), gateway))
}

/// Payment links signed with the portal key, pointing at the api function's `/pay/` pages.
#[derive(Debug, Clone)]
pub struct PortalLinks {
    key: portal::PortalKey,
    base_url: String,
}

impl PortalLinks {
    /// Links under `base_url` (the API's public address) signed with `key`.
    pub fn new(key: portal::PortalKey, base_url: impl Into<String>) -> Self {
        Self {
            key,
            base_url: base_url.into(),
        }
    }

    /// The signing key (the portal pages verify with it).
    pub fn key(&self) -> &portal::PortalKey {
        &self.key
    }

    /// The public base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

impl payments::PaymentLinks for PortalLinks {
    fn payment_link(
        &self,
        invoice: &ids::InvoiceId,
        sent_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let token = portal::PaymentToken::for_invoice(invoice.clone(), sent_at);
        portal::payment_link(&self.base_url, &self.key.sign(&token))
    }
}

/// Payment links from `PORTAL_SIGNING_KEY` (hex) and `PUBLIC_BASE_URL`; `None` when either
/// is unset (mails then carry no link).
pub fn portal_links_from_env() -> Result<Option<PortalLinks>> {
    let Some(key) = portal::PortalKey::from_env()? else {
        return Ok(None);
    };
    Ok(std::env::var("PUBLIC_BASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|base| PortalLinks::new(key, base)))
}
