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
