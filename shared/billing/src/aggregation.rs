//! How the values of usage events combine into the quantity of an invoice line.
//!
//! - `COUNT`: one per event; the value is ignored (and may be absent).
//! - `SUM`: the sum of the events' numbers.
//! - `MAX` / `MIN`: the largest / smallest number seen. Before the first event the quantity
//!   is 0, so an empty `MAX` or `MIN` line bills 0.
//! - `UNIQUE_COUNT`: the number of distinct values. Numbers compare by value (`1.0` and `1`
//!   are one value); text and booleans compare by their text, kept apart from numbers and from
//!   each other (the text `"1"` is not the number 1, the text `"true"` is not `true`).
//!
//! `SUM`, `MAX` and `MIN` need a non-negative number on every event: a missing value is
//! `missing_value`, text or a boolean is `non_numeric_value`, a negative number is
//! `negative_value` (usage never reduces a bill; credits are separate). `UNIQUE_COUNT` needs a
//! value (`missing_value`).
//!
//! Every rule is commutative and associative, so the quantity does not depend on the order
//! events arrive in nor on how they are batched: partial [`Aggregate`]s fold together with
//! [`Aggregate::combine`].

use std::collections::BTreeSet;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a meter combines its events' values into a quantity (see the module rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Aggregation {
    /// One per event.
    Count,
    /// Sum of the values.
    Sum,
    /// Largest value; 0 without events.
    Max,
    /// Smallest value; 0 without events.
    Min,
    /// Number of distinct values.
    UniqueCount,
}

impl Aggregation {
    /// The wire name (`UNIQUE_COUNT`), used in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "COUNT",
            Self::Sum => "SUM",
            Self::Max => "MAX",
            Self::Min => "MIN",
            Self::UniqueCount => "UNIQUE_COUNT",
        }
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event property's value. Numbers are exact decimals, never floats (stored and queued as
/// decimal strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageValue {
    /// A number, e.g. tokens or bytes.
    Number(Decimal),
    /// Text, e.g. a user id for `UNIQUE_COUNT`.
    Text(String),
    /// A boolean.
    Bool(bool),
}

impl UsageValue {
    /// Reads an event property from JSON: `null` is no value; numbers are read from their
    /// decimal text (the shortest form that round-trips, e.g. `0.1` → exactly 0.1), so no
    /// binary-float error enters a quantity; arrays, objects and numbers beyond a decimal's
    /// range are `invalid_usage_value`.
    pub fn from_json(value: &serde_json::Value) -> Result<Option<Self>> {
        use serde_json::Value;
        match value {
            Value::Null => Ok(None),
            Value::Bool(b) => Ok(Some(Self::Bool(*b))),
            Value::String(s) => Ok(Some(Self::Text(s.clone()))),
            Value::Number(n) => {
                let text = n.to_string();
                Decimal::from_str_exact(&text)
                    .or_else(|_| Decimal::from_scientific(&text))
                    .map(|d| Some(Self::Number(d)))
                    .map_err(|_| {
                        Error::unprocessable(
                            "invalid_usage_value",
                            format!("the number {text} is outside the range usage can hold"),
                        )
                    })
            }
            Value::Array(_) | Value::Object(_) => Err(Error::unprocessable(
                "invalid_usage_value",
                "a usage value must be a number, a string or a boolean",
            )),
        }
    }

    /// Reads an event property from its raw JSON text, so a number keeps exactly the digits
    /// the client sent (`0.1` is 1/10, and 30 significant digits stay 30). `null` is no value;
    /// arrays and objects are `invalid_usage_value`.
    pub fn from_raw(raw: &serde_json::value::RawValue) -> Result<Option<Self>> {
        let text = raw.get().trim();
        match text.as_bytes().first() {
            Some(b'"') => serde_json::from_str::<String>(text)
                .map(|s| Some(Self::Text(s)))
                .map_err(|e| Error::invalid("invalid_json", e.to_string())),
            Some(b'-' | b'0'..=b'9') => Decimal::from_str_exact(text)
                .or_else(|_| Decimal::from_scientific(text))
                .map(|d| Some(Self::Number(d)))
                .map_err(|_| {
                    Error::unprocessable(
                        "invalid_usage_value",
                        format!("the number {text} is outside the range usage can hold"),
                    )
                }),
            _ => Self::from_json(
                &serde_json::from_str(text)
                    .map_err(|e| Error::invalid("invalid_json", e.to_string()))?,
            ),
        }
    }

    /// The value as text, for property filters and dimensions: numbers in plain normalized
    /// decimal form, booleans as `true`/`false`.
    pub fn as_text(&self) -> String {
        match self {
            Self::Number(d) => d.normalize().to_string(),
            Self::Text(s) => s.clone(),
            Self::Bool(b) => b.to_string(),
        }
    }

    /// The identity of the value for `UNIQUE_COUNT`: typed, numbers normalized.
    fn unique_key(&self) -> String {
        match self {
            Self::Number(d) => format!("n:{}", d.normalize()),
            Self::Text(s) => format!("s:{s}"),
            Self::Bool(b) => format!("b:{b}"),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Number(d) => format!("the number {d}"),
            Self::Text(s) => format!("the text '{}'", s.chars().take(40).collect::<String>()),
            Self::Bool(b) => format!("the boolean {b}"),
        }
    }
}

/// The running state of one line: its quantity so far and, for `UNIQUE_COUNT`, the values
/// seen. Serializable so a batch can be folded into a stored state. A stored `UNIQUE_COUNT`
/// share does not keep its values (they would outgrow an item): each distinct value is claimed
/// once per line in an item of its own, and the share counts the values it claimed
/// ([`Aggregate::add_distinct`]); shares then add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Aggregate {
    kind: Aggregation,
    /// `None` until the first event (not used by `UNIQUE_COUNT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Decimal>,
    /// Typed keys of the distinct values (`UNIQUE_COUNT` only).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    seen: BTreeSet<String>,
}

impl Aggregate {
    /// An empty aggregate: quantity 0.
    pub fn new(kind: Aggregation) -> Self {
        Self {
            kind,
            value: None,
            seen: BTreeSet::new(),
        }
    }

    /// How this aggregate combines values.
    pub fn kind(&self) -> Aggregation {
        self.kind
    }

    /// Adds one event's value. On error the aggregate is unchanged.
    pub fn add(&mut self, value: Option<&UsageValue>) -> Result<()> {
        match self.kind {
            Aggregation::Count => self.fold(Some(Decimal::ONE)),
            Aggregation::Sum | Aggregation::Max | Aggregation::Min => {
                let number = self.number(value)?;
                self.fold(Some(number))
            }
            Aggregation::UniqueCount => {
                let value = value.ok_or_else(|| self.missing())?;
                self.seen.insert(value.unique_key());
                Ok(())
            }
        }
    }

    /// Counts `n` distinct values this share claimed (`UNIQUE_COUNT` only: a claim is taken
    /// once per line, so claimed counts of different shares never overlap and add up).
    pub fn add_distinct(&mut self, n: u64) -> Result<()> {
        if self.kind != Aggregation::UniqueCount {
            return Err(Error::internal(format!(
                "distinct values counted on a {} aggregate",
                self.kind
            )));
        }
        if n > 0 {
            self.fold(Some(Decimal::from(n)))?;
        }
        Ok(())
    }

    /// The values seen so far (`UNIQUE_COUNT`), in their typed form: what a share claims.
    pub fn distinct_values(&self) -> impl Iterator<Item = &str> {
        self.seen.iter().map(String::as_str)
    }

    /// Merges another partial aggregate of the same kind into this one: counts and sums add,
    /// `MAX`/`MIN` keep the extreme, `UNIQUE_COUNT` unites the value sets and adds claimed
    /// counts.
    pub fn combine(&mut self, other: &Aggregate) -> Result<()> {
        if self.kind != other.kind {
            return Err(Error::internal(format!(
                "cannot combine a {} aggregate with a {} one",
                self.kind, other.kind
            )));
        }
        self.fold(other.value)?;
        self.seen.extend(other.seen.iter().cloned());
        Ok(())
    }

    /// The line's quantity: 0 before any event.
    pub fn quantity(&self) -> Decimal {
        match self.kind {
            Aggregation::UniqueCount => {
                Decimal::from(self.seen.len()) + self.value.unwrap_or(Decimal::ZERO)
            }
            _ => self.value.unwrap_or(Decimal::ZERO),
        }
    }

    /// Folds a partial value (one event's, or another aggregate's) into `value`.
    fn fold(&mut self, incoming: Option<Decimal>) -> Result<()> {
        let Some(incoming) = incoming else {
            return Ok(());
        };
        let Some(current) = self.value else {
            self.value = Some(self.canonical(incoming));
            return Ok(());
        };
        let next = match self.kind {
            Aggregation::Count | Aggregation::Sum | Aggregation::UniqueCount => {
                current.checked_add(incoming).ok_or_else(|| {
                    Error::unprocessable(
                        "quantity_too_large",
                        format!("the {} quantity exceeds what a decimal can hold", self.kind),
                    )
                })?
            }
            Aggregation::Max => current.max(incoming),
            Aggregation::Min => current.min(incoming),
        };
        self.value = Some(self.canonical(next));
        Ok(())
    }

    /// `MAX`/`MIN` keep a normalized value, so equal values written differently (`2.0`, `2`)
    /// give the same quantity whichever arrived first. Sums keep their scale: it is the
    /// largest scale added, which does not depend on order either.
    fn canonical(&self, value: Decimal) -> Decimal {
        match self.kind {
            Aggregation::Max | Aggregation::Min => value.normalize(),
            _ => value,
        }
    }

    fn number(&self, value: Option<&UsageValue>) -> Result<Decimal> {
        match value {
            None => Err(self.missing()),
            Some(UsageValue::Number(d)) if d.is_sign_negative() && !d.is_zero() => {
                Err(Error::unprocessable(
                    "negative_value",
                    format!("{} needs a non-negative number, got {d}", self.kind),
                ))
            }
            Some(UsageValue::Number(d)) => Ok(*d),
            Some(other) => Err(Error::unprocessable(
                "non_numeric_value",
                format!("{} needs a number, got {}", self.kind, other.describe()),
            )),
        }
    }

    fn missing(&self) -> Error {
        Error::unprocessable(
            "missing_value",
            format!("{} needs a value on every event", self.kind),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn num(s: &str) -> UsageValue {
        UsageValue::Number(dec(s))
    }

    fn text(s: &str) -> UsageValue {
        UsageValue::Text(s.to_owned())
    }

    fn aggregate(kind: Aggregation, values: &[Option<UsageValue>]) -> Aggregate {
        let mut a = Aggregate::new(kind);
        for v in values {
            a.add(v.as_ref()).unwrap();
        }
        a
    }

    #[test]
    fn count_counts_events_whatever_their_value() {
        let a = aggregate(
            Aggregation::Count,
            &[
                None,
                Some(num("5")),
                Some(text("x")),
                Some(UsageValue::Bool(false)),
            ],
        );
        assert_eq!(a.quantity(), dec("4"));
    }

    #[test]
    fn sum_adds_exact_numbers() {
        let a = aggregate(
            Aggregation::Sum,
            &[Some(num("0.1")), Some(num("0.2")), Some(num("1000"))],
        );
        assert_eq!(a.quantity().to_string(), "1000.3");
    }

    #[test]
    fn max_and_min_keep_the_extreme_and_bill_zero_when_empty() {
        let values = [Some(num("3")), Some(num("10.5")), Some(num("0.25"))];
        assert_eq!(aggregate(Aggregation::Max, &values).quantity(), dec("10.5"));
        assert_eq!(aggregate(Aggregation::Min, &values).quantity(), dec("0.25"));
        assert_eq!(Aggregate::new(Aggregation::Max).quantity(), Decimal::ZERO);
        assert_eq!(Aggregate::new(Aggregation::Min).quantity(), Decimal::ZERO);
        // The first value is the minimum so far, not compared with the empty 0.
        assert_eq!(
            aggregate(Aggregation::Min, &[Some(num("7"))]).quantity(),
            dec("7")
        );
    }

    #[test]
    fn unique_count_compares_numbers_by_value_and_keeps_types_apart() {
        let a = aggregate(
            Aggregation::UniqueCount,
            &[
                Some(num("1")),
                Some(num("1.0")),
                Some(num("1.00")),
                Some(text("1")),
                Some(text("user_1")),
                Some(text("user_1")),
                Some(text("true")),
                Some(UsageValue::Bool(true)),
                Some(UsageValue::Bool(true)),
                Some(num("0")),
                Some(num("-0")),
            ],
        );
        // 1, "1", "user_1", "true", true, 0
        assert_eq!(a.quantity(), dec("6"));
    }

    #[test]
    fn wrong_values_are_refused_with_a_code_and_leave_the_state_unchanged() {
        let cases = [
            (Aggregation::Sum, None, "missing_value"),
            (Aggregation::Max, Some(text("12")), "non_numeric_value"),
            (
                Aggregation::Min,
                Some(UsageValue::Bool(true)),
                "non_numeric_value",
            ),
            (Aggregation::Sum, Some(num("-1")), "negative_value"),
            (Aggregation::UniqueCount, None, "missing_value"),
        ];
        for (kind, value, code) in cases {
            let mut a = aggregate(kind, &[Some(num("2"))]);
            let before = a.clone();
            let e = a.add(value.as_ref()).unwrap_err();
            assert_eq!(e.code, code, "{kind} {value:?}");
            assert!(e.message.contains(kind.as_str()), "{}", e.message);
            assert_eq!(a, before);
        }
        assert!(
            Aggregate::new(Aggregation::Sum)
                .add(Some(&num("-0")))
                .is_ok()
        );
    }

    #[test]
    fn sums_beyond_a_decimals_range_are_errors_not_panics() {
        let mut a = aggregate(Aggregation::Sum, &[Some(UsageValue::Number(Decimal::MAX))]);
        let e = a.add(Some(&num("1"))).unwrap_err();
        assert_eq!(e.code, "quantity_too_large");
        assert_eq!(a.quantity(), Decimal::MAX);
    }

    #[test]
    fn partial_aggregates_combine_like_one() {
        let mut left = aggregate(Aggregation::Sum, &[Some(num("1.5"))]);
        left.combine(&aggregate(Aggregation::Sum, &[Some(num("2"))]))
            .unwrap();
        left.combine(&Aggregate::new(Aggregation::Sum)).unwrap();
        assert_eq!(left.quantity(), dec("3.5"));

        let mut max = Aggregate::new(Aggregation::Max);
        max.combine(&aggregate(Aggregation::Max, &[Some(num("4"))]))
            .unwrap();
        max.combine(&aggregate(Aggregation::Max, &[Some(num("9"))]))
            .unwrap();
        assert_eq!(max.quantity(), dec("9"));

        let mut unique = aggregate(
            Aggregation::UniqueCount,
            &[Some(text("a")), Some(text("b"))],
        );
        unique
            .combine(&aggregate(
                Aggregation::UniqueCount,
                &[Some(text("b")), Some(text("c"))],
            ))
            .unwrap();
        assert_eq!(unique.quantity(), dec("3"));

        let e = unique
            .combine(&Aggregate::new(Aggregation::Count))
            .unwrap_err();
        assert_eq!(e.code, "internal_error");
    }

    #[test]
    fn a_stored_state_round_trips_through_json() {
        let a = aggregate(
            Aggregation::UniqueCount,
            &[Some(num("1.0")), Some(text("x"))],
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"kind":"UNIQUE_COUNT","seen":["n:1","s:x"]}"#);
        assert_eq!(serde_json::from_str::<Aggregate>(&json).unwrap(), a);
        let s = aggregate(Aggregation::Sum, &[Some(num("0.10"))]);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"kind":"SUM","value":"0.10"}"#);
        assert_eq!(serde_json::from_str::<Aggregate>(&json).unwrap(), s);
    }

    #[test]
    fn json_values_become_exact_usage_values() {
        let read = |json: &str| UsageValue::from_json(&serde_json::from_str(json).unwrap());
        assert_eq!(read("0.1").unwrap(), Some(num("0.1")));
        assert_eq!(read("12").unwrap(), Some(num("12")));
        assert_eq!(read("1.5e-7").unwrap(), Some(num("0.00000015")));
        assert_eq!(
            read("18446744073709551615").unwrap(),
            Some(num("18446744073709551615"))
        );
        assert_eq!(read(r#""u1""#).unwrap(), Some(text("u1")));
        assert_eq!(read("false").unwrap(), Some(UsageValue::Bool(false)));
        assert_eq!(read("null").unwrap(), None);
        for bad in ["[1]", r#"{"a":1}"#, "1e300"] {
            assert_eq!(read(bad).unwrap_err().code, "invalid_usage_value", "{bad}");
        }
    }

    // ---- property tests -------------------------------------------------------------------

    /// Non-negative numbers, often equal values written with different scales (`2`, `2.00`).
    fn number() -> impl Strategy<Value = Decimal> {
        prop_oneof![
            (0i64..50, 0u32..=3).prop_map(|(m, zeros)| Decimal::new(m * 10i64.pow(zeros), zeros)),
            (0i64..1_000_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        ]
    }

    fn usage_value() -> impl Strategy<Value = UsageValue> {
        prop_oneof![
            number().prop_map(UsageValue::Number),
            "[ab1]{0,2}".prop_map(UsageValue::Text),
            any::<bool>().prop_map(UsageValue::Bool),
        ]
    }

    fn kind() -> impl Strategy<Value = Aggregation> {
        prop_oneof![
            Just(Aggregation::Count),
            Just(Aggregation::Sum),
            Just(Aggregation::Max),
            Just(Aggregation::Min),
            Just(Aggregation::UniqueCount),
        ]
    }

    /// A kind, values valid for it, the same values shuffled, and cut points for batching.
    fn arrivals()
    -> impl Strategy<Value = (Aggregation, Vec<UsageValue>, Vec<UsageValue>, Vec<usize>)> {
        kind()
            .prop_flat_map(|kind| {
                let values = match kind {
                    Aggregation::Count | Aggregation::UniqueCount => {
                        prop::collection::vec(usage_value(), 0..40).boxed()
                    }
                    _ => {
                        prop::collection::vec(number().prop_map(UsageValue::Number), 0..40).boxed()
                    }
                };
                (Just(kind), values)
            })
            .prop_flat_map(|(kind, values)| {
                let n = values.len();
                (
                    Just(kind),
                    Just(values.clone()),
                    Just(values).prop_shuffle(),
                    prop::collection::vec(0..=n, 0..6),
                )
            })
    }

    proptest! {
        #[test]
        fn amounts_never_depend_on_the_order_or_batching_of_usage(
            (kind, values, shuffled, mut cuts) in arrivals(),
            rate in pricing::tests::rate(),
        ) {
            let in_order = aggregate(kind, &values.iter().cloned().map(Some).collect::<Vec<_>>());

            cuts.push(0);
            cuts.push(shuffled.len());
            cuts.sort_unstable();
            let mut batched = Aggregate::new(kind);
            for window in cuts.windows(2) {
                let mut batch = Aggregate::new(kind);
                for v in &shuffled[window[0]..window[1]] {
                    batch.add(Some(v)).unwrap();
                }
                batched.combine(&batch).unwrap();
            }

            prop_assert_eq!(in_order.quantity(), batched.quantity());
            prop_assert_eq!(in_order.quantity().to_string(), batched.quantity().to_string());
            prop_assert_eq!(
                rate.amount(in_order.quantity()),
                rate.amount(batched.quantity())
            );
        }
    }
}
