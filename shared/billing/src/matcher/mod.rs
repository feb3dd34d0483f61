//! The usage matcher: every event counted exactly once on the right invoice line, or recorded
//! with the reason it could not be billed.
//!
//! For each event: the meters listening to its name (filters applied, archived meters
//! skipped), the customer's contract covering its timestamp for that meter, the invoice of that
//! period, and the line of the meter's price (for dimensional prices, the line of the event's
//! combination, created on first use). A closed invoice sends the event to a "late usage" line
//! on the contract's next open invoice, labelled with the original service period.
//!
//! **Exactly once.** Each event gets a record keyed by customer and idempotency key, put on
//! condition that it does not exist, in the same DynamoDB transaction as the aggregate change it
//! causes. Invoice writes are conditioned on the invoice's version and open status. A repeated
//! key cancels its transaction (the cancellation reason names it), the event is dropped as
//! already counted, and the rest is retried; a concurrent writer or a closed invoice makes the
//! matcher re-read and re-apply. A matcher that dies between transactions leaves each one whole,
//! so a redelivery counts exactly what is missing.
//!
//! Rooms: [`cache`] keeps catalog reads warm; [`reading`] finds, per event and meter, the
//! line it bills; [`landing`] reads the invoices and sends usage of closed ones to the late
//! path; [`commit`] builds and writes the transactions. Failed attempts back off and retry
//! with the platform's one policy ([`crate::concurrency`]).
//!
//! **Catalog cache.** Meters, contracts and customer look-ups are cached per warm Lambda for at
//! most [`CACHE_TTL`]; plans never change and stay cached. A negative answer (no meter, no
//! covering contract, unknown customer) is never trusted from the cache: it is re-read first,
//! so a meter or contract created a moment ago is never missed. Within the bound, an archived
//! meter may still count events, and a cancelled contract may still be taken as covering.

mod cache;
mod commit;
mod landing;
mod reading;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::aggregation::UsageValue;
use crate::concurrency;
use crate::contract::Contract;
use crate::error::{Error, Result};
use crate::ids::{CustomerId, InvoiceId};
use crate::invoice::InvoiceLine;
use crate::meter::Meter;
use crate::period::Period;
use crate::plan::{Plan, Price};
use crate::ports::{CatalogStore, Clock, ContractStore, CustomerStore, UsageStore};
use crate::usage::{EventStatus, UsageEvent};
use crate::use_cases::Store;

use cache::Cache;

/// How long a warm matcher trusts cached meters, contracts and customers.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// DynamoDB's limit of actions in one transaction.
pub const MAX_TRANSACTION_ACTIONS: usize = 100;

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events recorded by this run.
    pub recorded: usize,
    /// Events skipped because they were already recorded (resends, redeliveries).
    pub duplicates: usize,
    /// Recorded events by outcome.
    pub by_status: BTreeMap<&'static str, usize>,
    /// Transactions committed.
    pub transactions: usize,
    /// Write actions in the committed transactions (records plus invoice updates).
    pub write_actions: usize,
}

/// Every meter, shared by the events of a batch.
type Meters = Arc<Vec<Arc<Meter>>>;

/// A usage reading bound for an invoice line.
#[derive(Clone)]
struct Target {
    contract: Arc<Contract>,
    plan: Arc<Plan>,
    /// Index of the meter's price in `plan.prices`.
    price_index: usize,
    meter: Arc<Meter>,
    period_index: u32,
    period: Period,
    /// The period's invoice (derived once per batch: deriving hashes).
    invoice_id: InvoiceId,
    dimensions: Option<BTreeMap<String, String>>,
    value: Option<UsageValue>,
}

impl Target {
    fn invoice_id(&self) -> InvoiceId {
        self.invoice_id.clone()
    }

    fn price(&self) -> &Price {
        &self.plan.prices[self.price_index]
    }
}

/// One meter's reading of an event.
#[derive(Clone)]
enum Reading {
    Billable(Box<Target>),
    Refused(crate::ids::MeterId, EventStatus),
}

/// An event ready to apply.
#[derive(Clone)]
struct Prepared {
    event: Arc<UsageEvent>,
    customer_id: Option<CustomerId>,
    readings: Vec<Reading>,
    /// The outcome when no meter reads it at all.
    unread: Option<EventStatus>,
}

/// Where a billable reading lands after looking at invoice states.
struct Landing {
    invoice_id: InvoiceId,
    line: Arc<InvoiceLine>,
    late: bool,
}

/// The matcher. One per warm Lambda instance; cheap to share.
pub struct Matcher {
    customers: Arc<dyn CustomerStore>,
    catalog: Arc<dyn CatalogStore>,
    contracts: Arc<dyn ContractStore>,
    usage: Arc<dyn UsageStore>,
    clock: Arc<dyn Clock>,
    cache: Cache,
}

impl Matcher {
    /// A matcher reading the catalog from `store` and writing usage through `usage` (usually
    /// the same adapter; tests wrap it to inject faults).
    pub fn new<S: Store>(store: Arc<S>, usage: Arc<dyn UsageStore>, clock: Arc<dyn Clock>) -> Self {
        Self {
            customers: store.clone(),
            catalog: store.clone(),
            contracts: store,
            usage,
            clock,
            cache: Cache::default(),
        }
    }

    /// Matches a batch of events. `Ok` means every event is recorded (now or before); `Err`
    /// means some may not be, and the whole batch must be retried (safe: nothing counts twice).
    pub async fn process(&self, events: Vec<UsageEvent>) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        let mut pending = self.prepare(events).await?;
        // Failed attempts in a row; dropping duplicates is progress and does not count.
        let mut failures = 0;
        while !pending.is_empty() {
            match self.apply(&mut pending, &mut report).await {
                Ok(()) => failures = 0,
                Err(e) if failures + 1 < concurrency::ATTEMPTS && e.is_transient() => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "usage commit failed; retrying");
                    tokio::time::sleep(concurrency::backoff(failures)).await;
                }
                Err(e) => {
                    return Err(Error::new(
                        e.kind,
                        e.code.clone(),
                        format!("{} events not committed: {}", pending.len(), e.message),
                    ));
                }
            }
        }
        Ok(report)
    }
}

/// The key that makes an event unique (see [`crate::idempotency::usage_event`]).
fn record_key(event: &UsageEvent, customer: Option<&CustomerId>) -> String {
    crate::idempotency::usage_event(&event.customer, customer, &event.idempotency_key)
}
