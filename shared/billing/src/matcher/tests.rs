//! The matcher as a black box over the in-memory ports: events go in through
//! [`Matcher::process`]; what counts is read back as the API would read it (the invoice and
//! its priced lines through [`InvoiceStore`], the event records through
//! [`MemoryStore::records`]). Nothing here looks at how usage is stored, so these tests hold
//! whatever shape the usage storage takes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::customer::{Customer, ExternalCustomerId};
use crate::ids::{CustomerId, InvoiceId, PriceId};
use crate::invoice::{Invoice, InvoiceStatus, PricedInvoice};
use crate::meter::Meter;
use crate::period::Period;
use crate::plan::Plan;
use crate::ports::UsageStore;
use crate::testing::{World, usage_event};
use crate::usage::{CustomerRef, EventRecord, EventStatus, UsageEvent};

fn d(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("an instant")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("a decimal")
}

/// Mid-March 2026; contracts below start on March 1 unless a test needs an earlier period.
const NOW: &str = "2026-03-15T12:00:00Z";

/// A COUNT meter on `api_call` priced 0.10 a call, and a SUM meter of `tokens` on the same
/// event name priced 0.001 a token.
struct Catalog {
    plan: Plan,
    calls_price: PriceId,
    tokens_price: PriceId,
}

async fn catalog(world: &World, extra: serde_json::Value) -> Catalog {
    let calls = world
        .meter(json!({"code": "API_CALLS", "eventName": "api_call", "aggregationType": "COUNT"}))
        .await;
    let tokens = world
        .meter(
            json!({"code": "TOKENS", "eventName": "api_call", "aggregationType": "SUM",
                      "aggregationKey": "tokens"}),
        )
        .await;
    let mut body = json!({"name": "Usage", "prices": [
        {"model": "USAGE", "meterId": calls.id.as_str(), "unitAmount": "0.10"},
        {"model": "USAGE", "meterId": tokens.id.as_str(), "unitAmount": "0.001"}
    ]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let plan = world.plan(body).await;
    let price_of = |meter: &Meter| {
        plan.prices
            .iter()
            .find(|p| p.meter_id() == Some(&meter.id))
            .expect("a price on the meter")
            .id
            .clone()
    };
    Catalog {
        calls_price: price_of(&calls),
        tokens_price: price_of(&tokens),
        plan,
    }
}

async fn customer(world: &World, name: &str) -> Customer {
    world.customer(json!({"name": name})).await
}

/// A call event with `tokens`.
fn call(customer: &Customer, key: &str, at: &str, tokens: &str) -> UsageEvent {
    usage_event("api_call", &customer.id, key, t(at), &[("tokens", tokens)])
}

/// Quantity and amount of the one line of `price` (late lines excluded).
fn line(invoice: &PricedInvoice, price: &PriceId) -> (Decimal, Decimal) {
    let lines: Vec<_> = invoice
        .lines
        .iter()
        .filter(|l| &l.line.price_id == price && !l.line.description.contains("late usage"))
        .collect();
    assert_eq!(lines.len(), 1, "one line of {price}: {:?}", invoice.lines);
    (lines[0].line.quantity, lines[0].amount)
}

async fn priced(world: &World, id: &InvoiceId) -> PricedInvoice {
    world.priced(id).await
}

/// The records of one customer's events, by idempotency key; asserts no key is recorded twice.
fn records_of(world: &World, customer: &CustomerId) -> BTreeMap<String, EventRecord> {
    let mut by_key = BTreeMap::new();
    for r in world.store.records() {
        if r.customer_id.as_ref() == Some(customer) {
            let key = r.event.idempotency_key.as_str().to_owned();
            assert!(
                by_key.insert(key.clone(), r).is_none(),
                "{key} recorded twice"
            );
        }
    }
    by_key
}

#[tokio::test]
async fn each_event_is_counted_on_the_line_of_its_period_and_priced_by_the_money_rule() {
    let world = World::at(t(NOW));
    let c = catalog(&world, json!({})).await;
    let alice = customer(&world, "Alice").await;
    let contract = world.subscribe(&alice, &c.plan, d("2026-03-01")).await;
    let events: Vec<UsageEvent> = (0..7)
        .map(|i| call(&alice, &format!("k{i}"), "2026-03-10T08:00:00Z", "0.5"))
        .collect();

    let report = world
        .matcher()
        .process(crate::testing::message(events))
        .await
        .expect("matched");

    assert_eq!(report.recorded, 7, "{report:?}");
    let invoice = world.invoice(&contract, d("2026-03-01")).await;
    assert_eq!(invoice.status, InvoiceStatus::InProgress);
    let invoice = invoice.priced().unwrap();
    assert_eq!(line(&invoice, &c.calls_price), (dec("7"), dec("0.70")));
    // 3.5 tokens × 0.001 = 0.0035, rounded once to the cent (half away from zero).
    assert_eq!(line(&invoice, &c.tokens_price), (dec("3.5"), dec("0.00")));
    assert_eq!(invoice.total_minor_units, 70);
    let records = records_of(&world, &alice.id);
    assert_eq!(records.len(), 7);
    for r in records.values() {
        assert_eq!(r.status, EventStatus::Matched);
        assert_eq!(r.matches.len(), 2, "both meters read it");
        assert!(
            r.matches
                .iter()
                .all(|m| m.invoice_id.as_ref() == Some(&invoice.invoice.id))
        );
    }
    // The next period's invoice saw nothing.
    let april = priced(&world, &Invoice::id_for(&contract.id, d("2026-04-01"))).await;
    assert_eq!(april.total_minor_units, 0);
    assert_eq!(april.invoice.status, InvoiceStatus::Drafted);
}

#[tokio::test]
async fn a_key_repeated_within_one_batch_counts_once() {
    let world = World::at(t(NOW));
    let c = catalog(&world, json!({})).await;
    let alice = customer(&world, "Alice").await;
    let contract = world.subscribe(&alice, &c.plan, d("2026-03-01")).await;
    let at = "2026-03-10T08:00:00Z";
    let batch = vec![
        call(&alice, "same", at, "10"),
        call(&alice, "other", at, "1"),
        call(&alice, "same", at, "10"),
        call(&alice, "same", at, "999"), // the same key with other properties: still a repeat
    ];

    world
        .matcher()
        .process(crate::testing::message(batch))
        .await
        .expect("matched");

    let invoice = priced(&world, &Invoice::id_for(&contract.id, d("2026-03-01"))).await;
    assert_eq!(line(&invoice, &c.calls_price).0, dec("2"));
    assert_eq!(
        line(&invoice, &c.tokens_price).0,
        dec("11"),
        "the first of the repeats counts"
    );
    assert_eq!(records_of(&world, &alice.id).len(), 2);
}

#[tokio::test]
async fn a_key_resent_in_a_later_batch_counts_once_and_the_rest_of_that_batch_counts() {
    let world = World::at(t(NOW));
    let c = catalog(&world, json!({})).await;
    let alice = customer(&world, "Alice").await;
    let bob = customer(&world, "Bob").await;
    let contract = world.subscribe(&alice, &c.plan, d("2026-03-01")).await;
    world.subscribe(&bob, &c.plan, d("2026-03-01")).await;
    let at = "2026-03-10T08:00:00Z";
    let matcher = world.matcher();
    matcher
        .process(crate::testing::message(vec![
            call(&alice, "a", at, "1"),
            call(&alice, "b", at, "2"),
        ]))
        .await
        .expect("first batch");

    // A resend of "b" among new events, and Bob's own "a" (keys are per customer).
    let report = matcher
        .process(crate::testing::message(vec![
            call(&alice, "c", at, "4"),
            call(&alice, "b", at, "2"),
            call(&bob, "a", at, "8"),
            call(&alice, "d", at, "16"),
        ]))
        .await
        .expect("second batch");

    assert_eq!((report.recorded, report.duplicates), (3, 1), "{report:?}");
    let invoice = priced(&world, &Invoice::id_for(&contract.id, d("2026-03-01"))).await;
    assert_eq!(line(&invoice, &c.calls_price).0, dec("4"));
    assert_eq!(line(&invoice, &c.tokens_price).0, dec("23"));
    assert_eq!(records_of(&world, &alice.id).len(), 4);
    assert_eq!(records_of(&world, &bob.id).len(), 1);
    // A third delivery of everything (a redelivered batch) changes nothing.
    let again = world
        .matcher()
        .process(crate::testing::message(vec![
            call(&alice, "a", at, "1"),
            call(&alice, "d", at, "16"),
        ]))
        .await
        .expect("redelivery");
    assert_eq!((again.recorded, again.duplicates), (0, 2));
    let invoice = priced(&world, &Invoice::id_for(&contract.id, d("2026-03-01"))).await;
    assert_eq!(line(&invoice, &c.tokens_price).0, dec("23"));
}

#[tokio::test]
async fn usage_of_a_closed_period_goes_to_a_late_line_on_the_next_open_invoice() {
    let world = World::at(t("2026-03-01T00:15:00Z"));
    let c = catalog(&world, json!({})).await;
    let alice = customer(&world, "Alice").await;
    let contract = world.subscribe(&alice, &c.plan, d("2026-02-01")).await;
    let matcher = world.matcher();
    matcher
        .process(crate::testing::message(vec![call(
            &alice,
            "on-time",
            "2026-02-20T10:00:00Z",
            "5",
        )]))
        .await
        .expect("matched");
    // The run on March 1 closes February (no grace).
    let report = world.run_daily(d("2026-03-01")).await.expect("the run");
    assert_eq!(report.sent, 1, "{report:?}");
    let february = Invoice::id_for(&contract.id, d("2026-02-01"));
    let march = Invoice::id_for(&contract.id, d("2026-03-01"));
    let sent = priced(&world, &february).await;

    // Late usage arriving on March's first day (the day the run closed February).
    world.clock.set(t("2026-03-01T00:30:00Z"));
    matcher
        .process(crate::testing::message(vec![
            call(&alice, "late-1", "2026-02-27T23:59:59.999Z", "3"),
            call(&alice, "late-2", "2026-02-03T00:00:00Z", "4"),
            call(&alice, "march", "2026-03-01T00:00:00Z", "100"),
        ]))
        .await
        .expect("matched");

    assert_eq!(
        priced(&world, &february).await,
        sent,
        "a sent invoice never changes"
    );
    let march_invoice = priced(&world, &march).await;
    let late: Vec<_> = march_invoice
        .lines
        .iter()
        .filter(|l| l.line.description.contains("late usage"))
        .map(|l| {
            (
                l.line.price_id.clone(),
                l.line.quantity,
                l.amount,
                l.line.service_period,
            )
        })
        .collect();
    let mut late = late;
    late.sort_by_key(|l| l.1);
    let february_period = Period {
        start: d("2026-02-01"),
        end: d("2026-03-01"),
    };
    assert_eq!(
        late,
        vec![
            (
                c.calls_price.clone(),
                dec("2"),
                dec("0.20"),
                february_period
            ),
            (
                c.tokens_price.clone(),
                dec("7"),
                dec("0.01"),
                february_period
            ),
        ]
    );
    assert_eq!(
        line(&march_invoice, &c.calls_price),
        (dec("1"), dec("0.10"))
    );
    assert_eq!(
        line(&march_invoice, &c.tokens_price),
        (dec("100"), dec("0.10"))
    );
    let records = records_of(&world, &alice.id);
    assert_eq!(records["late-1"].status, EventStatus::Late);
    assert_eq!(records["late-2"].status, EventStatus::Late);
    assert_eq!(records["march"].status, EventStatus::Matched);
    assert!(
        records["late-1"]
            .matches
            .iter()
            .all(|m| m.invoice_id.as_ref() == Some(&march))
    );
}

/// Found by a new user: the billing run triggered ahead of the period end (the dev server's
/// `?date=` after today) closes the current invoice; usage dated today then belongs on the next
/// period's draft, which exists though the period has not started by the clock.
#[tokio::test]
async fn usage_after_a_run_ahead_of_the_period_end_lands_on_the_next_draft() {
    let world = World::at(t("2026-02-20T09:00:00Z"));
    let c = catalog(&world, json!({})).await;
    let alice = customer(&world, "Alice").await;
    let contract = world.subscribe(&alice, &c.plan, d("2026-02-01")).await;
    let report = world.run_daily(d("2026-03-01")).await.expect("the run");
    assert_eq!(report.paid_without_charge, 1, "February closed: {report:?}");
    let march = Invoice::id_for(&contract.id, d("2026-03-01"));

    world
        .matcher()
        .process(crate::testing::message(vec![call(
            &alice,
            "today",
            "2026-02-20T09:00:00Z",
            "5",
        )]))
        .await
        .expect("matched");

    let record = &records_of(&world, &alice.id)["today"];
    assert_eq!(record.status, EventStatus::Late, "{record:?}");
    assert!(
        record
            .matches
            .iter()
            .all(|m| m.invoice_id.as_ref() == Some(&march)),
        "{record:?}"
    );
    assert_eq!(
        line(&priced(&world, &march).await, &c.calls_price).0,
        dec("0"),
        "the late call is on its own line for February's service period"
    );
}

#[tokio::test]
async fn an_event_that_cannot_be_billed_is_recorded_with_its_reason() {
    let world = World::at(t("2026-03-01T00:15:00Z"));
    let c = catalog(&world, json!({})).await;
    let bytes = world
        .meter(
            json!({"code": "BYTES", "eventName": "upload", "aggregationType": "SUM",
                      "aggregationKey": "bytes"}),
        )
        .await;
    let regions = world
        .meter(
            json!({"code": "GPU", "eventName": "gpu", "aggregationType": "SUM",
                      "aggregationKey": "seconds", "groupKeys": ["region"]}),
        )
        .await;
    let strict = world
        .plan(json!({"name": "Strict", "prices": [
            {"model": "USAGE", "meterId": bytes.id.as_str(), "unitAmount": "1"},
            {"model": "USAGE", "meterId": regions.id.as_str(), "dimensionalRates": [
                {"dimensions": {"region": "eu"}, "unitAmount": "0.5"}]}
        ]}))
        .await;
    let subscribed = customer(&world, "Subscribed").await;
    let unsubscribed = customer(&world, "No contract").await;
    let ended = customer(&world, "Ended").await;
    world.subscribe(&subscribed, &strict, d("2026-03-01")).await;
    // Unsubscribed's contract starts in May: March is not covered.
    world
        .subscribe(&unsubscribed, &c.plan, d("2026-05-01"))
        .await;
    // Ended's contract covered February only, and February is closed by the run below.
    world
        .contract(
            json!({"customerId": ended.id.as_str(), "planId": c.plan.id.as_str(),
                          "startDate": "2026-02-01", "endDate": "2026-03-01"}),
        )
        .await;
    world.run_daily(d("2026-03-01")).await.expect("the run");
    world.clock.set(t("2026-03-02T00:00:00Z"));
    let now = "2026-03-01T12:00:00Z";
    let ghost = CustomerId::parse("cus_0190ffffffffffffffffffffffffffff").unwrap();
    let ghost_external = UsageEvent {
        customer: CustomerRef::External(ExternalCustomerId::parse("ghost-1").unwrap()),
        ..usage_event("api_call", &ghost, "ghost-ext", t(now), &[])
    };
    let batch = vec![
        usage_event("nobody_listens", &subscribed.id, "unmatched", t(now), &[]),
        usage_event("api_call", &ghost, "ghost", t(now), &[]),
        ghost_external,
        call(&unsubscribed, "no-contract", now, "1"),
        call(&ended, "no-open-invoice", "2026-02-10T00:00:00Z", "1"),
        usage_event("upload", &subscribed.id, "missing", t(now), &[]),
        usage_event(
            "upload",
            &subscribed.id,
            "text",
            t(now),
            &[("bytes", "many")],
        ),
        usage_event(
            "upload",
            &subscribed.id,
            "negative",
            t(now),
            &[("bytes", "-5")],
        ),
        usage_event(
            "gpu",
            &subscribed.id,
            "no-region",
            t(now),
            &[("seconds", "1")],
        ),
        usage_event(
            "gpu",
            &subscribed.id,
            "no-rate",
            t(now),
            &[("seconds", "1"), ("region", "us")],
        ),
        usage_event("upload", &subscribed.id, "ok", t(now), &[("bytes", "5")]),
    ];

    let report = world
        .matcher()
        .process(crate::testing::message(batch))
        .await
        .expect("recorded");

    assert_eq!(report.recorded, 11, "{report:?}");
    let all: BTreeMap<String, EventStatus> = world
        .store
        .records()
        .into_iter()
        .map(|r| (r.event.idempotency_key.as_str().to_owned(), r.status))
        .collect();
    let expected: BTreeMap<String, EventStatus> = [
        ("unmatched", EventStatus::Unmatched),
        ("ghost", EventStatus::UnknownCustomer),
        ("ghost-ext", EventStatus::UnknownCustomer),
        ("no-contract", EventStatus::NoContract),
        ("no-open-invoice", EventStatus::NoOpenInvoice),
        ("missing", EventStatus::MissingProperty),
        ("text", EventStatus::InvalidProperty),
        ("negative", EventStatus::InvalidProperty),
        ("no-region", EventStatus::MissingProperty),
        ("no-rate", EventStatus::NoRate),
        ("ok", EventStatus::Matched),
    ]
    .into_iter()
    .map(|(k, s)| (k.to_owned(), s))
    .collect();
    assert_eq!(all, expected);
    // Only the billable one changed an invoice.
    let total: i64 = world
        .store
        .invoices_now()
        .iter()
        .filter(|i| i.status.is_open())
        .map(|i| i.priced().unwrap().total_minor_units)
        .sum();
    assert_eq!(total, 500);
    // Unknown customers' records name no customer, and an unknown customer resent is still one.
    let unknown = world
        .store
        .records()
        .into_iter()
        .filter(|r| r.customer_id.is_none())
        .count();
    assert_eq!(unknown, 2);
    let again = world
        .matcher()
        .process(crate::testing::message(vec![usage_event(
            "api_call",
            &ghost,
            "ghost",
            t(now),
            &[],
        )]))
        .await
        .unwrap();
    assert_eq!((again.recorded, again.duplicates), (0, 1));
}

#[tokio::test]
async fn dimensional_prices_get_a_line_per_combination_and_unlisted_ones_the_fallback() {
    let world = World::at(t(NOW));
    let tokens = world
        .meter(
            json!({"code": "LLM_TOKENS", "eventName": "llm", "aggregationType": "SUM",
                      "aggregationKey": "tokens", "groupKeys": ["region", "model"]}),
        )
        .await;
    let plan = world
        .plan(
            json!({"name": "AI", "prices": [{"model": "USAGE", "meterId": tokens.id.as_str(),
            "description": "Tokens",
            "dimensionalRates": [
                {"dimensions": {"region": "eu", "model": "gpt-4"}, "unitAmount": "0.03"},
                {"dimensions": {"region": "us", "model": "gpt-4"}, "unitAmount": "0.02"}],
            "fallbackUnitAmount": "0.01"}]}),
        )
        .await;
    let alice = customer(&world, "Alice").await;
    let contract = world.subscribe(&alice, &plan, d("2026-03-01")).await;
    let e = |key: &str, region: &str, model: &str, n: &str| {
        usage_event(
            "llm",
            &alice.id,
            key,
            t("2026-03-10T00:00:00Z"),
            &[("region", region), ("model", model), ("tokens", n)],
        )
    };
    let matcher = world.matcher();
    matcher
        .process(crate::testing::message(vec![
            e("1", "eu", "gpt-4", "100"),
            e("2", "us", "gpt-4", "10"),
        ]))
        .await
        .unwrap();
    // A later batch adds to an existing combination's line and opens a fallback one.
    matcher
        .process(crate::testing::message(vec![
            e("3", "eu", "gpt-4", "50"),
            e("4", "ap", "claude", "5"),
        ]))
        .await
        .unwrap();

    let invoice = priced(&world, &Invoice::id_for(&contract.id, d("2026-03-01"))).await;
    let mut lines: Vec<(String, Decimal, Decimal)> = invoice
        .lines
        .iter()
        .map(|l| (l.line.description.clone(), l.line.quantity, l.amount))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        vec![
            (
                "Tokens (model=claude, region=ap)".to_owned(),
                dec("5"),
                dec("0.05")
            ),
            (
                "Tokens (model=gpt-4, region=eu)".to_owned(),
                dec("150"),
                dec("4.50")
            ),
            (
                "Tokens (model=gpt-4, region=us)".to_owned(),
                dec("10"),
                dec("0.20")
            ),
        ]
    );
    assert_eq!(invoice.total_minor_units, 475);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn matchers_racing_on_one_invoice_count_every_event_exactly_once() {
    const ROUNDS: usize = 20;
    const BATCH: usize = 25;
    let world = Arc::new(World::at(t(NOW)));
    let c = catalog(&world, json!({})).await;
    let alice = customer(&world, "Alice").await;
    let contract = world.subscribe(&alice, &c.plan, d("2026-03-01")).await;
    let mut expected_tokens = Decimal::ZERO;
    let mut tasks = Vec::new();
    for round in 0..ROUNDS {
        let batch: Vec<UsageEvent> = (0..BATCH)
            .map(|i| {
                let tokens = format!("{}", (round * BATCH + i) % 9 + 1);
                expected_tokens += dec(&tokens);
                call(
                    &alice,
                    &format!("r{round}-{i}"),
                    "2026-03-10T00:00:00Z",
                    &tokens,
                )
            })
            .collect();
        // Every batch goes to two matchers at once (a redelivery racing the first delivery),
        // and every round races the other rounds on the same invoice.
        for _ in 0..2 {
            let (world, batch) = (world.clone(), batch.clone());
            tasks.push(tokio::spawn(async move {
                world
                    .matcher()
                    .process(crate::testing::message(batch))
                    .await
            }));
        }
    }
    let mut recorded = 0;
    for task in tasks {
        let report = task.await.unwrap().expect("every delivery succeeds");
        assert_eq!(report.recorded + report.duplicates, BATCH, "{report:?}");
        recorded += report.recorded;
    }

    assert_eq!(
        recorded,
        ROUNDS * BATCH,
        "each event recorded by exactly one delivery"
    );
    let invoice = priced(&world, &Invoice::id_for(&contract.id, d("2026-03-01"))).await;
    assert_eq!(
        line(&invoice, &c.calls_price).0,
        Decimal::from(ROUNDS * BATCH)
    );
    assert_eq!(line(&invoice, &c.tokens_price).0, expected_tokens);
    assert_eq!(records_of(&world, &alice.id).len(), ROUNDS * BATCH);
    let received = world.store.day_count(d("2026-03-10")).await.unwrap();
    assert_eq!(received.events as usize, ROUNDS * BATCH, "{received:?}");
}

#[tokio::test]
async fn a_big_batch_over_several_invoices_is_counted_whole_one_share_each() {
    let world = World::at(t(NOW));
    let c = catalog(&world, json!({})).await;
    let customers = [
        customer(&world, "A").await,
        customer(&world, "B").await,
        customer(&world, "C").await,
    ];
    let mut contracts = Vec::new();
    for who in &customers {
        contracts.push(world.subscribe(who, &c.plan, d("2026-03-01")).await);
    }
    let batch: Vec<UsageEvent> = (0..250)
        .map(|i| {
            call(
                &customers[i % 3],
                &format!("e{i}"),
                "2026-03-10T00:00:00Z",
                "2",
            )
        })
        .collect();

    let report = world
        .matcher()
        .process(crate::testing::message(batch))
        .await
        .unwrap();

    assert_eq!(report.recorded, 250);
    assert_eq!(
        (report.record_writes, report.lane_writes),
        (250, 3),
        "one record per event, one share per invoice: {report:?}"
    );
    for (i, contract) in contracts.iter().enumerate() {
        let n = (0..250).filter(|e| e % 3 == i).count();
        let invoice = priced(&world, &Invoice::id_for(&contract.id, d("2026-03-01"))).await;
        assert_eq!(line(&invoice, &c.calls_price).0, Decimal::from(n));
        assert_eq!(line(&invoice, &c.tokens_price).0, Decimal::from(2 * n));
    }
}

#[tokio::test(start_paused = true)]
async fn a_matcher_that_dies_mid_batch_counts_nothing_twice_and_a_redelivery_counts_the_rest() {
    let mut previous = None;
    // Die after 0, 1, 2 writes: each leaves records the redelivery owns and nothing counted
    // that is not recorded; the redelivery records exactly what is missing and counts all.
    for n in 0..3 {
        let world = World::at(t(NOW));
        let c = catalog(&world, json!({})).await;
        let alice = customer(&world, "Alice").await;
        let contract = world.subscribe(&alice, &c.plan, d("2026-03-01")).await;
        let batch: Vec<UsageEvent> = (0..250)
            .map(|i| call(&alice, &format!("e{i}"), "2026-03-10T00:00:00Z", "1"))
            .collect();
        let id = Invoice::id_for(&contract.id, d("2026-03-01"));
        // One message, delivered again after the death (same nonce).
        let message = crate::testing::message(batch);
        world.store.crash_after_writes(Some(n));
        let died = world.matcher().process(message.clone()).await;
        assert!(died.is_err(), "died after {n} writes: {died:?}");
        world.store.crash_after_writes(None);
        let left = records_of(&world, &alice.id).len();
        let invoice = priced(&world, &id).await;
        assert!(
            line(&invoice, &c.calls_price).0 <= Decimal::from(left),
            "after {n} writes"
        );
        if let Some(p) = previous {
            assert!(left > p, "more writes leave more recorded: {p} then {left}");
        }
        previous = Some(left);

        let report = world.matcher().process(message).await.expect("redelivery");

        assert_eq!(
            (report.recorded, report.redelivered, report.duplicates),
            (250 - left, left, 0)
        );
        let invoice = priced(&world, &id).await;
        assert_eq!(line(&invoice, &c.calls_price), (dec("250"), dec("25.00")));
        assert_eq!(line(&invoice, &c.tokens_price), (dec("250"), dec("0.25")));
    }
}
