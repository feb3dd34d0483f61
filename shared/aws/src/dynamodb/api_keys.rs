//! API keys and their secret digests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{DynamoStore, Item, entity_item, from_item, key_item, keys, s, string_attr};
use billing::api_key::{ApiKey, Scopes, SecretDigest};
use billing::error::{Error, Result};
use billing::ids::ApiKeyId;
use billing::pagination::{Page, PageRequest};
use billing::ports::{ApiKeyStore, StoredSecret};

fn api_key_item(key: &ApiKey, lookup: &str) -> Result<Item> {
    let mut item = entity_item(
        key,
        &keys::api_key(&key.id),
        Some(("APIKEY", key.id.as_str())),
    )?;
    item.insert("lookup".into(), s(lookup));
    Ok(item)
}

#[async_trait]
impl ApiKeyStore for DynamoStore {
    async fn insert(&self, key: &ApiKey, digest: &SecretDigest) -> Result<()> {
        let lookup = digest.lookup();
        let scopes = serde_dynamo::to_attribute_value(&key.scopes)
            .map_err(|e| Error::internal(format!("cannot encode scopes: {e}")))?;
        let secret = key_item(
            &keys::api_key_secret(&lookup),
            [
                ("keyId", s(key.id.as_str())),
                ("digest", s(digest.to_hex())),
                ("scopes", scopes),
            ],
        );
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
        let Some(item) = self.get_item(&keys::api_key_secret(lookup)).await? else {
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
        self.get_item(&keys::api_key(id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<ApiKey>> {
        self.list_kind("APIKEY", page, ApiKeyId::parse, |k: &ApiKey| {
            k.id.to_string()
        })
        .await
    }

    async fn revoke(&self, id: &ApiKeyId, at: DateTime<Utc>) -> Result<Option<ApiKey>> {
        let Some(item) = self.get_item(&keys::api_key(id)).await? else {
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
            self.delete(&keys::api_key_secret(&lookup), None),
        ];
        match self.transact(items).await? {
            Ok(()) => Ok(Some(key)),
            Err(_) => Ok(None),
        }
    }
}
