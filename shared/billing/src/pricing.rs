//! The rates a usage price can have, and the exact (unrounded) amount each charges for a
//! quantity. Rounding happens later, once per invoice line ([`crate::money::Currency::round`]).
//!
//! Rules:
//! - **Per unit**: `quantity × unitAmount`.
//! - **Tiers** are contiguous by construction: tier 0 covers `[0, upTo₀]`, tier *i* covers
//!   `(upTo₍ᵢ₋₁₎, upToᵢ]`. A bound is **inclusive**: a quantity exactly at `upTo` belongs to
//!   that tier, and the next tier starts just above it. `upTo` strictly increases; every tier
//!   but the last has one; the last has none (open-ended); the first `upTo` is above 0; there
//!   is at least one tier and at most [`MAX_TIERS`] ([`validate_tiers`]).
//! - **Graduated**: each unit is priced at the rate of the tier it falls in, and each tier the
//!   quantity reaches into (quantity above the tier's lower bound) adds its `flatAmount` once.
//!   With tiers `[upTo 100 @ 0.10, upTo 1000 @ 0.08, rest @ 0.05]`: 100 → 10.00, 101 → 10.08,
//!   1000 → 82.00, 1001 → 82.05.
//! - **Volume**: the tier the *total* lands in (the first with `quantity ≤ upTo`, else the last)
//!   prices every unit: `quantity × unitAmount + flatAmount`. Same tiers: 101 → 8.08.
//! - **Package**: `ceil(quantity / packageSize) × unitAmount`; a started package is charged in
//!   full (size 1000 @ 2.00: 1 → 2.00, 1000 → 2.00, 1001 → 4.00). `packageSize` must be > 0.
//! - **Zero usage charges nothing** under every model, including a volume or graduated first
//!   tier with a flat amount: no usage, no usage charge (fixed fees are separate prices).
//! - Quantities are never negative (they are aggregates of non-negative values).
//!
//! Arithmetic is exact decimal. The only failure is a result beyond a decimal's range (about
//! 7.9 × 10²⁸): [`UsageRate::try_amount`] reports it as `amount_too_large`,
//! [`UsageRate::amount`] panics.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::money::{Amount, Quantity};

/// Most tiers one price may have; more is a configuration mistake, and the bound keeps a
/// price item small.
pub const MAX_TIERS: usize = 50;

/// One tier of a graduated or volume price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tier {
    /// Inclusive upper bound; `None` only on the last, open-ended tier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub up_to: Option<Quantity>,
    /// Price of each unit in this tier.
    pub unit_amount: Amount,
    /// Charged once when the quantity reaches into this tier (graduated) or lands in it (volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flat_amount: Option<Amount>,
}

/// How a usage price turns a quantity into money. In JSON the model is the `model` field
/// (`PER_UNIT`, `GRADUATED`, `VOLUME`, `PACKAGE`). Values built from client input must pass
/// [`UsageRate::validate`] (the constructors do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    tag = "model",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum UsageRate {
    /// Every unit at one price (tiering `NONE`).
    PerUnit {
        /// Price of each unit.
        unit_amount: Amount,
    },
    /// Each unit at the rate of the tier it falls in.
    Graduated {
        /// Contiguous tiers, see the module rules.
        tiers: Vec<Tier>,
    },
    /// All units at the rate of the tier the total lands in.
    Volume {
        /// Contiguous tiers, see the module rules.
        tiers: Vec<Tier>,
    },
    /// Per started package of `package_size` units.
    Package {
        /// Units per package, > 0.
        package_size: Quantity,
        /// Price of each (started) package.
        unit_amount: Amount,
    },
}

impl UsageRate {
    /// A per-unit rate; always valid.
    pub fn per_unit(unit_amount: Amount) -> Self {
        Self::PerUnit { unit_amount }
    }

    /// A graduated rate over checked tiers (errors name `tiers[i].upTo`).
    pub fn graduated(tiers: Vec<Tier>) -> Result<Self> {
        let rate = Self::Graduated { tiers };
        rate.validate()?;
        Ok(rate)
    }

    /// A volume rate over checked tiers (errors name `tiers[i].upTo`).
    pub fn volume(tiers: Vec<Tier>) -> Result<Self> {
        let rate = Self::Volume { tiers };
        rate.validate()?;
        Ok(rate)
    }

    /// A package rate; the size must be above 0 (error at `packageSize`).
    pub fn package(package_size: Quantity, unit_amount: Amount) -> Result<Self> {
        let rate = Self::Package {
            package_size,
            unit_amount,
        };
        rate.validate()?;
        Ok(rate)
    }

    /// Checks the tiers or the package size; paths are relative to the price
    /// (`tiers[1].upTo`, `packageSize`), so the caller prefixes e.g. `prices[0]`.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::PerUnit { .. } => Ok(()),
            Self::Graduated { tiers } | Self::Volume { tiers } => {
                validate_tiers(tiers).map_err(|e| e.at("tiers"))
            }
            Self::Package { package_size, .. } => {
                if package_size.value().is_zero() {
                    Err(Error::unprocessable(
                        "invalid_package_size",
                        "packageSize must be greater than 0",
                    )
                    .at("packageSize"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The exact, unrounded amount for `quantity` (see the module rules). Zero usage is 0.
    ///
    /// # Panics
    ///
    /// Only when the result exceeds a decimal's range (about 7.9 × 10²⁸), which no real price
    /// reaches; where the inputs are not bounded, use [`UsageRate::try_amount`].
    pub fn amount(&self, quantity: Decimal) -> Decimal {
        self.try_amount(quantity)
            .unwrap_or_else(|e| panic!("pricing quantity {quantity}: {e}"))
    }

    /// [`UsageRate::amount`], reporting a result beyond a decimal's range as
    /// `amount_too_large` (and a zero package size as `invalid_package_size`) instead of
    /// panicking.
    pub fn try_amount(&self, quantity: Decimal) -> Result<Decimal> {
        debug_assert!(
            !quantity.is_sign_negative() || quantity.is_zero(),
            "negative quantity {quantity}"
        );
        if quantity <= Decimal::ZERO {
            return Ok(Decimal::ZERO);
        }
        let too_large = || {
            Error::unprocessable(
                "amount_too_large",
                format!("the amount for quantity {quantity} is too large to compute"),
            )
        };
        let mul = |a: Decimal, b: Decimal| a.checked_mul(b).ok_or_else(too_large);
        let add = |a: Decimal, b: Decimal| a.checked_add(b).ok_or_else(too_large);
        let flat = |t: &Tier| t.flat_amount.as_ref().map_or(Decimal::ZERO, |f| f.value());
        match self {
            Self::PerUnit { unit_amount } => mul(quantity, unit_amount.value()),
            Self::Graduated { tiers } => {
                let mut total = Decimal::ZERO;
                let mut lower = Decimal::ZERO;
                for tier in tiers {
                    if quantity <= lower {
                        break;
                    }
                    let upper = tier
                        .up_to
                        .as_ref()
                        .map_or(quantity, |u| u.value().min(quantity));
                    let units = upper - lower;
                    total = add(total, mul(units, tier.unit_amount.value())?)?;
                    total = add(total, flat(tier))?;
                    lower = upper;
                }
                Ok(total)
            }
            Self::Volume { tiers } => match landed_tier(tiers, quantity) {
                Some(tier) => add(mul(quantity, tier.unit_amount.value())?, flat(tier)),
                None => Ok(Decimal::ZERO),
            },
            Self::Package {
                package_size,
                unit_amount,
            } => {
                let size = package_size.value();
                let remainder = quantity.checked_rem(size).ok_or_else(|| {
                    Error::unprocessable(
                        "invalid_package_size",
                        "packageSize must be greater than 0",
                    )
                    .at("packageSize")
                })?;
                let whole = (quantity - remainder)
                    .checked_div(size)
                    .ok_or_else(too_large)?
                    .round();
                let started = if remainder.is_zero() {
                    whole
                } else {
                    add(whole, Decimal::ONE)?
                };
                mul(started, unit_amount.value())
            }
        }
    }

    /// The unit price to print on an invoice line: the unit price (per unit, volume's landed
    /// tier) or the price per package; `None` for graduated, whose units have mixed rates.
    pub fn unit_amount_for_display(&self, quantity: Decimal) -> Option<Decimal> {
        match self {
            Self::PerUnit { unit_amount } | Self::Package { unit_amount, .. } => {
                Some(unit_amount.value())
            }
            Self::Volume { tiers } => landed_tier(tiers, quantity).map(|t| t.unit_amount.value()),
            Self::Graduated { .. } => None,
        }
    }
}

/// The tier a total lands in: the first whose `upTo` holds it, else the open-ended last one.
fn landed_tier(tiers: &[Tier], quantity: Decimal) -> Option<&Tier> {
    tiers
        .iter()
        .find(|t| t.up_to.as_ref().is_some_and(|u| quantity <= u.value()))
        .or_else(|| tiers.last())
}

/// Checks the tier rules of the module doc. Paths are relative to the tiers array
/// (`[1].upTo`); the caller prefixes its own path, e.g. `prices[0].tiers`.
pub fn validate_tiers(tiers: &[Tier]) -> Result<()> {
    let invalid = |message: String| Error::unprocessable("invalid_tiers", message);
    if tiers.is_empty() {
        return Err(invalid("tiers must not be empty".to_owned()));
    }
    if tiers.len() > MAX_TIERS {
        return Err(invalid(format!(
            "at most {MAX_TIERS} tiers, got {}",
            tiers.len()
        )));
    }
    let last = tiers.len() - 1;
    let mut previous: Option<Decimal> = None;
    for (i, tier) in tiers.iter().enumerate() {
        let at = format!("[{i}].upTo");
        match (&tier.up_to, i == last) {
            (None, false) => {
                return Err(invalid(
                    "every tier but the last needs upTo; only the last tier is open-ended"
                        .to_owned(),
                )
                .at(at));
            }
            (Some(_), true) => {
                return Err(invalid(
                    "the last tier must be open-ended: leave out its upTo".to_owned(),
                )
                .at(at));
            }
            (Some(up_to), false) => {
                let up_to = up_to.value();
                match previous {
                    None if up_to.is_zero() => {
                        return Err(invalid(
                            "upTo of the first tier must be greater than 0".to_owned(),
                        )
                        .at(at));
                    }
                    Some(p) if up_to <= p => {
                        return Err(invalid(format!(
                            "upTo must be greater than the previous tier's upTo ({p})"
                        ))
                        .at(at));
                    }
                    _ => {}
                }
                previous = Some(up_to);
            }
            (None, true) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::money::Currency;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn amount(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

    fn qty(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    fn tier(up_to: Option<&str>, unit: &str, flat: Option<&str>) -> Tier {
        Tier {
            up_to: up_to.map(qty),
            unit_amount: amount(unit),
            flat_amount: flat.map(amount),
        }
    }

    /// `[0–100 @ 0.10, 101–1000 @ 0.08, rest @ 0.05]`.
    fn three_tiers() -> Vec<Tier> {
        vec![
            tier(Some("100"), "0.10", None),
            tier(Some("1000"), "0.08", None),
            tier(None, "0.05", None),
        ]
    }

    /// Asserts `rate.amount(q)` for each `(q, expected)` pair, comparing by value.
    fn assert_amounts(rate: &UsageRate, cases: &[(&str, &str)]) {
        for (q, expected) in cases {
            assert_eq!(rate.amount(dec(q)), dec(expected), "quantity {q}");
        }
    }

    #[test]
    fn per_unit_multiplies_exactly() {
        let rate = UsageRate::per_unit(amount("0.10"));
        assert_amounts(&rate, &[("0", "0"), ("1", "0.10"), ("2.5", "0.25")]);
    }

    #[test]
    fn sub_cent_prices_sum_exactly_and_round_once() {
        let rate = UsageRate::per_unit(amount("0.0001"));
        let exact = rate.amount(dec("1234567"));
        assert_eq!(exact.to_string(), "123.4567");
        assert_eq!(Currency::USD.round(exact).to_string(), "123.46");
    }

    #[test]
    fn a_yen_line_rounds_to_whole_yen() {
        let jpy = Currency::parse("JPY").unwrap();
        let rate = UsageRate::per_unit(amount("0.35"));
        assert_eq!(jpy.round(rate.amount(dec("3"))), dec("1")); // 1.05
        assert_eq!(jpy.round(rate.amount(dec("10"))), dec("4")); // 3.5, half up
        assert_eq!(jpy.to_minor_units(rate.amount(dec("10"))).unwrap(), 4);
    }

    #[test]
    fn graduated_prices_each_unit_in_its_tier_with_inclusive_bounds() {
        let rate = UsageRate::graduated(three_tiers()).unwrap();
        assert_amounts(
            &rate,
            &[
                ("0", "0"),
                ("1", "0.10"),
                ("50.5", "5.05"),
                ("100", "10.00"),    // exactly at upTo: still tier 0
                ("100.5", "10.04"),  // 10 + 0.5 × 0.08
                ("101", "10.08"),    // 10 + 1 × 0.08
                ("1000", "82.00"),   // 10 + 900 × 0.08
                ("1001", "82.05"),   // 82 + 1 × 0.05
                ("11000", "582.00"), // 82 + 10000 × 0.05
            ],
        );
    }

    #[test]
    fn graduated_flat_amounts_are_charged_for_every_tier_reached() {
        let rate = UsageRate::graduated(vec![
            tier(Some("100"), "0", Some("5.00")),
            tier(Some("1000"), "0.08", Some("10.00")),
            tier(None, "0.05", None),
        ])
        .unwrap();
        assert_amounts(
            &rate,
            &[
                ("0", "0"), // no usage, not even the first flat
                ("1", "5.00"),
                ("100", "5.00"),   // at the bound: the next tier is not reached
                ("101", "15.08"),  // 5 + 0.08 + 10
                ("1000", "87.00"), // 5 + 72 + 10
                ("1001", "87.05"),
            ],
        );
        assert_eq!(rate.unit_amount_for_display(dec("50")), None);
    }

    #[test]
    fn volume_prices_all_units_at_the_tier_the_total_lands_in() {
        let rate = UsageRate::volume(three_tiers()).unwrap();
        assert_amounts(
            &rate,
            &[
                ("0", "0"),
                ("1", "0.10"),
                ("100", "10.00"),  // at upTo: tier 0
                ("101", "8.08"),   // 101 × 0.08
                ("1000", "80.00"), // 1000 × 0.08
                ("1001", "50.05"), // 1001 × 0.05
            ],
        );
        assert_eq!(rate.unit_amount_for_display(dec("100")), Some(dec("0.10")));
        assert_eq!(rate.unit_amount_for_display(dec("101")), Some(dec("0.08")));
        assert_eq!(rate.unit_amount_for_display(dec("5000")), Some(dec("0.05")));
    }

    #[test]
    fn volume_adds_the_landed_tiers_flat_amount_but_not_for_zero_usage() {
        let rate = UsageRate::volume(vec![
            tier(Some("10"), "1", Some("2")),
            tier(None, "0.5", Some("20")),
        ])
        .unwrap();
        assert_amounts(
            &rate,
            &[("0", "0"), ("1", "3"), ("10", "12"), ("11", "25.5")],
        );
    }

    #[test]
    fn packages_are_charged_per_started_package() {
        let rate = UsageRate::package(qty("1000"), amount("2.00")).unwrap();
        assert_amounts(
            &rate,
            &[
                ("0", "0"),
                ("1", "2.00"),
                ("999.5", "2.00"),
                ("1000", "2.00"),
                ("1000.001", "4.00"),
                ("1001", "4.00"),
                ("2000", "4.00"),
                ("2001", "6.00"),
            ],
        );
        assert_eq!(rate.unit_amount_for_display(dec("1")), Some(dec("2.00")));
        let halves = UsageRate::package(qty("0.5"), amount("1.00")).unwrap();
        assert_amounts(
            &halves,
            &[("1.2", "3.00"), ("1.5", "3.00"), ("0.1", "1.00")],
        );
    }

    #[test]
    fn per_unit_display_price_is_the_unit_amount() {
        let rate = UsageRate::per_unit(amount("0.0001"));
        assert_eq!(rate.unit_amount_for_display(dec("7")), Some(dec("0.0001")));
    }

    #[test]
    fn results_beyond_a_decimals_range_are_errors_not_panics() {
        let rate = UsageRate::package(qty("0.000000000001"), amount("1000000000000")).unwrap();
        let e = rate.try_amount(Quantity::MAX).unwrap_err();
        assert_eq!(e.code, "amount_too_large");
        let rate = UsageRate::per_unit(amount("1000000000000"));
        assert_eq!(
            rate.try_amount(Decimal::MAX).unwrap_err().code,
            "amount_too_large"
        );
    }

    #[test]
    #[should_panic(expected = "amount_too_large")]
    fn the_infallible_amount_panics_only_beyond_a_decimals_range() {
        UsageRate::per_unit(amount("1000000000000")).amount(Decimal::MAX);
    }

    #[test]
    fn a_package_size_of_zero_is_refused_at_its_path() {
        let e = UsageRate::package(Quantity::ZERO, amount("1")).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.param.as_deref()),
            ("invalid_package_size", Some("packageSize"))
        );
    }

    #[test]
    fn tier_rules_are_enforced_with_paths_relative_to_the_tiers() {
        let cases: Vec<(Vec<Tier>, Option<&str>, &str)> = vec![
            (vec![], None, "must not be empty"),
            (
                vec![tier(Some("10"), "1", None)],
                Some("[0].upTo"),
                "open-ended",
            ),
            (
                vec![tier(None, "1", None), tier(None, "1", None)],
                Some("[0].upTo"),
                "needs upTo",
            ),
            (
                vec![tier(Some("0"), "1", None), tier(None, "1", None)],
                Some("[0].upTo"),
                "greater than 0",
            ),
            (
                vec![
                    tier(Some("10"), "1", None),
                    tier(Some("10"), "1", None),
                    tier(None, "1", None),
                ],
                Some("[1].upTo"),
                "greater than the previous tier's upTo (10)",
            ),
            (
                vec![
                    tier(Some("10"), "1", None),
                    tier(Some("20"), "1", None),
                    tier(Some("15"), "1", None),
                    tier(None, "1", None),
                ],
                Some("[2].upTo"),
                "greater than the previous",
            ),
            (
                (0..=MAX_TIERS)
                    .map(|i| tier(Some(&(i + 1).to_string()), "1", None))
                    .collect(),
                None,
                "at most 50 tiers",
            ),
        ];
        for (tiers, param, message) in cases {
            let e = validate_tiers(&tiers).unwrap_err();
            assert_eq!(e.code, "invalid_tiers");
            assert_eq!(e.param.as_deref(), param, "{message}");
            assert!(e.message.contains(message), "{}", e.message);
            // Through the rate, the path is relative to the price.
            let e = UsageRate::volume(tiers).unwrap_err();
            let expected = format!("tiers{}", param.map_or("", |p| p));
            assert_eq!(e.param.as_deref(), Some(expected.as_str()));
        }
        assert!(validate_tiers(&[tier(None, "1", None)]).is_ok());
        let fifty: Vec<Tier> = (0..MAX_TIERS)
            .map(|i| {
                tier(
                    (i + 1 < MAX_TIERS).then(|| (i + 1).to_string()).as_deref(),
                    "1",
                    None,
                )
            })
            .collect();
        assert!(validate_tiers(&fifty).is_ok());
    }

    #[test]
    fn rates_travel_as_json_with_a_model_tag_and_string_amounts() {
        let rate = UsageRate::graduated(vec![
            tier(Some("100"), "0.10", Some("1.00")),
            tier(None, "0.05", None),
        ])
        .unwrap();
        let json = serde_json::to_string(&rate).unwrap();
        assert_eq!(
            json,
            r#"{"model":"GRADUATED","tiers":[{"upTo":"100","unitAmount":"0.10","flatAmount":"1.00"},{"unitAmount":"0.05"}]}"#
        );
        assert_eq!(serde_json::from_str::<UsageRate>(&json).unwrap(), rate);
        let package: UsageRate =
            serde_json::from_str(r#"{"model":"PACKAGE","packageSize":"1000","unitAmount":"2.00"}"#)
                .unwrap();
        assert_eq!(
            package,
            UsageRate::package(qty("1000"), amount("2.00")).unwrap()
        );
        assert!(
            serde_json::from_str::<UsageRate>(r#"{"model":"PER_UNIT","unitAmount":0.1}"#).is_err()
        );
    }

    /// Four tiers with a fractional edge and two flat fees, priced by hand below.
    fn four_tiers() -> Vec<Tier> {
        vec![
            tier(Some("10"), "1.00", Some("5")),
            tier(Some("20.5"), "0.50", None),
            tier(Some("100"), "0.25", Some("2")),
            tier(None, "0.10", None),
        ]
    }

    #[test]
    fn graduated_matches_amounts_computed_by_hand() {
        let rate = UsageRate::graduated(four_tiers()).unwrap();
        assert_amounts(
            &rate,
            &[
                ("0", "0"),
                ("0.5", "5.50"),      // 0.5 × 1 + 5
                ("10", "15.00"),      // 10 × 1 + 5
                ("10.5", "15.25"),    // 15 + 0.5 × 0.50
                ("20.5", "20.25"),    // 15 + 10.5 × 0.50
                ("21", "22.375"),     // 20.25 + 0.5 × 0.25 + 2
                ("100", "42.125"),    // 20.25 + 79.5 × 0.25 + 2
                ("100.01", "42.126"), // 42.125 + 0.01 × 0.10
                ("1000", "132.125"),  // 42.125 + 900 × 0.10
            ],
        );
        let readme = UsageRate::graduated(three_tiers()).unwrap();
        assert_amounts(&readme, &[("250", "22.00"), ("5000", "282.00")]);
        let sub_cent = UsageRate::graduated(vec![
            tier(Some("1000"), "0.0001", None),
            tier(None, "0.00005", None),
        ])
        .unwrap();
        assert_amounts(&sub_cent, &[("1500", "0.125")]); // 0.1 + 500 × 0.00005
    }

    #[test]
    fn volume_matches_amounts_computed_by_hand() {
        let rate = UsageRate::volume(four_tiers()).unwrap();
        assert_amounts(
            &rate,
            &[
                ("0", "0"),
                ("0.5", "5.50"),      // 0.5 × 1 + 5
                ("10", "15.00"),      // 10 × 1 + 5
                ("10.5", "5.25"),     // 10.5 × 0.50
                ("20.5", "10.25"),    // 20.5 × 0.50
                ("21", "7.25"),       // 21 × 0.25 + 2
                ("100", "27.00"),     // 100 × 0.25 + 2
                ("100.01", "10.001"), // 100.01 × 0.10
                ("1000", "100.00"),   // 1000 × 0.10
            ],
        );
        let readme = UsageRate::volume(three_tiers()).unwrap();
        assert_amounts(&readme, &[("250", "20.00"), ("5000", "250.00")]);
        let sub_cent = UsageRate::volume(vec![
            tier(Some("1000"), "0.0001", None),
            tier(None, "0.00005", None),
        ])
        .unwrap();
        assert_amounts(&sub_cent, &[("1000", "0.1"), ("1500", "0.075")]);
    }

    // ---- property tests -------------------------------------------------------------------

    /// A small non-negative price with up to 4 decimals.
    pub(crate) fn price() -> impl Strategy<Value = Amount> {
        (0i64..=100_000, 0u32..=4)
            .prop_map(|(m, s)| Amount::parse(&Decimal::new(m, s).to_string()).unwrap())
    }

    /// 1 to 6 valid tiers with random positive widths (up to 2 decimals) and optional flats.
    pub(crate) fn tiers() -> impl Strategy<Value = Vec<Tier>> {
        let width = (1i64..=100_000, 0u32..=2).prop_map(|(m, s)| Decimal::new(m, s));
        prop::collection::vec((width, price(), prop::option::of(price())), 1..=6).prop_map(|raw| {
            let last = raw.len() - 1;
            let mut bound = Decimal::ZERO;
            raw.into_iter()
                .enumerate()
                .map(|(i, (width, unit_amount, flat_amount))| {
                    bound += width;
                    Tier {
                        up_to: (i < last).then(|| Quantity::from_decimal(bound).unwrap()),
                        unit_amount,
                        flat_amount,
                    }
                })
                .collect()
        })
    }

    /// Any valid rate.
    pub(crate) fn rate() -> impl Strategy<Value = UsageRate> {
        let size = (1i64..=10_000, 0u32..=2)
            .prop_map(|(m, s)| Quantity::from_decimal(Decimal::new(m, s)).unwrap());
        prop_oneof![
            price().prop_map(UsageRate::per_unit),
            tiers().prop_map(|t| UsageRate::graduated(t).unwrap()),
            tiers().prop_map(|t| UsageRate::volume(t).unwrap()),
            (size, price()).prop_map(|(s, p)| UsageRate::package(s, p).unwrap()),
        ]
    }

    /// Integer and decimal quantities, reaching past the tiers' bounds.
    fn quantity() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (0u64..=700_000).prop_map(Decimal::from),
            (0i64..=70_000_000, 1u32..=3).prop_map(|(m, s)| Decimal::new(m, s)),
        ]
    }

    proptest! {
        #[test]
        fn graduated_and_volume_agree_within_the_first_tier(
            tiers in tiers(),
            share in 1u32..=100,
        ) {
            // A quantity inside tier 0 (or anywhere, with one open-ended tier): both models
            // price it as that tier's units plus its flat, so they must agree.
            let first = &tiers[0];
            let q = match &first.up_to {
                Some(bound) => bound.value() * Decimal::new(i64::from(share), 2),
                None => Decimal::from(share),
            };
            let per_unit_and_flat = q * first.unit_amount.value()
                + first.flat_amount.as_ref().map_or(Decimal::ZERO, |f| f.value());
            prop_assert_eq!(UsageRate::graduated(tiers.clone()).unwrap().amount(q), per_unit_and_flat);
            prop_assert_eq!(UsageRate::volume(tiers).unwrap().amount(q), per_unit_and_flat);
        }

        #[test]
        fn graduated_crosses_each_tier_edge_at_the_next_tiers_rate(tiers in tiers()) {
            // Widths are at least 0.01, so a step of 0.001 stays between two edges.
            let step = Decimal::new(1, 3);
            let rate = UsageRate::graduated(tiers.clone()).unwrap();
            for pair in tiers.windows(2) {
                let edge = pair[0].up_to.as_ref().unwrap().value();
                let below = rate.amount(edge) - rate.amount(edge - step);
                prop_assert_eq!(below, step * pair[0].unit_amount.value(), "just below {}", edge);
                let above = rate.amount(edge + step) - rate.amount(edge);
                let flat = pair[1].flat_amount.as_ref().map_or(Decimal::ZERO, |f| f.value());
                prop_assert_eq!(above, step * pair[1].unit_amount.value() + flat, "just above {}", edge);
            }
        }

        #[test]
        fn graduated_is_its_first_tier_in_full_plus_the_other_tiers_on_the_rest(
            tiers in tiers(),
            q in quantity(),
        ) {
            prop_assume!(tiers.len() > 1);
            let edge = tiers[0].up_to.as_ref().unwrap().value();
            prop_assume!(q > edge);
            let rest: Vec<Tier> = tiers[1..]
                .iter()
                .map(|t| Tier {
                    up_to: t.up_to.as_ref().map(|u| Quantity::from_decimal(u.value() - edge).unwrap()),
                    ..t.clone()
                })
                .collect();
            let whole = UsageRate::graduated(tiers).unwrap();
            let rest = UsageRate::graduated(rest).unwrap();
            prop_assert_eq!(whole.amount(q), whole.amount(edge) + rest.amount(q - edge));
        }

        #[test]
        fn volume_inside_one_tier_is_that_tiers_unit_price_times_the_quantity_plus_its_flat(
            tiers in tiers(),
            pick in any::<prop::sample::Index>(),
            share in 1u32..=100,
        ) {
            // A quantity in (lower, upTo] of tier i, the last tier's span taken as 1,000 wide.
            let i = pick.index(tiers.len());
            let lower = if i == 0 { Decimal::ZERO } else { tiers[i - 1].up_to.as_ref().unwrap().value() };
            let upper = tiers[i].up_to.as_ref().map_or(lower + Decimal::from(1000), |u| u.value());
            let q = lower + (upper - lower) * Decimal::new(i64::from(share), 2);
            let tier = &tiers[i];
            let flat = tier.flat_amount.as_ref().map_or(Decimal::ZERO, |f| f.value());
            let rate = UsageRate::volume(tiers.clone()).unwrap();
            prop_assert_eq!(rate.amount(q), q * tier.unit_amount.value() + flat);
            prop_assert_eq!(rate.unit_amount_for_display(q), Some(tier.unit_amount.value()));
        }

        #[test]
        fn one_tier_or_one_rate_for_every_tier_prices_like_per_unit(
            unit in price(),
            tiers in tiers(),
            q in quantity(),
        ) {
            let per_unit = UsageRate::per_unit(unit.clone()).amount(q);
            let same_rate: Vec<Tier> = tiers
                .into_iter()
                .map(|t| Tier { unit_amount: unit.clone(), flat_amount: None, ..t })
                .collect();
            prop_assert_eq!(UsageRate::graduated(same_rate.clone()).unwrap().amount(q), per_unit);
            prop_assert_eq!(UsageRate::volume(same_rate).unwrap().amount(q), per_unit);
            let one = vec![Tier { up_to: None, unit_amount: unit, flat_amount: None }];
            prop_assert_eq!(UsageRate::graduated(one.clone()).unwrap().amount(q), per_unit);
            prop_assert_eq!(UsageRate::volume(one).unwrap().amount(q), per_unit);
        }

        #[test]
        fn more_usage_never_costs_less_except_across_volume_tiers(
            rate in rate(),
            a in quantity(),
            b in quantity(),
        ) {
            prop_assume!(!matches!(rate, UsageRate::Volume { .. }));
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(rate.amount(low) <= rate.amount(high));
        }

        #[test]
        fn packages_cover_the_quantity_with_less_than_one_spare(
            size in (1i64..=10_000, 0u32..=3).prop_map(|(m, s)| Decimal::new(m, s)),
            q in quantity(),
        ) {
            let rate = UsageRate::package(
                Quantity::from_decimal(size).unwrap(),
                Amount::parse("1").unwrap(),
            ).unwrap();
            let packages = rate.amount(q);
            prop_assert_eq!(packages.fract(), Decimal::ZERO);
            prop_assert!(packages * size >= q);
            prop_assert!(q.is_zero() || (packages - Decimal::ONE) * size < q);
        }
    }
}
