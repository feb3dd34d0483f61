//! The commit: events grouped into transactions of at most [`MAX_TRANSACTION_ACTIONS`] actions,
//! each holding one record per event and one update per touched invoice (its lines' running
//! aggregates, new lines, the version it expects).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::{BatchReport, Landing, MAX_TRANSACTION_ACTIONS, Matcher, Prepared, Reading};
use crate::aggregation::Aggregate;
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{InvoiceId, LineId};
use crate::invoice::InvoiceLine;
use crate::ports::{CommitOutcome, InvoiceUsage, InvoiceWrite, UsageCommit};
use crate::usage::{EventRecord, EventStatus, MeterMatch};

impl Matcher {
    /// Reads the invoices the pending events need, then commits them in transactions of at
    /// most 100 actions. Returns after the first failed commit (the caller retries).
    pub(super) async fn apply(
        &self,
        pending: &mut Vec<Prepared>,
        report: &mut BatchReport,
    ) -> Result<()> {
        let now = self.clock.now();
        let mut states = self.load_states(pending, now).await?;
        let landings = self.land(pending, &mut states, now).await?;

        let mut start = 0;
        while start < pending.len() {
            // Grow one transaction while it stays within the action limit.
            let mut end = start;
            let mut touched: HashSet<&InvoiceId> = HashSet::new();
            while end < pending.len() {
                let mut fresh: Vec<&InvoiceId> = Vec::new();
                for l in landings[end].iter().flatten() {
                    if !touched.contains(&l.invoice_id) && !fresh.contains(&&l.invoice_id) {
                        fresh.push(&l.invoice_id);
                    }
                }
                let actions = (end + 1 - start) + touched.len() + fresh.len();
                if end > start && actions > MAX_TRANSACTION_ACTIONS {
                    break;
                }
                touched.extend(fresh);
                end += 1;
            }
            let commit = self.build(pending, &landings, start..end, &states, now)?;
            let outcome = match self.usage.commit(&commit).await {
                Ok(outcome) => outcome,
                Err(e) => {
                    // What this pass committed stays committed; only the rest is retried.
                    let progressed = start > 0;
                    pending.drain(..start);
                    return if progressed { Ok(()) } else { Err(e) };
                }
            };
            match outcome {
                CommitOutcome::Committed => {
                    report.transactions += 1;
                    report.write_actions += commit.records.len() + commit.invoices.len();
                    for record in &commit.records {
                        report.recorded += 1;
                        *report.by_status.entry(record.status.as_str()).or_default() += 1;
                    }
                    apply_commit(&mut states, &commit);
                    start = end;
                }
                CommitOutcome::Duplicates(indexes) => {
                    report.duplicates += indexes.len();
                    let drop: HashSet<usize> = indexes.into_iter().map(|i| start + i).collect();
                    let mut i = 0;
                    pending.retain(|_| {
                        let keep = i < start || !drop.contains(&i);
                        i += 1;
                        keep
                    });
                    pending.drain(..start);
                    return Ok(());
                }
                CommitOutcome::InvoiceMoved => {
                    // Progress made in this pass resets the failure count; none is a failure.
                    let progressed = start > 0;
                    pending.drain(..start);
                    if progressed {
                        return Ok(());
                    }
                    return Err(Error::new(
                        ErrorKind::Conflict,
                        "invoice_moved",
                        "an invoice changed while matching; re-reading",
                    ));
                }
            }
        }
        pending.clear();
        Ok(())
    }

    /// The commit for events `range`, built on `states` without copying whole invoices: only
    /// new lines and the aggregates of touched lines are carried.
    pub(super) fn build(
        &self,
        pending: &[Prepared],
        landings: &[Vec<Option<Landing>>],
        range: std::ops::Range<usize>,
        states: &HashMap<InvoiceId, InvoiceUsage>,
        now: DateTime<Utc>,
    ) -> Result<UsageCommit> {
        struct Draft<'a> {
            base: &'a InvoiceUsage,
            new_lines: Vec<InvoiceLine>,
            touched: Vec<LineId>,
            aggregates: HashMap<LineId, Aggregate>,
        }
        let mut drafts: HashMap<&InvoiceId, Draft<'_>> = HashMap::new();
        let mut records = Vec::with_capacity(range.len());
        for i in range {
            let p = &pending[i];
            let mut matches = Vec::with_capacity(p.readings.len());
            for (reading, landing) in p.readings.iter().zip(&landings[i]) {
                let (t, landing) = match (reading, landing) {
                    (Reading::Refused(meter, status), _) => {
                        matches.push(MeterMatch {
                            meter_id: meter.clone(),
                            status: *status,
                            invoice_id: None,
                            line_id: None,
                        });
                        continue;
                    }
                    (Reading::Billable(t), None) => {
                        matches.push(MeterMatch {
                            meter_id: t.meter.id.clone(),
                            status: EventStatus::NoOpenInvoice,
                            invoice_id: None,
                            line_id: None,
                        });
                        continue;
                    }
                    (Reading::Billable(t), Some(landing)) => (t, landing),
                };
                let draft = match drafts.get_mut(&landing.invoice_id) {
                    Some(d) => d,
                    None => {
                        let base = states.get(&landing.invoice_id).ok_or_else(|| {
                            Error::internal(format!(
                                "invoice {} was not loaded",
                                landing.invoice_id
                            ))
                        })?;
                        drafts.entry(&landing.invoice_id).or_insert(Draft {
                            base,
                            new_lines: Vec::new(),
                            touched: Vec::new(),
                            aggregates: HashMap::new(),
                        })
                    }
                };
                let line_id = &landing.line.id;
                let known = draft.base.line_ids.contains(line_id)
                    || draft.new_lines.iter().any(|l| &l.id == line_id);
                if !known {
                    draft.new_lines.push(InvoiceLine::clone(&landing.line));
                }
                if !draft.aggregates.contains_key(line_id) {
                    let start = draft
                        .base
                        .aggregates
                        .get(line_id)
                        .cloned()
                        .unwrap_or_else(|| Aggregate::new(t.meter.aggregation_type));
                    draft.aggregates.insert(line_id.clone(), start);
                    draft.touched.push(line_id.clone());
                }
                if let Some(aggregate) = draft.aggregates.get_mut(line_id) {
                    aggregate.add(t.value.as_ref())?;
                }
                matches.push(MeterMatch {
                    meter_id: t.meter.id.clone(),
                    status: if landing.late {
                        EventStatus::Late
                    } else {
                        EventStatus::Matched
                    },
                    invoice_id: Some(landing.invoice_id.clone()),
                    line_id: Some(line_id.clone()),
                });
            }
            let status = overall(&matches, p.unread);
            records.push(EventRecord {
                event: p.event.clone(),
                customer_id: p.customer_id.clone(),
                status,
                matches,
                processed_at: now,
            });
        }
        let mut invoices: Vec<InvoiceWrite> = drafts
            .into_iter()
            .map(|(id, mut draft)| InvoiceWrite {
                invoice_id: id.clone(),
                expected_version: draft.base.version,
                aggregates: draft
                    .touched
                    .iter()
                    .filter_map(|line| draft.aggregates.remove(line).map(|a| (line.clone(), a)))
                    .collect(),
                new_lines: draft.new_lines,
                updated_at: now,
            })
            .collect();
        invoices.sort_by(|a, b| a.invoice_id.cmp(&b.invoice_id));
        Ok(UsageCommit { invoices, records })
    }
}

/// Brings the states read before a commit up to date with it, so the batch's next transaction
/// builds on what is now stored (and expects the new version).
fn apply_commit(states: &mut HashMap<InvoiceId, InvoiceUsage>, commit: &UsageCommit) {
    for write in &commit.invoices {
        let Some(state) = states.get_mut(&write.invoice_id) else {
            continue;
        };
        state
            .line_ids
            .extend(write.new_lines.iter().map(|l| l.id.clone()));
        for (line, aggregate) in &write.aggregates {
            state.aggregates.insert(line.clone(), aggregate.clone());
        }
        state.version = write.expected_version + 1;
        state.status = crate::invoice::InvoiceStatus::InProgress;
    }
}

/// The event's overall outcome: billed if any meter billed it, else the first reason.
fn overall(matches: &[MeterMatch], unread: Option<EventStatus>) -> EventStatus {
    if let Some(status) = unread {
        return status;
    }
    matches
        .iter()
        .find(|m| m.status == EventStatus::Matched)
        .or_else(|| matches.iter().find(|m| m.status == EventStatus::Late))
        .or_else(|| matches.first())
        .map(|m| m.status)
        .unwrap_or(EventStatus::Unmatched)
}
