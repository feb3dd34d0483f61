//! The webhook rules over the in-memory ports: a delivery is verified before anything is read,
//! each event id is handled once (and released when handling fails), and every change agrees
//! with the billing run's own: a checkout or a payment pays a sent invoice once, a payment the
//! invoice did not need is refunded, only the refund of the payment that paid an invoice
//! refunds it, and provider customers are linked by their id.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::json;

use super::{Delivery, Webhooks};
use crate::ErrorKind;
use crate::contract::Contract;
use crate::customer::{Customer, PaymentMethodId, ProviderCustomerId};
use crate::ids::{CustomerId, InvoiceId};
use crate::invoice::{Invoice, InvoiceStatus};
use crate::ports::{ContractStore, CustomerStore, ProviderEvent, ProviderEventKind};
use crate::testing::{FakeVerifier, GOOD_SIGNATURE, World};

fn d(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

fn t(s: &str) -> DateTime<Utc> {
    s.parse().expect("an instant")
}

/// A world with Alice on a plan of 20.00 a month since February, her February invoice sent by
/// the run on March 1, and the webhook receiver.
struct Setup {
    world: World,
    verifier: Arc<FakeVerifier>,
    webhooks: Webhooks,
    alice: Customer,
    contract: Contract,
    invoice: InvoiceId,
}

async fn setup() -> Setup {
    let world = World::at(t("2026-03-01T00:00:00Z"));
    let plan = world
        .plan(json!({"name": "Basic", "netTerms": 14,
            "prices": [{"model": "FLAT", "flatAmount": "20.00"}]}))
        .await;
    let alice = world
        .customer(json!({"name": "Alice",
            "contacts": [{"email": "alice@example.com", "roles": ["billing"]}]}))
        .await;
    let contract = world.subscribe(&alice, &plan, d("2026-02-01")).await;
    world.run_daily(d("2026-03-01")).await.expect("the run");
    let invoice = Invoice::id_for(&contract.id, d("2026-02-01"));
    assert_eq!(
        world.invoice_by_id(&invoice).await.status,
        InvoiceStatus::Sent
    );
    let verifier = Arc::new(FakeVerifier::new());
    let webhooks = Webhooks::new(
        world.store.clone(),
        verifier.clone(),
        Some(world.gateway.clone()),
    );
    Setup {
        world,
        verifier,
        webhooks,
        alice,
        contract,
        invoice,
    }
}

impl Setup {
    /// Delivers `kind` as event `id`, signed.
    async fn deliver(&self, id: &str, kind: ProviderEventKind) -> crate::Result<Delivery> {
        let payload = self.verifier.deliver(ProviderEvent {
            id: id.to_owned(),
            kind,
        });
        self.webhooks
            .receive(&payload, Some(GOOD_SIGNATURE), self.world.now())
            .await
    }

    async fn invoice(&self) -> Invoice {
        self.world.invoice_by_id(&self.invoice).await
    }

    /// Sends the outbox (a run on a day with nothing else to do) and returns every mail's
    /// subject so far.
    async fn subjects(&self) -> Vec<String> {
        let report = self.world.run_daily(d("2026-03-02")).await.unwrap();
        assert!(report.errors.is_empty(), "{report:?}");
        self.world
            .mailer
            .sent()
            .into_iter()
            .map(|m| m.subject)
            .collect()
    }

    fn count(subjects: &[String], prefix: &str) -> usize {
        subjects.iter().filter(|s| s.starts_with(prefix)).count()
    }

    fn paid(&self, pi: &str) -> ProviderEventKind {
        ProviderEventKind::PaymentSucceeded {
            invoice_id: Some(self.invoice.clone()),
            payment_intent: pi.to_owned(),
        }
    }
}

fn dashboard_customer(id: &str, name: &str) -> ProviderEventKind {
    ProviderEventKind::CustomerUpserted {
        customer: ProviderCustomerId::parse(id).unwrap(),
        name: Some(name.to_owned()),
        email: Some("d@example.com".to_owned()),
        our_id: None,
    }
}

#[tokio::test]
async fn a_delivery_without_a_good_signature_is_refused_before_anything_is_read_or_written() {
    let s = setup().await;
    let payload = s.verifier.deliver(ProviderEvent {
        id: "evt_1".to_owned(),
        kind: dashboard_customer("cus_dash1", "Dashboard"),
    });
    for signature in [None, Some("t=1,v1=00")] {
        let e = s
            .webhooks
            .receive(&payload, signature, s.world.now())
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_ref()),
            (ErrorKind::InvalidRequest, "invalid_signature")
        );
    }
    let linked = ProviderCustomerId::parse("cus_dash1").unwrap();
    assert!(
        s.world
            .store
            .get_by_provider_id(&linked)
            .await
            .unwrap()
            .is_none()
    );
    // The refused deliveries claimed nothing: the good one is handled, not a duplicate.
    let handled = s
        .webhooks
        .receive(&payload, Some(GOOD_SIGNATURE), s.world.now())
        .await
        .unwrap();
    assert_eq!(handled, Delivery::Handled { kind: "customer" });
}

#[tokio::test]
async fn an_event_id_is_handled_once_and_customers_are_upserted_by_their_provider_id() {
    let s = setup().await;
    let first = s
        .deliver("evt_c1", dashboard_customer("cus_dash1", "Dashboard"))
        .await;
    assert_eq!(first.unwrap(), Delivery::Handled { kind: "customer" });
    let again = s
        .deliver("evt_c1", dashboard_customer("cus_dash1", "Renamed?"))
        .await;
    assert_eq!(again.unwrap(), Delivery::Duplicate);
    let linked = ProviderCustomerId::parse("cus_dash1").unwrap();
    let made = s
        .world
        .store
        .get_by_provider_id(&linked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        made.value.name.as_str(),
        "Dashboard",
        "the duplicate changed nothing"
    );
    assert_eq!(made.value.id, CustomerId::derive("stripe:cus_dash1"));
    assert_eq!(made.value.contacts[0].email.as_str(), "d@example.com");

    // customer.updated under a new event id: the same customer, renamed.
    s.deliver("evt_c2", dashboard_customer("cus_dash1", "Renamed"))
        .await
        .unwrap();
    let renamed = s
        .world
        .store
        .get_by_provider_id(&linked)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (renamed.value.id, renamed.value.name.as_str()),
        (made.value.id, "Renamed")
    );
    let all = s
        .world
        .billing
        .customers(&Default::default(), None)
        .await
        .unwrap()
        .items;
    assert_eq!(all.len(), 2, "Alice and the dashboard's customer: {all:?}");

    // A provider customer we made ourselves (our id in its metadata) is never made again here.
    let ours = ProviderEventKind::CustomerUpserted {
        customer: ProviderCustomerId::parse("cus_ours_not_linked_yet").unwrap(),
        name: Some("Ours".to_owned()),
        email: None,
        our_id: Some(CustomerId::generate()),
    };
    s.deliver("evt_c3", ours).await.unwrap();
    let all = s
        .world
        .billing
        .customers(&Default::default(), None)
        .await
        .unwrap();
    assert_eq!(all.items.len(), 2);
    // And one linked to Alice renames Alice.
    let alice_link = s.alice.payment_provider.clone().unwrap().customer_id;
    s.deliver(
        "evt_c4",
        dashboard_customer(alice_link.as_str(), "Alice B."),
    )
    .await
    .unwrap();
    let alice = s.world.store.get(&s.alice.id).await.unwrap().unwrap();
    assert_eq!(alice.value.name.as_str(), "Alice B.");
}

#[tokio::test]
async fn a_completed_checkout_with_save_pays_the_invoice_and_turns_auto_pay_on_with_its_method() {
    let s = setup().await;
    let pi = s.world.gateway.pay_outside(&s.invoice, 2000);
    let completed = ProviderEventKind::CheckoutCompleted {
        invoice_id: Some(s.invoice.clone()),
        payment_intent: Some(pi.clone()),
        customer: s.alice.payment_provider.clone().map(|l| l.customer_id),
        save_payment_method: true,
    };

    let handled = s.deliver("evt_k1", completed.clone()).await.unwrap();

    assert_eq!(
        handled,
        Delivery::Handled {
            kind: "checkout.session.completed"
        }
    );
    let paid = s.invoice().await;
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!(paid.payment.payment_intent.as_deref(), Some(pi.as_str()));
    assert_eq!(paid.payment.paid_at, Some(s.world.now()));
    let contract = s
        .world
        .store
        .get_contract(&s.contract.id)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(contract.auto_pay);
    assert_eq!(
        contract.payment_method,
        Some(PaymentMethodId::parse("pm_fake_saved").unwrap())
    );
    let subjects = s.subjects().await;
    assert_eq!(
        Setup::count(&subjects, "Payment received for invoice INV-000001"),
        1
    );
    // Stripe's redelivery under a new id (it happens), after the receipt went out, changes
    // nothing and mails nothing more.
    s.deliver("evt_k1_again", completed).await.unwrap();
    let subjects = s.subjects().await;
    assert_eq!(
        Setup::count(&subjects, "Payment received for invoice INV-000001"),
        1
    );
    assert_eq!(s.world.gateway.kept_payments(&s.invoice).len(), 1);
}

#[tokio::test]
async fn a_completed_checkout_without_save_leaves_the_contract_as_it_was() {
    let s = setup().await;
    let pi = s.world.gateway.pay_outside(&s.invoice, 2000);
    s.deliver(
        "evt_k2",
        ProviderEventKind::CheckoutCompleted {
            invoice_id: Some(s.invoice.clone()),
            payment_intent: Some(pi),
            customer: None,
            save_payment_method: false,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.invoice().await.status, InvoiceStatus::Paid);
    let contract = s
        .world
        .store
        .get_contract(&s.contract.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contract.value, s.contract, "unchanged");
}

#[tokio::test]
async fn a_payment_pays_a_sent_invoice_once_and_a_second_payment_is_refunded_and_mailed() {
    let s = setup().await;
    let first = s.world.gateway.pay_outside(&s.invoice, 2000);
    let second = s.world.gateway.pay_outside(&s.invoice, 2000);

    s.deliver("evt_p1", s.paid(&first)).await.unwrap();
    s.deliver("evt_p1b", s.paid(&first)).await.unwrap(); // the same payment, told again
    s.deliver("evt_p2", s.paid(&second)).await.unwrap();
    s.deliver("evt_p2b", s.paid(&second)).await.unwrap(); // and the second one again

    let paid = s.invoice().await;
    assert_eq!(paid.status, InvoiceStatus::Paid);
    assert_eq!(paid.payment.payment_intent.as_deref(), Some(first.as_str()));
    assert_eq!(paid.payment.refunded_duplicates, vec![second.clone()]);
    let kept = s.world.gateway.kept_payments(&s.invoice);
    assert_eq!(kept.iter().map(|p| &p.id).collect::<Vec<_>>(), [&first]);
    let subjects = s.subjects().await;
    assert_eq!(
        Setup::count(&subjects, "Payment received for invoice INV-000001"),
        1
    );
    assert_eq!(
        Setup::count(
            &subjects,
            "Duplicate payment refunded for invoice INV-000001"
        ),
        1
    );
    assert_eq!(
        subjects.len(),
        3,
        "the invoice, one receipt, one refund: {subjects:?}"
    );
}

#[tokio::test]
async fn only_the_refund_of_the_payment_that_paid_an_invoice_marks_it_refunded() {
    let s = setup().await;
    let paying = s.world.gateway.pay_outside(&s.invoice, 2000);
    let duplicate = s.world.gateway.pay_outside(&s.invoice, 2000);
    s.deliver("evt_p1", s.paid(&paying)).await.unwrap();
    s.deliver("evt_p2", s.paid(&duplicate)).await.unwrap();

    // Stripe's charge.refunded of the duplicate we refunded: the invoice stays paid.
    s.deliver(
        "evt_r1",
        ProviderEventKind::Refunded {
            invoice_id: Some(s.invoice.clone()),
            payment_intent: Some(duplicate),
        },
    )
    .await
    .unwrap();
    assert_eq!(s.invoice().await.status, InvoiceStatus::Paid);

    // The refund of the paying one (a charge carries no invoice: found through the payment).
    s.deliver(
        "evt_r2",
        ProviderEventKind::Refunded {
            invoice_id: None,
            payment_intent: Some(paying.clone()),
        },
    )
    .await
    .unwrap();
    let refunded = s.invoice().await;
    assert_eq!(refunded.status, InvoiceStatus::Refunded);
    assert_eq!(refunded.payment.refunded_at, Some(s.world.now()));
    assert_eq!(
        refunded.payment.payment_intent.as_deref(),
        Some(paying.as_str())
    );
}

#[tokio::test]
async fn a_payment_for_an_invoice_not_sent_yet_is_refunded_and_changes_nothing_else() {
    let s = setup().await;
    let march = Invoice::id_for(&s.contract.id, d("2026-03-01"));
    let pi = s.world.gateway.pay_outside(&march, 2000);
    s.deliver(
        "evt_early",
        ProviderEventKind::PaymentSucceeded {
            invoice_id: Some(march.clone()),
            payment_intent: pi.clone(),
        },
    )
    .await
    .unwrap();
    let open = s.world.invoice_by_id(&march).await;
    assert!(open.status.is_open(), "{:?}", open.status);
    assert_eq!(open.payment.refunded_duplicates, vec![pi]);
    assert!(s.world.gateway.kept_payments(&march).is_empty());
}

#[tokio::test]
async fn a_delivery_whose_handling_failed_is_handled_again_when_redelivered() {
    let s = setup().await;
    let pi = s.world.gateway.pay_outside(&s.invoice, 2000);
    let completed = ProviderEventKind::CheckoutCompleted {
        invoice_id: Some(s.invoice.clone()),
        payment_intent: Some(pi),
        customer: None,
        save_payment_method: true,
    };
    s.world.gateway.set_unavailable(true);
    let failed = s.deliver("evt_k3", completed.clone()).await;
    assert_eq!(failed.unwrap_err().kind, ErrorKind::Unavailable);
    s.world.gateway.set_unavailable(false);

    let redelivered = s.deliver("evt_k3", completed).await.unwrap();

    assert_eq!(
        redelivered,
        Delivery::Handled {
            kind: "checkout.session.completed"
        }
    );
    let contract = s
        .world
        .store
        .get_contract(&s.contract.id)
        .await
        .unwrap()
        .unwrap()
        .value;
    assert!(contract.auto_pay, "the save happened on the redelivery");
    assert_eq!(s.invoice().await.status, InvoiceStatus::Paid);
}

#[tokio::test]
async fn a_setup_that_succeeded_makes_the_method_the_customers_default() {
    let s = setup().await;
    let link = s.alice.payment_provider.clone().unwrap().customer_id;
    s.deliver(
        "evt_s1",
        ProviderEventKind::SetupSucceeded {
            customer: Some(link),
            payment_method: Some(PaymentMethodId::parse("pm_from_elements").unwrap()),
        },
    )
    .await
    .unwrap();
    let alice = s.world.store.get(&s.alice.id).await.unwrap().unwrap().value;
    assert_eq!(
        alice
            .payment_method
            .map(|m| m.id.as_str().to_owned())
            .as_deref(),
        Some("pm_from_elements")
    );
    // Other event types are acknowledged and ignored.
    let other = s
        .deliver(
            "evt_o1",
            ProviderEventKind::Other {
                kind: "invoice.created".to_owned(),
            },
        )
        .await
        .unwrap();
    assert_eq!(other, Delivery::Handled { kind: "ignored" });
}
