//! The storage ports: what the domain needs from a database, in domain terms only. The DynamoDB
//! adapter (`adapters::dynamodb`) implements them; tests may wrap them to inject faults.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::api_key::{ApiKey, Scopes, SecretDigest};
use crate::customer::{Customer, ExternalCustomerId};
use crate::error::Result;
use crate::ids::{ApiKeyId, CustomerId};
use crate::pagination::{Page, PageRequest};

/// A stored value with the version it was read at, for optimistic concurrency: a write based on
/// a stale read is refused instead of silently overwriting someone else's change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The value as read.
    pub value: T,
    /// Increments on every write.
    pub version: u64,
}

/// Customers and their unique fields (`externalCustomerId`, provider customer id).
#[async_trait]
pub trait CustomerStore: Send + Sync {
    /// Inserts a new customer and claims its unique fields atomically. A unique value held by
    /// another customer fails with 409 (`Conflict`) naming the holder in `existing_id`.
    async fn insert(&self, customer: &Customer) -> Result<()>;

    /// Reads one customer, strongly consistent.
    async fn get(&self, id: &CustomerId) -> Result<Option<Versioned<Customer>>>;

    /// Finds the customer holding an external id.
    async fn get_by_external_id(
        &self,
        external_id: &ExternalCustomerId,
    ) -> Result<Option<Customer>>;

    /// Lists customers in creation order.
    async fn list(&self, page: &PageRequest) -> Result<Page<Customer>>;

    /// Replaces `previous` with `next`, moving unique claims that changed, atomically. Fails with
    /// code `version_conflict` when the stored version is no longer `previous.version`.
    async fn update(&self, previous: &Versioned<Customer>, next: &Customer) -> Result<()>;
}

/// What authentication needs to know about a key found by its digest's lookup handle.
#[derive(Debug, Clone)]
pub struct StoredSecret {
    /// The key this secret belongs to.
    pub key_id: ApiKeyId,
    /// The full digest, to compare in constant time.
    pub digest: SecretDigest,
    /// The key's scopes, copied here so authentication costs one read.
    pub scopes: Scopes,
}

/// API keys and their secret digests.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key and its digest atomically. Fails with code `digest_exists` if a secret with
    /// the same lookup handle is already stored (the caller decides whether that is fine).
    async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()>;

    /// Finds an active secret by its lookup handle.
    async fn find_secret(&self, lookup: &str) -> Result<Option<StoredSecret>>;

    /// Reads a key's record.
    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>>;

    /// Marks a key revoked and deletes its secret, so it authenticates nothing from now on.
    /// Returns the updated record, or `None` when no such key exists.
    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>>;
}
