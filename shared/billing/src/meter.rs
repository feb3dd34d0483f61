//! Meters: what is measured. A meter listens to one event name, optionally filters events by
//! property values, and aggregates them (count, sum, max, min, unique count) into a quantity.
//! Archiving a meter stops it matching new events; its history stays.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::aggregation::Aggregation;
use crate::error::{Error, Result};
use crate::ids::MeterId;
use crate::text::bounded_text;

bounded_text!(
    /// The human name of a meter, shown on invoice lines (e.g. "API Calls").
    DisplayName, max = 128, code = "invalid_display_name", what = "displayName"
);
bounded_text!(
    /// A longer explanation of what is measured.
    Description, max = 1000, code = "invalid_description", what = "description"
);

/// Declares a string newtype accepted when every character passes `allowed` and the length is
/// within `1..=max`.
macro_rules! token {
    ($(#[$doc:meta])* $name:ident, max = $max:expr, code = $code:literal, rule = $rule:literal, first = $first:expr, rest = $rest:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Accepts values matching the documented rule.
            pub fn parse(raw: impl Into<String>) -> Result<Self> {
                let raw = raw.into();
                let first: fn(char) -> bool = $first;
                let rest: fn(char) -> bool = $rest;
                let ok = (1..=$max).contains(&raw.chars().count())
                    && raw.chars().next().is_some_and(first)
                    && raw.chars().all(rest);
                if ok {
                    Ok(Self(raw))
                } else {
                    Err(Error::unprocessable($code, format!("'{raw}' is not valid: {}", $rule)))
                }
            }

            /// The value as given.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(raw: String) -> Result<Self> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token!(
    /// A meter's unique code, UPPER_SNAKE (e.g. `API_CALL`), how plans refer to meters.
    MeterCode, max = 64, code = "invalid_meter_code",
    rule = "use UPPER_SNAKE_CASE: A-Z, 0-9 and _, starting with a letter, at most 64 characters",
    first = |c| c.is_ascii_uppercase(),
    rest = |c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'
);
token!(
    /// The name usage events carry (e.g. `call_count`); several meters may listen to one.
    EventName, max = 128, code = "invalid_event_name",
    rule = "use letters, digits, '_', '-', '.' or ':', starting with a letter or digit, at most 128 characters",
    first = |c| c.is_ascii_alphanumeric(),
    rest = |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')
);
token!(
    /// The name of an event property (e.g. `tokens`, `region`).
    PropertyKey, max = 128, code = "invalid_property_key",
    rule = "use letters, digits, '_', '-' or '.', starting with a letter or '_', at most 128 characters",
    first = |c| c.is_ascii_alphabetic() || c == '_',
    rest = |c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
);

/// Whether a meter still matches new events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MeterStatus {
    /// Matches events.
    Active,
    /// Soft-deleted: matches nothing new; invoices keep their history.
    Archived,
}

/// Whether a filter keeps or drops the events whose property has one of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FilterOperator {
    /// Keep only events whose property is one of `values`.
    In,
    /// Drop events whose property is one of `values`.
    NotIn,
}

/// Include or exclude events by a property's value (compared as text: numbers in plain
/// decimal form, booleans as `true`/`false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PropertyFilter {
    /// The property to look at.
    pub property: PropertyKey,
    /// Keep or drop.
    pub operator: FilterOperator,
    /// The values compared against; at least one.
    pub values: Vec<String>,
}

impl PropertyFilter {
    /// Whether an event whose property is `value` (absent = `None`) passes this filter. An
    /// event without the property fails an `IN` filter and passes a `NOT_IN` one.
    pub fn passes(&self, value: Option<&str>) -> bool {
        let listed = value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.operator {
            FilterOperator::In => listed,
            FilterOperator::NotIn => !listed,
        }
    }
}

/// A meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meter {
    /// `mtr_…`
    pub id: MeterId,
    /// Unique UPPER_SNAKE code.
    pub code: MeterCode,
    /// The event name it listens to.
    pub event_name: EventName,
    /// Shown on invoice lines.
    pub display_name: DisplayName,
    /// Optional explanation.
    #[serde(default)]
    pub description: Option<Description>,
    /// How events combine.
    pub aggregation_type: Aggregation,
    /// The property SUM/MAX/MIN/UNIQUE_COUNT read; `None` for COUNT.
    #[serde(default)]
    pub aggregation_key: Option<PropertyKey>,
    /// Properties whose values select a dimensional rate.
    #[serde(default)]
    pub group_keys: Vec<PropertyKey>,
    /// Include/exclude rules, all of which an event must pass.
    #[serde(default)]
    pub property_filters: Vec<PropertyFilter>,
    /// Active or archived.
    pub status: MeterStatus,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change (archiving).
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/meters` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateMeter {
    /// Required.
    pub code: Option<String>,
    /// Required.
    pub event_name: Option<String>,
    /// Defaults to the code.
    pub display_name: Option<String>,
    /// Optional.
    pub description: Option<String>,
    /// Required: COUNT, SUM, MAX, MIN or UNIQUE_COUNT.
    pub aggregation_type: Option<String>,
    /// Required for all but COUNT; refused for COUNT.
    pub aggregation_key: Option<String>,
    /// Optional dimension properties.
    pub group_keys: Option<Vec<String>>,
    /// Optional filters.
    pub property_filters: Option<Vec<PropertyFilterInput>>,
}

/// One filter as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PropertyFilterInput {
    /// Property name.
    pub property: String,
    /// `IN` or `NOT_IN`.
    pub operator: String,
    /// Values to compare with.
    pub values: Vec<String>,
}

const MAX_GROUP_KEYS: usize = 5;
const MAX_FILTERS: usize = 10;
const MAX_FILTER_VALUES: usize = 100;

fn required(value: Option<String>, field: &str) -> Result<String> {
    value.ok_or_else(|| Error::invalid("missing_field", format!("{field} is required")).at(field))
}

fn parse_aggregation(raw: &str) -> Result<Aggregation> {
    match raw {
        "COUNT" => Ok(Aggregation::Count),
        "SUM" => Ok(Aggregation::Sum),
        "MAX" => Ok(Aggregation::Max),
        "MIN" => Ok(Aggregation::Min),
        "UNIQUE_COUNT" => Ok(Aggregation::UniqueCount),
        other => Err(Error::unprocessable(
            "invalid_aggregation_type",
            format!("'{other}' is not an aggregation; use COUNT, SUM, MAX, MIN or UNIQUE_COUNT"),
        )),
    }
}

fn parse_filter(raw: PropertyFilterInput) -> Result<PropertyFilter> {
    let operator = match raw.operator.as_str() {
        "IN" => FilterOperator::In,
        "NOT_IN" => FilterOperator::NotIn,
        other => {
            return Err(Error::unprocessable(
                "invalid_filter_operator",
                format!("'{other}' is not a filter operator; use IN or NOT_IN"),
            )
            .at("operator"));
        }
    };
    if raw.values.is_empty() || raw.values.len() > MAX_FILTER_VALUES {
        return Err(Error::unprocessable(
            "invalid_filter_values",
            format!("a filter needs 1 to {MAX_FILTER_VALUES} values"),
        )
        .at("values"));
    }
    Ok(PropertyFilter {
        property: PropertyKey::parse(raw.property).map_err(|e| e.at("property"))?,
        operator,
        values: raw.values,
    })
}

impl CreateMeter {
    /// Parses the request into a new active meter.
    pub fn parse(self, now: DateTime<Utc>) -> Result<Meter> {
        let code = MeterCode::parse(required(self.code, "code")?).map_err(|e| e.at("code"))?;
        let event_name = EventName::parse(required(self.event_name, "eventName")?)
            .map_err(|e| e.at("eventName"))?;
        let aggregation_type =
            parse_aggregation(&required(self.aggregation_type, "aggregationType")?)
                .map_err(|e| e.at("aggregationType"))?;
        let aggregation_key = match (aggregation_type, self.aggregation_key) {
            (Aggregation::Count, None) => None,
            (Aggregation::Count, Some(_)) => {
                return Err(Error::unprocessable(
                    "aggregation_key_not_allowed",
                    "COUNT counts events and reads no property; remove aggregationKey",
                )
                .at("aggregationKey"));
            }
            (_, None) => {
                return Err(Error::unprocessable(
                    "aggregation_key_required",
                    "SUM, MAX, MIN and UNIQUE_COUNT need the property to read in aggregationKey",
                )
                .at("aggregationKey"));
            }
            (_, Some(key)) => Some(PropertyKey::parse(key).map_err(|e| e.at("aggregationKey"))?),
        };
        let raw_keys = self.group_keys.unwrap_or_default();
        if raw_keys.len() > MAX_GROUP_KEYS {
            return Err(Error::unprocessable(
                "too_many_group_keys",
                format!("at most {MAX_GROUP_KEYS} group keys"),
            )
            .at("groupKeys"));
        }
        let mut group_keys: Vec<PropertyKey> = Vec::with_capacity(raw_keys.len());
        for (i, key) in raw_keys.into_iter().enumerate() {
            let key = PropertyKey::parse(key).map_err(|e| e.at(format!("groupKeys[{i}]")))?;
            if group_keys.contains(&key) {
                return Err(Error::unprocessable(
                    "duplicate_group_key",
                    format!("'{key}' is listed twice"),
                )
                .at(format!("groupKeys[{i}]")));
            }
            group_keys.push(key);
        }
        let raw_filters = self.property_filters.unwrap_or_default();
        if raw_filters.len() > MAX_FILTERS {
            return Err(Error::unprocessable(
                "too_many_filters",
                format!("at most {MAX_FILTERS} property filters"),
            )
            .at("propertyFilters"));
        }
        let property_filters = raw_filters
            .into_iter()
            .enumerate()
            .map(|(i, f)| parse_filter(f).map_err(|e| e.at(format!("propertyFilters[{i}]"))))
            .collect::<Result<Vec<_>>>()?;
        let display_name = match self.display_name {
            Some(name) => DisplayName::parse(name).map_err(|e| e.at("displayName"))?,
            None => DisplayName::parse(code.as_str())?,
        };
        Ok(Meter {
            id: MeterId::generate(),
            code,
            event_name,
            display_name,
            description: self
                .description
                .map(|d| Description::parse(d).map_err(|e| e.at("description")))
                .transpose()?,
            aggregation_type,
            aggregation_key,
            group_keys,
            property_filters,
            status: MeterStatus::Active,
            created_at: now,
            updated_at: now,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-24T10:00:00Z".parse().unwrap()
    }

    fn parse(json: &str) -> Result<Meter> {
        serde_json::from_str::<CreateMeter>(json)
            .unwrap()
            .parse(now())
    }

    #[test]
    fn the_guide_s_meter_parses_with_defaults() {
        let m = parse(r#"{"code":"API_CALL","eventName":"call_count","aggregationType":"COUNT"}"#)
            .unwrap();
        assert_eq!(m.display_name.as_str(), "API_CALL");
        assert_eq!(m.status, MeterStatus::Active);
        assert!(m.aggregation_key.is_none());
    }

    #[test]
    fn aggregation_keys_are_required_or_refused_by_type() {
        let e =
            parse(r#"{"code":"TOKENS","eventName":"llm","aggregationType":"SUM"}"#).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.param.as_deref()),
            ("aggregation_key_required", Some("aggregationKey"))
        );
        let e =
            parse(r#"{"code":"C","eventName":"e","aggregationType":"COUNT","aggregationKey":"x"}"#)
                .unwrap_err();
        assert_eq!(e.code, "aggregation_key_not_allowed");
        let m = parse(r#"{"code":"USERS","eventName":"login","aggregationType":"UNIQUE_COUNT","aggregationKey":"user_id"}"#)
            .unwrap();
        assert_eq!(m.aggregation_key.unwrap().as_str(), "user_id");
    }

    #[test]
    fn codes_names_keys_and_filters_are_checked() {
        let cases = [
            (
                r#"{"code":"api_call","eventName":"e","aggregationType":"COUNT"}"#,
                "invalid_meter_code",
                "code",
            ),
            (
                r#"{"code":"A","eventName":"has space","aggregationType":"COUNT"}"#,
                "invalid_event_name",
                "eventName",
            ),
            (
                r#"{"code":"A","eventName":"e","aggregationType":"AVG"}"#,
                "invalid_aggregation_type",
                "aggregationType",
            ),
            (
                r#"{"code":"A","eventName":"e"}"#,
                "missing_field",
                "aggregationType",
            ),
            (
                r#"{"code":"A","eventName":"e","aggregationType":"COUNT","groupKeys":["region","region"]}"#,
                "duplicate_group_key",
                "groupKeys[1]",
            ),
            (
                r#"{"code":"A","eventName":"e","aggregationType":"COUNT","propertyFilters":[{"property":"env","operator":"IS","values":["prod"]}]}"#,
                "invalid_filter_operator",
                "propertyFilters[0].operator",
            ),
            (
                r#"{"code":"A","eventName":"e","aggregationType":"COUNT","propertyFilters":[{"property":"env","operator":"IN","values":[]}]}"#,
                "invalid_filter_values",
                "propertyFilters[0].values",
            ),
        ];
        for (json, code, param) in cases {
            let e = parse(json).unwrap_err();
            assert_eq!(
                (e.code.as_ref(), e.param.as_deref()),
                (code, Some(param)),
                "{json}"
            );
        }
    }

    #[test]
    fn filters_include_and_exclude() {
        let include = PropertyFilter {
            property: PropertyKey::parse("env").unwrap(),
            operator: FilterOperator::In,
            values: vec!["prod".into()],
        };
        assert!(include.passes(Some("prod")));
        assert!(!include.passes(Some("dev")));
        assert!(!include.passes(None));
        let exclude = PropertyFilter {
            operator: FilterOperator::NotIn,
            ..include
        };
        assert!(!exclude.passes(Some("prod")));
        assert!(exclude.passes(Some("dev")));
        assert!(exclude.passes(None));
    }
}
