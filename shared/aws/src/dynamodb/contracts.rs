//! Contracts, and each customer's contract index: one versioned item per customer listing its
//! contracts' spans and meters. Every contract write goes through that item's version, so two
//! concurrent writers for one customer cannot both pass the overlap check.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{TransactWriteItem, Update};

use super::invoices::invoice_item;
use super::{DynamoStore, Item, entity_item, key_item, keys, n, s, version_of, versioned};
use billing::concurrency::Write;
use billing::contract::{Contract, ContractSummary, NewContract};
use billing::error::{Error, Result};
use billing::ids::{ContractId, CustomerId, InvoiceId};
use billing::pagination::{Cursor, Page, PageRequest};
use billing::ports::{ContractStore, Versioned};
use billing::webhooks::OutgoingEvent;

fn contract_item(contract: &Contract, version: u64) -> Result<Item> {
    let mut item = entity_item(
        contract,
        &keys::contract(&contract.id),
        Some(("CONTRACT", contract.id.as_str())),
    )?;
    item.insert(
        "gsi2pk".into(),
        s(keys::customer_partition(&contract.customer_id)),
    );
    item.insert("gsi2sk".into(), s(keys::contract_in_customer(&contract.id)));
    item.insert("version".into(), n(version));
    Ok(item)
}

impl DynamoStore {
    /// The put of a customer's contract index at `version + 1`, on condition that it is still
    /// at `version` (or absent, for version 0).
    fn index_put(
        &self,
        customer: &CustomerId,
        index: &Versioned<Vec<ContractSummary>>,
    ) -> Result<TransactWriteItem> {
        let contracts = serde_dynamo::to_attribute_value(&index.value)
            .map_err(|e| Error::internal(format!("cannot encode contract index: {e}")))?;
        let item = key_item(
            &keys::contract_index(customer),
            [("contracts", contracts), ("version", n(index.version + 1))],
        );
        Ok(if index.version == 0 {
            self.put(item, Some(("attribute_not_exists(pk)", Item::new())))
        } else {
            self.put(
                item,
                Some((
                    "version = :v",
                    HashMap::from([(":v".to_owned(), n(index.version))]),
                )),
            )
        })
    }
}

#[async_trait]
impl ContractStore for DynamoStore {
    async fn update_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut items = vec![self.put(
            contract_item(next, previous.version + 1)?,
            Some((
                "version = :v",
                HashMap::from([(":v".to_owned(), n(previous.version))]),
            )),
        )];
        let entry = self.outbox_put(events)?.map(|(item, key)| {
            items.push(item);
            key
        });
        Ok(match self.transact(items).await? {
            Ok(()) => {
                self.nudge(entry, chrono::TimeDelta::zero()).await;
                Write::Done
            }
            Err(_) => Write::Conflict,
        })
    }

    async fn customer_contracts(
        &self,
        customer: &CustomerId,
    ) -> Result<Versioned<Vec<ContractSummary>>> {
        let Some(item) = self.get_item(&keys::contract_index(customer)).await? else {
            return Ok(Versioned {
                value: Vec::new(),
                version: 0,
            });
        };
        let version = version_of(&item);
        let value = match item.get("contracts") {
            Some(v) => serde_dynamo::from_attribute_value(v.clone())
                .map_err(|e| Error::internal(format!("bad contract index: {e}")))?,
            None => Vec::new(),
        };
        Ok(Versioned { value, version })
    }

    async fn insert_contract(
        &self,
        new: &NewContract,
        index: &Versioned<Vec<ContractSummary>>,
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let contract = &new.contract;
        let mut listed = index.value.clone();
        listed.push(contract.summary());
        let mut items = vec![
            self.index_put(
                &contract.customer_id,
                &Versioned {
                    value: listed,
                    version: index.version,
                },
            )?,
            self.put(
                contract_item(contract, 1)?,
                Some(("attribute_not_exists(pk)", Item::new())),
            ),
        ];
        for invoice in &new.invoices {
            items.push(self.put(
                invoice_item(invoice)?,
                Some(("attribute_not_exists(pk)", Item::new())),
            ));
        }
        let entry = self.outbox_put(events)?.map(|(item, key)| {
            items.push(item);
            key
        });
        match self.transact(items).await? {
            Ok(()) => {
                self.nudge(entry, chrono::TimeDelta::zero()).await;
                Ok(Write::Done)
            }
            Err(reasons)
                if reasons.first().and_then(|r| r.code()) == Some("ConditionalCheckFailed") =>
            {
                Ok(Write::Conflict)
            }
            Err(reasons) => Err(Error::internal(format!(
                "contract write cancelled: {reasons:?}"
            ))),
        }
    }

    async fn get_contract(&self, id: &ContractId) -> Result<Option<Versioned<Contract>>> {
        self.get_item(&keys::contract(id))
            .await?
            .map(versioned)
            .transpose()
    }

    async fn list_contracts(
        &self,
        customer: Option<&CustomerId>,
        page: &PageRequest,
    ) -> Result<Page<Contract>> {
        let after = page
            .after
            .as_ref()
            .map(|c| ContractId::parse(c.sort_key()).map_err(|_| Cursor::invalid()))
            .transpose()?;
        let Some(customer) = customer else {
            return self
                .list_kind("CONTRACT", page, ContractId::parse, |c: &Contract| {
                    c.id.as_str().to_owned()
                })
                .await;
        };
        let after = after.map(|a| keys::contract_in_customer(&a));
        let items: Vec<Contract> = self
            .query_index(
                keys::GSI2,
                &keys::customer_partition(customer),
                Some(keys::CONTRACTS_IN_CUSTOMER),
                after.as_deref(),
                page.limit,
                &[],
            )
            .await?;
        Ok(Page::from_overfetch(items, page.limit, |c| {
            c.id.as_str().to_owned()
        }))
    }

    async fn cancel_contract(
        &self,
        previous: &Versioned<Contract>,
        next: &Contract,
        index: &Versioned<Vec<ContractSummary>>,
        void: &[InvoiceId],
        seal: &[InvoiceId],
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut items = vec![
            self.put(
                contract_item(next, previous.version + 1)?,
                Some((
                    "version = :v",
                    HashMap::from([(":v".to_owned(), n(previous.version))]),
                )),
            ),
            self.index_put(&next.customer_id, index)?,
        ];
        let now = s(next
            .updated_at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        for id in void {
            let key = keys::invoice(id);
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(&key.pk))
                .key("sk", s(&key.sk))
                // Into the VOID partition of gsi5, at its period position (its gsi1 sort key).
                .update_expression(
                    "SET #status = :void, updatedAt = :now, gsi5pk = :voided, gsi5sk = gsi1sk \
                     REMOVE gsi4pk, gsi4sk",
                )
                .condition_expression("#status IN (:drafted, :in_progress)")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":void", s("VOID"))
                .expression_attribute_values(
                    ":voided",
                    s(
                        keys::invoices_with_status(billing::invoice::InvoiceStatus::Void)
                            .unwrap_or_default(),
                    ),
                )
                .expression_attribute_values(":drafted", s("DRAFTED"))
                .expression_attribute_values(":in_progress", s("IN_PROGRESS"))
                .expression_attribute_values(":now", now.clone())
                .build()
                .map_err(|e| Error::internal(e.to_string()))?;
            items.push(TransactWriteItem::builder().update(update).build());
        }
        for id in seal {
            items.extend(self.seal_lanes(id, None)?);
        }
        let entry = self.outbox_put(events)?.map(|(item, key)| {
            items.push(item);
            key
        });
        match self.transact(items).await? {
            Ok(()) => {
                self.nudge(entry, chrono::TimeDelta::zero()).await;
                Ok(Write::Done)
            }
            Err(reasons) => {
                let failed = |i: usize| {
                    reasons.get(i).and_then(|r| r.code()) == Some("ConditionalCheckFailed")
                };
                if failed(0) || failed(1) {
                    Ok(Write::Conflict)
                } else {
                    Err(Error::conflict(
                        "invoice_not_open",
                        "an invoice after the cancellation date is no longer open, so it cannot be voided",
                    ))
                }
            }
        }
    }
}
