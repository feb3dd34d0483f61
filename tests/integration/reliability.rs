//! Reliability of the usage path: every event counted exactly once, whatever the concurrency,
//! redelivery, crashes and transient failures around the matcher. Every test asserts exact final
//! quantities read back through the API, so a double count or a loss makes it fail.
//!
//! Tests 2–4 build the matcher themselves (`Startup::matcher`, or `Matcher::new` over a
//! `UsageStore` wrapper that injects faults between any two item writes) and use their own event
//! names, so other tests' meters and queue pollers never see their events. A redelivery is the
//! same message (same nonce) delivered again; a resend is the same event in another message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use billing::ids::InvoiceId;
use billing::invoice::Invoice;
use billing::lanes::{LaneKey, UsageLane};
use billing::matcher::{BatchReport, LaneMessage, Matcher};
use billing::pagination::{Page, PageRequest};
use billing::ports::{EventFilter, LaneWrite, RecordPut, UsageStore, ValueClaim};
use billing::tally::{DayCount, DayTally, TallyKey};
use billing::usage::{EventInput, EventRecord, MessageNonce, UsageEvent};
use billing_aws::dynamodb::DynamoStore;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use futures::future::join_all;
use integration_tests::{Pollers, TestApp, unique, unique_code};
use serde_json::{Value, json};

use crate::catalog::guide_catalog;

// --- Helpers ----------------------------------------------------------------------------------

fn first_of_month() -> NaiveDate {
    Utc::now().date_naive().with_day(1).unwrap()
}

/// A small deterministic PRNG (xorshift64*), so shuffles and injected faults repeat exactly.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Tenths as the API shows a normalized decimal: 261 → "26.1", 270 → "27".
fn tenths(t: u64) -> String {
    if t.is_multiple_of(10) {
        (t / 10).to_string()
    } else {
        format!("{}.{}", t / 10, t % 10)
    }
}

/// A catalog of our own: a COUNT meter and a SUM meter (of `tokens`) both listening to one
/// event name no other test uses, and a plan pricing both.
struct Catalog {
    event_name: String,
    plan_id: String,
    count_price: String,
    sum_price: String,
}

async fn usage_catalog(app: &TestApp) -> Catalog {
    let event_name = unique("rel.calls");
    let count = app
        .meter(
            json!({"code": unique_code("REL_CALLS"), "eventName": event_name,
                      "displayName": "Calls", "aggregationType": "COUNT"}),
        )
        .await;
    let sum = app
        .meter(json!({"code": unique_code("REL_TOKENS"), "eventName": event_name,
                      "displayName": "Tokens", "aggregationType": "SUM", "aggregationKey": "tokens"}))
        .await;
    let plan = app
        .plan(json!({
            "name": "Reliability", "currency": "USD",
            "prices": [
                {"model": "USAGE", "meterId": count["id"], "unitAmount": "0.08"},
                {"model": "USAGE", "meterId": sum["id"], "unitAmount": "0.001"}
            ]
        }))
        .await;
    Catalog {
        event_name,
        plan_id: plan["id"].as_str().unwrap().to_owned(),
        count_price: price_of(&plan, &count),
        sum_price: price_of(&plan, &sum),
    }
}

/// The id of `plan`'s usage price on `meter`.
fn price_of(plan: &Value, meter: &Value) -> String {
    plan["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["meterId"] == meter["id"])
        .and_then(|p| p["id"].as_str())
        .expect("a usage price on the meter")
        .to_owned()
}

/// A new customer on `plan_id`, rolling from the 1st of this month; returns the customer and the
/// current period's invoice.
async fn subscriber(app: &TestApp, plan_id: &str, name: &str) -> (String, String) {
    let customer = app.customer(name).await;
    let contract = app
        .post(
            "/v1/contracts",
            json!({"customerId": customer, "planId": plan_id, "startDate": first_of_month().to_string()}),
        )
        .await
        .expect(201)
        .clone();
    let invoices = app
        .contract_invoices(contract["id"].as_str().unwrap())
        .await;
    let current = invoices
        .iter()
        .find(|i| i["periodStart"] == format!("{}T00:00:00Z", first_of_month()))
        .expect("the current period's invoice");
    (customer, current["id"].as_str().unwrap().to_owned())
}

/// The quantity of the invoice line of `price_id`, as the API shows it.
async fn quantity(app: &TestApp, invoice: &str, price_id: &str) -> String {
    let answer = app.get(&format!("/v1/invoices/{invoice}")).await;
    let body = answer.expect(200);
    let lines: Vec<&Value> = body["lineItems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["priceId"] == price_id)
        .collect();
    assert_eq!(lines.len(), 1, "one line for {price_id}: {body}");
    lines[0]["quantity"].as_str().unwrap().to_owned()
}

/// A customer's event records by idempotency key, asserting no key is recorded twice.
async fn records_by_key(app: &TestApp, customer: &str) -> HashMap<String, Value> {
    let list = app.events(&format!("customerId={customer}")).await;
    let mut by_key = HashMap::with_capacity(list.len());
    for r in list {
        let key = r["idempotencyKey"].as_str().unwrap().to_owned();
        assert!(
            by_key.insert(key.clone(), r).is_none(),
            "{customer}: key {key} recorded twice"
        );
    }
    by_key
}

/// A validated event as the API would queue it, with `tokens` written as an exact JSON number.
fn event(name: &str, customer: &str, key: &str, at: DateTime<Utc>, tokens: &str) -> UsageEvent {
    let raw = format!(
        r#"{{"eventName":"{name}","customerId":"{customer}","idempotencyKey":"{key}","timestamp":"{}","properties":{{"tokens":{tokens}}}}}"#,
        at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );
    serde_json::from_str::<EventInput>(&raw)
        .expect("event JSON")
        .parse(Utc::now())
        .expect("a valid event")
}

/// A day of receipt no other test uses (tests share the tables, and a day's tallies are
/// global, and stay): some day between the years 2200 and 9866, drawn at random. Over 2.8
/// million days, the 14 draws of a run all differ but once in about 30,000 runs (36,500 days,
/// the first range, made that once in 400).
fn unique_day() -> NaiveDate {
    let offset = uuid::Uuid::new_v4().as_u128() % 2_800_000;
    NaiveDate::from_ymd_opt(2200, 1, 1).unwrap() + chrono::Days::new(offset as u64)
}

/// `event`, as if the API had accepted it on `day` (only the day tallies read it).
fn received_on(mut event: UsageEvent, day: NaiveDate) -> UsageEvent {
    event.received_at = day.and_hms_opt(12, 0, 0).unwrap().and_utc();
    event
}

/// The events the day tallies counted on `day`.
async fn received(day: NaiveDate) -> DayCount {
    let store = integration_tests::startup().await.store();
    store.day_count(day).await.expect("day count")
}

/// What a set of events should add up to per customer: (count, tokens in tenths).
fn totals(events: &[(String, u64)]) -> BTreeMap<String, (u64, u64)> {
    let mut t: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (customer, tokens) in events {
        let e = t.entry(customer.clone()).or_default();
        e.0 += 1;
        e.1 += tokens;
    }
    t
}

/// The matcher over DynamoDB with its usage writes going through `wrap(store)`.
async fn matcher_with(wrap: impl FnOnce(Arc<DynamoStore>) -> Arc<dyn UsageStore>) -> Matcher {
    let store = integration_tests::startup().await.store();
    let usage = wrap(store.clone());
    Matcher::new(store, usage, Arc::new(billing::ports::SystemClock))
}

// --- 1. Concurrent ingestion, repeated keys, competing pollers ----------------------------------

/// A queue's depth for failure messages.
async fn depth(queue_url: &str) -> String {
    format!("{:?}", integration_tests::queue_depth(queue_url).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_with_a_fifth_repeated_keys_sent_concurrently_count_once() {
    const DISTINCT: usize = 8_000;
    const REPEATS: usize = 2_000;
    const REQUESTS: usize = 20;
    // A batch a poller fails (or holds longer than this) comes back to any poller after it.
    const VISIBILITY_TIMEOUT: u32 = 60;
    const DEADLINE: Duration = Duration::from_secs(180);

    // A queue of the test's own, matched by the dev server's poller and two more matchers, so
    // batches holding the same keys race each other on the one invoice.
    let queue = integration_tests::usage_queue(VISIBILITY_TIMEOUT).await;
    let app = TestApp::spawn_on_queue(&queue, true).await;
    let pollers = Pollers::start(&queue, 2).await;

    let (meter, _, pro) = guide_catalog(&app).await;
    let event_name = meter["eventName"].as_str().unwrap().to_owned();
    let usage_price = price_of(&pro, &meter);
    let (customer, invoice) = subscriber(&app, pro["id"].as_str().unwrap(), "Ten thousand").await;

    // 8,000 distinct keys, then 2,000 events repeating one of them; shuffled so a key and its
    // repeat usually travel in different requests, messages and matcher batches.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut rng = Rng::new(0x5eed_0001);
    let mut keys: Vec<String> = (0..DISTINCT).map(|i| format!("{run}-{i}")).collect();
    for _ in 0..REPEATS {
        let k = keys[rng.below(DISTINCT)].clone();
        keys.push(k);
    }
    rng.shuffle(&mut keys);
    assert_eq!(
        keys.iter().collect::<HashSet<_>>().len(),
        DISTINCT,
        "the test data itself"
    );

    let started = Instant::now();
    let per_request = keys.len() / REQUESTS;
    let answers = join_all(keys.chunks(per_request).map(|chunk| {
        let body = json!({ "events": chunk.iter().map(|k| json!({
            "eventName": event_name, "customerId": customer, "idempotencyKey": k, "timestamp": at
        })).collect::<Vec<_>>() });
        let app = &app;
        async move { app.post("/v1/events/batch", body).await }
    }))
    .await;
    assert_eq!(answers.len(), REQUESTS);
    for a in &answers {
        let body = a.expect(202);
        assert_eq!(
            (
                body["accepted"].as_u64(),
                body["rejected"].as_array().map(Vec::len),
                body["failed"].as_array().map(Vec::len)
            ),
            (Some(per_request as u64), Some(0), Some(0)),
            "{body}"
        );
    }
    let ingested = started.elapsed();

    // Wait for the three matchers to count them all.
    loop {
        let q = quantity(&app, &invoice, &usage_price).await;
        let n: u64 = q.parse().unwrap();
        assert!(
            n <= DISTINCT as u64,
            "counted {q} for {DISTINCT} distinct keys: double count"
        );
        if n == DISTINCT as u64 {
            break;
        }
        if started.elapsed() > DEADLINE {
            panic!(
                "only {n} of {DISTINCT} events counted after {} s; queue: {}; our pollers \
                 received {} messages, errors {:?}",
                DEADLINE.as_secs(),
                depth(&queue).await,
                pollers.received.load(Ordering::SeqCst),
                pollers.errors.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let matched = started.elapsed();
    // Settled: the queue is empty and no poller holds a message (each deletes its batch only
    // after the matcher returned), so every repeat has been processed too; only then is the
    // count final.
    integration_tests::wait_until_settled(&queue).await;
    let received = pollers.received.load(Ordering::SeqCst);
    assert!(
        pollers.errors.lock().unwrap().is_empty(),
        "{:?}",
        pollers.errors.lock().unwrap()
    );

    let listed = app
        .events(&format!("customerId={customer}&status=matched"))
        .await;
    assert_eq!(listed.len(), DISTINCT);
    let listed_keys: HashSet<&str> = listed
        .iter()
        .map(|r| r["idempotencyKey"].as_str().unwrap())
        .collect();
    assert_eq!(listed_keys.len(), DISTINCT, "a key recorded twice");
    assert!(listed_keys.iter().all(|k| k.starts_with(&run)));
    assert_eq!(
        app.events(&format!("customerId={customer}")).await.len(),
        DISTINCT,
        "no other outcome recorded"
    );
    // Still exact now that everything has settled (checked above, before these reads).
    assert_eq!(quantity(&app, &invoice, &usage_price).await, "8000");
    drop(pollers);
    eprintln!(
        "10,000 events: ingested in {:.1} s, all counted after {:.1} s; the test's two pollers \
         received {received} messages; queue now {}",
        ingested.as_secs_f64(),
        matched.as_secs_f64(),
        depth(&queue).await
    );
}

// --- 2. The same batch to two matchers at once ---------------------------------------------------

/// One message carrying `events`, as the ingestion sends it (a fresh nonce, its lane).
fn message(events: Vec<UsageEvent>) -> Vec<LaneMessage> {
    vec![LaneMessage::new(events)]
}

#[tokio::test]
async fn the_same_batch_delivered_twice_concurrently_to_two_matchers_counts_once() {
    let app = TestApp::spawn().await;
    let catalog = usage_catalog(&app).await;
    let (alice, alice_invoice) = subscriber(&app, &catalog.plan_id, "Twice A").await;
    let (bob, bob_invoice) = subscriber(&app, &catalog.plan_id, "Twice B").await;
    let a = integration_tests::startup().await.matcher();
    let b = integration_tests::startup().await.matcher();
    let at = Utc::now();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let day = unique_day();

    let mut sent: Vec<(String, u64)> = Vec::new();
    let mut serial = 0u64;
    for size in [1usize, 10, 250] {
        let mut events = Vec::with_capacity(size);
        for i in 0..size {
            serial += 1;
            let customer = if i % 2 == 0 { &alice } else { &bob };
            let tokens = serial % 9 + 1; // 0.1 … 0.9
            let e = event(
                &catalog.event_name,
                customer,
                &format!("{run}-{serial}"),
                at,
                &format!("0.{tokens}"),
            );
            events.push(received_on(e, day));
            sent.push((customer.clone(), tokens));
        }
        // One message (one nonce), delivered to two matchers at once: a visibility timeout
        // that expired while the first was still at work.
        let batch = message(events);
        let (ra, rb) = tokio::join!(a.process(batch.clone()), b.process(batch.clone()));
        let (ra, rb): (BatchReport, BatchReport) = (ra.expect("matcher A"), rb.expect("matcher B"));
        assert_eq!(
            ra.recorded + rb.recorded,
            size,
            "each record written by exactly one matcher: {ra:?} {rb:?}"
        );
        assert_eq!(ra.recorded + ra.redelivered, size, "A: {ra:?}");
        assert_eq!(rb.recorded + rb.redelivered, size, "B: {rb:?}");
        assert_eq!((ra.duplicates, rb.duplicates), (0, 0));

        // A third, late delivery finds everything recorded and counted: it writes nothing.
        let rc = a.process(batch).await.expect("redelivery");
        assert_eq!(
            (rc.recorded, rc.redelivered, rc.writes()),
            (0, size, 0),
            "{rc:?}"
        );

        let expected = totals(&sent);
        for (customer, invoice) in [(&alice, &alice_invoice), (&bob, &bob_invoice)] {
            let (count, tokens) = expected.get(customer).copied().unwrap_or_default();
            assert_eq!(
                quantity(&app, invoice, &catalog.count_price).await,
                count.to_string(),
                "calls after the {size}-event round"
            );
            assert_eq!(
                quantity(&app, invoice, &catalog.sum_price).await,
                tenths(tokens),
                "tokens after the {size}-event round"
            );
        }
    }
    // 261 events: 131 for Alice, 130 for Bob; each one recorded once, and counted once in
    // their day's tallies however the two matchers raced for them.
    assert_eq!(records_by_key(&app, &alice).await.len(), 131);
    assert_eq!(records_by_key(&app, &bob).await.len(), 130);
    assert_eq!(
        received(day).await,
        DayCount {
            events: 261,
            unbillable: 0
        }
    );
}

// --- 3. A matcher dying between its writes ---------------------------------------------------

/// What a faulty store does to writes.
#[derive(Debug, Clone, Copy)]
enum FaultMode {
    /// The process "dies" at its `allowed + 1`-th item write: that write and every call after
    /// it fail, as if the process were gone.
    KillAfter(usize),
    /// `percent` % of item writes fail: throttled (nothing written), a lane that moved
    /// (nothing written), or written with the answer lost on the way back; and a fifth of that
    /// share of reads fail.
    Flaky(u64),
    /// Every lane write fails (throttled, or the lane always moved); records are written.
    RefuseLanes { moved: bool },
}

/// How often each fault was injected.
#[derive(Debug, Default, Clone)]
struct Faults {
    throttled: usize,
    moved: usize,
    lost_responses: usize,
    failed_reads: usize,
    passed: usize,
}

/// A usage store over DynamoDB that writes item by item, so a fault can fall between any two
/// item writes of the matcher (records, value claims, lane shares, invoice drafts).
struct Faulty {
    inner: Arc<DynamoStore>,
    mode: FaultMode,
    writes: AtomicUsize,
    dead: AtomicBool,
    rng: Mutex<Rng>,
    faults: Mutex<Faults>,
}

/// What to do with one item write.
enum Step {
    Write,
    Throttle,
    Move,
    LoseAnswer,
}

impl Faulty {
    fn new(inner: Arc<DynamoStore>, mode: FaultMode, seed: u64) -> Self {
        Self {
            inner,
            mode,
            writes: AtomicUsize::new(0),
            dead: AtomicBool::new(false),
            rng: Mutex::new(Rng::new(seed)),
            faults: Mutex::default(),
        }
    }

    fn alive(&self) -> billing::Result<()> {
        if self.dead.load(Ordering::SeqCst) {
            Err(billing::Error::unavailable("killed"))
        } else {
            Ok(())
        }
    }

    fn roll(&self) -> u64 {
        self.rng.lock().unwrap().next() % 100
    }

    fn read(&self) -> billing::Result<()> {
        self.alive()?;
        if let FaultMode::Flaky(percent) = self.mode
            && self.roll() < percent / 5
        {
            self.faults.lock().unwrap().failed_reads += 1;
            return Err(billing::Error::unavailable("throttled"));
        }
        Ok(())
    }

    /// The fate of the next item write (`lane`: a lane share, which can also have moved).
    fn step(&self, lane: bool) -> billing::Result<Step> {
        self.alive()?;
        match self.mode {
            FaultMode::KillAfter(allowed) => {
                if self.writes.fetch_add(1, Ordering::SeqCst) >= allowed {
                    self.dead.store(true, Ordering::SeqCst);
                    return Err(billing::Error::unavailable("killed"));
                }
                Ok(Step::Write)
            }
            FaultMode::Flaky(percent) => {
                let roll = self.roll();
                if roll >= percent {
                    self.faults.lock().unwrap().passed += 1;
                    return Ok(Step::Write);
                }
                let mut faults = self.faults.lock().unwrap();
                Ok(match roll * 3 / percent {
                    0 => {
                        faults.throttled += 1;
                        Step::Throttle
                    }
                    1 if lane => {
                        faults.moved += 1;
                        Step::Move
                    }
                    _ => {
                        faults.lost_responses += 1;
                        Step::LoseAnswer
                    }
                })
            }
            FaultMode::RefuseLanes { moved } if lane => {
                self.writes.fetch_add(1, Ordering::SeqCst);
                Ok(if moved { Step::Move } else { Step::Throttle })
            }
            FaultMode::RefuseLanes { .. } => Ok(Step::Write),
        }
    }

    /// One item write through `write`, with the fate `step` decides.
    /// Versioned writes (lane shares, day tallies) one at a time through [`Self::item`], each
    /// of which may be refused as moved.
    async fn one_by_one<'a, W, F, Fut>(
        &self,
        writes: &'a [W],
        write: F,
    ) -> billing::Result<Vec<LaneWrite>>
    where
        F: Fn(&'a [W]) -> Fut,
        Fut: std::future::Future<Output = billing::Result<Vec<LaneWrite>>>,
    {
        let mut outcomes = Vec::with_capacity(writes.len());
        for w in writes {
            let outcome = self
                .item(
                    true,
                    vec![LaneWrite::Conflict],
                    write(std::slice::from_ref(w)),
                )
                .await?;
            outcomes.extend(outcome);
        }
        Ok(outcomes)
    }

    async fn item<T, F>(&self, lane: bool, moved: T, write: F) -> billing::Result<T>
    where
        F: std::future::Future<Output = billing::Result<T>>,
    {
        match self.step(lane)? {
            Step::Write => write.await,
            Step::Throttle => Err(billing::Error::unavailable("throttled")),
            Step::Move => Ok(moved),
            Step::LoseAnswer => {
                write.await?;
                Err(billing::Error::unavailable(
                    "connection reset after the write",
                ))
            }
        }
    }
}

#[async_trait]
impl UsageStore for Faulty {
    async fn invoice_statuses(
        &self,
        ids: &[InvoiceId],
    ) -> billing::Result<HashMap<InvoiceId, billing::invoice::InvoiceStatus>> {
        self.read()?;
        self.inner.invoice_statuses(ids).await
    }

    async fn ensure_invoice(
        &self,
        invoice: &Invoice,
        events: &[billing::webhooks::OutgoingEvent],
    ) -> billing::Result<()> {
        self.item(false, (), self.inner.ensure_invoice(invoice, events))
            .await
    }

    async fn mark_in_progress(&self, ids: &[InvoiceId]) -> billing::Result<()> {
        for id in ids {
            self.item(
                false,
                (),
                self.inner.mark_in_progress(std::slice::from_ref(id)),
            )
            .await?;
        }
        Ok(())
    }

    async fn put_records(&self, records: &[EventRecord]) -> Vec<billing::Result<RecordPut>> {
        let mut outcomes = Vec::with_capacity(records.len());
        for record in records {
            let put = async {
                let mut put = self.inner.put_records(std::slice::from_ref(record)).await;
                put.remove(0)
            };
            outcomes.push(self.item(false, RecordPut::Written, put).await);
        }
        outcomes
    }

    async fn relabel_record(&self, record: &EventRecord) -> billing::Result<()> {
        self.item(false, (), self.inner.relabel_record(record))
            .await
    }

    async fn claim_values(&self, claims: &[ValueClaim]) -> billing::Result<Vec<MessageNonce>> {
        let mut holders = Vec::with_capacity(claims.len());
        for claim in claims {
            let held = self
                .item(
                    false,
                    Vec::new(),
                    self.inner.claim_values(std::slice::from_ref(claim)),
                )
                .await?;
            holders.extend(held);
        }
        Ok(holders)
    }

    async fn lanes(&self, keys: &[LaneKey]) -> billing::Result<HashMap<LaneKey, UsageLane>> {
        self.read()?;
        self.inner.lanes(keys).await
    }

    async fn write_lanes(
        &self,
        writes: &[(UsageLane, UsageLane)],
    ) -> billing::Result<Vec<LaneWrite>> {
        self.one_by_one(writes, |w| self.inner.write_lanes(w)).await
    }

    async fn tallies(&self, keys: &[TallyKey]) -> billing::Result<HashMap<TallyKey, DayTally>> {
        self.read()?;
        self.inner.tallies(keys).await
    }

    async fn write_tallies(
        &self,
        writes: &[(DayTally, DayTally)],
    ) -> billing::Result<Vec<LaneWrite>> {
        self.one_by_one(writes, |w| self.inner.write_tallies(w))
            .await
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

/// Per customer, what the dead process left: nothing counted that is not recorded, nothing
/// counted twice (each line at most what its recorded events add up to, tokens recovered from
/// the events' keys through `tokens_of`). Returns how many events are recorded.
async fn at_most_recorded(
    app: &TestApp,
    catalog: &Catalog,
    subscribers: &[(String, String)],
    tokens_of: &HashMap<String, u64>,
) -> usize {
    let mut recorded = 0;
    for (customer, invoice) in subscribers {
        let records = records_by_key(app, customer).await;
        let tokens: u64 = records.keys().map(|k| tokens_of[k]).sum();
        assert!(records.values().all(|r| r["status"] == "matched"));
        let count: u64 = quantity(app, invoice, &catalog.count_price)
            .await
            .parse()
            .unwrap();
        assert!(
            count <= records.len() as u64,
            "{customer}: {count} counted, {} recorded",
            records.len()
        );
        let counted_tokens = quantity(app, invoice, &catalog.sum_price).await;
        let counted_tenths = (counted_tokens.parse::<f64>().unwrap() * 10.0).round() as u64;
        assert!(
            counted_tenths <= tokens,
            "{customer}: {counted_tokens} tokens counted, {} recorded",
            tenths(tokens)
        );
        recorded += records.len();
    }
    recorded
}

/// One kill point: a batch of `size` events for `customers` fresh customers in one message, a
/// matcher killed after `allowed` item writes, then redeliveries of the same message to fresh
/// matchers (at most `deliveries`, as the queue's maxReceiveCount would allow). Returns the
/// killed run's result, how many events it left recorded, and the redeliveries' reports.
///
/// The events are received on a day of their own, so the day's tally in their lane is this
/// case's alone: on a shared day, other tests' messages in the same lane would land between
/// the run and its redelivery, which a FIFO lane never lets happen in production.
async fn kill_and_redeliver(
    app: &TestApp,
    catalog: &Catalog,
    customers: usize,
    size: usize,
    allowed: usize,
    deliveries: usize,
) -> (
    billing::Result<BatchReport>,
    usize,
    Vec<billing::Result<BatchReport>>,
) {
    let mut subscribers = Vec::new();
    for c in 0..customers {
        subscribers.push(subscriber(app, &catalog.plan_id, &format!("Killed {allowed}/{c}")).await);
    }
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = Utc::now();
    let day = unique_day();
    let mut events = Vec::with_capacity(size);
    let mut sent = Vec::with_capacity(size);
    let mut tokens_of = HashMap::new();
    for i in 0..size {
        let customer = &subscribers[i % customers].0;
        let key = format!("{run}-{i}");
        let tokens = (i % 9 + 1) as u64;
        let e = event(
            &catalog.event_name,
            customer,
            &key,
            at,
            &format!("0.{tokens}"),
        );
        events.push(received_on(e, day));
        sent.push((customer.clone(), tokens));
        tokens_of.insert(key, tokens);
    }
    let batch = message(events);

    let killed =
        matcher_with(|store| Arc::new(Faulty::new(store, FaultMode::KillAfter(allowed), 1))).await;
    let first = killed.process(batch.clone()).await;
    let left = at_most_recorded(app, catalog, &subscribers, &tokens_of).await;

    let mut redeliveries = Vec::new();
    for _ in 0..deliveries {
        let fresh = integration_tests::startup().await.matcher();
        let result = fresh.process(batch.clone()).await;
        let done = result.is_ok();
        redeliveries.push(result);
        if done {
            break;
        }
    }
    // Exact totals, every event recorded once.
    let outcomes: Vec<String> = redeliveries
        .iter()
        .map(|r| match r {
            Ok(r) => format!("Ok(recorded {}, redelivered {})", r.recorded, r.redelivered),
            Err(e) => format!("Err({})", e.message),
        })
        .collect();
    let expected = totals(&sent);
    for (customer, invoice) in &subscribers {
        let (count, tokens) = expected[customer];
        let records = records_by_key(app, customer).await;
        assert_eq!(
            records.len() as u64,
            count,
            "kill after {allowed} writes ({left} recorded), then redeliveries {outcomes:?}: \
             {customer} has {} of {count} events recorded",
            records.len()
        );
        assert_eq!(
            quantity(app, invoice, &catalog.count_price).await,
            count.to_string(),
            "kill after {allowed} writes: {customer}'s calls"
        );
        assert_eq!(
            quantity(app, invoice, &catalog.sum_price).await,
            tenths(tokens),
            "kill after {allowed} writes: {customer}'s tokens"
        );
    }
    assert_eq!(
        received(day).await.events,
        size as u64,
        "kill after {allowed} writes: the day's tally, then redeliveries {outcomes:?}"
    );
    (first, left, redeliveries)
}

#[tokio::test]
async fn a_matcher_killed_after_each_write_step_then_redelivered_counts_once() {
    // 250 events over 3 invoices in one message: 250 record writes, then each invoice marked
    // In Progress (3 writes), then one lane share per invoice (3 writes), then the day's tally
    // (1 write). Kill points: before anything, between records, after the last record, between
    // the status marks, between the lane shares, before the tally; the last one lets the run
    // finish.
    const SIZE: usize = 250;
    const CUSTOMERS: usize = 3;
    const WRITES: usize = SIZE + 2 * CUSTOMERS + 1;
    let app = TestApp::spawn().await;
    let catalog = usage_catalog(&app).await;

    let points = [
        0,
        1,
        125,
        SIZE - 1,
        SIZE,
        SIZE + 1,
        SIZE + CUSTOMERS,
        SIZE + CUSTOMERS + 1,
        SIZE + CUSTOMERS + 2,
        SIZE + 2 * CUSTOMERS,
        WRITES,
    ];
    let outcomes = join_all(
        points
            .iter()
            .map(|&k| kill_and_redeliver(&app, &catalog, CUSTOMERS, SIZE, k, 1)),
    )
    .await;
    for (&k, (first, left, redeliveries)) in points.iter().zip(outcomes) {
        let redelivery = redeliveries[0].as_ref().expect("the redelivery succeeds");
        if k < WRITES {
            let e = first.expect_err("killed before its last write");
            assert!(e.message.ends_with("killed"), "{e:?}");
        } else {
            let report = first.expect("not killed: enough writes allowed");
            assert_eq!(
                (
                    report.record_writes,
                    report.lane_writes,
                    report.tally_writes,
                    report.recorded
                ),
                (SIZE, CUSTOMERS, 1, SIZE)
            );
        }
        assert_eq!(left, k.min(SIZE), "kill after {k}: {left} recorded");
        assert_eq!(
            (
                redelivery.recorded,
                redelivery.redelivered,
                redelivery.duplicates
            ),
            (SIZE - left, left, 0),
            "kill after {k}: the redelivery records exactly what is missing and owns the rest"
        );
        // The redelivery writes only the shares the killed run did not.
        let shares_left = k.saturating_sub(SIZE + CUSTOMERS).min(CUSTOMERS);
        assert_eq!(
            redelivery.lane_writes,
            CUSTOMERS - shares_left,
            "kill after {k}: {redelivery:?}"
        );
        // And the day's tally, unless the killed run wrote it.
        assert_eq!(
            redelivery.tally_writes,
            usize::from(k < WRITES),
            "kill after {k}: {redelivery:?}"
        );
    }
}

#[tokio::test]
async fn a_big_batch_killed_late_then_redelivered_counts_once() {
    // One invoice, 1,400 events in one message. The matcher dies after 1,300 record writes (a
    // Lambda timing out late in a big batch); the redelivery must record the last 100 and count
    // all 1,400 once.
    let app = TestApp::spawn().await;
    let catalog = usage_catalog(&app).await;
    let (first, left, redeliveries) = kill_and_redeliver(&app, &catalog, 1, 1_400, 1_300, 5).await;
    assert!(first.is_err());
    assert_eq!(left, 1_300);
    // Finding its own records is progress, not failure: one redelivery does it.
    let reports: Vec<(usize, usize)> = redeliveries
        .iter()
        .map(|r| r.as_ref().map(|r| (r.recorded, r.redelivered)))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("redeliveries: {redeliveries:?}; {e:?}"));
    assert_eq!(reports, [(1_400 - left, left)]);
}

#[tokio::test]
async fn resent_keys_spread_over_a_big_batch_are_skipped_and_the_rest_counted() {
    // A client resends 15 events it sent earlier (a retried request), and they reach the matcher
    // in another message, spread over 1,500 new ones.
    let app = TestApp::spawn().await;
    let catalog = usage_catalog(&app).await;
    let (customer, invoice) = subscriber(&app, &catalog.plan_id, "Resends").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = Utc::now();
    let earlier: Vec<UsageEvent> = (0..100)
        .map(|i| {
            event(
                &catalog.event_name,
                &customer,
                &format!("{run}-old-{i}"),
                at,
                "0.1",
            )
        })
        .collect();
    let matcher = integration_tests::startup().await.matcher();
    matcher
        .process(message(earlier.clone()))
        .await
        .expect("the first delivery");

    let mut batch = Vec::new();
    for i in 0..1_500 {
        if i % 100 == 0 {
            batch.push(earlier[i / 100].clone());
        }
        batch.push(event(
            &catalog.event_name,
            &customer,
            &format!("{run}-new-{i}"),
            at,
            "0.1",
        ));
    }
    let batch = message(batch);
    // Up to five deliveries, as a few receives would allow.
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        let fresh = integration_tests::startup().await.matcher();
        match fresh.process(batch.clone()).await {
            Ok(r) => {
                outcomes.push(format!(
                    "Ok(recorded {}, duplicates {})",
                    r.recorded, r.duplicates
                ));
                break;
            }
            Err(e) => outcomes.push(format!("Err({})", e.message)),
        }
    }
    let recorded = records_by_key(&app, &customer).await.len();
    assert_eq!(recorded, 1_600, "deliveries: {outcomes:?}");
    assert_eq!(
        outcomes,
        ["Ok(recorded 1500, duplicates 15)"],
        "one delivery does it"
    );
    assert_eq!(quantity(&app, &invoice, &catalog.count_price).await, "1600");
    assert_eq!(quantity(&app, &invoice, &catalog.sum_price).await, "160");
}

// --- 4. Injected conflicts, throttling and lost responses -----------------------------------

#[tokio::test]
async fn injected_conflicts_and_throttling_are_retried_to_exact_totals() {
    let app = TestApp::spawn().await;
    let catalog = usage_catalog(&app).await;
    let (alice, alice_invoice) = subscriber(&app, &catalog.plan_id, "Flaky A").await;
    let (bob, bob_invoice) = subscriber(&app, &catalog.plan_id, "Flaky B").await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = Utc::now();
    let day = unique_day();

    let flaky = Arc::new(Faulty::new(
        integration_tests::startup().await.store(),
        FaultMode::Flaky(30),
        0x5eed_0004,
    ));
    let matcher = {
        let flaky = flaky.clone();
        matcher_with(move |_| flaky).await
    };
    // Messages of several sizes, one after another, the way a lane delivers them; a failed
    // message is delivered again (as SQS does) until it goes through.
    let mut sent = Vec::new();
    let mut serial = 0u64;
    let mut deliveries = 0;
    let sizes = [1usize, 7, 60, 99, 150, 40, 1, 25, 80, 37];
    for size in sizes.into_iter().cycle().take(3 * sizes.len()) {
        let mut events = Vec::new();
        for i in 0..size {
            serial += 1;
            let customer = if i % 3 == 0 { &bob } else { &alice };
            let tokens = serial % 9 + 1;
            let e = event(
                &catalog.event_name,
                customer,
                &format!("{run}-{serial}"),
                at,
                &format!("0.{tokens}"),
            );
            events.push(received_on(e, day));
            sent.push((customer.clone(), tokens));
        }
        let batch = message(events);
        let report = loop {
            deliveries += 1;
            assert!(deliveries < 200, "a message never went through");
            if let Ok(report) = matcher.process(batch.clone()).await {
                break report;
            }
        };
        assert_eq!(
            report.recorded + report.redelivered + report.duplicates,
            size,
            "{report:?}"
        );
    }
    let faults = flaky.faults.lock().unwrap().clone();
    assert!(
        faults.throttled > 0
            && faults.moved > 0
            && faults.lost_responses > 0
            && faults.failed_reads > 0,
        "every fault was injected: {faults:?}"
    );
    eprintln!("injected: {faults:?} over {deliveries} deliveries");

    let expected = totals(&sent);
    for (customer, invoice) in [(&alice, &alice_invoice), (&bob, &bob_invoice)] {
        let (count, tokens) = expected[customer];
        assert_eq!(records_by_key(&app, customer).await.len() as u64, count);
        assert_eq!(
            quantity(&app, invoice, &catalog.count_price).await,
            count.to_string()
        );
        assert_eq!(
            quantity(&app, invoice, &catalog.sum_price).await,
            tenths(tokens)
        );
    }
    assert_eq!(received(day).await.events, sent.len() as u64);
}

#[tokio::test]
async fn a_store_refusing_every_lane_write_fails_the_batch_and_counts_nothing() {
    let app = TestApp::spawn().await;
    let catalog = usage_catalog(&app).await;
    let run = uuid::Uuid::new_v4().simple().to_string();
    let at = Utc::now();

    let cases = join_all([false, true].map(|moved| {
        let app = &app;
        let catalog = &catalog;
        let run = &run;
        async move {
            let (customer, invoice) =
                subscriber(app, &catalog.plan_id, &format!("Refused {moved}")).await;
            let events: Vec<UsageEvent> = (0..30)
                .map(|i| {
                    event(
                        &catalog.event_name,
                        &customer,
                        &format!("{run}-{moved}-{i}"),
                        at,
                        "0.5",
                    )
                })
                .collect();
            let store = Arc::new(Faulty::new(
                integration_tests::startup().await.store(),
                FaultMode::RefuseLanes { moved },
                1,
            ));
            let matcher = {
                let store = store.clone();
                matcher_with(move |_| store).await
            };
            let batch = message(events);
            let result = matcher.process(batch.clone()).await;
            (
                moved,
                customer,
                invoice,
                batch,
                result,
                store.writes.load(Ordering::SeqCst),
            )
        }
    }))
    .await;

    for (moved, customer, invoice, batch, result, lane_writes) in cases {
        let e =
            result.expect_err("a batch whose usage cannot be written is an error (redelivered)");
        assert!(
            lane_writes > 1,
            "moved={moved}: retried before giving up ({lane_writes} lane writes): {e:?}"
        );
        assert_eq!(quantity(&app, &invoice, &catalog.count_price).await, "0");
        assert_eq!(quantity(&app, &invoice, &catalog.sum_price).await, "0");
        // The records were written (the message owns them), but nothing was counted.
        assert_eq!(records_by_key(&app, &customer).await.len(), 30);

        // The redelivery to a healthy matcher counts the batch once.
        let report = integration_tests::startup()
            .await
            .matcher()
            .process(batch)
            .await
            .expect("healthy matcher");
        assert_eq!(
            (report.recorded, report.redelivered, report.lane_writes),
            (0, 30, 1)
        );
        assert_eq!(quantity(&app, &invoice, &catalog.count_price).await, "30");
        assert_eq!(quantity(&app, &invoice, &catalog.sum_price).await, "15");
    }
}
