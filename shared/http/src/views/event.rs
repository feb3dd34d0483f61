//! A usage event's record as `GET /v1/events` lists it.

use std::collections::BTreeMap;

use billing::aggregation::UsageValue;
use billing::usage::{CustomerRef, EventRecord, EventStatus, MeterMatch};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

/// An event record as shown: the event as sent (property numbers as exact JSON numbers) and
/// where it landed, or why it did not.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    event_name: String,
    customer_id: Option<String>,
    external_customer_id: Option<String>,
    idempotency_key: String,
    timestamp: DateTime<Utc>,
    properties: BTreeMap<String, Box<RawValue>>,
    status: EventStatus,
    reason: &'static str,
    matches: Vec<MeterMatch>,
    received_at: DateTime<Utc>,
    processed_at: DateTime<Utc>,
}

impl From<EventRecord> for EventView {
    fn from(r: EventRecord) -> Self {
        let event = std::sync::Arc::unwrap_or_clone(r.event);
        let (customer_id, external_customer_id) = match (&r.customer_id, event.customer) {
            (Some(id), CustomerRef::External(x)) => (Some(id.to_string()), Some(x.to_string())),
            (_, CustomerRef::Id(id)) => (Some(id.to_string()), None),
            (None, CustomerRef::External(x)) => (None, Some(x.to_string())),
        };
        let properties = event
            .properties
            .into_iter()
            .filter_map(|(k, v)| {
                let json = match v {
                    UsageValue::Number(d) => d.to_string(),
                    UsageValue::Text(t) => serde_json::to_string(&t).ok()?,
                    UsageValue::Bool(b) => b.to_string(),
                };
                RawValue::from_string(json).ok().map(|raw| (k, raw))
            })
            .collect();
        Self {
            event_name: event.event_name.to_string(),
            customer_id,
            external_customer_id,
            idempotency_key: event.idempotency_key.as_str().to_owned(),
            timestamp: event.timestamp,
            properties,
            status: r.status,
            reason: r.status.reason(),
            matches: r.matches,
            received_at: event.received_at,
            processed_at: r.processed_at,
        }
    }
}
