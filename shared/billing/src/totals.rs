//! Running totals of what was billed and collected, per customer and per month of invoice
//! date. The dashboard shows them on every customer row and on its home screen; adding them up
//! from the invoices on each view would read every invoice (10,000 and more), so they are kept
//! as counters instead, moved in the same transaction as the invoice transition that changes
//! them ([`crate::ports::LedgerStore::transition`]): they can never disagree with the invoices.
//!
//! An invoice contributes once it is sent: its frozen amount due counts as billed (also when it
//! is later refunded), and as collected while it is paid. [`change`] is the difference between
//! an invoice's contribution after and before a transition, so every transition (close, pay,
//! refund) keeps the counters exact without knowing which one it was.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use crate::ids::CustomerId;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::money::Currency;

/// A calendar month (UTC), the bucket of the monthly totals, by invoice date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month(NaiveDate);

impl Month {
    /// The month containing `date`.
    pub fn of(date: NaiveDate) -> Self {
        Self(date.with_day(1).unwrap_or(date))
    }

    /// Its first day.
    pub fn first_day(self) -> NaiveDate {
        self.0
    }

    /// The month before.
    pub fn previous(self) -> Self {
        Self::of(self.0.pred_opt().unwrap_or(self.0))
    }

    /// `YYYY-MM`, as stored.
    pub fn key(self) -> String {
        self.0.format("%Y-%m").to_string()
    }
}

/// Totals of sent invoices: how many, how much billed and collected (per currency, in minor
/// units), and the last payment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Totals {
    /// Invoices sent (paid and refunded ones included).
    pub sent: i64,
    /// Invoices paid (and not refunded).
    pub paid: i64,
    /// Billed, per currency, in minor units.
    pub billed: BTreeMap<Currency, i64>,
    /// Collected, per currency, in minor units.
    pub collected: BTreeMap<Currency, i64>,
    /// When the last payment arrived.
    pub last_payment_at: Option<DateTime<Utc>>,
}

impl Totals {
    /// Adds a change (the in-memory store's way; DynamoDB adds with `ADD`).
    pub fn apply(&mut self, change: &TotalsChange) {
        self.sent += change.sent;
        self.paid += change.paid;
        *self.billed.entry(change.currency).or_default() += change.billed;
        *self.collected.entry(change.currency).or_default() += change.collected;
        if let Some(at) = change.paid_at {
            self.last_payment_at = Some(self.last_payment_at.map_or(at, |last| last.max(at)));
        }
    }
}

/// What one invoice transition adds to its customer's totals and its month's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotalsChange {
    /// Whose totals.
    pub customer: CustomerId,
    /// Which month's (the invoice date's).
    pub month: Month,
    /// The invoice's currency.
    pub currency: Currency,
    /// Change in invoices sent.
    pub sent: i64,
    /// Change in invoices paid.
    pub paid: i64,
    /// Change in billed minor units.
    pub billed: i64,
    /// Change in collected minor units.
    pub collected: i64,
    /// A payment that arrived with this transition.
    pub paid_at: Option<DateTime<Utc>>,
}

/// (sent, paid, billed, collected) of one invoice state.
fn contribution(invoice: &Invoice) -> (i64, i64, i64, i64) {
    let due = invoice.payment.amount_due_minor_units.unwrap_or(0);
    match invoice.status {
        InvoiceStatus::Drafted | InvoiceStatus::InProgress | InvoiceStatus::Void => (0, 0, 0, 0),
        InvoiceStatus::Sent | InvoiceStatus::Refunded => (1, 0, due, 0),
        InvoiceStatus::Paid => (1, 1, due, due),
    }
}

/// The totals' change of a transition from `previous` to `next`; `None` when nothing moves.
pub fn change(previous: &Invoice, next: &Invoice) -> Option<TotalsChange> {
    let before = contribution(previous);
    let after = contribution(next);
    if before == after {
        return None;
    }
    let newly_paid = next.status == InvoiceStatus::Paid && previous.status != InvoiceStatus::Paid;
    Some(TotalsChange {
        customer: next.customer_id.clone(),
        month: Month::of(next.invoice_date),
        currency: next.currency,
        sent: after.0 - before.0,
        paid: after.1 - before.1,
        billed: after.2 - before.2,
        collected: after.3 - before.3,
        paid_at: newly_paid.then(|| next.payment.paid_at.unwrap_or(next.updated_at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ContractId, InvoiceId};
    use crate::period::Period;

    fn invoice(status: InvoiceStatus, due: Option<i64>) -> Invoice {
        let date = |d| NaiveDate::from_ymd_opt(2026, 3, d).unwrap();
        let now: DateTime<Utc> = "2026-03-02T00:15:00Z".parse().unwrap();
        let mut invoice = Invoice {
            id: InvoiceId::derive("x"),
            invoice_number: None,
            customer_id: CustomerId::derive("acme"),
            contract_id: ContractId::derive("c"),
            status,
            period: Period {
                start: date(1),
                end: date(31),
            },
            invoice_date: date(31),
            due_date: date(31),
            closes_on: date(31),
            currency: Currency::USD,
            auto_pay: false,
            lines: vec![],
            payment: Default::default(),
            created_at: now,
            updated_at: now,
        };
        invoice.payment.amount_due_minor_units = due;
        invoice
    }

    #[test]
    fn sending_paying_and_refunding_move_the_totals_exactly() {
        let draft = invoice(InvoiceStatus::InProgress, None);
        let sent = invoice(InvoiceStatus::Sent, Some(5096));
        let paid = invoice(InvoiceStatus::Paid, Some(5096));
        let refunded = invoice(InvoiceStatus::Refunded, Some(5096));
        let mut totals = Totals::default();
        for (a, b) in [(&draft, &sent), (&sent, &paid), (&paid, &refunded)] {
            totals.apply(&change(a, b).unwrap());
        }
        assert_eq!((totals.sent, totals.paid), (1, 0));
        assert_eq!(totals.billed[&Currency::USD], 5096);
        assert_eq!(totals.collected[&Currency::USD], 0);
        assert!(totals.last_payment_at.is_some());
        assert_eq!(change(&sent, &sent), None);
        assert_eq!(change(&draft, &invoice(InvoiceStatus::Void, None)), None);
        assert_eq!(Month::of(sent.invoice_date).key(), "2026-03");
        assert_eq!(Month::of(sent.invoice_date).previous().key(), "2026-02");
    }

    #[test]
    fn a_zero_invoice_closed_as_paid_counts_as_sent_and_paid() {
        let c = change(
            &invoice(InvoiceStatus::Drafted, None),
            &invoice(InvoiceStatus::Paid, Some(0)),
        )
        .unwrap();
        assert_eq!((c.sent, c.paid, c.billed, c.collected), (1, 1, 0, 0));
    }
}
