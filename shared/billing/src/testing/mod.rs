//! The in-memory implementation of every port (feature `testing`): the storage ports with the
//! DynamoDB adapter's conditions ([`MemoryStore`]), the payment provider ([`FakeGateway`]),
//! mail ([`RecordingMailer`]), retry schedules ([`RecordingScheduler`]), provider webhooks
//! ([`FakeVerifier`]), outgoing webhooks ([`FakeReceiver`], [`RecordingWebhookQueue`]), the
//! usage queue ([`MemoryQueue`]) and time ([`ManualClock`]), and
//! [`World`], all of them wired to the use cases as a Lambda wires the real ports. Unit tests
//! of the matcher, the billing run and the webhook handling run on them in milliseconds; the
//! benchmarks and the reliability tests use them too. Never compiled into a deployed function.

mod payments;
mod store;
mod webhooks;
mod world;

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};

pub use payments::{
    FakeGateway, FakePayment, FakeVerifier, GOOD_SIGNATURE, RecordingMailer, RecordingScheduler,
};
pub use store::MemoryStore;
pub use webhooks::{FakeReceiver, IdRepresentation, Received, RecordingWebhookQueue};
pub use world::{World, usage_event};

use crate::matcher::LaneMessage;
use crate::ports::{Clock, EventQueue};
use crate::usage::{OutgoingMessage, QueuedEvents};

/// One message carrying `events`, as the ingestion sends it (a fresh nonce, its lane): what
/// a test hands [`crate::matcher::Matcher::process`].
pub fn message(events: Vec<crate::usage::UsageEvent>) -> Vec<LaneMessage> {
    vec![LaneMessage::new(events)]
}

/// A clock that moves only when told.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Stopped at `now` (kept to milliseconds, as the real clock gives them).
    pub fn at(now: DateTime<Utc>) -> Self {
        Self(Mutex::new(now.trunc_subsecs(3)))
    }

    /// Moves to `now`.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = now.trunc_subsecs(3);
    }

    /// Moves on by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A usage queue that keeps the messages it is sent, in order, with FIFO's deduplication by
/// nonce (a message sent twice is kept once).
#[derive(Default)]
pub struct MemoryQueue {
    messages: Mutex<Vec<OutgoingMessage>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every message sent so far, decoded as the matcher receives them.
    pub fn drain(&self) -> Vec<LaneMessage> {
        std::mem::take(&mut *self.messages.lock().unwrap_or_else(|p| p.into_inner()))
            .into_iter()
            .map(|m| {
                let queued: QueuedEvents =
                    serde_json::from_str(&m.body).expect("a message this crate packed");
                LaneMessage {
                    nonce: queued.nonce,
                    lane: m.lane,
                    events: queued.events,
                }
            })
            .collect()
    }
}

#[async_trait]
impl EventQueue for MemoryQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Vec<bool> {
        let mut queue = self.messages.lock().unwrap_or_else(|p| p.into_inner());
        for message in messages {
            if !queue.iter().any(|m| m.nonce == message.nonce) {
                queue.push(message.clone());
            }
        }
        vec![true; messages.len()]
    }
}
