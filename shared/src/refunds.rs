//! Payments an invoice did not need (it was paid twice: on the payment page while auto-pay
//! charged, or paid after it was voided or refunded): refunded in full, recorded on the
//! invoice, and the customer told. Shared by the webhook receiver and the billing run, whichever
//! meets the second payment.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::payments::PaymentGateway;
use crate::store::{LedgerStore, MailKind, MailTask, Transition};

const RACE_ATTEMPTS: usize = 8;

/// Refunds `payment` in full (idempotent per payment), then records it on the invoice with a
/// mail to the customer, once. A failure before the record leaves the refund to be asked again,
/// which the provider answers as already done.
pub async fn refund_unneeded(
    ledger: &dyn LedgerStore,
    gateway: &dyn PaymentGateway,
    id: &InvoiceId,
    payment: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    tracing::warn!(invoice = %id, payment, "refunding a payment the invoice did not need");
    gateway.refund_unneeded(payment, id).await?;
    for _ in 0..RACE_ATTEMPTS {
        let Some(state) = ledger.invoice_state(id).await? else {
            return Ok(());
        };
        if state
            .invoice
            .payment
            .refunded_duplicates
            .iter()
            .any(|p| p == payment)
        {
            return Ok(());
        }
        let mut next = state.invoice.clone();
        next.updated_at = now;
        next.payment.refunded_duplicates.push(payment.to_owned());
        let mail = [MailTask {
            invoice_id: id.clone(),
            kind: MailKind::DuplicateRefunded,
        }];
        if ledger.transition(&state, &next, None, &mail).await? == Transition::Done {
            return Ok(());
        }
    }
    Err(Error::conflict("busy_invoice", "the invoice kept changing"))
}
