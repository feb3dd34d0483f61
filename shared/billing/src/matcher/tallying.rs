//! Counting a lane's batch into the day tallies ([`crate::tally`]): one write per day the
//! batch's events were received on (usually one), skipping the messages a tally already
//! includes, exactly as the lanes' shares do.

use std::collections::BTreeMap;

use super::{BatchReport, LaneMessage, Matcher};
use crate::error::Result;
use crate::tally::{DayTally, TallyKey};
use crate::usage::Lane;

/// An owned event as a day tally counts it.
pub(super) struct Counted {
    /// Which message of the batch owns it.
    pub message: usize,
    /// The day the API accepted it (UTC).
    pub day: chrono::NaiveDate,
    /// Whether any invoice line bills it.
    pub billed: bool,
}

impl Matcher {
    /// Adds the batch's owned events to their days' tallies in this lane.
    pub(super) async fn tally(
        &self,
        lane: Lane,
        batch: &[LaneMessage],
        counted: &[Counted],
        report: &mut BatchReport,
    ) -> Result<()> {
        let (Some(last), false) = (batch.last(), counted.is_empty()) else {
            return Ok(());
        };
        let keys: Vec<TallyKey> = counted
            .iter()
            .map(|c| TallyKey { day: c.day, lane })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let stored = self.usage.tallies(&keys).await?;
        // Per touched tally: as read (the write's condition), and with this batch added.
        let mut writes: BTreeMap<TallyKey, (DayTally, DayTally)> = BTreeMap::new();
        for c in counted {
            let key = TallyKey { day: c.day, lane };
            let previous = stored.get(&key);
            if previous.is_some_and(|t| super::includes(t.last.as_ref(), batch, c.message)) {
                continue; // counted by an earlier delivery or pass
            }
            let (_, tally) = &mut *writes.entry(key).or_insert_with(|| {
                let previous = previous.cloned().unwrap_or_else(|| DayTally::empty(key));
                let mut next = previous.clone();
                next.version += 1;
                next.last = Some(last.nonce.clone());
                (previous, next)
            });
            tally.count.events += 1;
            if !c.billed {
                tally.count.unbillable += 1;
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let writes: Vec<(DayTally, DayTally)> = writes.into_values().collect();
        let outcomes = self.usage.write_tallies(&writes).await?;
        super::settle(
            &outcomes,
            &mut report.tally_writes,
            &mut report.conflicts,
            "tally_moved",
            "a day tally moved while matching; re-reading",
        )
    }
}
