//! Coalesced events: usage changes an invoice many times a second, so `invoice.updated` for
//! usage is sent at most once per invoice per minute, and `usage.unbillable` at most once per
//! customer and outcome per minute. The first change in a minute writes the entry (later ones
//! find it and add nothing but a count); it is dispatched when the minute is over, so the state
//! it renders includes every change of that minute, and a change after the render falls in a
//! later minute with an entry of its own. Nothing is left unreported.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};

use crate::ids::InvoiceId;
use crate::usage::{EventRecord, EventStatus};

use super::EventType;
use super::events::{OutgoingEvent, Subject};

/// The coalescing window.
pub const WINDOW: TimeDelta = TimeDelta::minutes(1);

/// One coalesced event: written unless its key exists (the window already has one).
#[derive(Debug, Clone, PartialEq)]
pub struct CoalescedEvent {
    /// Names the window: type, subject and the window's start.
    pub key: String,
    /// The event, if this write is the window's first.
    pub event: OutgoingEvent,
    /// The window's end: when it is dispatched.
    pub not_before: DateTime<Utc>,
    /// For `usage.unbillable`: events this write adds to the window's count, and the first.
    pub unbillable: Option<(u64, EventRecord)>,
}

/// The start of `at`'s window.
pub fn window_start(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(WINDOW).unwrap_or(at)
}

/// `invoice.updated` for usage that reached `invoice` at `at`.
pub fn invoice_usage(invoice: &InvoiceId, at: DateTime<Utc>) -> CoalescedEvent {
    let start = window_start(at);
    CoalescedEvent {
        key: format!("invoice.updated#{invoice}#{}", start.timestamp()),
        event: OutgoingEvent::new(
            EventType::InvoiceUpdated,
            Subject::Invoice {
                id: invoice.clone(),
            },
            at,
        ),
        not_before: start + WINDOW,
        unbillable: None,
    }
}

/// `usage.unbillable` for `count` events of `owner` recorded with `status` at `at`, the first
/// of them being `first`.
pub fn unbillable(
    owner: &str,
    status: EventStatus,
    count: u64,
    first: EventRecord,
    at: DateTime<Utc>,
) -> CoalescedEvent {
    let start = window_start(at);
    CoalescedEvent {
        key: format!(
            "usage.unbillable#{owner}#{}#{}",
            status.as_str(),
            start.timestamp()
        ),
        event: OutgoingEvent::new(
            EventType::UsageUnbillable,
            Subject::Unbillable {
                owner: owner.to_owned(),
                status,
                window_start: start,
            },
            at,
        ),
        not_before: start + WINDOW,
        unbillable: Some((count, first)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_in_one_minute_share_a_key_and_are_sent_when_it_ends() {
        let invoice = InvoiceId::derive("x");
        let a = invoice_usage(&invoice, "2026-02-01T10:00:01Z".parse().unwrap());
        let b = invoice_usage(&invoice, "2026-02-01T10:00:59.999Z".parse().unwrap());
        let c = invoice_usage(&invoice, "2026-02-01T10:01:00Z".parse().unwrap());
        assert_eq!(a.key, b.key);
        assert_ne!(a.key, c.key);
        assert_eq!(
            a.not_before,
            "2026-02-01T10:01:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(
            c.not_before,
            "2026-02-01T10:02:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_ne!(
            invoice_usage(
                &InvoiceId::derive("y"),
                "2026-02-01T10:00:01Z".parse().unwrap()
            )
            .key,
            a.key
        );
    }
}
