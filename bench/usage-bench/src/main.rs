//! The usage benchmarks that need the local stack (run by bench/usage.sh, which starts a stack
//! of its own and loads its environment):
//!
//!   usage-bench writes --out FILE [--scale F]
//!       WCU per event all-in, steady state, at the deployed batching: events packed by
//!       `billing::usage::pack`, delivered to `Matcher::process` over the real `DynamoStore` in
//!       batches of at most 10 messages of one lane (the FIFO event source's BatchSize 10); every
//!       write counted by kind, stored items read back and sized as DynamoDB bills them.
//!   usage-bench concurrent --out FILE [--events N] [--matchers N]
//!       N concurrent matchers (one lane set each) applying one customer's events: conflicts
//!       and retries per 1,000 events, events/s.
//!   usage-bench fresh --out FILE [--seconds S] [--rate R] [--per-request N] [--e2e-events N]
//!       Freshness through the dev server (API → FIFO queue → its poller → the real
//!       usage-matcher handler): per request, 202 → invoice COUNT includes it; then the
//!       end-to-end events/s of a burst.
//!
//! Each writes one JSON document; bench/usage_report.py turns them into bench/results/usage.md.
//! Every loop is bounded in count and time; every address is the local stack's (loopback).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use billing::Billing;
use billing::ids::{CustomerId, InvoiceId};
use billing::invoice::{Invoice, InvoiceStatus};
use billing::lanes::{LaneKey, UsageLane};
use billing::matcher::{BatchReport, LaneMessage, Matcher};
use billing::pagination::{Page, PageRequest};
use billing::ports::{
    Clock, EventFilter, LaneWrite, LedgerStore, RecordPut, SystemClock, UsageStore, ValueClaim,
};
use billing::tally::{DayCount, DayTally, TallyKey};
use billing::usage::{CustomerRef, EventRecord, Lane, MessageNonce, QueuedEvents, pack};
use billing::webhooks::OutgoingEvent;
use billing_aws::dynamodb::{DynamoStore, raw_keys};
use billing_startup::Startup;
use serde_json::{Value, json};
use usage_bench::{Catalog, contract_start, create_catalog, item_size, wcu};

type Item = HashMap<String, AttributeValue>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Events per API request (`POST /v1/events/batch`): what one message carries, as the API
/// packs it.
const EVENTS_PER_REQUEST: usize = 1_000;
/// The FIFO event source's batch size (template.yaml, UsageMatcherFunction).
const BATCH_SIZE: usize = 10;

fn fail(message: impl Into<String>) -> BoxError {
    message.into().into()
}

struct Env {
    store: Arc<DynamoStore>,
    client: aws_sdk_dynamodb::Client,
    table: String,
    usage_table: String,
}

impl Env {
    async fn load() -> Result<Self, BoxError> {
        let startup = Startup::from_env().await?;
        Ok(Self {
            store: startup.store(),
            client: aws_sdk_dynamodb::Client::new(startup.aws()),
            table: startup.config().table_name.clone(),
            usage_table: startup.config().usage_table_name.clone(),
        })
    }

    fn billing(&self) -> Billing {
        Billing::new(self.store.clone(), Arc::new(SystemClock), None)
    }

    /// An item by its `(pk, sk)` ([`raw_keys`]).
    async fn get(&self, table: &str, key: &(String, String)) -> Result<Option<Item>, BoxError> {
        Ok(self
            .client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(key.0.clone()))
            .key("sk", AttributeValue::S(key.1.clone()))
            .consistent_read(true)
            .send()
            .await?
            .item)
    }

    /// The COUNT line's quantity of an invoice, as the ledger reads it (lanes merged).
    async fn count_of(&self, invoice: &InvoiceId, catalog: &Catalog) -> Result<u64, BoxError> {
        let state = self
            .store
            .invoice_state(invoice)
            .await?
            .ok_or_else(|| fail(format!("invoice {invoice} is missing")))?;
        let price = &catalog.plan.prices[1].id;
        let quantity = state
            .invoice
            .lines
            .iter()
            .find(|l| &l.price_id == price)
            .map(|l| l.quantity)
            .ok_or_else(|| fail("the invoice has no COUNT line"))?;
        Ok(quantity.try_into().unwrap_or(0))
    }
}

// --- Counting usage port -------------------------------------------------------------------

/// The usage port, counting the matcher's reads (what it asks for), then delegating to the
/// DynamoDB adapter. Writes are counted by the matcher's own report.
struct Counting {
    inner: Arc<DynamoStore>,
    status_requests: AtomicU64,
    statuses_read: AtomicU64,
    lane_requests: AtomicU64,
    lanes_read: AtomicU64,
    tally_requests: AtomicU64,
    tallies_read: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<DynamoStore>) -> Self {
        Self {
            inner,
            status_requests: AtomicU64::new(0),
            statuses_read: AtomicU64::new(0),
            lane_requests: AtomicU64::new(0),
            lanes_read: AtomicU64::new(0),
            tally_requests: AtomicU64::new(0),
            tallies_read: AtomicU64::new(0),
        }
    }

    fn reads(&self) -> [u64; 6] {
        [
            self.status_requests.load(Ordering::Relaxed),
            self.statuses_read.load(Ordering::Relaxed),
            self.lane_requests.load(Ordering::Relaxed),
            self.lanes_read.load(Ordering::Relaxed),
            self.tally_requests.load(Ordering::Relaxed),
            self.tallies_read.load(Ordering::Relaxed),
        ]
    }
}

#[async_trait]
impl UsageStore for Counting {
    async fn invoice_statuses(
        &self,
        ids: &[InvoiceId],
    ) -> billing::Result<HashMap<InvoiceId, InvoiceStatus>> {
        self.status_requests.fetch_add(1, Ordering::Relaxed);
        self.statuses_read
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        self.inner.invoice_statuses(ids).await
    }

    async fn ensure_invoice(
        &self,
        invoice: &Invoice,
        events: &[OutgoingEvent],
    ) -> billing::Result<()> {
        self.inner.ensure_invoice(invoice, events).await
    }

    async fn mark_in_progress(&self, ids: &[InvoiceId]) -> billing::Result<()> {
        self.inner.mark_in_progress(ids).await
    }

    async fn put_records(&self, records: &[EventRecord]) -> Vec<billing::Result<RecordPut>> {
        self.inner.put_records(records).await
    }

    async fn relabel_record(&self, record: &EventRecord) -> billing::Result<()> {
        self.inner.relabel_record(record).await
    }

    async fn claim_values(&self, claims: &[ValueClaim]) -> billing::Result<Vec<MessageNonce>> {
        self.inner.claim_values(claims).await
    }

    async fn lanes(&self, keys: &[LaneKey]) -> billing::Result<HashMap<LaneKey, UsageLane>> {
        self.lane_requests.fetch_add(1, Ordering::Relaxed);
        self.lanes_read
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.inner.lanes(keys).await
    }

    async fn write_lanes(
        &self,
        writes: &[(UsageLane, UsageLane)],
    ) -> billing::Result<Vec<LaneWrite>> {
        self.inner.write_lanes(writes).await
    }

    async fn tallies(&self, keys: &[TallyKey]) -> billing::Result<HashMap<TallyKey, DayTally>> {
        self.tally_requests.fetch_add(1, Ordering::Relaxed);
        self.tallies_read
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.inner.tallies(keys).await
    }

    async fn write_tallies(
        &self,
        writes: &[(DayTally, DayTally)],
    ) -> billing::Result<Vec<LaneWrite>> {
        self.inner.write_tallies(writes).await
    }

    async fn day_count(&self, day: chrono::NaiveDate) -> billing::Result<DayCount> {
        self.inner.day_count(day).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> billing::Result<Page<EventRecord>> {
        self.inner.list_events(filter, page).await
    }
}

fn add_report(total: &mut BatchReport, r: &BatchReport) {
    total.recorded += r.recorded;
    total.duplicates += r.duplicates;
    total.redelivered += r.redelivered;
    for (k, v) in &r.by_status {
        *total.by_status.entry(k).or_default() += v;
    }
    total.record_writes += r.record_writes;
    total.lane_writes += r.lane_writes;
    total.claim_writes += r.claim_writes;
    total.relabels += r.relabels;
    total.status_writes += r.status_writes;
    total.tally_writes += r.tally_writes;
    total.conflicts += r.conflicts;
    total.retries += r.retries;
}

fn report_json(r: &BatchReport) -> Value {
    json!({
        "recorded": r.recorded,
        "duplicates": r.duplicates,
        "redelivered": r.redelivered,
        "by_status": r.by_status,
        "record_writes": r.record_writes,
        "lane_writes": r.lane_writes,
        "claim_writes": r.claim_writes,
        "relabels": r.relabels,
        "status_writes": r.status_writes,
        "tally_writes": r.tally_writes,
        "conflicts": r.conflicts,
        "retries": r.retries,
        "writes": r.writes(),
    })
}

// --- Message source ------------------------------------------------------------------------

/// A stream of API requests of [`EVENTS_PER_REQUEST`] events, packed by the real
/// `billing::usage::pack` and decoded as the usage-matcher handler decodes SQS bodies, queued
/// per lane (the FIFO message groups).
struct Source<'a> {
    catalog: &'a Catalog,
    run: String,
    at: chrono::DateTime<chrono::Utc>,
    next: usize,
    per_request: usize,
    lanes: BTreeMap<u8, VecDeque<(LaneMessage, usize)>>,
}

impl<'a> Source<'a> {
    fn new(catalog: &'a Catalog, run: String, per_request: usize) -> Self {
        Self {
            catalog,
            run,
            at: SystemClock.now(),
            next: 0,
            per_request,
            lanes: BTreeMap::new(),
        }
    }

    /// One more request's events, packed and queued on their lanes.
    fn request(&mut self) -> Result<(), BoxError> {
        let events = usage_bench::events(
            self.catalog,
            &self.run,
            self.next,
            self.per_request,
            self.at,
        );
        self.next += self.per_request;
        for message in pack(&events)? {
            let queued: QueuedEvents = serde_json::from_str(&message.body)?;
            let lane = Lane::of(&queued.nonce);
            if lane != message.lane {
                return Err(fail("a packed message's lane is not its nonce's"));
            }
            self.lanes.entry(lane.number()).or_default().push_back((
                LaneMessage {
                    nonce: queued.nonce,
                    lane,
                    events: queued.events,
                },
                message.body.len(),
            ));
        }
        Ok(())
    }

    /// The next batch of `k` messages of one lane, as a FIFO source with a backlog hands them
    /// over: requests keep arriving until some lane holds `k` messages.
    fn batch(&mut self, k: usize) -> Result<Vec<(LaneMessage, usize)>, BoxError> {
        for _ in 0..100_000 {
            if let Some(queue) = self.lanes.values_mut().find(|q| q.len() >= k) {
                return Ok(queue.drain(..k).collect());
            }
            self.request()?;
        }
        Err(fail("no lane filled up"))
    }

    /// Every message queued so far, per lane, in order (for the concurrent run).
    fn take_lanes(&mut self) -> BTreeMap<u8, VecDeque<(LaneMessage, usize)>> {
        std::mem::take(&mut self.lanes)
    }
}

/// What a run of batches did.
#[derive(Default)]
struct Round {
    report: BatchReport,
    batches: usize,
    messages: usize,
    events: usize,
    message_bytes: Vec<usize>,
    /// Per batch: events ÷ distinct customers.
    events_per_customer: Vec<f64>,
    process_seconds: f64,
    /// (customer, idempotency key, lane) of every event, for sampling stored items.
    seen: Vec<(CustomerId, String, Lane)>,
}

impl Round {
    fn json(&self, k: usize) -> Value {
        let n = self.batches.max(1) as f64;
        json!({
            "messages_per_batch_target": k,
            "batches": self.batches,
            "messages": self.messages,
            "events": self.events,
            "messages_per_batch": self.messages as f64 / n,
            "events_per_batch": self.events as f64 / n,
            "events_per_message": self.events as f64 / self.messages.max(1) as f64,
            "message_bytes_mean": self.message_bytes.iter().sum::<usize>() as f64 / self.message_bytes.len().max(1) as f64,
            "message_bytes_max": self.message_bytes.iter().max().copied().unwrap_or(0),
            "message_bytes_per_event": self.message_bytes.iter().sum::<usize>() as f64 / self.events.max(1) as f64,
            "events_per_customer_per_batch": self.events_per_customer.iter().sum::<f64>() / n,
            "process_seconds": self.process_seconds,
            "process_us_per_event": self.process_seconds * 1e6 / self.events.max(1) as f64,
            "report": report_json(&self.report),
        })
    }
}

/// Applies one batch, adding what it did to `round`.
async fn apply_batch(
    matcher: &Matcher,
    batch: Vec<(LaneMessage, usize)>,
    round: &mut Round,
) -> Result<(), BoxError> {
    let mut customers = HashSet::new();
    let mut events = 0;
    for (m, bytes) in &batch {
        round.message_bytes.push(*bytes);
        for e in &m.events {
            if let CustomerRef::Id(id) = &e.customer {
                customers.insert(id.clone());
                round
                    .seen
                    .push((id.clone(), e.idempotency_key.as_str().to_owned(), m.lane));
            }
        }
        events += m.events.len();
    }
    round.messages += batch.len();
    round.events += events;
    round.batches += 1;
    round
        .events_per_customer
        .push(events as f64 / customers.len().max(1) as f64);
    let messages: Vec<LaneMessage> = batch.into_iter().map(|(m, _)| m).collect();
    let started = Instant::now();
    let report = matcher.process(messages).await?;
    round.process_seconds += started.elapsed().as_secs_f64();
    if report.recorded != events || report.by_status.get("matched") != Some(&events) {
        return Err(fail(format!(
            "{events} events delivered, {} recorded: {report:?}",
            report.recorded
        )));
    }
    add_report(&mut round.report, &report);
    Ok(())
}

/// `batches` batches of `k` messages of one lane each.
async fn run_batches(
    matcher: &Matcher,
    source: &mut Source<'_>,
    k: usize,
    batches: usize,
) -> Result<Round, BoxError> {
    let mut round = Round::default();
    for _ in 0..batches {
        let batch = source.batch(k)?;
        apply_batch(matcher, batch, &mut round).await?;
    }
    Ok(round)
}

/// One request, every message of it applied (lane by lane, ≤ 10 messages a batch).
async fn run_request(matcher: &Matcher, source: &mut Source<'_>) -> Result<Round, BoxError> {
    let mut round = Round::default();
    source.request()?;
    for (_, mut queue) in source.take_lanes() {
        while !queue.is_empty() {
            let n = queue.len().min(BATCH_SIZE);
            apply_batch(matcher, queue.drain(..n).collect(), &mut round).await?;
        }
    }
    Ok(round)
}

// --- 1. WCU per event all-in -----------------------------------------------------------------

fn size_stats(sizes: &[usize]) -> Value {
    let n = sizes.len().max(1) as f64;
    json!({
        "samples": sizes.len(),
        "min_bytes": sizes.iter().min().copied().unwrap_or(0),
        "max_bytes": sizes.iter().max().copied().unwrap_or(0),
        "mean_bytes": sizes.iter().sum::<usize>() as f64 / n,
        "mean_wcu": sizes.iter().map(|s| wcu(*s, false)).sum::<u64>() as f64 / n,
    })
}

fn mean_wcu(sizes: &[usize]) -> f64 {
    sizes.iter().map(|s| wcu(*s, false)).sum::<u64>() as f64 / sizes.len().max(1) as f64
}

/// Global secondary indexes of the billing table with projection ALL (template.yaml): an
/// update of any attribute of an item with their keys rewrites its entry there.
const BILLING_ALL_GSIS: [&str; 3] = ["gsi1", "gsi2", "gsi3"];

struct Sizes {
    record: Vec<usize>,
    record_indexed: usize,
    lane: Vec<usize>,
    tally: Vec<usize>,
    invoice: Vec<usize>,
    invoice_gsis: Vec<usize>,
    invoice_statuses: BTreeMap<String, usize>,
}

impl Sizes {
    fn record_wcu(&self) -> f64 {
        mean_wcu(&self.record)
    }
    /// Index writes per record put: only late and unbillable records carry gsi1 keys (counted
    /// off the items read back).
    fn record_index_wcu(&self) -> f64 {
        self.record_indexed as f64 / self.record.len().max(1) as f64 * self.record_wcu()
    }
    fn lane_wcu(&self) -> f64 {
        mean_wcu(&self.lane)
    }
    fn tally_wcu(&self) -> f64 {
        mean_wcu(&self.tally)
    }
    /// The status flip: an UpdateItem of the invoice item (billed on the larger of before and
    /// after: after, since IN_PROGRESS is longer than DRAFTED), plus one write of the item in
    /// each ALL-projected index it has keys for.
    fn status_flip_wcu(&self) -> f64 {
        let n = self.invoice.len().max(1) as f64;
        self.invoice
            .iter()
            .zip(&self.invoice_gsis)
            .map(|(size, gsis)| (wcu(*size, false) * (1 + *gsis as u64)) as f64)
            .sum::<f64>()
            / n
    }
    fn json(&self) -> Value {
        json!({
            "record": size_stats(&self.record),
            "records_with_index_keys": self.record_indexed,
            "lane": size_stats(&self.lane),
            "tally": size_stats(&self.tally),
            "invoice": size_stats(&self.invoice),
            "invoice_all_projected_gsis": self.invoice_gsis.iter().copied().max().unwrap_or(0),
            "invoice_statuses": self.invoice_statuses,
            "wcu": {
                "record_put": self.record_wcu(),
                "record_index": self.record_index_wcu(),
                "lane_put": self.lane_wcu(),
                "tally_put": self.tally_wcu(),
                "claim_put": 1.0,
                "status_flip": self.status_flip_wcu(),
            },
        })
    }
}

/// Reads back a spread of the round's records, the lane shares and the invoices they touched.
async fn sample_sizes(
    env: &Env,
    catalog: &Catalog,
    seen: &[(CustomerId, String, Lane)],
) -> Result<(Sizes, Vec<(String, String, Item)>), BoxError> {
    let index: HashMap<&CustomerId, usize> = catalog
        .customers
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (c, i))
        .collect();
    let today = SystemClock.now().date_naive();
    let mut sizes = Sizes {
        record: Vec::new(),
        record_indexed: 0,
        lane: Vec::new(),
        tally: Vec::new(),
        invoice: Vec::new(),
        invoice_gsis: Vec::new(),
        invoice_statuses: BTreeMap::new(),
    };
    let mut templates = Vec::new();
    let step = (seen.len() / 25).max(1);
    let mut lanes_done = BTreeSet::new();
    let mut invoices_done = BTreeSet::new();
    for (customer, key, lane) in seen.iter().step_by(step) {
        let record = raw_keys::event_record(customer, key);
        let item = env
            .get(&env.usage_table, &record)
            .await?
            .ok_or_else(|| fail(format!("record {record:?} is missing")))?;
        sizes.record.push(item_size(&item));
        if item.contains_key("gsi1pk") {
            sizes.record_indexed += 1;
        }
        if templates.is_empty() {
            templates.push(("record".to_owned(), env.usage_table.clone(), item));
        }
        let c = index
            .get(customer)
            .ok_or_else(|| fail("an event of an unknown customer"))?;
        let invoice = catalog
            .invoice_for(*c, today)
            .ok_or_else(|| fail("no invoice covers today"))?;
        if lanes_done.insert((invoice.clone(), lane.number())) {
            let item = env
                .get(&env.table, &raw_keys::lane(&invoice, *lane))
                .await?
                .ok_or_else(|| fail(format!("lane {} of {invoice} is missing", lane.number())))?;
            sizes.lane.push(item_size(&item));
            if templates.len() == 1 {
                templates.push(("lane".to_owned(), env.table.clone(), item));
            }
        }
        if invoices_done.insert(invoice.clone()) {
            let item = env
                .get(&env.table, &raw_keys::invoice(&invoice))
                .await?
                .ok_or_else(|| fail(format!("invoice {invoice} is missing")))?;
            sizes.invoice.push(item_size(&item));
            sizes.invoice_gsis.push(
                BILLING_ALL_GSIS
                    .iter()
                    .filter(|g| item.contains_key(&format!("{g}pk")))
                    .count(),
            );
            let status = item
                .get("status")
                .and_then(|v| v.as_s().ok())
                .cloned()
                .unwrap_or_default();
            *sizes.invoice_statuses.entry(status).or_default() += 1;
            if templates.len() == 2 {
                templates.push(("invoice".to_owned(), env.table.clone(), item));
            }
        }
    }
    // The day tallies of the lanes seen (events are received today, by the system clock).
    let lanes: BTreeSet<Lane> = seen.iter().map(|(_, _, lane)| *lane).collect();
    for lane in lanes {
        let tally = raw_keys::day_tally(today, lane);
        let item = env
            .get(&env.usage_table, &tally)
            .await?
            .ok_or_else(|| fail(format!("tally {tally:?} is missing")))?;
        sizes.tally.push(item_size(&item));
        if templates.len() == 3 {
            templates.push(("tally".to_owned(), env.usage_table.clone(), item));
        }
    }
    Ok((sizes, templates))
}

fn describe_capacity(c: Option<&ConsumedCapacity>) -> Value {
    match c {
        None => Value::Null,
        Some(c) => json!({
            "total": c.capacity_units,
            "write_capacity_units": c.write_capacity_units,
            "table": c.table.as_ref().and_then(|t| t.capacity_units),
            "gsi": c.global_secondary_indexes.as_ref().map(|g| g.iter().map(|(k, v)| (k.clone(), json!(v.capacity_units))).collect::<serde_json::Map<_, _>>()),
        }),
    }
}

/// DynamoDB Local's own accounting (`ReturnConsumedCapacity=INDEXES`) of one record put, one
/// lane share put and one day tally put (each new, then replacing it) and one status flip,
/// each on a copy of a stored item under a probe key (deleted afterwards).
async fn emulator_capacity(
    env: &Env,
    templates: &[(String, String, Item)],
) -> Result<Value, BoxError> {
    let mut out = serde_json::Map::new();
    for (kind, table, template) in templates {
        let probe = format!("PROBE#{}", uuid::Uuid::new_v4().simple());
        let mut item = template.clone();
        item.insert("pk".into(), AttributeValue::S(probe.clone()));
        let sk = item
            .get("sk")
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        let size = item_size(&item);
        match kind.as_str() {
            "record" | "lane" | "tally" => {
                let first = env
                    .client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                    .send()
                    .await?;
                let mut entry = json!({
                    "item_bytes": size,
                    "estimate_wcu": wcu(size, false) * if item.contains_key("gsi1pk") { 2 } else { 1 },
                    "put_new": describe_capacity(first.consumed_capacity.as_ref()),
                });
                if kind != "record" {
                    let replace = env
                        .client
                        .put_item()
                        .table_name(table)
                        .set_item(Some(item.clone()))
                        .condition_expression("attribute_exists(pk)")
                        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                        .send()
                        .await?;
                    entry["put_replace"] = describe_capacity(replace.consumed_capacity.as_ref());
                }
                out.insert(kind.clone(), entry);
            }
            _ => {
                item.insert(
                    "status".into(),
                    AttributeValue::S(InvoiceStatus::Drafted.as_str().to_owned()),
                );
                env.client
                    .put_item()
                    .table_name(table)
                    .set_item(Some(item.clone()))
                    .send()
                    .await?;
                let flip = env
                    .client
                    .update_item()
                    .table_name(table)
                    .key("pk", AttributeValue::S(probe.clone()))
                    .key("sk", AttributeValue::S(sk.clone()))
                    .update_expression("SET #status = :in_progress")
                    .condition_expression("#status = :drafted")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(
                        ":in_progress",
                        AttributeValue::S(InvoiceStatus::InProgress.as_str().to_owned()),
                    )
                    .expression_attribute_values(
                        ":drafted",
                        AttributeValue::S(InvoiceStatus::Drafted.as_str().to_owned()),
                    )
                    .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                    .send()
                    .await?;
                let gsis = BILLING_ALL_GSIS
                    .iter()
                    .filter(|g| item.contains_key(&format!("{g}pk")))
                    .count() as u64;
                out.insert(
                    "status_flip".into(),
                    json!({
                        "item_bytes": size,
                        "estimate_wcu": wcu(size, false) * (1 + gsis),
                        "update": describe_capacity(flip.consumed_capacity.as_ref()),
                    }),
                );
            }
        }
        env.client
            .delete_item()
            .table_name(table)
            .key("pk", AttributeValue::S(probe))
            .key("sk", AttributeValue::S(sk))
            .send()
            .await?;
    }
    Ok(Value::Object(out))
}

/// WCU of a round's writes, from its counts and the sampled sizes.
fn round_wcu(r: &BatchReport, s: &Sizes) -> Value {
    let records = r.record_writes as f64 * s.record_wcu();
    let record_index = (r.record_writes + r.relabels) as f64 * s.record_index_wcu();
    let lanes = r.lane_writes as f64 * s.lane_wcu();
    let claims = r.claim_writes as f64;
    let relabels = r.relabels as f64 * s.record_wcu();
    let flips = r.status_writes as f64 * s.status_flip_wcu();
    let tallies = r.tally_writes as f64 * s.tally_wcu();
    let total = records + record_index + lanes + claims + relabels + flips + tallies;
    let e = r.recorded.max(1) as f64;
    json!({
        "records": records / e,
        "record_index": record_index / e,
        "lanes": lanes / e,
        "claims": claims / e,
        "relabels": relabels / e,
        "status_flips": flips / e,
        "tallies": tallies / e,
        "total": total / e,
        "writes_per_event": r.writes() as f64 / e,
    })
}

async fn scenario(
    env: &Env,
    name: &str,
    catalog: &Catalog,
    compositions: &[(usize, usize)],
) -> Result<Value, BoxError> {
    let counting = Arc::new(Counting::new(env.store.clone()));
    let matcher = Matcher::new(env.store.clone(), counting.clone(), Arc::new(SystemClock));
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();

    // Warm-up: one request reaching every customer once (each invoice's first usage flips it to
    // In Progress and writes its first lane share); a warm matcher cache.
    let before = env.store.usage_write_actions();
    let mut warm_source = Source::new(
        catalog,
        format!("warm-{name}-{tag}"),
        catalog.customers.len().max(100),
    );
    let warm = run_request(&matcher, &mut warm_source).await?;
    let warm_actions = env.store.usage_write_actions() - before;
    if warm.report.status_writes != catalog.customers.len() {
        return Err(fail(format!(
            "{name}: warm-up flipped {} invoices of {}",
            warm.report.status_writes,
            catalog.customers.len()
        )));
    }
    eprintln!(
        "usage-bench writes: {name}: warm-up {} events, {} status flips, {} lane writes",
        warm.events, warm.report.status_writes, warm.report.lane_writes
    );

    let mut rounds = Vec::new();
    let mut sizes_json = Value::Null;
    let mut capacity = Value::Null;
    let mut sizes: Option<Sizes> = None;
    for &(k, batches) in compositions {
        let mut source = Source::new(catalog, format!("w-{name}-{k}-{tag}"), EVENTS_PER_REQUEST);
        let before = env.store.usage_write_actions();
        let reads_before = counting.reads();
        let round = run_batches(&matcher, &mut source, k, batches).await?;
        let actions = env.store.usage_write_actions() - before;
        let reads_after = counting.reads();
        if actions != round.report.writes() as u64 {
            return Err(fail(format!(
                "{name} k={k}: the adapter counted {actions} writes, the reports {}",
                round.report.writes()
            )));
        }
        if sizes.is_none() {
            let (s, templates) = sample_sizes(env, catalog, &round.seen).await?;
            sizes_json = s.json();
            capacity = emulator_capacity(env, &templates)
                .await
                .unwrap_or_else(|e| json!({"error": e.to_string()}));
            sizes = Some(s);
        }
        let s = sizes.as_ref().ok_or_else(|| fail("no sizes"))?;
        let mut row = round.json(k);
        row["adapter_write_actions"] = json!(actions);
        row["wcu_per_event"] = round_wcu(&round.report, s);
        row["reads"] = json!({
            "status_requests": reads_after[0] - reads_before[0],
            "statuses_read": reads_after[1] - reads_before[1],
            "lane_requests": reads_after[2] - reads_before[2],
            "lanes_read": reads_after[3] - reads_before[3],
            "tally_requests": reads_after[4] - reads_before[4],
            "tallies_read": reads_after[5] - reads_before[5],
            "items_read_per_event": ((reads_after[1] - reads_before[1]) + (reads_after[3] - reads_before[3]) + (reads_after[5] - reads_before[5])) as f64 / round.events.max(1) as f64,
        });
        eprintln!(
            "usage-bench writes: {name}: {k} messages/batch: {} batches, {} events, {:.1} events/customer/batch, {:.4} WCU/event",
            round.batches,
            round.events,
            round.events_per_customer.iter().sum::<f64>() / round.batches.max(1) as f64,
            row["wcu_per_event"]["total"].as_f64().unwrap_or(0.0)
        );
        rounds.push(row);
    }
    let s = sizes.as_ref().ok_or_else(|| fail("no sizes"))?;
    let mut warm_json = warm.json(1);
    warm_json["adapter_write_actions"] = json!(warm_actions);
    warm_json["status_flip_wcu_per_invoice"] = json!(s.status_flip_wcu());
    Ok(json!({
        "customers": catalog.customers.len(),
        "events_per_request": EVENTS_PER_REQUEST,
        "batch_size": BATCH_SIZE,
        "warmup": warm_json,
        "sizes": sizes_json,
        "emulator_consumed_capacity": capacity,
        "rounds": rounds,
    }))
}

async fn writes(env: &Env, scale: f64) -> Result<Value, BoxError> {
    let billing = env.billing();
    let start = contract_start(SystemClock.now());
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let setup = Instant::now();
    let one = create_catalog(&billing, &format!("bench_w1_{tag}"), 1, start, 1).await?;
    let many = create_catalog(&billing, &format!("bench_wm_{tag}"), 1000, start, 8).await?;
    let setup_secs = setup.elapsed().as_secs_f64();
    eprintln!(
        "usage-bench writes: catalog (1 + 1,000 customers with contracts) in {setup_secs:.1} s"
    );
    let n = |b: f64| ((b * scale).round() as usize).max(1);
    // (messages per batch, batches): the deployed BatchSize first (a lane with a backlog), then
    // fuller and thinner traffic for the same lane.
    let compositions = [(BATCH_SIZE, n(6.0)), (5, n(3.0)), (2, n(3.0)), (1, n(5.0))];
    let one_row = scenario(env, "oneCustomer", &one, &compositions).await?;
    let many_row = scenario(env, "thousandCustomers", &many, &compositions).await?;
    Ok(json!({
        "setup_seconds": setup_secs,
        "scenarios": {"oneCustomer": one_row, "thousandCustomers": many_row},
    }))
}

// --- 2. Concurrent matchers on one customer -----------------------------------------------------

async fn concurrent(env: &Env, events: usize, matchers: usize) -> Result<Value, BoxError> {
    let billing = env.billing();
    let now = SystemClock.now();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let catalog = create_catalog(
        &billing,
        &format!("bench_c4_{tag}"),
        1,
        contract_start(now),
        1,
    )
    .await?;
    let invoice = catalog
        .invoice_for(0, now.date_naive())
        .ok_or_else(|| fail("no invoice covers today"))?;

    // Warm-up: the invoice's first usage, and each matcher's cache (a resend of a warm-up
    // event: recorded before, it counts nothing).
    let warm = 100usize;
    let first = Matcher::new(env.store.clone(), env.store.clone(), Arc::new(SystemClock));
    let mut warm_source = Source::new(&catalog, format!("c4w-{tag}"), warm);
    run_request(&first, &mut warm_source).await?;
    let resend = usage_bench::events(&catalog, &format!("c4w-{tag}"), 0, 1, now);
    let mut workers = Vec::new();
    for _ in 0..matchers {
        let m = Matcher::new(env.store.clone(), env.store.clone(), Arc::new(SystemClock));
        m.process(vec![LaneMessage::new(resend.clone())]).await?;
        workers.push(m);
    }

    // The work: requests of EVENTS_PER_REQUEST events packed onto lanes; matcher w takes the
    // lanes whose number is w modulo N, each lane's messages in order, ≤ 10 per batch.
    let mut source = Source::new(&catalog, format!("c4-{tag}"), EVENTS_PER_REQUEST);
    while source.next < events {
        source.request()?;
    }
    let events = source.next;
    let lanes = source.take_lanes();
    let mut shares: Vec<Vec<VecDeque<LaneMessage>>> = (0..matchers).map(|_| Vec::new()).collect();
    let mut messages = 0usize;
    for (number, queue) in lanes {
        messages += queue.len();
        shares[usize::from(number) % matchers].push(queue.into_iter().map(|(m, _)| m).collect());
    }
    let writes_before = env.store.usage_write_actions();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (matcher, mut queues) in workers.into_iter().zip(shares) {
        tasks.push(tokio::spawn(async move {
            let mut report = BatchReport::default();
            let mut batches = 0usize;
            let mut messages = 0usize;
            let mut failed = 0usize;
            // Round robin over this matcher's lanes, one batch at a time.
            while queues.iter().any(|q| !q.is_empty()) {
                for q in queues.iter_mut().filter(|q| !q.is_empty()) {
                    let n = q.len().min(BATCH_SIZE);
                    let batch: Vec<LaneMessage> = q.drain(..n).collect();
                    batches += 1;
                    messages += n;
                    let mut attempt = 0;
                    loop {
                        attempt += 1;
                        match matcher.process(batch.clone()).await {
                            Ok(r) => {
                                add_report(&mut report, &r);
                                break;
                            }
                            // A failed invocation's batch is redelivered (here: at once).
                            Err(e) if attempt < 20 => {
                                failed += 1;
                                eprintln!("usage-bench concurrent: batch failed: {e}");
                            }
                            Err(e) => return Err(fail(format!("a batch failed 20 times: {e}"))),
                        }
                    }
                }
            }
            Ok::<_, BoxError>((report, batches, messages, failed))
        }));
    }
    let mut report = BatchReport::default();
    let mut batches = 0usize;
    let mut failed = 0usize;
    let mut per_matcher = Vec::new();
    for t in tasks {
        let (r, b, m, f) = t.await??;
        per_matcher.push(json!({"batches": b, "messages": m, "events": r.recorded, "conflicts": r.conflicts, "retries": r.retries}));
        add_report(&mut report, &r);
        batches += b;
        failed += f;
    }
    let seconds = started.elapsed().as_secs_f64();
    let writes = env.store.usage_write_actions() - writes_before;
    let counted = env.count_of(&invoice, &catalog).await?;
    if counted != (warm + events) as u64 || report.recorded != events {
        return Err(fail(format!(
            "{events} events sent: {} recorded, invoice counts {counted} (expected {})",
            report.recorded,
            warm + events
        )));
    }
    let per_1000 = |n: usize| n as f64 * 1000.0 / events as f64;
    eprintln!(
        "usage-bench concurrent: {matchers} matchers, {events} events in {seconds:.1} s ({:.0} events/s), {} conflicts, {} retries",
        events as f64 / seconds,
        report.conflicts,
        report.retries
    );
    Ok(json!({
        "design": "lanes (this commit)",
        "matchers": matchers,
        "events": events,
        "events_per_request": EVENTS_PER_REQUEST,
        "messages": messages,
        "batches": batches,
        "messages_per_batch": messages as f64 / batches.max(1) as f64,
        "warmup_events": warm,
        "seconds": seconds,
        "events_per_second": events as f64 / seconds,
        "invoice_count": counted,
        "adapter_write_actions": writes,
        "failed_invocations": failed,
        "report": report_json(&report),
        "per_matcher": per_matcher,
        "conflicts": report.conflicts,
        "retries": report.retries,
        "conflicts_per_1000_events": per_1000(report.conflicts),
        "retries_per_1000_events": per_1000(report.retries),
    }))
}

// --- 3. Freshness through the dev server --------------------------------------------------------

fn batch_body(catalog: &Catalog, run: &str, first: usize, count: usize) -> String {
    let customer = catalog.customers[0].0.as_str();
    let events: Vec<Value> = (first..first + count)
        .map(|i| {
            json!({
                "eventName": catalog.event_name,
                "customerId": customer,
                "idempotencyKey": usage_bench::idempotency_key(run, i),
                "properties": {"tokens": usage_bench::tokens(i)},
            })
        })
        .collect();
    json!({ "events": events }).to_string()
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: String,
    expected: usize,
) -> Result<(), BoxError> {
    let response = http
        .post(format!("{url}/v1/events/batch"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status.as_u16() != 202 || answer["accepted"].as_u64() != Some(expected as u64) {
        return Err(fail(format!(
            "batch not fully accepted ({status}): {answer}"
        )));
    }
    Ok(())
}

/// The invoice's COUNT quantity as `GET /v1/invoices/{id}` shows it.
async fn api_count(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    invoice: &InvoiceId,
    price: &str,
) -> Result<u64, BoxError> {
    let body: Value = http
        .get(format!("{url}/v1/invoices/{invoice}"))
        .bearer_auth(key)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let quantity = body["lineItems"]
        .as_array()
        .and_then(|lines| lines.iter().find(|l| l["priceId"] == price))
        .and_then(|l| l["quantity"].as_str())
        .ok_or_else(|| fail(format!("no COUNT line in {body}")))?;
    Ok(quantity.parse::<rust_decimal::Decimal>()?.try_into()?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn distribution(values: &[f64]) -> Value {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    json!({
        "n": sorted.len(),
        "min": sorted.first().copied().unwrap_or(0.0),
        "p50": percentile(&sorted, 50.0),
        "p90": percentile(&sorted, 90.0),
        "p99": percentile(&sorted, 99.0),
        "max": sorted.last().copied().unwrap_or(0.0),
        "mean": sorted.iter().sum::<f64>() / sorted.len().max(1) as f64,
    })
}

async fn fresh(
    env: &Env,
    seconds: f64,
    rate: f64,
    per_request: usize,
    e2e_events: usize,
) -> Result<Value, BoxError> {
    let billing = env.billing();
    let now = SystemClock.now();
    let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let catalog = create_catalog(
        &billing,
        &format!("bench_fresh_{tag}"),
        1,
        contract_start(now),
        1,
    )
    .await?;
    let invoice = catalog
        .invoice_for(0, now.date_naive())
        .ok_or_else(|| fail("no invoice covers today"))?;
    let price = catalog.plan.prices[1].id.to_string();

    let key = format!("sk_bench_{}", uuid::Uuid::new_v4().simple());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server = dev_server::start(
        listener,
        dev_server::Options {
            seed_api_key: Some(key.clone()),
            poll_usage_queue: true,
            ..Default::default()
        },
    )
    .await?;
    let url = server.url();
    let http = reqwest::Client::new();

    // Warm-up: connections, the API key cache, the matcher's catalog cache, the invoice's
    // first usage.
    let warm = 100usize;
    post(
        &http,
        &url,
        &key,
        batch_body(&catalog, &format!("fw-{tag}"), 0, warm),
        warm,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while api_count(&http, &url, &key, &invoice, &price).await? < warm as u64 {
        if Instant::now() > deadline {
            return Err(fail("the warm-up was not counted within 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The poller: the invoice's COUNT every 20 ms, with the time each answer arrived.
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (http, url, key, invoice, price, stop) = (
            http.clone(),
            url.clone(),
            key.clone(),
            invoice.clone(),
            price.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            let mut samples: Vec<(f64, u64)> = Vec::new();
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                match api_count(&http, &url, &key, &invoice, &price).await {
                    Ok(count) => samples.push((t0.elapsed().as_secs_f64(), count)),
                    Err(e) => eprintln!("usage-bench fresh: poll failed: {e}"),
                }
                next += Duration::from_millis(20);
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                } else {
                    next = now;
                }
            }
            samples
        })
    };

    // The senders: one request every 1/rate s, each timed from send to its 202.
    let requests = (seconds * rate).round().max(1.0) as usize;
    let run = format!("f-{tag}");
    let mut sent = Vec::new();
    for i in 0..requests {
        let at = t0 + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        let body = batch_body(&catalog, &run, i * per_request, per_request);
        sent.push(tokio::spawn(async move {
            let send = t0.elapsed().as_secs_f64();
            post(&http, &url, &key, body, per_request).await?;
            Ok::<_, BoxError>((send, t0.elapsed().as_secs_f64()))
        }));
    }
    let mut acks = Vec::new();
    for s in sent {
        acks.push(s.await??);
    }
    let target = (warm + requests * per_request) as u64;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if api_count(&http, &url, &key, &invoice, &price).await? >= target {
            break;
        }
        if Instant::now() > deadline {
            stop.store(true, Ordering::Relaxed);
            return Err(fail(
                "not every event was counted within 300 s of the last 202",
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);
    let samples = poller.await?;

    // Per request: the first poll answer, arriving after its 202, whose count covers it and
    // every request before it (messages are matched in the order they were sent, lane by lane).
    let mut delays = Vec::new();
    let mut latencies = Vec::new();
    for (i, (send, ack)) in acks.iter().enumerate() {
        latencies.push(ack - send);
        let needed = (warm + (i + 1) * per_request) as u64;
        let seen = samples
            .iter()
            .find(|(t, count)| *t >= *ack && *count >= needed)
            .ok_or_else(|| fail(format!("request {i} was never seen counted")))?;
        delays.push(seen.0 - ack);
    }
    let intervals: Vec<f64> = samples.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let freshness = distribution(&delays);
    eprintln!(
        "usage-bench fresh: {requests} requests of {per_request} events at {rate}/s: 202 → counted p50 {:.3} s, p99 {:.3} s, max {:.3} s",
        freshness["p50"].as_f64().unwrap_or(0.0),
        freshness["p99"].as_f64().unwrap_or(0.0),
        freshness["max"].as_f64().unwrap_or(0.0)
    );

    // The old end-to-end rate: a burst of posts of 1,000 events, one after another, timed from
    // the first POST until the invoice counts them all.
    let base = target;
    let e2e_run = format!("e-{tag}");
    let per_post = 1_000usize;
    let started = Instant::now();
    let mut post_latencies = Vec::new();
    for first in (0..e2e_events).step_by(per_post) {
        let n = per_post.min(e2e_events - first);
        let t = Instant::now();
        post(
            &http,
            &url,
            &key,
            batch_body(&catalog, &e2e_run, first, n),
            n,
        )
        .await?;
        post_latencies.push(t.elapsed().as_secs_f64());
    }
    let ingest = started.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if api_count(&http, &url, &key, &invoice, &price).await? >= base + e2e_events as u64 {
            break;
        }
        if Instant::now() > deadline {
            return Err(fail("the e2e burst was not counted within 600 s"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e2e_seconds = started.elapsed().as_secs_f64();
    drop(server);
    let final_count = env.count_of(&invoice, &catalog).await?;
    eprintln!(
        "usage-bench fresh: e2e burst of {e2e_events} events counted after {e2e_seconds:.2} s ({:.0} events/s)",
        e2e_events as f64 / e2e_seconds
    );
    Ok(json!({
        "requests": requests,
        "events_per_request": per_request,
        "requests_per_second": rate,
        "events_per_second_offered": rate * per_request as f64,
        "seconds": seconds,
        "warmup_events": warm,
        "poll_samples": samples.len(),
        "poll_interval": distribution(&intervals),
        "post_latency": distribution(&latencies),
        "freshness_seconds": freshness,
        "e2e": {
            "events": e2e_events,
            "per_post": per_post,
            "ingest_seconds": ingest,
            "post_latency": distribution(&post_latencies),
            "seconds": e2e_seconds,
            "events_per_second": e2e_events as f64 / e2e_seconds,
        },
        "final_invoice_count": final_count,
    }))
}

// --- Main ------------------------------------------------------------------------------------

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn parsed<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, BoxError>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(arg(args, name)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(default))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: usage-bench (writes|concurrent|fresh) --out FILE [--scale F] [--events N] [--matchers N] [--seconds S] [--rate R] [--per-request N] [--e2e-events N]";
    let command = args.first().cloned().ok_or_else(|| fail(usage))?;
    let out = arg(&args, "--out").ok_or_else(|| fail(usage))?;
    let env = Env::load().await?;
    let started = Instant::now();
    let mut result = match command.as_str() {
        "writes" => writes(&env, parsed(&args, "--scale", 1.0)?).await?,
        "concurrent" => {
            concurrent(
                &env,
                parsed(&args, "--events", 40_000)?,
                parsed(&args, "--matchers", 4)?,
            )
            .await?
        }
        "fresh" => {
            fresh(
                &env,
                parsed(&args, "--seconds", 30.0)?,
                parsed(&args, "--rate", 5.0)?,
                parsed(&args, "--per-request", 100)?,
                parsed(&args, "--e2e-events", 20_000)?,
            )
            .await?
        }
        _ => return Err(fail(usage)),
    };
    if let Value::Object(map) = &mut result {
        map.insert(
            "wall_seconds".into(),
            json!(started.elapsed().as_secs_f64()),
        );
    }
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
