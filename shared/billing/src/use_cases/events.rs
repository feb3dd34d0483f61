//! Usage events: ingestion (validated, packed, enqueued for the matcher) and the records of
//! how each was matched.

use crate::customer::ExternalCustomerId;
use crate::error::{Error, Result};
use crate::ids::CustomerId;
use crate::pagination::{Page, PageRequest};
use crate::ports::{EventFilter, EventOwner};
use crate::usage::{self, CustomerRef, EventRecord, EventStatus, UsageEvent};

use super::Billing;

impl Billing {
    /// Enqueues validated events, packed many per message. Returns, per event, whether it is
    /// durably enqueued: only those may be acknowledged to the client.
    #[tracing::instrument(skip_all, fields(events = events.len()))]
    pub async fn ingest(&self, events: &[UsageEvent]) -> Result<Vec<bool>> {
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| Error::unavailable("no usage queue is configured (USAGE_QUEUE_URL)"))?;
        let messages = usage::pack(events)?;
        let sent = queue.send(&messages).await;
        let mut enqueued = vec![false; events.len()];
        for (message, ok) in messages.iter().zip(sent) {
            for &i in &message.events {
                enqueued[i] = ok;
            }
        }
        Ok(enqueued)
    }

    /// Lists event records of a customer (by our id or external id) and/or of an outcome. A
    /// reference no customer holds lists the events recorded `unknown_customer` under it.
    pub async fn events(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
        external: Option<&str>,
        status: Option<&str>,
    ) -> Result<Page<EventRecord>> {
        let owner = match (customer, external) {
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "ambiguous_customer",
                    "give customerId or externalCustomerId, not both",
                ));
            }
            (Some(id), None) => {
                let id = CustomerId::parse(id).map_err(|e| e.at("customerId"))?;
                Some(match self.customers.get(&id).await? {
                    Some(_) => EventOwner::Customer(id),
                    None => EventOwner::Unknown(CustomerRef::Id(id)),
                })
            }
            (None, Some(raw)) => {
                let external =
                    ExternalCustomerId::parse(raw).map_err(|e| e.at("externalCustomerId"))?;
                Some(match self.customers.get_by_external_id(&external).await? {
                    Some(c) => EventOwner::Customer(c.id),
                    None => EventOwner::Unknown(CustomerRef::External(external)),
                })
            }
            (None, None) => None,
        };
        let filter = EventFilter {
            customer: owner,
            status: status.map(EventStatus::parse).transpose()?,
        };
        self.usage.list_events(&filter, page).await
    }
}
