//! Stripe behind the payment ports of [`billing::ports`]: a [`PaymentGateway`] over the Stripe
//! API (async-stripe 1.0, [`gateway`]) and a [`WebhookVerifier`] for Stripe's signed
//! notifications ([`webhook`]). This is the only crate that names a Stripe type; everything
//! leaves it in our terms, errors included ([`errors`]: outages are `Unavailable`, bad ids from
//! the caller are `Unprocessable` with a stable code).
//!
//! [`PaymentGateway`]: billing::ports::PaymentGateway
//! [`WebhookVerifier`]: billing::ports::WebhookVerifier

pub mod errors;
pub mod gateway;
pub mod webhook;

use std::collections::HashMap;
use std::time::Duration;

use billing::ids::InvoiceId;

pub use gateway::StripeGateway;
pub use webhook::StripeWebhookVerifier;

/// How long one Stripe request may take before it counts as an outage. async-stripe has no
/// default timeout, and a hung request would otherwise hold a Lambda until its own timeout.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Metadata key holding our invoice id on sessions, payments and (copied by Stripe) charges.
pub(crate) const META_INVOICE: &str = "invoiceId";
/// Metadata key holding the customer's "save this payment method" choice on a session.
pub(crate) const META_SAVE: &str = "savePaymentMethod";
/// Metadata key holding our customer id on the Stripe customer.
pub(crate) const META_CUSTOMER: &str = "customerId";
/// Metadata key holding the auto-pay attempt number on a payment.
pub(crate) const META_ATTEMPT: &str = "attempt";

/// Our invoice id from Stripe metadata; absent or not one of ours is `None`.
pub(crate) fn invoice_in(metadata: &HashMap<String, String>) -> Option<InvoiceId> {
    metadata
        .get(META_INVOICE)
        .and_then(|v| InvoiceId::parse(v).ok())
}
