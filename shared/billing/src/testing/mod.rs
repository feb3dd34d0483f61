//! The in-memory implementation of every port (feature `testing`): the storage ports with the
//! DynamoDB adapter's conditions ([`MemoryStore`]), the payment provider ([`FakeGateway`]),
//! mail ([`RecordingMailer`]), retry schedules ([`RecordingScheduler`]), provider webhooks
//! ([`FakeVerifier`]), the usage queue ([`MemoryQueue`]) and time ([`ManualClock`]), and
//! [`World`], all of them wired to the use cases as a Lambda wires the real ports. Unit tests
//! of the matcher, the billing run and the webhook handling run on them in milliseconds; the
//! benchmarks and the reliability tests use them too. Never compiled into a deployed function.

mod payments;
mod store;
mod world;

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Duration, SubsecRound, Utc};

pub use payments::{
    FakeGateway, FakePayment, FakeVerifier, GOOD_SIGNATURE, RecordingMailer, RecordingScheduler,
};
pub use store::MemoryStore;
pub use world::{World, usage_event};

use crate::ports::{Clock, EventQueue};

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

/// A usage queue that keeps the message bodies it is sent.
#[derive(Default)]
pub struct MemoryQueue {
    bodies: Mutex<Vec<String>>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes every message sent so far.
    pub fn drain(&self) -> Vec<String> {
        std::mem::take(&mut *self.bodies.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[async_trait]
impl EventQueue for MemoryQueue {
    async fn send(&self, bodies: &[String]) -> Vec<bool> {
        self.bodies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(bodies.iter().cloned());
        vec![true; bodies.len()]
    }
}
