//! Invoices: read (priced), list, the upcoming preview, and the operator's actions: void, mark
//! paid (outside the provider) and send again. Each action is a conditional transition of the
//! invoice (re-read and re-applied on a race), written with its webhook event and mail, and
//! repeating it changes nothing more.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::concurrency::{Attempt, retry_on_conflict};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId};
use crate::invoice::{Invoice, InvoiceStatus, PricedInvoice};
use crate::pagination::{Page, PageRequest};
use crate::ports::{InvoiceFilter, InvoiceState, MailKind, MailTask, PaymentLinks};
use crate::webhooks::events::invoice_changed;

use super::Billing;

/// The longest payment reference accepted.
const MAX_REFERENCE_CHARS: usize = 200;

/// `POST /v1/invoices/{id}/mark-paid` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MarkPaid {
    /// When the money arrived; now when omitted. Not in the future.
    pub paid_at: Option<DateTime<Utc>>,
    /// The payment's reference (a bank transfer's), required.
    pub reference: Option<String>,
}

/// What an action does to an invoice in a given state.
enum Step {
    /// Already done: answer the invoice as it is.
    Done,
    /// Write this, with these mails.
    Write(Box<Invoice>, Vec<MailTask>),
}

impl Billing {
    /// Reads an invoice with its amounts computed; 404 when unknown.
    #[tracing::instrument(skip(self), fields(invoice = id))]
    pub async fn invoice(&self, id: &str) -> Result<PricedInvoice> {
        let id = InvoiceId::parse(id).map_err(|_| Error::not_found("invoice", id))?;
        self.invoice_record(&id).await?.priced()
    }

    /// Reads an invoice as stored; 404 when unknown.
    pub async fn invoice_record(&self, id: &InvoiceId) -> Result<Invoice> {
        self.invoices
            .get_invoice(id)
            .await?
            .ok_or_else(|| Error::not_found("invoice", id.as_str()))
    }

    /// Lists invoices (filtered by customer, contract, status) with amounts computed.
    pub async fn invoices(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
        contract: Option<&str>,
        status: Option<&str>,
    ) -> Result<Page<PricedInvoice>> {
        let filter = InvoiceFilter {
            customer: customer
                .map(|c| CustomerId::parse(c).map_err(|e| e.at("customerId")))
                .transpose()?,
            contract: contract
                .map(|c| ContractId::parse(c).map_err(|e| e.at("contractId")))
                .transpose()?,
            status: status.map(InvoiceStatus::parse).transpose()?,
        };
        let page = self.invoices.list_invoices(&filter, page).await?;
        Ok(Page {
            items: page
                .items
                .iter()
                .map(Invoice::priced)
                .collect::<Result<_>>()?,
            next: page.next,
        })
    }

    /// The contract's open invoice (the one whose period contains today, or the first when the
    /// contract has not started), priced as if it closed now.
    #[tracing::instrument(skip(self))]
    pub async fn upcoming_invoice(&self, contract: &str) -> Result<PricedInvoice> {
        let id = ContractId::parse(contract).map_err(|e| e.at("contractId"))?;
        let contract = self.contract(id.as_str()).await?;
        let today = self.clock.now().date_naive();
        let schedule = contract.schedule();
        let period = match schedule.period_containing(today) {
            Some((_, period)) => Some(period),
            None if today < contract.start_date => schedule.period(0),
            None => None,
        }
        .ok_or_else(|| no_upcoming("the contract has ended"))?;
        let invoice = self
            .invoices
            .get_invoice(&Invoice::id_for(&id, period.start))
            .await?
            .ok_or_else(|| no_upcoming("the current period has no invoice yet"))?;
        invoice.priced()
    }

    /// The payment link of an invoice that has been sent, when links are configured.
    pub fn payment_link(&self, invoice: &Invoice) -> Option<String> {
        use crate::ports::PaymentLinks;
        let links = self.links()?;
        let sent_at = invoice.payment.sent_at?;
        Some(links.payment_link(&invoice.id, sent_at))
    }
}

impl Billing {
    /// Voids an invoice not yet paid (`DRAFTED`, `IN_PROGRESS` or `SENT`): nothing is due on
    /// it, its payment link says Void, auto-pay stops, and usage still arriving for its period
    /// goes to the next open invoice as late usage (its usage shares are sealed with the void).
    /// Voiding again answers the void invoice; a paid one is 409 `invoice_paid`.
    #[tracing::instrument(skip(self), fields(invoice = id))]
    pub async fn void_invoice(&self, id: &str) -> Result<PricedInvoice> {
        self.act(id, |invoice, now| match invoice.status {
            InvoiceStatus::Void => Ok(Step::Done),
            InvoiceStatus::Paid | InvoiceStatus::Refunded => Err(Error::conflict(
                "invoice_paid",
                "a paid invoice cannot be voided; refund the payment instead",
            )),
            InvoiceStatus::Drafted | InvoiceStatus::InProgress | InvoiceStatus::Sent => {
                let mut next = invoice.clone();
                next.status = InvoiceStatus::Void;
                next.payment.next_attempt_on = None;
                next.updated_at = now;
                Ok(Step::Write(Box::new(next), Vec::new()))
            }
        })
        .await
    }

    /// Records a payment made outside the provider (a bank transfer): a `SENT` invoice becomes
    /// `PAID` at `paidAt` with the reference, auto-pay stops, and the customer gets a receipt.
    /// Repeating it with the same reference answers the paid invoice; an invoice paid otherwise
    /// is 409 `invoice_already_paid`, one not sent yet 409 `invoice_not_sent`.
    #[tracing::instrument(skip(self, request), fields(invoice = id))]
    pub async fn mark_invoice_paid(&self, id: &str, request: MarkPaid) -> Result<PricedInvoice> {
        let reference = request.reference.ok_or_else(|| {
            Error::invalid("missing_field", "reference is required").at("reference")
        })?;
        crate::text::check_text(
            &reference,
            MAX_REFERENCE_CHARS,
            "invalid_reference",
            "reference",
        )
        .map_err(|e| e.at("reference"))?;
        let now = self.clock.now();
        let paid_at = request.paid_at.unwrap_or(now);
        if paid_at > now + crate::usage::MAX_FUTURE {
            return Err(
                Error::unprocessable("paid_at_in_future", "paidAt is in the future").at("paidAt"),
            );
        }
        self.act(id, |invoice, now| match invoice.status {
            InvoiceStatus::Paid
                if invoice.payment.external_reference.as_deref() == Some(reference.as_str()) =>
            {
                Ok(Step::Done)
            }
            InvoiceStatus::Paid | InvoiceStatus::Refunded => Err(Error::conflict(
                "invoice_already_paid",
                "the invoice is already paid",
            )),
            InvoiceStatus::Void => Err(voided()),
            InvoiceStatus::Drafted | InvoiceStatus::InProgress => Err(not_sent()),
            InvoiceStatus::Sent => {
                let mut next = invoice.clone();
                next.status = InvoiceStatus::Paid;
                next.payment.paid_at = Some(paid_at);
                next.payment.external_reference = Some(reference.clone());
                next.payment.next_attempt_on = None;
                next.updated_at = now;
                let mail = vec![MailTask {
                    invoice_id: invoice.id.clone(),
                    kind: MailKind::PaymentReceived,
                }];
                Ok(Step::Write(Box::new(next), mail))
            }
        })
        .await
    }

    /// Mails a sent (or paid) invoice to the customer again, at once when mail is configured
    /// (else with the next billing run), and emits `invoice.sent`. Calls while that mail is
    /// still queued send it once.
    #[tracing::instrument(skip(self), fields(invoice = id))]
    pub async fn send_invoice(&self, id: &str) -> Result<PricedInvoice> {
        let task = |id: &InvoiceId| MailTask {
            invoice_id: id.clone(),
            kind: MailKind::InvoiceSent,
        };
        let invoice = self
            .act(id, |invoice, now| match invoice.status {
                InvoiceStatus::Sent | InvoiceStatus::Paid | InvoiceStatus::Refunded => {
                    let mut next = invoice.clone();
                    next.payment.resent_at = Some(now);
                    next.updated_at = now;
                    Ok(Step::Write(Box::new(next), vec![task(&invoice.id)]))
                }
                InvoiceStatus::Void => Err(voided()),
                InvoiceStatus::Drafted | InvoiceStatus::InProgress => Err(not_sent()),
            })
            .await?;
        if let Some(mailer) = &self.mailer {
            let links = self.links.as_deref().map(|l| l as &dyn PaymentLinks);
            if let Err(e) = crate::mail::deliver(
                &task(&invoice.invoice.id),
                self.ledger.as_ref(),
                self.customers.as_ref(),
                links,
                mailer.as_ref(),
            )
            .await
            {
                // Queued: the next billing run sends it.
                tracing::warn!(error = %e, "the invoice mail waits for the next billing run");
            }
        }
        Ok(invoice)
    }

    /// Applies `step` to the invoice as it stands until the transition sticks.
    async fn act(
        &self,
        id: &str,
        step: impl Fn(&Invoice, DateTime<Utc>) -> Result<Step> + Send + Sync,
    ) -> Result<PricedInvoice> {
        let id = InvoiceId::parse(id).map_err(|_| Error::not_found("invoice", id))?;
        retry_on_conflict("this invoice", || async {
            let state: InvoiceState = self
                .ledger
                .invoice_state(&id)
                .await?
                .ok_or_else(|| Error::not_found("invoice", id.as_str()))?;
            let now = self.clock.now();
            let (next, mail) = match step(&state.invoice, now)? {
                Step::Done => return Ok(Attempt::Done(state.invoice.priced()?)),
                Step::Write(next, mail) => (*next, mail),
            };
            let events = invoice_changed(&state.invoice, &next, now);
            let write = self
                .ledger
                .transition(&state, &next, None, &mail, &events)
                .await?;
            Ok(match write.into_attempt(()) {
                Attempt::Done(()) => Attempt::Done(next.priced()?),
                Attempt::Conflict => Attempt::Conflict,
            })
        })
        .await
    }
}

fn voided() -> Error {
    Error::conflict("invoice_voided", "the invoice was voided")
}

fn not_sent() -> Error {
    Error::conflict(
        "invoice_not_sent",
        "the invoice is still open; it is sent when its period closes",
    )
}

fn no_upcoming(message: &str) -> Error {
    Error::new(ErrorKind::NotFound, "no_upcoming_invoice", message)
}
