//! The mails the platform sends about invoices, composed from the invoice and its customer at
//! sending time. The outbox ([`MailTask`]) is written with the change a mail reports; the
//! billing run sends what is pending, and an operator's "send again" sends its mail at once.

use crate::error::{Error, Result};
use crate::invoice::InvoiceStatus;
use crate::ports::{CustomerStore, LedgerStore, Mail, MailKind, MailTask, Mailer, PaymentLinks};

/// Composes and sends one task's mail, then forgets the task; `false` when there was nobody
/// to write to (the task is forgotten too).
pub async fn deliver(
    task: &MailTask,
    ledger: &dyn LedgerStore,
    customers: &dyn CustomerStore,
    links: Option<&dyn PaymentLinks>,
    mailer: &dyn Mailer,
) -> Result<bool> {
    let sent = match compose(task, ledger, customers, links).await? {
        Some(mail) => {
            mailer.send(&mail).await?;
            true
        }
        None => false,
    };
    ledger.mail_sent(task).await?;
    Ok(sent)
}

/// The mail for a task; `None` when the customer has no contact to write to.
pub async fn compose(
    task: &MailTask,
    ledger: &dyn LedgerStore,
    customers: &dyn CustomerStore,
    links: Option<&dyn PaymentLinks>,
) -> Result<Option<Mail>> {
    let state = ledger
        .invoice_state(&task.invoice_id)
        .await?
        .ok_or_else(|| Error::internal(format!("invoice {} is missing", task.invoice_id)))?;
    let invoice = state.invoice;
    let customer = customers
        .get(&invoice.customer_id)
        .await?
        .map(|v| v.value)
        .ok_or_else(|| Error::internal(format!("customer {} is missing", invoice.customer_id)))?;
    let billing: Vec<_> = customer
        .contacts
        .iter()
        .filter(|c| c.roles.iter().any(|r| r.as_str() == "billing"))
        .map(|c| c.email.clone())
        .collect();
    let to = if billing.is_empty() {
        customer.contacts.iter().map(|c| c.email.clone()).collect()
    } else {
        billing
    };
    if to.is_empty() {
        return Ok(None);
    }
    let priced = invoice.priced()?;
    let number = invoice
        .invoice_number
        .clone()
        .unwrap_or_else(|| invoice.id.to_string());
    let total = format!("{} {}", invoice.currency.code(), priced.total);
    let link = match (links, invoice.payment.sent_at) {
        (Some(links), Some(sent_at)) => Some(links.payment_link(&invoice.id, sent_at)),
        _ => None,
    };
    let (subject, mut text) = match task.kind {
        MailKind::InvoiceSent => {
            let mut text = format!(
                "Hello {},\n\nyour invoice {number} for {} to {} is ready.\n\n",
                customer.name.as_str(),
                invoice.period.start,
                invoice.period.end,
            );
            for line in &priced.lines {
                text.push_str(&format!(
                    "  {}  x {}  {} {}\n",
                    line.line.description,
                    line.line.quantity.normalize(),
                    invoice.currency.code(),
                    line.amount
                ));
            }
            text.push_str(&format!("\nTotal: {total}\nDue: {}\n", invoice.due_date));
            if invoice.status == InvoiceStatus::Paid {
                text.push_str("Nothing to pay: the total is zero.\n");
            } else if invoice.auto_pay {
                text.push_str("It will be charged automatically to your saved payment method.\n");
            }
            (format!("Invoice {number}: {total}"), text)
        }
        MailKind::PaymentReceived => (
            format!("Payment received for invoice {number}"),
            format!(
                "Hello {},\n\nwe received your payment of {total} for invoice {number}. Thank you.\n",
                customer.name.as_str()
            ),
        ),
        MailKind::PaymentFailed => (
            format!("Payment failed for invoice {number}"),
            format!(
                "Hello {},\n\nwe could not charge {total} for invoice {number} ({}).\nWe will try again on {}; you can also pay now with the link below.\n",
                customer.name.as_str(),
                invoice.payment.last_error.as_deref().unwrap_or("declined"),
                invoice
                    .payment
                    .next_attempt_on
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "a later day".to_owned()),
            ),
        ),
        MailKind::DuplicateRefunded => (
            format!("Duplicate payment refunded for invoice {number}"),
            format!(
                "Hello {},\n\ninvoice {number} ({total}) was paid twice. We refunded the payment it did not need in full; the refund reaches your account within a few days.\n",
                customer.name.as_str()
            ),
        ),
        MailKind::AutoPayDisabled => (
            format!("Automatic payment failed for invoice {number}"),
            format!(
                "Hello {},\n\nwe could not charge {total} for invoice {number} after {} attempts ({}).\nAutomatic payment is now off for this contract; please pay with the link below.\n",
                customer.name.as_str(),
                invoice.payment.attempts,
                invoice.payment.last_error.as_deref().unwrap_or("declined"),
            ),
        ),
    };
    if let Some(link) = link
        && invoice.status == InvoiceStatus::Sent
    {
        text.push_str(&format!("\nPay or view it here: {link}\n"));
    }
    Ok(Some(Mail { to, subject, text }))
}
