//! The JSON representation of each resource, one file each: what its GET returns, and what a
//! webhook event carries as `data` ([`JsonRepresentation`]), so the two never differ.

mod customer;
mod event;
mod invoice;

pub use customer::CustomerView;
pub use event::EventView;
pub use invoice::{InvoiceView, LineView, PeriodView};

use billing::ports::Representation;
use billing::usage::CustomerRef;
use billing::webhooks::Resource;
use chrono::{DateTime, Utc};
use serde::Serialize;

/// Renders a webhook event's resource exactly as its GET does.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRepresentation;

/// `usage.unbillable`'s `data`: whose usage, the outcome and its reason, how many events in
/// the minute, and the first of them as `GET /v1/events` lists it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UnbillableView {
    customer_id: Option<String>,
    external_customer_id: Option<String>,
    status: billing::usage::EventStatus,
    reason: &'static str,
    count: u64,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    first_event: EventView,
}

fn to_value(view: impl Serialize) -> serde_json::Value {
    serde_json::to_value(view).unwrap_or_else(|e| {
        tracing::error!(error = %e, "a view did not serialize");
        serde_json::Value::Null
    })
}

impl Representation for JsonRepresentation {
    fn render(&self, resource: &Resource) -> serde_json::Value {
        match resource {
            Resource::Customer(c) => to_value(CustomerView::from((**c).clone())),
            Resource::Contract(c) => to_value(&**c),
            Resource::Invoice {
                invoice,
                payment_link,
            } => to_value(InvoiceView::with_link(
                (**invoice).clone(),
                payment_link.clone(),
            )),
            Resource::Unbillable {
                status,
                window_start,
                window_end,
                tally,
                ..
            } => {
                let (customer_id, external_customer_id) =
                    match (&tally.first.customer_id, &tally.first.event.customer) {
                        (Some(id), CustomerRef::External(x)) => {
                            (Some(id.to_string()), Some(x.to_string()))
                        }
                        (_, CustomerRef::Id(id)) => (Some(id.to_string()), None),
                        (None, CustomerRef::External(x)) => (None, Some(x.to_string())),
                    };
                to_value(UnbillableView {
                    customer_id,
                    external_customer_id,
                    status: *status,
                    reason: status.reason(),
                    count: tally.count,
                    window_start: *window_start,
                    window_end: *window_end,
                    first_event: EventView::from(tally.first.clone()),
                })
            }
        }
    }
}
