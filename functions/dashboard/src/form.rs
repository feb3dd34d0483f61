//! HTML forms, named like the API: each field's `name` is the JSON path the API uses for it
//! (`name`, `contacts[0].email`, `prices[1].tiers[0].upTo`). A submitted form becomes the same
//! JSON request the API takes and goes through the same decoding and use case, so a domain
//! error's `param` is the name of the field at fault and is shown next to it.

use std::collections::BTreeMap;

use axum::body::Bytes;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use billing::Error;

/// The most fields a form may carry: far above the largest plan form.
const MAX_FIELDS: usize = 2_000;

/// How a field's text becomes JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (the default; money stays a decimal string, as the API wants).
    Text,
    /// A whole number (`netTerms`); text that is not one stays a string, so the API's decoder
    /// names the field.
    Number,
    /// A checkbox: present means `true`.
    Flag,
    /// A yes/no select: `true` or `false` (anything else stays text, for the decoder to name).
    Bool,
    /// A comma-separated list of strings (`groupKeys`, filter values).
    List,
    /// `key=value` pairs separated by commas (a dimensional rate's dimensions).
    Pairs,
}

/// A submitted form: its fields in order, as sent.
#[derive(Debug, Clone, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Decodes an `application/x-www-form-urlencoded` body; a malformed one is a 400.
    pub fn parse(body: &Bytes) -> Result<Self, Error> {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
            .map_err(|_| Error::invalid("invalid_form", "the form could not be read"))?;
        if fields.len() > MAX_FIELDS {
            return Err(Error::invalid(
                "invalid_form",
                "the form has too many fields",
            ));
        }
        Ok(Self { fields })
    }

    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every (name, value) pair in order, repeats included (checkbox groups).
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every field as sent, for re-showing the form after an error.
    pub fn values(&self) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        for (k, v) in &self.fields {
            values.entry(k.clone()).or_insert_with(|| v.clone());
        }
        values
    }

    /// The request the API would have received: fields whose name is a JSON path, empty ones
    /// left out, others (`_csrf`, buttons) ignored; then decoded into `T` as the API decodes.
    pub fn request<T: DeserializeOwned>(&self, kind: impl Fn(&str) -> Kind) -> Result<T, Error> {
        let mut root = Value::Object(Map::new());
        for (name, raw) in &self.fields {
            if name.starts_with('_') || raw.trim().is_empty() {
                continue;
            }
            let Some(path) = parse_path(name) else {
                continue;
            };
            let value = match kind(&unindexed(name)) {
                Kind::Text => Value::String(raw.trim().to_owned()),
                Kind::Number => raw
                    .trim()
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::String(raw.trim().to_owned())),
                Kind::Flag => Value::Bool(true),
                Kind::Bool => match raw.trim() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    other => Value::String(other.to_owned()),
                },
                Kind::List => Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|v| !v.is_empty())
                        .map(|v| Value::String(v.to_owned()))
                        .collect(),
                ),
                Kind::Pairs => Value::Object(
                    raw.split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(k, v)| (k.trim().to_owned(), Value::String(v.trim().to_owned())))
                        .collect(),
                ),
            };
            insert(&mut root, &path, value);
        }
        compact(&mut root);
        billing_http::extract::decode_json(root.to_string().as_bytes())
    }
}

/// A name with its indexes dropped (`prices[1].tiers[0].upTo` → `prices.tiers.upTo`), for
/// choosing a field's [`Kind`].
pub fn unindexed(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut depth = 0;
    for c in name.chars() {
        match c {
            '[' => depth += 1,
            ']' => {
                depth -= 1;
                out.push('.');
            }
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.replace("..", ".").trim_end_matches('.').to_owned()
}

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// `a.b[2].c` → steps; `None` for names that are not paths (`_csrf` is filtered before).
fn parse_path(name: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    for part in name.split('.') {
        let (key, mut rest) = part.split_once('[').map_or((part, ""), |(k, r)| (k, r));
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
            return None;
        }
        steps.push(Step::Key(key.to_owned()));
        while !rest.is_empty() {
            let (index, after) = rest.split_once(']')?;
            let index: usize = index.parse().ok().filter(|i| *i < 100)?;
            steps.push(Step::Index(index));
            rest = after.strip_prefix('[').unwrap_or(after);
        }
    }
    Some(steps)
}

fn insert(node: &mut Value, path: &[Step], value: Value) {
    let Some((first, rest)) = path.split_first() else {
        *node = value;
        return;
    };
    let child = match first {
        Step::Key(key) => {
            if !node.is_object() {
                *node = Value::Object(Map::new());
            }
            let Value::Object(map) = node else { return };
            map.entry(key.clone()).or_insert(Value::Null)
        }
        Step::Index(i) => {
            if !node.is_array() {
                *node = Value::Array(Vec::new());
            }
            let Value::Array(items) = node else { return };
            if items.len() <= *i {
                items.resize(*i + 1, Value::Null);
            }
            &mut items[*i]
        }
    };
    insert(child, rest, value);
}

/// Drops the holes rows left empty make (a tier row with nothing typed in), so they are not
/// sent as `null`s the API would refuse.
fn compact(node: &mut Value) {
    match node {
        Value::Array(items) => {
            items.iter_mut().for_each(compact);
            items.retain(|v| !v.is_null());
        }
        Value::Object(map) => map.values_mut().for_each(compact),
        _ => {}
    }
}

/// The field a domain error names, when the form has one by that name: its message is shown
/// there; otherwise at the top of the form.
pub fn field_errors(error: &Error) -> BTreeMap<String, String> {
    error
        .param
        .iter()
        .map(|p| (p.clone(), error.message.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        name: Option<String>,
        net_terms: Option<u16>,
        auto_pay: Option<bool>,
        prices: Option<Vec<serde_json::Value>>,
    }

    fn form(pairs: &[(&str, &str)]) -> Form {
        Form {
            fields: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    fn kind(name: &str) -> Kind {
        match name {
            "netTerms" => Kind::Number,
            "autoPay" => Kind::Flag,
            "groupKeys" => Kind::List,
            _ => Kind::Text,
        }
    }

    #[test]
    fn fields_named_by_path_build_the_api_request() {
        let f = form(&[
            ("_csrf", "x"),
            ("name", " Pro "),
            ("netTerms", "0"),
            ("autoPay", "true"),
            ("prices[0].model", "FLAT"),
            ("prices[0].flatAmount", "50.00"),
            ("prices[1].model", "USAGE"),
            ("prices[1].tiers[0].upTo", ""),
            ("prices[1].tiers[1].unitAmount", "0.08"),
        ]);
        let probe: Probe = f.request(kind).unwrap();
        assert_eq!(probe.name.as_deref(), Some("Pro"));
        assert_eq!(probe.net_terms, Some(0));
        assert_eq!(probe.auto_pay, Some(true));
        let prices = probe.prices.unwrap();
        assert_eq!(prices[0]["flatAmount"], "50.00");
        assert_eq!(
            prices[1]["tiers"],
            serde_json::json!([{"unitAmount": "0.08"}])
        );
    }

    #[test]
    fn bad_numbers_are_named_by_the_api_decoder() {
        let e = form(&[("netTerms", "thirty")])
            .request::<Probe>(kind)
            .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("netTerms"));
        assert_eq!(
            field_errors(&e).keys().next().map(String::as_str),
            Some("netTerms")
        );
    }

    #[test]
    fn odd_names_are_ignored_and_indexes_are_bounded() {
        assert_eq!(parse_path("a[100]"), None);
        assert_eq!(parse_path("a]b"), None);
        assert_eq!(parse_path("a[1"), None);
        assert_eq!(
            parse_path("a[1].b"),
            Some(vec![
                Step::Key("a".into()),
                Step::Index(1),
                Step::Key("b".into())
            ])
        );
        assert_eq!(unindexed("prices[1].tiers[0].upTo"), "prices.tiers.upTo");
        assert_eq!(unindexed("groupKeys"), "groupKeys");
    }
}
