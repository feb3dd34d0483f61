//! Usage aggregates, one per invoice and lane. An invoice's usage is not kept on the invoice:
//! every lane (see [`crate::usage::LANES`]) keeps its own share, so matchers on different lanes
//! never write the same item, and an invoice's quantities are its lanes' shares combined on
//! read ([`merge`]). A lane's share names the last message it includes ([`UsageLane::last`]):
//! a lane's messages are matched in order, so that one name says which messages are in. Closing
//! an invoice seals its lanes in the same write that freezes its quantities, so usage that
//! arrives later can only go to the next invoice (the late path).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregate;
use crate::error::Result;
use crate::ids::{InvoiceId, LineId};
use crate::invoice::{Invoice, InvoiceLine};
use crate::usage::{Lane, MessageNonce};

/// Which share: an invoice's, in one lane.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LaneKey {
    /// The invoice.
    pub invoice: InvoiceId,
    /// The lane.
    pub lane: Lane,
}

/// One line's part of a lane's share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LaneLine {
    /// The usage counted in this lane.
    pub aggregate: Aggregate,
    /// The line itself, when the invoice was not generated with it (a dimension combination or
    /// late usage seen first in this lane): the invoice shows it once any lane has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<InvoiceLine>,
}

/// An invoice's usage in one lane, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLane {
    /// Which share.
    pub key: LaneKey,
    /// Increments on every write: the version the next write must find (0: never written).
    pub version: u64,
    /// The last message whose usage this share includes; every earlier message of the lane is
    /// in too, since a lane's messages are matched in order.
    pub last: Option<MessageNonce>,
    /// The invoice is closed (or void): no usage may be added any more.
    pub sealed: bool,
    /// Per line, the usage so far.
    pub lines: BTreeMap<LineId, LaneLine>,
}

impl UsageLane {
    /// A share never written.
    pub fn empty(key: LaneKey) -> Self {
        Self {
            key,
            version: 0,
            last: None,
            sealed: false,
            lines: BTreeMap::new(),
        }
    }
}

/// An invoice with the usage of its lanes: while it is open, each line's quantity is its
/// lanes' aggregates combined, and lines first seen in a lane are appended (in line id order);
/// once closed, the invoice carries its frozen quantities and the lanes are not read. Returns
/// the invoice and the combined aggregate of every line with usage.
pub fn merge(
    mut invoice: Invoice,
    lanes: &[UsageLane],
) -> Result<(Invoice, BTreeMap<LineId, Aggregate>)> {
    let mut aggregates: BTreeMap<LineId, Aggregate> = BTreeMap::new();
    if !invoice.status.is_open() {
        return Ok((invoice, aggregates));
    }
    let mut extra: BTreeMap<LineId, InvoiceLine> = BTreeMap::new();
    for lane in lanes {
        for (id, part) in &lane.lines {
            match aggregates.get_mut(id) {
                Some(total) => total.combine(&part.aggregate)?,
                None => {
                    aggregates.insert(id.clone(), part.aggregate.clone());
                }
            }
            if let Some(line) = &part.line
                && !invoice.lines.iter().any(|l| &l.id == id)
            {
                extra.entry(id.clone()).or_insert_with(|| line.clone());
            }
        }
    }
    invoice.lines.extend(extra.into_values());
    for line in &mut invoice.lines {
        if let Some(aggregate) = aggregates.get(&line.id) {
            line.quantity = aggregate.quantity();
        }
    }
    Ok((invoice, aggregates))
}
