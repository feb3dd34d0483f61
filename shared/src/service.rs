//! The use cases the entry points call. Each Lambda builds one `Billing` at cold start and calls
//! these methods; they hold the rules, the stores hold the data.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::api_key::{ApiKey, CreateApiKey, NewSecret, Principal, Scopes, SecretDigest};
use crate::contract::{self, Contract, ContractStatus, CreateContract, unknown};
use crate::customer::{
    CreateCustomer, Customer, ExternalCustomerId, PaymentProvider, ProviderLink, UpdateCustomer,
};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ApiKeyId, ContractId, CustomerId, InvoiceId, MeterId, PlanId};
use crate::invoice::{Invoice, InvoiceStatus, PricedInvoice};
use crate::meter::MeterCode;
use crate::meter::{CreateMeter, Meter, MeterStatus};
use crate::pagination::{Page, PageRequest};
use crate::payments::{NewProviderCustomer, PaymentGateway, SetupIntent};
use crate::plan::{CreatePlan, MeterRef, Plan};
use crate::store::{
    ApiKeyStore, CatalogStore, ContractStore, CustomerStore, EventFilter, EventQueue,
    InvoiceFilter, InvoiceStore, UsageStore,
};
use crate::usage::{self, EventRecord, EventStatus, UsageEvent};

/// Where "now" comes from, so tests can fix it.
pub trait Clock: Send + Sync {
    /// The current instant, at millisecond precision (what we store and show).
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(3)
    }
}

/// How many times an update re-reads and re-applies after losing a race to another writer.
const UPDATE_ATTEMPTS: usize = 5;

/// Every storage port the use cases need, implemented by one adapter.
pub trait Store:
    CustomerStore + ApiKeyStore + CatalogStore + ContractStore + InvoiceStore + UsageStore + 'static
{
}

impl<T> Store for T where
    T: CustomerStore
        + ApiKeyStore
        + CatalogStore
        + ContractStore
        + InvoiceStore
        + UsageStore
        + 'static
{
}

async fn check_provider_customer(
    gateway: &dyn PaymentGateway,
    id: &crate::customer::ProviderCustomerId,
) -> Result<()> {
    if gateway.customer_exists(id).await? {
        Ok(())
    } else {
        Err(Error::unprocessable(
            "payment_provider_customer_not_found",
            format!("Stripe has no customer '{}'", id.as_str()),
        )
        .at("paymentProviderId"))
    }
}

fn no_gateway() -> Error {
    Error::new(
        ErrorKind::Unavailable,
        "payment_provider_not_configured",
        "no payment provider is configured (set STRIPE_SECRET_KEY)",
    )
}

/// The platform's use cases over its ports.
#[derive(Clone)]
pub struct Billing {
    customers: Arc<dyn CustomerStore>,
    catalog: Arc<dyn CatalogStore>,
    contracts: Arc<dyn ContractStore>,
    invoices: Arc<dyn InvoiceStore>,
    usage: Arc<dyn UsageStore>,
    queue: Option<Arc<dyn EventQueue>>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    links: Option<Arc<crate::PortalLinks>>,
    keys: Keys,
    clock: Arc<dyn Clock>,
}

/// API key use cases, apart so they can be exercised with a key store alone.
#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    bootstrap_key: Option<SecretDigest>,
}

/// One usage line of a customer's current period.
#[derive(Debug, Clone)]
pub struct UsageLine {
    /// Under which contract.
    pub contract_id: ContractId,
    /// On which invoice.
    pub invoice_id: InvoiceId,
    /// Which meter.
    pub meter_id: MeterId,
    /// The current period.
    pub period: crate::period::Period,
    /// The invoice's currency.
    pub currency: crate::money::Currency,
    /// The line, priced.
    pub line: crate::invoice::PricedLine,
}

/// A key just created, with its secret (shown once, never again).
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The secret to hand to the caller.
    pub secret: String,
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
            usage: store.clone(),
            queue: None,
            gateway: None,
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

    /// Links customers to the payment provider (creating, checking, attaching methods).
    #[must_use]
    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Signs and checks payment links (the portal).
    #[must_use]
    pub fn with_links(mut self, links: crate::PortalLinks) -> Self {
        self.links = Some(Arc::new(links));
        self
    }

    /// The payment link signer, when configured.
    pub fn links(&self) -> Option<&crate::PortalLinks> {
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

    /// Enqueues validated events, packed many per message. Returns, per event, whether it is
    /// durably enqueued: only those may be acknowledged to the client.
    pub async fn ingest(&self, events: &[UsageEvent]) -> Result<Vec<bool>> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| Error::unavailable("no usage queue is configured (USAGE_QUEUE_URL)"))?;
        let messages = usage::pack(events)?;
        let bodies: Vec<String> = messages.iter().map(|(body, _)| body.clone()).collect();
        let sent = queue.send(&bodies).await;
        let mut enqueued = vec![false; events.len()];
        for ((_, indexes), ok) in messages.iter().zip(sent) {
            for &i in indexes {
                enqueued[i] = ok;
            }
        }
        Ok(enqueued)
    }

    /// Lists event records of a customer (by our id or external id) and/or of an outcome.
    pub async fn events(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
        external: Option<&str>,
        status: Option<&str>,
    ) -> Result<Page<EventRecord>> {
        let owner = match (customer, external) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "ambiguous_customer",
                    "give customerId or externalCustomerId, not both",
                ));
            }
            (Some(id), None) => {
                let id = CustomerId::parse(id).map_err(|e| e.at("customerId"))?;
                Some(match self.customers.get(&id).await? {
                    Some(_) => format!("CUSTOMER#{id}"),
                    None => format!("EVENTREF#{id}"),
                })
            }
            (None, Some(raw)) => {
                let external =
                    ExternalCustomerId::parse(raw).map_err(|e| e.at("externalCustomerId"))?;
                Some(match self.customers.get_by_external_id(&external).await? {
                    Some(c) => format!("CUSTOMER#{}", c.id),
                    None => format!("EVENTREF#ext:{external}"),
                })
            }
            (None, None) => None,
        };
        let filter = EventFilter {
            customer: owner,
            status: status.map(EventStatus::parse).transpose()?,
        };
        self.usage.list_events(&filter, page).await
    }

    /// The customer's usage in the current period: per usage line of each invoice whose period
    /// contains today, its quantity and amount so far; optionally one meter's only.
    pub async fn customer_usage(
        &self,
        customer: &str,
        meter_code: Option<&str>,
    ) -> Result<Vec<UsageLine>> {
        let customer = self.customer(customer).await?;
        let meter = match meter_code {
            None => None,
            Some(code) => {
                let code = MeterCode::parse(code).map_err(|e| e.at("meterCode"))?;
                Some(
                    self.catalog
                        .get_meter_by_code(&code)
                        .await?
                        .ok_or_else(|| Error::not_found("meter", code.as_str()).at("meterCode"))?,
                )
            }
        };
        let today = self.clock.now().date_naive();
        let index = self.contracts.customer_contracts(&customer.id).await?;
        let mut lines = Vec::new();
        for summary in index.value.iter().filter(|c| c.span().contains(today)) {
            let Some(contract) = self.contracts.get_contract(&summary.id).await? else {
                continue;
            };
            let Some((_, period)) = contract.value.schedule().period_containing(today) else {
                continue;
            };
            let Some(invoice) = self
                .invoices
                .get_invoice(&Invoice::id_for(&summary.id, period.start))
                .await?
            else {
                continue;
            };
            let priced = invoice.priced()?;
            for line in priced.lines {
                let crate::invoice::LineKind::Usage { meter_id, .. } = &line.line.kind else {
                    continue;
                };
                if meter.as_ref().is_some_and(|m| &m.id != meter_id) {
                    continue;
                }
                lines.push(UsageLine {
                    contract_id: summary.id.clone(),
                    invoice_id: invoice.id.clone(),
                    meter_id: meter_id.clone(),
                    period,
                    currency: invoice.currency,
                    line,
                });
            }
        }
        Ok(lines)
    }

    /// The API key use cases.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Shorthand for `keys().authenticate`.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        self.keys.authenticate(secret).await
    }

    /// Shorthand for `keys().create`.
    pub async fn create_api_key(&self, request: CreateApiKey) -> Result<CreatedApiKey> {
        self.keys.create(request).await
    }

    /// Shorthand for `keys().seed`.
    pub async fn seed_api_key(&self, secret: &str, scopes: Scopes) -> Result<()> {
        self.keys.seed(secret, scopes).await
    }

    /// Shorthand for `keys().revoke`.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKey> {
        self.keys.revoke(id).await
    }
    /// Creates a customer; 409 with the holder's id when a unique field is taken.
    ///
    /// With a payment provider: a customer without `paymentProviderId` gets a provider
    /// customer (created with an idempotency key derived from our id, so a retried call never
    /// makes two); a given one must exist there; a `paymentMethodId` is attached and made the
    /// default. The provider is called before our write; when the request is then refused (a
    /// declined card, a taken `externalCustomerId`), a provider customer made for it is
    /// deleted again, so a refused request leaves nothing behind.
    pub async fn create_customer(&self, request: CreateCustomer) -> Result<Customer> {
        let mut customer = request.parse(self.clock.now())?;
        let Some(gateway) = &self.gateway else {
            self.customers.insert(&customer).await?;
            return Ok(customer);
        };
        let created = match &customer.payment_provider {
            Some(link) => {
                check_provider_customer(gateway.as_ref(), &link.customer_id).await?;
                None
            }
            None => {
                let created = gateway
                    .create_customer(&NewProviderCustomer {
                        customer_id: customer.id.clone(),
                        name: customer.name.as_str().to_owned(),
                        email: customer.contacts.first().map(|c| c.email.clone()),
                    })
                    .await?;
                customer.payment_provider = Some(ProviderLink {
                    provider: PaymentProvider::Stripe,
                    customer_id: created.clone(),
                });
                Some(created)
            }
        };
        let outcome = self.link_and_insert(gateway.as_ref(), &mut customer).await;
        match (outcome, created) {
            (Ok(()), _) => Ok(customer),
            (Err(Written::No(error)), Some(created)) => {
                if let Err(e) = gateway.delete_customer(&created).await {
                    tracing::warn!(error = %e, customer = %created.as_str(),
                        "could not delete the Stripe customer of a refused request");
                }
                Err(error)
            }
            (Err(Written::No(error) | Written::Unknown(error)), _) => Err(error),
        }
    }

    /// The rest of a customer create once it has its provider link: attach its payment method,
    /// then insert. Says whether a failure could have written the customer.
    async fn link_and_insert(
        &self,
        gateway: &dyn PaymentGateway,
        customer: &mut Customer,
    ) -> std::result::Result<(), Written> {
        let link = customer
            .payment_provider
            .as_ref()
            .map(|l| l.customer_id.clone());
        if let (Some(method), Some(link)) = (&mut customer.payment_method, link) {
            method.id = gateway
                .attach_default_payment_method(&link, &method.id)
                .await
                .map_err(|e| Written::No(e.at("paymentMethodId")))?;
        }
        self.customers.insert(customer).await.map_err(|e| {
            // A refusal (a taken unique field) wrote nothing; an outage may have written it.
            if matches!(e.kind, ErrorKind::Conflict | ErrorKind::Unprocessable) {
                Written::No(e)
            } else {
                Written::Unknown(e)
            }
        })
    }

    /// A SetupIntent for collecting a payment method in the SaaS business's own page (Stripe
    /// Elements); the method is saved on the customer when its webhook arrives.
    pub async fn create_setup_intent(&self, id: &str) -> Result<SetupIntent> {
        let customer = self.customer(id).await?;
        let gateway = self.gateway.as_ref().ok_or_else(no_gateway)?;
        let link = customer.payment_provider.ok_or_else(|| {
            Error::unprocessable(
                "no_payment_provider_customer",
                "the customer is not linked to a Stripe customer; set paymentProviderId",
            )
        })?;
        gateway.create_setup_intent(&link.customer_id).await
    }

    /// Reads a customer by our id; 404 when unknown (or not an id we could have issued).
    pub async fn customer(&self, id: &str) -> Result<Customer> {
        let id = CustomerId::parse(id).map_err(|_| Error::not_found("customer", id))?;
        self.customers
            .get(&id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::not_found("customer", id.as_str()))
    }

    /// Lists customers in creation order, or finds the one holding `external_id`.
    pub async fn customers(
        &self,
        page: &PageRequest,
        external_id: Option<&str>,
    ) -> Result<Page<Customer>> {
        match external_id {
            None => self.customers.list(page).await,
            Some(raw) => {
                let external_id =
                    ExternalCustomerId::parse(raw).map_err(|e| e.at("externalCustomerId"))?;
                let found = self.customers.get_by_external_id(&external_id).await?;
                Ok(Page {
                    items: found.into_iter().collect(),
                    next: None,
                })
            }
        }
    }

    /// Applies a partial update. Concurrent updates are serialised by version: a loser re-reads
    /// and re-applies its patch, so no change is silently lost.
    pub async fn update_customer(&self, id: &str, request: UpdateCustomer) -> Result<Customer> {
        let id = CustomerId::parse(id).map_err(|_| Error::not_found("customer", id))?;
        let patch = request.parse()?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self
                .customers
                .get(&id)
                .await?
                .ok_or_else(|| Error::not_found("customer", id.as_str()))?;
            let mut next = patch.apply(&current.value, self.clock.now());
            self.sync_provider(&current.value, &mut next).await?;
            match self.customers.update(&current, &next).await {
                Ok(()) => return Ok(next),
                Err(e) if e.code == "version_conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "concurrent_modification",
            "the customer is being changed by other requests; retry",
        ))
    }

    /// Checks a newly linked provider customer and attaches a newly set payment method.
    async fn sync_provider(&self, current: &Customer, next: &mut Customer) -> Result<()> {
        let Some(gateway) = &self.gateway else {
            return Ok(());
        };
        let Some(link) = next.payment_provider.clone() else {
            return Ok(());
        };
        let relinked = current.payment_provider.as_ref() != Some(&link);
        if relinked {
            check_provider_customer(gateway.as_ref(), &link.customer_id).await?;
        }
        let changed = next.payment_method != current.payment_method;
        if let Some(method) = &mut next.payment_method
            && (relinked || changed)
        {
            method.id = gateway
                .attach_default_payment_method(&link.customer_id, &method.id)
                .await
                .map_err(|e| e.at("paymentMethodId"))?;
        }
        Ok(())
    }

    /// Creates a meter; 409 naming the holder when the code is taken.
    pub async fn create_meter(&self, request: CreateMeter) -> Result<Meter> {
        let meter = request.parse(self.clock.now())?;
        self.catalog.insert_meter(&meter).await?;
        Ok(meter)
    }

    /// Reads a meter; 404 when unknown.
    pub async fn meter(&self, id: &str) -> Result<Meter> {
        let id = MeterId::parse(id).map_err(|_| Error::not_found("meter", id))?;
        self.catalog
            .get_meter(&id)
            .await?
            .ok_or_else(|| Error::not_found("meter", id.as_str()))
    }

    /// Lists meters in creation order.
    pub async fn meters(&self, page: &PageRequest) -> Result<Page<Meter>> {
        self.catalog.list_meters(page).await
    }

    /// Archives a meter: it stops matching new events. Archiving twice changes nothing.
    pub async fn archive_meter(&self, id: &str) -> Result<Meter> {
        let mut meter = self.meter(id).await?;
        if meter.status == MeterStatus::Archived {
            return Ok(meter);
        }
        meter.status = MeterStatus::Archived;
        meter.updated_at = self.clock.now();
        self.catalog.put_meter(&meter).await?;
        Ok(meter)
    }

    /// Creates a plan after resolving the meters its prices name.
    pub async fn create_plan(&self, request: CreatePlan) -> Result<Plan> {
        let mut meters: Vec<Meter> = Vec::new();
        for reference in request.meter_refs()? {
            let found = match &reference {
                MeterRef::Id(id) => self.catalog.get_meter(id).await?,
                MeterRef::Code(code) => self.catalog.get_meter_by_code(code).await?,
            };
            meters.extend(found);
        }
        let plan = request.parse(self.clock.now(), &meters)?;
        self.catalog.insert_plan(&plan).await?;
        Ok(plan)
    }

    /// Reads a plan; 404 when unknown.
    pub async fn plan(&self, id: &str) -> Result<Plan> {
        let id = PlanId::parse(id).map_err(|_| Error::not_found("plan", id))?;
        self.catalog
            .get_plan(&id)
            .await?
            .ok_or_else(|| Error::not_found("plan", id.as_str()))
    }

    /// Lists plans in creation order.
    pub async fn plans(&self, page: &PageRequest) -> Result<Page<Plan>> {
        self.catalog.list_plans(page).await
    }

    /// Subscribes a customer to a plan and pre-generates the contract's invoices, all in one
    /// write. Concurrent creations for one customer are serialised through the customer's
    /// contract index, so the overlap rule holds under races.
    pub async fn create_contract(&self, request: CreateContract) -> Result<Contract> {
        let refs = request.refs()?;
        if self.customers.get(&refs.customer_id).await?.is_none() {
            return Err(unknown("customer", refs.customer_id.as_str(), "customerId"));
        }
        let plan = self
            .catalog
            .get_plan(&refs.plan_id)
            .await?
            .ok_or_else(|| unknown("plan", refs.plan_id.as_str(), "planId"))?;
        let now = self.clock.now();
        let contract = request.parse(refs, &plan, now)?;
        for _ in 0..UPDATE_ATTEMPTS {
            let index = self
                .contracts
                .customer_contracts(&contract.customer_id)
                .await?;
            let new = contract::prepare(contract.clone(), &plan, &index.value, now)?;
            match self.contracts.insert_contract(&new, &index).await {
                Ok(()) => return Ok(new.contract),
                Err(e) if e.code == "version_conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy("contracts of this customer"))
    }

    /// Reads a contract; 404 when unknown.
    pub async fn contract(&self, id: &str) -> Result<Contract> {
        let id = ContractId::parse(id).map_err(|_| Error::not_found("contract", id))?;
        Ok(self.versioned_contract(&id).await?.value)
    }

    async fn versioned_contract(
        &self,
        id: &ContractId,
    ) -> Result<crate::store::Versioned<Contract>> {
        self.contracts
            .get_contract(id)
            .await?
            .ok_or_else(|| Error::not_found("contract", id.as_str()))
    }

    /// Lists contracts, of one customer or all, in creation order.
    pub async fn contracts(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
    ) -> Result<Page<Contract>> {
        let customer = customer
            .map(|c| CustomerId::parse(c).map_err(|e| e.at("customerId")))
            .transpose()?;
        self.contracts.list_contracts(customer.as_ref(), page).await
    }

    /// Cancels a contract at the end of its current period and voids the invoices after it.
    /// Cancelling again returns the contract unchanged; a contract already over is 409.
    pub async fn cancel_contract(&self, id: &str) -> Result<Contract> {
        let id = ContractId::parse(id).map_err(|_| Error::not_found("contract", id))?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.versioned_contract(&id).await?;
            if current.value.status == ContractStatus::Canceled {
                return Ok(current.value);
            }
            let now = self.clock.now();
            let end =
                contract::cancellation_end(&current.value, now.date_naive()).ok_or_else(|| {
                    Error::conflict(
                        "contract_ended",
                        "the contract has already ended; there is nothing to cancel",
                    )
                })?;
            let mut next = current.value.clone();
            next.status = ContractStatus::Canceled;
            next.end_date = Some(end);
            next.canceled_at = Some(now);
            next.updated_at = now;
            let schedule = current.value.schedule();
            let void: Vec<InvoiceId> = (0..current.value.invoiced_periods)
                .filter_map(|i| schedule.period(i))
                .filter(|p| p.start >= end)
                .map(|p| Invoice::id_for(&id, p.start))
                .collect();
            next.invoiced_periods =
                current.value.invoiced_periods - u32::try_from(void.len()).unwrap_or(0);
            let mut index = self.contracts.customer_contracts(&next.customer_id).await?;
            let summary = next.summary();
            index.value.retain(|c| c.id != id);
            index.value.push(summary);
            match self
                .contracts
                .cancel_contract(&current, &next, &index, &void)
                .await
            {
                Ok(()) => return Ok(next),
                Err(e) if e.code == "version_conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(busy("this contract"))
    }

    /// Reads an invoice with its amounts computed; 404 when unknown.
    pub async fn invoice(&self, id: &str) -> Result<PricedInvoice> {
        let id = InvoiceId::parse(id).map_err(|_| Error::not_found("invoice", id))?;
        self.invoice_record(&id).await?.priced()
    }

    /// Reads an invoice as stored; 404 when unknown.
    pub async fn invoice_record(&self, id: &InvoiceId) -> Result<Invoice> {
        self.invoices
            .get_invoice(id)
            .await?
            .ok_or_else(|| Error::not_found("invoice", id.as_str()))
    }

    /// Lists invoices (filtered by customer, contract, status) with amounts computed.
    pub async fn invoices(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
        contract: Option<&str>,
        status: Option<&str>,
    ) -> Result<Page<PricedInvoice>> {
        let filter = InvoiceFilter {
            customer: customer
                .map(|c| CustomerId::parse(c).map_err(|e| e.at("customerId")))
                .transpose()?,
            contract: contract
                .map(|c| ContractId::parse(c).map_err(|e| e.at("contractId")))
                .transpose()?,
            status: status.map(InvoiceStatus::parse).transpose()?,
        };
        let page = self.invoices.list_invoices(&filter, page).await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(Invoice::priced)
                .collect::<Result<_>>()?,
            next: page.next,
        })
    }

    /// The contract's open invoice (the one whose period contains today, or the first when the
    /// contract has not started), priced as if it closed now.
    pub async fn upcoming_invoice(&self, contract: &str) -> Result<PricedInvoice> {
        let id = ContractId::parse(contract).map_err(|e| e.at("contractId"))?;
        let contract = self.versioned_contract(&id).await?.value;
        let today = self.clock.now().date_naive();
        let schedule = contract.schedule();
        let period = match schedule.period_containing(today) {
            Some((_, period)) => Some(period),
            None if today < contract.start_date => schedule.period(0),
            None => None,
        }
        .ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "no_upcoming_invoice",
                "the contract has ended",
            )
        })?;
        let invoice = self
            .invoices
            .get_invoice(&Invoice::id_for(&id, period.start))
            .await?
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    "no_upcoming_invoice",
                    "the current period has no invoice yet",
                )
            })?;
        invoice.priced()
    }
}

impl Keys {
    /// Key use cases over a key store.
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        clock: Arc<dyn Clock>,
        bootstrap_key: Option<SecretDigest>,
    ) -> Self {
        Self {
            store,
            clock,
            bootstrap_key,
        }
    }

    /// Resolves a bearer secret to a principal, or 401. One read per call; digests are
    /// compared in constant time.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        let presented = SecretDigest::of(secret);
        if let Some(bootstrap) = &self.bootstrap_key
            && bootstrap.matches(&presented)
        {
            return Ok(Principal {
                key_id: None,
                scopes: Scopes::all(),
            });
        }
        match self.store.find_secret(&presented.lookup()).await? {
            Some(stored) if stored.digest.matches(&presented) => Ok(Principal {
                key_id: Some(stored.key_id),
                scopes: stored.scopes,
            }),
            _ => Err(unauthenticated(
                "the API key is not valid or has been revoked",
            )),
        }
    }

    /// Creates a key with a fresh secret.
    pub async fn create(&self, request: CreateApiKey) -> Result<CreatedApiKey> {
        let key = request.parse(self.clock.now())?;
        let secret = NewSecret::generate()?;
        self.store.insert(&key, &secret.digest()).await?;
        Ok(CreatedApiKey {
            key,
            secret: secret.expose().to_owned(),
        })
    }

    /// Makes sure a known secret (e.g. the local stack's `LOCAL_API_KEY`) works with `scopes`.
    /// Idempotent: seeding the same secret twice keeps the first key.
    pub async fn seed(&self, secret: &str, scopes: Scopes) -> Result<()> {
        let key = ApiKey {
            id: ApiKeyId::generate(),
            name: Some(crate::api_key::ApiKeyName::parse("seeded")?),
            scopes,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        match self.store.insert(&key, &SecretDigest::of(secret)).await {
            Err(e) if e.code == "digest_exists" => Ok(()),
            other => other,
        }
    }

    /// Revokes a key; 404 when unknown. Revoking twice is harmless.
    pub async fn revoke(&self, id: &str) -> Result<ApiKey> {
        let id = ApiKeyId::parse(id).map_err(|_| Error::not_found("API key", id))?;
        self.store
            .revoke(&id, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found("API key", id.as_str()))
    }
}

fn busy(what: &str) -> Error {
    Error::conflict(
        "concurrent_modification",
        format!("{what} are being changed by other requests; retry"),
    )
}

fn unauthenticated(message: &str) -> Error {
    Error::new(ErrorKind::Unauthenticated, "invalid_api_key", message)
}

/// The 401 for a request without usable credentials.
pub fn missing_credentials() -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "missing_api_key",
        "send your API key as 'Authorization: Bearer <key>'",
    )
}

/// How a failed write left the store: untouched, or perhaps written (an outage mid-request).
enum Written {
    No(Error),
    Unknown(Error),
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::store::StoredSecret;

    /// Keeps API keys in memory; customers are not used here.
    #[derive(Default)]
    struct MemoryKeys(Mutex<Vec<(ApiKey, SecretDigest)>>);

    #[async_trait]
    impl ApiKeyStore for MemoryKeys {
        async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()> {
            let mut keys = self.0.lock().unwrap();
            if keys.iter().any(|(_, d)| d.lookup() == digest.lookup()) {
                return Err(Error::conflict("digest_exists", "exists"));
            }
            keys.push((key.clone(), digest.clone()));
            Ok(())
        }
        async fn find_secret(&self, lookup: &str) -> Result<Option<StoredSecret>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(k, d)| d.lookup() == lookup && k.revoked_at.is_none())
                .map(|(k, d)| StoredSecret {
                    key_id: k.id.clone(),
                    digest: d.clone(),
                    scopes: k.scopes.clone(),
                }))
        }
        async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(k, _)| &k.id == id)
                .map(|(k, _)| k.clone()))
        }
        async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
            let mut keys = self.0.lock().unwrap();
            Ok(keys.iter_mut().find(|(k, _)| &k.id == id).map(|(k, _)| {
                k.revoked_at.get_or_insert(at);
                k.clone()
            }))
        }
    }

    fn billing(bootstrap: Option<&str>) -> Keys {
        Keys::new(
            Arc::new(MemoryKeys::default()),
            Arc::new(SystemClock),
            bootstrap.map(SecretDigest::of),
        )
    }

    #[tokio::test]
    async fn the_bootstrap_key_has_every_scope_and_no_record() {
        let b = billing(Some("sk_bootstrap"));
        let p = b.authenticate("sk_bootstrap").await.unwrap();
        assert_eq!(p.key_id, None);
        assert!(p.scopes.allows(crate::api_key::Scope::All));
        assert_eq!(
            b.authenticate("sk_other").await.unwrap_err().code,
            "invalid_api_key"
        );
        let none = billing(None);
        assert!(none.authenticate("sk_bootstrap").await.is_err());
    }

    #[tokio::test]
    async fn seeding_is_idempotent_and_revoked_keys_stop_working() {
        let b = billing(None);
        b.seed("sk_local_dev", Scopes::all()).await.unwrap();
        b.seed("sk_local_dev", Scopes::all()).await.unwrap();
        let p = b.authenticate("sk_local_dev").await.unwrap();
        let id = p.key_id.unwrap();
        b.revoke(id.as_str()).await.unwrap();
        assert!(b.authenticate("sk_local_dev").await.is_err());
    }
}
