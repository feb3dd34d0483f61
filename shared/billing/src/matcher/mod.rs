//! The usage matcher: every event counted exactly once on the right invoice line, or recorded
//! with the reason it could not be billed.
//!
//! For each event: the meters listening to its name (filters applied, archived meters
//! skipped), the customer's contract covering its timestamp for that meter, the invoice of that
//! period, and the line of the meter's price (for dimensional prices, the line of the event's
//! combination, created on first use). A closed invoice sends the event to a "late usage" line
//! on the contract's next open invoice, labelled with the original service period.
//!
//! **Exactly once, without transactions.** Usage travels in messages, each with a nonce, in
//! lanes (the FIFO queue's message groups, see [`crate::usage::LANES`]); a lane's messages
//! arrive in order, and the next batch of a lane comes only once the previous one is done.
//! Per event, one write: its record, keyed by customer and idempotency key, put on condition
//! that it does not exist, naming the message's nonce. The first message to write a key owns
//! the event; a resend finds the record, names another nonce, and counts nothing; a
//! redelivery of the same message finds its own records and counts them. Per invoice and lane,
//! one write per batch: the lane's share of the invoice's usage ([`crate::lanes`]), which names
//! the last message it includes and is written on condition of the version read and of not
//! being sealed. A retry skips the messages a share already includes, so a matcher that dies
//! between writes leaves nothing counted twice and nothing lost. Distinct values of
//! `UNIQUE_COUNT` lines are claimed once per line, each in an item of its own, by the message
//! that first saw them. Closing an invoice seals its shares: usage reaching a sealed share goes
//! to the next open invoice instead, and its record is rewritten to say so.
//!
//! Rooms: [`cache`] keeps catalog reads warm; [`reading`] finds, per event and meter, the
//! line it bills; [`landing`] reads the invoices' status and sends usage of closed ones to the
//! late path; [`apply`] writes the records, claims values and writes the lanes' shares. Failed
//! attempts back off and retry with the platform's one policy ([`crate::concurrency`]).
//!
//! **Catalog cache.** Meters, contracts and customer look-ups are cached per warm Lambda for at
//! most [`CACHE_TTL`]; plans never change and stay cached. A negative answer (no meter, no
//! covering contract, unknown customer) is never trusted from the cache: it is re-read first,
//! so a meter or contract created a moment ago is never missed. Within the bound, an archived
//! meter may still count events, and a cancelled contract may still be taken as covering.

mod apply;
mod cache;
mod landing;
#[cfg(test)]
mod lane_tests;
mod notify;
mod reading;
mod tallying;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
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
use crate::ports::{CatalogStore, Clock, ContractStore, CustomerStore, UsageStore, WebhookStore};
use crate::usage::{EventStatus, Lane, MessageNonce, MeterMatch, UsageEvent};
use crate::use_cases::Store;

use cache::Cache;

/// How long a warm matcher trusts cached meters, contracts and customers.
pub const CACHE_TTL: Duration = Duration::from_secs(60);

/// One message of a lane, as delivered: its nonce and its events.
#[derive(Debug, Clone)]
pub struct LaneMessage {
    /// The message's identity (in its body).
    pub nonce: MessageNonce,
    /// Its lane.
    pub lane: Lane,
    /// Its events, in order.
    pub events: Vec<UsageEvent>,
}

impl LaneMessage {
    /// A message as the ingestion sends it: a fresh nonce, and the lane that comes with it.
    pub fn new(events: Vec<UsageEvent>) -> Self {
        let nonce = MessageNonce::generate();
        Self {
            lane: Lane::of(&nonce),
            nonce,
            events,
        }
    }
}

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Events recorded by this run.
    pub recorded: usize,
    /// Events skipped because another message recorded them first (resends).
    pub duplicates: usize,
    /// Events whose record this message had already written (a redelivery), counted now if
    /// their usage was not in yet.
    pub redelivered: usize,
    /// Recorded events by outcome.
    pub by_status: BTreeMap<&'static str, usize>,
    /// Record writes (one per new event).
    pub record_writes: usize,
    /// Lane share writes (one per invoice and lane touched).
    pub lane_writes: usize,
    /// Distinct value claims written (`UNIQUE_COUNT`).
    pub claim_writes: usize,
    /// Records rewritten because their invoice closed before their usage reached it.
    pub relabels: usize,
    /// Invoices marked In Progress on their first usage.
    pub status_writes: usize,
    /// Day tally writes (one per day of receipt and lane touched, see [`crate::tally`]).
    pub tally_writes: usize,
    /// Lane share and day tally writes refused because another writer moved the item (or the
    /// invoice sealed the share) since it was read.
    pub conflicts: usize,
    /// Passes repeated after a failure (a conflict, throttling, a lost answer).
    pub retries: usize,
}

impl BatchReport {
    fn add(&mut self, other: &BatchReport) {
        self.recorded += other.recorded;
        self.duplicates += other.duplicates;
        self.redelivered += other.redelivered;
        for (status, n) in &other.by_status {
            *self.by_status.entry(status).or_default() += n;
        }
        self.record_writes += other.record_writes;
        self.lane_writes += other.lane_writes;
        self.claim_writes += other.claim_writes;
        self.relabels += other.relabels;
        self.status_writes += other.status_writes;
        self.tally_writes += other.tally_writes;
        self.conflicts += other.conflicts;
        self.retries += other.retries;
    }

    /// Writes of every kind.
    pub fn writes(&self) -> usize {
        self.record_writes
            + self.lane_writes
            + self.claim_writes
            + self.relabels
            + self.status_writes
            + self.tally_writes
    }
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
    /// Which message of the lane's batch carried it (the first, when several did).
    message: usize,
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
    webhooks: Option<Arc<dyn WebhookStore>>,
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
            webhooks: None,
            clock,
            cache: Cache::default(),
        }
    }

    /// Writes the coalesced `invoice.updated` and `usage.unbillable` events of each batch.
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: Arc<dyn WebhookStore>) -> Self {
        self.webhooks = Some(webhooks);
        self
    }

    /// Matches a batch of messages, lane by lane in delivery order. `Ok` means every event
    /// is recorded and counted (now or before); `Err` means some lane's may not be, and its
    /// messages must be retried (safe: nothing counts twice).
    pub async fn process(&self, messages: Vec<LaneMessage>) -> Result<BatchReport> {
        let mut report = BatchReport::default();
        for (_, outcome) in self.process_lanes(messages).await {
            report.add(&outcome?);
        }
        Ok(report)
    }

    /// [`Self::process`], with each lane's outcome apart: a lane that failed is retried
    /// whole; the others are done.
    #[tracing::instrument(skip_all, fields(messages = messages.len()))]
    pub async fn process_lanes(
        &self,
        messages: Vec<LaneMessage>,
    ) -> Vec<(Lane, Result<BatchReport>)> {
        let mut lanes: Vec<(Lane, Vec<LaneMessage>)> = Vec::new();
        for message in messages {
            match lanes.iter_mut().find(|(lane, _)| *lane == message.lane) {
                Some((_, batch)) => batch.push(message),
                None => lanes.push((message.lane, vec![message])),
            }
        }
        let mut outcomes = Vec::with_capacity(lanes.len());
        for (lane, batch) in lanes {
            outcomes.push((lane, self.process_lane(lane, &batch).await));
        }
        outcomes
    }

    /// One lane's batch: prepared once, then applied until it sticks.
    #[tracing::instrument(skip_all, fields(lane = lane.number(), batch_size = tracing::field::Empty))]
    async fn process_lane(&self, lane: Lane, batch: &[LaneMessage]) -> Result<BatchReport> {
        let prepared = self.prepare(batch).await?;
        tracing::Span::current().record("batch_size", prepared.len());
        let mut report = BatchReport::default();
        let mut known = HashMap::new();
        let mut failures = 0;
        loop {
            let applied = match self
                .apply(lane, batch, &prepared, &mut report, &mut known)
                .await
            {
                Ok((found, notices)) => {
                    self.notify(notices, self.clock.now()).await.map(|()| found)
                }
                Err(e) => Err(e),
            };
            match applied {
                Ok(found) => {
                    report.recorded = found.recorded;
                    report.duplicates = found.duplicates;
                    report.redelivered = found.redelivered;
                    report.by_status = found.by_status;
                    return Ok(report);
                }
                Err(e) if failures + 1 < concurrency::ATTEMPTS && e.is_transient() => {
                    failures += 1;
                    report.retries += 1;
                    tracing::warn!(error = %e, failures, "usage not applied; retrying");
                    tokio::time::sleep(concurrency::backoff(failures)).await;
                }
                Err(e) => {
                    return Err(Error::new(
                        e.kind,
                        e.code.clone(),
                        format!(
                            "{} events of lane {} not applied: {}",
                            prepared.len(),
                            lane.number(),
                            e.message
                        ),
                    ));
                }
            }
        }
    }
}

/// The event's overall outcome: billed if any meter billed it, else the first reason.
fn overall(matches: &[MeterMatch], unread: Option<EventStatus>) -> EventStatus {
    if let Some(status) = unread {
        return status;
    }
    matches
        .iter()
        .find(|m| m.status == EventStatus::Matched)
        .or_else(|| matches.iter().find(|m| m.status == EventStatus::Late))
        .or_else(|| matches.first())
        .map(|m| m.status)
        .unwrap_or(EventStatus::Unmatched)
}

/// Counts a batch of versioned writes (lane shares, day tallies) into `written` and
/// `report.conflicts`; any write that did not stick fails the pass with `code`, to re-read.
fn settle(
    outcomes: &[crate::ports::LaneWrite],
    written: &mut usize,
    conflicts: &mut usize,
    code: &'static str,
    message: &'static str,
) -> Result<()> {
    let done = outcomes
        .iter()
        .filter(|o| **o == crate::ports::LaneWrite::Done)
        .count();
    *written += done;
    *conflicts += outcomes.len() - done;
    if done < outcomes.len() {
        return Err(Error::new(crate::error::ErrorKind::Conflict, code, message));
    }
    Ok(())
}

/// Whether an item naming `last` as the last message it includes (a lane share, a day tally)
/// already includes the batch's message at `message`: `last` is that message or a later one of
/// the batch (a lane's messages are applied in order). A `last` outside the batch is earlier.
fn includes(last: Option<&MessageNonce>, batch: &[LaneMessage], message: usize) -> bool {
    last.and_then(|last| batch.iter().position(|m| &m.nonce == last))
        .is_some_and(|p| message <= p)
}

/// The key that makes an event unique (see [`crate::idempotency::usage_event`]).
fn record_key(event: &UsageEvent, customer: Option<&CustomerId>) -> String {
    crate::idempotency::usage_event(&event.customer, customer, &event.idempotency_key)
}
