//! The use cases the entry points call. Each Lambda builds one `Billing` at cold start and calls
//! these methods; they hold the rules, the stores hold the data.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};

use crate::api_key::{ApiKey, CreateApiKey, NewSecret, Principal, Scopes, SecretDigest};
use crate::customer::{CreateCustomer, Customer, ExternalCustomerId, UpdateCustomer};
use crate::error::{Error, ErrorKind, Result};
use crate::ids::{ApiKeyId, CustomerId};
use crate::pagination::{Page, PageRequest};
use crate::store::{ApiKeyStore, CustomerStore};

/// Where "now" comes from, so tests can fix it.
pub trait Clock: Send + Sync {
    /// The current instant, at millisecond precision (what we store and show).
    fn now(&self) -> DateTime<Utc>;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(3)
    }
}

/// How many times an update re-reads and re-applies after losing a race to another writer.
const UPDATE_ATTEMPTS: usize = 5;

/// The platform's use cases over its ports.
#[derive(Clone)]
pub struct Billing {
    customers: Arc<dyn CustomerStore>,
    api_keys: Arc<dyn ApiKeyStore>,
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

impl Billing {
    /// Wires the use cases to their stores. `bootstrap_key` is the digest of a deployment's
    /// first admin key (scope `*`), configured rather than stored, so a new stack can be used.
    pub fn new(
        customers: Arc<dyn CustomerStore>,
        api_keys: Arc<dyn ApiKeyStore>,
        clock: Arc<dyn Clock>,
        bootstrap_key: Option<SecretDigest>,
    ) -> Self {
        Self {
            customers,
            api_keys,
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
        match self.api_keys.find_secret(&presented.lookup()).await? {
            Some(stored) if stored.digest.matches(&presented) => Ok(Principal {
                key_id: Some(stored.key_id),
                scopes: stored.scopes,
            }),
            _ => Err(unauthenticated(
                "the API key is not valid or has been revoked",
            )),
        }
    }

    /// Creates a key with a fresh secret.
    pub async fn create_api_key(&self, request: CreateApiKey) -> Result<CreatedApiKey> {
        let key = request.parse(self.clock.now())?;
        let secret = NewSecret::generate()?;
        self.api_keys.insert(&key, &secret.digest()).await?;
        Ok(CreatedApiKey {
            key,
            secret: secret.expose().to_owned(),
        })
    }

    /// Makes sure a known secret (e.g. the local stack's `LOCAL_API_KEY`) works with `scopes`.
    /// Idempotent: seeding the same secret twice keeps the first key.
    pub async fn seed_api_key(&self, secret: &str, scopes: Scopes) -> Result<()> {
        let key = ApiKey {
            id: ApiKeyId::generate(),
            name: Some(crate::api_key::ApiKeyName::parse("seeded")?),
            scopes,
            created_at: self.clock.now(),
            revoked_at: None,
        };
        match self.api_keys.insert(&key, &SecretDigest::of(secret)).await {
            Err(e) if e.code == "digest_exists" => Ok(()),
            other => other,
        }
    }

    /// Revokes a key; 404 when unknown. Revoking twice is harmless.
    pub async fn revoke_api_key(&self, id: &str) -> Result<ApiKey> {
        let id = ApiKeyId::parse(id).map_err(|_| Error::not_found("API key", id))?;
        self.api_keys
            .revoke(&id, self.clock.now())
            .await?
            .ok_or_else(|| Error::not_found("API key", id.as_str()))
    }

    /// Creates a customer; 409 with the holder's id when a unique field is taken.
    pub async fn create_customer(&self, request: CreateCustomer) -> Result<Customer> {
        let customer = request.parse(self.clock.now())?;
        self.customers.insert(&customer).await?;
        Ok(customer)
    }

    /// Reads a customer by our id; 404 when unknown (or not an id we could have issued).
    pub async fn customer(&self, id: &str) -> Result<Customer> {
        let id = CustomerId::parse(id).map_err(|_| Error::not_found("customer", id))?;
        self.customers
            .get(&id)
            .await?
            .map(|v| v.value)
            .ok_or_else(|| Error::not_found("customer", id.as_str()))
    }

    /// Lists customers in creation order, or finds the one holding `external_id`.
    pub async fn customers(
        &self,
        page: &PageRequest,
        external_id: Option<&str>,
    ) -> Result<Page<Customer>> {
        match external_id {
            None => self.customers.list(page).await,
            Some(raw) => {
                let external_id =
                    ExternalCustomerId::parse(raw).map_err(|e| e.at("externalCustomerId"))?;
                let found = self.customers.get_by_external_id(&external_id).await?;
                Ok(Page {
                    items: found.into_iter().collect(),
                    next: None,
                })
            }
        }
    }

    /// Applies a partial update. Concurrent updates are serialised by version: a loser re-reads
    /// and re-applies its patch, so no change is silently lost.
    pub async fn update_customer(&self, id: &str, request: UpdateCustomer) -> Result<Customer> {
        let id = CustomerId::parse(id).map_err(|_| Error::not_found("customer", id))?;
        let patch = request.parse()?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self
                .customers
                .get(&id)
                .await?
                .ok_or_else(|| Error::not_found("customer", id.as_str()))?;
            let next = patch.apply(&current.value, self.clock.now());
            match self.customers.update(&current, &next).await {
                Ok(()) => return Ok(next),
                Err(e) if e.code == "version_conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::conflict(
            "concurrent_modification",
            "the customer is being changed by other requests; retry",
        ))
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

    use super::*;
    use crate::customer::Customer;
    use crate::store::{StoredSecret, Versioned};

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
        async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
            let mut keys = self.0.lock().unwrap();
            Ok(keys.iter_mut().find(|(k, _)| &k.id == id).map(|(k, _)| {
                k.revoked_at.get_or_insert(at);
                k.clone()
            }))
        }
    }

    struct NoCustomers;

    #[async_trait]
    impl CustomerStore for NoCustomers {
        async fn insert(&self, _: &Customer) -> Result<()> {
            Err(Error::internal("not used"))
        }
        async fn get(&self, _: &CustomerId) -> Result<Option<Versioned<Customer>>> {
            Ok(None)
        }
        async fn get_by_external_id(&self, _: &ExternalCustomerId) -> Result<Option<Customer>> {
            Ok(None)
        }
        async fn list(&self, _: &PageRequest) -> Result<Page<Customer>> {
            Err(Error::internal("not used"))
        }
        async fn update(&self, _: &Versioned<Customer>, _: &Customer) -> Result<()> {
            Err(Error::internal("not used"))
        }
    }

    fn billing(bootstrap: Option<&str>) -> Billing {
        Billing::new(
            Arc::new(NoCustomers),
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
    async fn seeding_is_idempotent_and_revoked_keys_stop_working() {
        let b = billing(None);
        b.seed_api_key("sk_local_dev", Scopes::all()).await.unwrap();
        b.seed_api_key("sk_local_dev", Scopes::all()).await.unwrap();
        let p = b.authenticate("sk_local_dev").await.unwrap();
        let id = p.key_id.unwrap();
        b.revoke_api_key(id.as_str()).await.unwrap();
        assert!(b.authenticate("sk_local_dev").await.is_err());
    }
}
