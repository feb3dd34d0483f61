//! Plans: reusable bundles of prices in one currency, with net terms, an auto-pay default, a
//! billing interval and a grace period. A plan never changes once created (a change is a new
//! plan), so every contract and invoice made from it keeps meaning what it meant.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregation;
use crate::error::{Error, Result};
use crate::ids::{MeterId, PlanId, PriceId};
use crate::meter::{Description, Meter, MeterCode, MeterStatus};
use crate::money::{Amount, Currency, Quantity};
use crate::period::BillingInterval;
use crate::pricing::{Tier, UsageRate, validate_tiers};
use crate::text::bounded_text;

bounded_text!(
    /// A plan's name, e.g. "Pro".
    PlanName, max = 128, code = "invalid_name", what = "name"
);

/// The longest net terms a plan may give (days).
pub const MAX_NET_TERMS: u16 = 365;
/// The longest grace period (days) an invoice may stay open for late usage after its period.
pub const MAX_GRACE_PERIOD_DAYS: u16 = 90;
/// The most prices one plan may bundle.
pub const MAX_PRICES: usize = 20;
const MAX_DIMENSIONAL_RATES: usize = 500;

/// A combination of dimension values and its unit price (e.g. region=eu, model=gpt-4 → 0.03).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DimensionalRate {
    /// One value per group key of the meter.
    pub dimensions: BTreeMap<String, String>,
    /// Price per unit for this combination.
    pub unit_amount: Amount,
}

/// How a usage price turns a quantity into money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "RateCardWire", try_from = "RateCardWire")]
pub enum RateCard {
    /// `tiering: NONE`: every unit at `unitAmount`.
    PerUnit(Amount),
    /// `tiering: NONE` with `dimensionalRates`: a rate per combination of the meter's group
    /// keys, each combination its own invoice line; unlisted combinations use the fallback, or
    /// are an error recorded on the event when there is none.
    Dimensional {
        /// The listed combinations.
        rates: Vec<DimensionalRate>,
        /// The rate of unlisted combinations.
        fallback: Option<Amount>,
    },
    /// `tiering: GRADUATED`.
    Graduated(Vec<Tier>),
    /// `tiering: VOLUME`.
    Volume(Vec<Tier>),
    /// `tiering: PACKAGE`: `unitAmount` per started `packageSize` units.
    Package {
        /// Units per package.
        size: Quantity,
        /// Price per package.
        unit_amount: Amount,
    },
}

/// The wire and storage form of a rate card: `tiering` plus the fields that tiering uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateCardWire {
    /// `NONE`, `GRADUATED`, `VOLUME` or `PACKAGE`.
    pub tiering: Option<String>,
    /// Per unit (NONE) or per package (PACKAGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_amount: Option<Amount>,
    /// Units per package (PACKAGE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_size: Option<Quantity>,
    /// Tiers (GRADUATED, VOLUME).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<Tier>>,
    /// Dimensional rates (NONE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensional_rates: Option<Vec<DimensionalRate>>,
    /// Rate of unlisted combinations (with dimensional rates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_unit_amount: Option<Amount>,
}

impl From<RateCard> for RateCardWire {
    fn from(card: RateCard) -> Self {
        let tiering = |t: &str| Some(t.to_owned());
        match card {
            RateCard::PerUnit(unit) => Self {
                tiering: tiering("NONE"),
                unit_amount: Some(unit),
                ..Self::default()
            },
            RateCard::Dimensional { rates, fallback } => Self {
                tiering: tiering("NONE"),
                dimensional_rates: Some(rates),
                fallback_unit_amount: fallback,
                ..Self::default()
            },
            RateCard::Graduated(tiers) => Self {
                tiering: tiering("GRADUATED"),
                tiers: Some(tiers),
                ..Self::default()
            },
            RateCard::Volume(tiers) => Self {
                tiering: tiering("VOLUME"),
                tiers: Some(tiers),
                ..Self::default()
            },
            RateCard::Package { size, unit_amount } => Self {
                tiering: tiering("PACKAGE"),
                unit_amount: Some(unit_amount),
                package_size: Some(size),
                ..Self::default()
            },
        }
    }
}

fn not_for(field: &str, tiering: &str) -> Error {
    Error::unprocessable(
        "field_not_allowed",
        format!("{field} does not apply to tiering {tiering}"),
    )
    .at(field)
}

fn needed(field: &str, tiering: &str) -> Error {
    Error::unprocessable("missing_field", format!("tiering {tiering} needs {field}")).at(field)
}

impl TryFrom<RateCardWire> for RateCard {
    type Error = Error;

    /// Checks that exactly the fields of the chosen tiering are present, and that tiers are
    /// contiguous and package sizes positive. Paths are relative to the price.
    fn try_from(w: RateCardWire) -> Result<Self> {
        let tiering = w.tiering.as_deref().unwrap_or("NONE");
        let present = [
            ("unitAmount", w.unit_amount.is_some()),
            ("packageSize", w.package_size.is_some()),
            ("tiers", w.tiers.is_some()),
            ("dimensionalRates", w.dimensional_rates.is_some()),
            ("fallbackUnitAmount", w.fallback_unit_amount.is_some()),
        ];
        let allowed: &[&str] = match tiering {
            "NONE" if w.dimensional_rates.is_some() => &["dimensionalRates", "fallbackUnitAmount"],
            "NONE" => &["unitAmount"],
            "GRADUATED" | "VOLUME" => &["tiers"],
            "PACKAGE" => &["unitAmount", "packageSize"],
            other => {
                return Err(Error::unprocessable(
                    "invalid_tiering",
                    format!("'{other}' is not a tiering; use NONE, GRADUATED, VOLUME or PACKAGE"),
                )
                .at("tiering"));
            }
        };
        if let Some((field, _)) = present.iter().find(|(f, p)| *p && !allowed.contains(f)) {
            return Err(not_for(field, tiering));
        }
        let tiers = |tiers: Option<Vec<Tier>>| -> Result<Vec<Tier>> {
            let tiers = tiers.ok_or_else(|| needed("tiers", tiering))?;
            validate_tiers(&tiers).map_err(|e| e.at("tiers"))?;
            Ok(tiers)
        };
        Ok(match tiering {
            "NONE" => match w.dimensional_rates {
                Some(rates) => {
                    if rates.is_empty() || rates.len() > MAX_DIMENSIONAL_RATES {
                        return Err(Error::unprocessable(
                            "invalid_dimensional_rates",
                            format!("give 1 to {MAX_DIMENSIONAL_RATES} dimensional rates"),
                        )
                        .at("dimensionalRates"));
                    }
                    RateCard::Dimensional {
                        rates,
                        fallback: w.fallback_unit_amount,
                    }
                }
                None => {
                    RateCard::PerUnit(w.unit_amount.ok_or_else(|| needed("unitAmount", tiering))?)
                }
            },
            "GRADUATED" => RateCard::Graduated(tiers(w.tiers)?),
            "VOLUME" => RateCard::Volume(tiers(w.tiers)?),
            _ => {
                let size = w
                    .package_size
                    .ok_or_else(|| needed("packageSize", tiering))?;
                if size.value().is_zero() {
                    return Err(Error::unprocessable(
                        "invalid_package_size",
                        "packageSize must be greater than 0",
                    )
                    .at("packageSize"));
                }
                RateCard::Package {
                    size,
                    unit_amount: w.unit_amount.ok_or_else(|| needed("unitAmount", tiering))?,
                }
            }
        })
    }
}

impl RateCard {
    /// The rate for usage with these dimension values (`None` for non-dimensional meters).
    /// `None` back means an unlisted combination without a fallback: not billable.
    pub fn rate_for(&self, dimensions: Option<&BTreeMap<String, String>>) -> Option<UsageRate> {
        Some(match self {
            RateCard::PerUnit(unit) => UsageRate::PerUnit {
                unit_amount: unit.clone(),
            },
            RateCard::Dimensional { rates, fallback } => {
                let listed = dimensions.and_then(|d| rates.iter().find(|r| &r.dimensions == d));
                UsageRate::PerUnit {
                    unit_amount: listed
                        .map(|r| r.unit_amount.clone())
                        .or_else(|| fallback.clone())?,
                }
            }
            RateCard::Graduated(tiers) => UsageRate::Graduated {
                tiers: tiers.clone(),
            },
            RateCard::Volume(tiers) => UsageRate::Volume {
                tiers: tiers.clone(),
            },
            RateCard::Package { size, unit_amount } => UsageRate::Package {
                package_size: size.clone(),
                unit_amount: unit_amount.clone(),
            },
        })
    }

    /// Whether each combination of dimension values gets its own line.
    pub fn is_dimensional(&self) -> bool {
        matches!(self, RateCard::Dimensional { .. })
    }
}

/// A usage price: a meter and how its quantity is priced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsagePrice {
    /// The meter whose quantity is priced.
    pub meter_id: MeterId,
    /// The meter's code, for readers.
    pub meter_code: MeterCode,
    /// How the meter combines events (copied from the meter, which never changes it).
    pub aggregation_type: Aggregation,
    /// The rate card.
    #[serde(flatten)]
    pub rate: RateCard,
}

/// What a price charges for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PriceKind {
    /// A fixed fee per period.
    Flat {
        /// The fee.
        #[serde(rename = "flatAmount")]
        flat_amount: Amount,
    },
    /// Usage of a meter.
    Usage(UsagePrice),
}

/// One price of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Price {
    /// `price_…`; contracts override prices by this id.
    pub id: PriceId,
    /// Shown on invoice lines; defaults from the plan or meter name.
    pub description: String,
    /// Flat or usage.
    #[serde(flatten)]
    pub kind: PriceKind,
}

impl Price {
    /// The meter this price reads, for usage prices.
    pub fn meter_id(&self) -> Option<&MeterId> {
        match &self.kind {
            PriceKind::Usage(u) => Some(&u.meter_id),
            PriceKind::Flat { .. } => None,
        }
    }
}

/// A plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    /// `plan_…`
    pub id: PlanId,
    /// Display name.
    pub name: PlanName,
    /// Optional explanation.
    #[serde(default)]
    pub description: Option<Description>,
    /// Every price of the plan is in this currency.
    pub currency: Currency,
    /// Days from invoice date to due date; 0 = due on receipt.
    pub net_terms: u16,
    /// Whether contracts charge the saved payment method automatically by default.
    pub auto_pay: bool,
    /// Period length.
    pub billing_interval: BillingInterval,
    /// Days after a period ends during which late usage still lands on its invoice.
    pub grace_period_days: u16,
    /// The prices, at least one.
    pub prices: Vec<Price>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl Plan {
    /// The meters this plan's usage prices read.
    pub fn meter_ids(&self) -> BTreeSet<&MeterId> {
        self.prices.iter().filter_map(Price::meter_id).collect()
    }
}

/// `POST /v1/plans` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreatePlan {
    /// Required.
    pub name: Option<String>,
    /// Optional.
    pub description: Option<String>,
    /// ISO 4217; USD when omitted.
    pub currency: Option<String>,
    /// Days; 0 when omitted.
    pub net_terms: Option<u16>,
    /// Only with `netTerms: 0`.
    pub auto_pay: Option<bool>,
    /// MONTH when omitted.
    pub billing_interval: Option<String>,
    /// 0 when omitted.
    pub grace_period_days: Option<u16>,
    /// Required, 1 to 20.
    pub prices: Option<Vec<PriceInput>>,
}

/// One price as sent. (The rate fields are listed here rather than flattened from
/// [`RateCardWire`], because serde cannot refuse unknown fields through a flatten.)
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriceInput {
    /// `FLAT` or `USAGE`.
    pub model: Option<String>,
    /// Shown on invoice lines.
    pub description: Option<String>,
    /// FLAT: the fee per period.
    pub flat_amount: Option<Amount>,
    /// USAGE: the meter by id…
    pub meter_id: Option<String>,
    /// …or by code.
    pub meter_code: Option<String>,
    /// USAGE: `NONE` (default), `GRADUATED`, `VOLUME` or `PACKAGE`.
    pub tiering: Option<String>,
    /// Per unit (NONE) or per package (PACKAGE).
    pub unit_amount: Option<Amount>,
    /// Units per package (PACKAGE).
    pub package_size: Option<Quantity>,
    /// Tiers (GRADUATED, VOLUME).
    pub tiers: Option<Vec<Tier>>,
    /// Dimensional rates (NONE).
    pub dimensional_rates: Option<Vec<DimensionalRate>>,
    /// Rate of unlisted combinations.
    pub fallback_unit_amount: Option<Amount>,
}

impl PriceInput {
    fn rate(&self) -> RateCardWire {
        RateCardWire {
            tiering: self.tiering.clone(),
            unit_amount: self.unit_amount.clone(),
            package_size: self.package_size.clone(),
            tiers: self.tiers.clone(),
            dimensional_rates: self.dimensional_rates.clone(),
            fallback_unit_amount: self.fallback_unit_amount.clone(),
        }
    }
}

/// How a price names its meter; resolved to a stored meter before the plan is parsed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MeterRef {
    /// By `mtr_…` id.
    Id(MeterId),
    /// By code.
    Code(MeterCode),
}

impl PriceInput {
    /// The meter this price names, if it names one validly.
    pub fn meter_ref(&self) -> Result<Option<MeterRef>> {
        match (&self.meter_id, &self.meter_code) {
            (Some(id), _) => Ok(Some(MeterRef::Id(
                MeterId::parse(id).map_err(|_| unknown_meter(id).at("meterId"))?,
            ))),
            (None, Some(code)) => Ok(Some(MeterRef::Code(
                MeterCode::parse(code.clone()).map_err(|e| e.at("meterCode"))?,
            ))),
            (None, None) => Ok(None),
        }
    }
}

fn unknown_meter(reference: &str) -> Error {
    Error::unprocessable("unknown_meter", format!("no meter '{reference}'"))
}

impl CreatePlan {
    /// Every meter the prices name, to look up before `parse`.
    pub fn meter_refs(&self) -> Result<Vec<MeterRef>> {
        let mut refs = Vec::new();
        for (i, price) in self.prices.iter().flatten().enumerate() {
            if let Some(r) = price
                .meter_ref()
                .map_err(|e| e.at(format!("prices[{i}]")))?
            {
                refs.push(r);
            }
        }
        Ok(refs)
    }

    /// Parses the plan; `meters` must hold the meters `meter_refs` named that exist.
    pub fn parse(self, now: DateTime<Utc>, meters: &[Meter]) -> Result<Plan> {
        let name = self
            .name
            .ok_or_else(|| Error::invalid("missing_field", "name is required").at("name"))
            .and_then(|n| PlanName::parse(n).map_err(|e| e.at("name")))?;
        let currency = match self.currency {
            Some(code) => Currency::parse(&code).map_err(|e| e.at("currency"))?,
            None => Currency::USD,
        };
        let net_terms = self.net_terms.unwrap_or(0);
        if net_terms > MAX_NET_TERMS {
            return Err(Error::unprocessable(
                "invalid_net_terms",
                format!("netTerms must be 0 to {MAX_NET_TERMS} days"),
            )
            .at("netTerms"));
        }
        let auto_pay = self.auto_pay.unwrap_or(false);
        if auto_pay && net_terms != 0 {
            return Err(Error::unprocessable(
                "auto_pay_requires_net_0",
                "auto-pay charges on the invoice date, so it needs netTerms 0 (due on receipt)",
            )
            .at("autoPay"));
        }
        let grace_period_days = self.grace_period_days.unwrap_or(0);
        if grace_period_days > MAX_GRACE_PERIOD_DAYS {
            return Err(Error::unprocessable(
                "invalid_grace_period",
                format!("gracePeriodDays must be 0 to {MAX_GRACE_PERIOD_DAYS}"),
            )
            .at("gracePeriodDays"));
        }
        let billing_interval = match self.billing_interval {
            Some(raw) => BillingInterval::parse(&raw).map_err(|e| e.at("billingInterval"))?,
            None => BillingInterval::Month,
        };
        let raw_prices = self
            .prices
            .ok_or_else(|| Error::invalid("missing_field", "prices is required").at("prices"))?;
        if raw_prices.is_empty() || raw_prices.len() > MAX_PRICES {
            return Err(Error::unprocessable(
                "invalid_prices",
                format!("a plan has 1 to {MAX_PRICES} prices"),
            )
            .at("prices"));
        }
        let mut prices = Vec::with_capacity(raw_prices.len());
        let mut seen_meters = BTreeSet::new();
        for (i, raw) in raw_prices.into_iter().enumerate() {
            let at = |e: Error| e.at(format!("prices[{i}]"));
            let price = parse_price(raw, &name, meters).map_err(at)?;
            if let Some(meter) = price.meter_id()
                && !seen_meters.insert(meter.clone())
            {
                return Err(at(Error::unprocessable(
                    "duplicate_meter",
                    "two prices of one plan may not read the same meter: its usage would be billed twice",
                )
                .at("meterId")));
            }
            prices.push(price);
        }
        Ok(Plan {
            id: PlanId::generate(),
            name,
            description: self
                .description
                .map(|d| Description::parse(d).map_err(|e| e.at("description")))
                .transpose()?,
            currency,
            net_terms,
            auto_pay,
            billing_interval,
            grace_period_days,
            prices,
            created_at: now,
        })
    }
}

fn parse_price(raw: PriceInput, plan: &PlanName, meters: &[Meter]) -> Result<Price> {
    let description = raw
        .description
        .clone()
        .map(|d| Description::parse(d).map_err(|e| e.at("description")))
        .transpose()?;
    let model = raw.model.clone().ok_or_else(|| {
        Error::invalid("missing_field", "model is required (FLAT or USAGE)").at("model")
    })?;
    let kind = match model.as_str() {
        "FLAT" => {
            let usage_fields = [
                ("meterId", raw.meter_id.is_some()),
                ("meterCode", raw.meter_code.is_some()),
                ("tiering", raw.tiering.is_some()),
                ("unitAmount", raw.unit_amount.is_some()),
                ("packageSize", raw.package_size.is_some()),
                ("tiers", raw.tiers.is_some()),
                ("dimensionalRates", raw.dimensional_rates.is_some()),
                ("fallbackUnitAmount", raw.fallback_unit_amount.is_some()),
            ];
            if let Some((field, _)) = usage_fields.iter().find(|(_, p)| *p) {
                return Err(Error::unprocessable(
                    "field_not_allowed",
                    format!("{field} does not apply to a FLAT price"),
                )
                .at(field));
            }
            PriceKind::Flat {
                flat_amount: raw.flat_amount.ok_or_else(|| {
                    Error::unprocessable("missing_field", "a FLAT price needs flatAmount")
                        .at("flatAmount")
                })?,
            }
        }
        "USAGE" => {
            if raw.flat_amount.is_some() {
                return Err(Error::unprocessable(
                    "field_not_allowed",
                    "flatAmount does not apply to a USAGE price (use a FLAT price, or tiers' flatAmount)",
                )
                .at("flatAmount"));
            }
            let reference = raw.meter_ref()?.ok_or_else(|| {
                Error::unprocessable("missing_field", "a USAGE price needs meterId or meterCode")
                    .at("meterId")
            })?;
            let (field, shown) = match &reference {
                MeterRef::Id(id) => ("meterId", id.as_str().to_owned()),
                MeterRef::Code(code) => ("meterCode", code.as_str().to_owned()),
            };
            let meter = meters
                .iter()
                .find(|m| match &reference {
                    MeterRef::Id(id) => &m.id == id,
                    MeterRef::Code(code) => &m.code == code,
                })
                .ok_or_else(|| unknown_meter(&shown).at(field))?;
            if let (Some(_), Some(code)) = (&raw.meter_id, &raw.meter_code)
                && code != meter.code.as_str()
            {
                return Err(Error::unprocessable(
                    "meter_mismatch",
                    format!("meterId is meter {}, not {code}", meter.code),
                )
                .at("meterCode"));
            }
            if meter.status == MeterStatus::Archived {
                return Err(Error::unprocessable(
                    "meter_archived",
                    format!("meter {} is archived", meter.code),
                )
                .at(field));
            }
            let rate = RateCard::try_from(raw.rate())?;
            check_dimensions(&rate, meter)?;
            PriceKind::Usage(UsagePrice {
                meter_id: meter.id.clone(),
                meter_code: meter.code.clone(),
                aggregation_type: meter.aggregation_type,
                rate,
            })
        }
        other => {
            return Err(Error::unprocessable(
                "invalid_model",
                format!("'{other}' is not a price model; use FLAT or USAGE"),
            )
            .at("model"));
        }
    };
    let description = match (&description, &kind) {
        (Some(d), _) => d.as_str().to_owned(),
        (None, PriceKind::Flat { .. }) => format!("{plan} fee"),
        (None, PriceKind::Usage(u)) => meters
            .iter()
            .find(|m| m.id == u.meter_id)
            .map(|m| m.display_name.as_str().to_owned())
            .unwrap_or_else(|| u.meter_code.as_str().to_owned()),
    };
    Ok(Price {
        id: PriceId::generate(),
        description,
        kind,
    })
}

/// Dimensional rates must name exactly the meter's group keys, each combination once.
fn check_dimensions(rate: &RateCard, meter: &Meter) -> Result<()> {
    let RateCard::Dimensional { rates, .. } = rate else {
        return Ok(());
    };
    if meter.group_keys.is_empty() {
        return Err(Error::unprocessable(
            "meter_has_no_group_keys",
            format!(
                "meter {} has no groupKeys, so it cannot have dimensional rates",
                meter.code
            ),
        )
        .at("dimensionalRates"));
    }
    let keys: BTreeSet<&str> = meter.group_keys.iter().map(|k| k.as_str()).collect();
    let mut seen = BTreeSet::new();
    for (i, r) in rates.iter().enumerate() {
        let given: BTreeSet<&str> = r.dimensions.keys().map(String::as_str).collect();
        if given != keys {
            return Err(Error::unprocessable(
                "dimension_keys_mismatch",
                format!(
                    "dimensions must name exactly the meter's group keys: {}",
                    keys.iter().copied().collect::<Vec<_>>().join(", ")
                ),
            )
            .at(format!("dimensionalRates[{i}].dimensions")));
        }
        if !seen.insert(&r.dimensions) {
            return Err(Error::unprocessable(
                "duplicate_dimensions",
                "this combination of dimension values is listed twice",
            )
            .at(format!("dimensionalRates[{i}].dimensions")));
        }
    }
    Ok(())
}
