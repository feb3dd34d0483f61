//! Usage events: what the product sends, how it is checked at the edge, how events travel to
//! the matcher (packed many per SQS message), and what is recorded about each one.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::aggregation::UsageValue;
use crate::customer::ExternalCustomerId;
use crate::error::{Error, Result};
use crate::ids::{CustomerId, InvoiceId, LineId, MeterId};
use crate::meter::EventName;

/// How far in the future an event's timestamp may be (clock skew between systems).
pub const MAX_FUTURE: Duration = Duration::hours(1);
/// How old an event may be when it arrives. Older usage belongs to invoices long sent; it is
/// refused at the door rather than recorded as late forever.
pub const MAX_AGE: Duration = Duration::days(35);
/// The most properties one event may carry.
pub const MAX_PROPERTIES: usize = 50;
/// The most events one batch request may carry.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// The largest SQS message body we build: just under SQS's 256 KiB, so one `SendMessageBatch`
/// carries one full message, and a matcher invocation (at most 10 messages from a FIFO queue)
/// carries up to 2.5 MB of events: the more events per invocation, the fewer aggregate writes
/// per event (docs/SCALE.md).
pub const MAX_MESSAGE_BYTES: usize = 250 * 1024;
/// How long an event record (and so its idempotency key) is kept: 40 days. An event may be at
/// most [`MAX_AGE`] (35 days) old when it arrives, so a resend after the record expired is
/// refused at the door (`timestamp_too_old`) and can never count twice.
pub const RECORD_RETENTION: Duration = Duration::days(40);

/// The client's key that makes resending an event safe; unique per customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1 to 255 characters without control characters.
    pub fn parse(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty() || raw.chars().count() > 255 || raw.chars().any(char::is_control) {
            return Err(Error::unprocessable(
                "invalid_idempotency_key",
                "idempotencyKey must be 1 to 255 characters without control characters",
            ));
        }
        Ok(Self(raw))
    }

    /// A random key (UUIDv4) for events sent without one.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// The key as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        Self::parse(raw)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

/// Whom an event is for: our id, or the business's own.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum CustomerRef {
    /// `customerId`.
    Id(CustomerId),
    /// `externalCustomerId`.
    External(ExternalCustomerId),
}

/// A validated usage event, as queued for the matcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageEvent {
    /// What happened (meters listen to event names).
    pub event_name: EventName,
    /// For whom.
    pub customer: CustomerRef,
    /// Makes resending safe.
    pub idempotency_key: IdempotencyKey,
    /// When it happened (decides the billing period).
    pub timestamp: DateTime<Utc>,
    /// Values meters read (aggregation key, group keys, filters).
    #[serde(default)]
    pub properties: BTreeMap<String, UsageValue>,
    /// When the API accepted it.
    pub received_at: DateTime<Utc>,
}

/// An event as sent: the API's camelCase names, and the guide's snake_case spellings as aliases
/// since users copy them from it. Numbers in `properties` are read from their exact text.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventInput {
    /// Required.
    #[serde(alias = "event_name")]
    pub event_name: Option<String>,
    /// Exactly one of this…
    #[serde(alias = "customer_id")]
    pub customer_id: Option<String>,
    /// …and this.
    #[serde(alias = "external_customer_id")]
    pub external_customer_id: Option<String>,
    /// A UUIDv4 is generated when omitted.
    #[serde(alias = "idempotency_key")]
    pub idempotency_key: Option<String>,
    /// RFC 3339; now when omitted.
    pub timestamp: Option<String>,
    /// String, number or boolean values.
    pub properties: Option<HashMap<String, Box<RawValue>>>,
}

impl EventInput {
    /// Checks one event against the rules, at `now`.
    pub fn parse(self, now: DateTime<Utc>) -> Result<UsageEvent> {
        let event_name = self
            .event_name
            .ok_or_else(|| Error::invalid("missing_field", "eventName is required").at("eventName"))
            .and_then(|n| EventName::parse(n).map_err(|e| e.at("eventName")))?;
        let customer = match (self.customer_id, self.external_customer_id) {
            (Some(id), None) => CustomerRef::Id(CustomerId::parse(&id).map_err(|_| {
                Error::unprocessable(
                    "invalid_customer_id",
                    format!("'{id}' is not a customer id (cus_…)"),
                )
                .at("customerId")
            })?),
            (None, Some(external)) => CustomerRef::External(
                ExternalCustomerId::parse(external).map_err(|e| e.at("externalCustomerId"))?,
            ),
            (None, None) => {
                return Err(Error::invalid(
                    "missing_field",
                    "give the customer as customerId or externalCustomerId",
                )
                .at("customerId"));
            }
            (Some(_), Some(_)) => {
                return Err(Error::unprocessable(
                    "ambiguous_customer",
                    "give customerId or externalCustomerId, not both",
                )
                .at("externalCustomerId"));
            }
        };
        let idempotency_key = match self.idempotency_key {
            Some(k) => IdempotencyKey::parse(k).map_err(|e| e.at("idempotencyKey"))?,
            None => IdempotencyKey::generate(),
        };
        let timestamp = match self.timestamp {
            None => now,
            Some(raw) => {
                let t = DateTime::parse_from_rfc3339(&raw)
                    .map_err(|_| {
                        Error::unprocessable(
                            "invalid_timestamp",
                            format!(
                                "'{raw}' is not an RFC 3339 timestamp such as 2026-11-24T10:00:00Z"
                            ),
                        )
                        .at("timestamp")
                    })?
                    .with_timezone(&Utc);
                if t > now + MAX_FUTURE {
                    return Err(Error::unprocessable(
                        "timestamp_in_future",
                        "timestamp is more than 1 hour in the future",
                    )
                    .at("timestamp"));
                }
                if t < now - MAX_AGE {
                    return Err(Error::unprocessable(
                        "timestamp_too_old",
                        "timestamp is more than 35 days in the past",
                    )
                    .at("timestamp"));
                }
                t
            }
        };
        let raw_properties = self.properties.unwrap_or_default();
        if raw_properties.len() > MAX_PROPERTIES {
            return Err(Error::unprocessable(
                "too_many_properties",
                format!("at most {MAX_PROPERTIES} properties"),
            )
            .at("properties"));
        }
        let mut properties = BTreeMap::new();
        for (key, raw) in raw_properties {
            if key.is_empty() || key.chars().count() > 128 {
                return Err(Error::unprocessable(
                    "invalid_property_key",
                    "property names are 1 to 128 characters",
                )
                .at(format!("properties.{key}")));
            }
            let value =
                UsageValue::from_raw(&raw).map_err(|e| e.at(format!("properties.{key}")))?;
            if let Some(value) = value {
                if let UsageValue::Text(text) = &value
                    && text.chars().count() > 1024
                {
                    return Err(Error::unprocessable(
                        "invalid_usage_value",
                        "text property values are at most 1024 characters",
                    )
                    .at(format!("properties.{key}")));
                }
                properties.insert(key, value);
            }
        }
        Ok(UsageEvent {
            event_name,
            customer,
            idempotency_key,
            timestamp,
            properties,
            received_at: now,
        })
    }
}

/// How many lanes usage flows through. Each message travels one lane (the FIFO queue's
/// message group); a lane's messages are matched in order, one batch at a time, and each
/// invoice keeps one aggregate per lane. So up to this many matchers work on one customer's
/// invoice at once without ever writing the same item (docs/SCALE.md). Changing it is a
/// migration: closing an invoice seals exactly these lanes.
pub const LANES: u8 = 16;

/// A lane (see [`LANES`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lane(u8);

impl Lane {
    /// The lane a message travels, from its nonce: spread evenly, and the same on every retry.
    pub fn of(nonce: &MessageNonce) -> Self {
        let hash = nonce
            .0
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
        Self((hash % u32::from(LANES)) as u8)
    }

    /// Lane `n` (taken modulo [`LANES`]).
    pub fn new(n: u8) -> Self {
        Self(n % LANES)
    }

    /// Every lane.
    pub fn all() -> impl Iterator<Item = Lane> {
        (0..LANES).map(Lane)
    }

    /// The lane's number.
    pub fn number(self) -> u8 {
        self.0
    }

    /// The FIFO message group of the lane.
    pub fn group(self) -> String {
        format!("lane-{:02}", self.0)
    }
}

/// One message's identity, chosen when it is sent and carried in its body: a record written
/// for the message names it, so a redelivery of the message recognises its own records, and
/// a lane's aggregate names the last message it includes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MessageNonce(String);

impl MessageNonce {
    /// A fresh random nonce.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().simple().to_string())
    }

    /// A stored nonce.
    pub fn parse(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty() || raw.len() > 64 || !raw.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::internal(format!("'{raw}' is not a message nonce")));
        }
        Ok(Self(raw))
    }

    /// The nonce as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The body of one SQS message: a version, so the format can evolve, the message's nonce, and
/// the events.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueuedEvents {
    /// Format version (2: with a nonce).
    pub v: u8,
    /// The message's identity.
    pub nonce: MessageNonce,
    /// The events.
    pub events: Vec<UsageEvent>,
}

/// The message format this code writes and reads.
pub const MESSAGE_VERSION: u8 = 2;

/// One message ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// The JSON body ([`QueuedEvents`]).
    pub body: String,
    /// Its nonce (the FIFO deduplication id, so a retried send is one message).
    pub nonce: MessageNonce,
    /// Its lane (the FIFO message group).
    pub lane: Lane,
    /// Which of the packed events it carries (indexes into the input).
    pub events: Vec<usize>,
}

/// Packs events into message bodies of at most `MAX_MESSAGE_BYTES`, keeping their order, each
/// with a fresh nonce and its lane. Returns which events each carries, so a failed send can be
/// reported per event.
pub fn pack(events: &[UsageEvent]) -> Result<Vec<OutgoingMessage>> {
    let envelope = |nonce: &MessageNonce| {
        format!(
            r#"{{"v":{MESSAGE_VERSION},"nonce":"{}","events":[]}}"#,
            nonce.as_str()
        )
        .len()
    };
    let mut messages = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut indexes: Vec<usize> = Vec::new();
    let mut nonce = MessageNonce::generate();
    let mut size = envelope(&nonce);
    let flush = |current: &mut Vec<String>,
                 indexes: &mut Vec<usize>,
                 nonce: &MessageNonce,
                 messages: &mut Vec<OutgoingMessage>| {
        if !current.is_empty() {
            messages.push(OutgoingMessage {
                body: format!(
                    r#"{{"v":{MESSAGE_VERSION},"nonce":"{}","events":[{}]}}"#,
                    nonce.as_str(),
                    current.join(",")
                ),
                nonce: nonce.clone(),
                lane: Lane::of(nonce),
                events: std::mem::take(indexes),
            });
            current.clear();
        }
    };
    for (i, event) in events.iter().enumerate() {
        let json = serde_json::to_string(event).map_err(|e| Error::internal(e.to_string()))?;
        if size + json.len() + 1 > MAX_MESSAGE_BYTES && !current.is_empty() {
            flush(&mut current, &mut indexes, &nonce, &mut messages);
            nonce = MessageNonce::generate();
            size = envelope(&nonce);
        }
        size += json.len() + 1;
        current.push(json);
        indexes.push(i);
    }
    flush(&mut current, &mut indexes, &nonce, &mut messages);
    Ok(messages)
}

/// Why an event was or was not billed. Every event gets exactly one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Counted on the invoice of its period.
    Matched,
    /// Its invoice was already closed: counted on a "late usage" line of the next open one.
    Late,
    /// No active meter listens to its event name (or every listening meter filtered it out).
    Unmatched,
    /// The customer does not exist.
    UnknownCustomer,
    /// No contract of the customer covers its timestamp for a listening meter.
    NoContract,
    /// Late, and the contract has no open invoice left to carry it.
    NoOpenInvoice,
    /// The meter's aggregation key is missing from the properties.
    MissingProperty,
    /// The aggregation key's value is not a non-negative number.
    InvalidProperty,
    /// Its dimension combination has no rate, and the price has no fallback.
    NoRate,
}

impl EventStatus {
    /// Whether the event was billed somewhere.
    pub fn is_billed(self) -> bool {
        matches!(self, Self::Matched | Self::Late)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Matched => "matched",
            Self::Late => "late",
            Self::Unmatched => "unmatched",
            Self::UnknownCustomer => "unknown_customer",
            Self::NoContract => "no_contract",
            Self::NoOpenInvoice => "no_open_invoice",
            Self::MissingProperty => "missing_property",
            Self::InvalidProperty => "invalid_property",
            Self::NoRate => "no_rate",
        }
    }

    /// A sentence for people saying what happened to the event.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Matched => "counted on the invoice of its period",
            Self::Late => "its invoice was closed; counted as late usage on the next open invoice",
            Self::Unmatched => {
                "no active meter listens to this event name (or its filters exclude the event)"
            }
            Self::UnknownCustomer => "no customer with this id",
            Self::NoContract => "no contract of the customer covers this timestamp for the meter",
            Self::NoOpenInvoice => {
                "its invoice was closed and the contract has no open invoice left"
            }
            Self::MissingProperty => {
                "the meter's aggregation key or a group key is missing from the properties"
            }
            Self::InvalidProperty => "the aggregation key's value is not a non-negative number",
            Self::NoRate => "no rate for this dimension combination, and the price has no fallback",
        }
    }

    /// Accepts a wire name.
    pub fn parse(raw: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|_| {
            Error::invalid("invalid_status", format!("'{raw}' is not an event status")).at("status")
        })
    }
}

/// Where one meter's reading of an event landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeterMatch {
    /// The meter.
    pub meter_id: MeterId,
    /// The outcome for this meter.
    pub status: EventStatus,
    /// The invoice counted on, when billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice_id: Option<InvoiceId>,
    /// The line counted on, when billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_id: Option<LineId>,
}

/// What is kept about an event after matching: the event itself, the outcome and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRecord {
    /// The event as received (shared with the matcher's pending batch, which keeps it until the
    /// record commits, so building a record does not copy it).
    pub event: std::sync::Arc<UsageEvent>,
    /// The customer it resolved to, if it exists. (The DynamoDB adapter does not store it when
    /// the event named the customer by this id, to keep records under 1 KB.)
    #[serde(default)]
    pub customer_id: Option<CustomerId>,
    /// The overall outcome: billed if any meter billed it, else the first reason (its
    /// sentence for people is [`EventStatus::reason`], not stored: it would push every record
    /// over 1 KB and double its write cost).
    pub status: EventStatus,
    /// Per meter, where it landed.
    #[serde(default)]
    pub matches: Vec<MeterMatch>,
    /// When the matcher recorded it.
    pub processed_at: DateTime<Utc>,
    /// The message that recorded it: the one whose aggregates count it. A redelivery of that
    /// message finds its own records by this; another message with the same event finds
    /// someone else's and counts nothing.
    pub nonce: MessageNonce,
}

impl EventRecord {
    /// The key the record is stored under: its event's identity
    /// ([`crate::idempotency::usage_event`]).
    pub fn key(&self) -> String {
        crate::idempotency::usage_event(
            &self.event.customer,
            self.customer_id.as_ref(),
            &self.event.idempotency_key,
        )
    }

    /// Whose usage it is ([`crate::idempotency::usage_owner`]).
    pub fn owner(&self) -> String {
        crate::idempotency::usage_owner(&self.event.customer, self.customer_id.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn parse(json: &str) -> Result<UsageEvent> {
        serde_json::from_str::<EventInput>(json)
            .unwrap()
            .parse(now())
    }

    #[test]
    fn the_guide_s_spellings_are_accepted() {
        let e = parse(
            r#"{"customer_id":"cus_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa","event_name":"call_count","idempotency_key":"k1"}"#,
        )
        .unwrap();
        assert_eq!(e.event_name.as_str(), "call_count");
        assert_eq!(e.idempotency_key.as_str(), "k1");
        assert_eq!(e.timestamp, now());
    }

    #[test]
    fn numbers_stay_exact_and_values_keep_their_type() {
        let e = parse(
            r#"{"eventName":"llm","externalCustomerId":"acme","properties":
                {"tokens": 0.1, "big": 12345678901234567890.123456789, "model": "gpt-4", "cached": true, "none": null}}"#,
        )
        .unwrap();
        assert_eq!(
            e.properties["tokens"],
            UsageValue::Number("0.1".parse().unwrap())
        );
        assert_eq!(
            e.properties["big"],
            UsageValue::Number("12345678901234567890.123456789".parse().unwrap())
        );
        assert_eq!(e.properties["model"], UsageValue::Text("gpt-4".into()));
        assert_eq!(e.properties["cached"], UsageValue::Bool(true));
        assert!(!e.properties.contains_key("none"));
        assert_eq!(e.idempotency_key.as_str().len(), 36, "a UUID is generated");
    }

    #[test]
    fn bad_events_name_the_field() {
        let cases = [
            (
                r#"{"customerId":"cus_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#,
                "missing_field",
                "eventName",
            ),
            (r#"{"eventName":"e"}"#, "missing_field", "customerId"),
            (
                r#"{"eventName":"e","customerId":"cus_0190aaaaaaaaaaaaaaaaaaaaaaaaaaaa","externalCustomerId":"x"}"#,
                "ambiguous_customer",
                "externalCustomerId",
            ),
            (
                r#"{"eventName":"e","customerId":"acme"}"#,
                "invalid_customer_id",
                "customerId",
            ),
            (
                r#"{"eventName":"e","externalCustomerId":"x","timestamp":"yesterday"}"#,
                "invalid_timestamp",
                "timestamp",
            ),
            (
                r#"{"eventName":"e","externalCustomerId":"x","timestamp":"2026-11-24T11:00:01Z"}"#,
                "timestamp_in_future",
                "timestamp",
            ),
            (
                r#"{"eventName":"e","externalCustomerId":"x","timestamp":"2026-10-19T09:59:59Z"}"#,
                "timestamp_too_old",
                "timestamp",
            ),
            (
                r#"{"eventName":"e","externalCustomerId":"x","properties":{"a":[1]}}"#,
                "invalid_usage_value",
                "properties.a",
            ),
            (
                r#"{"eventName":"e","externalCustomerId":"x","idempotencyKey":""}"#,
                "invalid_idempotency_key",
                "idempotencyKey",
            ),
        ];
        for (json, code, param) in cases {
            let e = parse(json).unwrap_err();
            assert_eq!(
                (e.code.as_ref(), e.param.as_deref()),
                (code, Some(param)),
                "{json}"
            );
        }
        // At the edges: exactly one hour ahead and exactly 35 days back are accepted.
        assert!(
            parse(
                r#"{"eventName":"e","externalCustomerId":"x","timestamp":"2026-11-24T11:00:00Z"}"#
            )
            .is_ok()
        );
        assert!(
            parse(
                r#"{"eventName":"e","externalCustomerId":"x","timestamp":"2026-10-20T10:00:00Z"}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn packing_keeps_every_event_once_in_order_and_under_the_size_limit() {
        let event = parse(r#"{"eventName":"e","externalCustomerId":"x","properties":{"pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}"#).unwrap();
        let events = vec![event; 5_000];
        let messages = pack(&events).unwrap();
        assert!(messages.len() > 1);
        let indexes: Vec<usize> = messages.iter().flat_map(|m| m.events.clone()).collect();
        assert_eq!(indexes, (0..5_000).collect::<Vec<_>>());
        let mut nonces = std::collections::HashSet::new();
        for message in &messages {
            assert!(
                message.body.len() <= MAX_MESSAGE_BYTES,
                "{}",
                message.body.len()
            );
            let decoded: QueuedEvents = serde_json::from_str(&message.body).unwrap();
            assert_eq!(decoded.v, MESSAGE_VERSION);
            assert_eq!(decoded.events.len(), message.events.len());
            assert_eq!(decoded.nonce, message.nonce);
            assert_eq!(Lane::of(&decoded.nonce), message.lane);
            assert!(nonces.insert(message.nonce.clone()), "nonces are fresh");
        }
    }
}
