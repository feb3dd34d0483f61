//! The storage ports: what the domain needs from a database, in domain terms only. The DynamoDB
//! adapter (crate `billing-aws`) and the in-memory store ([`crate::testing`]) implement them;
//! tests may wrap them to inject faults. A write based on a read answers [`Write`]: `Conflict`
//! when the stored value moved on, so the use case re-reads ([`crate::concurrency`]).

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::aggregation::Aggregate;
use crate::api_key::{ApiKey, Scopes, SecretDigest};
use crate::concurrency::{Attempt, Write, retry_on_conflict};
use crate::contract::{Contract, ContractSummary, NewContract};
use crate::customer::{Customer, ExternalCustomerId, ProviderCustomerId};
use crate::error::Result;
use crate::ids::{ApiKeyId, ContractId, CustomerId, InvoiceId, LineId, MeterId, PlanId};
use crate::invoice::{Invoice, InvoiceStatus};
use crate::lanes::{LaneKey, UsageLane};
use crate::meter::{Meter, MeterCode};
use crate::pagination::{Page, PageRequest};
use crate::plan::Plan;
use crate::tally::{DayCount, DayTally, TallyKey};
use crate::totals::{Month, Totals};
use crate::usage::{CustomerRef, EventRecord, EventStatus, MessageNonce};
use crate::webhooks::OutgoingEvent;
use crate::webhooks::events::{contract_changed, invoice_changed};

/// A stored value with the version it was read at, for optimistic concurrency: a write based on
/// a stale read is refused instead of silently overwriting someone else's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value as read.
    pub value: T,
    /// Increments on every write.
    pub version: u64,
}

/// Customers and their unique fields (`externalCustomerId`, provider customer id).
///
/// Every write that changes a resource takes the webhook events it causes (`events`, decided by
/// [`crate::webhooks::events`]) and writes them as one outbox entry in the same transaction
/// ([`crate::webhooks::OutboxEntry::for_events`]; nothing when there are none), so an event is
/// never lost and never sent for a change that did not happen.
#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// Inserts a new customer and claims its unique fields atomically. A unique value held by
    /// another customer fails with 409 (`Conflict`) naming the holder in `existing_id`.
    async fn insert(&self, customer: &Customer, events: &[OutgoingEvent]) -> Result<()>;

    /// Reads one customer, strongly consistent.
    async fn get(&self, id: &CustomerId) -> Result<Option<Versioned<Customer>>>;

    /// Finds the customer holding an external id.
    async fn get_by_external_id(
        &self,
        external_id: &ExternalCustomerId,
    ) -> Result<Option<Customer>>;

    /// Lists customers in creation order.
    async fn list(&self, page: &PageRequest) -> Result<Page<Customer>>;

    /// Replaces `previous` with `next`, moving unique claims that changed, atomically.
    /// `Conflict` when the stored version is no longer `previous.version`; a unique value held
    /// by another customer is a 409 error naming the holder.
    async fn update(
        &self,
        previous: &Versioned<Customer>,
        next: &Customer,
        events: &[OutgoingEvent],
    ) -> Result<Write>;

    /// Finds the customer linked to a payment provider customer (the webhook's way in).
    async fn get_by_provider_id(
        &self,
        id: &ProviderCustomerId,
    ) -> Result<Option<Versioned<Customer>>>;
}

/// What authentication needs to know about a key found by its digest's lookup handle.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    /// The key this secret belongs to.
    pub key_id: ApiKeyId,
    /// The full digest, to compare in constant time.
    pub digest: SecretDigest,
    /// The key's scopes, copied here so authentication costs one read.
    pub scopes: Scopes,
}

/// API keys and their secret digests.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key and its digest atomically. Fails with code `digest_exists` if a secret with
    /// the same lookup handle is already stored (the caller decides whether that is fine).
    async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()>;

    /// Finds an active secret by its lookup handle.
    async fn find_secret(&self, lookup: &str) -> Result<Option<StoredSecret>>;

    /// Reads a key's record.
    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>>;

    /// Marks a key revoked and deletes its secret, so it authenticates nothing from now on.
    /// Returns the updated record, or `None` when no such key exists.
    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>>;

    /// Lists key records (never secrets) in creation order, revoked ones included, so people
    /// can see which keys exist and revoke the ones they no longer use.
    async fn list(&self, page: &PageRequest) -> Result<Page<ApiKey>>;
}

/// Meters and plans: the catalog. Written rarely, read by every contract and usage batch.
#[async_trait]
pub trait CatalogStore: Send + Sync {
    /// Inserts a meter and claims its code; a taken code is 409 `meter_code_taken` naming the
    /// holder.
    async fn insert_meter(&self, meter: &Meter) -> Result<()>;

    /// Reads a meter by id.
    async fn get_meter(&self, id: &MeterId) -> Result<Option<Meter>>;

    /// Reads a meter by its unique code.
    async fn get_meter_by_code(&self, code: &MeterCode) -> Result<Option<Meter>>;

    /// Lists meters in creation order.
    async fn list_meters(&self, page: &PageRequest) -> Result<Page<Meter>>;

    /// Stores a meter's new state (archiving), unconditionally: the only change a meter sees.
    async fn put_meter(&self, meter: &Meter) -> Result<()>;

    /// Inserts a plan (plans never change afterwards).
    async fn insert_plan(&self, plan: &Plan) -> Result<()>;

    /// Reads a plan.
    async fn get_plan(&self, id: &PlanId) -> Result<Option<Plan>>;

    /// Lists plans in creation order.
    async fn list_plans(&self, page: &PageRequest) -> Result<Page<Plan>>;
}

/// Contracts, with each customer's contract index (for the overlap rule).
#[async_trait]
pub trait ContractStore: Send + Sync {
    /// The customer's contracts as a versioned index (version 0 and empty when none).
    async fn customer_contracts(
        &self,
        customer: &CustomerId,
    ) -> Result<Versioned<Vec<ContractSummary>>>;

    /// Writes the contract, its invoices and the customer's index (now including it) in one
    /// transaction. `Conflict` when the index moved since `index` was read.
    async fn insert_contract(
        &self,
        new: &NewContract,
        index: &Versioned<Vec<ContractSummary>>,
        events: &[OutgoingEvent],
    ) -> Result<Write>;

    /// Reads a contract.
    async fn get_contract(&self, id: &ContractId) -> Result<Option<Versioned<Contract>>>;

    /// Lists contracts (of one customer, or all) in creation order.
    async fn list_contracts(
        &self,
        customer: Option<&CustomerId>,
        page: &PageRequest,
    ) -> Result<Page<Contract>>;

    /// Replaces a contract's payment settings (auto-pay, saved method). `Conflict` when the
    /// contract moved since `previous` was read.
    async fn update_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        events: &[OutgoingEvent],
    ) -> Result<Write>;

    /// Writes a cancellation: the contract, the customer's index, and `void` invoices set to
    /// `VOID` (each only if still open), in one transaction; the usage lanes of the `seal`
    /// invoices (those usage could still reach) are sealed with them. `Conflict` when the
    /// contract or index moved since read; 409 `invoice_not_open` when an invoice to void has
    /// closed.
    async fn cancel_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        index: &Versioned<Vec<ContractSummary>>,
        void: &[InvoiceId],
        seal: &[InvoiceId],
        events: &[OutgoingEvent],
    ) -> Result<Write>;
}

/// Re-reads and re-applies `change` to a contract until the write sticks (another writer may
/// move its version in between), with the webhook events the change causes; `change` returns
/// `None` when there is nothing to do.
pub async fn update_contract_with(
    store: &dyn ContractStore,
    id: &ContractId,
    now: DateTime<Utc>,
    change: impl Fn(&Contract) -> Option<Contract> + Send + Sync,
) -> Result<()> {
    retry_on_conflict("this contract", || async {
        let Some(current) = store.get_contract(id).await? else {
            return Ok(Attempt::Done(()));
        };
        let Some(next) = change(&current.value) else {
            return Ok(Attempt::Done(()));
        };
        let events = contract_changed(&current.value, &next, now);
        Ok(store
            .update_contract(&current, &next, &events)
            .await?
            .into_attempt(()))
    })
    .await
}

/// Re-reads and re-applies `change` to an invoice until its transition sticks (another writer
/// may move its version in between), with the webhook events it causes; `change` returns the
/// next invoice with its mail tasks, or `None` when there is nothing to do. For changes that
/// need no number and no other read.
pub async fn transition_invoice_with(
    ledger: &dyn LedgerStore,
    id: &InvoiceId,
    now: DateTime<Utc>,
    change: impl Fn(&Invoice) -> Option<(Invoice, Vec<MailTask>)> + Send + Sync,
) -> Result<()> {
    retry_on_conflict("this invoice", || async {
        let Some(state) = ledger.invoice_state(id).await? else {
            return Ok(Attempt::Done(()));
        };
        let Some((next, mail)) = change(&state.invoice) else {
            return Ok(Attempt::Done(()));
        };
        let events = invoice_changed(&state.invoice, &next, now);
        Ok(ledger
            .transition(&state, &next, None, &mail, &events)
            .await?
            .into_attempt(()))
    })
    .await
}

/// Which invoices a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFilter {
    /// Only this customer's.
    pub customer: Option<CustomerId>,
    /// Only this contract's.
    pub contract: Option<ContractId>,
    /// Only in this status.
    pub status: Option<InvoiceStatus>,
}

/// Invoices.
#[async_trait]
pub trait InvoiceStore: Send + Sync {
    /// Reads an invoice.
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>>;

    /// Lists invoices in period order (then id).
    async fn list_invoices(
        &self,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>>;
}

/// An invoice as the billing run and the webhooks see it: with its usage merged in
/// ([`crate::lanes::merge`]), the version its next transition must find, and its lanes as read
/// (a close seals them, on condition that none moved since).
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceState {
    /// The invoice (line quantities reflect `aggregates` while it is open).
    pub invoice: Invoice,
    /// Per line, the usage so far (absent: no usage yet).
    pub aggregates: BTreeMap<LineId, Aggregate>,
    /// Increments on every transition.
    pub version: u64,
    /// The invoice's usage lanes as read (only those ever written).
    pub lanes: Vec<UsageLane>,
}

/// How writing a record went.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordPut {
    /// Written now.
    Written,
    /// A record with this key already exists: this one, as stored.
    Exists(Box<EventRecord>),
}

/// A claim on one distinct value of a `UNIQUE_COUNT` line: the first message to claim a value
/// counts it, every other finds it taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueClaim {
    /// The invoice of the line.
    pub invoice: InvoiceId,
    /// The line.
    pub line: LineId,
    /// The value, typed (see [`crate::aggregation::Aggregate::distinct_values`]).
    pub value: String,
    /// The message claiming it.
    pub nonce: MessageNonce,
}

/// How a lane write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaneWrite {
    /// Written.
    Done,
    /// Nothing written: the lane moved since it was read.
    Conflict,
    /// Nothing written: the invoice closed and sealed the lane.
    Sealed,
}

/// The billing run's to-do lists, kept as sparse keys on the invoices themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgendaKind {
    /// Open invoices, by the date they close ([`Invoice::closes_on`]).
    Close,
    /// Sent invoices to charge automatically, by the date of their next attempt.
    Collect,
    /// Every other sent invoice (waiting for a payment through its link), by due date: what
    /// the dashboard counts as overdue once that date has passed. The run never reads it.
    Due,
}

/// A mail to send about an invoice, written in the same transaction as the change it reports
/// so a run that dies in between still sends it (at least once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTask {
    /// The invoice it is about.
    pub invoice_id: InvoiceId,
    /// What it says.
    pub kind: MailKind,
}

/// The mails the platform sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    /// The invoice, with its payment link.
    InvoiceSent,
    /// Payment confirmation.
    PaymentReceived,
    /// An auto-pay attempt failed; another follows on a later day.
    PaymentFailed,
    /// Auto-pay failed for the last time and is now off.
    AutoPayDisabled,
    /// The invoice was paid twice; the payment it did not need was refunded.
    DuplicateRefunded,
}

impl MailKind {
    /// Every kind; the test below fails when one is missing.
    pub const ALL: [MailKind; 5] = [
        Self::InvoiceSent,
        Self::PaymentReceived,
        Self::PaymentFailed,
        Self::AutoPayDisabled,
        Self::DuplicateRefunded,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvoiceSent => "invoice_sent",
            Self::PaymentReceived => "payment_received",
            Self::PaymentFailed => "payment_failed",
            Self::AutoPayDisabled => "auto_pay_disabled",
            Self::DuplicateRefunded => "duplicate_refunded",
        }
    }

    /// Reads a stored name.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

/// What the billing run and the webhook receiver do to invoices after usage.
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// An invoice with its usage merged in, and the version a transition must find.
    async fn invoice_state(&self, id: &InvoiceId) -> Result<Option<InvoiceState>>;

    /// Invoices on an agenda up to `up_to` (inclusive), earliest first.
    async fn agenda(
        &self,
        kind: AgendaKind,
        up_to: NaiveDate,
        page: &PageRequest,
    ) -> Result<Page<InvoiceId>>;

    /// The last invoice number given out (0 before the first).
    async fn last_invoice_number(&self) -> Result<u64>;

    /// Replaces `previous` by `next` if it has not moved, with its mail tasks. With `number`,
    /// the invoice number counter moves from `number - 1` to `number` in the same transaction:
    /// numbers are given out only with a close, so they have no gaps and no duplicates. When
    /// `next` is no longer open (a close, a void), every usage lane of the invoice is sealed in
    /// the same transaction, on condition that none moved since `previous` was read, so the
    /// quantities frozen are exactly the usage counted. `Conflict` when the invoice or a lane
    /// moved, or another close took the number first. The customer's and the month's totals
    /// move by [`crate::totals::change`] in the same transaction too.
    async fn transition(
        &self,
        previous: &InvoiceState,
        next: &Invoice,
        number: Option<u64>,
        mail: &[MailTask],
        events: &[OutgoingEvent],
    ) -> Result<Write>;

    /// Mail not sent yet, oldest first.
    async fn pending_mail(&self, limit: usize) -> Result<Vec<MailTask>>;

    /// Forgets a mail task once sent.
    async fn mail_sent(&self, task: &MailTask) -> Result<()>;

    /// Records a provider event id as being handled; `false` when it already was.
    async fn claim_provider_event(&self, id: &str, at: DateTime<Utc>) -> Result<bool>;

    /// Forgets a claim whose handling failed, so the provider's redelivery is handled.
    async fn release_provider_event(&self, id: &str) -> Result<()>;

    /// The running totals of these customers, kept by [`Self::transition`] (a customer with
    /// nothing sent yet is absent). One batched read, however many invoices they have.
    async fn customer_totals(
        &self,
        customers: &[CustomerId],
    ) -> Result<HashMap<CustomerId, Totals>>;

    /// The running totals of these months (by invoice date); months with nothing sent are
    /// absent.
    async fn month_totals(&self, months: &[Month]) -> Result<HashMap<Month, Totals>>;
}

/// Whose events a list shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOwner {
    /// A customer we know.
    Customer(CustomerId),
    /// A reference no customer held when its events were recorded (`unknown_customer`).
    Unknown(CustomerRef),
}

/// Which events a list shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// One customer's (by our id, or by the reference sent when the customer is unknown).
    pub customer: Option<EventOwner>,
    /// Only with this outcome.
    pub status: Option<EventStatus>,
}

/// The matcher's writes (event records, value claims, lane shares) and the event records'
/// reads.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// The status of invoices, strongly consistent; missing ones are absent.
    async fn invoice_statuses(
        &self,
        ids: &[InvoiceId],
    ) -> Result<HashMap<InvoiceId, InvoiceStatus>>;

    /// Writes an invoice unless it exists (a period the contract had not pre-generated yet),
    /// with its `invoice.created` event.
    async fn ensure_invoice(&self, invoice: &Invoice, events: &[OutgoingEvent]) -> Result<()>;

    /// Marks invoices that are still `DRAFTED` as `IN_PROGRESS` (their first usage arrived);
    /// any other status is left as it is.
    async fn mark_in_progress(&self, ids: &[InvoiceId]) -> Result<()>;

    /// Writes each record unless one with its key exists (the exactly-once guard); per record,
    /// whether it was written or the one that exists, or why that record's write failed (the
    /// others still count: a caller retries only the failed ones).
    async fn put_records(&self, records: &[EventRecord]) -> Vec<Result<RecordPut>>;

    /// Rewrites where a record's usage landed, when the invoice it was matched to closed before
    /// the usage reached it (it then went to the next open invoice).
    async fn relabel_record(&self, record: &EventRecord) -> Result<()>;

    /// Claims distinct values; per claim, the message that holds it (this one, or an earlier).
    async fn claim_values(&self, claims: &[ValueClaim]) -> Result<Vec<MessageNonce>>;

    /// Reads lane shares, strongly consistent; shares never written are absent.
    async fn lanes(&self, keys: &[LaneKey]) -> Result<HashMap<LaneKey, UsageLane>>;

    /// Writes each lane share as `next` if it is still at `previous.version` and not sealed;
    /// per write, how it went. Writes are independent: some may stick while others do not.
    async fn write_lanes(&self, writes: &[(UsageLane, UsageLane)]) -> Result<Vec<LaneWrite>>;

    /// Reads day tallies, strongly consistent; tallies never written are absent.
    async fn tallies(&self, keys: &[TallyKey]) -> Result<HashMap<TallyKey, DayTally>>;

    /// Writes each day tally as `next` if it is still at `previous.version`; per write, `Done`
    /// or `Conflict`. Writes are independent, as the lanes' are.
    async fn write_tallies(&self, writes: &[(DayTally, DayTally)]) -> Result<Vec<LaneWrite>>;

    /// The events received on `day` (UTC), every lane's tally added up.
    async fn day_count(&self, day: NaiveDate) -> Result<DayCount>;

    /// Lists event records: of a customer in idempotency key order, of an outcome in no
    /// promised order.
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>>;
}

/// Sends packed usage events to the matcher's queue.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Sends messages, each in its lane (the FIFO message group) and deduplicated by its
    /// nonce; returns, per message, whether it is durably enqueued. Implementations retry
    /// transient failures themselves.
    async fn send(&self, messages: &[crate::usage::OutgoingMessage]) -> Vec<bool>;
}

#[cfg(test)]
mod tests {
    use super::MailKind;

    #[test]
    fn every_mail_kind_reads_back_from_its_stored_name() {
        // A match with no wildcard: adding a kind fails to compile here until it is listed.
        let listed = |k: MailKind| match k {
            MailKind::InvoiceSent
            | MailKind::PaymentReceived
            | MailKind::PaymentFailed
            | MailKind::AutoPayDisabled
            | MailKind::DuplicateRefunded => MailKind::ALL.contains(&k),
        };
        for kind in MailKind::ALL {
            assert!(listed(kind));
            assert_eq!(MailKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(MailKind::ALL.len(), 5);
        assert_eq!(MailKind::parse("nope"), None);
    }
}
