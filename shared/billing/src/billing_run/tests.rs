//! The billing run over the in-memory ports: closing (gapless numbers, zero totals paid, grace),
//! collecting (success, declines and their retries, paused customers, below the minimum, a
//! charge the invoice no longer needed), mail (one per task, kept when sending fails), and a
//! crash sweep that kills the run after every one of its writes, and between the provider's
//! answer and our record of it, then reruns it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use crate::Result;
use crate::contract::Contract;
use crate::customer::{Customer, PaymentMethodId, ProviderCustomerId};
use crate::ids::InvoiceId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::plan::Plan;
use crate::ports::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, CheckoutSession, ContractStore, LedgerStore,
    NewProviderCustomer, PaymentGateway, ProviderEvent, ProviderEventKind, SetupIntent,
};
use crate::provider_webhooks::Webhooks;
use crate::testing::{FakeGateway, FakeVerifier, GOOD_SIGNATURE, World, usage_event};

use super::BillingRun;

fn d(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("an instant")
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str_exact(s).expect("a decimal")
}

/// February 2026 is the period billed; the run on March 1 closes it.
const START: &str = "2026-02-01";
const END: &str = "2026-03-01";

/// The guide's catalog: an `API_CALL` meter; Free (0.10 a call, net 30) and Pro (50 a month
/// plus 0.08 a call, auto-pay).
struct Catalog {
    free: Plan,
    pro: Plan,
}

async fn catalog(world: &World) -> Catalog {
    let calls = world
        .meter(json!({"code": "API_CALL", "eventName": "api_call", "aggregationType": "COUNT"}))
        .await;
    let free = world
        .plan(json!({"name": "Free", "netTerms": 30, "prices": [
            {"model": "USAGE", "meterId": calls.id.as_str(), "unitAmount": "0.10",
             "description": "API Calls"}]}))
        .await;
    let pro = world
        .plan(
            json!({"name": "Pro", "netTerms": 0, "autoPay": true, "prices": [
            {"model": "FLAT", "flatAmount": "50.00", "description": "Pro plan"},
            {"model": "USAGE", "meterId": calls.id.as_str(), "unitAmount": "0.08",
             "description": "API Calls"}]}),
        )
        .await;
    Catalog { free, pro }
}

/// A customer with a billing contact (so the run has someone to mail) and `fields`.
async fn customer(world: &World, name: &str, fields: serde_json::Value) -> Customer {
    let mut body = json!({"name": name,
        "contacts": [{"email": format!("{}@example.com", name.to_lowercase()), "roles": ["billing"]}]});
    body.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    world.customer(body).await
}

/// `n` calls by `customer` in February (keys unique per `tag`).
async fn calls(world: &World, customer: &Customer, n: usize) {
    calls_tagged(world, customer, n, "first").await;
}

async fn calls_tagged(world: &World, customer: &Customer, n: usize, tag: &str) {
    let events = (0..n)
        .map(|i| {
            usage_event(
                "api_call",
                &customer.id,
                &format!("{tag}-{i}"),
                t("2026-02-20T12:00:00Z"),
                &[],
            )
        })
        .collect();
    world
        .matcher()
        .process(crate::testing::message(events))
        .await
        .expect("matched");
}

fn february(contract: &Contract) -> InvoiceId {
    Invoice::id_for(&contract.id, d(START))
}

/// Mails sent, counted by what they say and the invoice number they name.
fn mails(world: &World) -> BTreeMap<(&'static str, String), usize> {
    let mut counted = BTreeMap::new();
    for mail in world.mailer.sent() {
        let s = mail.subject.as_str();
        let (kind, number) = if let Some(rest) = s.strip_prefix("Invoice ") {
            ("invoice", rest.split(':').next().unwrap_or_default())
        } else if let Some(n) = s.strip_prefix("Payment received for invoice ") {
            ("receipt", n)
        } else if let Some(n) = s.strip_prefix("Payment failed for invoice ") {
            ("failed", n)
        } else if let Some(n) = s.strip_prefix("Automatic payment failed for invoice ") {
            ("auto_pay_off", n)
        } else if let Some(n) = s.strip_prefix("Duplicate payment refunded for invoice ") {
            ("refunded", n)
        } else {
            panic!("a mail of no known kind: {s}")
        };
        *counted.entry((kind, number.to_owned())).or_default() += 1;
    }
    counted
}

fn number(invoice: &Invoice) -> String {
    invoice.invoice_number.clone().expect("a number")
}

// --- Closing ---------------------------------------------------------------------------------

#[tokio::test]
async fn closing_numbers_invoices_without_gaps_freezes_amounts_and_pays_zero_totals() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let alice = customer(&world, "Alice", json!({})).await;
    let dan = customer(&world, "Dan", json!({})).await;
    let frank = customer(&world, "Frank", json!({})).await;
    let alice_c = world.subscribe(&alice, &c.free, d(START)).await;
    let dan_c = world.subscribe(&dan, &c.free, d(START)).await;
    let frank_c = world.subscribe(&frank, &c.free, d(START)).await;
    calls(&world, &alice, 7).await;
    calls(&world, &frank, 3).await;

    let report = world.run_daily(d(END)).await.unwrap();

    assert_eq!(
        (report.sent, report.paid_without_charge),
        (2, 1),
        "{report:?}"
    );
    assert!(report.errors.is_empty(), "{report:?}");
    let closed: Vec<Invoice> = [&alice_c, &dan_c, &frank_c]
        .into_iter()
        .map(|c| world.store.invoice_state_now(&february(c)).unwrap().invoice)
        .collect();
    let mut numbers: Vec<String> = closed.iter().map(number).collect();
    numbers.sort();
    assert_eq!(numbers, ["INV-000001", "INV-000002", "INV-000003"]);
    let alice_inv = &closed[0];
    assert_eq!(alice_inv.status, InvoiceStatus::Sent);
    assert_eq!(alice_inv.payment.amount_due_minor_units, Some(70));
    assert_eq!(alice_inv.due_date, d("2026-03-31"), "net 30");
    assert_eq!(
        closed[1].status,
        InvoiceStatus::Paid,
        "a zero total is paid without a charge"
    );
    assert_eq!(closed[1].payment.amount_due_minor_units, Some(0));
    assert_eq!(closed[2].payment.amount_due_minor_units, Some(30));
    assert!(world.gateway.payments().is_empty(), "nothing charged");
    // Usage arriving after the close does not change the frozen invoice.
    calls_tagged(&world, &alice, 1, "late").await;
    let after = world.priced(&february(&alice_c)).await;
    assert_eq!(
        (after.total_minor_units, after.invoice.lines[0].quantity),
        (70, dec("7"))
    );
    // The same run again finds nothing to do; the next period closes with the next numbers.
    let again = world.run_daily(d(END)).await.unwrap();
    assert_eq!((again.sent, again.paid_without_charge), (0, 0));
    world.run_daily(d("2026-04-01")).await.unwrap();
    let mut march: Vec<String> = [&alice_c, &dan_c, &frank_c]
        .into_iter()
        .map(|c| {
            number(
                &world
                    .store
                    .invoice_state_now(&Invoice::id_for(&c.id, d(END)))
                    .unwrap()
                    .invoice,
            )
        })
        .collect();
    march.sort();
    assert_eq!(march, ["INV-000004", "INV-000005", "INV-000006"]);
}

#[tokio::test]
async fn an_invoice_stays_open_until_its_period_end_plus_grace_then_later_usage_goes_late() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let calls_meter = world
        .meter(json!({"code": "API_CALL", "eventName": "api_call", "aggregationType": "COUNT"}))
        .await;
    let plan = world
        .plan(json!({"name": "Grace", "gracePeriodDays": 3, "prices": [
            {"model": "USAGE", "meterId": calls_meter.id.as_str(), "unitAmount": "0.10"}]}))
        .await;
    let alice = customer(&world, "Alice", json!({})).await;
    let contract = world.subscribe(&alice, &plan, d(START)).await;
    let feb = february(&contract);
    let late_at = t("2026-02-28T23:00:00Z");
    let send = |key: &str| {
        let event = usage_event("api_call", &alice.id, key, late_at, &[]);
        let matcher = world.matcher();
        async move {
            matcher
                .process(crate::testing::message(vec![event]))
                .await
                .expect("matched")
        }
    };
    send("before-end").await;

    // The run on the period end and on end + grace - 1 leaves it open: usage still lands.
    for day in ["2026-03-01", "2026-03-03"] {
        let report = world.run_daily(d(day)).await.unwrap();
        assert_eq!(report.sent, 0, "{day}: {report:?}");
        let open = world.invoice_by_id(&feb).await;
        assert!(open.status.is_open(), "{day}: {:?}", open.status);
        assert_eq!(open.invoice_number, None);
        send(&format!("in-grace-{day}")).await;
    }
    assert_eq!(world.invoice_by_id(&feb).await.lines[0].quantity, dec("3"));

    // On end + grace it closes, with every event of the grace days on it.
    let report = world.run_daily(d("2026-03-04")).await.unwrap();
    assert_eq!(report.sent, 1, "{report:?}");
    let sent = world.priced(&feb).await;
    assert_eq!(sent.invoice.status, InvoiceStatus::Sent);
    assert_eq!(sent.invoice.invoice_number.as_deref(), Some("INV-000001"));
    assert_eq!(
        (sent.lines[0].line.quantity, sent.total_minor_units),
        (dec("3"), 30)
    );

    // Usage of February arriving later goes to March's late line.
    world.clock.set(t("2026-03-04T09:00:00Z"));
    send("after-close").await;
    assert_eq!(world.priced(&feb).await, sent);
    let march = world.priced(&Invoice::id_for(&contract.id, d(END))).await;
    let late: Vec<_> = march
        .lines
        .iter()
        .filter(|l| l.line.description.contains("late usage"))
        .map(|l| (l.line.quantity, l.amount))
        .collect();
    assert_eq!(late, [(dec("1"), dec("0.10"))]);
}

// --- Collecting ------------------------------------------------------------------------------

#[tokio::test]
async fn auto_pay_charges_the_frozen_total_once_and_mails_a_receipt() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let bob = customer(&world, "Bob", json!({"paymentMethodId": "pm_card_visa"})).await;
    let erin = customer(&world, "Erin", json!({"paymentMethodId": "pm_card_visa"})).await;
    let bob_c = world.subscribe(&bob, &c.pro, d(START)).await;
    let erin_c = world.subscribe(&erin, &c.pro, d(START)).await;
    calls(&world, &bob, 12).await;

    let report = world.run_daily(d(END)).await.unwrap();

    assert_eq!((report.sent, report.charged), (2, 2), "{report:?}");
    for (contract, minor) in [(&bob_c, 5096), (&erin_c, 5000)] {
        let id = february(contract);
        let paid = world.invoice_by_id(&id).await;
        assert_eq!(paid.status, InvoiceStatus::Paid);
        let kept = world.gateway.kept_payments(&id);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(kept[0].amount_minor, minor);
        assert_eq!(kept[0].attempt, 1);
        assert_eq!(
            paid.payment.payment_intent.as_deref(),
            Some(kept[0].id.as_str())
        );
        let n = number(&paid);
        assert_eq!(mails(&world).get(&("receipt", n.clone())), Some(&1), "{n}");
        assert_eq!(mails(&world).get(&("invoice", n)), Some(&1));
    }
    assert_eq!(
        world.mailer.sent().len(),
        4,
        "two invoices, two receipts, nothing else"
    );
    // Later runs charge nothing more.
    world.run_daily(d("2026-03-02")).await.unwrap();
    assert_eq!(world.gateway.charge_calls(), 2);
}

#[tokio::test]
async fn a_declined_card_is_retried_after_one_three_and_five_days_then_auto_pay_turns_off() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let declining = PaymentMethodId::parse("pm_card_declines").unwrap();
    let carol = customer(
        &world,
        "Carol",
        json!({"paymentMethodId": declining.as_str()}),
    )
    .await;
    let contract = world.subscribe(&carol, &c.pro, d(START)).await;
    world.gateway.decline(&declining);
    let id = february(&contract);

    let first = world.run_daily(d(END)).await.unwrap();
    assert_eq!((first.sent, first.failed_attempts), (1, 1), "{first:?}");
    let mut expected_next = vec![];
    // Attempt n fails on its day; the next is 1, 3, 5 days later; days between do nothing.
    for (attempt, day, next, idle) in [
        (1u32, "2026-03-01", Some("2026-03-02"), None),
        (2, "2026-03-02", Some("2026-03-05"), Some("2026-03-04")),
        (3, "2026-03-05", Some("2026-03-10"), Some("2026-03-09")),
        (4, "2026-03-10", None, None),
    ] {
        if attempt > 1 {
            let report = world.run_daily(d(day)).await.unwrap();
            assert_eq!(report.failed_attempts, 1, "{day}: {report:?}");
        }
        let invoice = world.invoice_by_id(&id).await;
        assert_eq!(
            invoice.status,
            InvoiceStatus::Sent,
            "still payable through its link"
        );
        assert_eq!(invoice.payment.attempts, attempt);
        assert_eq!(invoice.payment.next_attempt_on, next.map(d));
        assert!(
            invoice
                .payment
                .last_error
                .as_deref()
                .unwrap()
                .contains("card_declined")
        );
        if let Some(next) = next {
            expected_next.push((id.clone(), attempt + 1, d(next)));
        }
        if let Some(idle) = idle {
            let report = world.run_daily(d(idle)).await.unwrap();
            assert_eq!(report.failed_attempts, 0, "{idle}: nothing due");
        }
    }
    let contract = world
        .store
        .get_contract(&contract.id)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(!contract.auto_pay, "the fourth failure turns auto-pay off");
    let payments = world.gateway.payments();
    assert_eq!(payments.len(), 4, "one charge per attempt: {payments:?}");
    assert!(payments.iter().all(|p| !p.succeeded));
    let scheduled: Vec<_> = world
        .scheduler
        .scheduled()
        .into_iter()
        .map(|(i, a, at)| (i, a, at.date_naive()))
        .collect();
    assert_eq!(
        scheduled, expected_next,
        "a one-time retry on each next attempt's day"
    );
    let n = number(&world.invoice_by_id(&id).await);
    let sent = mails(&world);
    assert_eq!(sent.get(&("failed", n.clone())), Some(&3));
    assert_eq!(sent.get(&("auto_pay_off", n.clone())), Some(&1));
    assert_eq!(sent.get(&("invoice", n)), Some(&1));
    assert_eq!(world.mailer.sent().len(), 5);
    // Nothing happens after that.
    let later = world.run_daily(d("2026-03-20")).await.unwrap();
    assert_eq!(later.failed_attempts, 0);
    assert_eq!(world.gateway.charge_calls(), 4);
}

#[tokio::test]
async fn a_paused_customer_is_charged_on_the_first_run_after_the_pause_is_lifted() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let dave = customer(
        &world,
        "Dave",
        json!({"paymentMethodId": "pm_card_visa", "autoPayPaused": true}),
    )
    .await;
    let contract = world.subscribe(&dave, &c.pro, d(START)).await;
    let id = february(&contract);

    for day in ["2026-03-01", "2026-03-02"] {
        let report = world.run_daily(d(day)).await.unwrap();
        assert_eq!((report.paused, report.charged), (1, 0), "{day}: {report:?}");
    }
    assert!(world.gateway.payments().is_empty());
    assert_eq!(
        world.invoice_by_id(&id).await.payment.next_attempt_on,
        Some(d(END)),
        "still due"
    );

    world
        .patch_customer(&dave.id, json!({"autoPayPaused": false}))
        .await;
    let report = world.run_daily(d("2026-03-03")).await.unwrap();

    assert_eq!((report.paused, report.charged), (0, 1), "{report:?}");
    assert_eq!(world.gateway.kept_payments(&id)[0].amount_minor, 5000);
    assert_eq!(world.invoice_by_id(&id).await.status, InvoiceStatus::Paid);
}

#[tokio::test]
async fn an_invoice_below_the_providers_minimum_is_left_for_its_payment_link() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let tiny = world
        .plan(json!({"name": "Tiny", "netTerms": 0, "autoPay": true,
            "prices": [{"model": "FLAT", "flatAmount": "0.49"}]}))
        .await;
    let fifty = world
        .plan(json!({"name": "Fifty", "netTerms": 0, "autoPay": true,
            "prices": [{"model": "FLAT", "flatAmount": "0.50"}]}))
        .await;
    let erin = customer(&world, "Erin", json!({"paymentMethodId": "pm_card_visa"})).await;
    let finn = customer(&world, "Finn", json!({"paymentMethodId": "pm_card_visa"})).await;
    let erin_c = world.subscribe(&erin, &tiny, d(START)).await;
    let finn_c = world.subscribe(&finn, &fifty, d(START)).await;

    let report = world.run_daily(d(END)).await.unwrap();

    assert_eq!(
        (report.not_collectable, report.charged),
        (1, 1),
        "{report:?}"
    );
    let left = world.invoice_by_id(&february(&erin_c)).await;
    assert_eq!(left.status, InvoiceStatus::Sent);
    assert_eq!(left.payment.next_attempt_on, None, "off the agenda");
    assert!(
        left.payment
            .last_error
            .as_deref()
            .unwrap()
            .contains("minimum")
    );
    assert!(world.gateway.kept_payments(&february(&erin_c)).is_empty());
    assert_eq!(
        world.gateway.kept_payments(&february(&finn_c))[0].amount_minor,
        50
    );
}

/// The fake provider, where the customer pays the invoice on its payment page (and that
/// payment's webhook is handled) just before the run's first charge reaches the provider.
struct PaidOnThePageMeanwhile {
    inner: Arc<FakeGateway>,
    webhooks: Webhooks,
    verifier: Arc<FakeVerifier>,
    done: AtomicBool,
    page_payment: std::sync::Mutex<Option<String>>,
}

#[async_trait]
impl PaymentGateway for PaidOnThePageMeanwhile {
    async fn create_customer(&self, c: &NewProviderCustomer) -> Result<ProviderCustomerId> {
        self.inner.create_customer(c).await
    }
    async fn customer_exists(&self, c: &ProviderCustomerId) -> Result<bool> {
        self.inner.customer_exists(c).await
    }
    async fn delete_customer(&self, c: &ProviderCustomerId) -> Result<()> {
        self.inner.delete_customer(c).await
    }
    async fn attach_default_payment_method(
        &self,
        c: &ProviderCustomerId,
        m: &PaymentMethodId,
    ) -> Result<PaymentMethodId> {
        self.inner.attach_default_payment_method(c, m).await
    }
    async fn refund_unneeded(&self, pi: &str, invoice: &InvoiceId) -> Result<()> {
        self.inner.refund_unneeded(pi, invoice).await
    }
    async fn create_setup_intent(&self, c: &ProviderCustomerId) -> Result<SetupIntent> {
        self.inner.create_setup_intent(c).await
    }
    async fn create_checkout(&self, r: &CheckoutRequest) -> Result<CheckoutSession> {
        self.inner.create_checkout(r).await
    }
    async fn payment_method_of(&self, pi: &str) -> Result<Option<PaymentMethodId>> {
        self.inner.payment_method_of(pi).await
    }
    async fn invoice_of_payment(&self, pi: &str) -> Result<Option<InvoiceId>> {
        self.inner.invoice_of_payment(pi).await
    }
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome> {
        if !self.done.swap(true, Ordering::SeqCst) {
            let pi = self
                .inner
                .pay_outside(&request.invoice_id, request.amount_minor);
            let payload = self.verifier.deliver(ProviderEvent {
                id: "evt_page_paid".to_owned(),
                kind: ProviderEventKind::PaymentSucceeded {
                    invoice_id: Some(request.invoice_id.clone()),
                    payment_intent: pi.clone(),
                },
            });
            self.webhooks
                .receive(&payload, Some(GOOD_SIGNATURE), Utc::now())
                .await?;
            *self.page_payment.lock().unwrap() = Some(pi);
        }
        self.inner.charge(request).await
    }
}

#[tokio::test]
async fn a_charge_the_invoice_no_longer_needed_is_refunded_and_the_customer_told() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let bob = customer(&world, "Bob", json!({"paymentMethodId": "pm_card_visa"})).await;
    let contract = world.subscribe(&bob, &c.pro, d(START)).await;
    let id = february(&contract);
    let verifier = Arc::new(FakeVerifier::new());
    let gateway = Arc::new(PaidOnThePageMeanwhile {
        inner: world.gateway.clone(),
        webhooks: Webhooks::new(
            world.store.clone(),
            verifier.clone(),
            Some(world.gateway.clone()),
        ),
        verifier,
        done: AtomicBool::new(false),
        page_payment: Default::default(),
    });
    let run = BillingRun::new(world.store.clone())
        .with_gateway(gateway.clone())
        .with_mailer(world.mailer.clone());

    let report = run
        .run_daily(d(END), t("2026-03-01T00:15:00Z"))
        .await
        .unwrap();

    assert_eq!(
        (report.charged, report.refunded_unneeded),
        (0, 1),
        "{report:?}"
    );
    let page = gateway.page_payment.lock().unwrap().clone().unwrap();
    let kept = world.gateway.kept_payments(&id);
    assert_eq!(
        kept.len(),
        1,
        "only the page's payment is kept: {:?}",
        world.gateway.payments()
    );
    assert_eq!(kept[0].id, page);
    let paid = world.invoice_by_id(&id).await;
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!(paid.payment.payment_intent.as_deref(), Some(page.as_str()));
    let ours: Vec<String> = world
        .gateway
        .payments()
        .into_iter()
        .filter(|p| p.refunded)
        .map(|p| p.id)
        .collect();
    assert_eq!(paid.payment.refunded_duplicates, ours);
    assert_eq!(ours.len(), 1);
    let n = number(&paid);
    let sent = mails(&world);
    assert_eq!(sent.get(&("refunded", n.clone())), Some(&1));
    assert_eq!(
        sent.get(&("receipt", n.clone())),
        Some(&1),
        "one receipt: the page's payment"
    );
    assert_eq!(sent.get(&("invoice", n)), Some(&1));
    assert_eq!(sent.values().sum::<usize>(), 3);
}

// --- Mail ------------------------------------------------------------------------------------

#[tokio::test]
async fn each_queued_mail_is_sent_exactly_once_and_mail_that_fails_stays_queued() {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let bob = customer(&world, "Bob", json!({"paymentMethodId": "pm_card_visa"})).await;
    let alice = customer(&world, "Alice", json!({})).await;
    world.subscribe(&bob, &c.pro, d(START)).await;
    world.subscribe(&alice, &c.free, d(START)).await;
    calls(&world, &alice, 7).await;
    world.mailer.refuse(true);

    let refused = world.run_daily(d(END)).await.unwrap();

    assert_eq!(
        (refused.sent, refused.charged, refused.mails_sent),
        (2, 1, 0)
    );
    assert_eq!(
        refused.errors.len(),
        3,
        "each mail that failed is reported: {refused:?}"
    );
    assert!(world.mailer.sent().is_empty());
    assert_eq!(world.store.outbox_now().len(), 3, "kept for the next run");

    world.mailer.refuse(false);
    let next = world.run_daily(d("2026-03-02")).await.unwrap();

    assert_eq!(next.mails_sent, 3, "{next:?}");
    assert!(world.store.outbox_now().is_empty());
    let sent = mails(&world);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.values().all(|n| *n == 1), "{sent:?}");
    let alice_mail = world
        .mailer
        .sent()
        .into_iter()
        .find(|m| m.to.iter().any(|a| a.as_str() == "alice@example.com"))
        .unwrap();
    assert!(
        alice_mail.subject.ends_with("USD 0.70"),
        "{}",
        alice_mail.subject
    );
    // Nothing is sent twice.
    let last = world.run_daily(d("2026-03-03")).await.unwrap();
    assert_eq!(last.mails_sent, 0);
    assert_eq!(world.mailer.sent().len(), 3);
}

// --- Crash sweep -----------------------------------------------------------------------------

/// What the sweep's world holds: one customer per case.
struct Sweep {
    world: World,
    /// Pro with a card: 12 calls, charged 50.96.
    bob: Contract,
    /// Pro with a card, no usage: charged 50.00.
    erin: Contract,
    /// Pro with a card that declines: attempt 1 fails.
    carol: Contract,
    /// Free with 7 calls: sent for 0.70, no auto-pay.
    alice: Contract,
    /// Free without usage: paid without a charge.
    dan: Contract,
}

async fn sweep_world() -> Sweep {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let c = catalog(&world).await;
    let card = json!({"paymentMethodId": "pm_card_visa"});
    let declining = PaymentMethodId::parse("pm_card_declines").unwrap();
    let bob = customer(&world, "Bob", card.clone()).await;
    let erin = customer(&world, "Erin", card).await;
    let carol = customer(
        &world,
        "Carol",
        json!({"paymentMethodId": declining.as_str()}),
    )
    .await;
    let alice = customer(&world, "Alice", json!({})).await;
    let dan = customer(&world, "Dan", json!({})).await;
    world.gateway.decline(&declining);
    let sweep = Sweep {
        bob: world.subscribe(&bob, &c.pro, d(START)).await,
        erin: world.subscribe(&erin, &c.pro, d(START)).await,
        carol: world.subscribe(&carol, &c.pro, d(START)).await,
        alice: world.subscribe(&alice, &c.free, d(START)).await,
        dan: world.subscribe(&dan, &c.free, d(START)).await,
        world,
    };
    calls(&sweep.world, &bob, 12).await;
    calls(&sweep.world, &alice, 7).await;
    sweep
}

/// Everything a run and its rerun must have left, whatever happened in between; `extra_mail`
/// is how many mails may have gone out twice (mail is at least once: a run that dies between
/// sending a mail and forgetting it sends it again).
async fn assert_settled(s: &Sweep, label: &str, extra_mail: usize) {
    let w = &s.world;
    let invoice = |c: &Contract| w.store.invoice_state_now(&february(c)).unwrap().invoice;
    let mut numbers: Vec<String> = [&s.bob, &s.erin, &s.carol, &s.alice, &s.dan]
        .into_iter()
        .map(|c| number(&invoice(c)))
        .collect();
    numbers.sort();
    let gapless: Vec<String> = (1..=5).map(|n| format!("INV-{n:06}")).collect();
    assert_eq!(numbers, gapless, "{label}: numbers");
    assert_eq!(
        w.store.last_invoice_number().await.unwrap(),
        5,
        "{label}: the counter"
    );

    for (who, c, status, due, kept) in [
        ("bob", &s.bob, InvoiceStatus::Paid, 5096, Some(5096)),
        ("erin", &s.erin, InvoiceStatus::Paid, 5000, Some(5000)),
        ("carol", &s.carol, InvoiceStatus::Sent, 5000, None),
        ("alice", &s.alice, InvoiceStatus::Sent, 70, None),
        ("dan", &s.dan, InvoiceStatus::Paid, 0, None),
    ] {
        let i = invoice(c);
        assert_eq!(i.status, status, "{label}: {who}'s status");
        assert_eq!(
            i.payment.amount_due_minor_units,
            Some(due),
            "{label}: {who}'s amount"
        );
        assert_eq!(
            i.priced().unwrap().total_minor_units,
            due,
            "{label}: {who}'s total"
        );
        let kept_payments = w.gateway.kept_payments(&i.id);
        assert_eq!(
            kept_payments
                .iter()
                .map(|p| p.amount_minor)
                .collect::<Vec<_>>(),
            kept.into_iter().collect::<Vec<_>>(),
            "{label}: {who}'s kept charges"
        );
        if let Some(p) = kept_payments.first() {
            assert_eq!(
                i.payment.payment_intent.as_deref(),
                Some(p.id.as_str()),
                "{label}: {who}"
            );
        }
    }
    let carol = invoice(&s.carol);
    assert_eq!(carol.payment.attempts, 1, "{label}: carol's attempts");
    assert_eq!(
        carol.payment.next_attempt_on,
        Some(d("2026-03-02")),
        "{label}"
    );
    let carol_payments: Vec<_> = w
        .gateway
        .payments()
        .into_iter()
        .filter(|p| p.invoice == carol.id)
        .collect();
    assert_eq!(carol_payments.len(), 1, "{label}: one charge for attempt 1");
    assert_eq!(
        w.gateway.payments().len(),
        3,
        "{label}: three charges in all"
    );
    assert_eq!(w.scheduler.scheduled().len(), 1, "{label}: carol's retry");

    let mut expected = BTreeMap::new();
    for c in [&s.bob, &s.erin, &s.carol, &s.alice, &s.dan] {
        expected.insert(("invoice", number(&invoice(c))), 1);
    }
    expected.insert(("receipt", number(&invoice(&s.bob))), 1);
    expected.insert(("receipt", number(&invoice(&s.erin))), 1);
    expected.insert(("failed", number(&carol)), 1);
    let sent = mails(w);
    let twice: usize = sent.values().map(|n| n - 1).sum();
    assert_eq!(twice, extra_mail, "{label}: mails sent twice: {sent:?}");
    let once: BTreeMap<_, _> = sent.keys().map(|k| (k.clone(), 1)).collect();
    assert_eq!(once, expected, "{label}: one mail of each kind per invoice");
    assert!(
        w.store.outbox_now().is_empty(),
        "{label}: nothing left to send"
    );
}

#[tokio::test]
async fn a_run_killed_after_any_of_its_writes_and_rerun_leaves_each_invoice_billed_once() {
    // A clean run, to count its writes and know which are the outbox's (sent last).
    let clean = sweep_world().await;
    let before = clean.world.store.writes();
    let report = clean.world.run_daily(d(END)).await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    let writes = clean.world.store.writes() - before;
    let mail_writes = clean.world.mailer.sent().len();
    assert_settled(&clean, "clean run", 0).await;
    assert_eq!(
        (report.sent, report.charged, report.failed_attempts),
        (4, 2, 1)
    );
    assert_eq!(writes, 5 + 3 + 8, "5 closes, 3 charges recorded, 8 mails");

    for n in 0..=writes {
        let s = sweep_world().await;
        s.world.store.crash_after_writes(Some(n));
        let died = s.world.run_daily(d(END)).await;
        s.world.store.crash_after_writes(None);
        if n < writes {
            let errors = died.as_ref().map_or(1, |r| r.errors.len());
            assert!(
                errors > 0,
                "killed after {n} writes, yet no error: {died:?}"
            );
        }
        let rerun = s.world.run_daily(d(END)).await.unwrap();
        assert!(
            rerun.errors.is_empty(),
            "rerun after a kill at {n}: {rerun:?}"
        );
        // The write the kill refused was an outbox deletion: that mail went out, and goes again.
        let resent = usize::from((writes - mail_writes..writes).contains(&n));
        assert_settled(&s, &format!("killed after {n} writes"), resent).await;
    }
}

#[tokio::test]
async fn a_run_that_dies_between_the_providers_answer_and_its_record_charges_nothing_twice() {
    for k in 0..3 {
        let s = sweep_world().await;
        s.world.gateway.die_after_charges(Some(k));
        let died = s.world.run_daily(d(END)).await.unwrap();
        assert!(!died.errors.is_empty(), "charge {k}: {died:?}");
        assert_eq!(
            s.world.gateway.payments().len(),
            k + 1,
            "charge {k} was made"
        );
        s.world.gateway.set_unavailable(false);

        let rerun = s.world.run_daily(d(END)).await.unwrap();

        assert!(rerun.errors.is_empty(), "{rerun:?}");
        assert_settled(&s, &format!("died after charge {k}"), 0).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_at_once_close_and_charge_each_invoice_once() {
    for round in 0..10 {
        let s = sweep_world().await;
        let now = t("2026-03-01T00:15:00Z");
        let runs: Vec<_> = (0..2)
            .map(|_| {
                let run = s.world.billing_run();
                tokio::spawn(async move { run.run_daily(d(END), now).await })
            })
            .collect();
        let mut reports = Vec::new();
        for run in runs {
            reports.push(run.await.unwrap().unwrap());
        }
        let (ra, rb) = (&reports[0], &reports[1]);
        assert_eq!(ra.sent + rb.sent, 4, "{ra:?} {rb:?}");
        assert_eq!(ra.charged + rb.charged, 2, "{ra:?} {rb:?}");
        assert_eq!(ra.failed_attempts + rb.failed_attempts, 1, "{ra:?} {rb:?}");
        // Mail is at least once: two runs sending the outbox at the same moment may both send
        // a task before either forgets it.
        let twice = mails(&s.world).values().map(|n| n - 1).sum::<usize>();
        assert_settled(&s, &format!("two runs at once, round {round}"), twice).await;
    }
}
