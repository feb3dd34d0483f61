//! Payments an invoice did not need (it was paid twice: on the payment page while auto-pay
//! charged, or paid after it was voided or refunded): refunded in full, recorded on the
//! invoice, and the customer told. Shared by the webhook receiver and the billing run, whichever
//! meets the second payment.

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ids::InvoiceId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::ports::PaymentGateway;
use crate::ports::{LedgerStore, MailKind, MailTask, transition_invoice_with};

/// Whether `payment` came for an invoice that no longer takes payments (paid by another
/// payment, void, refunded) and did not pay it.
pub fn unneeded(invoice: &Invoice, payment: &str) -> bool {
    invoice.status != InvoiceStatus::Sent
        && invoice.payment.payment_intent.as_deref() != Some(payment)
}

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
    transition_invoice_with(ledger, id, now, |invoice| {
        if invoice
            .payment
            .refunded_duplicates
            .iter()
            .any(|p| p == payment)
        {
            return None;
        }
        let mut next = invoice.clone();
        next.updated_at = now;
        next.payment.refunded_duplicates.push(payment.to_owned());
        let mail = vec![MailTask {
            invoice_id: id.clone(),
            kind: MailKind::DuplicateRefunded,
        }];
        Some((next, mail))
    })
    .await
}
