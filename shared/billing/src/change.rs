//! Partial updates need three states per field: leave it, clear it, or set it. `Option<Option<T>>`
//! says the same but reads badly at every call site; this type names the three.

use serde::{Deserialize, Deserializer};

/// One field of a partial update (`PATCH`). In JSON: absent → `Keep`, `null` → `Clear`,
/// a value → `Set`. Use with `#[serde(default)]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Change<T> {
    /// The field was not mentioned: keep the stored value.
    #[default]
    Keep,
    /// The field was `null`: remove the stored value.
    Clear,
    /// The field carried a value: store it.
    Set(T),
}

impl<T> Change<T> {
    /// Applies the change to the current value.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Change::Keep => current,
            Change::Clear => None,
            Change::Set(v) => Some(v),
        }
    }

    /// Converts the carried value, keeping the state; fails like `f` fails.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Change<U>, E> {
        Ok(match self {
            Change::Keep => Change::Keep,
            Change::Clear => Change::Clear,
            Change::Set(v) => Change::Set(f(v)?),
        })
    }

    /// Whether the field was mentioned at all.
    pub fn is_keep(&self) -> bool {
        matches!(self, Change::Keep)
    }

    /// For a field that cannot be removed: the new value if any, and `null` refused as
    /// `field_required` at `field`.
    pub fn required(self, field: &str) -> crate::error::Result<Option<T>> {
        match self {
            Change::Keep => Ok(None),
            Change::Clear => Err(crate::error::Error::unprocessable(
                "field_required",
                format!("{field} cannot be removed"),
            )
            .at(field)),
            Change::Set(v) => Ok(Some(v)),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Change<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match Option::<T>::deserialize(d)? {
            None => Change::Clear,
            Some(v) => Change::Set(v),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        name: Change<String>,
    }

    #[test]
    fn absent_null_and_value_are_three_different_things() {
        let absent: Body = serde_json::from_str("{}").unwrap();
        let null: Body = serde_json::from_str(r#"{"name":null}"#).unwrap();
        let set: Body = serde_json::from_str(r#"{"name":"x"}"#).unwrap();
        assert_eq!(absent.name, Change::Keep);
        assert_eq!(null.name, Change::Clear);
        assert_eq!(set.name, Change::Set("x".to_owned()));
        assert_eq!(Change::Keep.apply(Some(1)), Some(1));
        assert_eq!(Change::<i32>::Clear.apply(Some(1)), None);
        assert_eq!(Change::Set(2).apply(Some(1)), Some(2));
    }
}
