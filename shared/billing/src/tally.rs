//! Usage events received per day, for the dashboard's "events today". Records are keyed by
//! customer and idempotency key, so no read can count a day's records without scanning them.
//! Instead every lane keeps one tally per day (UTC, of the day the API accepted the event),
//! written once per batch beside the lane's shares and exactly as they are: it names the last
//! message it includes and is written on condition of the version read, so a redelivered batch
//! adds nothing it added before and a batch cut short adds the rest on its retry. Only the
//! events a message owns count: a resend (a record naming another message) counts once, where
//! its first copy landed.

use chrono::NaiveDate;

use crate::usage::{Lane, MessageNonce};

/// Which tally: a day's, in one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TallyKey {
    /// The day the API accepted the events (UTC).
    pub day: NaiveDate,
    /// The lane.
    pub lane: Lane,
}

/// A day's events in one lane, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTally {
    /// Which tally.
    pub key: TallyKey,
    /// Increments on every write: the version the next write must find (0: never written).
    pub version: u64,
    /// The last message this tally includes; every earlier message of the lane is in too.
    pub last: Option<MessageNonce>,
    /// The counts so far.
    pub count: DayCount,
}

impl DayTally {
    /// A tally never written.
    pub fn empty(key: TallyKey) -> Self {
        Self {
            key,
            version: 0,
            last: None,
            count: DayCount::default(),
        }
    }
}

/// Events received on a day: in one lane, or every lane's added up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayCount {
    /// Every event counted once (resends are not events).
    pub events: u64,
    /// Those of them that bill nothing: no meter, no contract, unknown customer, and so on.
    pub unbillable: u64,
}

impl DayCount {
    /// Adds another lane's count.
    pub fn add(&mut self, other: DayCount) {
        self.events += other.events;
        self.unbillable += other.unbillable;
    }
}
