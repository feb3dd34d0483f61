//! The matcher's side of the tables. Event records live in the usage table, one item each
//! (under 1 KB, no index keys unless late or unbillable): the one write per event. Lane shares
//! and distinct values live in the billing table, next to their invoice; day tallies in the
//! usage table ([`super::tallies`]). Every write here is a single-item conditional write; none
//! is transactional.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, ReturnValuesOnConditionCheckFailure,
};
use futures_util::stream::{self, StreamExt, TryStreamExt};

use super::invoices::invoice_item;
use super::{
    BoundedRead, DynamoStore, Item, PartitionQuery, keys, n, s, sdk_error, string_attr, to_item,
};
use billing::concurrency;
use billing::error::{Error, Result};
use billing::ids::InvoiceId;
use billing::invoice::{Invoice, InvoiceStatus};
use billing::lanes::{LaneKey, LaneLine, UsageLane};
use billing::pagination::{Cursor, Page, PageRequest};
use billing::ports::{EventFilter, EventOwner, LaneWrite, RecordPut, UsageStore, ValueClaim};
use billing::tally::{DayCount, DayTally, TallyKey};
use billing::usage::{CustomerRef, EventRecord, EventStatus, Lane, MessageNonce, RECORD_RETENTION};
use billing::webhooks::OutgoingEvent;

/// Single-item writes (or bucket queries) in flight at once per call: enough to hide DynamoDB's
/// latency (docs/SCALE.md), few enough to stay polite to one partition.
const WRITES_IN_FLIGHT: usize = 64;

/// An event record as stored. `customerId` is left out when the event named the customer by
/// that same id (the usual case; the partition names it), keeping a typical record well under
/// 1 KB, where a put costs 1 WCU. Every record but a matched one carries `gsi1` keys (the
/// listing by outcome): late and unbillable events are the exceptions, so the index write is
/// paid rarely, and a rare outcome is never searched for by reading the whole table.
fn record_item(record: &EventRecord) -> Result<Item> {
    let key = record_key(record);
    let mut item = to_item(record)?;
    if let (Some(id), CustomerRef::Id(named)) = (&record.customer_id, &record.event.customer)
        && id.as_str() == named.as_str()
    {
        item.remove("customerId");
    }
    item.insert("pk".into(), s(&key.pk));
    item.insert("sk".into(), s(&key.sk));
    if record.status != EventStatus::Matched {
        let processed = record
            .processed_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        item.insert(
            "gsi1pk".into(),
            s(keys::events_with_status(record.status.as_str())),
        );
        item.insert("gsi1sk".into(), s(format!("{processed}#{}", key.pk)));
    }
    let expires = (record.processed_at + RECORD_RETENTION).timestamp();
    item.insert("expiresAt".into(), AttributeValue::N(expires.to_string()));
    Ok(item)
}

fn record_key(record: &EventRecord) -> keys::Key {
    keys::event_record(
        &keys::record_owner(record.customer_id.as_ref(), &record.event.customer),
        record.event.idempotency_key.as_str(),
    )
}

/// Reads a stored event record, restoring a `customerId` [`record_item`] left out: the
/// partition names the event's customer when it exists.
fn record_from_item(item: Item) -> Result<EventRecord> {
    let pk = string_attr(&item, "pk").unwrap_or_default();
    let mut record: EventRecord = super::from_item(item)?;
    if record.customer_id.is_none()
        && let CustomerRef::Id(named) = &record.event.customer
        && keys::owns_partition(named.as_str(), &pk)
    {
        record.customer_id = Some(named.clone());
    }
    Ok(record)
}

/// A lane share as stored: the key, `version`, `last`, `sealed`, and one `l#<lineId>`
/// attribute per line.
fn lane_item(lane: &UsageLane) -> Result<Item> {
    let key = keys::lane(&lane.key.invoice, lane.key.lane);
    let mut item: Item = HashMap::from([
        ("pk".to_owned(), s(&key.pk)),
        ("sk".to_owned(), s(&key.sk)),
        ("version".to_owned(), n(lane.version)),
    ]);
    if let Some(last) = &lane.last {
        item.insert("last".into(), s(last.as_str()));
    }
    if lane.sealed {
        item.insert("sealed".into(), AttributeValue::Bool(true));
    }
    for (id, line) in &lane.lines {
        item.insert(
            format!("l#{id}"),
            serde_dynamo::to_attribute_value(line)
                .map_err(|e| Error::internal(format!("cannot encode a lane line: {e}")))?,
        );
    }
    Ok(item)
}

/// The lane a per-lane item (a lane share, a day tally) belongs to, from its `LANE#<nn>` sort
/// key.
pub(super) fn lane_of(item: &Item) -> Result<Lane> {
    let sk = string_attr(item, "sk").unwrap_or_default();
    sk.strip_prefix(keys::LANE_PREFIX)
        .and_then(|n| n.parse().ok())
        .map(Lane::new)
        .ok_or_else(|| Error::internal(format!("bad lane key '{sk}'")))
}

/// Reads a lane share item.
pub(super) fn lane_from_item(invoice: &InvoiceId, item: &Item) -> Result<UsageLane> {
    let mut lines = std::collections::BTreeMap::new();
    for (name, value) in item {
        if let Some(id) = name.strip_prefix("l#") {
            let line: LaneLine = serde_dynamo::from_attribute_value(value.clone())
                .map_err(|e| Error::internal(format!("bad lane line {name}: {e}")))?;
            lines.insert(billing::ids::LineId::parse(id)?, line);
        }
    }
    Ok(UsageLane {
        key: LaneKey {
            invoice: invoice.clone(),
            lane: lane_of(item)?,
        },
        version: super::version_of(item),
        last: string_attr(item, "last")
            .map(MessageNonce::parse)
            .transpose()?,
        sealed: item
            .get("sealed")
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false),
        lines,
    })
}

/// A put of a versioned item (a lane share, a day tally) on condition that it is still at
/// `version` (0: that it does not exist) and, when it exists, of `also` (` AND …`).
pub(super) fn on_version(
    request: aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder,
    version: u64,
    also: &str,
) -> aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder {
    if version == 0 {
        return request.condition_expression("attribute_not_exists(pk)");
    }
    request
        .condition_expression(format!("#version = :version{also}"))
        .expression_attribute_names("#version", "version")
        .expression_attribute_values(":version", n(version))
}

/// Whether a failed conditional write failed on its condition.
pub(super) fn condition_failed<E: ProvideErrorMetadata>(e: &E) -> bool {
    e.code() == Some("ConditionalCheckFailedException")
}

impl DynamoStore {
    /// BatchGetItem of `keys` from `table` (≤ 100 a request, unprocessed keys retried).
    pub(super) async fn batch_get(
        &self,
        table: &str,
        keys: Vec<keys::Key>,
        projection: Option<(&str, HashMap<String, String>)>,
    ) -> Result<Vec<Item>> {
        let mut items = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            let mut pending: Vec<Item> = chunk
                .iter()
                .map(|k| HashMap::from([("pk".to_owned(), s(&k.pk)), ("sk".to_owned(), s(&k.sk))]))
                .collect();
            let mut attempt = 0;
            while !pending.is_empty() {
                let mut request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true);
                if let Some((expression, names)) = &projection {
                    request = request
                        .projection_expression(*expression)
                        .set_expression_attribute_names(Some(names.clone()));
                }
                let request = request
                    .build()
                    .map_err(|e| Error::internal(e.to_string()))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(table, request)
                    .send()
                    .await
                    .map_err(sdk_error)?;
                items.extend(
                    out.responses
                        .and_then(|mut r| r.remove(table))
                        .unwrap_or_default(),
                );
                if let Some(left) = out.unprocessed_keys.and_then(|mut u| u.remove(table)) {
                    pending = left.keys;
                    attempt += 1;
                    tokio::time::sleep(concurrency::backoff(attempt)).await;
                }
            }
        }
        Ok(items)
    }

    /// Puts one record unless its key exists; the existing record otherwise.
    async fn put_record(&self, record: &EventRecord) -> Result<RecordPut> {
        let result = self
            .client
            .put_item()
            .table_name(&self.usage_table)
            .set_item(Some(record_item(record)?))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        self.count_writes(1);
        match result {
            Ok(_) => Ok(RecordPut::Written),
            Err(e) => {
                let service = e.as_service_error();
                if let Some(failed) = service.filter(|e| condition_failed(*e)) {
                    let stored = match failed {
                        aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c.item.clone(),
                        _ => None,
                    };
                    let stored = match stored {
                        Some(item) => item,
                        None => self
                            .get_from(&self.usage_table, &record_key(record))
                            .await?
                            .ok_or_else(|| {
                                Error::internal("a record vanished after its condition failed")
                            })?,
                    };
                    return Ok(RecordPut::Exists(Box::new(record_from_item(stored)?)));
                }
                Err(sdk_error(e))
            }
        }
    }

    /// Claims one distinct value; the holder's nonce.
    async fn claim_value(&self, claim: &ValueClaim) -> Result<MessageNonce> {
        let key = keys::distinct_value(&claim.invoice, &claim.line, &claim.value);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(super::key_item(
                &key,
                [("holder", s(claim.nonce.as_str()))],
            )))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        self.count_writes(1);
        match result {
            Ok(_) => Ok(claim.nonce.clone()),
            Err(e) if e.as_service_error().is_some_and(condition_failed) => {
                let holder = match e.into_service_error() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => {
                        c.item.and_then(|i| string_attr(&i, "holder"))
                    }
                    _ => None,
                };
                let holder = match holder {
                    Some(h) => h,
                    None => self
                        .get_from(&self.table, &key)
                        .await?
                        .and_then(|i| string_attr(&i, "holder"))
                        .ok_or_else(|| Error::internal("a value claim without holder"))?,
                };
                MessageNonce::parse(holder)
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    /// Writes one lane share on condition of the version read and of not being sealed.
    async fn write_lane(&self, previous: &UsageLane, next: &UsageLane) -> Result<LaneWrite> {
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(lane_item(next)?))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let result = on_version(
            request,
            previous.version,
            " AND attribute_not_exists(sealed)",
        )
        .send()
        .await;
        self.count_writes(1);
        match result {
            Ok(_) => Ok(LaneWrite::Done),
            Err(e) if e.as_service_error().is_some_and(condition_failed) => {
                let sealed = match e.into_service_error() {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => c
                        .item
                        .and_then(|i| i.get("sealed").and_then(|v| v.as_bool().ok()).copied())
                        .unwrap_or(false),
                    _ => false,
                };
                Ok(if sealed {
                    LaneWrite::Sealed
                } else {
                    LaneWrite::Conflict
                })
            }
            Err(e) => Err(sdk_error(e)),
        }
    }

    async fn get_from(&self, table: &str, key: &keys::Key) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }
}

#[async_trait]
impl UsageStore for DynamoStore {
    async fn invoice_statuses(
        &self,
        ids: &[InvoiceId],
    ) -> Result<HashMap<InvoiceId, InvoiceStatus>> {
        let keys: Vec<keys::Key> = ids.iter().map(keys::invoice).collect();
        let names = HashMap::from([("#status".to_owned(), "status".to_owned())]);
        let items = self
            .batch_get(&self.table, keys, Some(("id, #status", names)))
            .await?;
        items
            .iter()
            .map(|item| {
                let text = |name: &str| {
                    string_attr(item, name)
                        .ok_or_else(|| Error::internal(format!("invoice item without {name}")))
                };
                Ok((
                    InvoiceId::parse(&text("id")?)?,
                    InvoiceStatus::parse(&text("status")?)?,
                ))
            })
            .collect()
    }

    async fn ensure_invoice(&self, invoice: &Invoice, events: &[OutgoingEvent]) -> Result<()> {
        let mut items = vec![self.put(
            invoice_item(invoice)?,
            Some(("attribute_not_exists(pk)", Item::new())),
        )];
        let entry = self.outbox_put(events)?.map(|(item, key)| {
            items.push(item);
            key
        });
        // Cancelled when the invoice exists: someone else wrote it (and its event).
        if self.transact(items).await?.is_ok() {
            self.nudge(entry, chrono::TimeDelta::zero()).await;
        }
        Ok(())
    }

    async fn mark_in_progress(&self, ids: &[InvoiceId]) -> Result<()> {
        for id in ids {
            let key = keys::invoice(id);
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(&key.pk))
                .key("sk", s(&key.sk))
                .update_expression("SET #status = :in_progress")
                .condition_expression("#status = :drafted")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":in_progress", s(InvoiceStatus::InProgress.as_str()))
                .expression_attribute_values(":drafted", s(InvoiceStatus::Drafted.as_str()))
                .send()
                .await;
            self.count_writes(1);
            match result {
                Ok(_) => {}
                // Moved on already (In Progress, closed): nothing to do.
                Err(e) if e.as_service_error().is_some_and(condition_failed) => {}
                Err(e) => return Err(sdk_error(e)),
            }
        }
        Ok(())
    }

    async fn put_records(&self, records: &[EventRecord]) -> Vec<Result<RecordPut>> {
        let puts: Vec<_> = records.iter().map(|r| self.put_record(r)).collect();
        stream::iter(puts)
            .buffered(WRITES_IN_FLIGHT)
            .collect()
            .await
    }

    async fn relabel_record(&self, record: &EventRecord) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.usage_table)
            .set_item(Some(record_item(record)?))
            .condition_expression("nonce = :nonce")
            .expression_attribute_values(":nonce", s(record.nonce.as_str()))
            .send()
            .await
            .map_err(sdk_error)?;
        self.count_writes(1);
        Ok(())
    }

    async fn claim_values(&self, claims: &[ValueClaim]) -> Result<Vec<MessageNonce>> {
        let puts: Vec<_> = claims.iter().map(|c| self.claim_value(c)).collect();
        stream::iter(puts)
            .buffered(WRITES_IN_FLIGHT)
            .try_collect()
            .await
    }

    async fn lanes(&self, keys: &[LaneKey]) -> Result<HashMap<LaneKey, UsageLane>> {
        let wanted: Vec<keys::Key> = keys
            .iter()
            .map(|k| keys::lane(&k.invoice, k.lane))
            .collect();
        let by_pk: HashMap<String, InvoiceId> = keys
            .iter()
            .map(|k| (keys::invoice(&k.invoice).pk, k.invoice.clone()))
            .collect();
        let mut lanes = HashMap::with_capacity(keys.len());
        for item in self.batch_get(&self.table, wanted, None).await? {
            let pk = string_attr(&item, "pk").unwrap_or_default();
            let invoice = by_pk
                .get(&pk)
                .ok_or_else(|| Error::internal(format!("an unasked lane of {pk}")))?;
            let lane = lane_from_item(invoice, &item)?;
            lanes.insert(lane.key.clone(), lane);
        }
        Ok(lanes)
    }

    async fn write_lanes(&self, writes: &[(UsageLane, UsageLane)]) -> Result<Vec<LaneWrite>> {
        let puts: Vec<_> = writes.iter().map(|(p, n)| self.write_lane(p, n)).collect();
        stream::iter(puts)
            .buffered(WRITES_IN_FLIGHT)
            .try_collect()
            .await
    }

    async fn tallies(&self, keys: &[TallyKey]) -> Result<HashMap<TallyKey, DayTally>> {
        self.read_tallies(keys).await
    }

    async fn write_tallies(&self, writes: &[(DayTally, DayTally)]) -> Result<Vec<LaneWrite>> {
        self.put_tallies(writes).await
    }

    async fn day_count(&self, day: chrono::NaiveDate) -> Result<DayCount> {
        self.count_day(day).await
    }

    async fn list_events(
        &self,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>> {
        match (&filter.customer, filter.status) {
            (Some(owner), status) => self.customer_events(owner, status, page).await,
            (None, Some(EventStatus::Matched)) => self.scan_matched(page).await,
            (None, Some(status)) => self.indexed_events(status, page).await,
            (None, None) => Err(Error::invalid(
                "missing_filter",
                "list events of one customer (customerId or externalCustomerId) or of one status",
            )),
        }
    }
}

impl DynamoStore {
    /// A customer's records in idempotency key order: every bucket queried after the cursor,
    /// merged. With an outcome to filter by, each bucket makes at most the budget's
    /// `bucket_calls` calls; the page then ends where the first bucket to give up stopped
    /// (every bucket has been read up to there), and may be short.
    async fn customer_events(
        &self,
        owner: &EventOwner,
        status: Option<EventStatus>,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>> {
        let owner = match owner {
            EventOwner::Customer(id) => keys::record_owner(Some(id), &CustomerRef::Id(id.clone())),
            EventOwner::Unknown(reference) => keys::record_owner(None, reference),
        };
        let after = page.after.as_ref().map(|c| c.sort_key().to_owned());
        let filters: Vec<(&str, AttributeValue)> = status
            .map(|s| vec![("status", super::s(s.as_str()))])
            .unwrap_or_default();
        let partitions: Vec<String> = (0..keys::RECORD_BUCKETS)
            .map(|bucket| keys::record_partition(&owner, bucket))
            .collect();
        let queries: Vec<_> = partitions
            .iter()
            .map(|partition| {
                let query = PartitionQuery {
                    table: &self.usage_table,
                    index: None,
                    partition,
                    prefix: None,
                    after: after.as_deref(),
                    limit: page.limit,
                    filters: &filters,
                };
                async move {
                    self.query_bounded(&query, Some(self.reads.bucket_calls))
                        .await
                }
            })
            .collect();
        let reads: Vec<BoundedRead> = stream::iter(queries)
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect()
            .await?;
        let boundary = reads.iter().filter_map(|r| r.stopped_at.clone()).min();
        let mut items: Vec<Item> = reads
            .into_iter()
            .flat_map(|r| r.items)
            .filter(|item| {
                boundary
                    .as_deref()
                    .is_none_or(|b| string_attr(item, "sk").as_deref() <= Some(b))
            })
            .collect();
        items.sort_by_key(|item| string_attr(item, "sk"));
        items.truncate(page.limit + 1);
        let records = items
            .into_iter()
            .map(record_from_item)
            .collect::<Result<Vec<_>>>()?;
        let mut listed = Page::from_overfetch(records, page.limit, |r| {
            r.event.idempotency_key.as_str().to_owned()
        });
        if listed.next.is_none() {
            listed.next = boundary.map(Cursor::after);
        }
        Ok(listed)
    }

    /// Records of one outcome other than matched, oldest processing first, through the sparse
    /// index.
    async fn indexed_events(
        &self,
        status: EventStatus,
        page: &PageRequest,
    ) -> Result<Page<EventRecord>> {
        let after = page.after.as_ref().map(|c| c.sort_key().to_owned());
        let items = self
            .query_in(
                &self.usage_table,
                Some(keys::GSI1),
                &keys::events_with_status(status.as_str()),
                None,
                after.as_deref(),
                page.limit,
                &[],
            )
            .await?;
        let sorts: Vec<String> = items
            .iter()
            .map(|i| string_attr(i, "gsi1sk").unwrap_or_default())
            .collect();
        let records = items
            .into_iter()
            .map(record_from_item)
            .collect::<Result<Vec<_>>>()?;
        let paired: Vec<(String, EventRecord)> = sorts.into_iter().zip(records).collect();
        let page = Page::from_overfetch(paired, page.limit, |(sort, _)| sort.clone());
        Ok(Page {
            items: page.items.into_iter().map(|(_, r)| r).collect(),
            next: page.next,
        })
    }

    /// Matched records of every customer: a scan of the usage table (no index keeps them, so
    /// that each costs one write); no order is promised. The cursor is the scan's position. A
    /// page reads at most the budget's `scan_calls` calls: matched records are most of the
    /// table, so a page is nearly always full, but it is short (with a cursor) rather than
    /// unbounded.
    async fn scan_matched(&self, page: &PageRequest) -> Result<Page<EventRecord>> {
        let mut start = match &page.after {
            Some(cursor) => {
                let (pk, sk) = cursor
                    .sort_key()
                    .split_once('\u{1f}')
                    .ok_or_else(Cursor::invalid)?;
                Some(HashMap::from([
                    ("pk".to_owned(), s(pk)),
                    ("sk".to_owned(), s(sk)),
                ]))
            }
            None => None,
        };
        let position = |key: &Item| {
            Cursor::after(format!(
                "{}\u{1f}{}",
                string_attr(key, "pk").unwrap_or_default(),
                string_attr(key, "sk").unwrap_or_default()
            ))
        };
        let mut found: Vec<Item> = Vec::new();
        let mut stopped_at = None;
        let calls = self.reads.scan_calls.max(1);
        let mut step = self.reads.first_step(page.limit, true);
        for made in 1..=calls {
            let out = self
                .client
                .scan()
                .table_name(&self.usage_table)
                .filter_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(EventStatus::Matched.as_str()))
                .set_exclusive_start_key(start.take())
                .limit(i32::try_from(step).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(sdk_error)?;
            step = self.reads.next_step(step, true);
            found.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if found.len() <= page.limit && made == calls => {
                    stopped_at = Some(key);
                }
                Some(key) if found.len() <= page.limit => start = Some(key),
                _ => break,
            }
        }
        let more = found.len() > page.limit;
        found.truncate(page.limit);
        let next = match stopped_at {
            Some(key) => Some(position(&key)),
            None => more.then(|| found.last()).flatten().map(position),
        };
        Ok(Page {
            items: found
                .into_iter()
                .map(record_from_item)
                .collect::<Result<_>>()?,
            next,
        })
    }
}
