//! Every storage port over maps behind one mutex, with the DynamoDB adapter's conditions: unique
//! claims, versions, open-invoice checks, record keys that must not exist, a gapless counter.
//! Each write is all or nothing, as a transaction is. Writes can be made to fail from the n-th
//! one on ([`MemoryStore::crash_after_writes`]), which is how the unit tests cut a process off
//! after every write in turn.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::api_key::{ApiKey, SecretDigest};
use crate::concurrency::Write;
use crate::contract::{Contract, ContractSummary, NewContract};
use crate::customer::{Customer, ExternalCustomerId, ProviderCustomerId};
use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, ContractId, CustomerId, InvoiceId, MeterId, PlanId};
use crate::ids::{WebhookEndpointId, WebhookEventId};
use crate::invoice::{Invoice, InvoiceStatus};
use crate::lanes::{LaneKey, UsageLane, merge};
use crate::meter::{Meter, MeterCode};
use crate::pagination::{Cursor, Page, PageRequest};
use crate::plan::Plan;
use crate::ports::{
    AgendaKind, ApiKeyStore, CatalogStore, ContractStore, CustomerStore, EventFilter, EventOwner,
    InvoiceFilter, InvoiceState, InvoiceStore, LaneWrite, LedgerStore, MailTask, RecordPut,
    StoredSecret, UsageStore, ValueClaim, Versioned,
};
use crate::tally::{DayCount, DayTally, TallyKey};
use crate::totals::{Month, Totals};
use crate::usage::{EventRecord, Lane, MessageNonce};
use crate::webhooks::{Delivery, OutboxEntry, OutgoingEvent, WebhookEndpoint};

mod webhooks;

/// A unique value's holder, by what is unique and the value.
type Claims = HashMap<(&'static str, String), String>;

/// A distinct value of a line (`UNIQUE_COUNT`).
type ValueKey = (InvoiceId, crate::ids::LineId, String);

#[derive(Default)]
struct Tables {
    customers: BTreeMap<CustomerId, Versioned<Customer>>,
    claims: Claims,
    api_keys: BTreeMap<ApiKeyId, (ApiKey, String)>,
    secrets: HashMap<String, StoredSecret>,
    meters: BTreeMap<MeterId, Meter>,
    plans: BTreeMap<PlanId, Plan>,
    contracts: BTreeMap<ContractId, Versioned<Contract>>,
    indexes: HashMap<CustomerId, Versioned<Vec<ContractSummary>>>,
    invoices: HashMap<InvoiceId, Versioned<Invoice>>,
    lanes: BTreeMap<LaneKey, UsageLane>,
    tallies: BTreeMap<TallyKey, DayTally>,
    values: HashMap<ValueKey, MessageNonce>,
    records: BTreeMap<String, EventRecord>,
    counter: u64,
    outbox: BTreeMap<String, MailTask>,
    provider_events: HashSet<String>,
    webhook_outbox: BTreeMap<String, OutboxEntry>,
    endpoints: BTreeMap<WebhookEndpointId, Versioned<WebhookEndpoint>>,
    deliveries: BTreeMap<(WebhookEndpointId, WebhookEventId), Versioned<Delivery>>,
    customer_totals: HashMap<CustomerId, Totals>,
    month_totals: HashMap<Month, Totals>,
}

/// Every storage port, in memory.
#[derive(Default)]
pub struct MemoryStore {
    tables: Mutex<Tables>,
    writes: Mutex<Writes>,
}

#[derive(Default)]
struct Writes {
    done: usize,
    crash_after: Option<usize>,
    /// A write was refused since the crash point was set: the process is dead.
    refused: bool,
}

const EXTERNAL_ID: &str = "externalCustomerId";
const PROVIDER_CUSTOMER: &str = "paymentProviderId";
const METER_CODE: &str = "code";

/// The 409 of a unique value another entity holds, as the DynamoDB adapter words it.
fn taken(field: &'static str, holder: &str) -> Error {
    let (code, what) = match field {
        EXTERNAL_ID => ("external_customer_id_taken", "externalCustomerId"),
        PROVIDER_CUSTOMER => ("payment_provider_id_taken", "payment provider customer"),
        _ => ("meter_code_taken", "meter code"),
    };
    Error::conflict(code, format!("{holder} already has this {what}"))
        .at(field)
        .with_existing_id(holder)
}

fn claims_of(customer: &Customer) -> Vec<(&'static str, String)> {
    let mut claims = Vec::new();
    if let Some(x) = &customer.external_customer_id {
        claims.push((EXTERNAL_ID, x.as_str().to_owned()));
    }
    if let Some(link) = &customer.payment_provider {
        claims.push((PROVIDER_CUSTOMER, link.customer_id.as_str().to_owned()));
    }
    claims
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn tables(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From the next write on, every write fails once `n` more have succeeded: the process
    /// "dies" there. `None` heals the store.
    pub fn crash_after_writes(&self, n: Option<usize>) {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        writes.crash_after = n.map(|n| writes.done + n);
        writes.refused = false;
    }

    /// Whether a write has been refused since the crash point was set: the process has died,
    /// and the fakes of its other side effects ([`super::FakeGateway::dies_with`],
    /// [`super::RecordingMailer::dies_with`]) stop with it.
    pub fn crashed(&self) -> bool {
        self.writes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .refused
    }

    /// Writes that succeeded so far.
    pub fn writes(&self) -> usize {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).done
    }

    /// Counts one write, or refuses it past the crash point (nothing is written then).
    fn write(&self) -> Result<()> {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if writes.crash_after.is_some_and(|limit| writes.done >= limit) {
            writes.refused = true;
            return Err(Error::unavailable("injected crash: the process died here"));
        }
        writes.done += 1;
        Ok(())
    }

    /// An invoice's state as the ledger reads it: usage merged in.
    pub fn invoice_state_now(&self, id: &InvoiceId) -> Option<InvoiceState> {
        self.tables().state(id).ok().flatten()
    }

    /// Every event record, in no particular order.
    pub fn records(&self) -> Vec<EventRecord> {
        self.tables().records.values().cloned().collect()
    }

    /// Forgets every event record (between benchmark iterations, so memory stays flat and no
    /// key repeats); invoices keep their aggregates and versions.
    pub fn clear_records(&self) {
        self.tables().records.clear();
    }

    /// Every invoice with its usage, in period order.
    pub fn invoices_now(&self) -> Vec<Invoice> {
        let t = self.tables();
        let mut invoices: Vec<Invoice> = t
            .invoices
            .keys()
            .filter_map(|id| t.state(id).ok().flatten())
            .map(|s| s.invoice)
            .collect();
        invoices.sort_by_key(position);
        invoices
    }

    /// Every lane share of an invoice, as stored.
    pub fn lanes_of(&self, invoice: &InvoiceId) -> Vec<UsageLane> {
        self.tables().lanes_of(invoice)
    }

    /// Mail queued and not sent yet.
    pub fn outbox_now(&self) -> Vec<MailTask> {
        self.tables().outbox.values().cloned().collect()
    }
}

impl Tables {
    /// Writes a change's webhook events as one outbox entry (with the change, as a
    /// transaction would).
    fn add_events(&mut self, events: &[OutgoingEvent]) {
        if let Some(entry) = OutboxEntry::for_events(events) {
            self.webhook_outbox.insert(entry.key.clone(), entry);
        }
    }

    fn lanes_of(&self, invoice: &InvoiceId) -> Vec<UsageLane> {
        self.lanes
            .range(lane_range(invoice))
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// An invoice with its usage merged in (what the DynamoDB adapter reads in one query).
    fn state(&self, id: &InvoiceId) -> Result<Option<InvoiceState>> {
        let Some(stored) = self.invoices.get(id) else {
            return Ok(None);
        };
        let lanes = self.lanes_of(id);
        let (invoice, aggregates) = merge(stored.value.clone(), &lanes)?;
        Ok(Some(InvoiceState {
            invoice,
            aggregates,
            version: stored.version,
            lanes,
        }))
    }

    fn seal(&mut self, invoice: &InvoiceId) {
        for lane in Lane::all() {
            let k = LaneKey {
                invoice: invoice.clone(),
                lane,
            };
            let share = self
                .lanes
                .entry(k.clone())
                .or_insert_with(|| UsageLane::empty(k));
            share.sealed = true;
            share.version += 1;
        }
    }
}

fn lane_range(invoice: &InvoiceId) -> std::ops::RangeInclusive<LaneKey> {
    LaneKey {
        invoice: invoice.clone(),
        lane: Lane::new(0),
    }..=LaneKey {
        invoice: invoice.clone(),
        lane: Lane::new(crate::usage::LANES - 1),
    }
}

/// Invoices sort by period start, then id (what the DynamoDB indexes do).
fn position(invoice: &Invoice) -> String {
    format!("{}#{}", invoice.period.start, invoice.id)
}

/// A page of `items` sorted by `key`, after the cursor's key.
fn page_of<T>(mut items: Vec<T>, page: &PageRequest, key: impl Fn(&T) -> String + Copy) -> Page<T> {
    items.sort_by_key(key);
    if let Some(after) = &page.after {
        items.retain(|item| key(item).as_str() > after.sort_key());
    }
    items.truncate(page.limit + 1);
    Page::from_overfetch(items, page.limit, key)
}

#[async_trait]
impl CustomerStore for MemoryStore {
    async fn insert(&self, customer: &Customer, events: &[OutgoingEvent]) -> Result<()> {
        let mut t = self.tables();
        for claim in claims_of(customer) {
            if let Some(holder) = t.claims.get(&claim) {
                return Err(taken(claim.0, holder));
            }
        }
        if t.customers.contains_key(&customer.id) {
            return Err(Error::internal(format!(
                "customer id {} collided",
                customer.id
            )));
        }
        self.write()?;
        for claim in claims_of(customer) {
            t.claims.insert(claim, customer.id.to_string());
        }
        t.add_events(events);
        t.customers.insert(
            customer.id.clone(),
            Versioned {
                value: customer.clone(),
                version: 1,
            },
        );
        Ok(())
    }

    async fn get(&self, id: &CustomerId) -> Result<Option<Versioned<Customer>>> {
        Ok(self.tables().customers.get(id).cloned())
    }

    async fn get_by_external_id(
        &self,
        external_id: &ExternalCustomerId,
    ) -> Result<Option<Customer>> {
        let t = self.tables();
        Ok(t.claims
            .get(&(EXTERNAL_ID, external_id.as_str().to_owned()))
            .and_then(|holder| CustomerId::parse(holder).ok())
            .and_then(|id| t.customers.get(&id))
            .map(|v| v.value.clone()))
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Customer>> {
        let items = self
            .tables()
            .customers
            .values()
            .map(|v| v.value.clone())
            .collect();
        Ok(page_of(items, page, |c: &Customer| c.id.to_string()))
    }

    async fn update(
        &self,
        previous: &Versioned<Customer>,
        next: &Customer,
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut t = self.tables();
        let id = previous.value.id.to_string();
        if t.customers.get(&previous.value.id).map(|v| v.version) != Some(previous.version) {
            return Ok(Write::Conflict);
        }
        let old = claims_of(&previous.value);
        let new = claims_of(next);
        for claim in new.iter().filter(|c| !old.contains(c)) {
            if let Some(holder) = t.claims.get(claim) {
                return Err(taken(claim.0, holder));
            }
        }
        self.write()?;
        for claim in old.iter().filter(|c| !new.contains(c)) {
            t.claims.remove(claim);
        }
        for claim in new.into_iter().filter(|c| !old.contains(c)) {
            t.claims.insert(claim, id.clone());
        }
        t.add_events(events);
        t.customers.insert(
            next.id.clone(),
            Versioned {
                value: next.clone(),
                version: previous.version + 1,
            },
        );
        Ok(Write::Done)
    }

    async fn get_by_provider_id(
        &self,
        id: &ProviderCustomerId,
    ) -> Result<Option<Versioned<Customer>>> {
        let t = self.tables();
        Ok(t.claims
            .get(&(PROVIDER_CUSTOMER, id.as_str().to_owned()))
            .and_then(|holder| CustomerId::parse(holder).ok())
            .and_then(|id| t.customers.get(&id))
            .cloned())
    }
}

#[async_trait]
impl ApiKeyStore for MemoryStore {
    async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()> {
        let mut t = self.tables();
        let lookup = digest.lookup();
        if t.secrets.contains_key(&lookup) {
            return Err(Error::conflict(
                "digest_exists",
                "a key with this secret already exists",
            ));
        }
        self.write()?;
        t.secrets.insert(
            lookup.clone(),
            StoredSecret {
                key_id: key.id.clone(),
                digest: digest.clone(),
                scopes: key.scopes.clone(),
            },
        );
        t.api_keys.insert(key.id.clone(), (key.clone(), lookup));
        Ok(())
    }

    async fn find_secret(&self, lookup: &str) -> Result<Option<StoredSecret>> {
        Ok(self.tables().secrets.get(lookup).cloned())
    }

    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
        Ok(self.tables().api_keys.get(id).map(|(k, _)| k.clone()))
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        let items = self
            .tables()
            .api_keys
            .values()
            .map(|(k, _)| k.clone())
            .collect();
        Ok(page_of(items, page, |k: &ApiKey| k.id.to_string()))
    }

    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let mut t = self.tables();
        let Some((key, lookup)) = t.api_keys.get(id).cloned() else {
            return Ok(None);
        };
        self.write()?;
        let mut key = key;
        key.revoked_at = key.revoked_at.or(Some(at));
        t.secrets.remove(&lookup);
        t.api_keys.insert(id.clone(), (key.clone(), lookup));
        Ok(Some(key))
    }
}

#[async_trait]
impl CatalogStore for MemoryStore {
    async fn insert_meter(&self, meter: &Meter) -> Result<()> {
        let mut t = self.tables();
        let claim = (METER_CODE, meter.code.as_str().to_owned());
        if let Some(holder) = t.claims.get(&claim) {
            return Err(taken(METER_CODE, holder));
        }
        self.write()?;
        t.claims.insert(claim, meter.id.to_string());
        t.meters.insert(meter.id.clone(), meter.clone());
        Ok(())
    }

    async fn get_meter(&self, id: &MeterId) -> Result<Option<Meter>> {
        Ok(self.tables().meters.get(id).cloned())
    }

    async fn get_meter_by_code(&self, code: &MeterCode) -> Result<Option<Meter>> {
        let t = self.tables();
        Ok(t.claims
            .get(&(METER_CODE, code.as_str().to_owned()))
            .and_then(|holder| MeterId::parse(holder).ok())
            .and_then(|id| t.meters.get(&id))
            .cloned())
    }

    async fn list_meters(&self, page: &PageRequest) -> Result<Page<Meter>> {
        let items = self.tables().meters.values().cloned().collect();
        Ok(page_of(items, page, |m: &Meter| m.id.to_string()))
    }

    async fn put_meter(&self, meter: &Meter) -> Result<()> {
        let mut t = self.tables();
        if !t.meters.contains_key(&meter.id) {
            return Err(Error::not_found("meter", meter.id.as_str()));
        }
        self.write()?;
        t.meters.insert(meter.id.clone(), meter.clone());
        Ok(())
    }

    async fn insert_plan(&self, plan: &Plan) -> Result<()> {
        let mut t = self.tables();
        if t.plans.contains_key(&plan.id) {
            return Err(Error::internal(format!("plan id {} collided", plan.id)));
        }
        self.write()?;
        t.plans.insert(plan.id.clone(), plan.clone());
        Ok(())
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>> {
        Ok(self.tables().plans.get(id).cloned())
    }

    async fn list_plans(&self, page: &PageRequest) -> Result<Page<Plan>> {
        let items = self.tables().plans.values().cloned().collect();
        Ok(page_of(items, page, |p: &Plan| p.id.to_string()))
    }
}

fn index_version(t: &Tables, customer: &CustomerId) -> u64 {
    t.indexes.get(customer).map(|v| v.version).unwrap_or(0)
}

fn fresh(invoice: &Invoice) -> Versioned<Invoice> {
    Versioned {
        value: invoice.clone(),
        version: 0,
    }
}

#[async_trait]
impl ContractStore for MemoryStore {
    async fn customer_contracts(
        &self,
        customer: &CustomerId,
    ) -> Result<Versioned<Vec<ContractSummary>>> {
        Ok(self
            .tables()
            .indexes
            .get(customer)
            .cloned()
            .unwrap_or(Versioned {
                value: Vec::new(),
                version: 0,
            }))
    }

    async fn insert_contract(
        &self,
        new: &NewContract,
        index: &Versioned<Vec<ContractSummary>>,
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut t = self.tables();
        let customer = new.contract.customer_id.clone();
        if index_version(&t, &customer) != index.version {
            return Ok(Write::Conflict);
        }
        self.write()?;
        t.add_events(events);
        let mut summaries = index.value.clone();
        summaries.push(new.contract.summary());
        t.indexes.insert(
            customer,
            Versioned {
                value: summaries,
                version: index.version + 1,
            },
        );
        t.contracts.insert(
            new.contract.id.clone(),
            Versioned {
                value: new.contract.clone(),
                version: 1,
            },
        );
        for invoice in &new.invoices {
            t.invoices.insert(invoice.id.clone(), fresh(invoice));
        }
        Ok(Write::Done)
    }

    async fn get_contract(&self, id: &ContractId) -> Result<Option<Versioned<Contract>>> {
        Ok(self.tables().contracts.get(id).cloned())
    }

    async fn list_contracts(
        &self,
        customer: Option<&CustomerId>,
        page: &PageRequest,
    ) -> Result<Page<Contract>> {
        let items = self
            .tables()
            .contracts
            .values()
            .map(|v| v.value.clone())
            .filter(|c| customer.is_none_or(|id| &c.customer_id == id))
            .collect();
        Ok(page_of(items, page, |c: &Contract| c.id.to_string()))
    }

    async fn update_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut t = self.tables();
        if t.contracts.get(&next.id).map(|v| v.version) != Some(previous.version) {
            return Ok(Write::Conflict);
        }
        self.write()?;
        t.add_events(events);
        t.contracts.insert(
            next.id.clone(),
            Versioned {
                value: next.clone(),
                version: previous.version + 1,
            },
        );
        Ok(Write::Done)
    }

    async fn cancel_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        index: &Versioned<Vec<ContractSummary>>,
        void: &[InvoiceId],
        seal: &[InvoiceId],
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut t = self.tables();
        if t.contracts.get(&next.id).map(|v| v.version) != Some(previous.version)
            || index_version(&t, &next.customer_id) != index.version
        {
            return Ok(Write::Conflict);
        }
        let open = |id: &InvoiceId| t.invoices.get(id).is_some_and(|s| s.value.status.is_open());
        if !void.iter().all(open) {
            return Err(Error::conflict(
                "invoice_not_open",
                "an invoice after the cancellation date is no longer open, so it cannot be voided",
            ));
        }
        self.write()?;
        t.contracts.insert(
            next.id.clone(),
            Versioned {
                value: next.clone(),
                version: previous.version + 1,
            },
        );
        t.indexes.insert(
            next.customer_id.clone(),
            Versioned {
                value: index.value.clone(),
                version: index.version + 1,
            },
        );
        for id in void {
            if let Some(stored) = t.invoices.get_mut(id) {
                stored.value.status = InvoiceStatus::Void;
                stored.value.updated_at = next.updated_at;
                stored.version += 1;
            }
        }
        for id in seal {
            t.seal(id);
        }
        t.add_events(events);
        Ok(Write::Done)
    }
}

#[async_trait]
impl InvoiceStore for MemoryStore {
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>> {
        Ok(self.tables().state(id)?.map(|s| s.invoice))
    }

    async fn list_invoices(
        &self,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>> {
        let t = self.tables();
        let mut items = Vec::new();
        for stored in t.invoices.values().map(|s| &s.value) {
            let wanted = filter
                .customer
                .as_ref()
                .is_none_or(|c| &stored.customer_id == c)
                && filter
                    .contract
                    .as_ref()
                    .is_none_or(|c| &stored.contract_id == c)
                && filter.status.is_none_or(|s| stored.status == s);
            if wanted && let Some(state) = t.state(&stored.id)? {
                items.push(state.invoice);
            }
        }
        Ok(page_of(items, page, position))
    }
}

/// The agenda an invoice is on, with its sort key (what the DynamoDB adapter keeps in `gsi4`).
fn agenda_of(invoice: &Invoice) -> Option<(AgendaKind, String)> {
    if invoice.status.is_open() {
        return Some((
            AgendaKind::Close,
            format!("{}#{}", invoice.closes_on, invoice.id),
        ));
    }
    match (invoice.status, invoice.payment.next_attempt_on) {
        (InvoiceStatus::Sent, Some(date)) if invoice.auto_pay => {
            Some((AgendaKind::Collect, format!("{date}#{}", invoice.id)))
        }
        (InvoiceStatus::Sent, _) => Some((
            AgendaKind::Due,
            format!("{}#{}", invoice.due_date, invoice.id),
        )),
        _ => None,
    }
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn invoice_state(&self, id: &InvoiceId) -> Result<Option<InvoiceState>> {
        self.tables().state(id)
    }

    async fn agenda(
        &self,
        kind: AgendaKind,
        up_to: NaiveDate,
        page: &PageRequest,
    ) -> Result<Page<InvoiceId>> {
        let bound = format!("{up_to}#\u{10FFFF}");
        let mut due: Vec<(String, InvoiceId)> = self
            .tables()
            .invoices
            .values()
            .filter_map(|s| agenda_of(&s.value).map(|agenda| (agenda, s.value.id.clone())))
            .filter(|((k, sort), _)| *k == kind && *sort <= bound)
            .map(|((_, sort), id)| (sort, id))
            .collect();
        due.sort();
        if let Some(after) = &page.after {
            due.retain(|(sort, _)| sort.as_str() > after.sort_key());
        }
        let has_more = due.len() > page.limit;
        due.truncate(page.limit);
        let next = has_more
            .then(|| due.last().map(|(sort, _)| Cursor::after(sort.clone())))
            .flatten();
        Ok(Page {
            items: due.into_iter().map(|(_, id)| id).collect(),
            next,
        })
    }

    async fn last_invoice_number(&self) -> Result<u64> {
        Ok(self.tables().counter)
    }

    async fn transition(
        &self,
        previous: &InvoiceState,
        next: &Invoice,
        number: Option<u64>,
        mail: &[MailTask],
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut t = self.tables();
        let current = t.invoices.get(&next.id);
        let unmoved = current.is_some_and(|s| {
            s.version == previous.version && s.value.status == previous.invoice.status
        });
        let number_free = number.is_none_or(|n| t.counter + 1 == n);
        let closing = previous.invoice.status.is_open() && !next.status.is_open();
        let lanes_unmoved = !closing || t.lanes_of(&next.id) == previous.lanes;
        if !unmoved || !number_free || !lanes_unmoved {
            return Ok(Write::Conflict);
        }
        self.write()?;
        if closing {
            t.seal(&next.id);
        }
        if let Some(n) = number {
            t.counter = n;
        }
        t.add_events(events);
        for task in mail {
            t.outbox.insert(
                crate::idempotency::mail(&task.invoice_id, task.kind),
                task.clone(),
            );
        }
        if let Some(change) = crate::totals::change(&previous.invoice, next) {
            let customer = t.customer_totals.entry(change.customer.clone());
            customer.or_default().apply(&change);
            t.month_totals
                .entry(change.month)
                .or_default()
                .apply(&change);
        }
        if let Some(stored) = t.invoices.get_mut(&next.id) {
            stored.value = next.clone();
            stored.version = previous.version + 1;
        }
        Ok(Write::Done)
    }

    async fn pending_mail(&self, limit: usize) -> Result<Vec<MailTask>> {
        Ok(self.tables().outbox.values().take(limit).cloned().collect())
    }

    async fn mail_sent(&self, task: &MailTask) -> Result<()> {
        self.write()?;
        self.tables()
            .outbox
            .remove(&crate::idempotency::mail(&task.invoice_id, task.kind));
        Ok(())
    }

    async fn claim_provider_event(&self, id: &str, _at: DateTime<Utc>) -> Result<bool> {
        let mut t = self.tables();
        if t.provider_events.contains(id) {
            return Ok(false);
        }
        self.write()?;
        Ok(t.provider_events.insert(id.to_owned()))
    }

    async fn release_provider_event(&self, id: &str) -> Result<()> {
        self.write()?;
        self.tables().provider_events.remove(id);
        Ok(())
    }

    async fn customer_totals(
        &self,
        customers: &[CustomerId],
    ) -> Result<HashMap<CustomerId, Totals>> {
        let t = self.tables();
        Ok(customers
            .iter()
            .filter_map(|c| t.customer_totals.get(c).map(|v| (c.clone(), v.clone())))
            .collect())
    }

    async fn month_totals(&self, months: &[Month]) -> Result<HashMap<Month, Totals>> {
        let t = self.tables();
        Ok(months
            .iter()
            .filter_map(|m| t.month_totals.get(m).map(|v| (*m, v.clone())))
            .collect())
    }
}

#[async_trait]
impl UsageStore for MemoryStore {
    async fn invoice_statuses(
        &self,
        ids: &[InvoiceId],
    ) -> Result<HashMap<InvoiceId, InvoiceStatus>> {
        let t = self.tables();
        Ok(ids
            .iter()
            .filter_map(|id| t.invoices.get(id).map(|s| (id.clone(), s.value.status)))
            .collect())
    }

    async fn ensure_invoice(&self, invoice: &Invoice, events: &[OutgoingEvent]) -> Result<()> {
        let mut t = self.tables();
        if t.invoices.contains_key(&invoice.id) {
            return Ok(());
        }
        self.write()?;
        t.invoices.insert(invoice.id.clone(), fresh(invoice));
        t.add_events(events);
        Ok(())
    }

    async fn mark_in_progress(&self, ids: &[InvoiceId]) -> Result<()> {
        for id in ids {
            let mut t = self.tables();
            if t.invoices
                .get(id)
                .is_some_and(|s| s.value.status == InvoiceStatus::Drafted)
            {
                self.write()?;
                if let Some(stored) = t.invoices.get_mut(id) {
                    stored.value.status = InvoiceStatus::InProgress;
                }
            }
        }
        Ok(())
    }

    async fn put_records(&self, records: &[EventRecord]) -> Vec<Result<RecordPut>> {
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let key = record.key();
            let mut t = self.tables();
            if let Some(stored) = t.records.get(&key) {
                outcomes.push(Ok(RecordPut::Exists(Box::new(stored.clone()))));
                continue;
            }
            outcomes.push(self.write().map(|()| {
                t.records.insert(key, record.clone());
                RecordPut::Written
            }));
        }
        outcomes
    }

    async fn relabel_record(&self, record: &EventRecord) -> Result<()> {
        let mut t = self.tables();
        self.write()?;
        t.records.insert(record.key(), record.clone());
        Ok(())
    }

    async fn claim_values(&self, claims: &[ValueClaim]) -> Result<Vec<MessageNonce>> {
        let mut holders = Vec::with_capacity(claims.len());
        for claim in claims {
            let key = (
                claim.invoice.clone(),
                claim.line.clone(),
                claim.value.clone(),
            );
            let mut t = self.tables();
            if let Some(holder) = t.values.get(&key) {
                holders.push(holder.clone());
                continue;
            }
            self.write()?;
            t.values.insert(key, claim.nonce.clone());
            holders.push(claim.nonce.clone());
        }
        Ok(holders)
    }

    async fn lanes(&self, keys: &[LaneKey]) -> Result<HashMap<LaneKey, UsageLane>> {
        let t = self.tables();
        Ok(keys
            .iter()
            .filter_map(|k| t.lanes.get(k).map(|l| (k.clone(), l.clone())))
            .collect())
    }

    async fn write_lanes(&self, writes: &[(UsageLane, UsageLane)]) -> Result<Vec<LaneWrite>> {
        let mut outcomes = Vec::with_capacity(writes.len());
        for (previous, next) in writes {
            let mut t = self.tables();
            let stored = t.lanes.get(&next.key);
            if stored.is_some_and(|s| s.sealed) {
                outcomes.push(LaneWrite::Sealed);
                continue;
            }
            if stored.map(|s| s.version).unwrap_or(0) != previous.version {
                outcomes.push(LaneWrite::Conflict);
                continue;
            }
            self.write()?;
            t.lanes.insert(next.key.clone(), next.clone());
            outcomes.push(LaneWrite::Done);
        }
        Ok(outcomes)
    }

    async fn tallies(&self, keys: &[TallyKey]) -> Result<HashMap<TallyKey, DayTally>> {
        let t = self.tables();
        Ok(keys
            .iter()
            .filter_map(|k| t.tallies.get(k).map(|v| (*k, v.clone())))
            .collect())
    }

    async fn write_tallies(&self, writes: &[(DayTally, DayTally)]) -> Result<Vec<LaneWrite>> {
        let mut outcomes = Vec::with_capacity(writes.len());
        for (previous, next) in writes {
            let mut t = self.tables();
            if t.tallies.get(&next.key).map_or(0, |s| s.version) != previous.version {
                outcomes.push(LaneWrite::Conflict);
                continue;
            }
            self.write()?;
            t.tallies.insert(next.key, next.clone());
            outcomes.push(LaneWrite::Done);
        }
        Ok(outcomes)
    }

    async fn day_count(&self, day: NaiveDate) -> Result<DayCount> {
        let t = self.tables();
        let mut count = DayCount::default();
        for lane in Lane::all() {
            if let Some(tally) = t.tallies.get(&TallyKey { day, lane }) {
                count.add(tally.count);
            }
        }
        Ok(count)
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>> {
        if filter.customer.is_none() && filter.status.is_none() {
            return Err(Error::invalid(
                "missing_filter",
                "list events of one customer (customerId or externalCustomerId) or of one status",
            ));
        }
        let owned_by = |r: &EventRecord| match &filter.customer {
            None => true,
            Some(EventOwner::Customer(id)) => r.customer_id.as_ref() == Some(id),
            Some(EventOwner::Unknown(reference)) => {
                r.customer_id.is_none() && &r.event.customer == reference
            }
        };
        let items = self
            .tables()
            .records
            .values()
            .filter(|r| owned_by(r))
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .cloned()
            .collect();
        Ok(page_of(items, page, |r: &EventRecord| {
            r.event.idempotency_key.as_str().to_owned()
        }))
    }
}
