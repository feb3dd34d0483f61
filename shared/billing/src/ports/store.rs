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
use crate::invoice::{Invoice, InvoiceLine, InvoiceStatus};
use crate::meter::{Meter, MeterCode};
use crate::pagination::{Page, PageRequest};
use crate::plan::Plan;
use crate::totals::{Month, Totals};
use crate::usage::{CustomerRef, EventRecord, EventStatus};

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
#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// Inserts a new customer and claims its unique fields atomically. A unique value held by
    /// another customer fails with 409 (`Conflict`) naming the holder in `existing_id`.
    async fn insert(&self, customer: &Customer) -> Result<()>;

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
    async fn update(&self, previous: &Versioned<Customer>, next: &Customer) -> Result<Write>;

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
    ) -> Result<Write>;

    /// Writes a cancellation: the contract, the customer's index, and `void` invoices set to
    /// `VOID` (each only if still open), in one transaction. `Conflict` when the contract or
    /// index moved since read; 409 `invoice_not_open` when an invoice to void has closed.
    async fn cancel_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        index: &Versioned<Vec<ContractSummary>>,
        void: &[InvoiceId],
    ) -> Result<Write>;
}

/// Re-reads and re-applies `change` to a contract until the write sticks (another writer may
/// move its version in between); `change` returns `None` when there is nothing to do.
pub async fn update_contract_with(
    store: &dyn ContractStore,
    id: &ContractId,
    change: impl Fn(&Contract) -> Option<Contract> + Send + Sync,
) -> Result<()> {
    retry_on_conflict("this contract", || async {
        let Some(current) = store.get_contract(id).await? else {
            return Ok(Attempt::Done(()));
        };
        let Some(next) = change(&current.value) else {
            return Ok(Attempt::Done(()));
        };
        Ok(store
            .update_contract(&current, &next)
            .await?
            .into_attempt(()))
    })
    .await
}

/// Re-reads and re-applies `change` to an invoice until its transition sticks (another writer
/// may move its version in between); `change` returns the next invoice with its mail tasks, or
/// `None` when there is nothing to do. For changes that need no number and no other read.
pub async fn transition_invoice_with(
    ledger: &dyn LedgerStore,
    id: &InvoiceId,
    change: impl Fn(&Invoice) -> Option<(Invoice, Vec<MailTask>)> + Send + Sync,
) -> Result<()> {
    retry_on_conflict("this invoice", || async {
        let Some(state) = ledger.invoice_state(id).await? else {
            return Ok(Attempt::Done(()));
        };
        let Some((next, mail)) = change(&state.invoice) else {
            return Ok(Attempt::Done(()));
        };
        Ok(ledger
            .transition(&state, &next, None, &mail)
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

/// An invoice as the matcher sees it: lines with their running aggregates, and the version
/// its next write must find.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceState {
    /// The invoice (line quantities already reflect `aggregates`).
    pub invoice: Invoice,
    /// Per line, the aggregate so far (absent: no usage yet).
    pub aggregates: BTreeMap<LineId, Aggregate>,
    /// Increments on every usage write.
    pub version: u64,
}

/// What the matcher needs of an invoice, and no more: whether it is open, which lines it has,
/// their running aggregates and the version its next write must find. Not the whole invoice: a
/// batch reads one per invoice it touches, and copying or decoding whole invoices was most of the
/// matcher's CPU per event when events spread over many customers.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceUsage {
    /// Usage lands only while the invoice is open.
    pub status: InvoiceStatus,
    /// The lines it already has (a line seen for the first time is appended by the commit).
    pub line_ids: Vec<LineId>,
    /// Per line, the aggregate so far (absent: no usage yet).
    pub aggregates: BTreeMap<LineId, Aggregate>,
    /// Increments on every usage write.
    pub version: u64,
}

impl From<&InvoiceState> for InvoiceUsage {
    fn from(state: &InvoiceState) -> Self {
        Self {
            status: state.invoice.status,
            line_ids: state.invoice.lines.iter().map(|l| l.id.clone()).collect(),
            aggregates: state.aggregates.clone(),
            version: state.version,
        }
    }
}

/// One invoice's part of a usage commit.
#[derive(Debug, Clone, PartialEq)]
pub struct InvoiceWrite {
    /// Which invoice.
    pub invoice_id: InvoiceId,
    /// The version read; the write fails if the invoice moved on (or was closed) since.
    pub expected_version: u64,
    /// Lines to append (dimensional combinations and late usage seen for the first time).
    pub new_lines: Vec<InvoiceLine>,
    /// The new aggregate of every line this commit touches.
    pub aggregates: Vec<(LineId, Aggregate)>,
    /// When.
    pub updated_at: DateTime<Utc>,
}

/// One atomic step of matching: event records and the invoice changes they cause, together.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageCommit {
    /// Invoice updates.
    pub invoices: Vec<InvoiceWrite>,
    /// One record per event; each must not exist yet (that is the exactly-once guard).
    pub records: Vec<EventRecord>,
}

/// How a usage commit ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Everything was written.
    Committed,
    /// Nothing was written: these records (indexes into `records`) already exist, so their
    /// events were counted before.
    Duplicates(Vec<usize>),
    /// Nothing was written: an invoice changed or closed since it was read.
    InvoiceMoved,
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
    /// numbers are given out only with a close, so they have no gaps and no duplicates. The
    /// customer's and the month's totals move by [`crate::totals::change`] in the same
    /// transaction too.
    /// `Conflict` when the invoice moved or another close took the number first.
    async fn transition(
        &self,
        previous: &InvoiceState,
        next: &Invoice,
        number: Option<u64>,
        mail: &[MailTask],
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

/// The matcher's writes and the event records' reads.
#[async_trait]
pub trait UsageStore: Send + Sync {
    /// Reads invoices' usage state, strongly consistent; missing ones are absent.
    async fn invoice_states(&self, ids: &[InvoiceId]) -> Result<HashMap<InvoiceId, InvoiceUsage>>;

    /// Writes an invoice unless it exists (a period the contract had not pre-generated yet).
    async fn ensure_invoice(&self, invoice: &Invoice) -> Result<()>;

    /// Writes a commit in one transaction, or nothing.
    async fn commit(&self, commit: &UsageCommit) -> Result<CommitOutcome>;

    /// Lists event records, newest first within the chosen partition.
    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>>;
}

/// Sends packed usage events to the matcher's queue.
#[async_trait]
pub trait EventQueue: Send + Sync {
    /// Sends message bodies; returns, per body, whether it is durably enqueued. Implementations
    /// retry transient failures themselves.
    async fn send(&self, bodies: &[String]) -> Vec<bool>;
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
