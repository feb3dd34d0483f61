//! Contracts: a customer subscribed to a plan from a start date, rolling or until an end date.
//! Creating one pre-generates its invoices. Two active contracts of one customer may not cover
//! the same meter on the same day, so every usage event has exactly one home.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::customer::{Metadata, parse_metadata};
use crate::error::{Error, Result};
use crate::ids::{ContractId, CustomerId, MeterId, PlanId, PriceId};
use crate::invoice::Invoice;
use crate::money::{Amount, Currency};
use crate::period::{BillingInterval, Period, Schedule, parse_date};
use crate::plan::{MAX_NET_TERMS, Plan, PriceKind, RateCard};

/// The most metadata keys a contract may carry.
pub const MAX_CONTRACT_METADATA_KEYS: usize = 10;
/// The most invoices one contract creation writes: the contract, the customer's contract index
/// and the invoices go in one DynamoDB transaction (at most 100 writes), so that a contract
/// exists with all its invoices or not at all.
pub const MAX_PREGENERATED_INVOICES: usize = 96;

/// Whether a contract runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContractStatus {
    /// Running (until its end date, if any).
    Active,
    /// Cancelled: it ends at the end of the period in which it was cancelled.
    Canceled,
}

/// A contract's own price for one of its plan's prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PriceOverride {
    /// The plan price overridden.
    pub price_id: PriceId,
    /// The new unit amount (the fee, for a flat price; per package for a package price).
    pub unit_amount: Amount,
}

/// A contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contract {
    /// `ctr_…`
    pub id: ContractId,
    /// Who is billed.
    pub customer_id: CustomerId,
    /// The plan subscribed to.
    pub plan_id: PlanId,
    /// First day; anchors every period.
    pub start_date: NaiveDate,
    /// First day no longer covered; `None` for a rolling contract.
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    /// Period length (from the plan).
    pub billing_interval: BillingInterval,
    /// Currency (from the plan).
    pub currency: Currency,
    /// Days from invoice date to due date.
    pub net_terms: u16,
    /// Whether invoices are charged automatically.
    pub auto_pay: bool,
    /// The payment method saved for this contract's invoices (from a portal payment with
    /// "save"); auto-pay uses it before the customer's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<crate::customer::PaymentMethodId>,
    /// Late usage window after a period (from the plan).
    pub grace_period_days: u16,
    /// The contract's own prices.
    #[serde(default)]
    pub overrides: Vec<PriceOverride>,
    /// Free-form key/values (at most 10).
    #[serde(default)]
    pub metadata: Metadata,
    /// Active or cancelled.
    pub status: ContractStatus,
    /// When it was cancelled.
    #[serde(default)]
    pub canceled_at: Option<DateTime<Utc>>,
    /// The meters its plan bills, for the overlap rule.
    pub meter_ids: BTreeSet<MeterId>,
    /// How many periods have invoices (periods `0..invoiced_periods`).
    pub invoiced_periods: u32,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Contract {
    /// The contract's billing periods.
    pub fn schedule(&self) -> Schedule {
        Schedule {
            start: self.start_date,
            end: self.end_date,
            interval: self.billing_interval,
        }
    }

    /// The override of a price, if the contract has one.
    pub fn override_for(&self, price: &PriceId) -> Option<&Amount> {
        self.overrides
            .iter()
            .find(|o| &o.price_id == price)
            .map(|o| &o.unit_amount)
    }

    /// A usage price's rate card with the contract's override applied.
    pub fn rate_with_override(&self, price: &PriceId, rate: &RateCard) -> RateCard {
        match (self.override_for(price), rate) {
            (Some(unit), RateCard::PerUnit(_)) => RateCard::PerUnit(unit.clone()),
            (Some(unit), RateCard::Package { size, .. }) => RateCard::Package {
                size: size.clone(),
                unit_amount: unit.clone(),
            },
            _ => rate.clone(),
        }
    }

    /// What the overlap rule (and the usage matcher) needs to know of this contract.
    pub fn summary(&self) -> ContractSummary {
        ContractSummary {
            id: self.id.clone(),
            start_date: self.start_date,
            end_date: self.end_date,
            meter_ids: self.meter_ids.clone(),
        }
    }

    /// The periods to pre-generate when created on `today`: all of a fixed-term contract's; for
    /// a rolling one, every period up to and including the one after today's.
    pub fn periods_to_generate(&self, today: NaiveDate) -> Vec<Period> {
        let schedule = self.schedule();
        let last = match schedule.period_count() {
            Some(count) => count.saturating_sub(1),
            None => match schedule.period_containing(today) {
                Some((index, _)) => index + 1,
                None => 1,
            },
        };
        schedule.periods_through(last)
    }
}

/// One of a customer's contracts as kept in the customer's contract index: a single strongly
/// consistent item, versioned, so that two concurrent creations for one customer cannot both
/// pass the overlap check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractSummary {
    /// The contract.
    pub id: ContractId,
    /// Its first day.
    pub start_date: NaiveDate,
    /// Its end (exclusive), if any.
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    /// The meters it bills.
    pub meter_ids: BTreeSet<MeterId>,
}

impl ContractSummary {
    /// The days covered, `[start, end)`.
    pub fn span(&self) -> Period {
        Period {
            start: self.start_date,
            end: self.end_date.unwrap_or(NaiveDate::MAX),
        }
    }

    /// Whether the two bill a common meter on a common day.
    pub fn conflicts_with(&self, other: &ContractSummary) -> bool {
        self.id != other.id
            && self.span().overlaps(&other.span())
            && !self.meter_ids.is_disjoint(&other.meter_ids)
    }
}

/// `POST /v1/contracts` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateContract {
    /// Required.
    pub customer_id: Option<String>,
    /// Required.
    pub plan_id: Option<String>,
    /// Required, `YYYY-MM-DD`.
    pub start_date: Option<String>,
    /// Optional, `YYYY-MM-DD`, after the start; omitted = rolling.
    pub end_date: Option<String>,
    /// Overrides the plan's net terms.
    pub net_terms: Option<u16>,
    /// Defaults to the plan's; only with net terms 0.
    pub auto_pay: Option<bool>,
    /// Per-price overrides.
    pub overrides: Option<Vec<OverrideInput>>,
    /// At most 10 keys.
    pub metadata: Option<Metadata>,
}

/// One override as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OverrideInput {
    /// A price of the plan.
    pub price_id: String,
    /// The new unit amount.
    pub unit_amount: Amount,
}

/// The ids a contract request names, parsed, to look up before `CreateContract::parse`.
pub struct ContractRefs {
    /// The customer.
    pub customer_id: CustomerId,
    /// The plan.
    pub plan_id: PlanId,
}

fn missing(field: &str) -> Error {
    Error::invalid("missing_field", format!("{field} is required")).at(field)
}

impl CreateContract {
    /// The customer and plan named; an id that cannot exist is reported like an unknown one.
    pub fn refs(&self) -> Result<ContractRefs> {
        let customer = self
            .customer_id
            .as_deref()
            .ok_or_else(|| missing("customerId"))?;
        let plan = self.plan_id.as_deref().ok_or_else(|| missing("planId"))?;
        Ok(ContractRefs {
            customer_id: CustomerId::parse(customer)
                .map_err(|_| unknown("customer", customer, "customerId"))?,
            plan_id: PlanId::parse(plan).map_err(|_| unknown("plan", plan, "planId"))?,
        })
    }

    /// Parses the request against the (existing) plan.
    pub fn parse(self, refs: ContractRefs, plan: &Plan, now: DateTime<Utc>) -> Result<Contract> {
        let start_date = parse_date(&self.start_date.ok_or_else(|| missing("startDate"))?)
            .map_err(|e| e.at("startDate"))?;
        let end_date = self
            .end_date
            .map(|d| parse_date(&d).map_err(|e| e.at("endDate")))
            .transpose()?;
        if end_date.is_some_and(|end| end <= start_date) {
            return Err(Error::unprocessable(
                "invalid_end_date",
                "endDate must be after startDate",
            )
            .at("endDate"));
        }
        let net_terms = self.net_terms.unwrap_or(plan.net_terms);
        if net_terms > MAX_NET_TERMS {
            return Err(Error::unprocessable(
                "invalid_net_terms",
                format!("netTerms must be 0 to {MAX_NET_TERMS} days"),
            )
            .at("netTerms"));
        }
        let auto_pay = self.auto_pay.unwrap_or(plan.auto_pay && net_terms == 0);
        if auto_pay && net_terms != 0 {
            return Err(Error::unprocessable(
                "auto_pay_requires_net_0",
                "auto-pay charges on the invoice date, so it needs netTerms 0 (due on receipt)",
            )
            .at("autoPay"));
        }
        let mut overrides: Vec<PriceOverride> = Vec::new();
        for (i, raw) in self.overrides.unwrap_or_default().into_iter().enumerate() {
            let at = |e: Error| e.at(format!("overrides[{i}]"));
            let price = plan
                .prices
                .iter()
                .find(|p| p.id.as_str() == raw.price_id)
                .ok_or_else(|| {
                    at(Error::unprocessable(
                        "unknown_price",
                        format!("plan {} has no price '{}'", plan.id, raw.price_id),
                    )
                    .at("priceId"))
                })?;
            let supported = match &price.kind {
                PriceKind::Flat { .. } => true,
                PriceKind::Usage(u) => {
                    matches!(u.rate, RateCard::PerUnit(_) | RateCard::Package { .. })
                }
            };
            if !supported {
                return Err(at(Error::unprocessable(
                    "override_not_supported",
                    "only flat, per-unit and package prices can be overridden; tiered and dimensional rates need a new plan",
                )
                .at("priceId")));
            }
            if overrides.iter().any(|o| o.price_id == price.id) {
                return Err(at(Error::unprocessable(
                    "duplicate_override",
                    "this price is overridden twice",
                )
                .at("priceId")));
            }
            overrides.push(PriceOverride {
                price_id: price.id.clone(),
                unit_amount: raw.unit_amount,
            });
        }
        let metadata = parse_metadata(
            self.metadata.unwrap_or_default(),
            MAX_CONTRACT_METADATA_KEYS,
        )?;
        Ok(Contract {
            id: ContractId::generate(),
            customer_id: refs.customer_id,
            plan_id: plan.id.clone(),
            start_date,
            end_date,
            billing_interval: plan.billing_interval,
            currency: plan.currency,
            net_terms,
            auto_pay,
            payment_method: None,
            grace_period_days: plan.grace_period_days,
            overrides,
            metadata,
            status: ContractStatus::Active,
            canceled_at: None,
            meter_ids: plan.meter_ids().into_iter().cloned().collect(),
            invoiced_periods: 0,
            created_at: now,
            updated_at: now,
        })
    }
}

/// The 404-like answer for a referenced id that does not exist.
pub fn unknown(what: &str, id: &str, field: &str) -> Error {
    Error::unprocessable(
        format!("unknown_{what}"),
        format!("no {what} with id '{id}'"),
    )
    .at(field)
}

/// A new contract with its invoices, checked against the customer's other contracts.
pub struct NewContract {
    /// The contract (with `invoiced_periods` set).
    pub contract: Contract,
    /// Its pre-generated invoices.
    pub invoices: Vec<Invoice>,
}

/// Builds the contract's invoices and checks the overlap rule against `existing` (the same
/// customer's contracts).
pub fn prepare(
    mut contract: Contract,
    plan: &Plan,
    existing: &[ContractSummary],
    now: DateTime<Utc>,
) -> Result<NewContract> {
    let summary = contract.summary();
    if let Some(other) = existing.iter().find(|c| summary.conflicts_with(c)) {
        return Err(Error::conflict(
            "overlapping_contract",
            format!(
                "contract {} of this customer already bills one of this plan's meters in an overlapping period",
                other.id
            ),
        )
        .with_existing_id(other.id.as_str()));
    }
    let periods = contract.periods_to_generate(now.date_naive());
    if periods.len() > MAX_PREGENERATED_INVOICES {
        let (advice, field) = if contract.end_date.is_some() {
            ("shorten it, or make it rolling", "endDate")
        } else {
            (
                "a rolling contract is generated from its start date up to next period: start it later",
                "startDate",
            )
        };
        return Err(Error::unprocessable(
            "too_many_periods",
            format!(
                "this contract would pre-generate {} invoices; at most {MAX_PREGENERATED_INVOICES} are written at once ({advice})",
                periods.len()
            ),
        )
        .at(field));
    }
    contract.invoiced_periods = u32::try_from(periods.len()).unwrap_or(u32::MAX);
    let invoices = periods
        .into_iter()
        .map(|period| Invoice::draft(&contract, plan, period, now))
        .collect();
    Ok(NewContract { contract, invoices })
}

/// The end date a cancellation on `today` gives: the end of the current period (the start date
/// when the contract has not started). `None` when the contract has already ended.
pub fn cancellation_end(contract: &Contract, today: NaiveDate) -> Option<NaiveDate> {
    if contract.end_date.is_some_and(|end| end <= today) {
        return None;
    }
    match contract.schedule().period_containing(today) {
        Some((_, period)) => Some(period.end),
        None => Some(contract.start_date),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn contract(start: &str, end: Option<&str>) -> Contract {
        let now: DateTime<Utc> = "2026-11-24T10:00:00Z".parse().unwrap();
        Contract {
            id: ContractId::generate(),
            customer_id: CustomerId::generate(),
            plan_id: PlanId::generate(),
            start_date: d(start),
            end_date: end.map(d),
            billing_interval: BillingInterval::Month,
            currency: Currency::USD,
            net_terms: 0,
            auto_pay: false,
            payment_method: None,
            grace_period_days: 0,
            overrides: Vec::new(),
            metadata: Metadata::new(),
            status: ContractStatus::Active,
            canceled_at: None,
            meter_ids: BTreeSet::from([MeterId::derive("api_call")]),
            invoiced_periods: 0,
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn rolling_contracts_pre_generate_through_the_period_after_today() {
        let c = contract("2026-09-15", None);
        let periods = c.periods_to_generate(d("2026-11-24"));
        // Sep 15, Oct 15, Nov 15 (today's), Dec 15 (the next).
        assert_eq!(periods.len(), 4);
        assert_eq!(periods[3].start, d("2026-12-15"));
        let future = contract("2027-01-01", None);
        assert_eq!(future.periods_to_generate(d("2026-11-24")).len(), 2);
    }

    #[test]
    fn fixed_term_contracts_pre_generate_every_period() {
        let c = contract("2027-01-31", Some("2027-05-15"));
        let periods = c.periods_to_generate(d("2026-11-24"));
        assert_eq!(periods.len(), 4);
        assert_eq!(periods.last().unwrap().end, d("2027-05-15"));
    }

    #[test]
    fn overlap_needs_a_common_day_and_a_common_meter() {
        let a = contract("2027-01-01", Some("2027-04-01")).summary();
        let mut b = contract("2027-04-01", None).summary();
        assert!(!a.conflicts_with(&b), "back to back is fine");
        b.start_date = d("2027-03-31");
        assert!(a.conflicts_with(&b));
        b.meter_ids = BTreeSet::from([MeterId::derive("seats")]);
        assert!(!a.conflicts_with(&b), "different meters never conflict");
        assert!(
            !a.conflicts_with(&a),
            "a contract does not conflict with itself"
        );
    }

    #[test]
    fn cancelling_ends_the_current_period() {
        let c = contract("2026-09-15", None);
        assert_eq!(cancellation_end(&c, d("2026-11-24")), Some(d("2026-12-15")));
        let not_started = contract("2027-01-01", None);
        assert_eq!(
            cancellation_end(&not_started, d("2026-11-24")),
            Some(d("2027-01-01"))
        );
        let ended = contract("2026-01-01", Some("2026-06-01"));
        assert_eq!(cancellation_end(&ended, d("2026-11-24")), None);
    }
}
