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

mod close;
mod collect;
mod mail;
mod roll_forward;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

use crate::contract::Contract;
use crate::customer::Customer;
use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::invoice::Invoice;
use crate::pagination::PageRequest;
use crate::ports::{
    AgendaKind, CatalogStore, Clock, ContractStore, CustomerStore, LedgerStore, Mailer,
    PaymentGateway, PaymentLinks, RetryScheduler, SystemClock, UsageStore,
};

/// Days between a failed auto-pay attempt and the next: after the first failure 1 day, then 3,
/// then 5; the fourth failure turns auto-pay off.
pub const RETRY_DELAYS_DAYS: [u64; 3] = [1, 3, 5];
/// Attempts in all (the first plus one per retry delay).
pub const MAX_ATTEMPTS: u32 = RETRY_DELAYS_DAYS.len() as u32 + 1;
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
    clock: Arc<dyn Clock>,
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
            clock: Arc::new(SystemClock),
        }
    }

    /// Reads "now" from `clock` (the local stack's simulated clock) instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The current time, as the run sees it.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
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
    #[tracing::instrument(skip(self, now))]
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
    #[tracing::instrument(skip(self, now))]
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

    pub(super) async fn contract(&self, invoice: &Invoice) -> Result<Contract> {
        self.contracts
            .get_contract(&invoice.contract_id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::internal(format!("contract {} is missing", invoice.contract_id)))
    }

    pub(super) async fn customer(&self, invoice: &Invoice) -> Result<Customer> {
        self.customers
            .get(&invoice.customer_id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::internal(format!("customer {} is missing", invoice.customer_id)))
    }
}

/// `INV-000042`: sequential, zero-padded so numbers sort as text.
pub fn format_number(number: u64) -> String {
    format!("INV-{number:06}")
}
