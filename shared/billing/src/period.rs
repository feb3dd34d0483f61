//! Billing periods. A contract's periods are anchored on its start date and computed in UTC:
//! period `k` starts at `start + k intervals`, each boundary computed from the anchor rather than
//! from the previous boundary, so a contract starting Jan 31 bills Feb 28 (29 in leap years),
//! Mar 31, Apr 30, … and never drifts to the 28th. A period is half-open: `[start, end)`.

use chrono::{Datelike, Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How often a plan bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BillingInterval {
    /// Every 7 days.
    Week,
    /// Every calendar month, on the anchor day (clamped to the month's last day).
    #[default]
    Month,
    /// Every 3 months.
    Quarter,
    /// Every 12 months.
    Year,
}

impl BillingInterval {
    /// Accepts `WEEK`, `MONTH`, `QUARTER` or `YEAR`.
    pub fn parse(raw: &str) -> Result<Self> {
        match raw {
            "WEEK" => Ok(Self::Week),
            "MONTH" => Ok(Self::Month),
            "QUARTER" => Ok(Self::Quarter),
            "YEAR" => Ok(Self::Year),
            other => Err(Error::unprocessable(
                "invalid_billing_interval",
                format!("'{other}' is not a billing interval; use WEEK, MONTH, QUARTER or YEAR"),
            )),
        }
    }

    /// The anchor moved forward by `count` intervals, or `None` past the calendar's end.
    pub fn advance(self, anchor: NaiveDate, count: u32) -> Option<NaiveDate> {
        match self {
            Self::Week => anchor.checked_add_days(Days::new(7 * u64::from(count))),
            Self::Month => anchor.checked_add_months(Months::new(count)),
            Self::Quarter => anchor.checked_add_months(Months::new(count.checked_mul(3)?)),
            Self::Year => anchor.checked_add_months(Months::new(count.checked_mul(12)?)),
        }
    }
}

/// A half-open span of days `[start, end)`, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Period {
    /// First day in the period.
    pub start: NaiveDate,
    /// First day after the period (the invoice date).
    pub end: NaiveDate,
}

impl Period {
    /// Whether `date` falls inside.
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.start <= date && date < self.end
    }

    /// Whether two periods share a day.
    pub fn overlaps(&self, other: &Period) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// The periods of a contract: anchored on `start`, cut short at `end` when the contract ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// The contract's start date: the anchor.
    pub start: NaiveDate,
    /// The contract's end (exclusive), or `None` for a rolling contract.
    pub end: Option<NaiveDate>,
    /// How long each period is.
    pub interval: BillingInterval,
}

impl Schedule {
    /// Period number `index` (0-based), or `None` when the contract has ended before it.
    pub fn period(&self, index: u32) -> Option<Period> {
        let start = self.interval.advance(self.start, index)?;
        let mut end = self.interval.advance(self.start, index.checked_add(1)?)?;
        if let Some(contract_end) = self.end {
            if start >= contract_end {
                return None;
            }
            end = end.min(contract_end);
        }
        Some(Period { start, end })
    }

    /// The index and period containing `date`, if the contract covers it.
    pub fn period_containing(&self, date: NaiveDate) -> Option<(u32, Period)> {
        if date < self.start {
            return None;
        }
        // A first guess from the average interval length, then a few exact steps: cheap even
        // for contracts decades long.
        let days = (date - self.start).num_days();
        let per = match self.interval {
            BillingInterval::Week => 7,
            BillingInterval::Month => 31,
            BillingInterval::Quarter => 92,
            BillingInterval::Year => 366,
        };
        let mut index = u32::try_from(days / per).ok()?;
        loop {
            let period = self.period(index)?;
            if date < period.start {
                index = index.checked_sub(1)?;
            } else if period.contains(date) {
                return Some((index, period));
            } else {
                index = index.checked_add(1)?;
            }
        }
    }

    /// Every period from the first through number `last` (inclusive), stopping at the end.
    pub fn periods_through(&self, last: u32) -> Vec<Period> {
        (0..=last).map_while(|i| self.period(i)).collect()
    }

    /// How many periods a fixed-term contract has; `None` when rolling.
    pub fn period_count(&self) -> Option<u32> {
        let end = self.end?;
        let last_day = end.pred_opt()?;
        self.period_containing(last_day).map(|(i, _)| i + 1)
    }
}

/// Parses a `YYYY-MM-DD` date (UTC).
pub fn parse_date(raw: &str) -> Result<NaiveDate> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .filter(|d| d.year() >= 2000 && d.year() <= 2200 && raw.len() == 10)
        .ok_or_else(|| {
            Error::unprocessable(
                "invalid_date",
                format!("'{raw}' is not a date in YYYY-MM-DD form between 2000 and 2200"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn monthly(start: &str) -> Schedule {
        Schedule {
            start: d(start),
            end: None,
            interval: BillingInterval::Month,
        }
    }

    #[test]
    fn month_end_anchors_clamp_without_drifting() {
        let s = monthly("2026-01-31");
        let ends: Vec<NaiveDate> = (0..4).map(|i| s.period(i).unwrap().end).collect();
        assert_eq!(
            ends,
            [
                d("2026-02-28"),
                d("2026-03-31"),
                d("2026-04-30"),
                d("2026-05-31")
            ]
        );
        assert_eq!(s.period(1).unwrap().start, d("2026-02-28"));
    }

    #[test]
    fn leap_years_give_february_its_29th() {
        let s = monthly("2028-01-31");
        assert_eq!(s.period(0).unwrap().end, d("2028-02-29"));
        let yearly = Schedule {
            start: d("2028-02-29"),
            end: None,
            interval: BillingInterval::Year,
        };
        assert_eq!(yearly.period(0).unwrap().end, d("2029-02-28"));
        assert_eq!(yearly.period(3).unwrap().end, d("2032-02-29"));
    }

    #[test]
    fn weeks_and_quarters() {
        let w = Schedule {
            start: d("2026-11-02"),
            end: None,
            interval: BillingInterval::Week,
        };
        assert_eq!(
            w.period(2).unwrap(),
            Period {
                start: d("2026-11-16"),
                end: d("2026-11-23")
            }
        );
        let q = Schedule {
            start: d("2026-11-30"),
            end: None,
            interval: BillingInterval::Quarter,
        };
        assert_eq!(q.period(0).unwrap().end, d("2027-02-28"));
        assert_eq!(q.period(1).unwrap().end, d("2027-05-30"));
    }

    #[test]
    fn the_last_period_is_cut_short_at_the_end_date() {
        let s = Schedule {
            start: d("2026-01-15"),
            end: Some(d("2026-03-01")),
            interval: BillingInterval::Month,
        };
        assert_eq!(
            s.periods_through(10),
            vec![
                Period {
                    start: d("2026-01-15"),
                    end: d("2026-02-15")
                },
                Period {
                    start: d("2026-02-15"),
                    end: d("2026-03-01")
                },
            ]
        );
        assert_eq!(s.period_count(), Some(2));
        assert_eq!(s.period(2), None);
    }

    #[test]
    fn the_period_containing_a_date_is_found_at_its_edges() {
        let s = monthly("2026-01-31");
        assert_eq!(s.period_containing(d("2026-01-30")), None);
        assert_eq!(s.period_containing(d("2026-01-31")).unwrap().0, 0);
        assert_eq!(s.period_containing(d("2026-02-27")).unwrap().0, 0);
        assert_eq!(s.period_containing(d("2026-02-28")).unwrap().0, 1);
        let far = s.period_containing(d("2046-07-31")).unwrap();
        assert!(far.1.contains(d("2046-07-31")));
        assert_eq!(far.0, 20 * 12 + 6);
    }

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(parse_date("2026-02-28").unwrap(), d("2026-02-28"));
        for bad in [
            "2026-02-30",
            "2026-2-28",
            "28/02/2026",
            "1999-12-31",
            "2026-02-28T00:00:00Z",
        ] {
            assert_eq!(parse_date(bad).unwrap_err().code, "invalid_date", "{bad}");
        }
    }
}
