//! The DynamoDB adapter: one table, items grouped by `pk`, listed through the GSIs. Each port
//! has its own file; this one holds what they share (transactions, claims, paged queries,
//! encoding). Every key is spelled in [`keys`], and the layout is drawn in
//! docs/ARCHITECTURE.md.
//!
//! Uniqueness is never read-then-write: a claim item is put with `attribute_not_exists(pk)` in
//! the same transaction as the entity, so concurrent creators cannot both win.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use billing::concurrency;
use billing::error::{Error, Result};
use billing::pagination::{Cursor, Page, PageRequest};
use billing::ports::Versioned;

use keys::Key;

mod api_keys;
mod catalog;
mod contracts;
mod customers;
mod invoices;
mod keys;
mod ledger;
mod tallies;
mod usage;
mod webhooks;

/// How much a filtered listing reads for one page before it answers with what it found and a
/// cursor. A filter is applied after DynamoDB reads (and bills) the items, so without a bound
/// a rare match in a large partition would be searched to the partition's end in one request.
#[derive(Clone, Copy, Debug)]
pub struct ReadBudget {
    /// The most items one call evaluates (the first reads `limit + 1`, each next four times
    /// more). Steps of `limit + 1` would walk a partition of rare matches eleven items at a
    /// time; a record is about 300 bytes, so 256 read about 75 KB.
    pub step: usize,
    /// Calls per record bucket when a customer's events are filtered by outcome: 32 buckets of
    /// 3 calls (11, 44 and 176 items for a page of 10) look at about 7,400 records at most.
    pub bucket_calls: usize,
    /// Calls of the matched-records scan (the one outcome no index keeps).
    pub scan_calls: usize,
}

impl ReadBudget {
    /// The first call reads a page's worth: where most items match (the usual case), one call
    /// answers and nothing more is billed.
    pub(super) fn first_step(&self, limit: usize, filtered: bool) -> usize {
        if filtered {
            (limit + 1).min(self.step).max(1)
        } else {
            limit + 1
        }
    }

    /// Each further call of a filtered read reads four times more, up to `step`: matches are
    /// sparse here, and small steps would take many round trips to cover the budget.
    pub(super) fn next_step(&self, step: usize, filtered: bool) -> usize {
        if filtered {
            step.saturating_mul(4).min(self.step).max(1)
        } else {
            step
        }
    }
}

impl Default for ReadBudget {
    fn default() -> Self {
        Self {
            step: 256,
            bucket_calls: 3,
            scan_calls: 8,
        }
    }
}

/// One partition read, as [`DynamoStore::query_in`] takes it: the table (or an index of it),
/// the partition, an optional sort-key prefix and cursor, the page size and equality filters.
#[derive(Clone, Copy)]
pub(super) struct PartitionQuery<'a> {
    pub(super) table: &'a str,
    pub(super) index: Option<&'a str>,
    pub(super) partition: &'a str,
    pub(super) prefix: Option<&'a str>,
    pub(super) after: Option<&'a str>,
    pub(super) limit: usize,
    pub(super) filters: &'a [(&'a str, AttributeValue)],
}

/// What a read with a budget of calls found, and the sort key it stopped at when the budget
/// ran out before a full page: every item up to that key has been looked at.
pub(super) struct BoundedRead {
    pub(super) items: Vec<Item>,
    pub(super) stopped_at: Option<String>,
}

/// Item keys as stored, `(pk, sk)`, for tools that read items raw (the usage benchmark reads
/// them back to size them): the adapter's own key functions, so no tool keeps a copy of a key
/// format that can go stale.
pub mod raw_keys {
    use billing::ids::{CustomerId, InvoiceId};
    use billing::usage::{CustomerRef, Lane};
    use chrono::NaiveDate;

    use super::keys;

    fn pair(key: keys::Key) -> (String, String) {
        (key.pk, key.sk)
    }

    /// The record of `customer`'s event with `idempotency_key`, sent naming the customer by id.
    pub fn event_record(customer: &CustomerId, idempotency_key: &str) -> (String, String) {
        let owner = keys::record_owner(Some(customer), &CustomerRef::Id(customer.clone()));
        pair(keys::event_record(&owner, idempotency_key))
    }

    /// An invoice item.
    pub fn invoice(id: &InvoiceId) -> (String, String) {
        pair(keys::invoice(id))
    }

    /// An invoice's usage share in `lane`.
    pub fn lane(invoice: &InvoiceId, lane: Lane) -> (String, String) {
        pair(keys::lane(invoice, lane))
    }

    /// A lane's tally of the events received on `day`.
    pub fn day_tally(day: NaiveDate, lane: Lane) -> (String, String) {
        pair(keys::day_tally(day, lane))
    }
}

pub(super) type Item = HashMap<String, AttributeValue>;

/// The table adapter. Cheap to clone; one per Lambda instance.
#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// The usage table: event records only.
    usage_table: String,
    /// Write actions sent in usage commits, for the cost benchmark.
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Wakes the webhook dispatcher after an outbox entry commits.
    webhook_queue: Option<std::sync::Arc<dyn billing::ports::WebhookQueue>>,
    /// How far a filtered listing reads per page.
    reads: ReadBudget,
}

impl std::fmt::Debug for DynamoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoStore")
            .field("table", &self.table)
            .field("usage_table", &self.usage_table)
            .finish_non_exhaustive()
    }
}

impl DynamoStore {
    /// Uses an existing client and the billing and usage tables' names.
    pub fn new(client: Client, table: impl Into<String>, usage_table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            usage_table: usage_table.into(),
            writes: Default::default(),
            webhook_queue: None,
            reads: ReadBudget::default(),
        }
    }

    /// The same store with another read budget: tests shrink it to see short pages with a
    /// few hundred records instead of tens of thousands.
    pub fn with_read_budget(mut self, reads: ReadBudget) -> Self {
        self.reads = reads;
        self
    }

    /// The tables through a client built from `config`.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        table: impl Into<String>,
        usage_table: impl Into<String>,
    ) -> Self {
        Self::new(Client::new(config), table, usage_table)
    }

    /// Single-item writes the matcher made so far (records, value claims, lane shares, retries
    /// included): what DynamoDB bills for usage, for the cost benchmark.
    pub fn usage_write_actions(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_writes(&self, actions: usize) {
        self.writes
            .fetch_add(actions as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) async fn get_item(&self, key: &Key) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// Runs a transaction. `Ok(Err(reasons))` when a condition failed (the caller maps the
    /// reasons, index by index, to domain errors); a cancellation only by `TransactionConflict`
    /// (another transaction on the same item at the same moment) is retried here, with the
    /// platform's attempt policy and backoff, before it becomes a 503.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<CancellationReason>>> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let reasons = match &err {
                SdkError::ServiceError(ctx) => match ctx.err() {
                    TransactWriteItemsError::TransactionCanceledException(e) => {
                        Some(e.cancellation_reasons().to_vec())
                    }
                    _ => None,
                },
                _ => None,
            };
            let retryable = match &reasons {
                Some(r) => {
                    !r.iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
                        && r.iter().any(|r| r.code() == Some("TransactionConflict"))
                }
                None => err.code() == Some("TransactionConflictException"),
            };
            if retryable && attempt + 1 < concurrency::ATTEMPTS {
                attempt += 1;
                tokio::time::sleep(concurrency::backoff(attempt)).await;
                continue;
            }
            return match reasons {
                Some(r) if r.iter().any(|r| r.code() == Some("ConditionalCheckFailed")) => {
                    Ok(Err(r))
                }
                _ => Err(sdk_error(err)),
            };
        }
    }

    /// Deletes one item outside a transaction (deleting a missing item is fine).
    pub(super) async fn delete_item(&self, key: &Key) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Puts one item outside a transaction, optionally on a condition (`ConditionalCheckFailed`
    /// is returned as `Ok(false)`).
    pub(super) async fn put_item(&self, item: Item, condition: Option<&str>) -> Result<bool> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
            Err(e) => Err(sdk_error(e)),
        }
    }

    pub(super) fn put(&self, item: Item, condition: Option<(&str, Item)>) -> TransactWriteItem {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some((expr, values)) = condition {
            put = put.condition_expression(expr);
            if !values.is_empty() {
                put = put.set_expression_attribute_values(Some(values));
            }
        }
        TransactWriteItem::builder()
            .put(put.build().expect("table, item are set"))
            .build()
    }

    pub(super) fn delete(&self, key: &Key, condition: Option<(&str, Item)>) -> TransactWriteItem {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk));
        if let Some((expr, values)) = condition {
            delete = delete
                .condition_expression(expr)
                .set_expression_attribute_values(Some(values));
        }
        TransactWriteItem::builder()
            .delete(delete.build().expect("table, key are set"))
            .build()
    }

    pub(super) async fn claim_owner(&self, claim: &Claim) -> Result<Option<String>> {
        Ok(self
            .get_item(&claim.key)
            .await?
            .and_then(|item| string_attr(&item, "holder")))
    }

    /// One page of the items of one kind listed in `gsi1` (customers, meters, plans,
    /// contracts), in id order: the cursor is the last id, checked with `parse_id` so a forged
    /// cursor is a 400, not a query.
    pub(super) async fn list_kind<T: DeserializeOwned, Id>(
        &self,
        kind: &str,
        page: &PageRequest,
        parse_id: impl Fn(&str) -> Result<Id>,
        id_of: impl Fn(&T) -> String,
    ) -> Result<Page<T>> {
        let after = page
            .after
            .as_ref()
            .map(|c| {
                parse_id(c.sort_key())
                    .map(|_| c.sort_key().to_owned())
                    .map_err(|_| Cursor::invalid())
            })
            .transpose()?;
        let items: Vec<T> = self
            .query_index(keys::GSI1, kind, None, after.as_deref(), page.limit, &[])
            .await?;
        Ok(Page::from_overfetch(items, page.limit, id_of))
    }
}

/// Reads a versioned entity: the value, and the `version` its next write must find.
pub(super) fn versioned<T: DeserializeOwned>(item: Item) -> Result<Versioned<T>> {
    let version = version_of(&item);
    Ok(Versioned {
        value: from_item(item)?,
        version,
    })
}

/// The `version` attribute (0 when absent: never written with one).
pub(super) fn version_of(item: &Item) -> u64 {
    number_attr(item, "version").unwrap_or(0)
}

/// A numeric attribute.
pub(super) fn number_attr(item: &Item, name: &str) -> Option<u64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// An entity encoded as an item under `key`, listed in `gsi1` under `kind` by `sort` when
/// given.
pub(super) fn entity_item<T: Serialize>(
    value: &T,
    key: &Key,
    listed: Option<(&str, &str)>,
) -> Result<Item> {
    let mut item = to_item(value)?;
    item.insert("pk".into(), s(&key.pk));
    item.insert("sk".into(), s(&key.sk));
    if let Some((kind, sort)) = listed {
        item.insert("gsi1pk".into(), s(kind));
        item.insert("gsi1sk".into(), s(sort));
    }
    Ok(item)
}

/// An item holding only its key and `attributes`.
pub(super) fn key_item<const N: usize>(key: &Key, attributes: [(&str, AttributeValue); N]) -> Item {
    let mut item: Item = attributes
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
    item.insert("pk".into(), s(&key.pk));
    item.insert("sk".into(), s(&key.sk));
    item
}

pub(super) fn s(v: impl AsRef<str>) -> AttributeValue {
    AttributeValue::S(v.as_ref().to_owned())
}

pub(super) fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(super) fn string_attr(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn to_item<T: Serialize>(value: &T) -> Result<Item> {
    serde_dynamo::to_item(value).map_err(|e| Error::internal(format!("cannot encode item: {e}")))
}

pub(super) fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item)
        .map_err(|e| Error::internal(format!("cannot decode stored item: {e}")))
}

/// Maps SDK failures: throttling and transport trouble are transient (503, safe to retry);
/// anything else is our bug or misconfiguration (500).
pub(super) fn sdk_error<E, R>(err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let transient = matches!(
        err.code(),
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
                | "TransactionConflictException"
        )
    ) || matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    );
    let detail = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err));
    if transient {
        tracing::warn!(error = %detail, "DynamoDB is unavailable");
        Error::unavailable("the database is busy or unreachable; retry shortly")
    } else {
        tracing::error!(error = %detail, "DynamoDB request failed");
        Error::internal(detail)
    }
}

/// A unique value (a customer's external id, a meter's code, …) held by one entity. Put with
/// `attribute_not_exists(pk)` in the same transaction as the entity, so two writers can never
/// both hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Claim {
    /// The claim item's key ([`keys::unique`]).
    pub key: Key,
    /// The 409 code when the value is taken.
    pub conflict_code: &'static str,
    /// The request field holding the value.
    pub param: &'static str,
    /// How the message names the value.
    pub what: &'static str,
}

impl Claim {
    pub(super) fn new(
        key: Key,
        conflict_code: &'static str,
        param: &'static str,
        what: &'static str,
    ) -> Self {
        Self {
            key,
            conflict_code,
            param,
            what,
        }
    }

    pub(super) fn item(&self, holder: &str) -> Item {
        key_item(&self.key, [("holder", s(holder))])
    }

    /// The 409 a client gets when this value is held by `holder`.
    pub(super) fn taken(&self, holder: Option<String>) -> Error {
        let mut e = Error::conflict(
            self.conflict_code,
            format!(
                "{} already has this {}",
                holder.as_deref().unwrap_or("another record"),
                self.what
            ),
        )
        .at(self.param);
        if let Some(holder) = holder {
            e = e.with_existing_id(holder);
        }
        e
    }
}

impl DynamoStore {
    /// Maps the cancellation reasons of a write to the first failed claim's 409.
    pub(super) async fn claim_conflict(
        &self,
        claims: &[(usize, Claim)],
        reasons: &[CancellationReason],
    ) -> Result<Error> {
        for (index, claim) in claims {
            let Some(reason) = reasons.get(*index) else {
                continue;
            };
            if reason.code() == Some("ConditionalCheckFailed") {
                let holder = match reason.item().and_then(|i| string_attr(i, "holder")) {
                    Some(holder) => Some(holder),
                    None => self.claim_owner(claim).await?,
                };
                return Ok(claim.taken(holder));
            }
        }
        Ok(Error::internal(format!("write cancelled: {reasons:?}")))
    }

    /// One page of a GSI partition in sort-key order, after `after` (exclusive), optionally
    /// restricted to sort keys starting with `prefix` and to items passing `filter`. Fetches
    /// `limit + 1` matching items (looping when a filter drops some) so `hasMore` is exact.
    pub(super) async fn query_index<T: DeserializeOwned>(
        &self,
        index: &str,
        partition: &str,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
        filters: &[(&str, AttributeValue)],
    ) -> Result<Vec<T>> {
        self.query_items(index, partition, prefix, after, limit, filters)
            .await?
            .into_iter()
            .map(from_item)
            .collect()
    }

    /// [`Self::query_index`] without decoding the items.
    pub(super) async fn query_items(
        &self,
        index: &str,
        partition: &str,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
        filters: &[(&str, AttributeValue)],
    ) -> Result<Vec<Item>> {
        self.query_in(
            &self.table,
            Some(index),
            partition,
            prefix,
            after,
            limit,
            filters,
        )
        .await
    }

    /// One page of a partition of `table` (or of one of its indexes) in sort-key order, after
    /// `after` (exclusive), optionally restricted to sort keys starting with `prefix` and to
    /// items passing `filters`. Fetches `limit + 1` matching items (looping when a filter drops
    /// some) so `hasMore` is exact.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn query_in(
        &self,
        table: &str,
        index: Option<&str>,
        partition: &str,
        prefix: Option<&str>,
        after: Option<&str>,
        limit: usize,
        filters: &[(&str, AttributeValue)],
    ) -> Result<Vec<Item>> {
        let query = PartitionQuery {
            table,
            index,
            partition,
            prefix,
            after,
            limit,
            filters,
        };
        Ok(self.query_bounded(&query, None).await?.items)
    }

    /// [`Self::query_in`] that gives up after `calls` reads (when given) and says where (see
    /// [`ReadBudget`]). A filtered read's calls grow from `limit + 1` items to the budget's
    /// step.
    pub(super) async fn query_bounded(
        &self,
        query: &PartitionQuery<'_>,
        calls: Option<usize>,
    ) -> Result<BoundedRead> {
        let &PartitionQuery { after, limit, .. } = query;
        let (pk_attr, sk_attr) = match query.index {
            Some(index) => (format!("{index}pk"), format!("{index}sk")),
            None => ("pk".to_owned(), "sk".to_owned()),
        };
        let mut condition = "#pk = :pk".to_owned();
        let mut values = HashMap::from([(":pk".to_owned(), s(query.partition))]);
        let mut names = HashMap::from([("#pk".to_owned(), pk_attr)]);
        if after.is_some() || query.prefix.is_some() {
            names.insert("#sk".to_owned(), sk_attr.clone());
        }
        match (after, query.prefix) {
            (Some(after), Some(prefix)) => {
                condition.push_str(" AND #sk BETWEEN :after AND :end");
                values.insert(":after".into(), s(after));
                values.insert(":end".into(), s(format!("{prefix}\u{10FFFF}")));
            }
            (Some(after), None) => {
                condition.push_str(" AND #sk > :after");
                values.insert(":after".into(), s(after));
            }
            (None, Some(prefix)) => {
                condition.push_str(" AND begins_with(#sk, :prefix)");
                values.insert(":prefix".into(), s(prefix));
            }
            (None, None) => {}
        }
        let mut clauses = Vec::new();
        for (i, (attr, value)) in query.filters.iter().enumerate() {
            names.insert(format!("#f{i}"), (*attr).to_owned());
            values.insert(format!(":f{i}"), value.clone());
            clauses.push(format!("#f{i} = :f{i}"));
        }
        let filter_expression = (!clauses.is_empty()).then(|| clauses.join(" AND "));
        let filtered = filter_expression.is_some();
        let mut step = self.reads.first_step(limit, filtered);
        let mut found: Vec<Item> = Vec::new();
        let mut start: Option<Item> = None;
        let mut made = 0;
        loop {
            let out = self
                .client
                .query()
                .table_name(query.table)
                .set_index_name(query.index.map(str::to_owned))
                .consistent_read(query.index.is_none())
                .key_condition_expression(&condition)
                .set_filter_expression(filter_expression.clone())
                .set_expression_attribute_names(Some(names.clone()))
                .set_expression_attribute_values(Some(values.clone()))
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(step).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(sdk_error)?;
            made += 1;
            step = self.reads.next_step(step, filtered);
            for item in out.items.unwrap_or_default() {
                // BETWEEN is inclusive: skip the cursor's own item.
                if after.is_some_and(|a| string_attr(&item, &sk_attr).as_deref() == Some(a)) {
                    continue;
                }
                found.push(item);
            }
            match out.last_evaluated_key {
                Some(key) if found.len() <= limit => {
                    if calls.is_some_and(|calls| made >= calls) {
                        return Ok(BoundedRead {
                            items: found,
                            stopped_at: string_attr(&key, &sk_attr),
                        });
                    }
                    start = Some(key);
                }
                _ => {
                    // A wide filtered step can overshoot; the caller's cursor is its last item.
                    found.truncate(limit + 1);
                    return Ok(BoundedRead {
                        items: found,
                        stopped_at: None,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ReadBudget;

    #[test]
    fn a_filtered_read_starts_at_a_page_and_grows_fourfold_to_its_step() {
        let budget = ReadBudget::default();
        let mut steps = vec![budget.first_step(10, true)];
        for _ in 0..4 {
            steps.push(budget.next_step(*steps.last().unwrap(), true));
        }
        assert_eq!(steps, [11, 44, 176, 256, 256]);
        // Unfiltered, every item read is a match: a page's worth each time.
        assert_eq!(budget.first_step(10, false), 11);
        assert_eq!(budget.next_step(11, false), 11);
        // A step smaller than a page caps the first call too.
        let tiny = ReadBudget { step: 4, ..budget };
        assert_eq!(tiny.first_step(10, true), 4);
        assert_eq!(tiny.next_step(4, true), 4);
    }
}
