//! Every idempotency key the platform makes, in one place. A key names one logical operation,
//! so doing that operation twice (a retried request, a redelivered message, a rerun after a
//! crash) is recognised as the same one. Changing a format here changes what counts as "the
//! same": do it only with a migration in mind.

use crate::ids::{CustomerId, InvoiceId};
use crate::ports::MailKind;
use crate::usage::{CustomerRef, IdempotencyKey};

/// The payment provider's customer for one of ours: a retried create makes one provider
/// customer, not two.
pub fn provider_customer(customer: &CustomerId) -> String {
    format!("customer-create-{customer}")
}

/// One auto-pay attempt of one invoice: two runs charging the same attempt make one payment.
/// The provider forgets keys after a day, so the charge also looks for an earlier payment of
/// the same attempt (see the Stripe adapter).
pub fn charge(invoice: &InvoiceId, attempt: u32) -> String {
    format!("{invoice}-attempt-{attempt}")
}

/// The refund of a payment an invoice did not need: asked for again after a crash, it is the
/// same refund.
pub fn refund_unneeded(payment_intent: &str) -> String {
    format!("refund-unneeded-{payment_intent}")
}

/// One scheduled auto-pay retry: creating it twice is one schedule.
pub fn retry_schedule(invoice: &InvoiceId, attempt: u32) -> String {
    format!("retry-{invoice}-{attempt}")
}

/// One mail about one invoice: queued twice (a transition retried), it is sent once.
pub fn mail(invoice: &InvoiceId, kind: MailKind) -> String {
    format!("{invoice}#{}", kind.as_str())
}

/// A usage event's identity: the resolved customer and the client's idempotency key, so
/// `customerId` and `externalCustomerId` of one customer are one namespace. An event whose
/// customer is unknown is keyed by the reference as sent (`ref:` or `ext:`), so its record
/// never collides with a real customer's.
pub fn usage_event(
    reference: &CustomerRef,
    resolved: Option<&CustomerId>,
    key: &IdempotencyKey,
) -> String {
    format!("{}#{}", usage_owner(reference, resolved), key.as_str())
}

/// Whose usage an event is: the customer it resolved to, else the reference as sent (`ref:` or
/// `ext:`), so an unknown customer's events are kept apart from every real customer's.
pub fn usage_owner(reference: &CustomerRef, resolved: Option<&CustomerId>) -> String {
    match (resolved, reference) {
        (Some(id), _) => id.to_string(),
        (None, CustomerRef::Id(id)) => format!("ref:{id}"),
        (None, CustomerRef::External(x)) => format!("ext:{x}"),
    }
}
