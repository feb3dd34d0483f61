//! The use cases the entry points call, one file per resource (mirroring the API's routes).
//! Each Lambda builds one [`Billing`] at cold start and calls its methods; they hold the rules,
//! the ports hold the data.

mod api_keys;
mod contracts;
mod customers;
mod events;
mod invoices;
mod meters;
mod overview;
mod plans;
mod portal;
mod webhook_endpoints;

use std::sync::Arc;

use chrono::{DateTime, Utc};

pub use api_keys::{CreatedApiKey, KeyHandle, Keys, missing_credentials};
pub use customers::{DailyUsage, UsageLine};
pub use invoices::MarkPaid;
pub use overview::{CappedCount, OVERVIEW_CAP, Overview, UNBILLABLE};
pub use portal::{PortalOutcome, PortalPage, PortalRefusal};
pub use webhook_endpoints::CreatedEndpoint;

use crate::api_key::SecretDigest;
use crate::error::{Error, ErrorKind};
use crate::portal::PortalLinks;
use crate::ports::{
    ApiKeyStore, CatalogStore, Clock, ContractStore, CustomerStore, EventQueue, InvoiceStore,
    LedgerStore, Mailer, PaymentGateway, UsageStore, WebhookQueue, WebhookStore,
};
use crate::webhooks::UrlPolicy;

/// Every storage port the use cases need, implemented by one adapter.
pub trait Store:
    CustomerStore
    + ApiKeyStore
    + CatalogStore
    + ContractStore
    + InvoiceStore
    + UsageStore
    + LedgerStore
    + WebhookStore
    + 'static
{
}

impl<T> Store for T where
    T: CustomerStore
        + ApiKeyStore
        + CatalogStore
        + ContractStore
        + InvoiceStore
        + UsageStore
        + LedgerStore
        + WebhookStore
        + 'static
{
}

/// The platform's use cases over its ports.
#[derive(Clone)]
pub struct Billing {
    customers: Arc<dyn CustomerStore>,
    catalog: Arc<dyn CatalogStore>,
    contracts: Arc<dyn ContractStore>,
    invoices: Arc<dyn InvoiceStore>,
    ledger: Arc<dyn LedgerStore>,
    usage: Arc<dyn UsageStore>,
    webhooks: Arc<dyn WebhookStore>,
    queue: Option<Arc<dyn EventQueue>>,
    webhook_queue: Option<Arc<dyn WebhookQueue>>,
    url_policy: UrlPolicy,
    gateway: Option<Arc<dyn PaymentGateway>>,
    mailer: Option<Arc<dyn Mailer>>,
    links: Option<Arc<PortalLinks>>,
    keys: Keys,
    clock: Arc<dyn Clock>,
}

impl Billing {
    /// Wires the use cases to one store implementing every port. `bootstrap_key` is the digest
    /// of a deployment's first admin key (scope `*`), configured rather than stored, so a new
    /// stack can be used.
    pub fn new<S: Store>(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        bootstrap_key: Option<SecretDigest>,
    ) -> Self {
        Self {
            customers: store.clone(),
            catalog: store.clone(),
            contracts: store.clone(),
            invoices: store.clone(),
            ledger: store.clone(),
            usage: store.clone(),
            webhooks: store.clone(),
            queue: None,
            webhook_queue: None,
            url_policy: UrlPolicy::PublicHttps,
            gateway: None,
            mailer: None,
            links: None,
            keys: Keys::new(store, clock.clone(), bootstrap_key),
            clock,
        }
    }

    /// Sends accepted usage events to `queue` (the ingestion routes answer 503 without one).
    #[must_use]
    pub fn with_queue(mut self, queue: Arc<dyn EventQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Wakes the webhook dispatcher for manual delivery retries.
    #[must_use]
    pub fn with_webhook_queue(mut self, queue: Arc<dyn WebhookQueue>) -> Self {
        self.webhook_queue = Some(queue);
        self
    }

    /// Accepts webhook endpoint URLs under `policy` (deployed: public `https` only).
    #[must_use]
    pub fn with_url_policy(mut self, policy: UrlPolicy) -> Self {
        self.url_policy = policy;
        self
    }

    /// Sends an invoice's mail at once when an operator sends it again (otherwise the next
    /// billing run sends it).
    #[must_use]
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Links customers to the payment provider (creating, checking, attaching methods).
    #[must_use]
    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Signs and checks payment links (the portal).
    #[must_use]
    pub fn with_links(mut self, links: PortalLinks) -> Self {
        self.links = Some(Arc::new(links));
        self
    }

    /// The payment link signer, when configured.
    pub fn links(&self) -> Option<&PortalLinks> {
        self.links.as_deref()
    }

    /// The payment provider, when one is configured.
    pub fn gateway(&self) -> Option<&Arc<dyn PaymentGateway>> {
        self.gateway.as_ref()
    }

    /// The current time, as the use cases see it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// The 503 of a use case that needs the payment provider when none is configured.
fn no_gateway() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "payment_provider_not_configured",
        "no payment provider is configured (set STRIPE_SECRET_KEY)",
    )
}
