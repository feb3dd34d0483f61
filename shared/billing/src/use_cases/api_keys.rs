//! API keys: create (the secret shown once), authenticate, seed, revoke, list; and the handle
//! a signed-in dashboard session holds instead of the key ([`KeyHandle`]).

use std::sync::Arc;

use crate::api_key::{ApiKey, CreateApiKey, NewSecret, Principal, Scopes, SecretDigest};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::ApiKeyId;
use crate::pagination::{Page, PageRequest};
use crate::ports::{ApiKeyStore, Clock};

use super::Billing;

/// API key use cases, apart so they can be exercised with a key store alone.
#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn ApiKeyStore>,
    clock: Arc<dyn Clock>,
    bootstrap_key: Option<SecretDigest>,
}

/// A key just created, with its secret (shown once, never again).
#[derive(Debug, Clone)]
pub struct CreatedApiKey {
    /// The stored record.
    pub key: ApiKey,
    /// The secret to hand to the caller.
    pub secret: String,
}

/// What a dashboard session remembers of the key it was opened with: never the secret, only
/// how to find the key again, so every request re-checks it (a revoked key ends its sessions
/// at once, and scopes are read fresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyHandle {
    /// The deployment's bootstrap key (configured as a digest, with no record to find).
    Bootstrap,
    /// A stored key, by its digest's lookup handle ([`SecretDigest::lookup`]: 16 hex
    /// characters, the first 8 bytes of the SHA-256, from which the secret cannot be had).
    Stored(String),
}

impl KeyHandle {
    /// The text form a session carries: `bootstrap` or the lookup handle.
    pub fn encode(&self) -> &str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::Stored(lookup) => lookup,
        }
    }

    /// Reads the text form back; `None` for anything else.
    pub fn decode(raw: &str) -> Option<Self> {
        if raw == "bootstrap" {
            return Some(Self::Bootstrap);
        }
        let lookup = raw.len() == 16 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        lookup.then(|| Self::Stored(raw.to_owned()))
    }
}

impl Billing {
    /// The API key use cases.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Shorthand for `keys().authenticate`.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        self.keys.authenticate(secret).await
    }

    /// Shorthand for `keys().create`.
    pub async fn create_api_key(&self, request: CreateApiKey) -> Result<CreatedApiKey> {
        self.keys.create(request).await
    }

    /// Shorthand for `keys().seed`.
    pub async fn seed_api_key(&self, secret: &str, scopes: Scopes) -> Result<()> {
        self.keys.seed(secret, scopes).await
    }

    /// Shorthand for `keys().revoke`.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKey> {
        self.keys.revoke(id).await
    }
}

impl Keys {
    /// Key use cases over a key store.
    pub fn new(
        store: Arc<dyn ApiKeyStore>,
        clock: Arc<dyn Clock>,
        bootstrap_key: Option<SecretDigest>,
    ) -> Self {
        Self {
            store,
            clock,
            bootstrap_key,
        }
    }

    /// Resolves a bearer secret to a principal, or 401. One read per call; digests are
    /// compared in constant time.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal> {
        let presented = SecretDigest::of(secret);
        if let Some(bootstrap) = &self.bootstrap_key
            && bootstrap.matches(&presented)
        {
            return Ok(Principal {
                key_id: None,
                scopes: Scopes::all(),
            });
        }
        match self.store.find_secret(&presented.lookup()).await? {
            Some(stored) if stored.digest.matches(&presented) => Ok(Principal {
                key_id: Some(stored.key_id),
                scopes: stored.scopes,
            }),
            _ => Err(unauthenticated(
                "the API key is not valid or has been revoked",
            )),
        }
    }

    /// Checks a secret typed into the dashboard's sign-in form: the principal, and the handle
    /// its session keeps instead of the secret.
    pub async fn sign_in(&self, secret: &str) -> Result<(Principal, KeyHandle)> {
        let principal = self.authenticate(secret).await?;
        let handle = match principal.key_id {
            None => KeyHandle::Bootstrap,
            Some(_) => KeyHandle::Stored(SecretDigest::of(secret).lookup()),
        };
        Ok((principal, handle))
    }

    /// The principal behind a session's handle, read fresh (one read): 401 once the key is
    /// revoked, or the bootstrap key is no longer configured.
    pub async fn resume(&self, handle: &KeyHandle) -> Result<Principal> {
        match handle {
            KeyHandle::Bootstrap if self.bootstrap_key.is_some() => Ok(Principal {
                key_id: None,
                scopes: Scopes::all(),
            }),
            KeyHandle::Bootstrap => Err(unauthenticated("the bootstrap key is not configured")),
            KeyHandle::Stored(lookup) => match self.store.find_secret(lookup).await? {
                Some(stored) => Ok(Principal {
                    key_id: Some(stored.key_id),
                    scopes: stored.scopes,
                }),
                None => Err(unauthenticated(
                    "the API key is not valid or has been revoked",
                )),
            },
        }
    }

    /// Lists key records (never secrets) in creation order.
    pub async fn list(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        self.store.list(page).await
    }

    /// Creates a key with a fresh secret.
    pub async fn create(&self, request: CreateApiKey) -> Result<CreatedApiKey> {
        let key = request.parse(self.clock.now())?;
        let secret = NewSecret::generate()?;
        self.store.insert(&key, &secret.digest()).await?;
        Ok(CreatedApiKey {
            key,
            secret: secret.expose().to_owned(),
        })
    }

    /// Makes sure a known secret (e.g. the local stack's `LOCAL_API_KEY`) works with `scopes`.
    /// Idempotent: seeding the same secret twice keeps the first key.
    pub async fn seed(&self, secret: &str, scopes: Scopes) -> Result<()> {
        let key = ApiKey {
            id: ApiKeyId::generate(),
            name: Some(crate::api_key::ApiKeyName::parse("seeded")?),
            scopes,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        match self.store.insert(&key, &SecretDigest::of(secret)).await {
            Err(e) if e.code == "digest_exists" => Ok(()),
            other => other,
        }
    }

    /// Revokes a key; 404 when unknown. Revoking twice is harmless.
    pub async fn revoke(&self, id: &str) -> Result<ApiKey> {
        let id = ApiKeyId::parse(id).map_err(|_| Error::not_found("API key", id))?;
        self.store
            .revoke(&id, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found("API key", id.as_str()))
    }
}

fn unauthenticated(message: &str) -> Error {
    Error::new(ErrorKind::Unauthenticated, "invalid_api_key", message)
}

/// The 401 for a request without usable credentials.
pub fn missing_credentials() -> Error {
    Error::new(
        ErrorKind::Unauthenticated,
        "missing_api_key",
        "send your API key as 'Authorization: Bearer <key>'",
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::ports::{StoredSecret, SystemClock};

    /// Keeps API keys in memory; customers are not used here.
    #[derive(Default)]
    struct MemoryKeys(Mutex<Vec<(ApiKey, SecretDigest)>>);

    #[async_trait]
    impl ApiKeyStore for MemoryKeys {
        async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()> {
            let mut keys = self.0.lock().unwrap();
            if keys.iter().any(|(_, d)| d.lookup() == digest.lookup()) {
                return Err(Error::conflict("digest_exists", "exists"));
            }
            keys.push((key.clone(), digest.clone()));
            Ok(())
        }
        async fn find_secret(&self, lookup: &str) -> Result<Option<StoredSecret>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(k, d)| d.lookup() == lookup && k.revoked_at.is_none())
                .map(|(k, d)| StoredSecret {
                    key_id: k.id.clone(),
                    digest: d.clone(),
                    scopes: k.scopes.clone(),
                }))
        }
        async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
            Ok(self
                .0
                .lock()
                .unwrap()
                .iter()
                .find(|(k, _)| &k.id == id)
                .map(|(k, _)| k.clone()))
        }
        async fn list(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
            let keys: Vec<ApiKey> = self
                .0
                .lock()
                .unwrap()
                .iter()
                .map(|(k, _)| k.clone())
                .collect();
            Ok(Page::from_overfetch(keys, page.limit, |k| k.id.to_string()))
        }
        async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
            let mut keys = self.0.lock().unwrap();
            Ok(keys.iter_mut().find(|(k, _)| &k.id == id).map(|(k, _)| {
                k.revoked_at.get_or_insert(at);
                k.clone()
            }))
        }
    }

    fn billing(bootstrap: Option<&str>) -> Keys {
        Keys::new(
            Arc::new(MemoryKeys::default()),
            Arc::new(SystemClock),
            bootstrap.map(SecretDigest::of),
        )
    }

    #[tokio::test]
    async fn the_bootstrap_key_has_every_scope_and_no_record() {
        let b = billing(Some("sk_bootstrap"));
        let p = b.authenticate("sk_bootstrap").await.unwrap();
        assert_eq!(p.key_id, None);
        assert!(p.scopes.allows(crate::api_key::Scope::All));
        assert_eq!(
            b.authenticate("sk_other").await.unwrap_err().code,
            "invalid_api_key"
        );
        let none = billing(None);
        assert!(none.authenticate("sk_bootstrap").await.is_err());
    }

    #[tokio::test]
    async fn a_session_handle_finds_its_key_until_it_is_revoked() {
        let b = billing(Some("sk_bootstrap"));
        let (_, handle) = b.sign_in("sk_bootstrap").await.unwrap();
        assert_eq!(handle, KeyHandle::Bootstrap);
        assert!(
            b.resume(&handle)
                .await
                .unwrap()
                .scopes
                .allows(crate::api_key::Scope::All)
        );
        assert!(billing(None).resume(&KeyHandle::Bootstrap).await.is_err());
        b.seed("sk_local_dev", Scopes::all()).await.unwrap();
        let (principal, handle) = b.sign_in("sk_local_dev").await.unwrap();
        assert!(!handle.encode().contains("sk_local_dev"));
        assert_eq!(KeyHandle::decode(handle.encode()), Some(handle.clone()));
        assert_eq!(KeyHandle::decode("SK_nope"), None);
        assert_eq!(b.resume(&handle).await.unwrap(), principal);
        b.revoke(principal.key_id.unwrap().as_str()).await.unwrap();
        assert_eq!(b.resume(&handle).await.unwrap_err().code, "invalid_api_key");
        assert_eq!(
            b.list(&PageRequest::default()).await.unwrap().items.len(),
            1
        );
    }

    #[tokio::test]
    async fn seeding_is_idempotent_and_revoked_keys_stop_working() {
        let b = billing(None);
        b.seed("sk_local_dev", Scopes::all()).await.unwrap();
        b.seed("sk_local_dev", Scopes::all()).await.unwrap();
        let p = b.authenticate("sk_local_dev").await.unwrap();
        let id = p.key_id.unwrap();
        b.revoke(id.as_str()).await.unwrap();
        assert!(b.authenticate("sk_local_dev").await.is_err());
    }
}
