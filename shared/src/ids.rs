//! Prefixed opaque ids (`cus_…`, `key_…`). The prefix tells a reader what an id points at; the
//! body is a UUIDv7 in simple hex, so ids sort by creation time and lists page in creation order.

use crate::error::{Error, Result};

/// Declares an id newtype with its prefix. The type can only hold a well-formed id.
macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with, underscore included.
            pub const PREFIX: &'static str = concat!($prefix, "_");

            /// A fresh, time-ordered id.
            pub fn generate() -> Self {
                Self(format!("{}{}", Self::PREFIX, uuid::Uuid::now_v7().simple()))
            }

            /// Accepts only ids this platform could have issued.
            pub fn parse(raw: &str) -> Result<Self> {
                let valid = raw
                    .strip_prefix(Self::PREFIX)
                    .is_some_and(|body| {
                        body.len() == 32
                            && body.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                    });
                if valid {
                    Ok(Self(raw.to_owned()))
                } else {
                    Err(Error::invalid(
                        "invalid_id",
                        format!("'{raw}' is not a valid {} id", Self::PREFIX),
                    ))
                }
            }

            /// The id as sent over the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(raw: String) -> Result<Self> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

prefixed_id!(
    /// Identifies one of our customers (not the Stripe customer it may link to).
    CustomerId,
    "cus"
);
prefixed_id!(
    /// Identifies an API key; the secret itself is never an id.
    ApiKeyId,
    "key"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_parse_back_and_sort_by_creation() {
        let a = CustomerId::generate();
        let b = CustomerId::generate();
        assert_eq!(CustomerId::parse(a.as_str()).unwrap(), a);
        assert!(a < b, "{a} should sort before {b}");
        assert!(a.as_str().starts_with("cus_"));
    }

    #[test]
    fn foreign_or_malformed_ids_are_refused() {
        let key = ApiKeyId::generate();
        assert!(CustomerId::parse(key.as_str()).is_err());
        assert!(CustomerId::parse("cus_").is_err());
        assert!(CustomerId::parse("cus_0190ABCDEF0123456789abcdef012345").is_err());
        assert!(CustomerId::parse("cus_0190abcdef0123456789abcdef01234").is_err());
        let err = CustomerId::parse("nope").unwrap_err();
        assert_eq!(err.code, "invalid_id");
    }
}
