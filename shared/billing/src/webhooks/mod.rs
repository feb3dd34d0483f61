//! Outgoing webhooks: telling the business's own systems what changed, signed per the Standard
//! Webhooks specification, at least once. (Incoming webhooks from the payment provider are in
//! [`crate::provider_webhooks`].)
//!
//! How an event travels, and why none is lost:
//! 1. A change writes its events ([`OutgoingEvent`], a small pointer to the resource) into an
//!    outbox entry in the same transaction as the change itself ([`events`] decides which
//!    events a change causes). Usage is the exception: the matcher writes one coalesced entry
//!    per invoice (or per customer and reason) per minute ([`coalesce`]).
//! 2. The writer then nudges the dispatcher through its queue; a sweep re-nudges entries whose
//!    nudge was lost.
//! 3. The dispatcher ([`dispatch`]) renders each event once (`data` is the resource as its GET
//!    returns it at that moment), freezes the body in one delivery per subscribed endpoint,
//!    attempts each, and only then deletes the entry. A delivery that fails is retried on
//!    [`RetrySchedule`] (over 27 hours) until it is delivered or marked failed.

pub mod coalesce;
pub mod delivery;
pub mod dispatch;
pub mod endpoint;
pub mod event_type;
pub mod events;
#[cfg(test)]
mod tests;

pub use delivery::{Delivery, DeliveryAttempt, DeliveryStatus, RetrySchedule};
pub use dispatch::{Dispatcher, Job, Outcome, SweepReport};
pub use endpoint::{
    CreateEndpoint, EndpointUrl, EventSelection, UpdateEndpoint, UrlPolicy, WebhookEndpoint,
    WebhookSecret,
};
pub use event_type::EventType;
pub use events::{OutboxEntry, OutgoingEvent, Resource, Subject};
