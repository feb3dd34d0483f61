//! The outgoing webhooks' ports: their storage (endpoints, the outbox, deliveries), the queue
//! that wakes the dispatcher, the HTTP client that sends a signed delivery, and the
//! representation that turns a resource into the `data` its GET returns.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use crate::concurrency::Write;
use crate::error::Result;
use crate::ids::{WebhookEndpointId, WebhookEventId};
use crate::pagination::{Page, PageRequest};
use crate::webhooks::coalesce::CoalescedEvent;
use crate::webhooks::delivery::SendResult;
use crate::webhooks::{Delivery, Job, OutboxEntry, Resource, WebhookEndpoint};

use super::Versioned;

/// Endpoints, the outbox and deliveries. (Outbox entries of ordinary changes are written by the
/// other stores, in the transaction of the change; see [`OutboxEntry::for_events`].)
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Stores a new endpoint.
    async fn insert_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<()>;

    /// Reads an endpoint, strongly consistent.
    async fn get_endpoint(
        &self,
        id: &WebhookEndpointId,
    ) -> Result<Option<Versioned<WebhookEndpoint>>>;

    /// Lists endpoints in creation order.
    async fn list_endpoints(&self, page: &PageRequest) -> Result<Page<WebhookEndpoint>>;

    /// Replaces an endpoint if it has not moved since `previous` was read.
    async fn update_endpoint(
        &self,
        previous: &Versioned<WebhookEndpoint>,
        next: &WebhookEndpoint,
    ) -> Result<Write>;

    /// Deletes an endpoint (its deliveries stay, for the record); `false` when there was none.
    async fn delete_endpoint(&self, id: &WebhookEndpointId) -> Result<bool>;

    /// Writes each coalesced event unless its window already has one, in which case only the
    /// window's count grows. Per event, whether this write created the entry.
    async fn coalesce(&self, events: &[CoalescedEvent]) -> Result<Vec<bool>>;

    /// Reads an outbox entry, strongly consistent.
    async fn outbox_entry(&self, key: &str) -> Result<Option<OutboxEntry>>;

    /// Keys of outbox entries due before `before` (the sweep's: their nudge may be lost).
    async fn outbox_due(&self, before: DateTime<Utc>, limit: usize) -> Result<Vec<String>>;

    /// Removes an entry once every delivery it causes is stored.
    async fn remove_outbox_entry(&self, key: &str) -> Result<()>;

    /// Writes each delivery unless one exists for its endpoint and event; returns every one as
    /// stored (the existing one where there was one), in order.
    async fn create_deliveries(&self, deliveries: &[Delivery]) -> Result<Vec<Versioned<Delivery>>>;

    /// Reads a delivery, strongly consistent.
    async fn get_delivery(
        &self,
        endpoint: &WebhookEndpointId,
        event: &WebhookEventId,
    ) -> Result<Option<Versioned<Delivery>>>;

    /// Replaces a delivery if it has not moved since `previous` was read.
    async fn update_delivery(
        &self,
        previous: &Versioned<Delivery>,
        next: &Delivery,
    ) -> Result<Write>;

    /// An endpoint's deliveries, newest first.
    async fn list_deliveries(
        &self,
        endpoint: &WebhookEndpointId,
        page: &PageRequest,
    ) -> Result<Page<Delivery>>;

    /// Pending deliveries whose next attempt was due before `before` (the sweep's: their job
    /// may be lost).
    async fn deliveries_due(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(WebhookEndpointId, WebhookEventId)>>;
}

/// Wakes the dispatcher (an SQS queue in AWS).
#[async_trait]
pub trait WebhookQueue: Send + Sync {
    /// Sends each job to run after its delay (at most 15 minutes); all or an error.
    async fn send(&self, jobs: &[(Job, TimeDelta)]) -> Result<()>;
}

/// One signed POST.
#[derive(Debug, Clone)]
pub struct OutgoingRequest<'a> {
    /// Where.
    pub url: &'a str,
    /// The `webhook-id`.
    pub event_id: &'a WebhookEventId,
    /// The `webhook-timestamp`.
    pub timestamp: DateTime<Utc>,
    /// The body.
    pub payload: &'a str,
    /// Secrets to sign with (each gives one `v1,` signature).
    pub secrets: Vec<&'a str>,
}

/// Sends a delivery over HTTP: signed per Standard Webhooks, within
/// [`crate::webhooks::delivery::ATTEMPT_TIMEOUT`], without following redirects, and never to an
/// address its URL policy refuses (checked after DNS resolution).
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Sends it; every failure is in the result, never an error.
    async fn send(&self, request: &OutgoingRequest<'_>) -> SendResult;
}

/// Renders a resource as its GET returns it: the `data` of an event.
pub trait Representation: Send + Sync {
    /// The JSON.
    fn render(&self, resource: &Resource) -> serde_json::Value;
}
