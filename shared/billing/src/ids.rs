//! Prefixed opaque ids (`cus_…`, `key_…`). The prefix tells a reader what an id points at; the
//! body is a UUIDv7 in simple hex, so ids sort by creation time and lists page in creation order.

use crate::error::{Error, Result};

/// Namespace of derived (UUIDv5) ids; fixed forever, or derived ids would change.
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6d1f_1c2e_8b5a_4e0f_9a4b_2f6c_1d3e_5a7b);

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

            /// The id derived from `name`: the same name always gives the same id, so a record
            /// that can be generated twice (an invoice of a contract period, a line of a price)
            /// is found, and never duplicated, by recomputing its id.
            pub fn derive(name: &str) -> Self {
                Self(format!("{}{}", Self::PREFIX, uuid::Uuid::new_v5(&NAMESPACE, name.as_bytes()).simple()))
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
prefixed_id!(
    /// Identifies a meter (what is measured).
    MeterId,
    "mtr"
);
prefixed_id!(
    /// Identifies a plan (a reusable bundle of prices).
    PlanId,
    "plan"
);
prefixed_id!(
    /// Identifies a price within a plan.
    PriceId,
    "price"
);
prefixed_id!(
    /// Identifies a contract (a customer subscribed to a plan).
    ContractId,
    "ctr"
);
prefixed_id!(
    /// Identifies an invoice; derived from its contract and period.
    InvoiceId,
    "inv"
);
prefixed_id!(
    /// Identifies an invoice line; derived from its invoice, price and dimensions.
    LineId,
    "li"
);
prefixed_id!(
    /// Identifies an endpoint the platform sends webhooks to.
    WebhookEndpointId,
    "we"
);
prefixed_id!(
    /// Identifies one outgoing webhook event: the Standard Webhooks `webhook-id`, the same on
    /// every attempt and every endpoint, so receivers de-duplicate by it. Time-ordered, so an
    /// endpoint's deliveries list newest first by it.
    WebhookEventId,
    "msg"
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
    fn derived_ids_are_stable_and_distinct() {
        assert_eq!(InvoiceId::derive("a"), InvoiceId::derive("a"));
        assert_ne!(InvoiceId::derive("a"), InvoiceId::derive("b"));
        let id = InvoiceId::derive("ctr_x:2026-01-31");
        assert_eq!(InvoiceId::parse(id.as_str()).unwrap(), id);
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
