//! API keys: what a caller may do, and how we recognise a key without ever storing it.
//!
//! A secret is stored only as its SHA-256 digest. The first 8 bytes of the digest (hex) are the
//! lookup handle, so a request costs one read; the full digests are then compared in constant
//! time. Secrets we generate carry 256 bits of entropy, which is why a fast hash is the right
//! tool here (password hashing exists for low-entropy secrets).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};
use crate::ids::ApiKeyId;
use crate::text::bounded_text;

/// A permission a key can carry. `All` (`*`) grants everything, including key management.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// `customers:read`
    CustomersRead,
    /// `customers:write`
    CustomersWrite,
    /// `pricing:read`: meters and plans.
    PricingRead,
    /// `pricing:write`
    PricingWrite,
    /// `contracts:read`
    ContractsRead,
    /// `contracts:write`
    ContractsWrite,
    /// `invoices:read`
    InvoicesRead,
    /// `invoices:write`: void, mark paid, send again.
    InvoicesWrite,
    /// `webhooks:read`: endpoints and their deliveries.
    WebhooksRead,
    /// `webhooks:write`: create, change, delete endpoints; rotate secrets; retry deliveries.
    WebhooksWrite,
    /// `usage:write`: sending usage events.
    UsageWrite,
    /// `usage:read`
    UsageRead,
    /// `*`: everything.
    All,
}

impl Scope {
    const ALL: [(Scope, &'static str); 13] = [
        (Scope::CustomersRead, "customers:read"),
        (Scope::CustomersWrite, "customers:write"),
        (Scope::PricingRead, "pricing:read"),
        (Scope::PricingWrite, "pricing:write"),
        (Scope::ContractsRead, "contracts:read"),
        (Scope::ContractsWrite, "contracts:write"),
        (Scope::InvoicesRead, "invoices:read"),
        (Scope::InvoicesWrite, "invoices:write"),
        (Scope::WebhooksRead, "webhooks:read"),
        (Scope::WebhooksWrite, "webhooks:write"),
        (Scope::UsageWrite, "usage:write"),
        (Scope::UsageRead, "usage:read"),
        (Scope::All, "*"),
    ];

    /// The wire name, e.g. `customers:read`.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(s, _)| *s == self)
            .map(|(_, n)| *n)
            .unwrap_or("*")
    }

    /// Accepts a wire name.
    pub fn parse(raw: &str) -> Result<Self> {
        Self::ALL
            .iter()
            .find(|(_, n)| *n == raw)
            .map(|(s, _)| *s)
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|(_, n)| *n).collect();
                Error::unprocessable(
                    "invalid_scope",
                    format!("unknown scope '{raw}'; known scopes: {}", known.join(", ")),
                )
            })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Scope::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// The scopes of one key: a non-empty set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Scope>", into = "Vec<Scope>")]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Every permission (`*`).
    pub fn all() -> Self {
        Self(BTreeSet::from([Scope::All]))
    }

    /// Whether these scopes allow `needed`.
    pub fn allows(&self, needed: Scope) -> bool {
        self.0.contains(&Scope::All) || self.0.contains(&needed)
    }

    /// Parses wire names; refuses an empty list and unknown names (reported by index).
    pub fn parse(raw: &[String]) -> Result<Self> {
        if raw.is_empty() {
            return Err(Error::unprocessable(
                "invalid_scope",
                "at least one scope is required",
            ));
        }
        let set = raw
            .iter()
            .enumerate()
            .map(|(i, s)| Scope::parse(s).map_err(|e| e.at(format!("[{i}]"))))
            .collect::<Result<BTreeSet<_>>>()?;
        Ok(Self(set))
    }
}

impl TryFrom<Vec<Scope>> for Scopes {
    type Error = Error;
    fn try_from(v: Vec<Scope>) -> Result<Self> {
        if v.is_empty() {
            return Err(Error::unprocessable(
                "invalid_scope",
                "at least one scope is required",
            ));
        }
        Ok(Self(v.into_iter().collect()))
    }
}

impl From<Scopes> for Vec<Scope> {
    fn from(s: Scopes) -> Self {
        s.0.into_iter().collect()
    }
}

/// The SHA-256 digest of a secret: the only form in which a key is stored.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Digests a presented secret.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Parses a lowercase hex digest, e.g. from configuration.
    pub fn from_hex(raw: &str) -> Result<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(raw, &mut out)
            .map_err(|_| Error::internal("an API key digest must be 64 hex characters"))?;
        Ok(Self(out))
    }

    /// Lowercase hex, for storage.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The short handle a stored key is found by: the first 8 bytes in hex.
    pub fn lookup(&self) -> String {
        hex::encode(&self.0[..8])
    }

    /// Compares two digests in constant time.
    pub fn matches(&self, other: &SecretDigest) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretDigest(..)")
    }
}

/// A freshly generated secret (`sk_` + 64 hex characters), shown to its creator exactly once.
pub struct NewSecret(String);

impl NewSecret {
    /// 32 bytes from the operating system's CSPRNG.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
        Ok(Self(format!("sk_{}", hex::encode(bytes))))
    }

    /// The secret, to hand to the caller once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form.
    pub fn digest(&self) -> SecretDigest {
        SecretDigest::of(&self.0)
    }
}

bounded_text!(
    /// A name for a key, so people can tell keys apart when revoking one.
    ApiKeyName, max = 100, code = "invalid_name", what = "name"
);

/// A key's record. The secret is not part of it; only the digest is stored beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// `key_…`
    pub id: ApiKeyId,
    /// Human label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<ApiKeyName>,
    /// What the key may do.
    pub scopes: Scopes,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked key authenticates nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /v1/api-keys` as sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateApiKey {
    /// Optional label.
    pub name: Option<String>,
    /// Required, non-empty.
    pub scopes: Option<Vec<String>>,
}

impl CreateApiKey {
    /// Parses the request into a key record with a new id.
    pub fn parse(self, now: DateTime<Utc>) -> Result<ApiKey> {
        let scopes = self
            .scopes
            .ok_or_else(|| Error::invalid("missing_field", "scopes is required").at("scopes"))?;
        Ok(ApiKey {
            id: ApiKeyId::generate(),
            name: self
                .name
                .map(|n| ApiKeyName::parse(n).map_err(|e| e.at("name")))
                .transpose()?,
            scopes: Scopes::parse(&scopes).map_err(|e| e.at("scopes"))?,
            created_at: now,
            revoked_at: None,
        })
    }
}

/// Who is calling, once the key checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key used; `None` for the deployment's bootstrap key, which has no record.
    pub key_id: Option<ApiKeyId>,
    /// What it may do.
    pub scopes: Scopes,
}

impl Principal {
    /// Refuses with 403 unless the key carries `scope`.
    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.scopes.allows(scope) {
            Ok(())
        } else {
            Err(Error::new(
                crate::error::ErrorKind::Forbidden,
                "insufficient_scope",
                format!("this API key lacks the '{scope}' scope"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip_and_star_allows_everything() {
        for (scope, name) in Scope::ALL {
            assert_eq!(Scope::parse(name).unwrap(), scope);
            assert_eq!(scope.as_str(), name);
        }
        assert!(Scopes::all().allows(Scope::UsageWrite));
        let read = Scopes::parse(&["customers:read".into()]).unwrap();
        assert!(read.allows(Scope::CustomersRead));
        assert!(!read.allows(Scope::CustomersWrite));
        assert!(!read.allows(Scope::All));
    }

    #[test]
    fn bad_scopes_are_named_by_index() {
        let e = Scopes::parse(&["customers:read".into(), "admin".into()]).unwrap_err();
        assert_eq!(
            (e.code.as_ref(), e.param.as_deref()),
            ("invalid_scope", Some("[1]"))
        );
        assert!(Scopes::parse(&[]).is_err());
    }

    #[test]
    fn digests_match_only_their_secret() {
        let secret = NewSecret::generate().unwrap();
        assert!(secret.expose().starts_with("sk_"));
        assert_eq!(secret.expose().len(), 3 + 64);
        let stored = SecretDigest::from_hex(&secret.digest().to_hex()).unwrap();
        assert!(stored.matches(&SecretDigest::of(secret.expose())));
        assert!(!stored.matches(&SecretDigest::of("sk_local_dev")));
        assert_eq!(stored.lookup().len(), 16);
        assert!(SecretDigest::from_hex("zz").is_err());
    }

    #[test]
    fn two_generated_secrets_differ() {
        assert_ne!(
            NewSecret::generate().unwrap().expose(),
            NewSecret::generate().unwrap().expose()
        );
    }
}
