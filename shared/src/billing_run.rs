//! The daily billing run (and the one-time auto-pay retries), in one idempotent pass:
//!
//! 1. **Roll forward** rolling contracts: the current and the next period always have a draft.
//! 2. **Close** invoices whose closing date (period end plus grace) has come: quantities and
//!    amounts are frozen, the next invoice number is taken in the same transaction (gapless),
//!    the status becomes `SENT` (or `PAID` for a zero total) and the invoice mail is queued.
//! 3. **Collect**: sent auto-pay invoices whose attempt date has come are charged off-session,
//!    with an idempotency key of invoice and attempt number, so no path charges one attempt
//!    twice. A failure records the attempt and schedules a one-time retry after 1, 3 and 5
//!    days; after the last one auto-pay is turned off on the contract and the customer told.
//! 4. **Mail**: the outbox is sent (at least once: a mail is queued with its change).
//!
//! Every invoice change is a conditional write on the version read, so two runs at once, or a
//! rerun after a crash, change nothing twice: the loser re-reads and finds the work done.
//! Invoices are handled page by page from the agenda; a run that times out leaves the rest on
//! the agenda for the next one.

use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Serialize;

use crate::contract::{Contract, ContractStatus};
use crate::customer::Customer;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::InvoiceId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::pagination::PageRequest;
use crate::payments::{
    ChargeOutcome, ChargeRequest, Mail, Mailer, PaymentGateway, PaymentLinks, RetryScheduler,
    below_minimum_charge,
};
use crate::refunds;
use crate::store::{
    AgendaKind, CatalogStore, ContractStore, CustomerStore, LedgerStore, MailKind, MailTask,
    Transition, UsageStore, update_contract_with,
};

/// Days between a failed auto-pay attempt and the next: after the first failure 1 day, then 3,
/// then 5; the fourth failure turns auto-pay off.
pub const RETRY_DELAYS_DAYS: [u64; 3] = [1, 3, 5];
/// Attempts in all (the first plus one per retry delay).
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS_DAYS.len() as u32 + 1;
/// How many times one invoice's change is re-read and re-tried after losing a race.
const RACE_ATTEMPTS: usize = 8;
/// Agenda page size.
const PAGE: usize = 100;

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The run date.
    pub date: Option<NaiveDate>,
    /// Draft invoices created for rolling contracts.
    pub drafted: usize,
    /// Invoices closed and sent.
    pub sent: usize,
    /// Invoices closed with a zero total, marked paid without charging.
    pub paid_without_charge: usize,
    /// Auto-pay charges that succeeded.
    pub charged: usize,
    /// Auto-pay attempts that failed (a retry is scheduled, or auto-pay turned off).
    pub failed_attempts: usize,
    /// Auto-pay turned off after the last failed attempt.
    pub auto_pay_disabled: usize,
    /// Invoices left for the portal (no provider customer, no method, below the minimum).
    pub not_collectable: usize,
    /// Due auto-pay invoices not charged because their customer's auto-pay is paused.
    pub paused: usize,
    /// Auto-pay charges refunded at once because the invoice was paid another way meanwhile
    /// (on the portal, between this run's read and its charge).
    pub refunded_unneeded: usize,
    /// Mails sent.
    pub mails_sent: usize,
    /// Invoices whose step failed this time (they stay on the agenda for the next run).
    pub errors: Vec<String>,
}

/// The ports the run uses.
#[derive(Clone)]
pub struct BillingRun {
    customers: Arc<dyn CustomerStore>,
    catalog: Arc<dyn CatalogStore>,
    contracts: Arc<dyn ContractStore>,
    usage: Arc<dyn UsageStore>,
    ledger: Arc<dyn LedgerStore>,
    gateway: Option<Arc<dyn PaymentGateway>>,
    mailer: Option<Arc<dyn Mailer>>,
    scheduler: Option<Arc<dyn RetryScheduler>>,
    links: Option<Arc<dyn PaymentLinks>>,
}

impl BillingRun {
    /// The run over one store; payment, mail, retries and links are added with the `with_`
    /// methods (each is optional so a deployment without Stripe still closes invoices).
    pub fn new<S>(store: Arc<S>) -> Self
    where
        S: CustomerStore + CatalogStore + ContractStore + UsageStore + LedgerStore + 'static,
    {
        Self {
            customers: store.clone(),
            catalog: store.clone(),
            contracts: store.clone(),
            usage: store.clone(),
            ledger: store,
            gateway: None,
            mailer: None,
            scheduler: None,
            links: None,
        }
    }

    /// Charges through this provider.
    pub fn with_gateway(mut self, gateway: Arc<dyn PaymentGateway>) -> Self {
        self.gateway = Some(gateway);
        self
    }

    /// Sends mail through this mailer.
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>) -> Self {
        self.mailer = Some(mailer);
        self
    }

    /// Schedules auto-pay retries through this scheduler.
    pub fn with_scheduler(mut self, scheduler: Arc<dyn RetryScheduler>) -> Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Puts payment links in mails.
    pub fn with_links(mut self, links: Arc<dyn PaymentLinks>) -> Self {
        self.links = Some(links);
        self
    }

    /// The daily pass for `date` (the scheduled day, not the invocation's).
    pub async fn run_daily(&self, date: NaiveDate, now: DateTime<Utc>) -> Result<RunReport> {
        let mut report = RunReport {
            date: Some(date),
            ..RunReport::default()
        };
        self.roll_forward(date, now, &mut report).await?;
        for id in self.due(AgendaKind::Close, date).await? {
            if let Err(e) = self.close(&id, date, now, &mut report).await {
                tracing::error!(invoice = %id, error = %e, "closing failed");
                report.errors.push(format!("{id}: {e}"));
            }
        }
        for id in self.due(AgendaKind::Collect, date).await? {
            if let Err(e) = self.collect(&id, date, now, &mut report).await {
                tracing::error!(invoice = %id, error = %e, "collection failed");
                report.errors.push(format!("{id}: {e}"));
            }
        }
        self.send_mail(&mut report).await?;
        Ok(report)
    }

    /// A scheduled retry of one invoice's auto-pay (the daily run would also pick it up on
    /// its date; whichever comes first charges, the other finds the attempt recorded).
    pub async fn retry(&self, invoice: &InvoiceId, now: DateTime<Utc>) -> Result<RunReport> {
        let date = now.date_naive();
        let mut report = RunReport {
            date: Some(date),
            ..RunReport::default()
        };
        self.collect(invoice, date, now, &mut report).await?;
        self.send_mail(&mut report).await?;
        Ok(report)
    }

    /// Every invoice on an agenda up to `date`, read page by page (ids only).
    async fn due(&self, kind: AgendaKind, date: NaiveDate) -> Result<Vec<InvoiceId>> {
        let mut ids = Vec::new();
        let mut page = PageRequest {
            limit: PAGE,
            after: None,
        };
        loop {
            let due = self.ledger.agenda(kind, date, &page).await?;
            ids.extend(due.items);
            match due.next {
                Some(next) => page.after = Some(next),
                None => return Ok(ids),
            }
        }
    }

    async fn roll_forward(
        &self,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        let mut page = PageRequest {
            limit: crate::pagination::MAX_LIMIT,
            after: None,
        };
        loop {
            let contracts = self.contracts.list_contracts(None, &page).await?;
            for contract in contracts
                .items
                .iter()
                .filter(|c| c.status == ContractStatus::Active && c.end_date.is_none())
            {
                report.drafted += self.draft_ahead(contract, date, now).await?;
            }
            match contracts.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        Ok(())
    }

    /// Drafts of the period containing `date` and the next one, when missing.
    async fn draft_ahead(
        &self,
        contract: &Contract,
        date: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let schedule = contract.schedule();
        let Some((index, _)) = schedule.period_containing(date) else {
            return Ok(0);
        };
        let wanted: Vec<_> = [index, index + 1]
            .into_iter()
            .filter_map(|i| schedule.period(i))
            .map(|p| (Invoice::id_for(&contract.id, p.start), p))
            .collect();
        let ids: Vec<InvoiceId> = wanted.iter().map(|(id, _)| id.clone()).collect();
        let existing = self.usage.invoice_states(&ids).await?;
        let mut drafted = 0;
        for (id, period) in wanted {
            if existing.contains_key(&id) {
                continue;
            }
            let plan = self
                .catalog
                .get_plan(&contract.plan_id)
                .await?
                .ok_or_else(|| Error::internal(format!("plan {} is missing", contract.plan_id)))?;
            self.usage
                .ensure_invoice(&Invoice::draft(contract, &plan, period, now))
                .await?;
            drafted += 1;
        }
        Ok(drafted)
    }

    async fn close(
        &self,
        id: &InvoiceId,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        for _ in 0..RACE_ATTEMPTS {
            let Some(state) = self.ledger.invoice_state(id).await? else {
                return Ok(());
            };
            let invoice = &state.invoice;
            if !invoice.status.is_open() || invoice.closes_on > date {
                return Ok(()); // closed by another run, voided, or not due
            }
            let contract = self.contract(invoice).await?;
            let priced = invoice.priced()?;
            let number = self.ledger.last_invoice_number().await? + 1;
            let mut next = invoice.clone();
            next.invoice_number = Some(format_number(number));
            next.auto_pay = contract.auto_pay;
            next.updated_at = now;
            next.payment.sent_at = Some(now);
            next.payment.amount_due_minor_units = Some(priced.total_minor_units);
            let zero = priced.total_minor_units == 0;
            if zero {
                next.status = InvoiceStatus::Paid;
                next.payment.paid_at = Some(now);
            } else {
                next.status = InvoiceStatus::Sent;
                next.payment.next_attempt_on = contract.auto_pay.then_some(invoice.invoice_date);
            }
            let mail = [MailTask {
                invoice_id: id.clone(),
                kind: MailKind::InvoiceSent,
            }];
            match self
                .ledger
                .transition(&state, &next, Some(number), &mail)
                .await?
            {
                Transition::Done => {
                    if zero {
                        report.paid_without_charge += 1;
                    } else {
                        report.sent += 1;
                    }
                    return Ok(());
                }
                Transition::InvoiceMoved | Transition::NumberTaken => continue,
            }
        }
        Err(Error::conflict(
            "busy_invoice",
            "the invoice kept changing while closing; the next run retries",
        ))
    }

    async fn collect(
        &self,
        id: &InvoiceId,
        date: NaiveDate,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<()> {
        // A charge that succeeded but lost its write to another writer: recorded on the next
        // pass (same attempt, same payment), or refunded if the invoice was paid another way.
        let mut unrecorded: Option<String> = None;
        for _ in 0..RACE_ATTEMPTS {
            let Some(state) = self.ledger.invoice_state(id).await? else {
                return Ok(());
            };
            let invoice = &state.invoice;
            let due = invoice.status == InvoiceStatus::Sent
                && invoice.auto_pay
                && invoice.payment.next_attempt_on.is_some_and(|d| d <= date);
            if !due {
                // Paid another way while auto-pay charged. (Still `SENT` but no longer due: the
                // payment's own webhook records it.)
                if let (Some(ours), Some(gateway)) = (&unrecorded, &self.gateway)
                    && refunds::unneeded(invoice, ours)
                {
                    refunds::refund_unneeded(self.ledger.as_ref(), gateway.as_ref(), id, ours, now)
                        .await?;
                    report.refunded_unneeded += 1;
                }
                return Ok(()); // paid, refunded, retried by another run, or not yet
            }
            let mut next = invoice.clone();
            next.updated_at = now;
            let contract = self.contract(invoice).await?;
            let customer = self.customer(invoice).await?;
            if customer.auto_pay_paused {
                report.paused += 1;
                return Ok(()); // stays due: charged on the first run after the pause is lifted
            }
            let amount = invoice.payment.amount_due_minor_units.unwrap_or_default();
            let method = contract
                .payment_method
                .clone()
                .or_else(|| customer.payment_method.as_ref().map(|m| m.id.clone()));
            let refusal = match (&self.gateway, &customer.payment_provider, &method) {
                _ if below_minimum_charge(invoice.currency, amount) => Some(
                    "below the payment provider's minimum charge; pay through the payment link",
                ),
                (None, _, _) => Some("no payment provider is configured"),
                (_, None, _) => Some("the customer is not linked to the payment provider"),
                (_, _, None) => Some("no saved payment method"),
                _ => None,
            };
            if let Some(reason) = refusal {
                next.payment.next_attempt_on = None;
                next.payment.last_error = Some(reason.to_owned());
                if self.ledger.transition(&state, &next, None, &[]).await? == Transition::Done {
                    report.not_collectable += 1;
                    return Ok(());
                }
                continue;
            }
            let (Some(gateway), Some(link), Some(method)) =
                (&self.gateway, &customer.payment_provider, method)
            else {
                continue; // unreachable: refused above
            };
            let attempt = invoice.payment.attempts + 1;
            let request = ChargeRequest {
                invoice_id: id.clone(),
                attempt,
                customer: link.customer_id.clone(),
                payment_method: method,
                amount_minor: amount,
                currency: invoice.currency,
                // Set by the close; the creation time is an earlier bound.
                sent_at: invoice.payment.sent_at.unwrap_or(invoice.created_at),
            };
            let outcome = gateway.charge(&request).await?;
            next.payment.attempts = attempt;
            let mut mail = Vec::new();
            let mut disable = false;
            match &outcome {
                ChargeOutcome::Succeeded { payment_intent } => {
                    next.status = InvoiceStatus::Paid;
                    next.payment.payment_intent = Some(payment_intent.clone());
                    next.payment.paid_at = Some(now);
                    next.payment.next_attempt_on = None;
                    next.payment.last_error = None;
                    mail.push(MailTask {
                        invoice_id: id.clone(),
                        kind: MailKind::PaymentReceived,
                    });
                }
                ChargeOutcome::Failed { code, message, .. } => {
                    next.payment.last_error = Some(format!("{code}: {message}"));
                    match RETRY_DELAYS_DAYS.get(attempt as usize - 1) {
                        Some(days) => {
                            next.payment.next_attempt_on = date.checked_add_days(Days::new(*days));
                            mail.push(MailTask {
                                invoice_id: id.clone(),
                                kind: MailKind::PaymentFailed,
                            });
                        }
                        None => {
                            next.payment.next_attempt_on = None;
                            next.auto_pay = false;
                            disable = true;
                            mail.push(MailTask {
                                invoice_id: id.clone(),
                                kind: MailKind::AutoPayDisabled,
                            });
                        }
                    }
                }
            }
            match self.ledger.transition(&state, &next, None, &mail).await? {
                Transition::Done => {}
                // Another writer came first: another run with this attempt (the idempotency key
                // made both calls one payment, and its write stands), the webhook of this
                // payment, or a payment on the portal. Re-read and see.
                _ => {
                    if let ChargeOutcome::Succeeded { payment_intent } = outcome {
                        unrecorded = Some(payment_intent);
                    }
                    continue;
                }
            }
            match outcome {
                ChargeOutcome::Succeeded { .. } => report.charged += 1,
                ChargeOutcome::Failed { .. } => {
                    report.failed_attempts += 1;
                    if disable {
                        self.disable_auto_pay(&contract).await?;
                        report.auto_pay_disabled += 1;
                    } else if let (Some(scheduler), Some(on)) =
                        (&self.scheduler, next.payment.next_attempt_on)
                    {
                        let at = on
                            .and_time(now.time())
                            .and_utc()
                            .max(now + chrono::Duration::minutes(1));
                        scheduler.schedule_retry(id, attempt + 1, at).await?;
                    }
                }
            }
            return Ok(());
        }
        Err(Error::conflict(
            "busy_invoice",
            "the invoice kept changing while collecting; the next run retries",
        ))
    }

    async fn disable_auto_pay(&self, contract: &Contract) -> Result<()> {
        update_contract_with(self.contracts.as_ref(), &contract.id, |current| {
            current.auto_pay.then(|| Contract {
                auto_pay: false,
                ..current.clone()
            })
        })
        .await
    }

    async fn contract(&self, invoice: &Invoice) -> Result<Contract> {
        self.contracts
            .get_contract(&invoice.contract_id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::internal(format!("contract {} is missing", invoice.contract_id)))
    }

    async fn customer(&self, invoice: &Invoice) -> Result<Customer> {
        self.customers
            .get(&invoice.customer_id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::internal(format!("customer {} is missing", invoice.customer_id)))
    }

    /// Sends the outbox. Without a mailer the tasks stay queued (nothing is dropped).
    async fn send_mail(&self, report: &mut RunReport) -> Result<()> {
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

/// `INV-000042`: sequential, zero-padded so numbers sort as text.
pub fn format_number(number: u64) -> String {
    format!("INV-{number:06}")
}

/// Whether an error is worth retrying later rather than reporting as a bug.
pub fn is_transient(e: &Error) -> bool {
    matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Conflict)
}
