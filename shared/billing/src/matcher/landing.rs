//! Where a billable reading lands: its own period's invoice while open, else a "late usage"
//! line on the contract's next open invoice, labelled with the original service period.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::cache::{DERIVED_CACHE_LIMIT, lock};
use super::{Landing, Matcher, Prepared, Reading, Target};
use crate::error::Result;
use crate::ids::{InvoiceId, LineId};
use crate::invoice::{Invoice, InvoiceLine, InvoiceStatus, LineKind};
use crate::period::Period;
use crate::plan::{PriceKind, RateCard};
use crate::webhooks::events::invoice_created;

/// Lines already built, by invoice, price index (in the invoice's plan), combination and late
/// period: a line is derived (and hashed) once per warm instance, not once per event.
pub(super) type LineCache = HashMap<
    (
        InvoiceId,
        usize,
        Option<BTreeMap<String, String>>,
        Option<Period>,
    ),
    Arc<InvoiceLine>,
>;

/// What the matcher knows of invoices' status in one pass.
pub(super) type Statuses = HashMap<InvoiceId, InvoiceStatus>;

impl Matcher {
    /// Reads the status of every invoice the billable readings point at, creating the ones a
    /// rolling contract has not generated yet.
    pub(super) async fn statuses(
        &self,
        pending: &[Prepared],
        now: DateTime<Utc>,
    ) -> Result<Statuses> {
        let mut wanted: HashMap<InvoiceId, &Target> = HashMap::new();
        for p in pending {
            for r in &p.readings {
                if let Reading::Billable(t) = r {
                    wanted.entry(t.invoice_id()).or_insert(t);
                }
            }
        }
        let ids: Vec<InvoiceId> = wanted.keys().cloned().collect();
        let mut statuses = self.usage.invoice_statuses(&ids).await?;
        let missing: Vec<&Target> = ids
            .iter()
            .filter(|id| !statuses.contains_key(*id))
            .filter_map(|id| wanted.get(id).copied())
            .collect();
        if !missing.is_empty() {
            for t in &missing {
                let draft = Invoice::draft(&t.contract, &t.plan, t.period, now);
                self.usage
                    .ensure_invoice(&draft, &invoice_created(&draft, now))
                    .await?;
            }
            let ids: Vec<InvoiceId> = missing.iter().map(|t| t.invoice_id()).collect();
            statuses.extend(self.usage.invoice_statuses(&ids).await?);
        }
        Ok(statuses)
    }

    /// Decides, per event and reading, which invoice line it lands on: its own period's
    /// invoice when open, else a late line on the contract's next open invoice.
    pub(super) async fn land(
        &self,
        pending: &[Prepared],
        statuses: &mut Statuses,
        now: DateTime<Utc>,
    ) -> Result<Vec<Vec<Option<Landing>>>> {
        let mut landings = Vec::with_capacity(pending.len());
        for p in pending {
            let mut per_reading = Vec::with_capacity(p.readings.len());
            for r in &p.readings {
                let Reading::Billable(t) = r else {
                    per_reading.push(None);
                    continue;
                };
                per_reading.push(self.land_one(t, statuses, now).await?);
            }
            landings.push(per_reading);
        }
        Ok(landings)
    }

    /// Where one reading lands (see [`Self::land`]).
    pub(super) async fn land_one(
        &self,
        t: &Target,
        statuses: &mut Statuses,
        now: DateTime<Utc>,
    ) -> Result<Option<Landing>> {
        let own = t.invoice_id();
        if statuses.get(&own).is_some_and(|s| s.is_open()) {
            return Ok(Some(Landing {
                line: line_for(&self.cache.lines, t, &own, None),
                invoice_id: own,
                late: false,
            }));
        }
        Ok(self
            .next_open(t, statuses, now)
            .await?
            .map(|invoice_id| Landing {
                line: line_for(&self.cache.lines, t, &invoice_id, Some(t.period)),
                invoice_id,
                late: true,
            }))
    }

    /// The first open invoice after the target's period on the same contract. Later periods
    /// count whether or not they have started: a run that closed an invoice ahead of its day
    /// leaves the next period's draft open, and late usage belongs there. A period with no
    /// invoice yet gets its draft once it has started; one that has not started and has no
    /// invoice ends the search (the contract has no open invoice left).
    pub(super) async fn next_open(
        &self,
        t: &Target,
        statuses: &mut Statuses,
        now: DateTime<Utc>,
    ) -> Result<Option<InvoiceId>> {
        let schedule = t.contract.schedule();
        let today = now.date_naive();
        let mut index = t.period_index + 1;
        while let Some(period) = schedule.period(index) {
            let id = Invoice::id_for(&t.contract.id, period.start);
            if !statuses.contains_key(&id) {
                let mut found = self
                    .usage
                    .invoice_statuses(std::slice::from_ref(&id))
                    .await?;
                if found.is_empty() && period.start <= today {
                    let draft = Invoice::draft(&t.contract, &t.plan, period, now);
                    self.usage
                        .ensure_invoice(&draft, &invoice_created(&draft, now))
                        .await?;
                    found = self
                        .usage
                        .invoice_statuses(std::slice::from_ref(&id))
                        .await?;
                }
                if found.is_empty() {
                    break;
                }
                statuses.extend(found);
            }
            if statuses.get(&id).is_some_and(|s| s.is_open()) {
                return Ok(Some(id));
            }
            index += 1;
        }
        Ok(None)
    }
}

/// The line a target lands on: the price's line (a dimensional price: the combination's line),
/// or, for late usage, a line of its own labelled with the original period.
pub(super) fn line_for(
    cache: &Mutex<LineCache>,
    t: &Target,
    invoice: &InvoiceId,
    late_from: Option<Period>,
) -> Arc<InvoiceLine> {
    let mut lines = lock(cache);
    if lines.len() > DERIVED_CACHE_LIMIT {
        lines.clear();
    }
    lines
        .entry((
            invoice.clone(),
            t.price_index,
            t.dimensions.clone(),
            late_from,
        ))
        .or_insert_with(|| Arc::new(build_line(t, invoice, late_from)))
        .clone()
}

fn build_line(t: &Target, invoice: &InvoiceId, late_from: Option<Period>) -> InvoiceLine {
    let price = t.price();
    let rate = match &price.kind {
        PriceKind::Usage(usage) => t.contract.rate_with_override(&price.id, &usage.rate),
        PriceKind::Flat { flat_amount } => RateCard::PerUnit(flat_amount.clone()),
    };
    let dims = t.dimensions.as_ref().map(|d| {
        d.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let mut name = format!("{invoice}:{}", price.id);
    let mut description = price.description.clone();
    if let Some(dims) = &dims {
        name.push_str(&format!(":{dims}"));
        description.push_str(&format!(" ({dims})"));
    }
    if let Some(period) = late_from {
        name.push_str(&format!(":late:{}", period.start));
        description.push_str(&format!(
            " — late usage for {} to {}",
            period.start, period.end
        ));
    }
    InvoiceLine {
        id: LineId::derive(&name),
        price_id: price.id.clone(),
        description,
        kind: LineKind::Usage {
            meter_id: t.meter.id.clone(),
            aggregation: t.meter.aggregation_type,
            rate,
        },
        quantity: rust_decimal::Decimal::ZERO,
        dimensions: t.dimensions.clone(),
        service_period: late_from.unwrap_or(t.period),
    }
}
