//! Time as a port, so tests (and the local stack's simulated clock) decide what "now" is.

use chrono::{DateTime, SubsecRound, Utc};

/// Where "now" comes from.
pub trait Clock: Send + Sync {
    /// The current instant, at millisecond precision (what we store and show).
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(3)
    }
}
