//! The dispatcher: turns outbox entries into deliveries and attempts them, on its queue's jobs.
//!
//! - An **entry job** renders each event of an outbox entry once, writes one delivery per
//!   subscribed endpoint (an existing one is kept: a repeated job changes nothing), attempts
//!   them, queues a job for each one still pending, and only then removes the entry. Dying at
//!   any step leaves the entry, so the job (or the sweep) runs it again.
//! - A **delivery job** attempts one delivery when it is due. An attempt first takes a lease on
//!   the delivery (a conditional write), so of two jobs for one delivery only one sends; the
//!   other stops. The queue holds a job until its delivery's next attempt
//!   ([`Outcome::RetryIn`]), so the whole schedule rides on one message.
//! - The **sweep** (every minute) re-queues entries and deliveries whose job was lost, and
//!   mails the operator about endpoints the platform disabled.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::TimeDelta;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::concurrency::{Attempt, Write, retry_on_conflict};
use crate::customer::Email;
use crate::error::{Error, Result};
use crate::ids::{WebhookEndpointId, WebhookEventId};
use crate::pagination::PageRequest;
use crate::ports::{
    Clock, ContractStore, CustomerStore, LedgerStore, Mail, Mailer, OutgoingRequest, PaymentLinks,
    Representation, SystemClock, Versioned, WebhookQueue, WebhookSender, WebhookStore,
};

use super::coalesce::WINDOW;
use super::delivery::{DeliveryAttempt, LEASE};
use super::events::{OutboxEntry, OutgoingEvent, Resource, Subject};
use super::{Delivery, DeliveryStatus, RetrySchedule, WebhookEndpoint};

/// Deliveries attempted at once by one job.
const CONCURRENT_ATTEMPTS: usize = 16;

/// The longest a queue delays a message; longer waits are re-checked when it arrives.
pub const MAX_QUEUE_DELAY: TimeDelta = TimeDelta::minutes(15);

/// How late an entry or a delivery must be before the sweep assumes its job was lost.
pub const SWEEP_GRACE: TimeDelta = TimeDelta::minutes(2);

/// A message on the dispatcher's queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Job {
    /// Dispatch an outbox entry.
    Entry {
        /// Its key.
        key: String,
    },
    /// Attempt a delivery when due.
    #[serde(rename_all = "camelCase")]
    Delivery {
        /// To where.
        endpoint_id: WebhookEndpointId,
        /// What.
        event_id: WebhookEventId,
    },
}

impl Job {
    fn delivery(d: &Delivery) -> Self {
        Self::Delivery {
            endpoint_id: d.endpoint_id.clone(),
            event_id: d.event_id.clone(),
        }
    }
}

/// What to do with a job's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: delete it.
    Done,
    /// Keep it, and hand it back after this long.
    RetryIn(TimeDelta),
}

/// What a sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SweepReport {
    /// Outbox entries re-queued.
    pub entries: usize,
    /// Deliveries re-queued.
    pub deliveries: usize,
    /// Operator mails about disabled endpoints.
    pub alerts: usize,
}

/// The dispatcher over its ports.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn WebhookStore>,
    customers: Arc<dyn CustomerStore>,
    contracts: Arc<dyn ContractStore>,
    ledger: Arc<dyn LedgerStore>,
    representation: Arc<dyn Representation>,
    sender: Arc<dyn WebhookSender>,
    queue: Arc<dyn WebhookQueue>,
    links: Option<Arc<dyn PaymentLinks>>,
    mailer: Option<Arc<dyn Mailer>>,
    alert_to: Vec<Email>,
    schedule: RetrySchedule,
    clock: Arc<dyn Clock>,
}

impl Dispatcher {
    /// The dispatcher over one store, rendering with `representation`, sending with `sender`
    /// and queueing retries on `queue`.
    pub fn new<S>(
        store: Arc<S>,
        representation: Arc<dyn Representation>,
        sender: Arc<dyn WebhookSender>,
        queue: Arc<dyn WebhookQueue>,
    ) -> Self
    where
        S: WebhookStore + CustomerStore + ContractStore + LedgerStore + 'static,
    {
        Self {
            store: store.clone(),
            customers: store.clone(),
            contracts: store.clone(),
            ledger: store,
            representation,
            sender,
            queue,
            links: None,
            mailer: None,
            alert_to: Vec::new(),
            schedule: RetrySchedule::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Invoices carry their payment link.
    pub fn with_links(mut self, links: Arc<dyn PaymentLinks>) -> Self {
        self.links = Some(links);
        self
    }

    /// Mails `to` when the platform disables a failing endpoint.
    pub fn with_alerts(mut self, mailer: Arc<dyn Mailer>, to: Vec<Email>) -> Self {
        self.mailer = Some(mailer);
        self.alert_to = to;
        self
    }

    /// Waits between attempts per `schedule`.
    pub fn with_schedule(mut self, schedule: RetrySchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Reads "now" from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Runs one job.
    #[tracing::instrument(skip(self))]
    pub async fn handle(&self, job: &Job) -> Result<Outcome> {
        match job {
            Job::Entry { key } => self.dispatch_entry(key).await,
            Job::Delivery {
                endpoint_id,
                event_id,
            } => self.deliver(endpoint_id, event_id).await,
        }
    }

    async fn dispatch_entry(&self, key: &str) -> Result<Outcome> {
        let Some(entry) = self.store.outbox_entry(key).await? else {
            return Ok(Outcome::Done);
        };
        let now = self.clock.now();
        if entry.not_before > now {
            return Ok(Outcome::RetryIn(entry.not_before - now));
        }
        let endpoints = self.endpoints().await?;
        let mut deliveries = Vec::new();
        for event in &entry.events {
            let targets: Vec<&Versioned<WebhookEndpoint>> = endpoints
                .values()
                .filter(|e| e.value.receives(event.event_type))
                .collect();
            if targets.is_empty() {
                continue;
            }
            let Some(resource) = self.resource(event, &entry).await? else {
                tracing::warn!(event = %event.id, "the event's resource is gone; not sent");
                continue;
            };
            let payload = body(event, self.representation.render(&resource));
            deliveries.extend(targets.into_iter().map(|t| {
                Delivery::new(
                    t.value.id.clone(),
                    event.id.clone(),
                    event.event_type,
                    payload.clone(),
                    now,
                )
            }));
        }
        let stored = self.store.create_deliveries(&deliveries).await?;
        let attempts = stored
            .into_iter()
            .filter(|d| d.value.status == DeliveryStatus::Pending)
            .map(|d| {
                let endpoint = endpoints.get(&d.value.endpoint_id).cloned();
                async move {
                    match endpoint {
                        Some(endpoint) if d.value.attempts.is_empty() => self
                            .attempt(d.clone(), &endpoint)
                            .await
                            .map(|after| (d, after)),
                        // Attempted by an earlier run of this job: it has its own schedule.
                        _ => Ok((d, None)),
                    }
                }
            });
        let results: Vec<Result<_>> = futures_util::stream::iter(attempts)
            .buffer_unordered(CONCURRENT_ATTEMPTS)
            .collect()
            .await;
        let mut jobs = Vec::new();
        for result in results {
            let (before, after) = result?;
            let delivery = after.unwrap_or(before.value);
            if delivery.status == DeliveryStatus::Pending {
                let due = delivery.next_attempt_at.unwrap_or(now);
                jobs.push((Job::delivery(&delivery), queue_delay(due - now)));
            }
        }
        if !jobs.is_empty() {
            self.queue.send(&jobs).await?;
        }
        self.store.remove_outbox_entry(key).await?;
        Ok(Outcome::Done)
    }

    async fn deliver(
        &self,
        endpoint_id: &WebhookEndpointId,
        event_id: &WebhookEventId,
    ) -> Result<Outcome> {
        let Some(delivery) = self.store.get_delivery(endpoint_id, event_id).await? else {
            return Ok(Outcome::Done);
        };
        if delivery.value.status != DeliveryStatus::Pending {
            return Ok(Outcome::Done);
        }
        let now = self.clock.now();
        let due = delivery.value.next_attempt_at.unwrap_or(now);
        if due > now {
            return Ok(Outcome::RetryIn(due - now));
        }
        if let Some(until) = delivery.value.leased_until.filter(|u| *u > now) {
            return Ok(Outcome::RetryIn(until - now));
        }
        let endpoint = match self.store.get_endpoint(endpoint_id).await? {
            Some(endpoint) if !endpoint.value.disabled => endpoint,
            _ => {
                let mut skipped = delivery.value.clone();
                skipped.status = DeliveryStatus::Skipped;
                skipped.next_attempt_at = None;
                skipped.retry_requested = None;
                skipped.updated_at = now;
                return Ok(
                    match self.store.update_delivery(&delivery, &skipped).await? {
                        Write::Done => Outcome::Done,
                        // It moved meanwhile (a manual retry): look again.
                        Write::Conflict => Outcome::RetryIn(TimeDelta::seconds(1)),
                    },
                );
            }
        };
        match self.attempt(delivery, &endpoint).await? {
            Some(after) if after.status == DeliveryStatus::Pending => {
                let due = after.next_attempt_at.unwrap_or(now);
                Ok(Outcome::RetryIn(
                    (due - self.clock.now()).max(TimeDelta::zero()),
                ))
            }
            // Delivered, failed, or another job holds it and carries on.
            _ => Ok(Outcome::Done),
        }
    }

    /// Leases the delivery, sends it, records the attempt and the endpoint's health. `None`
    /// when another job leased it first.
    async fn attempt(
        &self,
        delivery: Versioned<Delivery>,
        endpoint: &Versioned<WebhookEndpoint>,
    ) -> Result<Option<Delivery>> {
        let now = self.clock.now();
        let mut leased = delivery.value.clone();
        leased.leased_until = Some(now + LEASE);
        if self.store.update_delivery(&delivery, &leased).await? == Write::Conflict {
            return Ok(None);
        }
        let leased = Versioned {
            value: leased,
            version: delivery.version + 1,
        };
        let secrets: Vec<&str> = endpoint
            .value
            .signing_secrets(now)
            .into_iter()
            .map(|s| s.expose())
            .collect();
        let result = self
            .sender
            .send(&OutgoingRequest {
                url: endpoint.value.url.as_str(),
                event_id: &leased.value.event_id,
                // Receivers refuse a timestamp far from their own clock, so the signature is
                // dated by the wall clock even when the business clock is simulated.
                timestamp: SystemClock.now(),
                payload: &leased.value.payload,
                secrets,
            })
            .await;
        let attempt = DeliveryAttempt {
            at: now,
            status_code: result.status_code,
            duration_ms: result.duration_ms,
            error: result.error,
            response_body: result.response_body,
            manual: leased.value.manual_next(),
        };
        let succeeded = attempt.succeeded();
        tracing::info!(
            endpoint = %endpoint.value.id,
            event = %leased.value.event_id,
            status = ?attempt.status_code,
            error = ?attempt.error,
            "webhook attempt"
        );
        let next = leased.value.after(attempt, &self.schedule);
        if self.store.update_delivery(&leased, &next).await? == Write::Conflict {
            // Only a job whose lease ran out could have moved it; that one records its own.
            return Ok(None);
        }
        self.record_health(&endpoint.value.id, succeeded).await?;
        Ok(Some(next))
    }

    /// Keeps the endpoint's failing streak, disabling it after five days (and mailing the
    /// operator).
    async fn record_health(&self, id: &WebhookEndpointId, succeeded: bool) -> Result<()> {
        let now = self.clock.now();
        let disabled = retry_on_conflict("this webhook endpoint", || async {
            let Some(current) = self.store.get_endpoint(id).await? else {
                return Ok(Attempt::Done(None));
            };
            let Some((next, disabled_now)) = current.value.after_attempt(succeeded, now) else {
                return Ok(Attempt::Done(None));
            };
            let write = self.store.update_endpoint(&current, &next).await?;
            Ok(write.into_attempt(disabled_now.then_some(next)))
        })
        .await?;
        if let Some(endpoint) = disabled {
            tracing::warn!(endpoint = %endpoint.id, "webhook endpoint disabled after failing for 5 days");
            if let Err(e) = self.alert(&endpoint).await {
                tracing::warn!(error = %e, "the disabled-endpoint mail waits for the sweep");
            }
        }
        Ok(())
    }

    /// Mails the operator about an endpoint the platform disabled, then clears its flag.
    async fn alert(&self, endpoint: &WebhookEndpoint) -> Result<bool> {
        if !endpoint.alert_pending {
            return Ok(false);
        }
        match (&self.mailer, self.alert_to.is_empty()) {
            (Some(mailer), false) => {
                mailer
                    .send(&Mail {
                        to: self.alert_to.clone(),
                        subject: format!("Webhook endpoint disabled: {}", endpoint.url.as_str()),
                        text: format!(
                            "The webhook endpoint {} ({}) was disabled: {}.\n\n\
                             Events are no longer sent to it. Fix the receiver, then re-enable \
                             it with PATCH /v1/webhook-endpoints/{} {{\"disabled\": false}}; \
                             failed deliveries can be retried from its deliveries list.\n",
                            endpoint.id,
                            endpoint.url.as_str(),
                            endpoint
                                .disabled_reason
                                .as_deref()
                                .unwrap_or("it kept failing"),
                            endpoint.id
                        ),
                    })
                    .await?;
            }
            _ => tracing::warn!(
                endpoint = %endpoint.id,
                "no operator address (OPERATOR_EMAIL) to tell that the endpoint was disabled"
            ),
        }
        retry_on_conflict("this webhook endpoint", || async {
            let Some(current) = self.store.get_endpoint(&endpoint.id).await? else {
                return Ok(Attempt::Done(()));
            };
            if !current.value.alert_pending {
                return Ok(Attempt::Done(()));
            }
            let mut next = current.value.clone();
            next.alert_pending = false;
            Ok(self
                .store
                .update_endpoint(&current, &next)
                .await?
                .into_attempt(()))
        })
        .await?;
        Ok(true)
    }

    /// Re-queues entries and deliveries whose job was lost, and sends pending alerts.
    #[tracing::instrument(skip(self))]
    pub async fn sweep(&self) -> Result<SweepReport> {
        let now = self.clock.now();
        let before = now - SWEEP_GRACE;
        let mut report = SweepReport::default();
        let entries = self.store.outbox_due(before, 500).await?;
        let deliveries = self.store.deliveries_due(before, 500).await?;
        let mut jobs: Vec<(Job, TimeDelta)> = entries
            .iter()
            .map(|key| (Job::Entry { key: key.clone() }, TimeDelta::zero()))
            .collect();
        jobs.extend(deliveries.iter().map(|(endpoint_id, event_id)| {
            (
                Job::Delivery {
                    endpoint_id: endpoint_id.clone(),
                    event_id: event_id.clone(),
                },
                TimeDelta::zero(),
            )
        }));
        for chunk in jobs.chunks(10) {
            self.queue.send(chunk).await?;
        }
        report.entries = entries.len();
        report.deliveries = deliveries.len();
        for endpoint in self.endpoints().await?.values() {
            if endpoint.value.alert_pending && self.alert(&endpoint.value).await? {
                report.alerts += 1;
            }
        }
        if report != SweepReport::default() {
            tracing::info!(report = ?report, "webhook sweep");
        }
        Ok(report)
    }

    async fn endpoints(&self) -> Result<HashMap<WebhookEndpointId, Versioned<WebhookEndpoint>>> {
        let mut all = HashMap::new();
        let mut page = PageRequest {
            limit: 100,
            after: None,
        };
        loop {
            let listed = self.store.list_endpoints(&page).await?;
            for endpoint in listed.items {
                // Listing is eventually consistent; the version comes from a strong read.
                if let Some(read) = self.store.get_endpoint(&endpoint.id).await? {
                    all.insert(endpoint.id.clone(), read);
                }
            }
            match listed.next {
                Some(cursor) => page.after = Some(cursor),
                None => return Ok(all),
            }
        }
    }

    async fn resource(
        &self,
        event: &OutgoingEvent,
        entry: &OutboxEntry,
    ) -> Result<Option<Resource>> {
        Ok(match &event.subject {
            Subject::Customer { id } => self
                .customers
                .get(id)
                .await?
                .map(|c| Resource::Customer(Box::new(c.value))),
            Subject::Contract { id } => self
                .contracts
                .get_contract(id)
                .await?
                .map(|c| Resource::Contract(Box::new(c.value))),
            Subject::Invoice { id } => match self.ledger.invoice_state(id).await? {
                Some(state) => {
                    let payment_link = match (&self.links, state.invoice.payment.sent_at) {
                        (Some(links), Some(sent_at)) => {
                            Some(links.payment_link(&state.invoice.id, sent_at))
                        }
                        _ => None,
                    };
                    Some(Resource::Invoice {
                        invoice: Box::new(state.invoice.priced()?),
                        payment_link,
                    })
                }
                None => None,
            },
            Subject::Unbillable {
                owner,
                status,
                window_start,
            } => {
                let tally = entry.tally.clone().ok_or_else(|| {
                    Error::internal(format!("outbox entry {} has no tally", entry.key))
                })?;
                Some(Resource::Unbillable {
                    owner: owner.clone(),
                    status: *status,
                    window_start: *window_start,
                    window_end: *window_start + WINDOW,
                    tally: Box::new(tally),
                })
            }
        })
    }
}

/// The body every endpoint receives: `{id, type, createdAt, data}`.
pub fn body(event: &OutgoingEvent, data: serde_json::Value) -> String {
    serde_json::json!({
        "id": event.id,
        "type": event.event_type,
        "createdAt": event.created_at,
        "data": data,
    })
    .to_string()
}

fn queue_delay(wait: TimeDelta) -> TimeDelta {
    wait.clamp(TimeDelta::zero(), MAX_QUEUE_DELAY)
}
