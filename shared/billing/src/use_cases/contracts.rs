//! Contracts: create (with their pre-generated invoices), read, list, cancel.

use crate::concurrency::{Attempt, retry_on_conflict};
use crate::contract::{self, Contract, ContractStatus, CreateContract, unknown};
use crate::error::{Error, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId};
use crate::invoice::Invoice;
use crate::pagination::{Page, PageRequest};
use crate::ports::Versioned;
use crate::webhooks::events::{contract_changed, contract_created};
use crate::webhooks::{EventType, OutgoingEvent, Subject};

use super::Billing;

impl Billing {
    /// Subscribes a customer to a plan and pre-generates the contract's invoices, all in one
    /// write. Concurrent creations for one customer are serialised through the customer's
    /// contract index, so the overlap rule holds under races.
    #[tracing::instrument(skip_all, fields(customer = tracing::field::Empty))]
    pub async fn create_contract(&self, request: CreateContract) -> Result<Contract> {
        let refs = request.refs()?;
        tracing::Span::current().record("customer", refs.customer_id.as_str());
        if self.customers.get(&refs.customer_id).await?.is_none() {
            return Err(unknown("customer", refs.customer_id.as_str(), "customerId"));
        }
        let plan = self
            .catalog
            .get_plan(&refs.plan_id)
            .await?
            .ok_or_else(|| unknown("plan", refs.plan_id.as_str(), "planId"))?;
        let now = self.clock.now();
        let contract = request.parse(refs, &plan, now)?;
        retry_on_conflict("the contracts of this customer", || async {
            let index = self
                .contracts
                .customer_contracts(&contract.customer_id)
                .await?;
            let new = contract::prepare(contract.clone(), &plan, &index.value, now)?;
            let events = contract_created(&new, now);
            Ok(self
                .contracts
                .insert_contract(&new, &index, &events)
                .await?
                .into_attempt(new.contract))
        })
        .await
    }

    /// Reads a contract; 404 when unknown.
    pub async fn contract(&self, id: &str) -> Result<Contract> {
        let id = ContractId::parse(id).map_err(|_| Error::not_found("contract", id))?;
        Ok(self.versioned_contract(&id).await?.value)
    }

    async fn versioned_contract(&self, id: &ContractId) -> Result<Versioned<Contract>> {
        self.contracts
            .get_contract(id)
            .await?
            .ok_or_else(|| Error::not_found("contract", id.as_str()))
    }

    /// Lists contracts, of one customer or all, in creation order.
    pub async fn contracts(
        &self,
        page: &PageRequest,
        customer: Option<&str>,
    ) -> Result<Page<Contract>> {
        let customer = customer
            .map(|c| CustomerId::parse(c).map_err(|e| e.at("customerId")))
            .transpose()?;
        self.contracts.list_contracts(customer.as_ref(), page).await
    }

    /// Cancels a contract at the end of its current period and voids the invoices after it.
    /// Cancelling again returns the contract unchanged; a contract already over is 409.
    #[tracing::instrument(skip(self))]
    pub async fn cancel_contract(&self, id: &str) -> Result<Contract> {
        let id = ContractId::parse(id).map_err(|_| Error::not_found("contract", id))?;
        retry_on_conflict("this contract", || async {
            let current = self.versioned_contract(&id).await?;
            if current.value.status == ContractStatus::Canceled {
                return Ok(Attempt::Done(current.value));
            }
            let now = self.clock.now();
            let end =
                contract::cancellation_end(&current.value, now.date_naive()).ok_or_else(|| {
                    Error::conflict(
                        "contract_ended",
                        "the contract has already ended; there is nothing to cancel",
                    )
                })?;
            let mut next = current.value.clone();
            next.status = ContractStatus::Canceled;
            next.end_date = Some(end);
            next.canceled_at = Some(now);
            next.updated_at = now;
            let schedule = current.value.schedule();
            let void: Vec<InvoiceId> = (0..current.value.invoiced_periods)
                .filter_map(|i| schedule.period(i))
                .filter(|p| p.start >= end)
                .map(|p| Invoice::id_for(&id, p.start))
                .collect();
            next.invoiced_periods =
                current.value.invoiced_periods - u32::try_from(void.len()).unwrap_or(0);
            // Usage can reach a voided invoice only once its period has started (event
            // timestamps are at most an hour ahead): those are sealed with the void.
            let soon = now.date_naive() + chrono::Days::new(1);
            let seal: Vec<InvoiceId> = (0..current.value.invoiced_periods)
                .filter_map(|i| schedule.period(i))
                .filter(|p| p.start >= end && p.start <= soon)
                .map(|p| Invoice::id_for(&id, p.start))
                .collect();
            let mut index = self.contracts.customer_contracts(&next.customer_id).await?;
            let summary = next.summary();
            index.value.retain(|c| c.id != id);
            index.value.push(summary);
            let mut events = contract_changed(&current.value, &next, now);
            events.extend(void.iter().map(|id| {
                OutgoingEvent::new(
                    EventType::InvoiceVoided,
                    Subject::Invoice { id: id.clone() },
                    now,
                )
            }));
            let write = self
                .contracts
                .cancel_contract(&current, &next, &index, &void, &seal, &events)
                .await?;
            Ok(write.into_attempt(next))
        })
        .await
    }
}

impl Billing {
    /// How many contracts (any status) each of these customers has, read from their contract
    /// indexes at once: one read per customer, concurrently, for a page of a list.
    pub async fn contract_counts(
        &self,
        customers: &[CustomerId],
    ) -> Result<std::collections::HashMap<CustomerId, usize>> {
        let reads = customers.iter().map(|c| async move {
            self.contracts
                .customer_contracts(c)
                .await
                .map(|index| (c.clone(), index.value.len()))
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }
}
