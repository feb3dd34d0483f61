//! The "Create plan" form's pricing items, rebuilt from what was typed: "Add fixed fee",
//! "Add usage price", "Add tier" and "Add dimensional rate" are submit buttons that show the
//! form again with one more row (a round trip instead of script), keeping every value.

use std::collections::BTreeMap;

use crate::page::{Choice, FormState, choices};

/// The tiering choices of a usage price: (wire name, words).
pub const TIERINGS: [(&str, &str); 4] = [
    ("NONE", "None (one unit amount)"),
    ("GRADUATED", "Graduated tiers"),
    ("VOLUME", "Volume tiers"),
    ("PACKAGE", "Package"),
];

/// A text field of a row: its name (the API path), id and label.
#[derive(Debug, Clone)]
pub struct Field {
    /// The API path, e.g. `prices[1].unitAmount`.
    pub name: String,
    /// The element id.
    pub id: String,
    /// The label.
    pub label: String,
    /// What was typed.
    pub value: String,
    /// The error to show next to it.
    pub error: Option<String>,
}

/// One price row.
#[derive(Debug, Clone)]
pub struct PriceRow {
    /// Its index in `prices`.
    pub index: usize,
    /// `FLAT` or `USAGE`.
    pub model: String,
    /// The fieldset's legend.
    pub legend: String,
    /// Description, and for FLAT the amount; for USAGE the unit amount, package size and
    /// fallback.
    pub fields: Vec<Field>,
    /// USAGE: the meter select's options.
    pub meters: Vec<Choice>,
    /// USAGE: the tiering select's options.
    pub tierings: Vec<Choice>,
    /// USAGE: tier rows, each (up to, unit amount, flat fee).
    pub tiers: Vec<[Field; 3]>,
    /// USAGE: dimensional rate rows, each (dimensions, unit amount).
    pub rates: Vec<[Field; 2]>,
    /// Errors of the meter and tiering selects.
    pub meter_error: Option<String>,
    /// See `meter_error`.
    pub tiering_error: Option<String>,
}

/// Every field name the form can have for these rows, to place errors.
pub fn field_names(rows: &[PriceRow]) -> Vec<String> {
    let mut names: Vec<String> = [
        "name",
        "currency",
        "netTerms",
        "autoPay",
        "billingInterval",
        "gracePeriodDays",
        "prices",
    ]
    .map(String::from)
    .to_vec();
    for row in rows {
        let p = format!("prices[{}]", row.index);
        names.push(format!("{p}.meterCode"));
        names.push(format!("{p}.tiering"));
        names.push(format!("{p}.tiers"));
        names.push(format!("{p}.dimensionalRates"));
        for f in &row.fields {
            names.push(f.name.clone());
        }
        for t in &row.tiers {
            names.extend(t.iter().map(|f| f.name.clone()));
        }
        for r in &row.rates {
            names.extend(r.iter().map(|f| f.name.clone()));
        }
    }
    names
}

fn field(state: &FormState, name: String, id: String, label: String) -> Field {
    Field {
        value: state.value(&name).to_owned(),
        error: state.error(&name).map(str::to_owned),
        name,
        id,
        label,
    }
}

/// How many rows an indexed list has in the values (`prices[3].x` → 4).
fn count(values: &BTreeMap<String, String>, prefix: &str) -> usize {
    values
        .keys()
        .filter_map(|k| k.strip_prefix(prefix))
        .filter_map(|rest| rest.split(']').next()?.parse::<usize>().ok())
        .map(|i| i + 1)
        .max()
        .unwrap_or(0)
        .min(20)
}

/// What an "Add …" button asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Add {
    /// A fixed fee row.
    Fixed,
    /// A usage price row.
    Usage,
    /// A tier row on price `i`.
    Tier(usize),
    /// A dimensional rate row on price `i`.
    Rate(usize),
}

impl Add {
    /// Reads the `_add` button's value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "fixed" => Some(Self::Fixed),
            "usage" => Some(Self::Usage),
            _ => {
                let (what, i) = raw.split_once('-')?;
                let i = i.parse().ok().filter(|i| *i < 20)?;
                match what {
                    "tier" => Some(Self::Tier(i)),
                    "rate" => Some(Self::Rate(i)),
                    _ => None,
                }
            }
        }
    }
}

/// Adds what was asked to the values (a new row is a hidden model field, or an empty field).
pub fn add(values: &mut BTreeMap<String, String>, what: &Add) {
    match what {
        Add::Fixed | Add::Usage => {
            let i = count(values, "prices[");
            if i < 20 {
                let model = if *what == Add::Fixed { "FLAT" } else { "USAGE" };
                values.insert(format!("prices[{i}].model"), model.to_owned());
            }
        }
        Add::Tier(i) => {
            let j = count(values, &format!("prices[{i}].tiers["));
            values.insert(format!("prices[{i}].tiers[{j}].upTo"), String::new());
            if values
                .get(&format!("prices[{i}].tiering"))
                .is_none_or(|t| t == "NONE")
            {
                values.insert(format!("prices[{i}].tiering"), "GRADUATED".to_owned());
            }
        }
        Add::Rate(i) => {
            let j = count(values, &format!("prices[{i}].dimensionalRates["));
            values.insert(
                format!("prices[{i}].dimensionalRates[{j}].dimensions"),
                String::new(),
            );
        }
    }
}

/// The price rows of a form state, with `meters` (code, display name) to choose from.
pub fn rows(state: &FormState, meters: &[(String, String)]) -> Vec<PriceRow> {
    let n = count(&state.values, "prices[");
    (0..n)
        .filter_map(|i| {
            let p = format!("prices[{i}]");
            let model = state.value(&format!("{p}.model")).to_owned();
            let id = |f: &str| format!("f-price-{i}-{f}");
            let number = i + 1;
            let (legend, fields) = match model.as_str() {
                "FLAT" => (
                    format!("Price {number}: fixed fee"),
                    vec![
                        field(
                            state,
                            format!("{p}.flatAmount"),
                            id("amount"),
                            "Amount".into(),
                        ),
                        field(
                            state,
                            format!("{p}.description"),
                            id("description"),
                            "Description".into(),
                        ),
                    ],
                ),
                "USAGE" => (
                    format!("Price {number}: usage price"),
                    vec![
                        field(
                            state,
                            format!("{p}.unitAmount"),
                            id("unit"),
                            "Unit amount".into(),
                        ),
                        field(
                            state,
                            format!("{p}.packageSize"),
                            id("package"),
                            "Package size".into(),
                        ),
                        field(
                            state,
                            format!("{p}.fallbackUnitAmount"),
                            id("fallback"),
                            "Fallback unit amount".into(),
                        ),
                        field(
                            state,
                            format!("{p}.description"),
                            id("description"),
                            "Description".into(),
                        ),
                    ],
                ),
                _ => return None,
            };
            let tiers = (0..count(&state.values, &format!("{p}.tiers[")))
                .map(|j| {
                    let t = format!("{p}.tiers[{j}]");
                    let tid = |f: &str| format!("f-price-{i}-tier-{j}-{f}");
                    let n = j + 1;
                    [
                        field(
                            state,
                            format!("{t}.upTo"),
                            tid("up-to"),
                            format!("Tier {n} up to"),
                        ),
                        field(
                            state,
                            format!("{t}.unitAmount"),
                            tid("unit"),
                            format!("Tier {n} unit amount"),
                        ),
                        field(
                            state,
                            format!("{t}.flatAmount"),
                            tid("flat"),
                            format!("Tier {n} flat fee"),
                        ),
                    ]
                })
                .collect();
            let rates = (0..count(&state.values, &format!("{p}.dimensionalRates[")))
                .map(|j| {
                    let r = format!("{p}.dimensionalRates[{j}]");
                    let rid = |f: &str| format!("f-price-{i}-rate-{j}-{f}");
                    let n = j + 1;
                    [
                        field(
                            state,
                            format!("{r}.dimensions"),
                            rid("dimensions"),
                            format!("Rate {n} dimensions"),
                        ),
                        field(
                            state,
                            format!("{r}.unitAmount"),
                            rid("unit"),
                            format!("Rate {n} unit amount"),
                        ),
                    ]
                })
                .collect();
            let meter_options: Vec<(&str, &str)> = meters
                .iter()
                .map(|(code, name)| (code.as_str(), name.as_str()))
                .collect();
            let current_meter = state.value(&format!("{p}.meterCode")).to_owned();
            Some(PriceRow {
                index: i,
                legend,
                fields,
                meters: choices(meter_options, &current_meter),
                tierings: choices(TIERINGS, state.value(&format!("{p}.tiering"))),
                tiers,
                rates,
                meter_error: state.error(&format!("{p}.meterCode")).map(str::to_owned),
                tiering_error: state
                    .error(&format!("{p}.tiering"))
                    .or_else(|| state.error(&format!("{p}.tiers")))
                    .or_else(|| state.error(&format!("{p}.dimensionalRates")))
                    .map(str::to_owned),
                model,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_buttons_grow_the_rows() {
        let mut values = BTreeMap::new();
        add(&mut values, &Add::Fixed);
        add(&mut values, &Add::Usage);
        add(&mut values, &Add::Tier(1));
        add(&mut values, &Add::Tier(1));
        add(&mut values, &Add::Rate(1));
        let state = FormState {
            values,
            ..FormState::default()
        };
        let rows = rows(&state, &[("API_CALL".into(), "API Calls".into())]);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].model, "FLAT");
        assert_eq!(rows[0].fields[0].label, "Amount");
        assert_eq!(rows[1].tiers.len(), 2);
        assert_eq!(rows[1].rates.len(), 1);
        assert!(
            rows[1]
                .tierings
                .iter()
                .any(|c| c.value == "GRADUATED" && c.selected)
        );
        assert_eq!(Add::parse("tier-1"), Some(Add::Tier(1)));
        assert_eq!(Add::parse("tier-99"), None);
        assert_eq!(Add::parse("drop"), None);
    }
}
