//! API keys and their secret digests.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{DynamoStore, Item, from_item, s, string_attr, to_item};
use crate::api_key::{ApiKey, Scopes, SecretDigest};
use crate::error::{Error, Result};
use crate::ids::ApiKeyId;
use crate::store::{ApiKeyStore, StoredSecret};

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
