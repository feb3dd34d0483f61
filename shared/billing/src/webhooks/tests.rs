//! Outgoing webhooks over the in-memory ports: which events each change writes (with the
//! change), delivery and its schedule, manual retries, coalescing, disabling a failing
//! endpoint, a dispatcher killed after each of its writes, the sweep, and the invoice actions.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::json;

use super::{DeliveryStatus, Dispatcher, Job, Outcome};
use crate::change::Change;
use crate::customer::Customer;
use crate::error::ErrorKind;
use crate::ids::InvoiceId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::plan::Plan;
use crate::testing::{World, message, usage_event};
use crate::use_cases::MarkPaid;
use crate::webhooks::{CreateEndpoint, UpdateEndpoint};

fn d(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("an instant")
}

const HOOK: &str = "http://127.0.0.1:9000/hooks";
const OTHER: &str = "http://127.0.0.1:9001/hooks";

/// Jobs waiting on a simulated queue, each with when it is handed out.
#[derive(Default)]
struct Queue {
    jobs: Vec<(Job, DateTime<Utc>)>,
}

impl Queue {
    /// Takes what the code under test queued, and nudges every outbox entry (as the store
    /// adapter does after a write).
    fn collect(&mut self, world: &World) {
        let now = world.now();
        for (job, delay) in world.webhook_queue.drain() {
            self.jobs.push((job, now + delay));
        }
        for entry in world.store.webhook_outbox_now() {
            let job = Job::Entry { key: entry.key };
            if !self.jobs.iter().any(|(j, _)| *j == job) {
                self.jobs.push((job, entry.not_before.max(now)));
            }
        }
    }

    /// Runs every job due now, again and again, until none is.
    async fn pump(&mut self, world: &World, dispatcher: &Dispatcher) {
        loop {
            self.collect(world);
            let now = world.now();
            let Some(i) = self.jobs.iter().position(|(_, at)| *at <= now) else {
                return;
            };
            let (job, _) = self.jobs.remove(i);
            match dispatcher.handle(&job).await {
                Ok(Outcome::Done) => {}
                Ok(Outcome::RetryIn(wait)) => self.jobs.push((job, now + wait)),
                Err(e) => panic!("{job:?}: {e}"),
            }
        }
    }

    /// Moves the clock to `until`, running each job when it falls due.
    async fn run_until(&mut self, world: &World, dispatcher: &Dispatcher, until: DateTime<Utc>) {
        loop {
            self.pump(world, dispatcher).await;
            match self.jobs.iter().map(|(_, at)| *at).min() {
                Some(next) if next <= until => world.clock.set(next),
                _ => break,
            }
        }
        world.clock.set(until);
        self.pump(world, dispatcher).await;
    }
}

async fn endpoint(
    world: &World,
    url: &str,
    events: Option<Vec<&str>>,
) -> crate::webhooks::WebhookEndpoint {
    world
        .billing
        .create_webhook_endpoint(CreateEndpoint {
            url: Some(url.to_owned()),
            events: events.map(|e| e.into_iter().map(str::to_owned).collect()),
            description: None,
        })
        .await
        .expect("an endpoint")
        .endpoint
}

async fn plan(world: &World) -> Plan {
    let meter = world
        .meter(json!({"code": "API_CALL", "eventName": "api_call", "aggregationType": "COUNT"}))
        .await;
    world
        .plan(
            json!({"name": "Pro", "netTerms": 0, "autoPay": true, "prices": [
            {"model": "FLAT", "flatAmount": "50.00", "description": "Pro plan"},
            {"model": "USAGE", "meterId": meter.id.as_str(), "unitAmount": "0.10"}]}),
        )
        .await
}

async fn customer(world: &World, name: &str, method: &str) -> Customer {
    world
        .customer(json!({"name": name, "paymentMethodId": method,
            "contacts": [{"email": format!("{}@example.com", name.to_lowercase()), "roles": ["billing"]}]}))
        .await
}

async fn calls(world: &World, customer: &Customer, keys: &[&str]) {
    let events = keys
        .iter()
        .map(|k| usage_event("api_call", &customer.id, k, world.now(), &[]))
        .collect();
    world
        .matcher()
        .process(message(events))
        .await
        .expect("matched");
}

fn types(world: &World) -> Vec<String> {
    world
        .receiver
        .received()
        .iter()
        .map(|r| r.body()["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn each_change_writes_its_events_with_it_and_every_type_arrives() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    endpoint(&world, HOOK, None).await;
    let plan = plan(&world).await;
    let bob = customer(&world, "Bob", "pm_card_visa").await;
    world
        .patch_customer(&bob.id, json!({"legalName": "Bob Ltd"}))
        .await;
    let contract = world.subscribe(&bob, &plan, d("2026-02-01")).await;
    calls(&world, &bob, &["a", "b"]).await;
    let stranger = crate::ids::CustomerId::generate();
    world
        .matcher()
        .process(message(vec![usage_event(
            "api_call",
            &stranger,
            "x",
            world.now(),
            &[],
        )]))
        .await
        .unwrap();
    queue
        .run_until(&world, &dispatcher, t("2026-02-01T09:02:00Z"))
        .await;
    // The run closes February and charges it; a declined card then fails March's charge.
    world.run_daily(d("2026-03-01")).await.unwrap();
    queue.pump(&world, &dispatcher).await;
    let declining = crate::customer::PaymentMethodId::parse("pm_card_declines").unwrap();
    let carol = customer(&world, "Carol", declining.as_str()).await;
    world.gateway.decline(&declining);
    let carols = world.subscribe(&carol, &plan, d("2026-02-01")).await;
    world.run_daily(d("2026-03-01")).await.unwrap();
    let march = Invoice::id_for(&carols.id, d("2026-02-01"));
    world
        .billing
        .void_invoice(march.as_str())
        .await
        .expect("voided");
    world
        .billing
        .cancel_contract(contract.id.as_str())
        .await
        .unwrap();
    queue.pump(&world, &dispatcher).await;

    let got = types(&world);
    for expected in [
        "customer.created",
        "customer.updated",
        "contract.created",
        "contract.terminated",
        "invoice.created",
        "invoice.updated",
        "invoice.sent",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.voided",
        "usage.unbillable",
    ] {
        assert!(
            got.iter().any(|g| g == expected),
            "{expected} missing from {got:?}"
        );
    }
    assert!(
        world.store.webhook_outbox_now().is_empty(),
        "every entry dispatched"
    );
    let received = world.receiver.received();
    let paid = received
        .iter()
        .find(|r| r.body()["type"] == "invoice.paid")
        .unwrap()
        .body();
    assert_eq!(paid["data"]["object"], "invoice");
    assert_eq!(paid["data"]["status"], "PAID");
    assert_eq!(
        paid["id"].as_str(),
        Some(
            received
                .iter()
                .find(|r| r.body()["type"] == "invoice.paid")
                .unwrap()
                .event_id
                .as_str()
        )
    );
    for r in &received {
        let body = r.body();
        assert!(
            body["createdAt"].is_string() && body["data"].is_object(),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_fails_then_answers_gets_the_retry_on_schedule_with_the_same_id() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    let hook = endpoint(&world, HOOK, Some(vec!["customer.created"])).await;
    world.receiver.answer(HOOK, [Some(500), None]);
    customer(&world, "Alice", "pm_card_visa").await;
    queue.pump(&world, &dispatcher).await;
    let delivery = &world.store.deliveries_now()[0];
    assert_eq!(delivery.status, DeliveryStatus::Pending);
    assert_eq!(
        delivery.next_attempt_at,
        Some(world.now() + TimeDelta::seconds(5))
    );

    // 5 s later: no answer; 5 min after that: 200.
    queue
        .run_until(&world, &dispatcher, t("2026-02-01T09:10:00Z"))
        .await;
    let delivery = &world.store.deliveries_now()[0];
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    let at: Vec<_> = delivery
        .attempts
        .iter()
        .map(|a| (a.at, a.status_code))
        .collect();
    assert_eq!(
        at,
        [
            (t("2026-02-01T09:00:00Z"), Some(500)),
            (t("2026-02-01T09:00:05Z"), None),
            (t("2026-02-01T09:05:05Z"), Some(200)),
        ]
    );
    let received = world.receiver.received();
    assert_eq!(
        received.len(),
        2,
        "the attempt without an answer reached nobody"
    );
    assert_eq!(
        received[0].event_id, received[1].event_id,
        "a redelivery keeps its id"
    );
    assert_eq!(received[0].payload, received[1].payload, "and its bytes");
    assert_eq!(delivery.endpoint_id, hook.id);
}

#[tokio::test]
async fn a_receiver_down_for_the_whole_window_ends_failed_and_a_manual_retry_delivers() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    let hook = endpoint(&world, HOOK, Some(vec!["customer.created"])).await;
    world.receiver.answer(HOOK, [None; 8]);
    customer(&world, "Alice", "pm_card_visa").await;
    queue
        .run_until(&world, &dispatcher, t("2026-02-03T00:00:00Z"))
        .await;
    let delivery = world.store.deliveries_now()[0].clone();
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts.len(), 8);
    let span = delivery.attempts[7].at - delivery.attempts[0].at;
    assert!(span >= TimeDelta::hours(24), "{span:?}");
    assert!(world.receiver.received().is_empty());

    let retried = world
        .billing
        .retry_webhook_delivery(hook.id.as_str(), &delivery.id())
        .await
        .expect("retried");
    assert_eq!(retried.status, DeliveryStatus::Pending);
    queue.pump(&world, &dispatcher).await;
    let delivery = world.store.deliveries_now()[0].clone();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert!(delivery.attempts[8].manual);
    assert_eq!(world.receiver.received().len(), 1);
}

#[tokio::test]
async fn a_dispatcher_killed_after_any_write_loses_nothing_and_keeps_each_id() {
    let mut write = 0;
    loop {
        let world = World::at(t("2026-02-01T09:00:00Z"));
        endpoint(&world, HOOK, None).await;
        endpoint(&world, OTHER, Some(vec!["customer.created"])).await;
        world.receiver.answer(HOOK, [Some(503)]);
        let alice = customer(&world, "Alice", "pm_card_visa").await;
        let mut queue = Queue::default();
        queue.collect(&world);
        // The dispatcher dies after `write` writes; a fresh one (the redelivery) carries on.
        world.store.crash_after_writes(Some(write));
        let dying = world.dispatcher();
        for (job, _) in std::mem::take(&mut queue.jobs) {
            let _ = dying.handle(&job).await;
        }
        let died = world.store.crashed();
        world.store.crash_after_writes(None);
        queue
            .run_until(&world, &world.dispatcher(), t("2026-02-01T10:00:00Z"))
            .await;

        let deliveries = world.store.deliveries_now();
        assert_eq!(deliveries.len(), 2, "after {write} writes: {deliveries:?}");
        assert!(
            deliveries
                .iter()
                .all(|d| d.status == DeliveryStatus::Delivered),
            "after {write} writes: {deliveries:?}"
        );
        let received = world.receiver.received();
        let ids: std::collections::BTreeSet<_> =
            received.iter().map(|r| r.event_id.clone()).collect();
        assert_eq!(ids.len(), 1, "one event, one id, however often sent");
        assert!(
            received
                .iter()
                .all(|r| r.body()["data"]["id"] == alice.id.as_str())
        );
        assert!(world.store.webhook_outbox_now().is_empty());
        if !died {
            break;
        }
        write += 1;
    }
    assert!(
        write >= 4,
        "the sweep covered the dispatcher's writes ({write})"
    );
}

#[tokio::test]
async fn usage_updates_are_coalesced_per_invoice_per_minute_and_carry_the_state_after_it() {
    let world = World::at(t("2026-02-10T09:00:10Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    endpoint(
        &world,
        HOOK,
        Some(vec!["invoice.updated", "usage.unbillable"]),
    )
    .await;
    let plan = plan(&world).await;
    let bob = customer(&world, "Bob", "pm_card_visa").await;
    let contract = world.subscribe(&bob, &plan, d("2026-02-01")).await;
    calls(&world, &bob, &["a", "b"]).await;
    world.clock.set(t("2026-02-10T09:00:50Z"));
    calls(&world, &bob, &["c"]).await;
    let stranger = crate::ids::CustomerId::generate();
    for key in ["x", "y", "z"] {
        world
            .matcher()
            .process(message(vec![usage_event(
                "api_call",
                &stranger,
                key,
                world.now(),
                &[],
            )]))
            .await
            .unwrap();
    }
    queue.pump(&world, &dispatcher).await;
    assert!(
        world.receiver.received().is_empty(),
        "held until the minute is over"
    );
    queue
        .run_until(&world, &dispatcher, t("2026-02-10T09:01:00Z"))
        .await;
    let received = world.receiver.received();
    let updated: Vec<_> = received
        .iter()
        .filter(|r| r.body()["type"] == "invoice.updated")
        .collect();
    assert_eq!(updated.len(), 1, "{received:?}");
    let february = Invoice::id_for(&contract.id, d("2026-02-01"));
    assert_eq!(updated[0].body()["data"]["id"], february.as_str());
    assert_eq!(
        updated[0].body()["data"]["total"],
        "50.30",
        "all three calls"
    );
    let unbillable: Vec<_> = received
        .iter()
        .filter(|r| r.body()["type"] == "usage.unbillable")
        .collect();
    assert_eq!(unbillable.len(), 1);
    assert_eq!(unbillable[0].body()["data"]["count"], 3);
    assert_eq!(unbillable[0].body()["data"]["status"], "unknown_customer");

    // A call in the next minute is its own event.
    world.clock.set(t("2026-02-10T09:01:30Z"));
    calls(&world, &bob, &["d"]).await;
    queue
        .run_until(&world, &dispatcher, t("2026-02-10T09:02:00Z"))
        .await;
    let totals: Vec<_> = world
        .receiver
        .received()
        .iter()
        .filter(|r| r.body()["type"] == "invoice.updated")
        .map(|r| r.body()["data"]["total"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(totals, ["50.30", "50.40"]);
}

#[tokio::test]
async fn an_endpoint_failing_for_five_days_is_disabled_and_the_operator_is_mailed_once() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    let hook = endpoint(&world, HOOK, Some(vec!["customer.created"])).await;
    world.receiver.answer(HOOK, [Some(500); 40]);
    for day in 0..6 {
        world
            .clock
            .set(t("2026-02-01T09:00:00Z") + TimeDelta::days(day));
        customer(&world, &format!("C{day}"), "pm_card_visa").await;
        queue
            .run_until(&world, &dispatcher, world.now() + TimeDelta::hours(23))
            .await;
    }
    let stored = world
        .billing
        .webhook_endpoint(hook.id.as_str())
        .await
        .unwrap();
    assert!(stored.disabled, "{stored:?}");
    assert!(
        stored
            .disabled_reason
            .as_deref()
            .unwrap()
            .contains("every delivery failed")
    );
    let alerts: Vec<_> = world
        .mailer
        .sent()
        .into_iter()
        .filter(|m| m.subject.starts_with("Webhook endpoint disabled"))
        .collect();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].to[0].as_str(), "ops@example.com");
    assert!(
        world
            .store
            .deliveries_now()
            .iter()
            .all(|d| d.status != DeliveryStatus::Pending)
    );

    // Re-enabled, it receives again and forgets the streak.
    let enabled = world
        .billing
        .update_webhook_endpoint(
            hook.id.as_str(),
            UpdateEndpoint {
                disabled: Change::Set(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!enabled.disabled && enabled.failing_since.is_none());
}

#[tokio::test]
async fn endpoints_get_only_their_types_and_disabled_or_deleted_ones_nothing() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    endpoint(&world, HOOK, Some(vec!["customer.updated"])).await;
    let other = endpoint(&world, OTHER, None).await;
    world
        .billing
        .update_webhook_endpoint(
            other.id.as_str(),
            UpdateEndpoint {
                disabled: Change::Set(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let alice = customer(&world, "Alice", "pm_card_visa").await;
    world
        .patch_customer(&alice.id, json!({"legalName": "Alice Ltd"}))
        .await;
    queue.pump(&world, &dispatcher).await;
    let received = world.receiver.received();
    assert_eq!(types(&world), ["customer.updated"], "{received:?}");
    assert!(received.iter().all(|r| r.url == HOOK));
}

#[tokio::test]
async fn signatures_are_dated_by_the_wall_clock_whatever_the_business_clock_says() {
    // Receivers refuse a `webhook-timestamp` more than 5 minutes off their own clock, so a
    // clock moved for testing (the local stack's) must not date the signature.
    let world = World::at(t("2031-06-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    let mut queue = Queue::default();
    endpoint(&world, HOOK, None).await;
    customer(&world, "Alice", "pm_card_visa").await;
    queue.pump(&world, &dispatcher).await;
    let received = world.receiver.received();
    assert_eq!(types(&world), ["customer.created"]);
    let body = received[0].body();
    assert_eq!(
        body["createdAt"], "2031-06-01T09:00:00Z",
        "the event keeps its time"
    );
    let off = (received[0].timestamp - Utc::now()).num_seconds().abs();
    assert!(off < 60, "signed at {}", received[0].timestamp);
}

#[tokio::test]
async fn the_sweep_requeues_entries_whose_nudge_was_lost() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let dispatcher = world.dispatcher();
    endpoint(&world, HOOK, None).await;
    customer(&world, "Alice", "pm_card_visa").await;
    let early = dispatcher.sweep().await.unwrap();
    assert_eq!(
        early.entries, 0,
        "too fresh: its nudge may still be on its way"
    );
    world.clock.advance(TimeDelta::minutes(3));
    let report = dispatcher.sweep().await.unwrap();
    assert_eq!(report.entries, 1);
    let jobs = world.webhook_queue.drain();
    assert!(matches!(jobs[0].0, Job::Entry { .. }));
}

async fn sent_invoice(world: &World, plan: &Plan) -> (Customer, InvoiceId) {
    let declining = crate::customer::PaymentMethodId::parse("pm_card_declines").unwrap();
    world.gateway.decline(&declining);
    let carol = customer(world, "Carol", declining.as_str()).await;
    let contract = world.subscribe(&carol, plan, d("2026-02-01")).await;
    world.run_daily(d("2026-03-01")).await.unwrap();
    let id = Invoice::id_for(&contract.id, d("2026-02-01"));
    assert_eq!(world.invoice_by_id(&id).await.status, InvoiceStatus::Sent);
    (carol, id)
}

#[tokio::test]
async fn mark_paid_records_the_transfer_stops_auto_pay_and_repeats_safely() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let plan = plan(&world).await;
    let (_, id) = sent_invoice(&world, &plan).await;
    let request = || MarkPaid {
        paid_at: Some(t("2026-02-28T16:00:00Z")),
        reference: Some("WIRE-2026-0042".into()),
    };
    let paid = world
        .billing
        .mark_invoice_paid(id.as_str(), request())
        .await
        .unwrap();
    assert_eq!(paid.invoice.status, InvoiceStatus::Paid);
    assert_eq!(
        paid.invoice.payment.external_reference.as_deref(),
        Some("WIRE-2026-0042")
    );
    assert_eq!(paid.invoice.payment.next_attempt_on, None);
    let again = world
        .billing
        .mark_invoice_paid(id.as_str(), request())
        .await
        .unwrap();
    assert_eq!(again, paid, "repeating it changes nothing");
    let other = world
        .billing
        .mark_invoice_paid(
            id.as_str(),
            MarkPaid {
                reference: Some("OTHER".into()),
                ..request()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (other.kind, other.code.as_ref()),
        (ErrorKind::Conflict, "invoice_already_paid")
    );
    // Auto-pay does not charge it on its next day.
    let charges = world.gateway.charge_calls();
    world.run_daily(d("2026-03-02")).await.unwrap();
    assert_eq!(world.gateway.charge_calls(), charges);
    let missing = world
        .billing
        .mark_invoice_paid(
            id.as_str(),
            MarkPaid {
                reference: None,
                paid_at: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code, "missing_field");
}

#[tokio::test]
async fn void_takes_any_unpaid_invoice_seals_it_and_later_usage_goes_late() {
    let world = World::at(t("2026-02-10T09:00:00Z"));
    let plan = plan(&world).await;
    let bob = customer(&world, "Bob", "pm_card_visa").await;
    let contract = world.subscribe(&bob, &plan, d("2026-02-01")).await;
    calls(&world, &bob, &["a"]).await;
    let february = Invoice::id_for(&contract.id, d("2026-02-01"));
    let void = world.billing.void_invoice(february.as_str()).await.unwrap();
    assert_eq!(void.invoice.status, InvoiceStatus::Void);
    assert_eq!(
        world.billing.void_invoice(february.as_str()).await.unwrap(),
        void
    );
    calls(&world, &bob, &["b"]).await;
    let record = world
        .store
        .records()
        .into_iter()
        .find(|r| r.event.idempotency_key.as_str() == "b")
        .unwrap();
    assert_eq!(record.status, crate::usage::EventStatus::Late);
    assert_eq!(
        record.matches[0].invoice_id,
        Some(Invoice::id_for(&contract.id, d("2026-03-01")))
    );

    let (_, sent) = sent_invoice(&world, &plan).await;
    world
        .gateway
        .accept(&crate::customer::PaymentMethodId::parse("pm_card_declines").unwrap());
    world.run_daily(d("2026-03-02")).await.unwrap();
    let err = world.billing.void_invoice(sent.as_str()).await.unwrap_err();
    assert_eq!(err.code, "invoice_paid");
}

#[tokio::test]
async fn concurrent_actions_on_one_invoice_leave_one_outcome_and_one_event_each() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let plan = plan(&world).await;
    let (_, id) = sent_invoice(&world, &plan).await;
    let before = world.store.webhook_outbox_now().len();
    let mark = MarkPaid {
        paid_at: None,
        reference: Some("WIRE-1".into()),
    };
    let (a, b, c) = tokio::join!(
        world.billing.void_invoice(id.as_str()),
        world.billing.mark_invoice_paid(id.as_str(), mark.clone()),
        world.billing.void_invoice(id.as_str()),
    );
    let status = world.invoice_by_id(&id).await.status;
    match status {
        InvoiceStatus::Void => {
            assert!(a.is_ok() && c.is_ok());
            assert_eq!(b.unwrap_err().code, "invoice_voided");
        }
        InvoiceStatus::Paid => {
            assert_eq!(a.unwrap_err().code, "invoice_paid");
            assert_eq!(c.unwrap_err().code, "invoice_paid");
            assert!(b.is_ok());
        }
        other => panic!("{other:?}"),
    }
    let events: Vec<_> = world.store.webhook_outbox_now()[before..]
        .iter()
        .flat_map(|e| e.events.iter().map(|e| e.event_type.as_str()))
        .collect();
    assert_eq!(events.len(), 1, "one transition, one event: {events:?}");
}

#[tokio::test]
async fn send_mails_the_invoice_again_at_once_and_emits_invoice_sent() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let plan = plan(&world).await;
    let (carol, id) = sent_invoice(&world, &plan).await;
    let mails = world.mailer.sent().len();
    world.clock.set(t("2026-03-03T10:00:00Z"));
    let sent = world.billing.send_invoice(id.as_str()).await.unwrap();
    assert_eq!(sent.invoice.payment.resent_at, Some(world.now()));
    let new: Vec<_> = world.mailer.sent()[mails..].to_vec();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].to[0], carol.contacts[0].email);
    assert!(
        new[0].subject.starts_with("Invoice INV-"),
        "{}",
        new[0].subject
    );
    let last = world.store.webhook_outbox_now().pop().unwrap();
    assert_eq!(last.events[0].event_type.as_str(), "invoice.sent");

    let open = Invoice::id_for(
        &world
            .store
            .invoices_now()
            .iter()
            .find(|i| i.status.is_open())
            .unwrap()
            .contract_id,
        d("2026-03-01"),
    );
    assert_eq!(
        world
            .billing
            .send_invoice(open.as_str())
            .await
            .unwrap_err()
            .code,
        "invoice_not_sent"
    );
}

#[tokio::test]
async fn an_endpoints_url_events_and_disabled_flag_cannot_be_removed() {
    let world = World::at(t("2026-02-01T09:00:00Z"));
    let hook = endpoint(&world, HOOK, None).await;
    for (field, patch) in [
        ("url", json!({"url": null})),
        ("events", json!({"events": null})),
        ("disabled", json!({"disabled": null})),
    ] {
        let request: UpdateEndpoint = serde_json::from_value(patch).unwrap();
        let refused = world
            .billing
            .update_webhook_endpoint(hook.id.as_str(), request)
            .await
            .unwrap_err();
        assert_eq!(
            refused.kind,
            ErrorKind::Unprocessable,
            "{field}: {refused:?}"
        );
        assert_eq!(refused.code, "field_required", "{field}");
        assert_eq!(refused.param.as_deref(), Some(field));
    }
    let unchanged = world
        .billing
        .webhook_endpoint(hook.id.as_str())
        .await
        .unwrap();
    assert_eq!(unchanged.url.as_str(), HOOK);
}

/// Writes a batch of two new calls makes through `matcher`.
async fn writes_of_a_batch(
    world: &World,
    matcher: &crate::matcher::Matcher,
    customer: &Customer,
    keys: [&str; 2],
) -> usize {
    let events = keys
        .iter()
        .map(|k| usage_event("api_call", &customer.id, k, world.now(), &[]))
        .collect();
    let before = world.store.writes();
    matcher.process(message(events)).await.expect("matched");
    world.store.writes() - before
}

#[tokio::test]
async fn usage_writes_no_coalesced_event_nobody_receives_and_one_per_invoice_and_minute() {
    let world = World::at(t("2026-02-10T09:00:10Z"));
    let plan = plan(&world).await;
    let bob = customer(&world, "Bob", "pm_card_visa").await;
    world.subscribe(&bob, &plan, d("2026-02-01")).await;
    // An endpoint for other types only: usage writes no webhook event.
    endpoint(&world, OTHER, Some(vec!["customer.created"])).await;
    let matcher = world.matcher();
    writes_of_a_batch(&world, &matcher, &bob, ["w1", "w2"]).await; // flips the invoice
    let plain = writes_of_a_batch(&world, &matcher, &bob, ["a1", "a2"]).await;
    world.clock.set(t("2026-02-10T09:01:10Z"));
    assert_eq!(
        writes_of_a_batch(&world, &matcher, &bob, ["b1", "b2"]).await,
        plain,
        "a new minute, and still nothing for nobody"
    );

    // Subscribed (a new instance reads the endpoints): the first batch of a minute writes the
    // invoice's coalesced entry, later ones in the same minute write nothing more.
    endpoint(&world, HOOK, Some(vec!["invoice.updated"])).await;
    let matcher = world.matcher();
    assert_eq!(
        writes_of_a_batch(&world, &matcher, &bob, ["c1", "c2"]).await,
        plain + 1
    );
    world.clock.set(t("2026-02-10T09:01:40Z"));
    assert_eq!(
        writes_of_a_batch(&world, &matcher, &bob, ["d1", "d2"]).await,
        plain
    );
    world.clock.set(t("2026-02-10T09:02:05Z"));
    assert_eq!(
        writes_of_a_batch(&world, &matcher, &bob, ["e1", "e2"]).await,
        plain + 1,
        "a new minute, a new entry"
    );
}
