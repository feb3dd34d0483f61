//! The payment, mail and schedule ports in memory: a payment provider that keeps its customers
//! and payments and honours idempotency per invoice and attempt, a mailer and a retry scheduler
//! that record what they were asked, and a webhook verifier for events made in the test.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::MemoryStore;
use crate::customer::{PaymentMethodId, ProviderCustomerId};
use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::ports::{
    ChargeOutcome, ChargeRequest, CheckoutRequest, CheckoutSession, Mail, Mailer,
    NewProviderCustomer, PaymentGateway, ProviderEvent, RetryScheduler, SetupIntent,
    WebhookVerifier,
};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A payment made through [`FakeGateway::charge`] or a checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePayment {
    /// `pi_…`
    pub id: String,
    /// The invoice it pays.
    pub invoice: InvoiceId,
    /// Which auto-pay attempt (0 for a checkout).
    pub attempt: u32,
    /// Minor units.
    pub amount_minor: i64,
    /// Whether the money was taken.
    pub succeeded: bool,
    /// Refunded in full.
    pub refunded: bool,
}

#[derive(Default)]
struct Provider {
    customers: BTreeMap<String, Option<PaymentMethodId>>,
    payments: Vec<FakePayment>,
    /// Payment method ids whose charges are declined.
    declining: Vec<String>,
    checkouts: Vec<CheckoutRequest>,
    /// How many charge calls reached the provider (retries of one attempt included).
    charge_calls: usize,
    unavailable: bool,
    /// Charge calls still answered before the caller "dies" (see [`FakeGateway::die_after_charges`]).
    answers_left: Option<usize>,
}

/// The payment provider in memory. Charges are idempotent per invoice and attempt, as the port
/// promises (the Stripe adapter gets there with idempotency keys and a look-up).
#[derive(Default)]
pub struct FakeGateway {
    provider: Mutex<Provider>,
    /// Unreachable once this store has crashed (see [`FakeGateway::dies_with`]).
    life: Mutex<Option<Arc<MemoryStore>>>,
}

impl FakeGateway {
    /// A provider with no customers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declines every charge of `method` from now on (`card_declined`).
    pub fn decline(&self, method: &PaymentMethodId) {
        lock(&self.provider)
            .declining
            .push(method.as_str().to_owned());
    }

    /// Accepts charges of `method` again.
    pub fn accept(&self, method: &PaymentMethodId) {
        lock(&self.provider)
            .declining
            .retain(|m| m != method.as_str());
    }

    /// Makes every call fail as an outage (503) while `down`.
    pub fn set_unavailable(&self, down: bool) {
        lock(&self.provider).unavailable = down;
    }

    /// After `n` more charge calls are answered, the next one is made (the money is taken, or
    /// the decline recorded) but its answer never arrives, and the provider is unreachable from
    /// then on: what the caller sees of a process that died between the provider's answer and
    /// its own record. `set_unavailable(false)` heals it; `None` takes the hook away.
    pub fn die_after_charges(&self, n: Option<usize>) {
        lock(&self.provider).answers_left = n;
    }

    /// Unreachable (every call an outage) once `store` has crashed
    /// ([`MemoryStore::crash_after_writes`]): the process that died calls nobody any more.
    pub fn dies_with(&self, store: Arc<MemoryStore>) {
        *lock(&self.life) = Some(store);
    }

    /// Every payment made so far, in order.
    pub fn payments(&self) -> Vec<FakePayment> {
        lock(&self.provider).payments.clone()
    }

    /// Payments that took money for `invoice` and were not refunded.
    pub fn kept_payments(&self, invoice: &InvoiceId) -> Vec<FakePayment> {
        self.payments()
            .into_iter()
            .filter(|p| &p.invoice == invoice && p.succeeded && !p.refunded)
            .collect()
    }

    /// How many charge calls reached the provider.
    pub fn charge_calls(&self) -> usize {
        lock(&self.provider).charge_calls
    }

    /// Checkouts created, in order.
    pub fn checkouts(&self) -> Vec<CheckoutRequest> {
        lock(&self.provider).checkouts.clone()
    }

    /// A payment made outside the charges, as a paid checkout leaves one: returns its id.
    pub fn pay_outside(&self, invoice: &InvoiceId, amount_minor: i64) -> String {
        let mut p = lock(&self.provider);
        let id = format!("pi_fake{}", p.payments.len() + 1);
        p.payments.push(FakePayment {
            id: id.clone(),
            invoice: invoice.clone(),
            attempt: 0,
            amount_minor,
            succeeded: true,
            refunded: false,
        });
        id
    }

    fn up(&self) -> Result<()> {
        if lock(&self.life)
            .as_ref()
            .is_some_and(|store| store.crashed())
        {
            return Err(Error::unavailable("injected: the caller died"));
        }
        if lock(&self.provider).unavailable {
            Err(Error::unavailable("the fake provider is down"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl PaymentGateway for FakeGateway {
    async fn create_customer(&self, customer: &NewProviderCustomer) -> Result<ProviderCustomerId> {
        self.up()?;
        // Idempotent per our customer, as the idempotency key makes it.
        let id = format!("cus_fake{}", customer.customer_id.as_str().replace('_', ""));
        lock(&self.provider)
            .customers
            .entry(id.clone())
            .or_default();
        ProviderCustomerId::parse(&id)
    }

    async fn customer_exists(&self, customer: &ProviderCustomerId) -> Result<bool> {
        self.up()?;
        Ok(lock(&self.provider)
            .customers
            .contains_key(customer.as_str()))
    }

    async fn delete_customer(&self, customer: &ProviderCustomerId) -> Result<()> {
        self.up()?;
        lock(&self.provider).customers.remove(customer.as_str());
        Ok(())
    }

    async fn attach_default_payment_method(
        &self,
        customer: &ProviderCustomerId,
        payment_method: &PaymentMethodId,
    ) -> Result<PaymentMethodId> {
        self.up()?;
        let mut p = lock(&self.provider);
        let Some(default) = p.customers.get_mut(customer.as_str()) else {
            return Err(Error::unprocessable(
                "payment_provider_customer_not_found",
                format!("no customer '{}'", customer.as_str()),
            ));
        };
        *default = Some(payment_method.clone());
        Ok(payment_method.clone())
    }

    async fn refund_unneeded(&self, payment_intent: &str, _invoice: &InvoiceId) -> Result<()> {
        self.up()?;
        let mut p = lock(&self.provider);
        let payment = p
            .payments
            .iter_mut()
            .find(|p| p.id == payment_intent)
            .ok_or_else(|| Error::unprocessable("payment_intent_not_found", payment_intent))?;
        payment.refunded = true;
        Ok(())
    }

    async fn create_setup_intent(&self, customer: &ProviderCustomerId) -> Result<SetupIntent> {
        self.up()?;
        Ok(SetupIntent {
            id: format!("seti_fake_{}", customer.as_str()),
            client_secret: "seti_secret".to_owned(),
        })
    }

    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutSession> {
        self.up()?;
        let mut p = lock(&self.provider);
        p.checkouts.push(request.clone());
        let id = format!("cs_fake{}", p.checkouts.len());
        Ok(CheckoutSession {
            url: format!("https://checkout.example/{id}"),
            id,
        })
    }

    async fn payment_method_of(&self, _payment_intent: &str) -> Result<Option<PaymentMethodId>> {
        self.up()?;
        Ok(Some(PaymentMethodId::parse("pm_fake_saved")?))
    }

    async fn invoice_of_payment(&self, payment_intent: &str) -> Result<Option<InvoiceId>> {
        self.up()?;
        Ok(lock(&self.provider)
            .payments
            .iter()
            .find(|p| p.id == payment_intent)
            .map(|p| p.invoice.clone()))
    }

    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome> {
        self.up()?;
        let mut p = lock(&self.provider);
        p.charge_calls += 1;
        let earlier = p
            .payments
            .iter()
            .find(|x| x.invoice == request.invoice_id && x.attempt == request.attempt)
            .cloned();
        let payment = match earlier {
            Some(payment) => payment,
            None => {
                let payment = FakePayment {
                    id: format!("pi_fake{}", p.payments.len() + 1),
                    invoice: request.invoice_id.clone(),
                    attempt: request.attempt,
                    amount_minor: request.amount_minor,
                    succeeded: !p
                        .declining
                        .iter()
                        .any(|m| m == request.payment_method.as_str()),
                    refunded: false,
                };
                p.payments.push(payment.clone());
                payment
            }
        };
        match &mut p.answers_left {
            Some(0) => {
                p.answers_left = None;
                p.unavailable = true;
                return Err(Error::unavailable(
                    "injected: the caller died before the provider's answer reached it",
                ));
            }
            Some(n) => *n -= 1,
            None => {}
        }
        Ok(if payment.succeeded {
            ChargeOutcome::Succeeded {
                payment_intent: payment.id,
            }
        } else {
            ChargeOutcome::Failed {
                payment_intent: Some(payment.id),
                code: "card_declined".to_owned(),
                message: "Your card was declined.".to_owned(),
            }
        })
    }
}

/// A mailer that keeps what it sends, and can be made to refuse.
#[derive(Default)]
pub struct RecordingMailer {
    sent: Mutex<Vec<Mail>>,
    refusing: Mutex<bool>,
    /// Sends nothing once this store has crashed (see [`RecordingMailer::dies_with`]).
    life: Mutex<Option<Arc<MemoryStore>>>,
}

impl RecordingMailer {
    /// A mailer that sends.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every mail sent, in order.
    pub fn sent(&self) -> Vec<Mail> {
        lock(&self.sent).clone()
    }

    /// Refuses every mail (an outage) while `refusing`.
    pub fn refuse(&self, refusing: bool) {
        *lock(&self.refusing) = refusing;
    }

    /// Sends nothing once `store` has crashed ([`MemoryStore::crash_after_writes`]): the
    /// process that died sends no more mail.
    pub fn dies_with(&self, store: Arc<MemoryStore>) {
        *lock(&self.life) = Some(store);
    }
}

#[async_trait]
impl Mailer for RecordingMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        if lock(&self.life)
            .as_ref()
            .is_some_and(|store| store.crashed())
        {
            return Err(Error::unavailable("injected: the sender died"));
        }
        if *lock(&self.refusing) {
            return Err(Error::unavailable("the mail service refused: injected"));
        }
        lock(&self.sent).push(mail.clone());
        Ok(())
    }
}

/// A retry scheduler that keeps what it was asked, once per invoice and attempt.
#[derive(Default)]
pub struct RecordingScheduler {
    scheduled: Mutex<BTreeMap<(InvoiceId, u32), DateTime<Utc>>>,
}

impl RecordingScheduler {
    /// No schedules yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every schedule: invoice, attempt, when.
    pub fn scheduled(&self) -> Vec<(InvoiceId, u32, DateTime<Utc>)> {
        lock(&self.scheduled)
            .iter()
            .map(|((i, a), at)| (i.clone(), *a, *at))
            .collect()
    }
}

#[async_trait]
impl RetryScheduler for RecordingScheduler {
    async fn schedule_retry(
        &self,
        invoice: &InvoiceId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<()> {
        lock(&self.scheduled)
            .entry((invoice.clone(), attempt))
            .or_insert(at);
        Ok(())
    }
}

/// The signature [`FakeVerifier`] accepts.
pub const GOOD_SIGNATURE: &str = "signed-by-the-test";

/// A verifier of events the test made: [`FakeVerifier::deliver`] registers an event and
/// returns its payload; a delivery verifies when it carries [`GOOD_SIGNATURE`].
#[derive(Default)]
pub struct FakeVerifier {
    events: Mutex<HashMap<String, ProviderEvent>>,
}

impl FakeVerifier {
    /// Knows no events yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payload that delivers `event`.
    pub fn deliver(&self, event: ProviderEvent) -> String {
        let payload = format!("payload-of-{}", event.id);
        lock(&self.events).insert(payload.clone(), event);
        payload
    }
}

impl WebhookVerifier for FakeVerifier {
    fn verify(
        &self,
        payload: &str,
        signature: Option<&str>,
        _now: DateTime<Utc>,
    ) -> Result<ProviderEvent> {
        if signature != Some(GOOD_SIGNATURE) {
            return Err(Error::invalid(
                "invalid_signature",
                "the signature does not sign this payload",
            ));
        }
        lock(&self.events)
            .get(payload)
            .cloned()
            .ok_or_else(|| Error::invalid("invalid_payload", "no such event"))
    }
}
