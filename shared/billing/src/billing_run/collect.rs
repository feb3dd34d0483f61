//! Step 3: auto-pay. A sent auto-pay invoice whose attempt date has come is charged
//! off-session, with an idempotency key of invoice and attempt, so no path charges one attempt
//! twice. A failure records the attempt and schedules a retry after 1, 3 and 5 days; the fourth
//! failure turns auto-pay off on the contract and tells the customer.

use std::sync::Mutex;

use chrono::{DateTime, Days, NaiveDate, Utc};

use crate::concurrency::{Attempt, Write, retry_on_conflict};
use crate::contract::Contract;
use crate::customer::{Customer, PaymentMethodId};
use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::ports::{
    ChargeOutcome, ChargeRequest, MailKind, MailTask, below_minimum_charge, update_contract_with,
};
use crate::refunds;
use crate::webhooks::events::invoice_changed;

use super::{BillingRun, RETRY_DELAYS_DAYS, RunReport};

/// What collecting one invoice came to.
#[derive(Debug)]
enum Collected {
    /// Not due (paid, refunded, retried by another run, or not yet): nothing done.
    Nothing,
    /// Paid another way while our charge went through: our charge was refunded.
    RefundedUnneeded,
    /// The customer's auto-pay is paused: the invoice stays due.
    Paused,
    /// Cannot be charged automatically; left for the payment link.
    NotCollectable,
    /// Charged and recorded paid.
    Charged,
    /// The charge failed and the attempt is recorded.
    Failed {
        /// This was the last attempt: auto-pay goes off on the contract.
        last: bool,
        /// The contract, to turn auto-pay off on.
        contract: Box<Contract>,
        /// The attempt that failed, and the day of the next one.
        attempt: u32,
        next_on: Option<NaiveDate>,
    },
}

impl BillingRun {
    /// Collects one invoice from the agenda (or a scheduled retry of it).
    #[tracing::instrument(skip(self, now, report))]
    pub(super) async fn collect(
        &self,
        id: &InvoiceId,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        // A charge that succeeded but lost its write to another writer: recorded on the next
        // attempt (same attempt number, same payment), or refunded if the invoice was paid
        // another way meanwhile.
        let unrecorded = Mutex::new(None);
        let collected = retry_on_conflict("this invoice", || {
            self.collect_once(id, date, now, &unrecorded)
        })
        .await?;
        match collected {
            Collected::Nothing => {}
            Collected::RefundedUnneeded => report.refunded_unneeded += 1,
            Collected::Paused => report.paused += 1,
            Collected::NotCollectable => report.not_collectable += 1,
            Collected::Charged => report.charged += 1,
            Collected::Failed {
                last,
                contract,
                attempt,
                next_on,
            } => {
                report.failed_attempts += 1;
                if last {
                    self.disable_auto_pay(&contract).await?;
                    report.auto_pay_disabled += 1;
                } else if let (Some(scheduler), Some(on)) = (&self.scheduler, next_on) {
                    let at = on
                        .and_time(now.time())
                        .and_utc()
                        .max(now + chrono::Duration::minutes(1));
                    scheduler.schedule_retry(id, attempt + 1, at).await?;
                }
            }
        }
        Ok(())
    }

    async fn collect_once(
        &self,
        id: &InvoiceId,
        date: NaiveDate,
        now: DateTime<Utc>,
        unrecorded: &Mutex<Option<String>>,
    ) -> Result<Attempt<Collected>> {
        let Some(state) = self.ledger.invoice_state(id).await? else {
            return Ok(Attempt::Done(Collected::Nothing));
        };
        let invoice = &state.invoice;
        if !is_due(invoice, date) {
            // Paid another way while auto-pay charged. (Still `SENT` but no longer due: the
            // payment's own webhook records it.)
            let ours = lock(unrecorded).clone();
            if let (Some(ours), Some(gateway)) = (ours, &self.gateway)
                && refunds::unneeded(invoice, &ours)
            {
                refunds::refund_unneeded(self.ledger.as_ref(), gateway.as_ref(), id, &ours, now)
                    .await?;
                return Ok(Attempt::Done(Collected::RefundedUnneeded));
            }
            return Ok(Attempt::Done(Collected::Nothing));
        }
        let contract = self.contract(invoice).await?;
        let customer = self.customer(invoice).await?;
        if customer.auto_pay_paused {
            // Stays due: charged on the first run after the pause is lifted.
            return Ok(Attempt::Done(Collected::Paused));
        }
        let request = match self.charge_request(invoice, &contract, &customer) {
            Ok(request) => request,
            Err(reason) => {
                let mut next = invoice.clone();
                next.updated_at = now;
                next.payment.next_attempt_on = None;
                next.payment.last_error = Some(reason.to_owned());
                let events = invoice_changed(invoice, &next, now);
                let write = self
                    .ledger
                    .transition(&state, &next, None, &[], &events)
                    .await?;
                return Ok(write.into_attempt(Collected::NotCollectable));
            }
        };
        let gateway = self
            .gateway
            .as_ref()
            .ok_or_else(|| Error::internal("a charge request without a payment provider"))?;
        let outcome = gateway.charge(&request).await?;
        let (next, mail, collected) = charged_invoice(invoice, &outcome, contract, date, now);
        let events = invoice_changed(invoice, &next, now);
        match self
            .ledger
            .transition(&state, &next, None, &mail, &events)
            .await?
        {
            Write::Done => Ok(Attempt::Done(collected)),
            // Another writer came first: another run with this attempt (the idempotency key
            // made both calls one payment, and its write stands), the webhook of this payment,
            // or a payment on the portal. Re-read and see.
            Write::Conflict => {
                if let ChargeOutcome::Succeeded { payment_intent } = outcome {
                    *lock(unrecorded) = Some(payment_intent);
                }
                Ok(Attempt::Conflict)
            }
        }
    }

    /// The charge for the invoice's next attempt, or why it cannot be charged automatically.
    fn charge_request(
        &self,
        invoice: &Invoice,
        contract: &Contract,
        customer: &Customer,
    ) -> std::result::Result<ChargeRequest, &'static str> {
        let amount = invoice.payment.amount_due_minor_units.unwrap_or_default();
        if below_minimum_charge(invoice.currency, amount) {
            return Err(
                "below the payment provider's minimum charge; pay through the payment link",
            );
        }
        if self.gateway.is_none() {
            return Err("no payment provider is configured");
        }
        let link = customer
            .payment_provider
            .as_ref()
            .ok_or("the customer is not linked to the payment provider")?;
        let method: PaymentMethodId = contract
            .payment_method
            .clone()
            .or_else(|| customer.payment_method.as_ref().map(|m| m.id.clone()))
            .ok_or("no saved payment method")?;
        Ok(ChargeRequest {
            invoice_id: invoice.id.clone(),
            attempt: invoice.payment.attempts + 1,
            customer: link.customer_id.clone(),
            payment_method: method,
            amount_minor: amount,
            currency: invoice.currency,
            // Set by the close; the creation time is an earlier bound.
            sent_at: invoice.payment.sent_at.unwrap_or(invoice.created_at),
        })
    }

    async fn disable_auto_pay(&self, contract: &Contract) -> Result<()> {
        update_contract_with(
            self.contracts.as_ref(),
            &contract.id,
            self.now(),
            |current| {
                current.auto_pay.then(|| Contract {
                    auto_pay: false,
                    ..current.clone()
                })
            },
        )
        .await
    }
}

/// Whether auto-pay should charge the invoice on `date`.
fn is_due(invoice: &Invoice, date: NaiveDate) -> bool {
    invoice.status == InvoiceStatus::Sent
        && invoice.auto_pay
        && invoice.payment.next_attempt_on.is_some_and(|d| d <= date)
}

/// The invoice after a charge's answer, with the mail it sends: `PAID` and a receipt, or the
/// failed attempt with its retry date (or auto-pay off after the last attempt).
fn charged_invoice(
    invoice: &Invoice,
    outcome: &ChargeOutcome,
    contract: Contract,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> (Invoice, Vec<MailTask>, Collected) {
    let attempt = invoice.payment.attempts + 1;
    let mut next = invoice.clone();
    next.updated_at = now;
    next.payment.attempts = attempt;
    let mail = |kind| {
        vec![MailTask {
            invoice_id: invoice.id.clone(),
            kind,
        }]
    };
    match outcome {
        ChargeOutcome::Succeeded { payment_intent } => {
            next.status = InvoiceStatus::Paid;
            next.payment.payment_intent = Some(payment_intent.clone());
            next.payment.paid_at = Some(now);
            next.payment.next_attempt_on = None;
            next.payment.last_error = None;
            (next, mail(MailKind::PaymentReceived), Collected::Charged)
        }
        ChargeOutcome::Failed { code, message, .. } => {
            next.payment.last_error = Some(format!("{code}: {message}"));
            let delay = RETRY_DELAYS_DAYS.get(attempt as usize - 1);
            next.payment.next_attempt_on =
                delay.and_then(|days| date.checked_add_days(Days::new(*days)));
            let last = delay.is_none();
            let kind = if last {
                next.auto_pay = false;
                MailKind::AutoPayDisabled
            } else {
                MailKind::PaymentFailed
            };
            let collected = Collected::Failed {
                last,
                contract: Box::new(contract),
                attempt,
                next_on: next.payment.next_attempt_on,
            };
            (next, mail(kind), collected)
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
