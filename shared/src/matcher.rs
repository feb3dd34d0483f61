//! The usage matcher: every event counted exactly once on the right invoice line, or recorded
//! with the reason it could not be billed.
//!
//! For each event: the meters listening to its name (filters applied, archived meters
//! skipped), the customer's contract covering its timestamp for that meter, the invoice of that
//! period, and the line of the meter's price (for dimensional prices, the line of the event's
//! combination, created on first use). A closed invoice sends the event to a "late usage" line
//! on the contract's next open invoice, labelled with the original service period.
//!
//! **Exactly once.** Each event gets a record keyed by customer and idempotency key, put on
//! condition that it does not exist, in the same DynamoDB transaction as the aggregate change it
//! causes. Invoice writes are conditioned on the invoice's version and open status. A repeated
//! key cancels its transaction (the cancellation reason names it), the event is dropped as
//! already counted, and the rest is retried; a concurrent writer or a closed invoice makes the
//! matcher re-read and re-apply. A matcher that dies between transactions leaves each one whole,
//! so a redelivery counts exactly what is missing.
//!
//! **Catalog cache.** Meters, contracts and customer look-ups are cached per warm Lambda for at
//! most [`CACHE_TTL`]; plans never change and stay cached. A negative answer (no meter, no
//! covering contract, unknown customer) is never trusted from the cache: it is re-read first,
//! so a meter or contract created a moment ago is never missed. Within the bound, an archived
//! meter may still count events, and a cancelled contract may still be taken as covering.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};

use crate::aggregation::{Aggregate, UsageValue};
use crate::contract::{Contract, ContractSummary};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId, LineId, PlanId};
use crate::invoice::{Invoice, InvoiceLine, LineKind};
use crate::meter::{Meter, MeterStatus};
use crate::pagination::PageRequest;
use crate::period::Period;
use crate::plan::{Plan, Price, PriceKind, RateCard};
use crate::service::{Clock, Store};
use crate::store::{
    CatalogStore, CommitOutcome, ContractStore, CustomerStore, InvoiceUsage, InvoiceWrite,
    UsageCommit, UsageStore,
};
use crate::usage::{CustomerRef, EventRecord, EventStatus, MeterMatch, UsageEvent};

/// How long a warm matcher trusts cached meters, contracts and customers.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// DynamoDB's limit of actions in one transaction.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;
/// How many failed attempts in a row (conflicts, throttling) a batch retries before giving up
/// (its messages then return to the queue).
const ATTEMPTS: u32 = 12;

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events recorded by this run.
    pub recorded: usize,
    /// Events skipped because they were already recorded (resends, redeliveries).
    pub duplicates: usize,
    /// Recorded events by outcome.
    pub by_status: BTreeMap<&'static str, usize>,
    /// Transactions committed.
    pub transactions: usize,
    /// Write actions in the committed transactions (records plus invoice updates).
    pub write_actions: usize,
}

/// Every meter, shared by the events of a batch.
type Meters = Arc<Vec<Arc<Meter>>>;

struct Cached<T> {
    at: Instant,
    value: T,
}

/// Per-instance cache of catalog reads (see the module docs for the rules).
#[derive(Default)]
struct Cache {
    meters: Mutex<Option<Cached<Meters>>>,
    plans: Mutex<HashMap<PlanId, Arc<Plan>>>,
    contracts: Mutex<HashMap<ContractId, Cached<Arc<Contract>>>>,
    indexes: Mutex<HashMap<CustomerId, Cached<Arc<Vec<ContractSummary>>>>>,
    customers: Mutex<HashMap<CustomerRef, Cached<CustomerId>>>,
    /// Derived ids and lines never change for a given input, so they are kept while warm
    /// (deriving one hashes): cleared past [`DERIVED_CACHE_LIMIT`] entries to bound memory.
    invoice_ids: Mutex<HashMap<(ContractId, NaiveDate), InvoiceId>>,
    lines: Mutex<LineCache>,
}

/// Entries after which the derived-id caches start over.
const DERIVED_CACHE_LIMIT: usize = 100_000;

impl Cache {
    fn invoice_id(&self, contract: &ContractId, start: NaiveDate) -> InvoiceId {
        let mut ids = lock(&self.invoice_ids);
        if ids.len() > DERIVED_CACHE_LIMIT {
            ids.clear();
        }
        ids.entry((contract.clone(), start))
            .or_insert_with(|| Invoice::id_for(contract, start))
            .clone()
    }
}

fn fresh<T: Clone>(entry: Option<&Cached<T>>) -> Option<T> {
    entry
        .filter(|c| c.at.elapsed() < CACHE_TTL)
        .map(|c| c.value.clone())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A usage reading bound for an invoice line.
#[derive(Clone)]
struct Target {
    contract: Arc<Contract>,
    plan: Arc<Plan>,
    /// Index of the meter's price in `plan.prices`.
    price_index: usize,
    meter: Arc<Meter>,
    period_index: u32,
    period: Period,
    /// The period's invoice (derived once per batch: deriving hashes).
    invoice_id: InvoiceId,
    dimensions: Option<BTreeMap<String, String>>,
    value: Option<UsageValue>,
}

impl Target {
    fn invoice_id(&self) -> InvoiceId {
        self.invoice_id.clone()
    }

    fn price(&self) -> &Price {
        &self.plan.prices[self.price_index]
    }
}

/// Lines already built, by invoice, price index (in the invoice's plan), combination and late
/// period: a line is derived (and hashed) once per warm instance, not once per event.
type LineCache = HashMap<
    (
        InvoiceId,
        usize,
        Option<BTreeMap<String, String>>,
        Option<Period>,
    ),
    Arc<InvoiceLine>,
>;

/// One meter's reading of an event.
#[derive(Clone)]
enum Reading {
    Billable(Box<Target>),
    Refused(crate::ids::MeterId, EventStatus),
}

/// An event ready to apply.
#[derive(Clone)]
struct Prepared {
    event: Arc<UsageEvent>,
    customer_id: Option<CustomerId>,
    readings: Vec<Reading>,
    /// The outcome when no meter reads it at all.
    unread: Option<EventStatus>,
}

/// Where a billable reading lands after looking at invoice states.
struct Landing {
    invoice_id: InvoiceId,
    line: Arc<InvoiceLine>,
    late: bool,
}

/// The matcher. One per warm Lambda instance; cheap to share.
pub struct Matcher {
    customers: Arc<dyn CustomerStore>,
    catalog: Arc<dyn CatalogStore>,
    contracts: Arc<dyn ContractStore>,
    usage: Arc<dyn UsageStore>,
    clock: Arc<dyn Clock>,
    cache: Cache,
}

impl Matcher {
    /// A matcher reading the catalog from `store` and writing usage through `usage` (usually
    /// the same adapter; tests wrap it to inject faults).
    pub fn new<S: Store>(store: Arc<S>, usage: Arc<dyn UsageStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            customers: store.clone(),
            catalog: store.clone(),
            contracts: store,
            usage,
            clock,
            cache: Cache::default(),
        }
    }

    /// Matches a batch of events. `Ok` means every event is recorded (now or before); `Err`
    /// means some may not be, and the whole batch must be retried (safe: nothing counts twice).
    pub async fn process(&self, events: Vec<UsageEvent>) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut pending = self.prepare(events).await?;
        // Failed attempts in a row; dropping duplicates is progress and does not count.
        let mut failures = 0;
        while !pending.is_empty() {
            match self.apply(&mut pending, &mut report).await {
                Ok(()) => failures = 0,
                Err(e) if failures + 1 < ATTEMPTS && is_transient(&e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "usage commit failed; retrying");
                    tokio::time::sleep(backoff(failures)).await;
                }
                Err(e) => {
                    return Err(Error::new(
                        e.kind,
                        e.code.clone(),
                        format!("{} events not committed: {}", pending.len(), e.message),
                    ));
                }
            }
        }
        Ok(report)
    }

    /// Resolves customers, meters, contracts and plans; drops repeats within the batch.
    async fn prepare(&self, events: Vec<UsageEvent>) -> Result<Vec<Prepared>> {
        let mut seen = HashSet::new();
        let mut prepared = Vec::with_capacity(events.len());
        for event in events {
            let customer_id = self.resolve_customer(&event.customer).await?;
            let record_key = record_key(&event, customer_id.as_ref());
            if !seen.insert(record_key) {
                continue;
            }
            let (readings, unread) = match &customer_id {
                None => (Vec::new(), Some(EventStatus::UnknownCustomer)),
                Some(customer) => {
                    let meters = self.meters_for(&event).await?;
                    if meters.is_empty() {
                        (Vec::new(), Some(EventStatus::Unmatched))
                    } else {
                        let mut readings = Vec::with_capacity(meters.len());
                        for meter in meters {
                            readings.push(self.read(&event, customer, meter).await?);
                        }
                        (readings, None)
                    }
                }
            };
            prepared.push(Prepared {
                event: Arc::new(event),
                customer_id,
                readings,
                unread,
            });
        }
        Ok(prepared)
    }

    async fn resolve_customer(&self, reference: &CustomerRef) -> Result<Option<CustomerId>> {
        if let Some(id) = fresh(lock(&self.cache.customers).get(reference)) {
            return Ok(Some(id));
        }
        let found = match reference {
            CustomerRef::Id(id) => self.customers.get(id).await?.map(|c| c.value.id),
            CustomerRef::External(x) => self.customers.get_by_external_id(x).await?.map(|c| c.id),
        };
        if let Some(id) = &found {
            lock(&self.cache.customers).insert(
                reference.clone(),
                Cached {
                    at: Instant::now(),
                    value: id.clone(),
                },
            );
        }
        Ok(found)
    }

    async fn all_meters(&self, refresh: bool) -> Result<Meters> {
        if !refresh && let Some(m) = fresh(lock(&self.cache.meters).as_ref()) {
            return Ok(m);
        }
        let mut meters = Vec::new();
        let mut page = PageRequest {
            limit: crate::pagination::MAX_LIMIT,
            after: None,
        };
        loop {
            let result = self.catalog.list_meters(&page).await?;
            meters.extend(result.items.into_iter().map(Arc::new));
            match result.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let meters = Arc::new(meters);
        *lock(&self.cache.meters) = Some(Cached {
            at: Instant::now(),
            value: meters.clone(),
        });
        Ok(meters)
    }

    /// Active meters listening to the event's name whose filters it passes. When no meter
    /// listens at all, the catalog is re-read before concluding.
    async fn meters_for(&self, event: &UsageEvent) -> Result<Vec<Arc<Meter>>> {
        let mut meters = self.all_meters(false).await?;
        let listens =
            |m: &Meter| m.event_name == event.event_name && m.status == MeterStatus::Active;
        if !meters.iter().any(|m| listens(m)) {
            meters = self.all_meters(true).await?;
        }
        Ok(meters
            .iter()
            .filter(|m| listens(m))
            .filter(|m| {
                m.property_filters.iter().all(|f| {
                    let value = event
                        .properties
                        .get(f.property.as_str())
                        .map(UsageValue::as_text);
                    f.passes(value.as_deref())
                })
            })
            .cloned()
            .collect())
    }

    async fn index(
        &self,
        customer: &CustomerId,
        refresh: bool,
    ) -> Result<Arc<Vec<ContractSummary>>> {
        if !refresh && let Some(i) = fresh(lock(&self.cache.indexes).get(customer)) {
            return Ok(i);
        }
        let index = Arc::new(self.contracts.customer_contracts(customer).await?.value);
        lock(&self.cache.indexes).insert(
            customer.clone(),
            Cached {
                at: Instant::now(),
                value: index.clone(),
            },
        );
        Ok(index)
    }

    async fn contract(&self, id: &ContractId) -> Result<Arc<Contract>> {
        if let Some(c) = fresh(lock(&self.cache.contracts).get(id)) {
            return Ok(c);
        }
        let contract = Arc::new(
            self.contracts
                .get_contract(id)
                .await?
                .ok_or_else(|| Error::internal(format!("contract {id} is indexed but missing")))?
                .value,
        );
        lock(&self.cache.contracts).insert(
            id.clone(),
            Cached {
                at: Instant::now(),
                value: contract.clone(),
            },
        );
        Ok(contract)
    }

    async fn plan(&self, id: &PlanId) -> Result<Arc<Plan>> {
        if let Some(p) = lock(&self.cache.plans).get(id) {
            return Ok(p.clone());
        }
        let plan = Arc::new(
            self.catalog
                .get_plan(id)
                .await?
                .ok_or_else(|| Error::internal(format!("plan {id} is used but missing")))?,
        );
        lock(&self.cache.plans).insert(id.clone(), plan.clone());
        Ok(plan)
    }

    /// One meter's reading of an event: where it bills, or why it cannot.
    async fn read(
        &self,
        event: &UsageEvent,
        customer: &CustomerId,
        meter: Arc<Meter>,
    ) -> Result<Reading> {
        let refused = |status| Ok(Reading::Refused(meter.id.clone(), status));
        let date = event.timestamp.date_naive();
        let covers =
            |c: &&ContractSummary| c.span().contains(date) && c.meter_ids.contains(&meter.id);
        let mut index = self.index(customer, false).await?;
        if !index.iter().any(|c| covers(&c)) {
            index = self.index(customer, true).await?;
        }
        let Some(summary) = index.iter().find(covers) else {
            return refused(EventStatus::NoContract);
        };
        let contract = self.contract(&summary.id).await?;
        let plan = self.plan(&contract.plan_id).await?;
        let Some(price_index) = plan
            .prices
            .iter()
            .position(|p| p.meter_id() == Some(&meter.id))
        else {
            return refused(EventStatus::NoContract);
        };
        let price = &plan.prices[price_index];
        let Some((period_index, period)) = contract.schedule().period_containing(date) else {
            return refused(EventStatus::NoContract);
        };
        let value = meter
            .aggregation_key
            .as_ref()
            .and_then(|k| event.properties.get(k.as_str()))
            .cloned();
        if let Err(e) = Aggregate::new(meter.aggregation_type).add(value.as_ref()) {
            return refused(if e.code == "missing_value" {
                EventStatus::MissingProperty
            } else {
                EventStatus::InvalidProperty
            });
        }
        let PriceKind::Usage(usage) = &price.kind else {
            return refused(EventStatus::NoContract);
        };
        let dimensions = if usage.rate.is_dimensional() {
            let mut dims = BTreeMap::new();
            for key in &meter.group_keys {
                match event.properties.get(key.as_str()) {
                    Some(v) => {
                        dims.insert(key.as_str().to_owned(), v.as_text());
                    }
                    None => return refused(EventStatus::MissingProperty),
                }
            }
            if usage.rate.rate_for(Some(&dims)).is_none() {
                return refused(EventStatus::NoRate);
            }
            Some(dims)
        } else {
            None
        };
        let invoice_id = self.cache.invoice_id(&contract.id, period.start);
        Ok(Reading::Billable(Box::new(Target {
            invoice_id,
            price_index,
            contract,
            plan,
            meter,
            period_index,
            period,
            dimensions,
            value,
        })))
    }

    /// Reads the invoices the pending events need, then commits them in transactions of at
    /// most 100 actions. Returns after the first failed commit (the caller retries).
    async fn apply(&self, pending: &mut Vec<Prepared>, report: &mut BatchReport) -> Result<()> {
        let now = self.clock.now();
        let mut states = self.load_states(pending, now).await?;
        let landings = self.land(pending, &mut states, now).await?;

        let mut start = 0;
        while start < pending.len() {
            // Grow one transaction while it stays within the action limit.
            let mut end = start;
            let mut touched: HashSet<&InvoiceId> = HashSet::new();
            while end < pending.len() {
                let mut fresh: Vec<&InvoiceId> = Vec::new();
                for l in landings[end].iter().flatten() {
                    if !touched.contains(&l.invoice_id) && !fresh.contains(&&l.invoice_id) {
                        fresh.push(&l.invoice_id);
                    }
                }
                let actions = (end + 1 - start) + touched.len() + fresh.len();
                if end > start && actions > MAX_TRANSACTION_ACTIONS {
                    break;
                }
                touched.extend(fresh);
                end += 1;
            }
            let commit = self.build(pending, &landings, start..end, &states, now)?;
            let outcome = match self.usage.commit(&commit).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // What this pass committed stays committed; only the rest is retried.
                    let progressed = start > 0;
                    pending.drain(..start);
                    return if progressed { Ok(()) } else { Err(e) };
                }
            };
            match outcome {
                CommitOutcome::Committed => {
                    report.transactions += 1;
                    report.write_actions += commit.records.len() + commit.invoices.len();
                    for record in &commit.records {
                        report.recorded += 1;
                        *report.by_status.entry(record.status.as_str()).or_default() += 1;
                    }
                    apply_commit(&mut states, &commit);
                    start = end;
                }
                CommitOutcome::Duplicates(indexes) => {
                    report.duplicates += indexes.len();
                    let drop: HashSet<usize> = indexes.into_iter().map(|i| start + i).collect();
                    let mut i = 0;
                    pending.retain(|_| {
                        let keep = i < start || !drop.contains(&i);
                        i += 1;
                        keep
                    });
                    pending.drain(..start);
                    return Ok(());
                }
                CommitOutcome::InvoiceMoved => {
                    // Progress made in this pass resets the failure count; none is a failure.
                    let progressed = start > 0;
                    pending.drain(..start);
                    if progressed {
                        return Ok(());
                    }
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "invoice_moved",
                        "an invoice changed while matching; re-reading",
                    ));
                }
            }
        }
        pending.clear();
        Ok(())
    }

    /// Reads every invoice the billable readings point at, creating the ones a rolling
    /// contract has not generated yet.
    async fn load_states(
        &self,
        pending: &[Prepared],
        now: DateTime<Utc>,
    ) -> Result<HashMap<InvoiceId, InvoiceUsage>> {
        let mut wanted: HashMap<InvoiceId, &Target> = HashMap::new();
        for p in pending {
            for r in &p.readings {
                if let Reading::Billable(t) = r {
                    wanted.entry(t.invoice_id()).or_insert(t);
                }
            }
        }
        let ids: Vec<InvoiceId> = wanted.keys().cloned().collect();
        let mut states = self.usage.invoice_states(&ids).await?;
        let missing: Vec<&Target> = ids
            .iter()
            .filter(|id| !states.contains_key(*id))
            .filter_map(|id| wanted.get(id).copied())
            .collect();
        if !missing.is_empty() {
            for t in &missing {
                self.usage
                    .ensure_invoice(&Invoice::draft(&t.contract, &t.plan, t.period, now))
                    .await?;
            }
            let ids: Vec<InvoiceId> = missing.iter().map(|t| t.invoice_id()).collect();
            states.extend(self.usage.invoice_states(&ids).await?);
        }
        Ok(states)
    }

    /// Decides, per event and reading, which invoice line it lands on: its own period's
    /// invoice when open, else a late line on the contract's next open invoice.
    async fn land(
        &self,
        pending: &[Prepared],
        states: &mut HashMap<InvoiceId, InvoiceUsage>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<Option<Landing>>>> {
        let mut landings = Vec::with_capacity(pending.len());
        for p in pending {
            let mut per_reading = Vec::with_capacity(p.readings.len());
            for r in &p.readings {
                let Reading::Billable(t) = r else {
                    per_reading.push(None);
                    continue;
                };
                let own = t.invoice_id();
                let open = states.get(&own).is_some_and(|s| s.status.is_open());
                if open {
                    per_reading.push(Some(Landing {
                        line: line_for(&self.cache.lines, t, &own, None),
                        invoice_id: own,
                        late: false,
                    }));
                    continue;
                }
                per_reading.push(
                    self.next_open(t, states, now)
                        .await?
                        .map(|invoice_id| Landing {
                            line: line_for(&self.cache.lines, t, &invoice_id, Some(t.period)),
                            invoice_id,
                            late: true,
                        }),
                );
            }
            landings.push(per_reading);
        }
        Ok(landings)
    }

    /// The first open invoice after the target's period on the same contract.
    async fn next_open(
        &self,
        t: &Target,
        states: &mut HashMap<InvoiceId, InvoiceUsage>,
        now: DateTime<Utc>,
    ) -> Result<Option<InvoiceId>> {
        let schedule = t.contract.schedule();
        let today = now.date_naive();
        let mut index = t.period_index + 1;
        while let Some(period) = schedule.period(index) {
            if period.start > today {
                break;
            }
            let id = Invoice::id_for(&t.contract.id, period.start);
            if !states.contains_key(&id) {
                let mut found = self.usage.invoice_states(std::slice::from_ref(&id)).await?;
                if found.is_empty() {
                    self.usage
                        .ensure_invoice(&Invoice::draft(&t.contract, &t.plan, period, now))
                        .await?;
                    found = self.usage.invoice_states(std::slice::from_ref(&id)).await?;
                }
                states.extend(found);
            }
            if states.get(&id).is_some_and(|s| s.status.is_open()) {
                return Ok(Some(id));
            }
            index += 1;
        }
        Ok(None)
    }

    /// The commit for events `range`, built on `states` without copying whole invoices: only
    /// new lines and the aggregates of touched lines are carried.
    fn build(
        &self,
        pending: &[Prepared],
        landings: &[Vec<Option<Landing>>],
        range: std::ops::Range<usize>,
        states: &HashMap<InvoiceId, InvoiceUsage>,
        now: DateTime<Utc>,
    ) -> Result<UsageCommit> {
        struct Draft<'a> {
            base: &'a InvoiceUsage,
            new_lines: Vec<InvoiceLine>,
            touched: Vec<LineId>,
            aggregates: HashMap<LineId, Aggregate>,
        }
        let mut drafts: HashMap<&InvoiceId, Draft<'_>> = HashMap::new();
        let mut records = Vec::with_capacity(range.len());
        for i in range {
            let p = &pending[i];
            let mut matches = Vec::with_capacity(p.readings.len());
            for (reading, landing) in p.readings.iter().zip(&landings[i]) {
                let (t, landing) = match (reading, landing) {
                    (Reading::Refused(meter, status), _) => {
                        matches.push(MeterMatch {
                            meter_id: meter.clone(),
                            status: *status,
                            invoice_id: None,
                            line_id: None,
                        });
                        continue;
                    }
                    (Reading::Billable(t), None) => {
                        matches.push(MeterMatch {
                            meter_id: t.meter.id.clone(),
                            status: EventStatus::NoOpenInvoice,
                            invoice_id: None,
                            line_id: None,
                        });
                        continue;
                    }
                    (Reading::Billable(t), Some(landing)) => (t, landing),
                };
                let draft = match drafts.get_mut(&landing.invoice_id) {
                    Some(d) => d,
                    None => {
                        let base = states.get(&landing.invoice_id).ok_or_else(|| {
                            Error::internal(format!(
                                "invoice {} was not loaded",
                                landing.invoice_id
                            ))
                        })?;
                        drafts.entry(&landing.invoice_id).or_insert(Draft {
                            base,
                            new_lines: Vec::new(),
                            touched: Vec::new(),
                            aggregates: HashMap::new(),
                        })
                    }
                };
                let line_id = &landing.line.id;
                let known = draft.base.line_ids.contains(line_id)
                    || draft.new_lines.iter().any(|l| &l.id == line_id);
                if !known {
                    draft.new_lines.push(InvoiceLine::clone(&landing.line));
                }
                if !draft.aggregates.contains_key(line_id) {
                    let start = draft
                        .base
                        .aggregates
                        .get(line_id)
                        .cloned()
                        .unwrap_or_else(|| Aggregate::new(t.meter.aggregation_type));
                    draft.aggregates.insert(line_id.clone(), start);
                    draft.touched.push(line_id.clone());
                }
                if let Some(aggregate) = draft.aggregates.get_mut(line_id) {
                    aggregate.add(t.value.as_ref())?;
                }
                matches.push(MeterMatch {
                    meter_id: t.meter.id.clone(),
                    status: if landing.late {
                        EventStatus::Late
                    } else {
                        EventStatus::Matched
                    },
                    invoice_id: Some(landing.invoice_id.clone()),
                    line_id: Some(line_id.clone()),
                });
            }
            let status = overall(&matches, p.unread);
            records.push(EventRecord {
                event: p.event.clone(),
                customer_id: p.customer_id.clone(),
                status,
                matches,
                processed_at: now,
            });
        }
        let mut invoices: Vec<InvoiceWrite> = drafts
            .into_iter()
            .map(|(id, mut draft)| InvoiceWrite {
                invoice_id: id.clone(),
                expected_version: draft.base.version,
                aggregates: draft
                    .touched
                    .iter()
                    .filter_map(|line| draft.aggregates.remove(line).map(|a| (line.clone(), a)))
                    .collect(),
                new_lines: draft.new_lines,
                updated_at: now,
            })
            .collect();
        invoices.sort_by(|a, b| a.invoice_id.cmp(&b.invoice_id));
        Ok(UsageCommit { invoices, records })
    }
}

/// Brings the states read before a commit up to date with it, so the batch's next transaction
/// builds on what is now stored (and expects the new version).
fn apply_commit(states: &mut HashMap<InvoiceId, InvoiceUsage>, commit: &UsageCommit) {
    for write in &commit.invoices {
        let Some(state) = states.get_mut(&write.invoice_id) else {
            continue;
        };
        state
            .line_ids
            .extend(write.new_lines.iter().map(|l| l.id.clone()));
        for (line, aggregate) in &write.aggregates {
            state.aggregates.insert(line.clone(), aggregate.clone());
        }
        state.version = write.expected_version + 1;
        state.status = crate::invoice::InvoiceStatus::InProgress;
    }
}

/// The line a target lands on: the price's line (a dimensional price: the combination's line),
/// or, for late usage, a line of its own labelled with the original period.
fn line_for(
    cache: &Mutex<LineCache>,
    t: &Target,
    invoice: &InvoiceId,
    late_from: Option<Period>,
) -> Arc<InvoiceLine> {
    let mut lines = lock(cache);
    if lines.len() > DERIVED_CACHE_LIMIT {
        lines.clear();
    }
    lines
        .entry((
            invoice.clone(),
            t.price_index,
            t.dimensions.clone(),
            late_from,
        ))
        .or_insert_with(|| Arc::new(build_line(t, invoice, late_from)))
        .clone()
}

fn build_line(t: &Target, invoice: &InvoiceId, late_from: Option<Period>) -> InvoiceLine {
    let price = t.price();
    let rate = match &price.kind {
        PriceKind::Usage(usage) => t.contract.rate_with_override(&price.id, &usage.rate),
        PriceKind::Flat { flat_amount } => RateCard::PerUnit(flat_amount.clone()),
    };
    let dims = t.dimensions.as_ref().map(|d| {
        d.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let mut name = format!("{invoice}:{}", price.id);
    let mut description = price.description.clone();
    if let Some(dims) = &dims {
        name.push_str(&format!(":{dims}"));
        description.push_str(&format!(" ({dims})"));
    }
    if let Some(period) = late_from {
        name.push_str(&format!(":late:{}", period.start));
        description.push_str(&format!(
            " — late usage for {} to {}",
            period.start, period.end
        ));
    }
    InvoiceLine {
        id: LineId::derive(&name),
        price_id: price.id.clone(),
        description,
        kind: LineKind::Usage {
            meter_id: t.meter.id.clone(),
            aggregation: t.meter.aggregation_type,
            rate,
        },
        quantity: rust_decimal::Decimal::ZERO,
        dimensions: t.dimensions.clone(),
        service_period: late_from.unwrap_or(t.period),
    }
}

/// The event's overall outcome: billed if any meter billed it, else the first reason.
fn overall(matches: &[MeterMatch], unread: Option<EventStatus>) -> EventStatus {
    if let Some(status) = unread {
        return status;
    }
    matches
        .iter()
        .find(|m| m.status == EventStatus::Matched)
        .or_else(|| matches.iter().find(|m| m.status == EventStatus::Late))
        .or_else(|| matches.first())
        .map(|m| m.status)
        .unwrap_or(EventStatus::Unmatched)
}

/// The key that makes an event unique: the resolved customer (so `customerId` and
/// `externalCustomerId` of one customer are one namespace), else the reference as sent.
fn record_key(event: &UsageEvent, customer: Option<&CustomerId>) -> String {
    let who = match (customer, &event.customer) {
        (Some(id), _) => id.to_string(),
        (None, CustomerRef::Id(id)) => format!("ref:{id}"),
        (None, CustomerRef::External(x)) => format!("ext:{x}"),
    };
    format!("{who}#{}", event.idempotency_key.as_str())
}

/// The key an event's record is stored under (see [`record_key`]).
pub fn event_record_key(record: &EventRecord) -> String {
    record_key(&record.event, record.customer_id.as_ref())
}

fn is_transient(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Conflict)
}

/// 20 ms × 2^attempt, capped at 1.3 s, with jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 20u64 << attempt.min(6);
    let jitter = u64::from(getrandom::u32().unwrap_or(0) % 1000);
    Duration::from_millis(base / 2 + base * jitter / 2000)
}
