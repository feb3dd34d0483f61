//! Which webhook events a change causes, decided from the state before and after, in one place
//! per resource, so no caller has to remember to emit them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::contract::{Contract, ContractStatus, NewContract};
use crate::customer::Customer;
use crate::ids::{ContractId, CustomerId, InvoiceId, WebhookEventId};
use crate::invoice::{Invoice, InvoiceStatus, PricedInvoice};
use crate::usage::{EventRecord, EventStatus};

use super::EventType;

/// What an event is about: a pointer, resolved to the resource when the event is dispatched
/// (so an outbox entry stays small and adds little to the write that causes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Subject {
    /// A customer.
    Customer {
        /// Which.
        id: CustomerId,
    },
    /// A contract.
    Contract {
        /// Which.
        id: ContractId,
    },
    /// An invoice.
    Invoice {
        /// Which.
        id: InvoiceId,
    },
    /// Usage events of one customer recorded with one unbillable outcome in one minute; the
    /// count and the first such event are kept with the outbox entry.
    #[serde(rename_all = "camelCase")]
    Unbillable {
        /// The events' owner: our customer id, or the reference as sent when unknown.
        owner: String,
        /// The outcome.
        status: EventStatus,
        /// The start of the minute.
        window_start: DateTime<Utc>,
    },
}

/// One outgoing event as written with its change: the id receivers de-duplicate by, the type,
/// the subject, and when it happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingEvent {
    /// Stable across attempts and endpoints.
    pub id: WebhookEventId,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// To what.
    pub subject: Subject,
    /// When.
    pub created_at: DateTime<Utc>,
}

impl OutgoingEvent {
    /// A new event with a fresh id.
    pub fn new(event_type: EventType, subject: Subject, at: DateTime<Utc>) -> Self {
        Self {
            id: WebhookEventId::generate(),
            event_type,
            subject,
            created_at: at,
        }
    }

    fn invoice(event_type: EventType, id: &InvoiceId, at: DateTime<Utc>) -> Self {
        Self::new(event_type, Subject::Invoice { id: id.clone() }, at)
    }

    fn customer(event_type: EventType, customer: &Customer, at: DateTime<Utc>) -> Self {
        let id = customer.id.clone();
        Self::new(event_type, Subject::Customer { id }, at)
    }

    fn contract(event_type: EventType, contract: &Contract, at: DateTime<Utc>) -> Self {
        let id = contract.id.clone();
        Self::new(event_type, Subject::Contract { id }, at)
    }
}

/// Whether `next` is `previous` but for its update time (`keep_time` copies `previous`'s onto
/// the copy of `next`): such a write tells a receiver nothing.
fn only_touched<T: Clone + PartialEq>(
    previous: &T,
    next: &T,
    keep_time: impl Fn(&mut T, &T),
) -> bool {
    let mut same = next.clone();
    keep_time(&mut same, previous);
    &same == previous
}

/// The count and first event of a coalesced `usage.unbillable`.
#[derive(Debug, Clone, PartialEq)]
pub struct UnbillableTally {
    /// Events recorded with the outcome in the window.
    pub count: u64,
    /// The first of them.
    pub first: EventRecord,
}

/// Events waiting for the dispatcher, as stored: written with their change, deleted once every
/// subscribed endpoint has its delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// The entry's key (the first event's id, or the coalescing key).
    pub key: String,
    /// The events, in the order they happened.
    pub events: Vec<OutgoingEvent>,
    /// Not dispatched before this time (the end of a coalescing window).
    pub not_before: DateTime<Utc>,
    /// For `usage.unbillable`: what the window recorded.
    pub tally: Option<UnbillableTally>,
}

impl OutboxEntry {
    /// The entry a transaction writes for `events` (`None` when there are none).
    pub fn for_events(events: &[OutgoingEvent]) -> Option<Self> {
        let first = events.first()?;
        Some(Self {
            key: first.id.to_string(),
            events: events.to_vec(),
            not_before: first.created_at,
            tally: None,
        })
    }
}

/// A resource as an event carries it: what the representation renders as `data`.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A customer.
    Customer(Box<Customer>),
    /// A contract.
    Contract(Box<Contract>),
    /// An invoice, priced, with its payment link once sent.
    Invoice {
        /// The invoice.
        invoice: Box<PricedInvoice>,
        /// The customer's payment page.
        payment_link: Option<String>,
    },
    /// Usage recorded as unbillable.
    Unbillable {
        /// The events' owner (customer id, or the reference as sent).
        owner: String,
        /// The outcome.
        status: EventStatus,
        /// The window.
        window_start: DateTime<Utc>,
        /// Its end.
        window_end: DateTime<Utc>,
        /// How many, and the first.
        tally: Box<UnbillableTally>,
    },
}

/// `customer.created`.
pub fn customer_created(customer: &Customer, at: DateTime<Utc>) -> Vec<OutgoingEvent> {
    vec![OutgoingEvent::customer(
        EventType::CustomerCreated,
        customer,
        at,
    )]
}

/// `customer.updated`, when anything but the update time changed.
pub fn customer_changed(
    previous: &Customer,
    next: &Customer,
    at: DateTime<Utc>,
) -> Vec<OutgoingEvent> {
    if only_touched(previous, next, |same, previous| {
        same.updated_at = previous.updated_at
    }) {
        return Vec::new();
    }
    vec![OutgoingEvent::customer(
        EventType::CustomerUpdated,
        next,
        at,
    )]
}

/// `contract.created` and `invoice.created` for each pre-generated invoice.
pub fn contract_created(new: &NewContract, at: DateTime<Utc>) -> Vec<OutgoingEvent> {
    let mut events = vec![OutgoingEvent::contract(
        EventType::ContractCreated,
        &new.contract,
        at,
    )];
    events.extend(
        new.invoices
            .iter()
            .map(|i| OutgoingEvent::invoice(EventType::InvoiceCreated, &i.id, at)),
    );
    events
}

/// `contract.terminated` when it was cancelled now, else `contract.updated` when anything but
/// the update time changed.
pub fn contract_changed(
    previous: &Contract,
    next: &Contract,
    at: DateTime<Utc>,
) -> Vec<OutgoingEvent> {
    if only_touched(previous, next, |same, previous| {
        same.updated_at = previous.updated_at
    }) {
        return Vec::new();
    }
    let event_type =
        if previous.status != ContractStatus::Canceled && next.status == ContractStatus::Canceled {
            EventType::ContractTerminated
        } else {
            EventType::ContractUpdated
        };
    vec![OutgoingEvent::contract(event_type, next, at)]
}

/// `invoice.created` for a draft written on its own (a new period's).
pub fn invoice_created(invoice: &Invoice, at: DateTime<Utc>) -> Vec<OutgoingEvent> {
    vec![OutgoingEvent::invoice(
        EventType::InvoiceCreated,
        &invoice.id,
        at,
    )]
}

/// What an invoice transition tells: the new status (`invoice.sent`, `.paid`, `.voided`,
/// `.refunded`), a failed automatic payment (`invoice.payment_failed`), or else, when anything
/// but the update time changed, `invoice.updated`.
pub fn invoice_changed(
    previous: &Invoice,
    next: &Invoice,
    at: DateTime<Utc>,
) -> Vec<OutgoingEvent> {
    let status_event = (previous.status != next.status)
        .then_some(match next.status {
            InvoiceStatus::Sent => Some(EventType::InvoiceSent),
            InvoiceStatus::Paid => Some(EventType::InvoicePaid),
            InvoiceStatus::Void => Some(EventType::InvoiceVoided),
            InvoiceStatus::Refunded => Some(EventType::InvoiceRefunded),
            InvoiceStatus::Drafted | InvoiceStatus::InProgress => None,
        })
        .flatten();
    let resent =
        previous.payment.resent_at != next.payment.resent_at && next.payment.resent_at.is_some();
    let failed = next.status == InvoiceStatus::Sent
        && next.payment.attempts > previous.payment.attempts
        && next.payment.last_error.is_some();
    let event_type = match (status_event, resent, failed) {
        (Some(t), _, _) => t,
        (None, true, _) => EventType::InvoiceSent,
        (None, false, true) => EventType::InvoicePaymentFailed,
        (None, false, false) => {
            if only_touched(previous, next, |same, previous| {
                same.updated_at = previous.updated_at
            }) {
                return Vec::new();
            }
            EventType::InvoiceUpdated
        }
    };
    vec![OutgoingEvent::invoice(event_type, &next.id, at)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::InvoicePayment;

    fn types(events: &[OutgoingEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    fn invoice(status: InvoiceStatus, payment: InvoicePayment) -> Invoice {
        let mut invoice: Invoice = serde_json::from_value(serde_json::json!({
            "id": InvoiceId::derive("x").as_str(),
            "customerId": CustomerId::derive("c").as_str(),
            "contractId": ContractId::derive("k").as_str(),
            "status": "SENT",
            "period": {"start": "2026-01-01", "end": "2026-02-01"},
            "invoiceDate": "2026-02-01",
            "dueDate": "2026-03-03",
            "closesOn": "2026-02-01",
            "currency": "USD",
            "autoPay": true,
            "lines": [],
            "createdAt": "2026-01-01T00:00:00Z",
            "updatedAt": "2026-01-01T00:00:00Z"
        }))
        .expect("an invoice");
        invoice.status = status;
        invoice.payment = payment;
        invoice
    }

    #[test]
    fn each_invoice_transition_tells_what_happened() {
        let at: DateTime<Utc> = "2026-02-01T00:15:00Z".parse().unwrap();
        let open = invoice(InvoiceStatus::InProgress, InvoicePayment::default());
        let sent = invoice(InvoiceStatus::Sent, InvoicePayment::default());
        let paid = invoice(InvoiceStatus::Paid, InvoicePayment::default());
        assert_eq!(types(&invoice_changed(&open, &sent, at)), ["invoice.sent"]);
        assert_eq!(types(&invoice_changed(&sent, &paid, at)), ["invoice.paid"]);
        let void = invoice(InvoiceStatus::Void, InvoicePayment::default());
        assert_eq!(
            types(&invoice_changed(&sent, &void, at)),
            ["invoice.voided"]
        );
        let refunded = invoice(InvoiceStatus::Refunded, InvoicePayment::default());
        assert_eq!(
            types(&invoice_changed(&paid, &refunded, at)),
            ["invoice.refunded"]
        );
        let failed = invoice(
            InvoiceStatus::Sent,
            InvoicePayment {
                attempts: 1,
                last_error: Some("card declined".into()),
                ..Default::default()
            },
        );
        assert_eq!(
            types(&invoice_changed(&sent, &failed, at)),
            ["invoice.payment_failed"]
        );
        let resent = invoice(
            InvoiceStatus::Sent,
            InvoicePayment {
                resent_at: Some(at),
                ..Default::default()
            },
        );
        assert_eq!(
            types(&invoice_changed(&sent, &resent, at)),
            ["invoice.sent"]
        );
        let drafted = invoice(InvoiceStatus::Drafted, InvoicePayment::default());
        assert_eq!(
            types(&invoice_changed(&drafted, &open, at)),
            ["invoice.updated"]
        );
        let mut touched = sent.clone();
        touched.updated_at = at;
        assert!(
            invoice_changed(&sent, &touched, at).is_empty(),
            "only the time moved"
        );
    }

    #[test]
    fn an_event_keeps_its_id_through_storage() {
        let event = OutgoingEvent::new(
            EventType::InvoicePaid,
            Subject::Invoice {
                id: InvoiceId::derive("x"),
            },
            "2026-02-01T00:15:00Z".parse().unwrap(),
        );
        let stored = serde_json::to_string(&event).unwrap();
        assert!(stored.contains("\"type\":\"invoice.paid\""), "{stored}");
        let back: OutgoingEvent = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, event);
    }
}
