//! Getting paid: the ports to the payment provider (Stripe), to mail and to one-time retry
//! schedules, in our own terms. The Stripe adapter lives in crate `billing-stripe`, SES and
//! EventBridge Scheduler in `billing-aws`; nothing here names a Stripe type, so the billing run
//! and the webhook rules are tested against fakes and the real provider alike.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::customer::{Email, PaymentMethodId, ProviderCustomerId};
use crate::error::Result;
use crate::ids::{CustomerId, InvoiceId};
use crate::money::Currency;

/// Stripe's smallest charge is about 0.50 USD (per currency); an invoice below the provider's
/// minimum is not charged automatically and stays `SENT` for the portal (documented in the
/// README). Amounts are in minor units.
pub fn below_minimum_charge(currency: Currency, amount_minor: i64) -> bool {
    let minimum = match currency.code() {
        "JPY" => 50,
        "GBP" => 30,
        "HKD" => 400,
        "MXN" => 1000,
        "NOK" | "SEK" | "DKK" => 300,
        "INR" => 50,
        _ => 50,
    };
    amount_minor < minimum
}

/// Our customer as the provider should know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProviderCustomer {
    /// Our id: put in the provider's metadata, and the idempotency key is derived from it, so
    /// a retried create never makes a second provider customer.
    pub customer_id: CustomerId,
    /// Display name.
    pub name: String,
    /// The first billing contact, if any.
    pub email: Option<Email>,
}

/// A SetupIntent for a custom payment form (Stripe Elements): the client secret is handed to
/// the browser, the payment method it collects is saved for off-session charges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetupIntent {
    /// `seti_…`
    pub id: String,
    /// For the browser only; never stored.
    pub client_secret: String,
}

/// A hosted payment page for one invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutRequest {
    /// Put in the session's and the payment's metadata, so the webhook finds the invoice.
    pub invoice_id: InvoiceId,
    /// The provider customer, so a saved method lands on it.
    pub customer: Option<ProviderCustomerId>,
    /// The invoice total in minor units.
    pub amount_minor: i64,
    /// The invoice currency.
    pub currency: Currency,
    /// The line shown on the page.
    pub description: String,
    /// The customer chose "Save payment method for future invoices" (off-session use).
    pub save_payment_method: bool,
    /// Where the provider sends the customer after paying.
    pub success_url: String,
    /// Where the provider sends the customer after giving up.
    pub cancel_url: String,
}

/// A created hosted payment page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    /// `cs_…`
    pub id: String,
    /// Where to send the customer.
    pub url: String,
}

/// An off-session charge of a saved payment method for one invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The invoice paid (in metadata).
    pub invoice_id: InvoiceId,
    /// 1 for the first try; with the invoice id it makes the idempotency key, so no path ever
    /// charges one attempt twice.
    pub attempt: u32,
    /// Whose method.
    pub customer: ProviderCustomerId,
    /// Which method.
    pub payment_method: PaymentMethodId,
    /// The invoice total in minor units.
    pub amount_minor: i64,
    /// The invoice currency.
    pub currency: Currency,
    /// When the invoice was sent: no payment for it is older, so a look for an earlier
    /// payment of this attempt reads only the customer's payments since then.
    pub sent_at: DateTime<Utc>,
}

impl ChargeRequest {
    /// The idempotency key of this attempt.
    pub fn idempotency_key(&self) -> String {
        crate::idempotency::charge(&self.invoice_id, self.attempt)
    }
}

/// How a charge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The money is collected.
    Succeeded {
        /// `pi_…`
        payment_intent: String,
    },
    /// The provider refused it (declined, authentication required, ...): worth a later retry.
    Failed {
        /// `pi_…`, when one was created.
        payment_intent: Option<String>,
        /// The provider's code, e.g. `card_declined`, `authentication_required`.
        code: String,
        /// For people.
        message: String,
    },
}

/// A verified provider notification, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    /// The provider's event id (`evt_…`): each is handled once.
    pub id: String,
    /// What happened.
    pub kind: ProviderEventKind,
}

/// What a provider notification says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEventKind {
    /// A hosted payment page was paid.
    CheckoutCompleted {
        /// From the session's metadata.
        invoice_id: Option<InvoiceId>,
        /// `pi_…`
        payment_intent: Option<String>,
        /// The provider customer that paid.
        customer: Option<ProviderCustomerId>,
        /// The customer opted to save the method for future invoices.
        save_payment_method: bool,
    },
    /// A payment succeeded (ours from auto-pay, or the checkout's).
    PaymentSucceeded {
        /// From the payment's metadata.
        invoice_id: Option<InvoiceId>,
        /// `pi_…`
        payment_intent: String,
    },
    /// A payment failed.
    PaymentFailed {
        /// From the payment's metadata.
        invoice_id: Option<InvoiceId>,
        /// `pi_…`
        payment_intent: String,
        /// Why.
        message: String,
    },
    /// A payment method was saved through a SetupIntent.
    SetupSucceeded {
        /// Whose.
        customer: Option<ProviderCustomerId>,
        /// Which.
        payment_method: Option<PaymentMethodId>,
    },
    /// A provider customer was created or changed.
    CustomerUpserted {
        /// Which.
        customer: ProviderCustomerId,
        /// Its name.
        name: Option<String>,
        /// Its email.
        email: Option<String>,
        /// Our id, when the provider customer was made by us.
        our_id: Option<CustomerId>,
    },
    /// A charge was refunded in full.
    Refunded {
        /// From the payment's metadata.
        invoice_id: Option<InvoiceId>,
        /// `pi_…`
        payment_intent: Option<String>,
    },
    /// Any other type: acknowledged and ignored.
    Other {
        /// The provider's type name.
        kind: String,
    },
}

/// The payment provider.
#[async_trait]
pub trait PaymentGateway: Send + Sync {
    /// Creates the provider customer, idempotently for one of our customers.
    async fn create_customer(&self, customer: &NewProviderCustomer) -> Result<ProviderCustomerId>;

    /// Whether a provider customer exists (and is not deleted).
    async fn customer_exists(&self, customer: &ProviderCustomerId) -> Result<bool>;

    /// Deletes a provider customer made for a request that was then refused, so the refused
    /// request leaves nothing behind. An unknown (or already deleted) customer is fine.
    async fn delete_customer(&self, customer: &ProviderCustomerId) -> Result<()>;

    /// Attaches a payment method to the customer and makes it the default for invoices.
    /// Returns the attached method's id, which differs from the one given for Stripe's test
    /// shortcuts (`pm_card_visa` attaches as a new `pm_…`): that is the one to charge.
    async fn attach_default_payment_method(
        &self,
        customer: &ProviderCustomerId,
        payment_method: &PaymentMethodId,
    ) -> Result<PaymentMethodId>;

    /// Refunds in full a payment the invoice did not need: it came when the invoice was already
    /// paid by another payment (the customer paid on the portal while auto-pay charged), void or
    /// refunded. Once per payment, however often it is asked (idempotent per payment).
    async fn refund_unneeded(&self, payment_intent: &str, invoice: &InvoiceId) -> Result<()>;

    /// A SetupIntent for off-session use.
    async fn create_setup_intent(&self, customer: &ProviderCustomerId) -> Result<SetupIntent>;

    /// A hosted payment page.
    async fn create_checkout(&self, request: &CheckoutRequest) -> Result<CheckoutSession>;

    /// The payment method a payment was made with (to save it after checkout).
    async fn payment_method_of(&self, payment_intent: &str) -> Result<Option<PaymentMethodId>>;

    /// The invoice a payment was for (our metadata on the PaymentIntent): a refunded charge
    /// does not carry its PaymentIntent's metadata.
    async fn invoice_of_payment(&self, payment_intent: &str) -> Result<Option<InvoiceId>>;

    /// Creates and confirms an off-session payment (idempotent per invoice and attempt).
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome>;
}

/// Checks a provider notification's signature and reads it.
pub trait WebhookVerifier: Send + Sync {
    /// `Err` with kind `InvalidRequest` (a 400) for a missing, bad or stale signature or an
    /// unreadable payload: nothing is done with it.
    fn verify(
        &self,
        payload: &str,
        signature: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ProviderEvent>;
}

/// One mail to a customer's billing contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Recipients.
    pub to: Vec<Email>,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
}

/// Sends mail (SES in AWS).
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one mail.
    async fn send(&self, mail: &Mail) -> Result<()>;
}

/// Schedules a one-time retry of an invoice's auto-pay (EventBridge Scheduler in AWS).
#[async_trait]
pub trait RetryScheduler: Send + Sync {
    /// Runs the billing run for this invoice at `at`; idempotent per invoice and attempt.
    async fn schedule_retry(
        &self,
        invoice: &InvoiceId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<()>;
}

/// Makes the customer-facing payment link of a sent invoice (the portal signs it).
pub trait PaymentLinks: Send + Sync {
    /// The link; deterministic for one invoice and sending time, so every mail and every read
    /// shows the same one.
    fn payment_link(&self, invoice: &InvoiceId, sent_at: DateTime<Utc>) -> String;
}
