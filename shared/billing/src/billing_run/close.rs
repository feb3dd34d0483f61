//! Step 2: closing. An invoice whose closing date (period end plus grace) has come gets its
//! amounts frozen, the next gapless number and status `SENT` (or `PAID` for a zero total), and
//! its mail queued, all in one conditional transition.

use chrono::{DateTime, NaiveDate, Utc};

use crate::concurrency::{Attempt, retry_on_conflict};
use crate::error::Result;
use crate::ids::InvoiceId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::ports::{MailKind, MailTask};
use crate::webhooks::events::invoice_changed;

use super::{BillingRun, RunReport, format_number};

/// What closing one invoice came to.
enum Closed {
    /// Closed by another run, voided, or not due yet.
    Nothing,
    /// Sent with an amount due.
    Sent,
    /// Closed with a zero total: paid without a charge.
    PaidWithoutCharge,
}

impl BillingRun {
    /// Closes one invoice from the agenda, if it is still open and due on `date`.
    #[tracing::instrument(skip(self, now, report))]
    pub(super) async fn close(
        &self,
        id: &InvoiceId,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        let closed = retry_on_conflict("this invoice", || self.close_once(id, date, now)).await?;
        match closed {
            Closed::Nothing => {}
            Closed::Sent => report.sent += 1,
            Closed::PaidWithoutCharge => report.paid_without_charge += 1,
        }
        Ok(())
    }

    async fn close_once(
        &self,
        id: &InvoiceId,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Attempt<Closed>> {
        let Some(state) = self.ledger.invoice_state(id).await? else {
            return Ok(Attempt::Done(Closed::Nothing));
        };
        let invoice = &state.invoice;
        if !invoice.status.is_open() || invoice.closes_on > date {
            return Ok(Attempt::Done(Closed::Nothing));
        }
        let contract = self.contract(invoice).await?;
        let number = self.ledger.last_invoice_number().await? + 1;
        let (next, closed) = closed_invoice(invoice, contract.auto_pay, number, now)?;
        let mail = [MailTask {
            invoice_id: id.clone(),
            kind: MailKind::InvoiceSent,
        }];
        let events = invoice_changed(invoice, &next, now);
        let write = self
            .ledger
            .transition(&state, &next, Some(number), &mail, &events)
            .await?;
        Ok(write.into_attempt(closed))
    }
}

/// The invoice as closed with `number`: amounts frozen, `SENT` with its first auto-pay date,
/// or `PAID` when nothing is due.
fn closed_invoice(
    invoice: &Invoice,
    auto_pay: bool,
    number: u64,
    now: DateTime<Utc>,
) -> Result<(Invoice, Closed)> {
    let priced = invoice.priced()?;
    let mut next = invoice.clone();
    next.invoice_number = Some(format_number(number));
    next.auto_pay = auto_pay;
    next.updated_at = now;
    next.payment.sent_at = Some(now);
    next.payment.amount_due_minor_units = Some(priced.total_minor_units);
    if priced.total_minor_units == 0 {
        next.status = InvoiceStatus::Paid;
        next.payment.paid_at = Some(now);
        Ok((next, Closed::PaidWithoutCharge))
    } else {
        next.status = InvoiceStatus::Sent;
        next.payment.next_attempt_on = auto_pay.then_some(invoice.invoice_date);
        Ok((next, Closed::Sent))
    }
}
