//! One event's delivery to one endpoint: the body frozen once, every attempt, and when the next
//! one is due.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{WebhookEndpointId, WebhookEventId};

use super::EventType;

/// Response bodies are kept up to this many bytes (enough to see an error message).
pub const MAX_RESPONSE_BYTES: usize = 1024;

/// Each attempt gives up after this long.
pub const ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long an attempt holds its delivery: longer than any attempt, so two dispatchers never
/// send one delivery at once (one that dies holding it lets go when this passes).
pub const LEASE: TimeDelta = TimeDelta::seconds(60);

/// The waits between attempts: after the first failure 5 s, then 5 min, 30 min, 2 h, 5 h,
/// 10 h and 10 h; eight attempts over about 27.5 hours, then the delivery is failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<TimeDelta>);

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(vec![
            TimeDelta::seconds(5),
            TimeDelta::minutes(5),
            TimeDelta::minutes(30),
            TimeDelta::hours(2),
            TimeDelta::hours(5),
            TimeDelta::hours(10),
            TimeDelta::hours(10),
        ])
    }
}

impl RetrySchedule {
    /// A custom schedule (the local stack's tests compress the day into seconds).
    pub fn new(delays: Vec<TimeDelta>) -> Self {
        Self(delays)
    }

    /// Parses `5s,5m,30m,2h` (seconds, minutes, hours).
    pub fn parse(raw: &str) -> Option<Self> {
        let delays = raw
            .split(',')
            .map(|part| {
                let part = part.trim();
                let (number, unit) = part.split_at(part.len().checked_sub(1)?);
                let n: i64 = number.parse().ok().filter(|n| *n > 0)?;
                match unit {
                    "s" => Some(TimeDelta::seconds(n)),
                    "m" => Some(TimeDelta::minutes(n)),
                    "h" => Some(TimeDelta::hours(n)),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()?;
        (!delays.is_empty() && delays.iter().all(|d| *d <= TimeDelta::hours(12)))
            .then_some(Self(delays))
    }

    /// Attempts in all.
    pub fn attempts(&self) -> usize {
        self.0.len() + 1
    }

    /// The wait after the `made`-th failed attempt; `None` after the last.
    pub fn after(&self, made: usize) -> Option<TimeDelta> {
        made.checked_sub(1).and_then(|i| self.0.get(i)).copied()
    }

    /// From the first attempt to the last.
    pub fn span(&self) -> TimeDelta {
        self.0.iter().copied().sum()
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet; another attempt is due.
    Pending,
    /// A 2xx answer came back.
    Delivered,
    /// Every attempt failed (a manual retry may still deliver it).
    Failed,
    /// Not attempted: the endpoint was disabled or deleted first.
    Skipped,
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// When it started.
    pub at: DateTime<Utc>,
    /// The answer's status code; absent when none came (refused, timed out, unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// How long it took.
    pub duration_ms: u64,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The first [`MAX_RESPONSE_BYTES`] of the answer's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
    /// Asked for through the API rather than scheduled.
    #[serde(default)]
    pub manual: bool,
}

impl DeliveryAttempt {
    /// Whether the receiver took it (any 2xx).
    pub fn succeeded(&self) -> bool {
        self.status_code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// What the receiving end answered, as the sender port reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The status code, if an answer came.
    pub status_code: Option<u16>,
    /// How long it took.
    pub duration_ms: u64,
    /// Why no (successful) answer came.
    pub error: Option<String>,
    /// The start of the body.
    pub response_body: Option<String>,
}

/// One event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// To where.
    pub endpoint_id: WebhookEndpointId,
    /// What (the `webhook-id`).
    pub event_id: WebhookEventId,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The body, rendered once: every attempt sends the same bytes.
    pub payload: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Every attempt, oldest first.
    #[serde(default)]
    pub attempts: Vec<DeliveryAttempt>,
    /// When the next scheduled attempt is due (pending only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// While set and in the future, a dispatcher is attempting it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leased_until: Option<DateTime<Utc>>,
    /// A retry asked for through the API, with the status the delivery had then: its attempt
    /// is manual, and if it fails the delivery goes back to that status (a pending one stays on
    /// its schedule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_requested: Option<DeliveryStatus>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Delivery {
    /// A delivery due now.
    pub fn new(
        endpoint_id: WebhookEndpointId,
        event_id: WebhookEventId,
        event_type: EventType,
        payload: String,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            endpoint_id,
            event_id,
            event_type,
            payload,
            status: DeliveryStatus::Pending,
            attempts: Vec::new(),
            next_attempt_at: Some(now),
            leased_until: None,
            retry_requested: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// The delivery's id in the API: `dlv_` and its event's id body (unique per endpoint).
    pub fn id(&self) -> String {
        delivery_id(&self.event_id)
    }

    /// With a manual retry requested: due now, whatever its status; `None` while one is
    /// already requested (asking twice is one retry).
    pub fn with_retry_requested(&self, now: DateTime<Utc>) -> Option<Self> {
        if self.retry_requested.is_some() {
            return None;
        }
        let mut next = self.clone();
        next.retry_requested = Some(self.status);
        next.status = DeliveryStatus::Pending;
        next.next_attempt_at = Some(now);
        next.updated_at = now;
        Some(next)
    }

    /// Whether the next attempt is a manual retry.
    pub fn manual_next(&self) -> bool {
        self.retry_requested.is_some()
    }

    /// With `attempt` recorded: delivered on a 2xx; else due again after the schedule's wait,
    /// or failed after the last scheduled attempt. A failed manual retry puts the delivery back
    /// as it was (a pending one keeps its schedule).
    pub fn after(&self, attempt: DeliveryAttempt, schedule: &RetrySchedule) -> Self {
        let mut next = self.clone();
        let at = attempt.at;
        let succeeded = attempt.succeeded();
        next.attempts.push(attempt);
        next.leased_until = None;
        next.updated_at = at;
        let requested = next.retry_requested.take();
        let scheduled = next.attempts.iter().filter(|a| !a.manual).count();
        if succeeded {
            next.status = DeliveryStatus::Delivered;
            next.next_attempt_at = None;
            return next;
        }
        match requested {
            Some(before) if before != DeliveryStatus::Pending => {
                next.status = before;
                next.next_attempt_at = None;
            }
            Some(_) if scheduled == 0 => next.next_attempt_at = Some(at),
            Some(_) => {
                let last = self
                    .attempts
                    .iter()
                    .rev()
                    .find(|a| !a.manual)
                    .map_or(at, |a| a.at);
                next.next_attempt_at = schedule.after(scheduled).map(|wait| (last + wait).max(at));
                if next.next_attempt_at.is_none() {
                    next.status = DeliveryStatus::Failed;
                }
            }
            None => match schedule.after(scheduled) {
                Some(wait) => next.next_attempt_at = Some(at + wait),
                None => {
                    next.status = DeliveryStatus::Failed;
                    next.next_attempt_at = None;
                }
            },
        }
        next
    }
}

/// A sort key that lists an endpoint's deliveries newest first: the event id (time-ordered)
/// with each hex digit inverted.
pub fn newest_first(event: &WebhookEventId) -> String {
    event
        .as_str()
        .chars()
        .map(|c| match c.to_digit(16) {
            Some(d) => std::char::from_digit(15 - d, 16).unwrap_or(c),
            None => c,
        })
        .collect()
}

/// `dlv_` and the event id's body.
pub fn delivery_id(event: &WebhookEventId) -> String {
    format!(
        "dlv_{}",
        event
            .as_str()
            .strip_prefix(WebhookEventId::PREFIX)
            .unwrap_or(event.as_str())
    )
}

/// The event id a delivery id names, if it is one.
pub fn event_of_delivery(delivery: &str) -> Option<WebhookEventId> {
    let body = delivery.strip_prefix("dlv_")?;
    WebhookEventId::parse(&format!("{}{body}", WebhookEventId::PREFIX)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(at: DateTime<Utc>, code: Option<u16>) -> DeliveryAttempt {
        DeliveryAttempt {
            at,
            status_code: code,
            duration_ms: 3,
            error: None,
            response_body: None,
            manual: false,
        }
    }

    #[test]
    fn the_default_schedule_spans_more_than_a_day_in_eight_attempts() {
        let s = RetrySchedule::default();
        assert_eq!(s.attempts(), 8);
        assert!(s.span() >= TimeDelta::hours(24), "{:?}", s.span());
        assert_eq!(s.after(1), Some(TimeDelta::seconds(5)));
        assert_eq!(s.after(7), Some(TimeDelta::hours(10)));
        assert_eq!(s.after(8), None);
        assert_eq!(
            RetrySchedule::parse("1s, 2s,1m").unwrap().span(),
            TimeDelta::seconds(63)
        );
        assert!(RetrySchedule::parse("").is_none());
        assert!(RetrySchedule::parse("5x").is_none());
        assert!(
            RetrySchedule::parse("13h").is_none(),
            "longer than a queue can hold a message"
        );
    }

    #[test]
    fn failures_follow_the_schedule_until_the_last_then_the_delivery_fails() {
        let t0: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let schedule = RetrySchedule::parse("1s,2s").unwrap();
        let mut d = Delivery::new(
            WebhookEndpointId::generate(),
            WebhookEventId::generate(),
            EventType::InvoicePaid,
            "{}".into(),
            t0,
        );
        d = d.after(attempt(t0, Some(500)), &schedule);
        assert_eq!(d.next_attempt_at, Some(t0 + TimeDelta::seconds(1)));
        d = d.after(attempt(t0 + TimeDelta::seconds(1), None), &schedule);
        assert_eq!(d.next_attempt_at, Some(t0 + TimeDelta::seconds(3)));
        d = d.after(attempt(t0 + TimeDelta::seconds(3), Some(404)), &schedule);
        assert_eq!(
            (d.status, d.next_attempt_at),
            (DeliveryStatus::Failed, None)
        );

        // A manual retry that fails leaves it failed; one that succeeds delivers it.
        let t1 = t0 + TimeDelta::hours(1);
        let requested = d.with_retry_requested(t1).unwrap();
        assert!(
            requested.with_retry_requested(t1).is_none(),
            "asking twice is one retry"
        );
        assert_eq!(
            (requested.status, requested.next_attempt_at),
            (DeliveryStatus::Pending, Some(t1))
        );
        let mut manual = attempt(t1, Some(503));
        manual.manual = requested.manual_next();
        let again = requested.after(manual, &schedule);
        assert_eq!(
            (again.status, again.next_attempt_at),
            (DeliveryStatus::Failed, None)
        );
        let requested = again.with_retry_requested(t1).unwrap();
        let mut manual = attempt(t1, Some(204));
        manual.manual = true;
        d = requested.after(manual, &schedule);
        assert_eq!(d.status, DeliveryStatus::Delivered);
        assert_eq!(d.attempts.len(), 5);
        assert_eq!(d.retry_requested, None);
        assert_eq!(event_of_delivery(&d.id()), Some(d.event_id.clone()));
    }
}
