//! In-process matcher CPU per event, without any network (`cargo bench -p usage-bench --bench
//! matcher`; bench/usage.sh reads the estimates criterion writes under target/criterion).
//!
//! - `matcher_process/<customers>/<batch>`: `Matcher::process` of one lane message carrying a
//!   batch of fresh events, over the in-memory store (`billing::testing::MemoryStore`), a warm
//!   matcher (catalog cached, as in a warm Lambda). Each event is read by a COUNT and a SUM
//!   meter; events are spread round robin over the customers. Only the `process` call is timed;
//!   event generation and forgetting the previous records are not.
//! - `aggregate_add/<kind>`: one `Aggregate::add` (COUNT, SUM).
//! - `record_encode/serde_dynamo`: encoding one event record as a DynamoDB item (what the
//!   adapter does per event on top of `process`; not included in the matcher figure).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use billing::aggregation::{Aggregate, Aggregation, UsageValue};
use billing::ids::{InvoiceId, LineId};
use billing::invoice::Invoice;
use billing::lanes::LaneKey;
use billing::matcher::{LaneMessage, Matcher};
use billing::ports::UsageStore;
use billing::testing::{ManualClock, MemoryStore};
use billing::usage::{EventRecord, EventStatus, Lane, UsageEvent};
use chrono::{DateTime, Utc};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rust_decimal::Decimal;
use usage_bench::{Catalog, billing_over, contract_start, create_catalog};

fn now() -> DateTime<Utc> {
    "2026-03-15T12:00:00Z".parse().expect("valid time")
}

struct Setup {
    store: Arc<MemoryStore>,
    matcher: Matcher,
    catalog: Catalog,
}

fn setup(rt: &tokio::runtime::Runtime, customers: usize) -> Setup {
    rt.block_on(async {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::at(now()));
        let billing = billing_over(store.clone(), clock.clone());
        let catalog = create_catalog(&billing, "api_request", customers, contract_start(now()), 1)
            .await
            .expect("catalog");
        let matcher = Matcher::new(store.clone(), store.clone(), clock);
        Setup {
            store,
            matcher,
            catalog,
        }
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// The events as one lane message, as the handler hands them to the matcher.
fn message(events: Vec<UsageEvent>) -> Vec<LaneMessage> {
    vec![LaneMessage::new(events)]
}

/// A real record: match one event (ids tagged `tag`), then read its record back.
fn one_record(rt: &tokio::runtime::Runtime, s: &Setup, tag: &str) -> EventRecord {
    s.store.clear_records();
    rt.block_on(
        s.matcher
            .process(message(usage_bench::events(&s.catalog, tag, 0, 1, now()))),
    )
    .expect("process");
    let record = s.store.records().pop().expect("one record");
    assert_eq!(record.status, EventStatus::Matched);
    record
}

fn matcher_process(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("matcher_process");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(8));
    for customers in [1usize, 100] {
        let s = setup(&rt, customers);
        for batch in [100usize, 1000] {
            // Warm the matcher's caches (a warm Lambda) and check the set-up bills everything.
            let warm = rt
                .block_on(s.matcher.process(message(usage_bench::events(
                    &s.catalog,
                    "warm",
                    0,
                    batch,
                    now(),
                ))))
                .expect("warm-up batch");
            assert_eq!(
                warm.by_status.get("matched").copied(),
                Some(batch),
                "every event must be matched: {warm:?}"
            );
            s.store.clear_records();
            let mut run = 0usize;
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_with_input(
                BenchmarkId::new(format!("{customers}_customers"), batch),
                &batch,
                |b, &batch| {
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            run += 1;
                            let events = usage_bench::events(
                                &s.catalog,
                                &format!("r{run}"),
                                0,
                                batch,
                                now(),
                            );
                            s.store.clear_records();
                            let start = Instant::now();
                            let report = rt
                                .block_on(s.matcher.process(message(events)))
                                .expect("process");
                            total += start.elapsed();
                            debug_assert_eq!(report.recorded, batch);
                            black_box(report);
                        }
                        total
                    });
                },
            );
        }
    }
    group.finish();
}

fn aggregate_add(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate_add");
    group.throughput(Throughput::Elements(1));
    let value = UsageValue::Number(Decimal::from(417));
    group.bench_function("count", |b| {
        let mut a = Aggregate::new(Aggregation::Count);
        b.iter(|| a.add(black_box(None)).expect("count"));
    });
    group.bench_function("sum", |b| {
        let mut a = Aggregate::new(Aggregation::Sum);
        b.iter(|| a.add(black_box(Some(&value))).expect("sum"));
    });
    group.finish();
}

fn record_encode(c: &mut Criterion) {
    let rt = runtime();
    let s = setup(&rt, 1);
    let record = one_record(&rt, &s, "enc");
    let mut group = c.benchmark_group("record_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("serde_dynamo", |b| {
        b.iter(|| {
            let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
                serde_dynamo::to_item(black_box(&record)).expect("encode");
            black_box(item)
        });
    });
    group.finish();
}

/// Pieces of the per-event work, to explain the matcher figure: the derived ids (a UUIDv5, so a
/// SHA-1, of a formatted name) the matcher computes per reading, and what the in-memory store's
/// commit does per record (its share of `matcher_process`, not the matcher's own).
fn matcher_parts(c: &mut Criterion) {
    let rt = runtime();
    let s = setup(&rt, 1);
    let record = one_record(&rt, &s, "parts");
    let contract = s.catalog.customers[0].1.id.clone();
    let date = now().date_naive();
    let invoice = Invoice::id_for(&contract, date);
    let price = s.catalog.plan.prices[1].id.clone();
    let mut group = c.benchmark_group("matcher_parts");
    group.throughput(Throughput::Elements(1));
    group.bench_function("invoice_id_for", |b| {
        b.iter(|| Invoice::id_for(black_box(&contract), black_box(date)))
    });
    group.bench_function("line_id_derive", |b| {
        b.iter(|| LineId::derive(&format!("{}:{}", black_box(&invoice), black_box(&price))))
    });
    group.bench_function("memstore_record_key_and_clone", |b| {
        b.iter(|| {
            let key = black_box(&record).key();
            black_box((key, record.clone()))
        })
    });
    group.finish();

    // What the matcher reads per batch from the in-memory store: the status of 100 invoices,
    // and their shares in one lane (deep clones), where the DynamoDB adapter decodes items.
    let s = setup(&rt, 100);
    let sent = message(usage_bench::events(&s.catalog, "parts", 0, 100, now()));
    let lane: Lane = sent[0].lane;
    rt.block_on(s.matcher.process(sent)).expect("process");
    let ids: Vec<InvoiceId> = (0..100)
        .map(|c| s.catalog.invoice_for(c, date).expect("invoice"))
        .collect();
    let keys: Vec<LaneKey> = ids
        .iter()
        .map(|invoice| LaneKey {
            invoice: invoice.clone(),
            lane,
        })
        .collect();
    let mut group = c.benchmark_group("matcher_parts");
    group.throughput(Throughput::Elements(ids.len() as u64));
    group.bench_function("memstore_invoice_statuses_100", |b| {
        b.iter(|| {
            rt.block_on(s.store.invoice_statuses(black_box(&ids)))
                .expect("statuses")
        })
    });
    group.bench_function("memstore_lanes_100", |b| {
        b.iter(|| rt.block_on(s.store.lanes(black_box(&keys))).expect("lanes"))
    });
    group.finish();
}

criterion_group!(
    benches,
    matcher_process,
    aggregate_add,
    record_encode,
    matcher_parts
);
criterion_main!(benches);
