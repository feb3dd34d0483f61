//! Today's design, measured in the same run as the new one: N matchers applying one customer's
//! events concurrently with the transactional matcher of commit eeade17 (records and the invoice's
//! aggregates written together in `TransactWriteItems` of at most 100 actions, conditioned on the
//! invoice's usage version).
//!
//! Written against the OLD API (`billing::matcher::Matcher::process(Vec<UsageEvent>)`,
//! `billing::adapters::dynamodb::DynamoStore`, `BatchReport { transactions, write_actions, .. }`).
//! bench/usage.sh copies it into a git worktree of eeade17 (bench/.work/baseline) as an extra
//! binary of that commit's `usage-bench` crate, builds it there in release and runs it against
//! the same local stack, on a table bootstrapped from eeade17's template under another name.
//! It is never compiled in this workspace.
//!
//!   baseline concurrent --out FILE [--events N] [--matchers N] [--batch N]
//!
//! Conflicts are counted two ways, both through wrappers of our own: commits the adapter
//! reports as `CommitOutcome::InvoiceMoved` (the invoice's version moved since it was read), seen
//! by a `UsageStore` wrapper like the old reliability tests' `Flaky`; and `TransactWriteItems`
//! answered with a `TransactionConflict` cancellation (another transaction on the invoice at the
//! same moment), which the adapter retries itself, seen by an interceptor on the DynamoDB client.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use billing::adapters::dynamodb::DynamoStore;
use billing::aggregation::Aggregation;
use billing::ids::InvoiceId;
use billing::invoice::Invoice;
use billing::matcher::{BatchReport, Matcher};
use billing::pagination::{Page, PageRequest};
use billing::service::{Clock, SystemClock};
use billing::store::{CommitOutcome, EventFilter, InvoiceUsage, UsageCommit, UsageStore};
use billing::usage::EventRecord;
use serde_json::{Value, json};
use usage_bench::{contract_start, create_catalog};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn fail(message: impl Into<String>) -> BoxError {
    message.into().into()
}

/// Counts `TransactWriteItems` attempts and the answers cancelled by `TransactionConflict`.
#[derive(Debug, Default)]
struct ConflictCounter {
    transact_attempts: Arc<AtomicU64>,
    transaction_conflicts: Arc<AtomicU64>,
}

impl Intercept for ConflictCounter {
    fn name(&self) -> &'static str {
        "ConflictCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        if context
            .request()
            .headers()
            .get("x-amz-target")
            .is_some_and(|t| t.ends_with("TransactWriteItems"))
        {
            self.transact_attempts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let response = context.response();
        if response.status().as_u16() >= 400
            && response
                .body()
                .bytes()
                .is_some_and(|b| String::from_utf8_lossy(b).contains("TransactionConflict"))
        {
            self.transaction_conflicts.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// The usage port, counting commit outcomes, then delegating to the DynamoDB adapter.
struct Counting {
    inner: Arc<DynamoStore>,
    commits: AtomicU64,
    committed: AtomicU64,
    invoice_moved: AtomicU64,
    duplicates: AtomicU64,
    errors: AtomicU64,
}

#[async_trait]
impl UsageStore for Counting {
    async fn invoice_states(
        &self,
        ids: &[InvoiceId],
    ) -> billing::Result<HashMap<InvoiceId, InvoiceUsage>> {
        self.inner.invoice_states(ids).await
    }

    async fn ensure_invoice(&self, invoice: &Invoice) -> billing::Result<()> {
        self.inner.ensure_invoice(invoice).await
    }

    async fn commit(&self, commit: &UsageCommit) -> billing::Result<CommitOutcome> {
        self.commits.fetch_add(1, Ordering::Relaxed);
        let outcome = self.inner.commit(commit).await;
        match &outcome {
            Ok(CommitOutcome::Committed) => &self.committed,
            Ok(CommitOutcome::InvoiceMoved) => &self.invoice_moved,
            Ok(CommitOutcome::Duplicates(_)) => &self.duplicates,
            Err(_) => &self.errors,
        }
        .fetch_add(1, Ordering::Relaxed);
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

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

async fn invoice_count(store: &DynamoStore, invoice: &InvoiceId) -> Result<u64, BoxError> {
    let states = store.invoice_states(std::slice::from_ref(invoice)).await?;
    let state = states
        .get(invoice)
        .ok_or_else(|| fail(format!("invoice {invoice} is missing")))?;
    let count = state
        .aggregates
        .values()
        .filter(|a| a.kind() == Aggregation::Count)
        .map(|a| a.quantity())
        .sum::<rust_decimal::Decimal>();
    Ok(count.try_into().unwrap_or(0))
}

async fn concurrent(events: usize, matchers: usize, batch: usize) -> Result<Value, BoxError> {
    let config = billing::adapters::aws_config().await;
    let table = std::env::var("TABLE_NAME").map_err(|_| fail("TABLE_NAME is not set"))?;
    let counter = ConflictCounter::default();
    let (attempts, conflicts) = (
        counter.transact_attempts.clone(),
        counter.transaction_conflicts.clone(),
    );
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(counter)
            .build(),
    );
    let store = Arc::new(DynamoStore::new(client, table));
    let billing = billing::service::Billing::new(store.clone(), Arc::new(SystemClock), None);
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
    let counting = Arc::new(Counting {
        inner: store.clone(),
        commits: AtomicU64::new(0),
        committed: AtomicU64::new(0),
        invoice_moved: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    });

    // Warm-up, one matcher: the matchers' caches, and the invoice's first usage.
    let warm = 100usize;
    let warm_matcher = Matcher::new(store.clone(), counting.clone(), Arc::new(SystemClock));
    warm_matcher
        .process(usage_bench::events(&catalog, &format!("c4w-{tag}"), 0, warm, now))
        .await?;

    // The work: batches of `batch` events, taken in order by whichever matcher is free (the
    // old standard queue handed batches to any concurrent invocation).
    let run = format!("c4-{tag}");
    let batches: Arc<Vec<Vec<billing::usage::UsageEvent>>> = Arc::new(
        (0..events)
            .step_by(batch)
            .map(|first| {
                usage_bench::events(&catalog, &run, first, batch.min(events - first), now)
            })
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut warmed = Vec::new();
    for _ in 0..matchers {
        let matcher = Matcher::new(store.clone(), counting.clone(), Arc::new(SystemClock));
        // Each invocation's cache is warm, as in a warm Lambda (a resend of a warm-up event:
        // recorded before, so it counts nothing).
        matcher
            .process(usage_bench::events(&catalog, &format!("c4w-{tag}"), 0, 1, now))
            .await?;
        warmed.push(matcher);
    }
    let base = (
        get(&counting.commits),
        get(&counting.committed),
        get(&counting.invoice_moved),
        get(&counting.duplicates),
        get(&counting.errors),
        attempts.load(Ordering::Relaxed),
        conflicts.load(Ordering::Relaxed),
        store.usage_write_actions(),
    );
    let started = Instant::now();
    let mut workers = Vec::new();
    for matcher in warmed {
        let (batches, next) = (batches.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            let mut report = BatchReport::default();
            let mut failed = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(events) = batches.get(i) else {
                    return Ok::<_, BoxError>((report, failed));
                };
                // A failed invocation's batch is redelivered (here: at once), as SQS would.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match matcher.process(events.clone()).await {
                        Ok(r) => {
                            report.recorded += r.recorded;
                            report.duplicates += r.duplicates;
                            report.transactions += r.transactions;
                            report.write_actions += r.write_actions;
                            break;
                        }
                        Err(e) if attempt < 20 => {
                            failed += 1;
                            eprintln!("baseline: batch {i} failed (attempt {attempt}): {e}");
                        }
                        Err(e) => return Err(fail(format!("batch {i} failed 20 times: {e}"))),
                    }
                }
            }
        }));
    }
    let mut report = BatchReport::default();
    let mut failed_invocations = 0usize;
    for w in workers {
        let (r, failed) = w.await??;
        report.recorded += r.recorded;
        report.duplicates += r.duplicates;
        report.transactions += r.transactions;
        report.write_actions += r.write_actions;
        failed_invocations += failed;
    }
    let seconds = started.elapsed().as_secs_f64();
    let counted = invoice_count(&store, &invoice).await?;
    // A call that fails after some of its transactions committed reports nothing; its
    // redelivery finds those events recorded (duplicates). Every event is one or the other, and
    // the invoice counts each once.
    if counted != (warm + events) as u64 || report.recorded + report.duplicates != events {
        return Err(fail(format!(
            "{events} events sent: {} recorded, {} found recorded on redelivery, invoice counts {counted} (expected {})",
            report.recorded,
            report.duplicates,
            warm + events
        )));
    }
    let commits = get(&counting.commits) - base.0;
    let committed = get(&counting.committed) - base.1;
    let invoice_moved = get(&counting.invoice_moved) - base.2;
    let duplicates = get(&counting.duplicates) - base.3;
    let errors = get(&counting.errors) - base.4;
    let transact_attempts = attempts.load(Ordering::Relaxed) - base.5;
    let transaction_conflicts = conflicts.load(Ordering::Relaxed) - base.6;
    let write_actions_sent = store.usage_write_actions() - base.7;
    let per_1000 = |n: u64| n as f64 * 1000.0 / events as f64;
    // A conflict: a commit refused because the invoice moved, or a transaction cancelled by
    // another one on the same invoice. A retry: a pass the matcher repeated (after a refused or
    // failed commit) or a transaction the adapter sent again after a TransactionConflict.
    let conflicts_total = invoice_moved + transaction_conflicts;
    let retries_total = invoice_moved + errors + transaction_conflicts;
    eprintln!(
        "baseline: {matchers} matchers, {events} events in {seconds:.1} s ({:.0} events/s): {invoice_moved} InvoiceMoved, {transaction_conflicts} TransactionConflict, {errors} failed commits, {failed_invocations} failed invocations",
        events as f64 / seconds
    );
    Ok(json!({
        "design": "eeade17 (transactional matcher)",
        "matchers": matchers,
        "events": events,
        "events_per_batch": batch,
        "batches": batches.len(),
        "warmup_events": warm,
        "seconds": seconds,
        "events_per_second": events as f64 / seconds,
        "recorded": report.recorded,
        "recorded_before_redelivery": report.duplicates,
        "invoice_count": counted,
        "transactions_committed": report.transactions,
        "write_actions_committed": report.write_actions,
        "write_actions_sent": write_actions_sent,
        "commit_calls": commits,
        "commits_committed": committed,
        "commits_invoice_moved": invoice_moved,
        "commits_duplicates": duplicates,
        "commits_failed": errors,
        "transact_attempts": transact_attempts,
        "transaction_conflicts": transaction_conflicts,
        "failed_invocations": failed_invocations,
        "conflicts": conflicts_total,
        "retries": retries_total,
        "conflicts_per_1000_events": per_1000(conflicts_total),
        "retries_per_1000_events": per_1000(retries_total),
        "invoice_moved_per_1000_events": per_1000(invoice_moved),
        "transaction_conflicts_per_1000_events": per_1000(transaction_conflicts),
    }))
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn number(args: &[String], name: &str, default: usize) -> Result<usize, BoxError> {
    Ok(arg(args, name)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(default))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: baseline concurrent --out FILE [--events N] [--matchers N] [--batch N]";
    if args.first().map(String::as_str) != Some("concurrent") {
        return Err(fail(usage));
    }
    let out = arg(&args, "--out").ok_or_else(|| fail(usage))?;
    let result = concurrent(
        number(&args, "--events", 40_000)?,
        number(&args, "--matchers", 4)?,
        number(&args, "--batch", 1_000)?,
    )
    .await?;
    std::fs::write(&out, serde_json::to_string_pretty(&result)?)?;
    Ok(())
}
