//! Customers and their unique claims (external id, payment provider customer).

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Claim, DynamoStore, Item, from_item, n, s, to_item};
use crate::customer::{Customer, ExternalCustomerId, PaymentProvider, ProviderCustomerId};
use crate::error::{Error, Result};
use crate::ids::CustomerId;
use crate::pagination::{Cursor, Page, PageRequest};
use crate::store::{CustomerStore, Versioned};

fn external_id_claim(value: &str) -> Claim {
    Claim::new(
        "CUSTOMER_EXTERNAL_ID",
        value,
        "external_customer_id_taken",
        "externalCustomerId",
        "externalCustomerId",
    )
}

/// The claim on a Stripe customer id (the only provider so far).
fn provider_claim(id: &ProviderCustomerId) -> Claim {
    Claim::new(
        &format!("PROVIDER_CUSTOMER#{}", PaymentProvider::Stripe.as_str()),
        id.as_str(),
        "payment_provider_id_taken",
        "paymentProviderId",
        "payment provider customer",
    )
}

/// The unique values a customer holds.
fn claims_of(customer: &Customer) -> Vec<Claim> {
    let mut claims = Vec::new();
    if let Some(x) = &customer.external_customer_id {
        claims.push(external_id_claim(x.as_str()));
    }
    if let Some(link) = &customer.payment_provider {
        claims.push(provider_claim(&link.customer_id));
    }
    claims
}

pub(super) fn customer_pk(id: &CustomerId) -> String {
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

#[async_trait]
impl CustomerStore for DynamoStore {
    async fn insert(&self, customer: &Customer) -> Result<()> {
        let mut items = vec![self.put(
            customer_item(customer, 1)?,
            Some(("attribute_not_exists(pk)", Item::new())),
        )];
        let mut claims = Vec::new();
        for claim in claims_of(customer) {
            claims.push((items.len(), claim.clone()));
            items.push(self.put(
                claim.item(customer.id.as_str()),
                Some(("attribute_not_exists(pk)", Item::new())),
            ));
        }
        match self.transact(items).await? {
            Ok(()) => Ok(()),
            Err(reasons) => Err(self.claim_conflict(&claims, &reasons).await?),
        }
    }

    async fn get_by_provider_id(
        &self,
        id: &ProviderCustomerId,
    ) -> Result<Option<Versioned<Customer>>> {
        let Some(owner) = self.claim_owner(&provider_claim(id)).await? else {
            return Ok(None);
        };
        CustomerStore::get(self, &CustomerId::parse(&owner)?).await
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
        let claim = external_id_claim(external_id.as_str());
        let Some(owner) = self.claim_owner(&claim).await? else {
            return Ok(None);
        };
        let owner = CustomerId::parse(&owner)?;
        Ok(CustomerStore::get(self, &owner).await?.map(|v| v.value))
    }

    async fn list(&self, page: &PageRequest) -> Result<Page<Customer>> {
        let after = page
            .after
            .as_ref()
            .map(|c| CustomerId::parse(c.sort_key()).map_err(|_| Cursor::invalid()))
            .transpose()?;
        let items: Vec<Customer> = self
            .query_index(
                "gsi1",
                "CUSTOMER",
                None,
                after.as_ref().map(CustomerId::as_str),
                page.limit,
                &[],
            )
            .await?;
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
        let old_claims = claims_of(&previous.value);
        let new_claims = claims_of(next);
        for claim in old_claims.iter().filter(|c| !new_claims.contains(c)) {
            items.push(self.delete(
                claim.pk.clone(),
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
                claim.item(id.as_str()),
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
