//! The matcher's exactly-once rules on the in-memory ports: a process dying after any write,
//! redeliveries, resends in other lanes, lanes working on one invoice at once, closing while
//! usage is in flight, and distinct values across lanes. Milliseconds, no emulator.

use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use super::{LaneMessage, Matcher};
use crate::Billing;
use crate::ids::{ContractId, InvoiceId};
use crate::invoice::{Invoice, InvoiceStatus};
use crate::ports::{LedgerStore, UsageStore};
use crate::tally::DayCount;
use crate::testing::{ManualClock, MemoryStore};
use crate::usage::{EventInput, EventStatus, Lane, MessageNonce, UsageEvent};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 14, 12, 0, 0).unwrap()
}

/// A store with one customer on a plan pricing three meters of one event name: calls (COUNT),
/// tokens (SUM of `tokens`) and users (UNIQUE_COUNT of `user`).
struct World {
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    billing: Billing,
    customer: String,
    contract: ContractId,
    prices: Vec<String>,
}

impl World {
    async fn new() -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::at(now()));
        let billing = Billing::new(store.clone(), clock.clone(), None);
        let meter = |code: &str, aggregation: &str, key: Option<&str>| {
            json!({"code": code, "eventName": "call", "displayName": code,
                   "aggregationType": aggregation, "aggregationKey": key})
        };
        for (code, aggregation, key) in [
            ("CALLS", "COUNT", None),
            ("TOKENS", "SUM", Some("tokens")),
            ("USERS", "UNIQUE_COUNT", Some("user")),
        ] {
            billing
                .create_meter(serde_json::from_value(meter(code, aggregation, key)).unwrap())
                .await
                .unwrap();
        }
        let usage = |code: &str| json!({"model": "USAGE", "meterCode": code, "unitAmount": "1"});
        let plan = billing
            .create_plan(
                serde_json::from_value(json!({"name": "Usage", "prices": [
                    usage("CALLS"), usage("TOKENS"), usage("USERS")]}))
                .unwrap(),
            )
            .await
            .unwrap();
        let customer = billing
            .create_customer(serde_json::from_value(json!({"name": "Acme"})).unwrap())
            .await
            .unwrap();
        let start = now().date_naive().with_day(1).unwrap();
        let contract = billing
            .create_contract(
                serde_json::from_value(json!({
                    "customerId": customer.id.as_str(), "planId": plan.id.as_str(),
                    "startDate": start.to_string()}))
                .unwrap(),
            )
            .await
            .unwrap();
        Self {
            store,
            clock,
            billing,
            customer: customer.id.to_string(),
            contract: contract.id,
            prices: plan.prices.iter().map(|p| p.id.to_string()).collect(),
        }
    }

    fn matcher(&self) -> Matcher {
        Matcher::new(self.store.clone(), self.store.clone(), self.clock.clone())
    }

    /// An event: `key`, `tokens` tokens, by `user`.
    fn event(&self, key: &str, tokens: u32, user: &str) -> UsageEvent {
        let input: EventInput = serde_json::from_value(json!({
            "eventName": "call", "customerId": self.customer, "idempotencyKey": key,
            "timestamp": now().to_rfc3339(),
            "properties": {"tokens": tokens, "user": user}}))
        .unwrap();
        input.parse(now()).unwrap()
    }

    /// An event of `customer` (a reference as the API takes it) received at `received`.
    fn received(
        &self,
        key: &str,
        customer: serde_json::Value,
        received: DateTime<Utc>,
    ) -> UsageEvent {
        let mut body = json!({"eventName": "call", "idempotencyKey": key,
            "timestamp": now().to_rfc3339(), "properties": {"tokens": 1, "user": "u"}});
        body.as_object_mut()
            .unwrap()
            .extend(customer.as_object().unwrap().clone());
        let input: EventInput = serde_json::from_value(body).unwrap();
        input.parse(received).unwrap()
    }

    /// The events received on `day` (the day tallies, every lane).
    async fn received_on(&self, day: DateTime<Utc>) -> DayCount {
        self.store.day_count(day.date_naive()).await.unwrap()
    }

    fn invoice_id(&self) -> InvoiceId {
        Invoice::id_for(&self.contract, now().date_naive().with_day(1).unwrap())
    }

    /// The current invoice's (calls, tokens, users).
    async fn quantities(&self) -> (Decimal, Decimal, Decimal) {
        self.quantities_of(&self.invoice_id()).await
    }

    async fn quantities_of(&self, invoice: &InvoiceId) -> (Decimal, Decimal, Decimal) {
        let invoice = self.billing.invoice(invoice.as_str()).await.unwrap();
        let of = |price: &str| {
            invoice
                .lines
                .iter()
                .filter(|l| l.line.price_id.as_str() == price)
                .map(|l| l.line.quantity)
                .sum::<Decimal>()
        };
        (
            of(&self.prices[0]),
            of(&self.prices[1]),
            of(&self.prices[2]),
        )
    }
}

fn dec(n: u32) -> Decimal {
    Decimal::from(n)
}

/// A message of `events` in `lane`.
fn message_in(lane: u8, events: Vec<UsageEvent>) -> LaneMessage {
    LaneMessage {
        nonce: MessageNonce::generate(),
        lane: Lane::new(lane),
        events,
    }
}

// Paused time: the matcher's backoff between retries passes at once.
#[tokio::test(start_paused = true)]
async fn a_process_dying_after_any_write_then_redelivered_counts_each_event_once() {
    // 12 events in two messages of one lane, 3 of them sharing a user. A clean run writes 12
    // records, 3 value claims, 1 status mark and 1 lane share.
    let clean = World::new().await;
    let events = |w: &World| {
        (0..12)
            .map(|i| w.event(&format!("k{i}"), i + 1, &format!("u{}", i % 9)))
            .collect::<Vec<_>>()
    };
    let batch = |w: &World| {
        let all = events(w);
        vec![
            message_in(3, all[..7].to_vec()),
            message_in(3, all[7..].to_vec()),
        ]
    };
    let before = clean.store.writes();
    clean.matcher().process(batch(&clean)).await.unwrap();
    let writes = clean.store.writes() - before;
    assert_eq!(
        writes,
        12 + 9 + 1 + 1 + 1,
        "records, claims, status, share, day tally"
    );
    let counted = DayCount {
        events: 12,
        unbillable: 0,
    };
    assert_eq!(clean.received_on(now()).await, counted);
    let expected = (dec(12), dec(78), dec(9));
    assert_eq!(clean.quantities().await, expected);

    for n in 0..writes {
        let w = World::new().await;
        let batch = batch(&w);
        w.store.crash_after_writes(Some(n));
        let died = w.matcher().process(batch.clone()).await;
        assert!(died.is_err(), "killed after {n} writes");
        let (calls, _, users) = w.quantities().await;
        assert!(calls <= dec(12) && users <= dec(9), "nothing counted twice");
        let left = w.received_on(now()).await;
        assert!(left.events as usize <= w.store.records().len(), "{left:?}");
        w.store.crash_after_writes(None);
        let redelivered = w.matcher().process(batch.clone()).await.unwrap();
        assert_eq!(
            redelivered.recorded + redelivered.redelivered,
            12,
            "after {n}: {redelivered:?}"
        );
        assert_eq!(w.quantities().await, expected, "killed after {n} writes");
        assert_eq!(w.store.records().len(), 12);
        assert_eq!(
            w.received_on(now()).await,
            counted,
            "killed after {n} writes"
        );
        // A third delivery finds everything in: it writes nothing.
        let before = w.store.writes();
        let third = w.matcher().process(batch).await.unwrap();
        assert_eq!((w.store.writes(), third.redelivered), (before, 12));
    }
}

#[tokio::test]
async fn a_resend_in_another_lane_counts_nothing_and_says_so() {
    let w = World::new().await;
    let first = w
        .matcher()
        .process(vec![message_in(1, vec![w.event("a", 5, "x")])])
        .await
        .unwrap();
    assert_eq!((first.recorded, first.duplicates), (1, 0));
    let again = w
        .matcher()
        .process(vec![message_in(
            9,
            vec![w.event("a", 5, "x"), w.event("b", 2, "y")],
        )])
        .await
        .unwrap();
    assert_eq!((again.recorded, again.duplicates), (1, 1));
    assert_eq!(w.quantities().await, (dec(2), dec(7), dec(2)));
    assert_eq!(
        w.received_on(now()).await.events,
        2,
        "a resend is not an event"
    );
}

#[tokio::test]
async fn day_tallies_count_each_event_once_on_the_day_it_was_received() {
    let w = World::new().await;
    let acme = || json!({"customerId": w.customer});
    let tomorrow = now() + chrono::Duration::days(1);
    let m1 = message_in(
        4,
        vec![
            w.received("a", acme(), now()),
            w.received("b", acme(), now()),
        ],
    );
    let m2 = message_in(
        4,
        vec![
            w.received("c", acme(), now()),
            w.received("x", json!({"externalCustomerId": "nobody"}), now()),
        ],
    );
    let m3 = message_in(
        4,
        vec![
            w.received("d", acme(), now()),
            w.received("e", acme(), tomorrow),
        ],
    );
    let first = w
        .matcher()
        .process(vec![m1.clone(), m2.clone()])
        .await
        .unwrap();
    assert_eq!(first.tally_writes, 1, "one day, one lane: {first:?}");
    let today = DayCount {
        events: 4,
        unbillable: 1,
    };
    assert_eq!(w.received_on(now()).await, today);

    // The lane redelivered with a message more (its first two were not deleted): only the new
    // one's events are added, each to its day's tally.
    let again = w.matcher().process(vec![m1.clone(), m2, m3]).await.unwrap();
    assert_eq!((again.redelivered, again.recorded), (4, 2), "{again:?}");
    assert_eq!(again.tally_writes, 2, "today's and tomorrow's: {again:?}");
    assert_eq!(
        w.received_on(now()).await,
        DayCount {
            events: 5,
            unbillable: 1
        }
    );
    assert_eq!(
        w.received_on(tomorrow).await,
        DayCount {
            events: 1,
            unbillable: 0
        }
    );

    // A resend in another lane is no event.
    let resend = w
        .matcher()
        .process(vec![message_in(9, m1.events.clone())])
        .await
        .unwrap();
    assert_eq!((resend.duplicates, resend.tally_writes), (2, 0));
    assert_eq!(w.received_on(now()).await.events, 5);
    assert_eq!(
        w.received_on(now() - chrono::Duration::days(1)).await,
        DayCount::default()
    );
}

#[tokio::test]
async fn lanes_share_one_invoice_without_conflicts_and_values_count_once() {
    // Four lanes at once on one customer: each writes its own share, none waits for another.
    let w = World::new().await;
    let matcher = Arc::new(w.matcher());
    let runs = (0..4u8).map(|lane| {
        let events: Vec<UsageEvent> = (0..25)
            .map(|i| w.event(&format!("l{lane}-{i}"), 1, &format!("user{}", i % 10)))
            .collect();
        let matcher = matcher.clone();
        async move { matcher.process(vec![message_in(lane, events)]).await }
    });
    let reports = futures_util::future::join_all(runs).await;
    for report in reports {
        let report = report.unwrap();
        assert_eq!((report.recorded, report.lane_writes), (25, 1), "{report:?}");
    }
    // 100 calls, 100 tokens, 10 distinct users however the lanes raced for them.
    assert_eq!(w.quantities().await, (dec(100), dec(100), dec(10)));
    assert_eq!(w.store.lanes_of(&w.invoice_id()).len(), 4);
}

#[tokio::test]
async fn an_invoice_closed_while_usage_is_in_flight_sends_it_late_and_the_record_says_so() {
    let w = World::new().await;
    w.matcher()
        .process(vec![message_in(2, vec![w.event("early", 3, "a")])])
        .await
        .unwrap();
    // The period ends and the invoice closes (its lanes sealed, its quantities frozen).
    let id = w.invoice_id();
    let state = w.store.invoice_state(&id).await.unwrap().unwrap();
    let mut closed = state.invoice.clone();
    closed.status = InvoiceStatus::Sent;
    assert_eq!(
        w.store
            .transition(&state, &closed, None, &[], &[])
            .await
            .unwrap(),
        crate::concurrency::Write::Done
    );
    assert_eq!(w.quantities().await, (dec(1), dec(3), dec(1)), "frozen");
    // Usage of the closed period arriving now goes late, to the next period's invoice.
    let report = w
        .matcher()
        .process(vec![message_in(2, vec![w.event("late", 4, "b")])])
        .await
        .unwrap();
    assert_eq!(report.by_status.get("late"), Some(&1), "{report:?}");
    assert_eq!(
        w.quantities().await,
        (dec(1), dec(3), dec(1)),
        "a sent invoice never changes"
    );
    let record = w
        .store
        .records()
        .into_iter()
        .find(|r| r.event.idempotency_key.as_str() == "late")
        .unwrap();
    assert_eq!(record.status, EventStatus::Late);
    let next = record.matches[0].invoice_id.clone().unwrap();
    assert_ne!(next, id);
    assert_eq!(w.quantities_of(&next).await, (dec(1), dec(4), dec(1)));
}

// Paused time: the matcher's backoff between retries passes at once.
#[tokio::test(start_paused = true)]
async fn a_share_sealed_between_landing_and_writing_sends_the_usage_late() {
    // The matcher read the invoice open, then the close sealed its lanes before the share was
    // written: the write is refused, the usage re-lands late, and the record is rewritten.
    let w = World::new().await;
    let id = w.invoice_id();
    let batch = vec![message_in(5, vec![w.event("racing", 2, "z")])];
    // The first delivery dies right after writing its record (before the status mark and the
    // share); the invoice closes; the redelivery finds the seal.
    w.store.crash_after_writes(Some(1));
    assert!(w.matcher().process(batch.clone()).await.is_err());
    w.store.crash_after_writes(None);
    let state = w.store.invoice_state(&id).await.unwrap().unwrap();
    let mut closed = state.invoice.clone();
    closed.status = InvoiceStatus::Sent;
    let closing = w
        .store
        .transition(&state, &closed, None, &[], &[])
        .await
        .unwrap();
    assert_eq!(closing, crate::concurrency::Write::Done);
    let report = w.matcher().process(batch).await.unwrap();
    assert_eq!(report.relabels, 1, "{report:?}");
    assert_eq!(w.quantities().await, (dec(0), dec(0), dec(0)));
    let record = w.store.records().pop().unwrap();
    assert_eq!(record.status, EventStatus::Late);
    let next = record.matches[0].invoice_id.clone().unwrap();
    assert_eq!(w.quantities_of(&next).await, (dec(1), dec(2), dec(1)));
}
