//! Customers and their unique claims (external id, payment provider customer).

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Claim, DynamoStore, Item, entity_item, keys, n, s, versioned};
use billing::concurrency::Write;
use billing::customer::{Customer, ExternalCustomerId, PaymentProvider, ProviderCustomerId};
use billing::error::Result;
use billing::ids::CustomerId;
use billing::pagination::{Page, PageRequest};
use billing::ports::{CustomerStore, Versioned};
use billing::webhooks::OutgoingEvent;

fn external_id_claim(value: &str) -> Claim {
    Claim::new(
        keys::external_customer_id_claim(value),
        "external_customer_id_taken",
        "externalCustomerId",
        "externalCustomerId",
    )
}

/// The claim on a Stripe customer id (the only provider so far).
fn provider_claim(id: &ProviderCustomerId) -> Claim {
    Claim::new(
        keys::provider_customer_claim(PaymentProvider::Stripe.as_str(), id.as_str()),
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

fn customer_item(customer: &Customer, version: u64) -> Result<Item> {
    let mut item = entity_item(
        customer,
        &keys::customer(&customer.id),
        Some(("CUSTOMER", customer.id.as_str())),
    )?;
    item.insert("version".into(), n(version));
    Ok(item)
}

#[async_trait]
impl CustomerStore for DynamoStore {
    async fn insert(&self, customer: &Customer, events: &[OutgoingEvent]) -> Result<()> {
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
        let outbox = self.outbox_put(events)?;
        let entry = outbox.map(|(item, key)| {
            items.push(item);
            key
        });
        match self.transact(items).await? {
            Ok(()) => {
                self.nudge(entry, chrono::TimeDelta::zero()).await;
                Ok(())
            }
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
        self.get_item(&keys::customer(id))
            .await?
            .map(versioned)
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
        self.list_kind("CUSTOMER", page, CustomerId::parse, |c: &Customer| {
            c.id.as_str().to_owned()
        })
        .await
    }

    async fn update(
        &self,
        previous: &Versioned<Customer>,
        next: &Customer,
        events: &[OutgoingEvent],
    ) -> Result<Write> {
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
                &claim.key,
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
        let outbox = self.outbox_put(events)?;
        let entry = outbox.map(|(item, key)| {
            items.push(item);
            key
        });
        match self.transact(items).await? {
            Ok(()) => {
                self.nudge(entry, chrono::TimeDelta::zero()).await;
                Ok(Write::Done)
            }
            Err(reasons) => {
                if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") {
                    return Ok(Write::Conflict);
                }
                Err(self.claim_conflict(&claims, &reasons).await?)
            }
        }
    }
}
