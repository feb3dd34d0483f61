//! Invoices and their lines. A contract pre-generates one invoice per billing period, with a line
//! per price (a dimensional price gets a line per combination as usage arrives). Quantities move
//! with usage; amounts are never stored but computed from quantity and rate when read, by the
//! money rule: each line exactly, rounded once to the currency's minor unit (half away from
//! zero); the total is the sum of the rounded lines.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregation;
use crate::contract::Contract;
use crate::error::{Error, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId, LineId, MeterId, PriceId};
use crate::money::{Amount, Currency, try_invoice_total};
use crate::period::Period;
use crate::plan::{Plan, PriceKind, RateCard};

/// Where an invoice is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InvoiceStatus {
    /// Created with the contract; no usage yet.
    Drafted,
    /// Usage is being recorded.
    InProgress,
    /// Closed and sent to the customer; amounts frozen.
    Sent,
    /// Payment received.
    Paid,
    /// Cancelled (e.g. a period after a contract's cancellation).
    Void,
    /// Paid, then refunded.
    Refunded,
}

impl InvoiceStatus {
    /// Accepts the wire name (e.g. `IN_PROGRESS`).
    pub fn parse(raw: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|_| {
            Error::invalid(
                "invalid_status",
                format!("'{raw}' is not an invoice status; use DRAFTED, IN_PROGRESS, SENT, PAID, VOID or REFUNDED"),
            )
            .at("status")
        })
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drafted => "DRAFTED",
            Self::InProgress => "IN_PROGRESS",
            Self::Sent => "SENT",
            Self::Paid => "PAID",
            Self::Void => "VOID",
            Self::Refunded => "REFUNDED",
        }
    }

    /// Whether the invoice may still change (usage, voiding).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Drafted | Self::InProgress)
    }
}

/// What a line charges for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum LineKind {
    /// A fixed fee (quantity 1).
    Flat {
        /// The fee, after contract overrides.
        amount: Amount,
    },
    /// Metered usage.
    #[serde(rename_all = "camelCase")]
    Usage {
        /// The meter counted.
        meter_id: MeterId,
        /// How its events combine.
        aggregation: Aggregation,
        /// The rate card, after contract overrides.
        rate: RateCard,
    },
}

/// One line of an invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoiceLine {
    /// Derived from the invoice, price and dimensions.
    pub id: LineId,
    /// The plan price this line bills.
    pub price_id: PriceId,
    /// Shown to the customer.
    pub description: String,
    /// Flat or usage.
    pub kind: LineKind,
    /// The aggregated quantity (1 for flat lines).
    pub quantity: Decimal,
    /// For dimensional lines, the combination billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<BTreeMap<String, String>>,
    /// The days this line covers.
    pub service_period: Period,
}

/// A line with its money computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedLine {
    /// The line.
    pub line: InvoiceLine,
    /// Unit price to show, when one rate applies to every unit.
    pub unit_amount: Option<Decimal>,
    /// The exact amount rounded once to the currency's minor unit.
    pub amount: Decimal,
}

impl InvoiceLine {
    /// Whether the line is metered.
    pub fn is_metered(&self) -> bool {
        matches!(self.kind, LineKind::Usage { .. })
    }

    /// Prices the line: exact, then rounded once. A dimensional line whose combination lost its
    /// rate cannot exist (lines are only made for priced combinations), so `None` there is a bug.
    pub fn priced(&self, currency: Currency) -> Result<PricedLine> {
        let (unit_amount, exact) = match &self.kind {
            LineKind::Flat { amount } => (Some(amount.value()), amount.value()),
            LineKind::Usage { rate, .. } => {
                let rate = rate
                    .rate_for(self.dimensions.as_ref())
                    .ok_or_else(|| Error::internal(format!("line {} has no rate", self.id)))?;
                (
                    rate.unit_amount_for_display(self.quantity),
                    rate.try_amount(self.quantity)?,
                )
            }
        };
        Ok(PricedLine {
            line: self.clone(),
            unit_amount,
            amount: currency.round(exact),
        })
    }
}

/// An invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invoice {
    /// Derived from the contract and period start.
    pub id: InvoiceId,
    /// Assigned when the invoice is sent.
    #[serde(default)]
    pub invoice_number: Option<String>,
    /// Who is billed.
    pub customer_id: CustomerId,
    /// Under which contract.
    pub contract_id: ContractId,
    /// Where in its life.
    pub status: InvoiceStatus,
    /// The billing period, `[start, end)`.
    pub period: Period,
    /// The period's end.
    pub invoice_date: NaiveDate,
    /// Invoice date plus net terms.
    pub due_date: NaiveDate,
    /// The first run date on which the invoice closes: invoice date plus the contract's grace
    /// period for late usage.
    pub closes_on: NaiveDate,
    /// Currency of every amount.
    pub currency: Currency,
    /// Whether it is charged automatically.
    pub auto_pay: bool,
    /// The lines.
    pub lines: Vec<InvoiceLine>,
    /// How it is being paid, once sent.
    #[serde(default)]
    pub payment: InvoicePayment,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// The payment side of an invoice: frozen when it is sent, then the collection attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InvoicePayment {
    /// When it was closed and sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<DateTime<Utc>>,
    /// The total frozen at sending, in minor units: what is charged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_due_minor_units: Option<i64>,
    /// Auto-pay attempts made (each with its own idempotency key).
    #[serde(default)]
    pub attempts: u32,
    /// When auto-pay tries next; `None` when it will not (paid, off, out of attempts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_on: Option<NaiveDate>,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// The provider's payment that paid it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_intent: Option<String>,
    /// When it was paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paid_at: Option<DateTime<Utc>>,
    /// The reference of a payment made outside the provider (a bank transfer), when it was
    /// marked paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_reference: Option<String>,
    /// When it was last sent again (`POST /v1/invoices/{id}/send`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_at: Option<DateTime<Utc>>,
    /// When it was refunded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refunded_at: Option<DateTime<Utc>>,
    /// Payments it did not need (it was paid twice), refunded in full.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunded_duplicates: Vec<String>,
}

/// An invoice with its money computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedInvoice {
    /// The invoice.
    pub invoice: Invoice,
    /// Its lines, priced.
    pub lines: Vec<PricedLine>,
    /// Sum of the rounded lines (no taxes or discounts yet, so equal to the total).
    pub subtotal: Decimal,
    /// What is due.
    pub total: Decimal,
    /// `total` in minor units (cents for USD, yen for JPY).
    pub total_minor_units: i64,
}

impl Invoice {
    /// The id of the invoice of `contract`'s period starting on `period_start`.
    pub fn id_for(contract: &ContractId, period_start: NaiveDate) -> InvoiceId {
        InvoiceId::derive(&format!("{contract}:{period_start}"))
    }

    /// A draft for one period: a line per flat and non-dimensional usage price, quantities 0.
    pub fn draft(contract: &Contract, plan: &Plan, period: Period, now: DateTime<Utc>) -> Self {
        let id = Self::id_for(&contract.id, period.start);
        let lines = plan
            .prices
            .iter()
            .filter_map(|price| {
                let kind = match &price.kind {
                    PriceKind::Flat { flat_amount } => LineKind::Flat {
                        amount: contract
                            .override_for(&price.id)
                            .cloned()
                            .unwrap_or_else(|| flat_amount.clone()),
                    },
                    PriceKind::Usage(usage) if usage.rate.is_dimensional() => return None,
                    PriceKind::Usage(usage) => LineKind::Usage {
                        meter_id: usage.meter_id.clone(),
                        aggregation: usage.aggregation_type,
                        rate: contract.rate_with_override(&price.id, &usage.rate),
                    },
                };
                let quantity = match kind {
                    LineKind::Flat { .. } => Decimal::ONE,
                    LineKind::Usage { .. } => Decimal::ZERO,
                };
                Some(InvoiceLine {
                    id: LineId::derive(&format!("{id}:{}", price.id)),
                    price_id: price.id.clone(),
                    description: price.description.clone(),
                    kind,
                    quantity,
                    dimensions: None,
                    service_period: period,
                })
            })
            .collect();
        Invoice {
            id,
            invoice_number: None,
            customer_id: contract.customer_id.clone(),
            contract_id: contract.id.clone(),
            status: InvoiceStatus::Drafted,
            period,
            invoice_date: period.end,
            due_date: period
                .end
                .checked_add_days(Days::new(u64::from(contract.net_terms)))
                .unwrap_or(period.end),
            closes_on: period
                .end
                .checked_add_days(Days::new(u64::from(contract.grace_period_days)))
                .unwrap_or(period.end),
            currency: contract.currency,
            auto_pay: contract.auto_pay,
            lines,
            payment: InvoicePayment::default(),
            created_at: now,
            updated_at: now,
        }
    }

    /// Prices every line and totals them (the sum of once-rounded lines).
    pub fn priced(&self) -> Result<PricedInvoice> {
        let lines = self
            .lines
            .iter()
            .map(|l| l.priced(self.currency))
            .collect::<Result<Vec<_>>>()?;
        let total = try_invoice_total(self.currency, lines.iter().map(|l| l.amount))?;
        Ok(PricedInvoice {
            invoice: self.clone(),
            total_minor_units: self.currency.to_minor_units(total)?,
            subtotal: total,
            total,
            lines,
        })
    }
}
