//! The dashboard's home figures: the current month at a glance. Every figure is a bounded
//! read (running totals, a capped agenda read, capped event pages), so the screen costs the
//! same with 10 invoices or 10 million.

use crate::error::Result;
use crate::pagination::PageRequest;
use crate::ports::AgendaKind;
use crate::tally::DayCount;
use crate::totals::{Month, Totals};
use crate::usage::EventStatus;

use super::Billing;

/// How many items a capped count reads; past it the figure shows as "100+".
pub const OVERVIEW_CAP: usize = 100;

/// A count read up to [`OVERVIEW_CAP`]: exact below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CappedCount {
    /// Items counted.
    pub count: usize,
    /// Whether more exist than were counted.
    pub more: bool,
}

/// The home screen's figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overview {
    /// The current month (UTC).
    pub month: Month,
    /// Sent, paid, billed and collected this month (by invoice date).
    pub this_month: Totals,
    /// The same for the six months up to this one, oldest first, for the chart.
    pub history: Vec<(Month, Totals)>,
    /// Sent invoices past their due date and not paid.
    pub overdue: CappedCount,
    /// Event records the matcher could not bill (every reason), kept 400 days.
    pub unbillable: CappedCount,
    /// Events received today (UTC), each counted once, from the matcher's day tallies.
    pub today: DayCount,
}

/// The statuses of events that were not billed.
pub const UNBILLABLE: [EventStatus; 7] = [
    EventStatus::Unmatched,
    EventStatus::UnknownCustomer,
    EventStatus::NoContract,
    EventStatus::NoOpenInvoice,
    EventStatus::MissingProperty,
    EventStatus::InvalidProperty,
    EventStatus::NoRate,
];

impl Billing {
    /// The home screen's figures for today.
    pub async fn overview(&self) -> Result<Overview> {
        let today = self.clock.now().date_naive();
        let month = Month::of(today);
        let mut months = vec![month];
        while months.len() < 6 {
            let previous = months[months.len() - 1].previous();
            months.push(previous);
        }
        months.reverse();
        let page = PageRequest {
            limit: OVERVIEW_CAP,
            after: None,
        };
        let yesterday = today.pred_opt().unwrap_or(today);
        let far = chrono::NaiveDate::MAX;
        let (totals, due, collect, received) = tokio::join!(
            self.ledger.month_totals(&months),
            self.ledger.agenda(AgendaKind::Due, yesterday, &page),
            // Auto-pay invoices are due on their invoice date (net 0): every one still waiting
            // for a charge is past due.
            self.ledger.agenda(AgendaKind::Collect, far, &page),
            self.usage.day_count(today),
        );
        let (totals, due, collect, received) = (totals?, due?, collect?, received?);
        let overdue = CappedCount {
            count: (due.items.len() + collect.items.len()).min(OVERVIEW_CAP),
            more: due.next.is_some()
                || collect.next.is_some()
                || due.items.len() + collect.items.len() > OVERVIEW_CAP,
        };
        let mut unbillable = CappedCount {
            count: 0,
            more: false,
        };
        let reads = UNBILLABLE.map(|status| {
            let page = page.clone();
            async move { self.events(&page, None, None, Some(status.as_str())).await }
        });
        for found in futures_util::future::join_all(reads).await {
            let found = found?;
            unbillable.count += found.items.len();
            unbillable.more |= found.next.is_some();
        }
        if unbillable.count > OVERVIEW_CAP {
            unbillable = CappedCount {
                count: OVERVIEW_CAP,
                more: true,
            };
        }
        let history: Vec<(Month, Totals)> = months
            .iter()
            .map(|m| (*m, totals.get(m).cloned().unwrap_or_default()))
            .collect();
        Ok(Overview {
            month,
            this_month: totals.get(&month).cloned().unwrap_or_default(),
            history,
            overdue,
            unbillable,
            today: received,
        })
    }
}
