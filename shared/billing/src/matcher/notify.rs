//! What a lane's batch tells the business's systems: `invoice.updated` for every invoice its
//! usage reached, and `usage.unbillable` per customer and outcome, both coalesced per minute
//! ([`crate::webhooks::coalesce`]). Written after the usage and before the batch is
//! acknowledged, so a matcher that dies in between writes them on the redelivery (which finds
//! its own records again); writing one twice is one event.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};

use super::Matcher;
use super::cache::lock;
use crate::error::Result;
use crate::ids::InvoiceId;
use crate::usage::{EventRecord, EventStatus};
use crate::webhooks::coalesce::{self, CoalescedEvent};

/// The invoices a batch's usage reached and its unbillable events by owner and outcome.
#[derive(Debug, Default)]
pub(super) struct Notices {
    invoices: BTreeSet<InvoiceId>,
    /// Per owner and outcome: events recorded by this invocation, and the first of them.
    unbillable: BTreeMap<(String, EventStatus), (u64, EventRecord)>,
}

impl Notices {
    /// Notes an owned record (`written_now`: recorded by this invocation, so it counts).
    pub(super) fn add(&mut self, record: &EventRecord, written_now: bool) {
        if record.status.is_billed() {
            self.invoices.extend(
                record
                    .matches
                    .iter()
                    .filter(|m| m.status.is_billed())
                    .filter_map(|m| m.invoice_id.clone()),
            );
            return;
        }
        let entry = self
            .unbillable
            .entry((record.owner(), record.status))
            .or_insert_with(|| (0, record.clone()));
        if written_now {
            entry.0 += 1;
        }
    }

    fn events(self, now: DateTime<Utc>) -> Vec<CoalescedEvent> {
        let mut events: Vec<CoalescedEvent> = self
            .invoices
            .iter()
            .map(|invoice| coalesce::invoice_usage(invoice, now))
            .collect();
        events.extend(
            self.unbillable
                .into_iter()
                .map(|((owner, status), (count, first))| {
                    coalesce::unbillable(&owner, status, count, first, now)
                }),
        );
        events
    }
}

impl Matcher {
    /// Writes the batch's coalesced events: only the types some endpoint receives (nothing
    /// without a webhook store), and each invoice's `invoice.updated` once per window per
    /// instance (`usage.unbillable` writes carry counts, so each batch adds its own).
    pub(super) async fn notify(&self, notices: Notices, now: DateTime<Utc>) -> Result<()> {
        let Some(webhooks) = &self.webhooks else {
            return Ok(());
        };
        let mut events = notices.events(now);
        if events.is_empty() {
            return Ok(());
        }
        let wanted = self.subscriptions(webhooks.as_ref()).await?;
        let window = coalesce::window_start(now);
        {
            let mut written = lock(&self.cache.coalesced);
            if written.0 != Some(window) {
                *written = (Some(window), HashSet::new());
            }
            events.retain(|e| {
                wanted.contains(&e.event.event_type)
                    && (e.unbillable.is_some() || !written.1.contains(&e.key))
            });
        }
        if events.is_empty() {
            return Ok(());
        }
        webhooks.coalesce(&events).await?;
        let mut written = lock(&self.cache.coalesced);
        if written.0 == Some(window) {
            written.1.extend(
                events
                    .into_iter()
                    .filter(|e| e.unbillable.is_none())
                    .map(|e| e.key),
            );
        }
        Ok(())
    }
}
