//! Where a billable reading lands: its own period's invoice while open, else a "late usage"
//! line on the contract's next open invoice, labelled with the original service period.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

use super::cache::{DERIVED_CACHE_LIMIT, lock};
use super::{Landing, Matcher, Prepared, Reading, Target};
use crate::error::Result;
use crate::ids::{InvoiceId, LineId};
use crate::invoice::{Invoice, InvoiceLine, LineKind};
use crate::period::Period;
use crate::plan::{PriceKind, RateCard};
use crate::ports::InvoiceUsage;

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

impl Matcher {
    /// Reads every invoice the billable readings point at, creating the ones a rolling
    /// contract has not generated yet.
    pub(super) async fn load_states(
        &self,
        pending: &[Prepared],
        now: DateTime<Utc>,
    ) -> Result<HashMap<InvoiceId, InvoiceUsage>> {
        let mut wanted: HashMap<InvoiceId, &Target> = HashMap::new();
        for p in pending {
            for r in &p.readings {
                if let Reading::Billable(t) = r {
                    wanted.entry(t.invoice_id()).or_insert(t);
                }
            }
        }
        let ids: Vec<InvoiceId> = wanted.keys().cloned().collect();
        let mut states = self.usage.invoice_states(&ids).await?;
        let missing: Vec<&Target> = ids
            .iter()
            .filter(|id| !states.contains_key(*id))
            .filter_map(|id| wanted.get(id).copied())
            .collect();
        if !missing.is_empty() {
            for t in &missing {
                self.usage
                    .ensure_invoice(&Invoice::draft(&t.contract, &t.plan, t.period, now))
                    .await?;
            }
            let ids: Vec<InvoiceId> = missing.iter().map(|t| t.invoice_id()).collect();
            states.extend(self.usage.invoice_states(&ids).await?);
        }
        Ok(states)
    }

    /// Decides, per event and reading, which invoice line it lands on: its own period's
    /// invoice when open, else a late line on the contract's next open invoice.
    pub(super) async fn land(
        &self,
        pending: &[Prepared],
        states: &mut HashMap<InvoiceId, InvoiceUsage>,
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
                let own = t.invoice_id();
                let open = states.get(&own).is_some_and(|s| s.status.is_open());
                if open {
                    per_reading.push(Some(Landing {
                        line: line_for(&self.cache.lines, t, &own, None),
                        invoice_id: own,
                        late: false,
                    }));
                    continue;
                }
                per_reading.push(
                    self.next_open(t, states, now)
                        .await?
                        .map(|invoice_id| Landing {
                            line: line_for(&self.cache.lines, t, &invoice_id, Some(t.period)),
                            invoice_id,
                            late: true,
                        }),
                );
            }
            landings.push(per_reading);
        }
        Ok(landings)
    }

    /// The first open invoice after the target's period on the same contract.
    pub(super) async fn next_open(
        &self,
        t: &Target,
        states: &mut HashMap<InvoiceId, InvoiceUsage>,
        now: DateTime<Utc>,
    ) -> Result<Option<InvoiceId>> {
        let schedule = t.contract.schedule();
        let today = now.date_naive();
        let mut index = t.period_index + 1;
        while let Some(period) = schedule.period(index) {
            if period.start > today {
                break;
            }
            let id = Invoice::id_for(&t.contract.id, period.start);
            if !states.contains_key(&id) {
                let mut found = self.usage.invoice_states(std::slice::from_ref(&id)).await?;
                if found.is_empty() {
                    self.usage
                        .ensure_invoice(&Invoice::draft(&t.contract, &t.plan, period, now))
                        .await?;
                    found = self.usage.invoice_states(std::slice::from_ref(&id)).await?;
                }
                states.extend(found);
            }
            if states.get(&id).is_some_and(|s| s.status.is_open()) {
                return Ok(Some(id));
            }
            index += 1;
        }
        Ok(None)
    }
}

/// The line a target lands on: the price's line (a dimensional price: the combination's line),
/// or, for late usage, a line of its own labelled with the original period.
fn line_for(
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
