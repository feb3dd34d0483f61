//! Step 4: the outbox. Mails are queued with the change they report and sent here, at least
//! once; a mail whose send failed stays queued for the next run.

use crate::error::{Error, Result};
use crate::invoice::InvoiceStatus;
use crate::ports::{Mail, MailKind, MailTask};

use super::{BillingRun, PAGE, RunReport};

impl BillingRun {
    /// Sends the outbox. Without a mailer the tasks stay queued (nothing is dropped).
    pub(super) async fn send_mail(&self, report: &mut RunReport) -> Result<()> {
        let Some(mailer) = &self.mailer else {
            return Ok(());
        };
        loop {
            let tasks = self.ledger.pending_mail(PAGE).await?;
            if tasks.is_empty() {
                return Ok(());
            }
            let mut progressed = false;
            for task in &tasks {
                match self.compose(task).await {
                    Ok(Some(mail)) => match mailer.send(&mail).await {
                        Ok(()) => report.mails_sent += 1,
                        Err(e) => {
                            report.errors.push(format!("mail {}: {e}", task.invoice_id));
                            continue;
                        }
                    },
                    Ok(None) => {}
                    Err(e) => {
                        report.errors.push(format!("mail {}: {e}", task.invoice_id));
                        continue;
                    }
                }
                self.ledger.mail_sent(task).await?;
                progressed = true;
            }
            if !progressed {
                return Ok(()); // every one failed: leave them for the next run
            }
        }
    }

    /// The mail for a task; `None` when the customer has no contact to write to.
    async fn compose(&self, task: &MailTask) -> Result<Option<Mail>> {
        let state = self
            .ledger
            .invoice_state(&task.invoice_id)
            .await?
            .ok_or_else(|| Error::internal(format!("invoice {} is missing", task.invoice_id)))?;
        let invoice = state.invoice;
        let customer = self.customer(&invoice).await?;
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
        let link = match (&self.links, invoice.payment.sent_at) {
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
                    text.push_str(
                        "It will be charged automatically to your saved payment method.\n",
                    );
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
}
