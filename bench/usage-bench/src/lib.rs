//! Shared pieces of the usage benchmarks (`bench/usage.sh`): an in-memory store implementing
//! every storage port (for the network-free matcher benchmark), the benchmark catalog (a COUNT
//! and a SUM meter listening to one event name, a plan with a flat fee and both usage prices,
//! one contract per customer), event generators, and DynamoDB item sizing.
//!
//! Nothing here is deployed; nothing in `shared/` depends on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use billing::aggregation::UsageValue;
use billing::api_key::{ApiKey, SecretDigest};
use billing::contract::{Contract, ContractSummary, CreateContract, NewContract};
use billing::customer::{CreateCustomer, Customer, ExternalCustomerId};
use billing::ids::{ApiKeyId, ContractId, CustomerId, InvoiceId, MeterId, PlanId};
use billing::invoice::{Invoice, InvoiceStatus};
use billing::matcher::event_record_key;
use billing::meter::{CreateMeter, EventName, Meter, MeterCode};
use billing::pagination::{Page, PageRequest};
use billing::plan::{CreatePlan, Plan};
use billing::service::Clock;
use billing::store::{
    ApiKeyStore, CatalogStore, CommitOutcome, ContractStore, CustomerStore, EventFilter,
    InvoiceFilter, InvoiceState, InvoiceStore, InvoiceUsage, StoredSecret, UsageCommit, UsageStore,
    Versioned,
};
use billing::usage::{CustomerRef, EventRecord, IdempotencyKey, UsageEvent};
use billing::{Billing, Error, Result};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;

// --- In-memory store ------------------------------------------------------------------------

#[derive(Default)]
struct Inner {
    customers: HashMap<CustomerId, Versioned<Customer>>,
    external: HashMap<ExternalCustomerId, CustomerId>,
    meters: Vec<Meter>,
    plans: HashMap<PlanId, Plan>,
    contracts: HashMap<ContractId, Versioned<Contract>>,
    indexes: HashMap<CustomerId, Versioned<Vec<ContractSummary>>>,
    invoices: HashMap<InvoiceId, InvoiceState>,
    records: HashMap<String, EventRecord>,
}

/// Every storage port over HashMaps behind one mutex. What the matcher and the catalog set-up
/// call is real (with the DynamoDB adapter's conditions: record keys must not exist, invoice
/// writes need the read version and an open invoice); the rest answers `internal("unused")`.
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

fn unused<T>() -> Result<T> {
    Err(Error::internal("unused by the benchmark"))
}

impl MemStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Forgets every event record (between benchmark iterations, so memory stays flat and no
    /// key repeats); invoices keep their aggregates and versions.
    pub fn clear_records(&self) {
        self.lock().records.clear();
    }

    /// How many event records are stored.
    pub fn record_count(&self) -> usize {
        self.lock().records.len()
    }

    /// An invoice's state.
    pub fn invoice_state(&self, id: &InvoiceId) -> Option<InvoiceState> {
        self.lock().invoices.get(id).cloned()
    }
}

#[async_trait]
impl CustomerStore for MemStore {
    async fn get_by_provider_id(
        &self,
        _: &billing::customer::ProviderCustomerId,
    ) -> Result<Option<Versioned<Customer>>> {
        unused()
    }

    async fn insert(&self, customer: &Customer) -> Result<()> {
        let mut inner = self.lock();
        if let Some(x) = &customer.external_customer_id {
            inner.external.insert(x.clone(), customer.id.clone());
        }
        inner.customers.insert(
            customer.id.clone(),
            Versioned {
                value: customer.clone(),
                version: 1,
            },
        );
        Ok(())
    }

    async fn get(&self, id: &CustomerId) -> Result<Option<Versioned<Customer>>> {
        Ok(self.lock().customers.get(id).cloned())
    }

    async fn get_by_external_id(
        &self,
        external_id: &ExternalCustomerId,
    ) -> Result<Option<Customer>> {
        let inner = self.lock();
        Ok(inner
            .external
            .get(external_id)
            .and_then(|id| inner.customers.get(id))
            .map(|v| v.value.clone()))
    }

    async fn list(&self, _page: &PageRequest) -> Result<Page<Customer>> {
        unused()
    }

    async fn update(&self, _previous: &Versioned<Customer>, _next: &Customer) -> Result<()> {
        unused()
    }
}

#[async_trait]
impl ApiKeyStore for MemStore {
    async fn insert(&self, _key: &ApiKey, _digest: &SecretDigest) -> Result<()> {
        unused()
    }

    async fn find_secret(&self, _lookup: &str) -> Result<Option<StoredSecret>> {
        unused()
    }

    async fn get(&self, _id: &ApiKeyId) -> Result<Option<ApiKey>> {
        unused()
    }

    async fn revoke(&self, _id: &ApiKeyId, _at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        unused()
    }
}

#[async_trait]
impl CatalogStore for MemStore {
    async fn insert_meter(&self, meter: &Meter) -> Result<()> {
        self.lock().meters.push(meter.clone());
        Ok(())
    }

    async fn get_meter(&self, id: &MeterId) -> Result<Option<Meter>> {
        Ok(self.lock().meters.iter().find(|m| &m.id == id).cloned())
    }

    async fn get_meter_by_code(&self, code: &MeterCode) -> Result<Option<Meter>> {
        Ok(self.lock().meters.iter().find(|m| &m.code == code).cloned())
    }

    async fn list_meters(&self, _page: &PageRequest) -> Result<Page<Meter>> {
        Ok(Page {
            items: self.lock().meters.clone(),
            next: None,
        })
    }

    async fn put_meter(&self, _meter: &Meter) -> Result<()> {
        unused()
    }

    async fn insert_plan(&self, plan: &Plan) -> Result<()> {
        self.lock().plans.insert(plan.id.clone(), plan.clone());
        Ok(())
    }

    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>> {
        Ok(self.lock().plans.get(id).cloned())
    }

    async fn list_plans(&self, _page: &PageRequest) -> Result<Page<Plan>> {
        unused()
    }
}

#[async_trait]
impl ContractStore for MemStore {
    async fn update_contract(&self, _: &Versioned<Contract>, _: &Contract) -> Result<()> {
        unused()
    }

    async fn customer_contracts(
        &self,
        customer: &CustomerId,
    ) -> Result<Versioned<Vec<ContractSummary>>> {
        Ok(self
            .lock()
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
    ) -> Result<()> {
        let mut inner = self.lock();
        let customer = new.contract.customer_id.clone();
        let current = inner.indexes.get(&customer).map(|v| v.version).unwrap_or(0);
        if current != index.version {
            return Err(Error::conflict("version_conflict", "index moved"));
        }
        let mut summaries = index.value.clone();
        summaries.push(new.contract.summary());
        inner.indexes.insert(
            customer,
            Versioned {
                value: summaries,
                version: current + 1,
            },
        );
        inner.contracts.insert(
            new.contract.id.clone(),
            Versioned {
                value: new.contract.clone(),
                version: 1,
            },
        );
        for invoice in &new.invoices {
            inner.invoices.insert(
                invoice.id.clone(),
                InvoiceState {
                    invoice: invoice.clone(),
                    aggregates: BTreeMap::new(),
                    version: 0,
                },
            );
        }
        Ok(())
    }

    async fn get_contract(&self, id: &ContractId) -> Result<Option<Versioned<Contract>>> {
        Ok(self.lock().contracts.get(id).cloned())
    }

    async fn list_contracts(
        &self,
        _customer: Option<&CustomerId>,
        _page: &PageRequest,
    ) -> Result<Page<Contract>> {
        unused()
    }

    async fn cancel_contract(
        &self,
        _previous: &Versioned<Contract>,
        _next: &Contract,
        _index: &Versioned<Vec<ContractSummary>>,
        _void: &[InvoiceId],
    ) -> Result<()> {
        unused()
    }
}

#[async_trait]
impl InvoiceStore for MemStore {
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>> {
        Ok(self.lock().invoices.get(id).map(|s| s.invoice.clone()))
    }

    async fn list_invoices(
        &self,
        _filter: &InvoiceFilter,
        _page: &PageRequest,
    ) -> Result<Page<Invoice>> {
        unused()
    }
}

#[async_trait]
impl UsageStore for MemStore {
    async fn invoice_states(&self, ids: &[InvoiceId]) -> Result<HashMap<InvoiceId, InvoiceUsage>> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .filter_map(|id| inner.invoices.get(id).map(|s| (id.clone(), s.into())))
            .collect())
    }

    async fn ensure_invoice(&self, invoice: &Invoice) -> Result<()> {
        self.lock()
            .invoices
            .entry(invoice.id.clone())
            .or_insert_with(|| InvoiceState {
                invoice: invoice.clone(),
                aggregates: BTreeMap::new(),
                version: 0,
            });
        Ok(())
    }

    async fn commit(&self, commit: &UsageCommit) -> Result<CommitOutcome> {
        let mut inner = self.lock();
        // The same conditions as the DynamoDB transaction, checked before anything is written.
        let keys: Vec<String> = commit.records.iter().map(event_record_key).collect();
        let duplicates: Vec<usize> = keys
            .iter()
            .enumerate()
            .filter(|(_, k)| inner.records.contains_key(*k))
            .map(|(i, _)| i)
            .collect();
        if !duplicates.is_empty() {
            return Ok(CommitOutcome::Duplicates(duplicates));
        }
        for write in &commit.invoices {
            match inner.invoices.get(&write.invoice_id) {
                Some(s) if s.version == write.expected_version && s.invoice.status.is_open() => {}
                _ => return Ok(CommitOutcome::InvoiceMoved),
            }
        }
        for write in &commit.invoices {
            let Some(state) = inner.invoices.get_mut(&write.invoice_id) else {
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
            inner.records.insert(key, record.clone());
        }
        Ok(CommitOutcome::Committed)
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        _page: &PageRequest,
    ) -> Result<Page<EventRecord>> {
        let inner = self.lock();
        let mut items: Vec<EventRecord> = inner
            .records
            .values()
            .filter(|r| {
                filter.customer.as_ref().is_none_or(|c| {
                    r.customer_id.as_ref().map(|id| id.as_str()) == Some(c.as_str())
                })
            })
            .filter(|r| filter.status.is_none_or(|s| r.status == s))
            .cloned()
            .collect();
        items.sort_by_key(|r| std::cmp::Reverse(r.event.timestamp));
        Ok(Page { items, next: None })
    }
}

// --- Clock ----------------------------------------------------------------------------------

/// A clock stopped at one instant (the matcher benchmark runs without wall-clock effects).
pub struct FixedClock(pub DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

// --- Catalog ---------------------------------------------------------------------------------

/// The benchmark catalog as created.
pub struct Catalog {
    /// The event name both meters listen to.
    pub event_name: String,
    /// The COUNT meter (one per event).
    pub count_meter: Meter,
    /// The SUM meter (adds property `tokens`).
    pub sum_meter: Meter,
    /// The plan: a flat monthly fee, a per-request price and a per-token price.
    pub plan: Plan,
    /// One customer per entry, each with one contract.
    pub customers: Vec<(CustomerId, Contract)>,
}

impl Catalog {
    /// The invoice a customer's usage on `date` lands on.
    pub fn invoice_for(&self, customer: usize, date: NaiveDate) -> Option<InvoiceId> {
        let contract = &self.customers[customer].1;
        let (_, period) = contract.schedule().period_containing(date)?;
        Some(Invoice::id_for(&contract.id, period.start))
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::internal(format!("bench request: {e}")))
}

/// The first day of `date`'s month.
pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// Creates the catalog through the real use cases (so items are exactly what production
/// stores): meters listening to `event_name`, the plan, then `customers` customers with a
/// monthly contract from `start`, `concurrency` at a time.
pub async fn create_catalog(
    billing: &Billing,
    event_name: &str,
    customers: usize,
    start: NaiveDate,
    concurrency: usize,
) -> Result<Catalog> {
    use futures::StreamExt;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase();
    let count_meter = billing
        .create_meter(decode::<CreateMeter>(serde_json::json!({
            "code": format!("BENCH_REQUESTS_{suffix}"),
            "eventName": event_name,
            "displayName": "API requests",
            "aggregationType": "COUNT",
        }))?)
        .await?;
    let sum_meter = billing
        .create_meter(decode::<CreateMeter>(serde_json::json!({
            "code": format!("BENCH_TOKENS_{suffix}"),
            "eventName": event_name,
            "displayName": "Tokens",
            "aggregationType": "SUM",
            "aggregationKey": "tokens",
        }))?)
        .await?;
    let plan = billing
        .create_plan(decode::<CreatePlan>(serde_json::json!({
            "name": "Bench plan",
            "currency": "USD",
            "prices": [
                {"model": "FLAT", "description": "Platform fee", "flatAmount": "49"},
                {"model": "USAGE", "description": "API requests", "meterId": count_meter.id.as_str(), "unitAmount": "0.001"},
                {"model": "USAGE", "description": "Tokens", "meterId": sum_meter.id.as_str(), "unitAmount": "0.00002"},
            ],
        }))?)
        .await?;
    let plan_id = plan.id.to_string();
    let made: Vec<Result<(usize, CustomerId, Contract)>> = futures::stream::iter(0..customers)
        .map(|i| {
            let plan_id = plan_id.clone();
            async move {
                let customer = billing
                    .create_customer(decode::<CreateCustomer>(serde_json::json!({
                        "name": format!("Bench customer {i}"),
                    }))?)
                    .await?;
                let contract = billing
                    .create_contract(decode::<CreateContract>(serde_json::json!({
                        "customerId": customer.id.as_str(),
                        "planId": plan_id,
                        "startDate": start.to_string(),
                    }))?)
                    .await?;
                Ok((i, customer.id, contract))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut made = made.into_iter().collect::<Result<Vec<_>>>()?;
    made.sort_by_key(|(i, _, _)| *i);
    Ok(Catalog {
        event_name: event_name.to_owned(),
        count_meter,
        sum_meter,
        plan,
        customers: made.into_iter().map(|(_, c, k)| (c, k)).collect(),
    })
}

// --- Events ----------------------------------------------------------------------------------

/// Event `i` of a stream spread evenly (round robin) over the catalog's customers: the
/// benchmark event name, `tokens` between 1 and 1,000, and a key unique per `run` and `i`.
pub fn event(catalog: &Catalog, run: &str, i: usize, at: DateTime<Utc>) -> UsageEvent {
    let customer = &catalog.customers[i % catalog.customers.len()].0;
    event_for(customer, &catalog.event_name, run, i, at)
}

/// Event `i` of `run` for one customer (see [`event`]).
pub fn event_for(
    customer: &CustomerId,
    event_name: &str,
    run: &str,
    i: usize,
    at: DateTime<Utc>,
) -> UsageEvent {
    let mut properties = BTreeMap::new();
    properties.insert(
        "tokens".to_owned(),
        UsageValue::Number(Decimal::from(tokens(i))),
    );
    UsageEvent {
        event_name: EventName::parse(event_name.to_owned()).expect("valid event name"),
        customer: CustomerRef::Id(customer.clone()),
        idempotency_key: IdempotencyKey::parse(idempotency_key(run, i)).expect("valid key"),
        timestamp: at,
        properties,
        received_at: at,
    }
}

/// The `tokens` value of event `i`: 1 to 1,000.
pub fn tokens(i: usize) -> u64 {
    ((i * 37) % 1000 + 1) as u64
}

/// The idempotency key of event `i` of `run`: a UUID derived from both, so keys have the length
/// of the UUIDv4 the API generates when a client sends none (record sizes stay realistic).
pub fn idempotency_key(run: &str, i: usize) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{run}-{i}").as_bytes())
        .hyphenated()
        .to_string()
}

/// `count` events, `i` from `first`.
pub fn events(
    catalog: &Catalog,
    run: &str,
    first: usize,
    count: usize,
    at: DateTime<Utc>,
) -> Vec<UsageEvent> {
    (first..first + count)
        .map(|i| event(catalog, run, i, at))
        .collect()
}

// --- DynamoDB item size ----------------------------------------------------------------------

/// An item's size as DynamoDB bills it: per attribute, the UTF-8 length of its name plus its
/// value's size; strings and binaries by length, numbers 1 byte per 2 significant digits plus
/// 1, booleans and nulls 1 byte, lists and maps 3 bytes plus 1 byte per element plus their
/// elements (map keys count like attribute names), sets by their elements.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn number_size(n: &str) -> usize {
    let digits: String = n
        .trim_start_matches('-')
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Write capacity units of one write of an item of `size` bytes: 1 per started KB, times 2
/// for a transactional write.
pub fn wcu(size: usize, transactional: bool) -> u64 {
    let units = size.max(1).div_ceil(1024) as u64;
    if transactional { 2 * units } else { units }
}

/// Today's date (UTC) and the contract start the benchmarks use: the first of the month.
pub fn contract_start(now: DateTime<Utc>) -> NaiveDate {
    month_start(now.date_naive())
}

/// The customer a record belongs to, as a `CustomerRef`.
pub fn customer_ref(id: &CustomerId) -> CustomerRef {
    CustomerRef::Id(id.clone())
}

/// Builds a Billing over `store` with the system clock (no queue).
pub fn billing_over<S: billing::service::Store>(store: Arc<S>, clock: Arc<dyn Clock>) -> Billing {
    Billing::new(store, clock, None)
}
