//! Per event and meter: the customer's contract covering the event's day for that meter, the
//! period, the price, the dimension combination and the value, or the reason it cannot bill.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::{LaneMessage, Matcher, Prepared, Reading, Target, record_key};
use crate::aggregation::{Aggregate, UsageValue};
use crate::contract::ContractSummary;
use crate::error::Result;
use crate::ids::CustomerId;
use crate::meter::{Meter, MeterStatus};
use crate::plan::PriceKind;
use crate::usage::{EventStatus, UsageEvent};

impl Matcher {
    /// Resolves customers, meters, contracts and plans; drops repeats within the batch (the
    /// first message carrying an event is the one to record it).
    pub(super) async fn prepare(&self, batch: &[LaneMessage]) -> Result<Vec<Prepared>> {
        let mut seen = HashSet::new();
        let mut prepared = Vec::with_capacity(batch.iter().map(|m| m.events.len()).sum());
        let mut events = Vec::with_capacity(prepared.capacity());
        for (i, m) in batch.iter().enumerate() {
            for e in &m.events {
                events.push((i, e.clone()));
            }
        }
        for (message, event) in events {
            let customer_id = self.resolve_customer(&event.customer).await?;
            let record_key = record_key(&event, customer_id.as_ref());
            if !seen.insert(record_key) {
                continue;
            }
            let (readings, unread) = match &customer_id {
                None => (Vec::new(), Some(EventStatus::UnknownCustomer)),
                Some(customer) => {
                    let meters = self.meters_for(&event).await?;
                    if meters.is_empty() {
                        (Vec::new(), Some(EventStatus::Unmatched))
                    } else {
                        let mut readings = Vec::with_capacity(meters.len());
                        for meter in meters {
                            readings.push(self.read(&event, customer, meter).await?);
                        }
                        (readings, None)
                    }
                }
            };
            prepared.push(Prepared {
                message,
                event: Arc::new(event),
                customer_id,
                readings,
                unread,
            });
        }
        Ok(prepared)
    }

    /// Active meters listening to the event's name whose filters it passes. When no meter
    /// listens at all, the catalog is re-read before concluding.
    pub(super) async fn meters_for(&self, event: &UsageEvent) -> Result<Vec<Arc<Meter>>> {
        let mut meters = self.all_meters(false).await?;
        let listens =
            |m: &Meter| m.event_name == event.event_name && m.status == MeterStatus::Active;
        if !meters.iter().any(|m| listens(m)) {
            meters = self.all_meters(true).await?;
        }
        Ok(meters
            .iter()
            .filter(|m| listens(m))
            .filter(|m| {
                m.property_filters.iter().all(|f| {
                    let value = event
                        .properties
                        .get(f.property.as_str())
                        .map(UsageValue::as_text);
                    f.passes(value.as_deref())
                })
            })
            .cloned()
            .collect())
    }

    /// One meter's reading of an event: where it bills, or why it cannot.
    pub(super) async fn read(
        &self,
        event: &UsageEvent,
        customer: &CustomerId,
        meter: Arc<Meter>,
    ) -> Result<Reading> {
        let refused = |status| Ok(Reading::Refused(meter.id.clone(), status));
        let date = event.timestamp.date_naive();
        let covers =
            |c: &&ContractSummary| c.span().contains(date) && c.meter_ids.contains(&meter.id);
        let mut index = self.index(customer, false).await?;
        if !index.iter().any(|c| covers(&c)) {
            index = self.index(customer, true).await?;
        }
        let Some(summary) = index.iter().find(covers) else {
            return refused(EventStatus::NoContract);
        };
        let contract = self.contract(&summary.id).await?;
        let plan = self.plan(&contract.plan_id).await?;
        let Some(price_index) = plan
            .prices
            .iter()
            .position(|p| p.meter_id() == Some(&meter.id))
        else {
            return refused(EventStatus::NoContract);
        };
        let price = &plan.prices[price_index];
        let Some((period_index, period)) = contract.schedule().period_containing(date) else {
            return refused(EventStatus::NoContract);
        };
        let value = meter
            .aggregation_key
            .as_ref()
            .and_then(|k| event.properties.get(k.as_str()))
            .cloned();
        if let Err(e) = Aggregate::new(meter.aggregation_type).add(value.as_ref()) {
            return refused(if e.code == "missing_value" {
                EventStatus::MissingProperty
            } else {
                EventStatus::InvalidProperty
            });
        }
        let PriceKind::Usage(usage) = &price.kind else {
            return refused(EventStatus::NoContract);
        };
        let dimensions = if usage.rate.is_dimensional() {
            let mut dims = BTreeMap::new();
            for key in &meter.group_keys {
                match event.properties.get(key.as_str()) {
                    Some(v) => {
                        dims.insert(key.as_str().to_owned(), v.as_text());
                    }
                    None => return refused(EventStatus::MissingProperty),
                }
            }
            if usage.rate.rate_for(Some(&dims)).is_none() {
                return refused(EventStatus::NoRate);
            }
            Some(dims)
        } else {
            None
        };
        let invoice_id = self.cache.invoice_id(&contract.id, period.start);
        Ok(Reading::Billable(Box::new(Target {
            invoice_id,
            price_index,
            contract,
            plan,
            meter,
            period_index,
            period,
            dimensions,
            value,
        })))
    }
}
