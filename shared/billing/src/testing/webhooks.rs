//! Outgoing webhooks' fakes: a receiver that answers as scripted and records what it got
//! ([`FakeReceiver`]), a queue that records the dispatcher's jobs ([`RecordingWebhookQueue`]),
//! and a representation that renders a resource's id and status ([`IdRepresentation`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};

use super::MemoryStore;
use crate::error::{Error, Result};
use crate::ids::WebhookEventId;
use crate::ports::{OutgoingRequest, Representation, WebhookQueue, WebhookSender};
use crate::webhooks::delivery::SendResult;
use crate::webhooks::{Job, Resource};

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One request the receiver got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Where it was sent.
    pub url: String,
    /// Its `webhook-id`.
    pub event_id: WebhookEventId,
    /// Its `webhook-timestamp`.
    pub timestamp: DateTime<Utc>,
    /// Its body.
    pub payload: String,
    /// How many signatures it carried.
    pub signatures: usize,
}

impl Received {
    /// The body, parsed.
    pub fn body(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).expect("a JSON body")
    }
}

/// Receives deliveries: answers each URL's scripted status codes in turn (`None`: no answer,
/// as when the receiver is down), then 200.
#[derive(Default)]
pub struct FakeReceiver {
    script: Mutex<HashMap<String, VecDeque<Option<u16>>>>,
    received: Mutex<Vec<Received>>,
    life: Mutex<Option<Arc<MemoryStore>>>,
}

impl FakeReceiver {
    /// Answers 200 to everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next answers for `url`.
    pub fn answer(&self, url: &str, answers: impl IntoIterator<Item = Option<u16>>) {
        lock(&self.script)
            .entry(url.to_owned())
            .or_default()
            .extend(answers);
    }

    /// Every request that reached a receiver that answered (any status), in order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// Sends nothing once `store` has crashed: the dispatcher that died sends no more.
    pub fn dies_with(&self, store: Arc<MemoryStore>) {
        *lock(&self.life) = Some(store);
    }
}

#[async_trait]
impl WebhookSender for FakeReceiver {
    async fn send(&self, request: &OutgoingRequest<'_>) -> SendResult {
        if lock(&self.life).as_ref().is_some_and(|s| s.crashed()) {
            return SendResult {
                status_code: None,
                duration_ms: 0,
                error: Some("the dispatcher died".into()),
                response_body: None,
            };
        }
        let answer = lock(&self.script)
            .get_mut(request.url)
            .and_then(VecDeque::pop_front)
            .unwrap_or(Some(200));
        let Some(code) = answer else {
            return SendResult {
                status_code: None,
                duration_ms: 10_000,
                error: Some("connection refused".into()),
                response_body: None,
            };
        };
        lock(&self.received).push(Received {
            url: request.url.to_owned(),
            event_id: request.event_id.clone(),
            timestamp: request.timestamp,
            payload: request.payload.to_owned(),
            signatures: request.secrets.len(),
        });
        SendResult {
            status_code: Some(code),
            duration_ms: 3,
            error: (!(200..300).contains(&code)).then(|| format!("answered {code}")),
            response_body: Some(format!("status {code}")),
        }
    }
}

/// Keeps the dispatcher's jobs, with their delays.
#[derive(Default)]
pub struct RecordingWebhookQueue {
    jobs: Mutex<Vec<(Job, TimeDelta)>>,
    refusing: Mutex<bool>,
}

impl RecordingWebhookQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every job sent so far.
    pub fn drain(&self) -> Vec<(Job, TimeDelta)> {
        std::mem::take(&mut *lock(&self.jobs))
    }

    /// Refuses every send (an outage) while `refusing`.
    pub fn refuse(&self, refusing: bool) {
        *lock(&self.refusing) = refusing;
    }
}

#[async_trait]
impl WebhookQueue for RecordingWebhookQueue {
    async fn send(&self, jobs: &[(Job, TimeDelta)]) -> Result<()> {
        if *lock(&self.refusing) {
            return Err(Error::unavailable("the webhook queue is down"));
        }
        lock(&self.jobs).extend(jobs.iter().cloned());
        Ok(())
    }
}

/// Renders a resource as `{"object", "id", "status"}`: enough for tests to see what an event
/// carries, without the HTTP edge's full representation.
pub struct IdRepresentation;

impl Representation for IdRepresentation {
    fn render(&self, resource: &Resource) -> serde_json::Value {
        match resource {
            Resource::Customer(c) => serde_json::json!({"object": "customer", "id": c.id}),
            Resource::Contract(c) => {
                serde_json::json!({"object": "contract", "id": c.id, "status": c.status})
            }
            Resource::Invoice { invoice, .. } => serde_json::json!({
                "object": "invoice",
                "id": invoice.invoice.id,
                "status": invoice.invoice.status,
                "total": invoice.total.to_string(),
            }),
            Resource::Unbillable {
                owner,
                status,
                tally,
                ..
            } => serde_json::json!({
                "object": "unbillable_usage",
                "customer": owner,
                "status": status,
                "count": tally.count,
            }),
        }
    }
}
