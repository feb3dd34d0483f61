//! Applying one lane's batch (the rules are in the module docs of [`super`]): land every
//! reading, write the records, take ownership, bind each owned event's usage to an invoice
//! line, claim distinct values, and write each touched invoice's share in this lane, skipping
//! the messages a share already includes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::notify::Notices;
use super::tallying::Counted;
use super::{BatchReport, Landing, LaneMessage, Matcher, Prepared, Reading, Target};
use crate::aggregation::{Aggregate, Aggregation};
use crate::error::{Error, Result};
use crate::ids::{InvoiceId, LineId};
use crate::invoice::{InvoiceLine, InvoiceStatus};
use crate::lanes::{LaneKey, LaneLine, UsageLane};
use crate::ports::{RecordPut, ValueClaim};
use crate::usage::{EventRecord, EventStatus, Lane, MeterMatch};

/// An owned event: its place in `pending`, its record as it stands, and whether this
/// invocation wrote it (rather than an earlier delivery of its message).
struct Owned {
    pending: usize,
    record: EventRecord,
    written_now: bool,
}

/// One reading of an owned event, bound for a line of a lane's share.
struct Contribution {
    /// Which message of the batch counts it.
    message: usize,
    target: Arc<Target>,
    landing: Landing,
}

impl Matcher {
    /// One pass over a lane's batch. Writes are accumulated in `report`, and the keys of the
    /// records this invocation wrote in `mine`; returns how the pass found the events (recorded
    /// by this invocation, redelivered, duplicates). An error means the pass must be repeated
    /// (it is idempotent: what it wrote, it finds again).
    pub(super) async fn apply(
        &self,
        lane: Lane,
        batch: &[LaneMessage],
        pending: &[Prepared],
        report: &mut BatchReport,
        known: &mut HashMap<String, RecordPut>,
    ) -> Result<(BatchReport, Notices)> {
        let now = self.clock.now();
        let mut statuses = self.statuses(pending, now).await?;
        let landings = self.land(pending, &mut statuses, now).await?;
        let (owned, found) = self
            .record(batch, pending, &landings, now, report, known)
            .await?;
        let drafted: Vec<InvoiceId> = statuses
            .iter()
            .filter(|(_, status)| **status == InvoiceStatus::Drafted)
            .map(|(id, _)| id.clone())
            .collect();

        // Each owned event's billed readings, bound for the line its record names (re-landed
        // when that invoice closed before the usage reached it).
        let mut keys: BTreeSet<LaneKey> = BTreeSet::new();
        for o in &owned {
            for m in o.record.matches.iter().filter(|m| m.status.is_billed()) {
                if let Some(invoice) = &m.invoice_id {
                    keys.insert(key(invoice, lane));
                }
            }
        }
        let mut lanes = self.read_lanes(&keys).await?;
        let mut contributions = Vec::new();
        let mut relabelled: Vec<EventRecord> = Vec::new();
        for o in &owned {
            let p = &pending[o.pending];
            let mut record = o.record.clone();
            let mut moved = false;
            for (reading, m) in p.readings.iter().zip(record.matches.iter_mut()) {
                let (Reading::Billable(t), Some(invoice)) = (reading, m.invoice_id.clone()) else {
                    continue;
                };
                if !m.status.is_billed() {
                    continue;
                }
                let share = lanes.get(&key(&invoice, lane));
                if share.is_some_and(|s| includes(s, batch, p.message)) {
                    continue; // counted by an earlier pass
                }
                let open = statuses.get(&invoice).is_some_and(|s| s.is_open())
                    && !share.is_some_and(|s| s.sealed);
                let landing = if open {
                    let late = m.status == EventStatus::Late;
                    let line = super::landing::line_for(
                        &self.cache.lines,
                        t,
                        &invoice,
                        late.then_some(t.period),
                    );
                    Landing {
                        invoice_id: invoice,
                        line,
                        late,
                    }
                } else {
                    // The invoice closed (and sealed its share) before this usage reached it:
                    // it goes to the next open invoice, and the record says so.
                    statuses.remove(&invoice);
                    statuses.extend(self.usage.invoice_statuses(&[invoice]).await?);
                    moved = true;
                    match self.land_one(t, &mut statuses, now).await? {
                        Some(landing) => {
                            *m = billed_match(t, &landing);
                            landing
                        }
                        None => {
                            *m = MeterMatch {
                                meter_id: t.meter.id.clone(),
                                status: EventStatus::NoOpenInvoice,
                                invoice_id: None,
                                line_id: None,
                            };
                            continue;
                        }
                    }
                };
                contributions.push(Contribution {
                    message: p.message,
                    target: Arc::new((**t).clone()),
                    landing,
                });
            }
            if moved {
                record.status = super::overall(&record.matches, p.unread);
                relabelled.push(record);
            }
        }
        for record in &relabelled {
            self.usage.relabel_record(record).await?;
            report.relabels += 1;
            // The next pass reads this record as it now stands.
            known.insert(record.key(), RecordPut::Exists(Box::new(record.clone())));
        }
        let mut notices = Notices::default();
        let mut counted = Vec::with_capacity(owned.len());
        for o in &owned {
            let record = relabelled
                .iter()
                .find(|r| {
                    r.event.idempotency_key == o.record.event.idempotency_key
                        && r.key() == o.record.key()
                })
                .unwrap_or(&o.record);
            notices.add(record, o.written_now);
            counted.push(Counted {
                message: pending[o.pending].message,
                day: record.event.received_at.date_naive(),
                billed: record.status.is_billed(),
            });
        }
        let fresh: BTreeSet<LaneKey> = contributions
            .iter()
            .map(|c| key(&c.landing.invoice_id, lane))
            .filter(|k| !keys.contains(k))
            .collect();
        lanes.extend(self.read_lanes(&fresh).await?);

        let shares = self
            .shares(lane, batch, &contributions, &lanes, report)
            .await?;
        let writes: Vec<(UsageLane, UsageLane)> = shares
            .into_iter()
            .map(|(k, next)| {
                let previous = lanes
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| UsageLane::empty(k.clone()));
                (previous, next)
            })
            .collect();
        if !writes.is_empty() {
            self.write_shares(&writes, &drafted, report).await?;
        }
        self.tally(lane, batch, &counted, report).await?;
        Ok((found, notices))
    }

    /// Writes the touched shares, after marking In Progress the invoices they start.
    async fn write_shares(
        &self,
        writes: &[(UsageLane, UsageLane)],
        drafted: &[InvoiceId],
        report: &mut BatchReport,
    ) -> Result<()> {
        // An invoice receiving its first usage shows it: Drafted becomes In Progress (once;
        // its usage itself stays in the lanes).
        let started: Vec<InvoiceId> = writes
            .iter()
            .map(|(_, next)| next.key.invoice.clone())
            .filter(|id| drafted.contains(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !started.is_empty() {
            self.usage.mark_in_progress(&started).await?;
            report.status_writes += started.len();
        }
        let outcomes = self.usage.write_lanes(writes).await?;
        super::settle(
            &outcomes,
            &mut report.lane_writes,
            &mut report.conflicts,
            "lane_moved",
            "an invoice's usage share moved or was sealed while matching; re-reading",
        )
    }

    /// Writes the records of the batch; returns the events this batch owns (those written now,
    /// and those an earlier delivery or pass of one of its messages wrote, with the record as
    /// stored) and how each event was found.
    async fn record(
        &self,
        batch: &[LaneMessage],
        pending: &[Prepared],
        landings: &[Vec<Option<Landing>>],
        now: DateTime<Utc>,
        report: &mut BatchReport,
        known: &mut HashMap<String, RecordPut>,
    ) -> Result<(Vec<Owned>, BatchReport)> {
        let records: Vec<EventRecord> = pending
            .iter()
            .zip(landings)
            .map(|(p, landings)| {
                let matches: Vec<MeterMatch> = p
                    .readings
                    .iter()
                    .zip(landings)
                    .map(|(reading, landing)| match (reading, landing) {
                        (Reading::Refused(meter, status), _) => MeterMatch {
                            meter_id: meter.clone(),
                            status: *status,
                            invoice_id: None,
                            line_id: None,
                        },
                        (Reading::Billable(t), None) => MeterMatch {
                            meter_id: t.meter.id.clone(),
                            status: EventStatus::NoOpenInvoice,
                            invoice_id: None,
                            line_id: None,
                        },
                        (Reading::Billable(t), Some(landing)) => billed_match(t, landing),
                    })
                    .collect();
                EventRecord {
                    event: p.event.clone(),
                    customer_id: p.customer_id.clone(),
                    status: super::overall(&matches, p.unread),
                    matches,
                    processed_at: now,
                    nonce: batch[p.message].nonce.clone(),
                }
            })
            .collect();
        // Records an earlier pass of this invocation put are not put again: each pass makes
        // progress, however often a write fails.
        let unknown: Vec<EventRecord> = records
            .iter()
            .filter(|r| !known.contains_key(&r.key()))
            .cloned()
            .collect();
        let mut failure = None;
        for (record, put) in unknown.iter().zip(self.usage.put_records(&unknown).await) {
            match put {
                Ok(put) => {
                    if put == RecordPut::Written {
                        report.record_writes += 1;
                    }
                    known.insert(record.key(), put);
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        let mut owned = Vec::with_capacity(records.len());
        let mut found = BatchReport::default();
        for (i, record) in records.into_iter().enumerate() {
            let key = record.key();
            let record = match known.get(&key) {
                Some(RecordPut::Written) => record,
                Some(RecordPut::Exists(stored))
                    if batch.iter().any(|m| m.nonce == stored.nonce) =>
                {
                    (**stored).clone()
                }
                Some(RecordPut::Exists(_)) => {
                    found.duplicates += 1;
                    continue;
                }
                None => return Err(Error::internal(format!("record {key} was not put"))),
            };
            let written_now = matches!(known.get(&key), Some(RecordPut::Written));
            if written_now {
                found.recorded += 1;
                *found.by_status.entry(record.status.as_str()).or_default() += 1;
            } else {
                found.redelivered += 1;
            }
            owned.push(Owned {
                pending: i,
                record,
                written_now,
            });
        }
        Ok((owned, found))
    }

    /// The lanes' shares as read; missing ones are absent.
    async fn read_lanes(&self, keys: &BTreeSet<LaneKey>) -> Result<HashMap<LaneKey, UsageLane>> {
        if keys.is_empty() {
            return Ok(HashMap::new());
        }
        let keys: Vec<LaneKey> = keys.iter().cloned().collect();
        self.usage.lanes(&keys).await
    }

    /// Each touched share after this batch: the share as read, plus every contribution of a
    /// message it does not include yet, naming the batch's last message.
    async fn shares(
        &self,
        lane: Lane,
        batch: &[LaneMessage],
        contributions: &[Contribution],
        lanes: &HashMap<LaneKey, UsageLane>,
        report: &mut BatchReport,
    ) -> Result<BTreeMap<LaneKey, UsageLane>> {
        let last = batch
            .last()
            .map(|m| m.nonce.clone())
            .ok_or_else(|| Error::internal("an empty batch"))?;
        let mut shares: BTreeMap<LaneKey, UsageLane> = BTreeMap::new();
        // Distinct values of UNIQUE_COUNT lines, by line: each with the first message of the
        // batch that saw it (the one to claim it).
        let mut candidates: BTreeMap<(InvoiceId, LineId), BTreeMap<String, usize>> =
            BTreeMap::new();
        for c in contributions {
            let k = key(&c.landing.invoice_id, lane);
            let share = shares.entry(k.clone()).or_insert_with(|| {
                let mut next = lanes
                    .get(&k)
                    .cloned()
                    .unwrap_or_else(|| UsageLane::empty(k.clone()));
                next.version += 1;
                next.last = Some(last.clone());
                next
            });
            let line = &c.landing.line;
            let part = share
                .lines
                .entry(line.id.clone())
                .or_insert_with(|| LaneLine {
                    aggregate: Aggregate::new(c.target.meter.aggregation_type),
                    line: None,
                });
            if part.line.is_none() && (c.landing.late || line.dimensions.is_some()) {
                part.line = Some(InvoiceLine::clone(line));
            }
            if c.target.meter.aggregation_type == Aggregation::UniqueCount {
                let mut probe = Aggregate::new(Aggregation::UniqueCount);
                probe.add(c.target.value.as_ref())?;
                let values = candidates
                    .entry((c.landing.invoice_id.clone(), line.id.clone()))
                    .or_default();
                for value in probe.distinct_values() {
                    values.entry(value.to_owned()).or_insert(c.message);
                }
            } else {
                part.aggregate.add(c.target.value.as_ref())?;
            }
        }
        if !candidates.is_empty() {
            let mut claims = Vec::new();
            for ((invoice, line), values) in &candidates {
                for (value, message) in values {
                    claims.push(ValueClaim {
                        invoice: invoice.clone(),
                        line: line.clone(),
                        value: value.clone(),
                        nonce: batch[*message].nonce.clone(),
                    });
                }
            }
            let holders = self.usage.claim_values(&claims).await?;
            report.claim_writes += claims.len();
            let ours: HashSet<_> = batch.iter().map(|m| &m.nonce).collect();
            let mut won: BTreeMap<(InvoiceId, LineId), u64> = BTreeMap::new();
            for (claim, holder) in claims.iter().zip(&holders) {
                if ours.contains(holder) {
                    *won.entry((claim.invoice.clone(), claim.line.clone()))
                        .or_default() += 1;
                }
            }
            for ((invoice, line), n) in won {
                if let Some(part) = shares
                    .get_mut(&key(&invoice, lane))
                    .and_then(|s| s.lines.get_mut(&line))
                {
                    part.aggregate.add_distinct(n)?;
                }
            }
        }
        Ok(shares)
    }
}

fn key(invoice: &InvoiceId, lane: Lane) -> LaneKey {
    LaneKey {
        invoice: invoice.clone(),
        lane,
    }
}

/// Whether a share already includes the batch's message at `message`.
fn includes(share: &UsageLane, batch: &[LaneMessage], message: usize) -> bool {
    super::includes(share.last.as_ref(), batch, message)
}

/// The match of a reading that lands.
fn billed_match(t: &Target, landing: &Landing) -> MeterMatch {
    MeterMatch {
        meter_id: t.meter.id.clone(),
        status: if landing.late {
            EventStatus::Late
        } else {
            EventStatus::Matched
        },
        invoice_id: Some(landing.invoice_id.clone()),
        line_id: Some(landing.line.id.clone()),
    }
}
