//! A whole platform in memory for unit tests: the store, a stopped clock, the payment provider,
//! mail and retry schedules, with the use cases wired to them as a Lambda wires the real ones.
//! Catalog entries are created from the API's own JSON bodies through the real use cases, so a
//! test's set-up is exactly what production would store.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;

use super::{
    FakeGateway, FakeReceiver, IdRepresentation, ManualClock, MemoryStore, RecordingMailer,
    RecordingScheduler, RecordingWebhookQueue,
};
use crate::aggregation::UsageValue;
use crate::billing_run::BillingRun;
use crate::contract::{Contract, CreateContract};
use crate::customer::{CreateCustomer, Customer, UpdateCustomer};
use crate::ids::{CustomerId, InvoiceId};
use crate::invoice::{Invoice, PricedInvoice};
use crate::matcher::Matcher;
use crate::meter::{CreateMeter, EventName, Meter};
use crate::plan::{CreatePlan, Plan};
use crate::ports::{Clock, InvoiceStore};
use crate::usage::{CustomerRef, IdempotencyKey, UsageEvent};
use crate::webhooks::{Dispatcher, UrlPolicy};
use crate::{Billing, Result};

/// Every port in memory, and the use cases over them. The provider and the mailer die with the
/// store: after [`MemoryStore::crash_after_writes`] refuses a write, they refuse too, as the
/// side effects of a process that died stop with it.
pub struct World {
    /// Every storage port.
    pub store: Arc<MemoryStore>,
    /// "Now" for the use cases and the matcher.
    pub clock: Arc<ManualClock>,
    /// The payment provider.
    pub gateway: Arc<FakeGateway>,
    /// Mail sent by the billing run.
    pub mailer: Arc<RecordingMailer>,
    /// Auto-pay retries scheduled by the billing run.
    pub scheduler: Arc<RecordingScheduler>,
    /// Where webhooks go.
    pub receiver: Arc<FakeReceiver>,
    /// The webhook dispatcher's jobs.
    pub webhook_queue: Arc<RecordingWebhookQueue>,
    /// The API's use cases, linked to the payment provider.
    pub billing: Billing,
}

fn decode<T: DeserializeOwned>(body: serde_json::Value) -> T {
    serde_json::from_value(body).unwrap_or_else(|e| panic!("a test request body: {e}"))
}

impl World {
    /// An empty platform whose clock stands at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        let store = Arc::new(MemoryStore::new());
        let clock = Arc::new(ManualClock::at(now));
        let gateway = Arc::new(FakeGateway::new());
        gateway.dies_with(store.clone());
        let mailer = Arc::new(RecordingMailer::new());
        mailer.dies_with(store.clone());
        let receiver = Arc::new(FakeReceiver::new());
        receiver.dies_with(store.clone());
        let webhook_queue = Arc::new(RecordingWebhookQueue::new());
        let billing = Billing::new(store.clone(), clock.clone(), None)
            .with_gateway(gateway.clone())
            .with_webhook_queue(webhook_queue.clone())
            .with_url_policy(UrlPolicy::AllowLoopbackHttp)
            .with_mailer(mailer.clone());
        Self {
            store,
            clock,
            gateway,
            mailer,
            scheduler: Arc::new(RecordingScheduler::new()),
            receiver,
            webhook_queue,
            billing,
        }
    }

    /// Creates a meter from a `POST /v1/meters` body.
    pub async fn meter(&self, body: serde_json::Value) -> Meter {
        self.billing
            .create_meter(decode::<CreateMeter>(body))
            .await
            .expect("the test's meter")
    }

    /// Creates a plan from a `POST /v1/plans` body.
    pub async fn plan(&self, body: serde_json::Value) -> Plan {
        self.billing
            .create_plan(decode::<CreatePlan>(body))
            .await
            .expect("the test's plan")
    }

    /// Creates a customer from a `POST /v1/customers` body (linked to the fake provider).
    pub async fn customer(&self, body: serde_json::Value) -> Customer {
        self.billing
            .create_customer(decode::<CreateCustomer>(body))
            .await
            .expect("the test's customer")
    }

    /// Patches a customer with a `PATCH /v1/customers/{id}` body.
    pub async fn patch_customer(&self, id: &CustomerId, body: serde_json::Value) -> Customer {
        self.billing
            .update_customer(id.as_str(), decode::<UpdateCustomer>(body))
            .await
            .expect("the test's customer patch")
    }

    /// Creates a contract from a `POST /v1/contracts` body.
    pub async fn contract(&self, body: serde_json::Value) -> Contract {
        self.billing
            .create_contract(decode::<CreateContract>(body))
            .await
            .expect("the test's contract")
    }

    /// Subscribes `customer` to `plan` from `start`, rolling.
    pub async fn subscribe(&self, customer: &Customer, plan: &Plan, start: NaiveDate) -> Contract {
        self.contract(serde_json::json!({
            "customerId": customer.id.as_str(),
            "planId": plan.id.as_str(),
            "startDate": start.to_string(),
        }))
        .await
    }

    /// A fresh matcher (an empty cache, as in a cold Lambda) over the store and the clock,
    /// writing its coalesced webhook events.
    pub fn matcher(&self) -> Matcher {
        Matcher::new(self.store.clone(), self.store.clone(), self.clock.clone())
            .with_webhooks(self.store.clone())
    }

    /// The webhook dispatcher: the fake receiver, the recording queue and mailer (alerts to
    /// `ops@example.com`), the store's clock.
    pub fn dispatcher(&self) -> Dispatcher {
        Dispatcher::new(
            self.store.clone(),
            Arc::new(IdRepresentation),
            self.receiver.clone(),
            self.webhook_queue.clone(),
        )
        .with_alerts(
            self.mailer.clone(),
            vec![crate::customer::Email::parse("ops@example.com").expect("an address")],
        )
        .with_clock(self.clock.clone())
    }

    /// The billing run with the fake provider, the recording mailer and scheduler.
    pub fn billing_run(&self) -> BillingRun {
        BillingRun::new(self.store.clone())
            .with_clock(self.clock.clone())
            .with_gateway(self.gateway.clone())
            .with_mailer(self.mailer.clone())
            .with_scheduler(self.scheduler.clone())
    }

    /// The daily run for `date`, at 00:15 UTC of that day (as the schedule fires it); the
    /// clock is moved there first.
    pub async fn run_daily(&self, date: NaiveDate) -> Result<crate::billing_run::RunReport> {
        let now = date.and_hms_opt(0, 15, 0).expect("a valid time").and_utc();
        self.clock.set(now);
        self.billing_run().run_daily(date, now).await
    }

    /// The invoice of `contract`'s period that starts on `period_start`, as stored.
    pub async fn invoice(&self, contract: &Contract, period_start: NaiveDate) -> Invoice {
        self.invoice_by_id(&Invoice::id_for(&contract.id, period_start))
            .await
    }

    /// An invoice as stored.
    pub async fn invoice_by_id(&self, id: &InvoiceId) -> Invoice {
        self.store
            .get_invoice(id)
            .await
            .expect("the store answers")
            .unwrap_or_else(|| panic!("no invoice {id}"))
    }

    /// An invoice with its money computed, as the API shows it.
    pub async fn priced(&self, id: &InvoiceId) -> PricedInvoice {
        self.invoice_by_id(id).await.priced().expect("priced")
    }

    /// The instant the clock shows.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }
}

/// A usage event as the API queues it: `name` for `customer` with `key`, at `at`, with
/// `properties` given as `(name, value)`; numbers are exact decimals (`"0.1"`), `true`/`false`
/// booleans, anything else text.
pub fn usage_event(
    name: &str,
    customer: &CustomerId,
    key: &str,
    at: DateTime<Utc>,
    properties: &[(&str, &str)],
) -> UsageEvent {
    UsageEvent {
        event_name: EventName::parse(name.to_owned()).expect("a valid event name"),
        customer: CustomerRef::Id(customer.clone()),
        idempotency_key: IdempotencyKey::parse(key).expect("a valid key"),
        timestamp: at,
        properties: properties
            .iter()
            .map(|(k, v)| {
                let value = match (*v, Decimal::from_str_exact(v)) {
                    ("true", _) => UsageValue::Bool(true),
                    ("false", _) => UsageValue::Bool(false),
                    (_, Ok(n)) => UsageValue::Number(n),
                    (_, Err(_)) => UsageValue::Text((*v).to_owned()),
                };
                ((*k).to_owned(), value)
            })
            .collect::<BTreeMap<_, _>>(),
        received_at: at,
    }
}
