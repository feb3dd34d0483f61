//! The webhook store in memory: endpoints, the outbox (entries written with their changes by
//! the other ports, coalesced ones here) and deliveries, with the DynamoDB adapter's conditions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{MemoryStore, page_of};
use crate::concurrency::Write;
use crate::error::{Error, Result};
use crate::ids::{WebhookEndpointId, WebhookEventId};
use crate::pagination::{Page, PageRequest};
use crate::ports::{Versioned, WebhookStore};
use crate::webhooks::coalesce::CoalescedEvent;
use crate::webhooks::delivery::newest_first;
use crate::webhooks::events::UnbillableTally;
use crate::webhooks::{Delivery, DeliveryStatus, OutboxEntry, WebhookEndpoint};

impl MemoryStore {
    /// Webhook outbox entries not dispatched yet, oldest first.
    pub fn webhook_outbox_now(&self) -> Vec<OutboxEntry> {
        let mut entries: Vec<OutboxEntry> =
            self.tables().webhook_outbox.values().cloned().collect();
        entries.sort_by_key(|e| (e.not_before, e.key.clone()));
        entries
    }

    /// Every delivery, in endpoint and event order.
    pub fn deliveries_now(&self) -> Vec<Delivery> {
        self.tables()
            .deliveries
            .values()
            .map(|d| d.value.clone())
            .collect()
    }
}

#[async_trait]
impl WebhookStore for MemoryStore {
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        let mut t = self.tables();
        if t.endpoints.contains_key(&endpoint.id) {
            return Err(Error::internal(format!(
                "endpoint id {} collided",
                endpoint.id
            )));
        }
        self.write()?;
        t.endpoints.insert(
            endpoint.id.clone(),
            Versioned {
                value: endpoint.clone(),
                version: 1,
            },
        );
        Ok(())
    }

    async fn get_endpoint(
        &self,
        id: &WebhookEndpointId,
    ) -> Result<Option<Versioned<WebhookEndpoint>>> {
        Ok(self.tables().endpoints.get(id).cloned())
    }

    async fn list_endpoints(&self, page: &PageRequest) -> Result<Page<WebhookEndpoint>> {
        let items = self
            .tables()
            .endpoints
            .values()
            .map(|v| v.value.clone())
            .collect();
        Ok(page_of(items, page, |e: &WebhookEndpoint| e.id.to_string()))
    }

    async fn update_endpoint(
        &self,
        previous: &Versioned<WebhookEndpoint>,
        next: &WebhookEndpoint,
    ) -> Result<Write> {
        let mut t = self.tables();
        if t.endpoints.get(&next.id).map(|v| v.version) != Some(previous.version) {
            return Ok(Write::Conflict);
        }
        self.write()?;
        t.endpoints.insert(
            next.id.clone(),
            Versioned {
                value: next.clone(),
                version: previous.version + 1,
            },
        );
        Ok(Write::Done)
    }

    async fn delete_endpoint(&self, id: &WebhookEndpointId) -> Result<bool> {
        self.write()?;
        Ok(self.tables().endpoints.remove(id).is_some())
    }

    async fn coalesce(&self, events: &[CoalescedEvent]) -> Result<Vec<bool>> {
        let mut created = Vec::with_capacity(events.len());
        for event in events {
            let mut t = self.tables();
            self.write()?;
            match t.webhook_outbox.get_mut(&event.key) {
                Some(entry) => {
                    if let (Some(tally), Some((count, _))) = (&mut entry.tally, &event.unbillable) {
                        tally.count += count;
                    }
                    created.push(false);
                }
                None => {
                    t.webhook_outbox.insert(
                        event.key.clone(),
                        OutboxEntry {
                            key: event.key.clone(),
                            events: vec![event.event.clone()],
                            not_before: event.not_before,
                            tally: event
                                .unbillable
                                .clone()
                                .map(|(count, first)| UnbillableTally { count, first }),
                        },
                    );
                    created.push(true);
                }
            }
        }
        Ok(created)
    }

    async fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>> {
        Ok(self.tables().webhook_outbox.get(key).cloned())
    }

    async fn outbox_due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<String>> {
        Ok(self
            .webhook_outbox_now()
            .into_iter()
            .filter(|e| e.not_before < before)
            .take(limit)
            .map(|e| e.key)
            .collect())
    }

    async fn remove_outbox_entry(&self, key: &str) -> Result<()> {
        self.write()?;
        self.tables().webhook_outbox.remove(key);
        Ok(())
    }

    async fn create_deliveries(&self, deliveries: &[Delivery]) -> Result<Vec<Versioned<Delivery>>> {
        let mut stored = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let mut t = self.tables();
            let key = (delivery.endpoint_id.clone(), delivery.event_id.clone());
            if let Some(existing) = t.deliveries.get(&key) {
                stored.push(existing.clone());
                continue;
            }
            self.write()?;
            let fresh = Versioned {
                value: delivery.clone(),
                version: 1,
            };
            t.deliveries.insert(key, fresh.clone());
            stored.push(fresh);
        }
        Ok(stored)
    }

    async fn get_delivery(
        &self,
        endpoint: &WebhookEndpointId,
        event: &WebhookEventId,
    ) -> Result<Option<Versioned<Delivery>>> {
        Ok(self
            .tables()
            .deliveries
            .get(&(endpoint.clone(), event.clone()))
            .cloned())
    }

    async fn update_delivery(
        &self,
        previous: &Versioned<Delivery>,
        next: &Delivery,
    ) -> Result<Write> {
        let mut t = self.tables();
        let key = (next.endpoint_id.clone(), next.event_id.clone());
        if t.deliveries.get(&key).map(|v| v.version) != Some(previous.version) {
            return Ok(Write::Conflict);
        }
        self.write()?;
        t.deliveries.insert(
            key,
            Versioned {
                value: next.clone(),
                version: previous.version + 1,
            },
        );
        Ok(Write::Done)
    }

    async fn list_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        let items: Vec<Delivery> = self
            .tables()
            .deliveries
            .values()
            .filter(|d| &d.value.endpoint_id == endpoint)
            .map(|d| d.value.clone())
            .collect();
        // Newest first: sort by the inverted event id.
        Ok(page_of(items, page, |d: &Delivery| {
            newest_first(&d.event_id)
        }))
    }

    async fn deliveries_due(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(WebhookEndpointId, WebhookEventId)>> {
        let t = self.tables();
        let mut due: Vec<(DateTime<Utc>, WebhookEndpointId, WebhookEventId)> = t
            .deliveries
            .values()
            .filter(|d| d.value.status == DeliveryStatus::Pending)
            .filter_map(|d| {
                d.value
                    .next_attempt_at
                    .filter(|at| *at < before)
                    .map(|at| (at, d.value.endpoint_id.clone(), d.value.event_id.clone()))
            })
            .collect();
        due.sort();
        Ok(due
            .into_iter()
            .take(limit)
            .map(|(_, endpoint, event)| (endpoint, event))
            .collect())
    }
}
