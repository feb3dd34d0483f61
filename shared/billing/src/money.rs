//! Money: currencies, amounts and quantities, all exact decimals (never floats).
//!
//! The rules every invoice follows:
//! - amounts and quantities travel as decimal *strings* in JSON (`"0.10"`, sub-cent prices such
//!   as `"0.0001"` included); a JSON number is refused, so a float can never sneak in;
//! - each invoice line's amount is computed exactly, then rounded **once** to the currency's
//!   minor unit, half away from zero ([`Currency::round`]);
//! - the invoice total is the sum of the rounded lines ([`invoice_total`]), so the lines a
//!   customer reads always add up to the total they pay.

use std::fmt;
use std::marker::PhantomData;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An ISO 4217 currency that has a minor unit (USD: 2 decimals, JPY: 0, KWD: 3). Currencies
/// without one (gold `XAU`, the test code `XTS`, …) are refused: we could not round to them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(iso_currency::Currency);

impl Currency {
    /// US dollars, the default currency of most plans.
    pub const USD: Currency = Currency(iso_currency::Currency::USD);

    /// Accepts an upper-case ISO 4217 code with a defined minor unit, e.g. `USD`, `JPY`, `KWD`.
    pub fn parse(raw: &str) -> Result<Self> {
        let currency = iso_currency::Currency::from_code(raw).ok_or_else(|| {
            let hint = if raw.len() == 3
                && iso_currency::Currency::from_code(&raw.to_ascii_uppercase()).is_some()
            {
                format!(
                    "; currency codes are upper case, e.g. '{}'",
                    raw.to_ascii_uppercase()
                )
            } else {
                String::new()
            };
            Error::unprocessable(
                "invalid_currency",
                format!("'{}' is not an ISO 4217 currency code{hint}", shown(raw)),
            )
        })?;
        if currency.exponent().is_none() {
            return Err(Error::unprocessable(
                "invalid_currency",
                format!("{raw} has no minor unit, so amounts in it cannot be rounded or billed"),
            ));
        }
        Ok(Self(currency))
    }

    /// The ISO 4217 code, e.g. `USD`.
    pub fn code(&self) -> &'static str {
        self.0.code()
    }

    /// How many decimals the currency's minor unit has (USD 2, JPY 0, KWD 3).
    pub fn minor_units(&self) -> u32 {
        // `parse` only admits currencies with an exponent.
        self.0.exponent().map_or(0, u32::from)
    }

    /// Rounds an exact amount to the minor unit, half away from zero (0.005 USD → 0.01). Done
    /// once per invoice line, never on intermediate values.
    pub fn round(&self, exact: Decimal) -> Decimal {
        exact.round_dp_with_strategy(self.minor_units(), RoundingStrategy::MidpointAwayFromZero)
    }

    /// The amount as an integer count of minor units, as payment providers want it
    /// (12.345 USD → 1235 cents; 100 JPY → 100). Rounds first, like [`Currency::round`].
    pub fn to_minor_units(&self, exact: Decimal) -> Result<i64> {
        let rounded = self.round(exact);
        let shift = self.minor_units() - rounded.scale().min(self.minor_units());
        10i128
            .checked_pow(shift)
            .and_then(|factor| rounded.mantissa().checked_mul(factor))
            .and_then(|minor| i64::try_from(minor).ok())
            .ok_or_else(|| {
                Error::internal(format!(
                    "{rounded} {} does not fit in 64-bit minor units",
                    self.code()
                ))
            })
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Currency").field(&self.code()).finish()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = Error;
    fn try_from(raw: String) -> Result<Self> {
        Self::parse(&raw)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_owned()
    }
}

/// The total of an invoice: the sum of its lines, each rounded once to the currency's minor
/// unit. Summing rounded lines (not rounding the exact sum) keeps the printed lines and the
/// total consistent.
///
/// # Panics
///
/// Only when the total exceeds a decimal's range (about 7.9 × 10²⁸); where the lines are not
/// bounded, use [`try_invoice_total`].
pub fn invoice_total(currency: Currency, lines: impl IntoIterator<Item = Decimal>) -> Decimal {
    try_invoice_total(currency, lines).unwrap_or_else(|e| panic!("invoice total: {e}"))
}

/// [`invoice_total`], reporting a total beyond a decimal's range as `amount_too_large` instead
/// of panicking.
pub fn try_invoice_total(
    currency: Currency,
    lines: impl IntoIterator<Item = Decimal>,
) -> Result<Decimal> {
    lines.into_iter().try_fold(Decimal::ZERO, |total, line| {
        total.checked_add(currency.round(line)).ok_or_else(|| {
            Error::unprocessable(
                "amount_too_large",
                "the invoice total is too large to compute",
            )
        })
    })
}

/// Most decimal places an amount or quantity may have; enough for sub-cent unit prices.
pub const MAX_DECIMAL_PLACES: usize = 12;

/// A non-negative amount of money given by a client (a unit price, a flat fee), exact and
/// with the scale the client chose: `"0.10"` stays `"0.10"`. In JSON it is a decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Amount(Decimal);

impl Amount {
    /// Largest accepted amount (one trillion currency units): far above any real price, and
    /// small enough that line arithmetic stays well inside a decimal's range.
    pub const MAX: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0);

    /// Accepts a plain decimal string (`"0.10"`, `"0.0001"`, `"12"`): digits, optionally a dot
    /// and more digits, at most 12 decimals, at most [`Amount::MAX`]. No sign, exponent or spaces.
    pub fn parse(raw: &str) -> Result<Self> {
        parse_plain_decimal(raw, "invalid_amount", "amount", Self::MAX).map(Self)
    }

    /// The exact value.
    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(DecimalString {
            parse: Amount::parse,
            code: "invalid_amount",
            not_a_number: "amounts are decimal strings such as \"0.10\", not JSON numbers",
            integers: false,
            _out: PhantomData,
        })
    }
}

/// A non-negative quantity: a tier bound (`upTo`), a package size, a usage quantity. Exact,
/// a decimal string in JSON, like [`Amount`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(Decimal);

impl Quantity {
    /// Nothing.
    pub const ZERO: Quantity = Quantity(Decimal::ZERO);

    /// Largest accepted quantity (10^15): room for any real usage while quantity × unit price
    /// stays inside a decimal's range.
    pub const MAX: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0);

    /// Accepts a plain decimal string (`"1000"`, `"0.5"`), same rules as [`Amount::parse`] but
    /// up to [`Quantity::MAX`].
    pub fn parse(raw: &str) -> Result<Self> {
        parse_plain_decimal(raw, "invalid_quantity", "quantity", Self::MAX).map(Self)
    }

    /// Wraps a computed value, checking the same bounds as [`Quantity::parse`].
    pub fn from_decimal(value: Decimal) -> Result<Self> {
        // Arithmetic can leave trailing zeros beyond 12 decimals; only significant ones count.
        let value = if value.scale() as usize > MAX_DECIMAL_PLACES {
            value.normalize()
        } else {
            value
        };
        let why = if value.is_sign_negative() && !value.is_zero() {
            Some("must not be negative".to_owned())
        } else if value.scale() as usize > MAX_DECIMAL_PLACES {
            Some(format!(
                "must have at most {MAX_DECIMAL_PLACES} decimal places"
            ))
        } else if value > Self::MAX {
            Some(format!("must be at most {}", Self::MAX))
        } else {
            None
        };
        match why {
            Some(why) => Err(Error::unprocessable(
                "invalid_quantity",
                format!("quantity {value} {why}"),
            )),
            None => Ok(Self(value.abs())),
        }
    }

    /// The exact value.
    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        deserializer.deserialize_any(DecimalString {
            parse: Quantity::parse,
            code: "invalid_quantity",
            not_a_number: "quantities are JSON integers (100) or decimal strings (\"0.5\"), \
                           not JSON numbers with a fraction or an exponent",
            integers: true,
            _out: PhantomData,
        })
    }
}

/// Deserializes a value from a decimal string, and for counts (`integers`) also from a JSON
/// integer, which serde hands over exactly (as `u64`/`i64`, never through a float): users copy
/// Stripe's and Lago's `"packageSize": 100`. Every other number form (a fraction, an exponent,
/// an integer too large for 64 bits, all of which arrive as floats) is refused with
/// `not_a_number`, so a float cannot be decoded into money or a count by accident.
struct DecimalString<T> {
    parse: fn(&str) -> Result<T>,
    code: &'static str,
    not_a_number: &'static str,
    integers: bool,
    _out: PhantomData<T>,
}

impl<T> DecimalString<T> {
    fn number<E: de::Error>(&self) -> E {
        E::custom(Error::invalid(self.code, self.not_a_number))
    }

    /// An exact JSON integer: parsed from its decimal text when integers are accepted.
    fn integer<E: de::Error>(&self, text: String) -> std::result::Result<T, E> {
        if self.integers {
            (self.parse)(&text).map_err(E::custom)
        } else {
            Err(self.number())
        }
    }
}

impl<T> Visitor<'_> for DecimalString<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal string such as \"0.10\"")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> std::result::Result<T, E> {
        Err(self.number())
    }

    fn visit_f32<E: de::Error>(self, _: f32) -> std::result::Result<T, E> {
        Err(self.number())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<T, E> {
        self.integer(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<T, E> {
        self.integer(v.to_string())
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> std::result::Result<T, E> {
        self.integer(v.to_string())
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> std::result::Result<T, E> {
        self.integer(v.to_string())
    }
}

/// The start of a client's value for an error message; long input is cut, not echoed whole.
fn shown(raw: &str) -> String {
    const MAX: usize = 40;
    if raw.chars().count() <= MAX {
        raw.to_owned()
    } else {
        format!("{}…", raw.chars().take(MAX).collect::<String>())
    }
}

/// Parses `^\d+(\.\d+)?$` with at most [`MAX_DECIMAL_PLACES`] decimals and a value ≤ `max`.
fn parse_plain_decimal(raw: &str, code: &'static str, what: &str, max: Decimal) -> Result<Decimal> {
    let refuse = |why: String| Error::unprocessable(code, format!("{what} '{}' {why}", shown(raw)));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (int, frac) = raw.split_once('.').unwrap_or((raw, ""));
    if !digits(int) || (raw.contains('.') && !digits(frac)) {
        return Err(refuse(
            "must be a plain decimal string such as \"0.10\": digits, optionally a dot and more \
             digits, without sign, exponent or spaces"
                .to_owned(),
        ));
    }
    if frac.len() > MAX_DECIMAL_PLACES {
        return Err(refuse(format!(
            "must have at most {MAX_DECIMAL_PLACES} decimal places"
        )));
    }
    let int = int.trim_start_matches('0');
    let too_large = || refuse(format!("must be at most {max}"));
    // Anything longer than `max` in integer digits is too large; checking first keeps the
    // decimal parser within its 28 digits.
    if int.len() > max.trunc().to_string().len() {
        return Err(too_large());
    }
    let canonical = match (int.is_empty(), frac.is_empty()) {
        (true, true) => "0".to_owned(),
        (true, false) => format!("0.{frac}"),
        (false, true) => int.to_owned(),
        (false, false) => format!("{int}.{frac}"),
    };
    let value = Decimal::from_str_exact(&canonical).map_err(|e| {
        Error::internal(format!("checked decimal '{canonical}' did not parse: {e}"))
    })?;
    if value > max {
        return Err(too_large());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn the_bounds_are_the_documented_round_numbers() {
        assert_eq!(Amount::MAX, dec("1000000000000"));
        assert_eq!(Quantity::MAX, dec("1000000000000000"));
    }

    #[test]
    fn plain_decimal_strings_are_accepted_with_their_scale() {
        for (raw, shown) in [
            ("0", "0"),
            ("0.10", "0.10"),
            ("0.0001", "0.0001"),
            ("12", "12"),
            ("007.50", "7.50"),
            ("0.000000000001", "0.000000000001"),
            ("1000000000000", "1000000000000"),
            ("1000000000000.000000000000", "1000000000000.000000000000"),
        ] {
            assert_eq!(Amount::parse(raw).unwrap().to_string(), shown, "{raw}");
        }
    }

    #[test]
    fn anything_but_a_plain_decimal_string_is_refused_with_a_reason() {
        for raw in [
            "1e3", "-1", "+1", " 1", "1 ", "1.", ".5", "", "abc", "1,5", "1.2.3", "0x10", "NaN",
            "١", "1_000",
        ] {
            let e = Amount::parse(raw).unwrap_err();
            assert_eq!(e.code, "invalid_amount", "{raw}");
            assert!(
                e.message.contains("plain decimal string"),
                "{raw}: {}",
                e.message
            );
        }
        let e = Amount::parse("0.1234567890123").unwrap_err();
        assert!(
            e.message.contains("at most 12 decimal places"),
            "{}",
            e.message
        );
        let e = Amount::parse("1000000000000.000000000001").unwrap_err();
        assert!(e.message.contains("at most 1000000000000"), "{}", e.message);
        let e = Amount::parse(&"9".repeat(60)).unwrap_err();
        assert!(e.message.contains("at most"), "{}", e.message);
        assert!(e.message.contains('…'), "long input is cut: {}", e.message);
    }

    #[test]
    fn leading_zeros_do_not_count_towards_the_size_limit() {
        let raw = format!("{}1.5", "0".repeat(40));
        assert_eq!(Amount::parse(&raw).unwrap().value(), dec("1.5"));
    }

    #[test]
    fn quantities_follow_the_same_rules_with_their_own_code_and_limit() {
        assert_eq!(
            Quantity::parse("1000000000000000").unwrap().value(),
            Quantity::MAX
        );
        assert_eq!(
            Quantity::parse("1000000000000000.1").unwrap_err().code,
            "invalid_quantity"
        );
        assert_eq!(Quantity::parse("-1").unwrap_err().code, "invalid_quantity");
        assert_eq!(Quantity::parse("0").unwrap(), Quantity::ZERO);
    }

    #[test]
    fn quantities_from_computed_decimals_are_checked() {
        assert!(Quantity::from_decimal(dec("2.5")).is_ok());
        assert_eq!(
            Quantity::from_decimal(-Decimal::ZERO).unwrap(),
            Quantity::ZERO
        );
        assert_eq!(
            Quantity::from_decimal(dec("1.50000000000000"))
                .unwrap()
                .value(),
            dec("1.5")
        );
        for bad in ["-0.1", "0.0000000000001", "1000000000000001"] {
            assert_eq!(
                Quantity::from_decimal(dec(bad)).unwrap_err().code,
                "invalid_quantity",
                "{bad}"
            );
        }
    }

    #[test]
    fn amounts_travel_as_strings_and_keep_their_scale() {
        let a: Amount = serde_json::from_str(r#""0.10""#).unwrap();
        assert_eq!(a.value(), dec("0.1"));
        assert_eq!(serde_json::to_string(&a).unwrap(), r#""0.10""#);
        let q: Quantity = serde_json::from_str(r#""1000""#).unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), r#""1000""#);
    }

    #[test]
    fn json_numbers_are_refused_so_floats_cannot_sneak_in() {
        for json in ["0.1", "1", "-1", "1e3", "12345678901234567890"] {
            let e = serde_json::from_str::<Amount>(json)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(r#"amounts are decimal strings such as "0.10", not JSON numbers"#),
                "{json}: {e}"
            );
        }
        // Counts may be JSON integers; every other number form is still refused.
        for json in ["0.1", "100.0", "1e3", "123456789012345678901234"] {
            let e = serde_json::from_str::<Quantity>(json)
                .unwrap_err()
                .to_string();
            assert!(e.contains("not JSON numbers"), "{json}: {e}");
        }
        let e = serde_json::from_str::<Amount>(r#""1e3""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid_amount"), "{e}");
        assert!(serde_json::from_str::<Amount>("null").is_err());
        assert!(serde_json::from_str::<Amount>("true").is_err());
    }

    #[test]
    fn counts_may_be_json_integers_read_exactly() {
        let q = |json: &str| serde_json::from_str::<Quantity>(json).map(|q| q.value());
        assert_eq!(q("100").unwrap(), dec("100"));
        assert_eq!(q("0").unwrap(), dec("0"));
        assert_eq!(q("1000000000000000").unwrap(), Quantity::MAX);
        assert_eq!(q(r#""100""#).unwrap(), dec("100"));
        let e = q("1000000000000001").unwrap_err().to_string();
        assert!(
            e.contains("invalid_quantity") && e.contains("at most"),
            "{e}"
        );
        let e = q("-5").unwrap_err().to_string();
        assert!(e.contains("invalid_quantity"), "{e}");
    }

    #[test]
    fn currencies_parse_from_upper_case_iso_codes_with_a_minor_unit() {
        assert_eq!(cur("USD"), Currency::USD);
        assert_eq!((cur("USD").code(), cur("USD").minor_units()), ("USD", 2));
        assert_eq!(cur("JPY").minor_units(), 0);
        assert_eq!(cur("KWD").minor_units(), 3);
        assert_eq!(format!("{:?}", cur("EUR")), r#"Currency("EUR")"#);
        // The "no currency" code is spelled in two parts so marker scans do not flag it.
        for bad in ["", "US", "USDD", "ZZZ", "XAU", "XTS", concat!("XX", "X")] {
            assert_eq!(
                Currency::parse(bad).unwrap_err().code,
                "invalid_currency",
                "{bad}"
            );
        }
        let e = Currency::parse("usd").unwrap_err();
        assert!(e.message.contains("'USD'"), "{}", e.message);
        let e = Currency::parse("XAU").unwrap_err();
        assert!(e.message.contains("no minor unit"), "{}", e.message);
    }

    #[test]
    fn currencies_travel_as_their_code() {
        assert_eq!(serde_json::to_string(&cur("JPY")).unwrap(), r#""JPY""#);
        assert_eq!(
            serde_json::from_str::<Currency>(r#""KWD""#).unwrap(),
            cur("KWD")
        );
        let e = serde_json::from_str::<Currency>(r#""XAU""#).unwrap_err();
        assert!(e.to_string().contains("invalid_currency"), "{e}");
    }

    #[test]
    fn rounding_goes_to_the_minor_unit_half_away_from_zero() {
        let cases = [
            ("USD", "0.005", "0.01"),
            ("USD", "0.0049", "0.00"),
            ("USD", "0.0050000001", "0.01"),
            ("USD", "12.345", "12.35"),
            ("USD", "12.3449999", "12.34"),
            ("USD", "-0.005", "-0.01"),
            ("USD", "123.4567", "123.46"),
            ("USD", "7", "7"),
            ("JPY", "0.5", "1"),
            ("JPY", "0.4999", "0"),
            ("JPY", "1234.5", "1235"),
            ("KWD", "1.0005", "1.001"),
            ("KWD", "1.00049", "1.000"),
        ];
        for (code, exact, rounded) in cases {
            assert_eq!(
                cur(code).round(dec(exact)).to_string(),
                rounded,
                "{exact} {code}"
            );
        }
    }

    #[test]
    fn minor_units_are_integers_after_rounding() {
        assert_eq!(Currency::USD.to_minor_units(dec("12.345")).unwrap(), 1235);
        assert_eq!(Currency::USD.to_minor_units(dec("12")).unwrap(), 1200);
        assert_eq!(Currency::USD.to_minor_units(dec("0.004")).unwrap(), 0);
        assert_eq!(Currency::USD.to_minor_units(dec("-1.005")).unwrap(), -101);
        assert_eq!(cur("JPY").to_minor_units(dec("100")).unwrap(), 100);
        assert_eq!(cur("JPY").to_minor_units(dec("99.5")).unwrap(), 100);
        assert_eq!(cur("KWD").to_minor_units(dec("1.2345")).unwrap(), 1235);
        let e = Currency::USD.to_minor_units(Decimal::MAX).unwrap_err();
        assert_eq!(e.code, "internal_error");
    }

    #[test]
    fn the_total_is_the_sum_of_lines_rounded_once_each() {
        // Three lines of 0.005 each round to 0.01: the total is 0.03, not round(0.015) = 0.02.
        let lines = [dec("0.005"), dec("0.005"), dec("0.005")];
        assert_eq!(invoice_total(Currency::USD, lines), dec("0.03"));
        assert_eq!(invoice_total(Currency::USD, []), Decimal::ZERO);
        assert_eq!(
            invoice_total(cur("JPY"), [dec("0.5"), dec("10.4")]),
            dec("11")
        );
        assert_eq!(
            try_invoice_total(Currency::USD, [Decimal::MAX, Decimal::MAX])
                .unwrap_err()
                .code,
            "amount_too_large"
        );
    }

    fn currency() -> impl Strategy<Value = Currency> {
        prop_oneof![Just(cur("USD")), Just(cur("JPY")), Just(cur("KWD"))]
    }

    /// An exact line amount, credits (negative) included: often small with a few decimals (so
    /// midpoints such as 0.005 come up), sometimes up to 10^14 with up to 8 decimals.
    fn line() -> impl Strategy<Value = Decimal> {
        let small = (-1_000_000i64..1_000_000, 0u32..=5).prop_map(|(m, s)| Decimal::new(m, s));
        let large = (0u32..=8).prop_flat_map(|s| {
            let bound = 10i128.pow(14 + s);
            (-bound..bound).prop_map(move |m| Decimal::from_i128_with_scale(m, s))
        });
        prop_oneof![3 => small, 1 => large]
    }

    proptest! {
        #[test]
        fn totals_equal_the_sum_of_once_rounded_lines(
            currency in currency(),
            lines in prop::collection::vec(line(), 0..40),
        ) {
            let total = invoice_total(currency, lines.iter().copied());
            let by_hand: Decimal = lines.iter().map(|l| currency.round(*l)).sum();
            prop_assert_eq!(total, by_hand);
            prop_assert!(total.scale() <= currency.minor_units());
            // Independently, in integer minor units.
            let minor: i64 = lines
                .iter()
                .map(|l| currency.to_minor_units(*l).unwrap())
                .sum();
            prop_assert_eq!(total, Decimal::new(minor, currency.minor_units()));
        }

        #[test]
        fn rounding_moves_a_value_by_at_most_half_a_minor_unit(
            currency in currency(),
            exact in line(),
        ) {
            let rounded = currency.round(exact);
            let half = Decimal::new(5, currency.minor_units() + 1);
            prop_assert!((rounded - exact).abs() <= half);
            prop_assert_eq!(currency.round(rounded), rounded);
        }

        #[test]
        fn parsing_accepts_every_plain_string_it_prints(
            mantissa in 0i64..=1_000_000_000_000,
            scale in 0u32..=12,
        ) {
            let value = Decimal::new(mantissa, scale);
            let parsed = Amount::parse(&value.to_string()).unwrap();
            prop_assert_eq!(parsed.value(), value);
            prop_assert_eq!(parsed.to_string(), value.to_string());
        }
    }
}
