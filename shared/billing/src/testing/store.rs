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
use crate::invoice::{Invoice, InvoiceStatus};
use crate::meter::{Meter, MeterCode};
use crate::pagination::{Cursor, Page, PageRequest};
use crate::plan::Plan;
use crate::ports::{
    AgendaKind, ApiKeyStore, CatalogStore, CommitOutcome, ContractStore, CustomerStore,
    EventFilter, EventOwner, InvoiceFilter, InvoiceState, InvoiceStore, InvoiceUsage, LedgerStore,
    MailTask, StoredSecret, UsageCommit, UsageStore, Versioned,
};
use crate::totals::{Month, Totals};
use crate::usage::EventRecord;

/// A unique value's holder, by what is unique and the value.
type Claims = HashMap<(&'static str, String), String>;

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
    invoices: HashMap<InvoiceId, InvoiceState>,
    records: HashMap<String, EventRecord>,
    counter: u64,
    outbox: BTreeMap<String, MailTask>,
    provider_events: HashSet<String>,
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
    }

    /// Writes that succeeded so far.
    pub fn writes(&self) -> usize {
        self.writes.lock().unwrap_or_else(|p| p.into_inner()).done
    }

    /// Counts one write, or refuses it past the crash point (nothing is written then).
    fn write(&self) -> Result<()> {
        let mut writes = self.writes.lock().unwrap_or_else(|p| p.into_inner());
        if writes.crash_after.is_some_and(|limit| writes.done >= limit) {
            return Err(Error::unavailable("injected crash: the process died here"));
        }
        writes.done += 1;
        Ok(())
    }

    /// An invoice's stored state.
    pub fn invoice_state_now(&self, id: &InvoiceId) -> Option<InvoiceState> {
        self.tables().invoices.get(id).cloned()
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

    /// Every invoice, in period order.
    pub fn invoices_now(&self) -> Vec<Invoice> {
        let mut invoices: Vec<Invoice> = self
            .tables()
            .invoices
            .values()
            .map(|s| s.invoice.clone())
            .collect();
        invoices.sort_by_key(position);
        invoices
    }

    /// Mail queued and not sent yet.
    pub fn outbox_now(&self) -> Vec<MailTask> {
        self.tables().outbox.values().cloned().collect()
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
    async fn insert(&self, customer: &Customer) -> Result<()> {
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

    async fn update(&self, previous: &Versioned<Customer>, next: &Customer) -> Result<Write> {
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

fn fresh_state(invoice: &Invoice) -> InvoiceState {
    InvoiceState {
        invoice: invoice.clone(),
        aggregates: BTreeMap::new(),
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
    ) -> Result<Write> {
        let mut t = self.tables();
        let customer = new.contract.customer_id.clone();
        if index_version(&t, &customer) != index.version {
            return Ok(Write::Conflict);
        }
        self.write()?;
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
            t.invoices.insert(invoice.id.clone(), fresh_state(invoice));
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
    ) -> Result<Write> {
        let mut t = self.tables();
        if t.contracts.get(&next.id).map(|v| v.version) != Some(previous.version) {
            return Ok(Write::Conflict);
        }
        self.write()?;
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
    ) -> Result<Write> {
        let mut t = self.tables();
        if t.contracts.get(&next.id).map(|v| v.version) != Some(previous.version)
            || index_version(&t, &next.customer_id) != index.version
        {
            return Ok(Write::Conflict);
        }
        let open = |id: &InvoiceId| {
            t.invoices
                .get(id)
                .is_some_and(|s| s.invoice.status.is_open())
        };
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
            if let Some(state) = t.invoices.get_mut(id) {
                state.invoice.status = InvoiceStatus::Void;
                state.invoice.updated_at = next.updated_at;
            }
        }
        Ok(Write::Done)
    }
}

#[async_trait]
impl InvoiceStore for MemoryStore {
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>> {
        Ok(self.tables().invoices.get(id).map(|s| s.invoice.clone()))
    }

    async fn list_invoices(
        &self,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>> {
        let items = self
            .tables()
            .invoices
            .values()
            .map(|s| &s.invoice)
            .filter(|i| filter.customer.as_ref().is_none_or(|c| &i.customer_id == c))
            .filter(|i| filter.contract.as_ref().is_none_or(|c| &i.contract_id == c))
            .filter(|i| filter.status.is_none_or(|s| i.status == s))
            .cloned()
            .collect();
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
        Ok(self.tables().invoices.get(id).cloned())
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
            .filter_map(|s| agenda_of(&s.invoice).map(|agenda| (agenda, s.invoice.id.clone())))
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
    ) -> Result<Write> {
        let mut t = self.tables();
        let current = t.invoices.get(&next.id);
        let unmoved = current.is_some_and(|s| {
            s.version == previous.version && s.invoice.status == previous.invoice.status
        });
        let number_free = number.is_none_or(|n| t.counter + 1 == n);
        if !unmoved || !number_free {
            return Ok(Write::Conflict);
        }
        self.write()?;
        if let Some(n) = number {
            t.counter = n;
        }
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
        if let Some(state) = t.invoices.get_mut(&next.id) {
            state.invoice = next.clone();
            state.version = previous.version + 1;
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
    async fn invoice_states(&self, ids: &[InvoiceId]) -> Result<HashMap<InvoiceId, InvoiceUsage>> {
        let t = self.tables();
        Ok(ids
            .iter()
            .filter_map(|id| t.invoices.get(id).map(|s| (id.clone(), s.into())))
            .collect())
    }

    async fn ensure_invoice(&self, invoice: &Invoice) -> Result<()> {
        let mut t = self.tables();
        if t.invoices.contains_key(&invoice.id) {
            return Ok(());
        }
        self.write()?;
        t.invoices.insert(invoice.id.clone(), fresh_state(invoice));
        Ok(())
    }

    async fn commit(&self, commit: &UsageCommit) -> Result<CommitOutcome> {
        let mut t = self.tables();
        // The same conditions as the DynamoDB transaction, checked before anything is written.
        let keys: Vec<String> = commit.records.iter().map(EventRecord::key).collect();
        let duplicates: Vec<usize> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| t.records.contains_key(*k))
            .map(|(i, _)| i)
            .collect();
        if !duplicates.is_empty() {
            return Ok(CommitOutcome::Duplicates(duplicates));
        }
        for write in &commit.invoices {
            match t.invoices.get(&write.invoice_id) {
                Some(s) if s.version == write.expected_version && s.invoice.status.is_open() => {}
                _ => return Ok(CommitOutcome::InvoiceMoved),
            }
        }
        self.write()?;
        for write in &commit.invoices {
            let Some(state) = t.invoices.get_mut(&write.invoice_id) else {
                continue;
            };
            state.version = write.expected_version + 1;
            state.invoice.status = InvoiceStatus::InProgress;
            state.invoice.updated_at = write.updated_at;
            state.invoice.lines.extend(write.new_lines.iter().cloned());
            for (line, aggregate) in &write.aggregates {
                state.aggregates.insert(line.clone(), aggregate.clone());
                if let Some(l) = state.invoice.lines.iter_mut().find(|l| &l.id == line) {
                    l.quantity = aggregate.quantity();
                }
            }
        }
        for (key, record) in keys.into_iter().zip(&commit.records) {
            t.records.insert(key, record.clone());
        }
        Ok(CommitOutcome::Committed)
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
        let by_customer = filter.customer.is_some();
        Ok(page_of(items, page, move |r: &EventRecord| {
            let at = if by_customer {
                r.event.timestamp
            } else {
                r.processed_at
            };
            format!(
                "{}#{}",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                r.key()
            )
        }))
    }
}
