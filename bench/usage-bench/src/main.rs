//! The usage benchmarks that need the local stack (run by bench/usage.sh, which starts a stack
//! of its own and loads its environment):
//!
//!   usage-bench writes --out FILE [--scale F]      DynamoDB write actions (and WCU) per event
//!   usage-bench e2e --out FILE [--events N] [--per-post N]
//!                                                  API → SQS → matcher → DynamoDB Local rate,
//!                                                  beside the emulator's raw conditional-put rate
//!   usage-bench sqs --out FILE                     SendMessageBatch requests per event
//!
//! Each writes one JSON document; bench/usage_report.py turns them into bench/results/usage.md.
//! Every loop is bounded in count and time; every address is the local stack's (loopback).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnConsumedCapacity, Select, TransactWriteItem,
};
use billing::Billing;
use billing::aggregation::Aggregation;
use billing::ids::{CustomerId, InvoiceId};
use billing::invoice::Invoice;
use billing::matcher::{BatchReport, Matcher};
use billing::pagination::{Page, PageRequest};
use billing::ports::{Clock, SystemClock};
use billing::ports::{CommitOutcome, EventFilter, InvoiceUsage, UsageCommit, UsageStore};
use billing::usage::{EventRecord, UsageEvent};
use billing_aws::dynamodb::DynamoStore;
use billing_startup::Startup;
use serde_json::{Value, json};
use usage_bench::{Catalog, contract_start, create_catalog, item_size, wcu};

type Item = HashMap<String, AttributeValue>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn fail(message: impl Into<String>) -> BoxError {
    message.into().into()
}

struct Env {
    startup: Startup,
    store: Arc<DynamoStore>,
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Env {
    async fn load() -> Result<Self, BoxError> {
        let startup = Startup::from_env().await?;
        Ok(Self {
            store: startup.store(),
            client: aws_sdk_dynamodb::Client::new(startup.aws()),
            table: startup.config().table_name.clone(),
            startup,
        })
    }

    fn billing(&self) -> Billing {
        Billing::new(self.store.clone(), Arc::new(SystemClock), None)
    }

    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, BoxError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .key("sk", AttributeValue::S(sk.to_owned()))
            .consistent_read(true)
            .send()
            .await?
            .item)
    }

    /// Event records stored for one customer (a COUNT query on gsi2, paged).
    async fn count_records(&self, customer: &CustomerId) -> Result<u64, BoxError> {
        let mut total = 0u64;
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .index_name("gsi2")
                .key_condition_expression("gsi2pk = :pk AND begins_with(gsi2sk, :prefix)")
                .expression_attribute_values(
                    ":pk",
                    AttributeValue::S(format!("CUSTOMER#{customer}")),
                )
                .expression_attribute_values(":prefix", AttributeValue::S("EVENT#".into()))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await?;
            total += out.count as u64;
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(total),
            }
        }
    }
}

fn record_pk(customer: &CustomerId, run: &str, i: usize) -> String {
    format!("EVENT#{customer}#{}", usage_bench::idempotency_key(run, i))
}

fn invoice_pk(id: &InvoiceId) -> String {
    format!("INVOICE#{id}")
}

/// The usage port, counting what the matcher asks of it (reads, invoice creations, commit
/// attempts by outcome), then delegating to the DynamoDB adapter.
struct Counting {
    inner: Arc<DynamoStore>,
    invoice_reads: AtomicU64,
    invoices_read: AtomicU64,
    ensures: AtomicU64,
    commits: AtomicU64,
    committed: AtomicU64,
    not_committed: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<DynamoStore>) -> Self {
        Self {
            inner,
            invoice_reads: AtomicU64::new(0),
            invoices_read: AtomicU64::new(0),
            ensures: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            not_committed: AtomicU64::new(0),
        }
    }

    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl UsageStore for Counting {
    async fn invoice_states(
        &self,
        ids: &[InvoiceId],
    ) -> billing::Result<HashMap<InvoiceId, InvoiceUsage>> {
        self.invoice_reads.fetch_add(1, Ordering::Relaxed);
        self.invoices_read
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        self.inner.invoice_states(ids).await
    }

    async fn ensure_invoice(&self, invoice: &Invoice) -> billing::Result<()> {
        self.ensures.fetch_add(1, Ordering::Relaxed);
        self.inner.ensure_invoice(invoice).await
    }

    async fn commit(&self, commit: &UsageCommit) -> billing::Result<CommitOutcome> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let outcome = self.inner.commit(commit).await;
        match &outcome {
            Ok(CommitOutcome::Committed) => self.committed.fetch_add(1, Ordering::Relaxed),
            _ => self.not_committed.fetch_add(1, Ordering::Relaxed),
        };
        outcome
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> billing::Result<Page<EventRecord>> {
        self.inner.list_events(filter, page).await
    }
}

fn add_report(total: &mut BatchReport, r: BatchReport) {
    total.recorded += r.recorded;
    total.duplicates += r.duplicates;
    total.transactions += r.transactions;
    total.write_actions += r.write_actions;
    for (k, v) in r.by_status {
        *total.by_status.entry(k).or_default() += v;
    }
}

fn stats(sizes: &[usize]) -> Value {
    let n = sizes.len().max(1);
    json!({
        "samples": sizes.len(),
        "min_bytes": sizes.iter().min().copied().unwrap_or(0),
        "max_bytes": sizes.iter().max().copied().unwrap_or(0),
        "mean_bytes": sizes.iter().sum::<usize>() as f64 / n as f64,
        "mean_transactional_wcu": sizes.iter().map(|s| wcu(*s, true)).sum::<u64>() as f64 / n as f64,
        "mean_standard_wcu": sizes.iter().map(|s| wcu(*s, false)).sum::<u64>() as f64 / n as f64,
    })
}

fn mean_wcu(sizes: &[usize], transactional: bool) -> f64 {
    sizes.iter().map(|s| wcu(*s, transactional)).sum::<u64>() as f64 / sizes.len().max(1) as f64
}

// --- 1. Write actions per event ----------------------------------------------------------------

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

    let mut rows = Vec::new();
    for (scenario, catalog) in [("one_customer", &one), ("1000_customers", &many)] {
        for batch in [1usize, 10, 100, 1000] {
            let total = (match batch {
                1 => 200.0,
                10 => 1000.0,
                100 => 3000.0,
                _ => 5000.0,
            } * scale)
                .round()
                .max(batch as f64) as usize;
            let total = total / batch * batch;
            rows.push(write_row(env, scenario, catalog, batch, total).await?);
        }
    }
    Ok(json!({
        "setup_seconds": setup_secs,
        "customers": {"one_customer": 1, "1000_customers": 1000},
        "rows": rows,
        "emulator_consumed_capacity": emulator_capacity(env).await.unwrap_or_else(|e| json!({"error": e.to_string()})),
    }))
}

async fn write_row(
    env: &Env,
    scenario: &str,
    catalog: &Catalog,
    batch: usize,
    total: usize,
) -> Result<Value, BoxError> {
    let counting = Arc::new(Counting::new(env.store.clone()));
    // A fresh matcher per row: a cold Lambda whose catalog cache fills on its first batch.
    let matcher = Matcher::new(env.store.clone(), counting.clone(), Arc::new(SystemClock));
    let run = format!(
        "w{}-{scenario}-{batch}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let at = SystemClock.now();
    let before = env.store.usage_write_actions();
    let mut report = BatchReport::default();
    let started = Instant::now();
    for first in (0..total).step_by(batch) {
        let events = usage_bench::events(catalog, &run, first, batch, at);
        add_report(&mut report, matcher.process(events).await?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let actions = env.store.usage_write_actions() - before;
    let matched = report.by_status.get("matched").copied().unwrap_or(0);
    if report.recorded != total || matched != total {
        return Err(fail(format!(
            "{scenario} batch {batch}: {total} events sent, {} recorded, {matched} matched: {report:?}",
            report.recorded
        )));
    }

    // Item sizes as stored: a sample of this row's event records, and the invoices they touched.
    let step = (total / 25).max(1);
    let mut record_sizes = Vec::new();
    for i in (0..total).step_by(step) {
        let customer = &catalog.customers[i % catalog.customers.len()].0;
        let item = env
            .get(&record_pk(customer, &run, i), "EVENT")
            .await?
            .ok_or_else(|| fail(format!("record {i} of {run} is missing")))?;
        record_sizes.push(item_size(&item));
    }
    let today = at.date_naive();
    let touched = total.min(catalog.customers.len());
    let mut invoice_sizes = Vec::new();
    for c in (0..touched).step_by((touched / 25).max(1)) {
        let id = catalog
            .invoice_for(c, today)
            .ok_or_else(|| fail("no invoice covers today"))?;
        let item = env
            .get(&invoice_pk(&id), "INVOICE")
            .await?
            .ok_or_else(|| fail(format!("invoice {id} is missing")))?;
        invoice_sizes.push(item_size(&item));
    }
    let records = report.recorded as u64;
    let invoice_updates = actions.saturating_sub(records);
    let table_wcu = records as f64 * mean_wcu(&record_sizes, true)
        + invoice_updates as f64 * mean_wcu(&invoice_sizes, true);
    // Index propagation (projection ALL): a record is written to gsi1 and gsi2, an invoice
    // update rewrites its entries in gsi1, gsi2 and gsi3; each a standard write of the item.
    let gsi_wcu = records as f64 * 2.0 * mean_wcu(&record_sizes, false)
        + invoice_updates as f64 * 3.0 * mean_wcu(&invoice_sizes, false);
    let per_event = |x: f64| x / total as f64;
    let row = json!({
        "scenario": scenario,
        "customers": catalog.customers.len(),
        "batch": batch,
        "events": total,
        "matcher_calls": total / batch,
        "recorded": report.recorded,
        "write_actions_adapter": actions,
        "write_actions_report": report.write_actions,
        "transactions": report.transactions,
        "commit_attempts": Counting::get(&counting.commits),
        "commits_not_committed": Counting::get(&counting.not_committed),
        "invoice_state_reads": Counting::get(&counting.invoice_reads),
        "invoices_read": Counting::get(&counting.invoices_read),
        "ensure_invoice_puts": Counting::get(&counting.ensures),
        "invoice_updates": invoice_updates,
        "write_actions_per_event": per_event(actions as f64),
        "transactions_per_event": per_event(report.transactions as f64),
        "record_item": stats(&record_sizes),
        "invoice_item": stats(&invoice_sizes),
        "table_wcu_per_event": per_event(table_wcu),
        "gsi_wcu_per_event": per_event(gsi_wcu),
        "total_wcu_per_event": per_event(table_wcu + gsi_wcu),
        "write_actions_x2_per_event": per_event(2.0 * actions as f64),
        "seconds": seconds,
        "events_per_second": total as f64 / seconds,
    });
    eprintln!(
        "usage-bench writes: {scenario:>14} batch {batch:>4}: {total:>5} events, {actions:>5} write actions ({:.3}/event), {} transactions, {:.1} s",
        actions as f64 / total as f64,
        report.transactions,
        seconds
    );
    Ok(row)
}

/// What DynamoDB Local itself reports as consumed for a transactional put of a stored event
/// record (copied under a new key) and a non-transactional one, with per-index detail.
async fn emulator_capacity(env: &Env) -> Result<Value, BoxError> {
    let template = sample_record(env).await?;
    let mut out = serde_json::Map::new();
    for transactional in [true, false] {
        let mut item = template.clone();
        let key = format!("EVENT#capacity-probe-{}", uuid::Uuid::new_v4().simple());
        item.insert("pk".into(), AttributeValue::S(key));
        let consumed = if transactional {
            let put = Put::builder()
                .table_name(&env.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build()?;
            env.client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put).build())
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await?
                .consumed_capacity
                .unwrap_or_default()
        } else {
            env.client
                .put_item()
                .table_name(&env.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await?
                .consumed_capacity
                .into_iter()
                .collect()
        };
        let described: Vec<Value> = consumed
            .iter()
            .map(|c| {
                json!({
                    "capacity_units": c.capacity_units,
                    "write_capacity_units": c.write_capacity_units,
                    "table": c.table.as_ref().and_then(|t| t.capacity_units),
                    "gsi": c.global_secondary_indexes.as_ref().map(|g| g.iter().map(|(k, v)| (k.clone(), json!(v.capacity_units))).collect::<serde_json::Map<_, _>>()),
                })
            })
            .collect();
        out.insert(
            if transactional {
                "transact_put_record"
            } else {
                "put_record"
            }
            .to_owned(),
            json!({ "record_bytes": item_size(&template), "consumed": described }),
        );
    }
    Ok(Value::Object(out))
}

/// One stored event record item (any), as a template.
async fn sample_record(env: &Env) -> Result<Item, BoxError> {
    let out = env
        .client
        .query()
        .table_name(&env.table)
        .index_name("gsi1")
        .key_condition_expression("gsi1pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("EVENT#matched".into()))
        .limit(1)
        .send()
        .await?;
    let key = out
        .items
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| fail("no event record stored yet"))?;
    let pk = key
        .get("pk")
        .and_then(|v| v.as_s().ok())
        .cloned()
        .unwrap_or_default();
    env.get(&pk, "EVENT")
        .await?
        .ok_or_else(|| fail("sample record vanished"))
}

// --- 2. End to end -------------------------------------------------------------------------------

async fn invoice_count(env: &Env, invoice: &InvoiceId) -> Result<(u64, u64), BoxError> {
    let states = env
        .store
        .invoice_states(std::slice::from_ref(invoice))
        .await?;
    let state = states
        .get(invoice)
        .ok_or_else(|| fail(format!("invoice {invoice} is missing")))?;
    let count = state
        .aggregates
        .values()
        .filter(|a| a.kind() == Aggregation::Count)
        .map(|a| a.quantity())
        .sum::<rust_decimal::Decimal>();
    Ok((count.try_into().unwrap_or(0), state.version))
}

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

/// Posts `count` events from `first` in batches of `per_post`; returns per-post latencies.
async fn post_all(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    bodies: Vec<String>,
    per_post: usize,
) -> Result<Vec<f64>, BoxError> {
    let mut latencies = Vec::with_capacity(bodies.len());
    for body in bodies {
        let t = Instant::now();
        let response = http
            .post(format!("{url}/v1/events/batch"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.as_u16() != 202 || answer["accepted"].as_u64() != Some(per_post as u64) {
            return Err(fail(format!(
                "batch not fully accepted ({status}): {answer}"
            )));
        }
        latencies.push(t.elapsed().as_secs_f64());
    }
    Ok(latencies)
}

async fn wait_count(
    env: &Env,
    invoice: &InvoiceId,
    target: u64,
    deadline: Duration,
    since: Instant,
) -> Result<(Duration, u64), BoxError> {
    loop {
        let (count, version) = invoice_count(env, invoice).await?;
        if count >= target {
            return Ok((since.elapsed(), version));
        }
        if since.elapsed() > deadline {
            return Err(fail(format!(
                "only {count} of {target} events matched after {} s",
                deadline.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn e2e(env: &Env, events: usize, per_post: usize) -> Result<Value, BoxError> {
    let billing = env.billing();
    let now = SystemClock.now();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let catalog = create_catalog(
        &billing,
        &format!("bench_e2e_{tag}"),
        1,
        contract_start(now),
        1,
    )
    .await?;
    let invoice = catalog
        .invoice_for(0, now.date_naive())
        .ok_or_else(|| fail("no invoice covers today"))?;

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

    // Warm-up: connections, the API key cache, the matcher's catalog cache.
    let warm = 100usize;
    let warm_run = format!("e2e-warm-{tag}");
    let since = Instant::now();
    post_all(
        &http,
        &url,
        &key,
        vec![batch_body(&catalog, &warm_run, 0, warm)],
        warm,
    )
    .await?;
    let (warm_time, v0) =
        wait_count(env, &invoice, warm as u64, Duration::from_secs(120), since).await?;
    eprintln!(
        "usage-bench e2e: warm-up of {warm} events matched in {:.2} s",
        warm_time.as_secs_f64()
    );

    let run = format!("e2e-{tag}");
    let bodies: Vec<String> = (0..events)
        .step_by(per_post)
        .map(|first| batch_body(&catalog, &run, first, per_post.min(events - first)))
        .collect();
    let body_bytes: usize = bodies.iter().map(String::len).sum();
    let posts = bodies.len();
    let started = Instant::now();
    let poster = {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        tokio::spawn(async move {
            let r = post_all(&http, &url, &key, bodies, per_post).await;
            (r, started.elapsed())
        })
    };
    let target = (warm + events) as u64;
    let (done, v1) = wait_count(env, &invoice, target, Duration::from_secs(900), started).await?;
    let (latencies, ingest_time) = poster.await?;
    let latencies = latencies?;
    drop(server);
    let stored = env.count_records(&catalog.customers[0].0).await?;
    if stored != target {
        return Err(fail(format!(
            "{stored} event records stored, expected {target}"
        )));
    }
    let transactions = v1 - v0;
    let wpe = (events as f64 + transactions as f64) / events as f64;
    let e2e_rate = events as f64 / done.as_secs_f64();
    eprintln!(
        "usage-bench e2e: {events} events ingested in {:.2} s, all recorded after {:.2} s ({e2e_rate:.0} events/s), {transactions} transactions",
        ingest_time.as_secs_f64(),
        done.as_secs_f64()
    );

    // The emulator's raw conditional-put rate, with items shaped exactly like the records.
    let template = env
        .get(&record_pk(&catalog.customers[0].0, &run, 0), "EVENT")
        .await?
        .ok_or_else(|| fail("first e2e record is missing"))?;
    let mut raw = Vec::new();
    for concurrency in [1usize, 2, 4, 8] {
        raw.push(raw_puts(env, &template, concurrency, 2000).await?);
    }
    let raw_tx = raw_transactions(env, &template, 99, 20).await?;
    let raw_c1 = raw[0]["puts_per_second"].as_f64().unwrap_or(0.0);
    let raw_best = raw
        .iter()
        .filter_map(|r| r["puts_per_second"].as_f64())
        .fold(0.0, f64::max);
    let tx_actions = raw_tx["actions_per_second"].as_f64().unwrap_or(0.0);
    let mut sorted = latencies.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(json!({
        "events": events,
        "per_post": per_post,
        "posts": posts,
        "request_bytes": body_bytes,
        "warmup_events": warm,
        "ingest_seconds": ingest_time.as_secs_f64(),
        "ingest_events_per_second": events as f64 / ingest_time.as_secs_f64(),
        "post_latency_median_seconds": sorted.get(sorted.len() / 2).copied().unwrap_or(0.0),
        "post_latency_max_seconds": sorted.last().copied().unwrap_or(0.0),
        "e2e_seconds": done.as_secs_f64(),
        "e2e_events_per_second": e2e_rate,
        "records_stored": stored,
        "transactions": transactions,
        "write_actions_per_event": wpe,
        "matcher_concurrency": 1,
        "raw_puts": raw,
        "raw_transactions": raw_tx,
        "ratio_vs_raw_c1": e2e_rate / (raw_c1 / wpe),
        "ratio_vs_raw_best": e2e_rate / (raw_best / wpe),
        "ratio_vs_raw_transactions": e2e_rate / (tx_actions / wpe),
        "record_item_bytes": item_size(&template),
    }))
}

fn raw_item(template: &Item, key: &str) -> Item {
    let mut item = template.clone();
    item.insert("pk".into(), AttributeValue::S(format!("EVENT#raw#{key}")));
    if let Some(AttributeValue::S(s)) = item.get("gsi1sk").cloned() {
        item.insert("gsi1sk".into(), AttributeValue::S(format!("{s}#raw#{key}")));
    }
    if let Some(AttributeValue::S(s)) = item.get("gsi2sk").cloned() {
        item.insert("gsi2sk".into(), AttributeValue::S(format!("{s}#raw#{key}")));
    }
    item
}

/// `total` conditional `PutItem`s (`attribute_not_exists(pk)`) of record-shaped items, from
/// `concurrency` workers.
async fn raw_puts(
    env: &Env,
    template: &Item,
    concurrency: usize,
    total: usize,
) -> Result<Value, BoxError> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, table, template, next, tag) = (
            env.client.clone(),
            env.table.clone(),
            template.clone(),
            next.clone(),
            tag.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), BoxError>(());
                }
                client
                    .put_item()
                    .table_name(&table)
                    .set_item(Some(raw_item(&template, &format!("{tag}-{i}"))))
                    .condition_expression("attribute_not_exists(pk)")
                    .send()
                    .await?;
            }
        }));
    }
    for w in workers {
        w.await??;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "usage-bench e2e: raw PutItem, concurrency {concurrency}: {:.0}/s",
        total as f64 / seconds
    );
    Ok(json!({
        "concurrency": concurrency,
        "puts": total,
        "seconds": seconds,
        "puts_per_second": total as f64 / seconds,
    }))
}

/// `count` sequential transactions of `size` conditional puts of record-shaped items.
async fn raw_transactions(
    env: &Env,
    template: &Item,
    size: usize,
    count: usize,
) -> Result<Value, BoxError> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    for t in 0..count {
        let items = (0..size)
            .map(|i| {
                Put::builder()
                    .table_name(&env.table)
                    .set_item(Some(raw_item(template, &format!("{tag}-{t}-{i}"))))
                    .condition_expression("attribute_not_exists(pk)")
                    .build()
                    .map(|p| TransactWriteItem::builder().put(p).build())
            })
            .collect::<Result<Vec<_>, _>>()?;
        env.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    let actions = size * count;
    eprintln!(
        "usage-bench e2e: raw TransactWriteItems of {size} puts, concurrency 1: {:.0} actions/s",
        actions as f64 / seconds
    );
    Ok(json!({
        "concurrency": 1,
        "actions_per_transaction": size,
        "transactions": count,
        "seconds": seconds,
        "actions_per_second": actions as f64 / seconds,
    }))
}

// --- 4. SQS requests per event ---------------------------------------------------------------------

async fn sqs(env: &Env) -> Result<Value, BoxError> {
    let url = env
        .startup
        .config()
        .usage_queue_url
        .clone()
        .ok_or_else(|| fail("USAGE_QUEUE_URL is not set"))?;
    let queue = Arc::new(env.startup.queue(&url));
    let billing =
        Billing::new(env.store.clone(), Arc::new(SystemClock), None).with_queue(queue.clone());
    let customer = CustomerId::generate();
    let at = SystemClock.now();
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    let mut rows = Vec::new();
    let total = 10_000usize;
    for per_call in [10_000usize, 1_000, 100, 1] {
        let events_n = if per_call == 1 { 200 } else { total };
        let run = format!("sqs-{tag}-{per_call}");
        let events: Vec<UsageEvent> = (0..events_n)
            .map(|i| usage_bench::event_for(&customer, "bench_sqs", &run, i, at))
            .collect();
        let mut messages = 0usize;
        let mut bytes = 0usize;
        let before = queue.requests();
        let started = Instant::now();
        for chunk in events.chunks(per_call) {
            let packed = billing::usage::pack(chunk)?;
            messages += packed.len();
            bytes += packed.iter().map(|(b, _)| b.len()).sum::<usize>();
            let sent = billing.ingest(chunk).await?;
            if !sent.iter().all(|ok| *ok) {
                return Err(fail(format!(
                    "{} of {} events not enqueued",
                    sent.iter().filter(|ok| !**ok).count(),
                    chunk.len()
                )));
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let requests = queue.requests() - before;
        eprintln!(
            "usage-bench sqs: {per_call:>5} events per call: {events_n} events, {requests} SendMessageBatch requests ({:.4}/event), {messages} messages",
            requests as f64 / events_n as f64
        );
        rows.push(json!({
            "events_per_call": per_call,
            "events": events_n,
            "calls": events_n.div_ceil(per_call),
            "requests": requests,
            "requests_per_event": requests as f64 / events_n as f64,
            "messages": messages,
            "events_per_message": events_n as f64 / messages as f64,
            "message_bytes_per_event": bytes as f64 / events_n as f64,
            "seconds": seconds,
            "events_per_second": events_n as f64 / seconds,
        }));
    }
    // Leave the queue empty for whatever runs next.
    let url = std::env::var("USAGE_QUEUE_URL")?;
    aws_sdk_sqs::Client::new(env.startup.aws())
        .purge_queue()
        .queue_url(url)
        .send()
        .await?;
    Ok(json!({ "rows": rows }))
}

// --- Main ------------------------------------------------------------------------------------------

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: usage-bench (writes|e2e|sqs) --out FILE [--scale F] [--events N] [--per-post N]";
    let command = args.first().cloned().ok_or_else(|| fail(usage))?;
    let out = arg(&args, "--out").ok_or_else(|| fail(usage))?;
    let env = Env::load().await?;
    let started = Instant::now();
    let mut result = match command.as_str() {
        "writes" => {
            let scale = arg(&args, "--scale")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1.0);
            writes(&env, scale).await?
        }
        "e2e" => {
            let events = arg(&args, "--events")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(20_000);
            let per_post = arg(&args, "--per-post")
                .map(|s| s.parse())
                .transpose()?
                .unwrap_or(1_000);
            e2e(&env, events, per_post).await?
        }
        "sqs" => sqs(&env).await?,
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
