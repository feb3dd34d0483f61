//! The DynamoDB adapter: one table, items grouped by `pk`, listed through `gsi1`.
//! Key layout (also in docs/ARCHITECTURE.md):
//!
//! | item                | pk                                   | sk              | gsi1pk / gsi1sk      |
//! |---------------------|--------------------------------------|-----------------|----------------------|
//! | customer            | `CUSTOMER#<id>`                      | `CUSTOMER`      | `CUSTOMER` / `<id>`  |
//! | unique claim        | `UNIQUE#<kind>#<value>`              | `UNIQUE`        |                      |
//! | API key             | `APIKEY#<id>`                        | `APIKEY`        | `APIKEY` / `<id>`    |
//! | API key secret      | `APIKEY_SECRET#<lookup>`             | `APIKEY_SECRET` |                      |
//!
//! Uniqueness is never read-then-write: a claim item is put with `attribute_not_exists(pk)` in
//! the same transaction as the entity, so concurrent creators cannot both win.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, CancellationReason, Delete, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api_key::{ApiKey, Scopes, SecretDigest};
use crate::customer::{Customer, ExternalCustomerId};
use crate::error::{Error, Result};
use crate::ids::{ApiKeyId, CustomerId};
use crate::pagination::{Cursor, Page, PageRequest};
use crate::store::{ApiKeyStore, CustomerStore, StoredSecret, Versioned};

type Item = HashMap<String, AttributeValue>;

/// How often a transaction cancelled only by `TransactionConflict` (another transaction touching
/// the same item at the same moment) is retried before giving up with 503.
const CONFLICT_RETRIES: u32 = 8;

/// The table adapter. Cheap to clone; one per Lambda instance.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Uses an existing client and table name.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Builds the client from the standard AWS environment (`AWS_ENDPOINT_URL_DYNAMODB` and
    /// friends) and the table from `TABLE_NAME`, as set by template.yaml.
    pub fn from_config(config: &aws_config::SdkConfig) -> Result<Self> {
        let table = std::env::var("TABLE_NAME")
            .map_err(|_| Error::internal("TABLE_NAME is not set; see template.yaml"))?;
        Ok(Self::new(Client::new(config), table))
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(out.item)
    }

    /// Runs a transaction. `Ok(Err(reasons))` when a condition failed (the caller maps the
    /// reasons, index by index, to domain errors); conflicts with concurrent transactions are
    /// retried here with jittered backoff.
    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<Result<(), Vec<CancellationReason>>> {
        let mut attempt = 0;
        loop {
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items.clone()))
                .send()
                .await;
            let err = match result {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let reasons = match &err {
                SdkError::ServiceError(ctx) => match ctx.err() {
                    TransactWriteItemsError::TransactionCanceledException(e) => {
                        Some(e.cancellation_reasons().to_vec())
                    }
                    _ => None,
                },
                _ => None,
            };
            let retryable = match &reasons {
                Some(r) => {
                    !r.iter().any(|r| r.code() == Some("ConditionalCheckFailed"))
                        && r.iter().any(|r| r.code() == Some("TransactionConflict"))
                }
                None => err.code() == Some("TransactionConflictException"),
            };
            if retryable && attempt < CONFLICT_RETRIES {
                attempt += 1;
                backoff(attempt).await;
                continue;
            }
            return match reasons {
                Some(r) if r.iter().any(|r| r.code() == Some("ConditionalCheckFailed")) => {
                    Ok(Err(r))
                }
                _ => Err(sdk_error(err)),
            };
        }
    }

    fn put(&self, item: Item, condition: Option<(&str, Item)>) -> TransactWriteItem {
        let mut put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some((expr, values)) = condition {
            put = put.condition_expression(expr);
            if !values.is_empty() {
                put = put.set_expression_attribute_values(Some(values));
            }
        }
        TransactWriteItem::builder()
            .put(put.build().expect("table, item are set"))
            .build()
    }

    fn delete(&self, pk: String, sk: &str, condition: Option<(&str, Item)>) -> TransactWriteItem {
        let mut delete = Delete::builder()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk));
        if let Some((expr, values)) = condition {
            delete = delete
                .condition_expression(expr)
                .set_expression_attribute_values(Some(values));
        }
        TransactWriteItem::builder()
            .delete(delete.build().expect("table, key are set"))
            .build()
    }

    async fn claim_owner(&self, claim: &Claim) -> Result<Option<String>> {
        Ok(self
            .get_item(claim.pk(), "UNIQUE")
            .await?
            .and_then(|item| string_attr(&item, "holder")))
    }
}

/// Sleeps 10 ms × 2^attempt (capped at 640 ms), scaled by a random factor in [0.5, 1.0) so that
/// racing writers spread out instead of colliding again.
async fn backoff(attempt: u32) {
    let base = 10u64 << attempt.min(6);
    let jitter = u64::from(getrandom::u32().unwrap_or(0) % 512);
    tokio::time::sleep(Duration::from_millis(base / 2 + base * jitter / 1024)).await;
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: u64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn string_attr(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn to_item<T: Serialize>(value: &T) -> Result<Item> {
    serde_dynamo::to_item(value).map_err(|e| Error::internal(format!("cannot encode item: {e}")))
}

fn from_item<T: DeserializeOwned>(item: Item) -> Result<T> {
    serde_dynamo::from_item(item)
        .map_err(|e| Error::internal(format!("cannot decode stored item: {e}")))
}

/// Maps SDK failures: throttling and transport trouble are transient (503, safe to retry);
/// anything else is our bug or misconfiguration (500).
fn sdk_error<E, R>(err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let transient = matches!(
        err.code(),
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
                | "InternalServerError"
                | "ServiceUnavailable"
                | "TransactionInProgressException"
                | "TransactionConflictException"
        )
    ) || matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_)
    );
    let detail = format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(&err));
    if transient {
        tracing::warn!(error = %detail, "DynamoDB is unavailable");
        Error::unavailable("the database is busy or unreachable; retry shortly")
    } else {
        tracing::error!(error = %detail, "DynamoDB request failed");
        Error::internal(detail)
    }
}

/// A unique value held by one customer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    ExternalId(String),
    ProviderCustomer(&'static str, String),
}

impl Claim {
    fn pk(&self) -> String {
        match self {
            Claim::ExternalId(v) => format!("UNIQUE#CUSTOMER_EXTERNAL_ID#{v}"),
            Claim::ProviderCustomer(provider, v) => {
                format!("UNIQUE#PROVIDER_CUSTOMER#{provider}#{v}")
            }
        }
    }

    fn of(customer: &Customer) -> Vec<Claim> {
        let mut claims = Vec::new();
        if let Some(x) = &customer.external_customer_id {
            claims.push(Claim::ExternalId(x.as_str().to_owned()));
        }
        if let Some(link) = &customer.payment_provider {
            claims.push(Claim::ProviderCustomer(
                link.provider.as_str(),
                link.customer_id.as_str().to_owned(),
            ));
        }
        claims
    }

    fn item(&self, owner: &CustomerId) -> Item {
        HashMap::from([
            ("pk".to_owned(), s(self.pk())),
            ("sk".to_owned(), s("UNIQUE")),
            ("holder".to_owned(), s(owner.as_str())),
        ])
    }

    /// The 409 a client gets when this value is held by `owner`.
    fn taken(&self, owner: Option<String>) -> Error {
        let (code, param, what) = match self {
            Claim::ExternalId(_) => (
                "external_customer_id_taken",
                "externalCustomerId",
                "externalCustomerId",
            ),
            Claim::ProviderCustomer(..) => (
                "payment_provider_id_taken",
                "paymentProviderId",
                "payment provider customer",
            ),
        };
        let mut e = Error::conflict(
            code,
            format!(
                "another customer ({}) already has this {what}",
                owner.as_deref().unwrap_or("unknown")
            ),
        )
        .at(param);
        if let Some(owner) = owner {
            e = e.with_existing_id(owner);
        }
        e
    }
}

fn customer_pk(id: &CustomerId) -> String {
    format!("CUSTOMER#{id}")
}

fn customer_item(customer: &Customer, version: u64) -> Result<Item> {
    let mut item = to_item(customer)?;
    item.insert("pk".into(), s(customer_pk(&customer.id)));
    item.insert("sk".into(), s("CUSTOMER"));
    item.insert("gsi1pk".into(), s("CUSTOMER"));
    item.insert("gsi1sk".into(), s(customer.id.as_str()));
    item.insert("version".into(), n(version));
    Ok(item)
}

fn versioned_customer(item: Item) -> Result<Versioned<Customer>> {
    let version = item
        .get("version")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Versioned {
        value: from_item(item)?,
        version,
    })
}

impl DynamoStore {
    /// Maps cancellation reasons of a customer write to the first failed claim's 409.
    async fn claim_conflict(
        &self,
        claims: &[(usize, Claim)],
        reasons: &[CancellationReason],
    ) -> Result<Error> {
        for (index, claim) in claims {
            let Some(reason) = reasons.get(*index) else {
                continue;
            };
            if reason.code() == Some("ConditionalCheckFailed") {
                let owner = match reason.item().and_then(|i| string_attr(i, "holder")) {
                    Some(owner) => Some(owner),
                    None => self.claim_owner(claim).await?,
                };
                return Ok(claim.taken(owner));
            }
        }
        Ok(Error::internal(format!(
            "customer write cancelled: {reasons:?}"
        )))
    }
}

#[async_trait]
impl CustomerStore for DynamoStore {
    async fn insert(&self, customer: &Customer) -> Result<()> {
        let mut items = vec![self.put(
            customer_item(customer, 1)?,
            Some(("attribute_not_exists(pk)", Item::new())),
        )];
        let mut claims = Vec::new();
        for claim in Claim::of(customer) {
            claims.push((items.len(), claim.clone()));
            items.push(self.put(
                claim.item(&customer.id),
                Some(("attribute_not_exists(pk)", Item::new())),
            ));
        }
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(reasons) => Err(self.claim_conflict(&claims, &reasons).await?),
        }
    }

    async fn get(&self, id: &CustomerId) -> Result<Option<Versioned<Customer>>> {
        self.get_item(customer_pk(id), "CUSTOMER")
            .await?
            .map(versioned_customer)
            .transpose()
    }

    async fn get_by_external_id(
        &self,
        external_id: &ExternalCustomerId,
    ) -> Result<Option<Customer>> {
        let claim = Claim::ExternalId(external_id.as_str().to_owned());
        let Some(owner) = self.claim_owner(&claim).await? else {
            return Ok(None);
        };
        let owner = CustomerId::parse(&owner)?;
        Ok(CustomerStore::get(self, &owner).await?.map(|v| v.value))
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Customer>> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .expression_attribute_values(":pk", s("CUSTOMER"))
            .limit(i32::try_from(page.limit + 1).unwrap_or(i32::MAX));
        query = match &page.after {
            None => query.key_condition_expression("gsi1pk = :pk"),
            Some(cursor) => {
                let after = CustomerId::parse(cursor.sort_key()).map_err(|_| Cursor::invalid())?;
                query
                    .key_condition_expression("gsi1pk = :pk AND gsi1sk > :after")
                    .expression_attribute_values(":after", s(after.as_str()))
            }
        };
        let out = query.send().await.map_err(sdk_error)?;
        let items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item::<Customer>)
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(items, page.limit, |c| {
            c.id.as_str().to_owned()
        }))
    }

    async fn update(&self, previous: &Versioned<Customer>, next: &Customer) -> Result<()> {
        let id = &previous.value.id;
        let mut items = vec![self.put(
            customer_item(next, previous.version + 1)?,
            Some((
                "version = :version",
                HashMap::from([(":version".to_owned(), n(previous.version))]),
            )),
        )];
        let old_claims = Claim::of(&previous.value);
        let new_claims = Claim::of(next);
        for claim in old_claims.iter().filter(|c| !new_claims.contains(c)) {
            items.push(self.delete(
                claim.pk(),
                "UNIQUE",
                Some((
                    "holder = :holder",
                    HashMap::from([(":holder".to_owned(), s(id.as_str()))]),
                )),
            ));
        }
        let mut claims = Vec::new();
        for claim in new_claims.into_iter().filter(|c| !old_claims.contains(c)) {
            claims.push((items.len(), claim.clone()));
            items.push(self.put(
                claim.item(id),
                Some(("attribute_not_exists(pk)", Item::new())),
            ));
        }
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(reasons) => {
                if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
                    return Err(Error::conflict(
                        "version_conflict",
                        "the customer changed since it was read",
                    ));
                }
                Err(self.claim_conflict(&claims, &reasons).await?)
            }
        }
    }
}

fn api_key_pk(id: &ApiKeyId) -> String {
    format!("APIKEY#{id}")
}

fn secret_pk(lookup: &str) -> String {
    format!("APIKEY_SECRET#{lookup}")
}

fn api_key_item(key: &ApiKey, lookup: &str) -> Result<Item> {
    let mut item = to_item(key)?;
    item.insert("pk".into(), s(api_key_pk(&key.id)));
    item.insert("sk".into(), s("APIKEY"));
    item.insert("gsi1pk".into(), s("APIKEY"));
    item.insert("gsi1sk".into(), s(key.id.as_str()));
    item.insert("lookup".into(), s(lookup));
    Ok(item)
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()> {
        let lookup = digest.lookup();
        let secret = HashMap::from([
            ("pk".to_owned(), s(secret_pk(&lookup))),
            ("sk".to_owned(), s("APIKEY_SECRET")),
            ("keyId".to_owned(), s(key.id.as_str())),
            ("digest".to_owned(), s(digest.to_hex())),
            (
                "scopes".to_owned(),
                serde_dynamo::to_attribute_value(&key.scopes)
                    .map_err(|e| Error::internal(format!("cannot encode scopes: {e}")))?,
            ),
        ]);
        let items = vec![
            self.put(
                api_key_item(key, &lookup)?,
                Some(("attribute_not_exists(pk)", Item::new())),
            ),
            self.put(secret, Some(("attribute_not_exists(pk)", Item::new()))),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(_) => Err(Error::conflict(
                "digest_exists",
                "a key with this secret already exists",
            )),
        }
    }

    async fn find_secret(&self, lookup: &str) -> Result<Option<StoredSecret>> {
        let Some(item) = self.get_item(secret_pk(lookup), "APIKEY_SECRET").await? else {
            return Ok(None);
        };
        let field = |name: &str| {
            string_attr(&item, name)
                .ok_or_else(|| Error::internal(format!("API key secret lacks {name}")))
        };
        let scopes: Scopes = item
            .get("scopes")
            .cloned()
            .ok_or_else(|| Error::internal("API key secret lacks scopes"))
            .and_then(|v| {
                serde_dynamo::from_attribute_value(v)
                    .map_err(|e| Error::internal(format!("bad stored scopes: {e}")))
            })?;
        Ok(Some(StoredSecret {
            key_id: ApiKeyId::parse(&field("keyId")?)?,
            digest: SecretDigest::from_hex(&field("digest")?)?,
            scopes,
        }))
    }

    async fn get(&self, id: &ApiKeyId) -> Result<Option<ApiKey>> {
        self.get_item(api_key_pk(id), "APIKEY")
            .await?
            .map(from_item)
            .transpose()
    }

    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let Some(item) = self.get_item(api_key_pk(id), "APIKEY").await? else {
            return Ok(None);
        };
        let lookup =
            string_attr(&item, "lookup").ok_or_else(|| Error::internal("API key lacks lookup"))?;
        let mut key: ApiKey = from_item(item)?;
        key.revoked_at = key.revoked_at.or(Some(at));
        let items = vec![
            self.put(
                api_key_item(&key, &lookup)?,
                Some(("attribute_exists(pk)", Item::new())),
            ),
            self.delete(secret_pk(&lookup), "APIKEY_SECRET", None),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(Some(key)),
            Err(_) => Ok(None),
        }
    }
}
