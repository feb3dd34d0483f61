//! Outgoing webhooks in the billing table: endpoints (listed in `gsi1`), their deliveries (in
//! the endpoint's partition, newest first), and outbox entries. Entries and pending deliveries
//! carry sparse `gsi4` keys by due time, sharded, so the sweep finds those whose job was lost.
//! The other ports write an entry into the transaction of their change ([`DynamoStore::
//! outbox_put`]) and nudge the dispatcher once it commits.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{ReturnValue, TransactWriteItem};
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use futures_util::StreamExt;

use super::{
    DynamoStore, Item, entity_item, from_item, keys, n, s, sdk_error, string_attr, versioned,
};
use billing::concurrency::Write;
use billing::error::{Error, Result};
use billing::ids::{WebhookEndpointId, WebhookEventId};
use billing::pagination::{Cursor, Page, PageRequest};
use billing::ports::{Versioned, WebhookQueue, WebhookStore};
use billing::usage::EventRecord;
use billing::webhooks::coalesce::CoalescedEvent;
use billing::webhooks::events::UnbillableTally;
use billing::webhooks::{
    Delivery, DeliveryStatus, Job, OutboxEntry, OutgoingEvent, WebhookEndpoint,
};

/// Writes in flight at once when creating deliveries or coalesced events.
const CONCURRENT_WRITES: usize = 16;

/// Runs `writes` [`CONCURRENT_WRITES`] at a time; their results in order, or the first error.
async fn in_order<T, F>(writes: impl Iterator<Item = F>) -> Result<Vec<T>>
where
    F: std::future::Future<Output = Result<T>>,
{
    let writes: Vec<_> = writes.map(Box::pin).collect();
    futures_util::stream::iter(writes)
        .buffered(CONCURRENT_WRITES)
        .collect::<Vec<Result<T>>>()
        .await
        .into_iter()
        .collect()
}

fn time_key(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal(format!("cannot encode: {e}")))
}

fn parse_json<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::internal(format!("cannot decode stored: {e}")))
}

/// An outbox entry as an item: its events as JSON, due time, sweep keys.
fn outbox_item(entry: &OutboxEntry) -> Result<Item> {
    let key = keys::webhook_outbox(&entry.key);
    let due = time_key(entry.not_before);
    let (gsi4pk, gsi4sk) = keys::outbox_agenda_keys(&entry.key, &due);
    let mut item: Item = HashMap::from([
        ("pk".to_owned(), s(&key.pk)),
        ("sk".to_owned(), s(&key.sk)),
        ("id".to_owned(), s(&entry.key)),
        ("events".to_owned(), s(json(&entry.events)?)),
        ("notBefore".to_owned(), s(&due)),
        ("gsi4pk".to_owned(), s(gsi4pk)),
        ("gsi4sk".to_owned(), s(gsi4sk)),
    ]);
    if let Some(tally) = &entry.tally {
        item.insert("count".into(), n(tally.count));
        item.insert("first".into(), s(json(&tally.first)?));
    }
    Ok(item)
}

fn outbox_entry_of(item: &Item) -> Result<OutboxEntry> {
    let text = |name: &str| {
        string_attr(item, name)
            .ok_or_else(|| Error::internal(format!("outbox entry without {name}")))
    };
    let not_before = DateTime::parse_from_rfc3339(&text("notBefore")?)
        .map_err(|e| Error::internal(format!("outbox entry time: {e}")))?
        .with_timezone(&Utc);
    let tally = match string_attr(item, "first") {
        Some(first) => Some(UnbillableTally {
            count: super::number_attr(item, "count").unwrap_or(0),
            first: parse_json::<EventRecord>(&first)?,
        }),
        None => None,
    };
    Ok(OutboxEntry {
        key: text("id")?,
        events: parse_json(&text("events")?)?,
        not_before,
        tally,
    })
}

fn endpoint_item(endpoint: &WebhookEndpoint, version: u64) -> Result<Item> {
    let mut item = entity_item(
        endpoint,
        &keys::webhook_endpoint(&endpoint.id),
        Some(("WEBHOOK_ENDPOINT", endpoint.id.as_str())),
    )?;
    item.insert("version".into(), n(version));
    Ok(item)
}

fn delivery_item(delivery: &Delivery, version: u64) -> Result<Item> {
    let mut item = entity_item(
        delivery,
        &keys::webhook_delivery(&delivery.endpoint_id, &delivery.event_id),
        None,
    )?;
    item.insert("version".into(), n(version));
    if let (DeliveryStatus::Pending, Some(due)) = (delivery.status, delivery.next_attempt_at) {
        let (gsi4pk, gsi4sk) =
            keys::delivery_agenda_keys(&delivery.endpoint_id, &delivery.event_id, &time_key(due));
        item.insert("gsi4pk".into(), s(gsi4pk));
        item.insert("gsi4sk".into(), s(gsi4sk));
        item.insert(
            "id".into(),
            s(format!("{}#{}", delivery.endpoint_id, delivery.event_id)),
        );
    }
    Ok(item)
}

impl DynamoStore {
    /// Wakes the dispatcher after each committed outbox entry (without one, only the sweep
    /// finds them, within about two minutes).
    pub fn with_webhook_queue(mut self, queue: Arc<dyn WebhookQueue>) -> Self {
        self.webhook_queue = Some(queue);
        self
    }

    /// The outbox entry of a change's events, as an item of its transaction, with the key to
    /// nudge once it commits; `None` without events.
    pub(super) fn outbox_put(
        &self,
        events: &[OutgoingEvent],
    ) -> Result<Option<(TransactWriteItem, String)>> {
        let Some(entry) = OutboxEntry::for_events(events) else {
            return Ok(None);
        };
        Ok(Some((self.put(outbox_item(&entry)?, None), entry.key)))
    }

    /// Writes one coalesced event: its window's entry unless it exists (`usage.unbillable`
    /// adds its count either way); nudges the dispatcher when it made the entry.
    async fn coalesce_one(&self, event: &CoalescedEvent) -> Result<bool> {
        let key = keys::webhook_outbox(&event.key);
        let due = time_key(event.not_before);
        let (gsi4pk, gsi4sk) = keys::outbox_agenda_keys(&event.key, &due);
        let mut expression = "SET #events = if_not_exists(#events, :events), \
             #notBefore = if_not_exists(#notBefore, :due), #id = if_not_exists(#id, :id), \
             gsi4pk = if_not_exists(gsi4pk, :g4pk), gsi4sk = if_not_exists(gsi4sk, :g4sk)"
            .to_owned();
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .expression_attribute_names("#events", "events")
            .expression_attribute_names("#notBefore", "notBefore")
            .expression_attribute_names("#id", "id")
            .expression_attribute_values(":events", s(json(&vec![event.event.clone()])?))
            .expression_attribute_values(":due", s(&due))
            .expression_attribute_values(":id", s(&event.key))
            .expression_attribute_values(":g4pk", s(gsi4pk))
            .expression_attribute_values(":g4sk", s(gsi4sk))
            .return_values(ReturnValue::UpdatedOld);
        if let Some((count, first)) = &event.unbillable {
            expression.push_str(", #first = if_not_exists(#first, :first) ADD #count :n");
            update = update
                .expression_attribute_names("#first", "first")
                .expression_attribute_names("#count", "count")
                .expression_attribute_values(":first", s(json(first)?))
                .expression_attribute_values(":n", n(*count));
        }
        let out = update
            .update_expression(expression)
            .send()
            .await
            .map_err(sdk_error)?;
        let new = out
            .attributes
            .as_ref()
            .is_none_or(|old| !old.contains_key("events"));
        if new {
            self.nudge(
                Some(event.key.clone()),
                (event.not_before - Utc::now()).max(TimeDelta::zero()),
            )
            .await;
        }
        Ok(new)
    }

    /// Tells the dispatcher an entry is waiting, after `delay`. Best effort: a lost nudge is
    /// found by the sweep.
    pub(super) async fn nudge(&self, entry: Option<String>, delay: TimeDelta) {
        let (Some(queue), Some(key)) = (&self.webhook_queue, entry) else {
            return;
        };
        if let Err(e) = queue
            .send(&[(Job::Entry { key: key.clone() }, delay)])
            .await
        {
            tracing::warn!(entry = %key, error = %e, "webhook nudge lost; the sweep will send it");
        }
    }

    /// Ids in a sweep agenda partition due before `before`.
    async fn agenda_before(
        &self,
        partition: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(keys::GSI4)
            .key_condition_expression("gsi4pk = :pk AND gsi4sk < :before")
            .expression_attribute_values(":pk", s(partition))
            .expression_attribute_values(":before", s(time_key(before)))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out
            .items
            .unwrap_or_default()
            .iter()
            .filter_map(|item| string_attr(item, "id"))
            .collect())
    }

    /// Writes a delivery unless one exists; answers the one stored.
    async fn create_delivery(&self, delivery: &Delivery) -> Result<Versioned<Delivery>> {
        match self.put_versioned(delivery_item(delivery, 1)?, 0).await? {
            Write::Done => Ok(Versioned {
                value: delivery.clone(),
                version: 1,
            }),
            Write::Conflict => self
                .get_delivery(&delivery.endpoint_id, &delivery.event_id)
                .await?
                .ok_or_else(|| Error::internal("a delivery vanished while being created")),
        }
    }

    /// Puts `item` if the stored `version` is `previous` (or the item is new when 0).
    async fn put_versioned(&self, item: Item, previous: u64) -> Result<Write> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        put = if previous == 0 {
            put.condition_expression("attribute_not_exists(pk)")
        } else {
            put.condition_expression("version = :v")
                .expression_attribute_values(":v", n(previous))
        };
        match put.send().await {
            Ok(_) => Ok(Write::Done),
            Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(Write::Conflict),
            Err(e) => Err(sdk_error(e)),
        }
    }
}

#[async_trait]
impl WebhookStore for DynamoStore {
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        match self.put_versioned(endpoint_item(endpoint, 1)?, 0).await? {
            Write::Done => Ok(()),
            Write::Conflict => Err(Error::internal(format!(
                "endpoint id {} collided",
                endpoint.id
            ))),
        }
    }

    async fn get_endpoint(
        &self,
        id: &WebhookEndpointId,
    ) -> Result<Option<Versioned<WebhookEndpoint>>> {
        self.get_item(&keys::webhook_endpoint(id))
            .await?
            .map(versioned)
            .transpose()
    }

    async fn list_endpoints(&self, page: &PageRequest) -> Result<Page<WebhookEndpoint>> {
        self.list_kind(
            "WEBHOOK_ENDPOINT",
            page,
            WebhookEndpointId::parse,
            |e: &WebhookEndpoint| e.id.to_string(),
        )
        .await
    }

    async fn update_endpoint(
        &self,
        previous: &Versioned<WebhookEndpoint>,
        next: &WebhookEndpoint,
    ) -> Result<Write> {
        self.put_versioned(endpoint_item(next, previous.version + 1)?, previous.version)
            .await
    }

    async fn delete_endpoint(&self, id: &WebhookEndpointId) -> Result<bool> {
        let key = keys::webhook_endpoint(id);
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.attributes.is_some())
    }

    async fn coalesce(&self, events: &[CoalescedEvent]) -> Result<Vec<bool>> {
        in_order(events.iter().map(|event| self.coalesce_one(event))).await
    }

    async fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>> {
        self.get_item(&keys::webhook_outbox(key))
            .await?
            .map(|item| outbox_entry_of(&item))
            .transpose()
    }

    async fn outbox_due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
        let mut due = Vec::new();
        for shard in 0..keys::WEBHOOK_SHARDS {
            due.extend(
                self.agenda_before(&keys::outbox_agenda(shard), before, limit)
                    .await?,
            );
        }
        due.truncate(limit);
        Ok(due)
    }

    async fn remove_outbox_entry(&self, key: &str) -> Result<()> {
        self.delete_item(&keys::webhook_outbox(key)).await
    }

    async fn create_deliveries(&self, deliveries: &[Delivery]) -> Result<Vec<Versioned<Delivery>>> {
        in_order(
            deliveries
                .iter()
                .map(|delivery| self.create_delivery(delivery)),
        )
        .await
    }

    async fn get_delivery(
        &self,
        endpoint: &WebhookEndpointId,
        event: &WebhookEventId,
    ) -> Result<Option<Versioned<Delivery>>> {
        self.get_item(&keys::webhook_delivery(endpoint, event))
            .await?
            .map(versioned)
            .transpose()
    }

    async fn update_delivery(
        &self,
        previous: &Versioned<Delivery>,
        next: &Delivery,
    ) -> Result<Write> {
        self.put_versioned(delivery_item(next, previous.version + 1)?, previous.version)
            .await
    }

    async fn list_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        let after = page
            .after
            .as_ref()
            .map(|c| {
                c.sort_key()
                    .starts_with(keys::DELIVERY_PREFIX)
                    .then(|| c.sort_key().to_owned())
                    .ok_or_else(Cursor::invalid)
            })
            .transpose()?;
        let items = self
            .query_in(
                &self.table,
                None,
                &keys::webhook_endpoint_partition(endpoint),
                Some(keys::DELIVERY_PREFIX),
                after.as_deref(),
                page.limit,
                &[],
            )
            .await?;
        let deliveries = items
            .into_iter()
            .map(from_item)
            .collect::<Result<Vec<Delivery>>>()?;
        Ok(Page::from_overfetch(deliveries, page.limit, |d| {
            keys::webhook_delivery(&d.endpoint_id, &d.event_id).sk
        }))
    }

    async fn deliveries_due(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(WebhookEndpointId, WebhookEventId)>> {
        let mut due = Vec::new();
        for shard in 0..keys::WEBHOOK_SHARDS {
            for id in self
                .agenda_before(&keys::delivery_agenda(shard), before, limit)
                .await?
            {
                let Some((endpoint, event)) = id.split_once('#') else {
                    continue;
                };
                due.push((
                    WebhookEndpointId::parse(endpoint)?,
                    WebhookEventId::parse(event)?,
                ));
            }
        }
        due.truncate(limit);
        Ok(due)
    }
}
