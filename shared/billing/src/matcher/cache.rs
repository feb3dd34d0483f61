//! The per-instance cache of catalog reads (see the module docs of [`super`] for the rules):
//! meters, contracts, customer look-ups for at most [`CACHE_TTL`], plans while warm, and the
//! derived invoice ids and lines, which never change for one input.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};

use super::{CACHE_TTL, Matcher, Meters};
use crate::contract::{Contract, ContractSummary};
use crate::error::{Error, Result};
use crate::ids::{ContractId, CustomerId, InvoiceId, PlanId};
use crate::invoice::Invoice;
use crate::pagination::PageRequest;
use crate::plan::Plan;
use crate::usage::CustomerRef;
use crate::webhooks::EventType;

pub(super) use super::landing::LineCache;

pub(super) struct Cached<T> {
    at: Instant,
    value: T,
}

/// Per-instance cache of catalog reads (see the module docs for the rules).
#[derive(Default)]
pub(super) struct Cache {
    meters: Mutex<Option<Cached<Meters>>>,
    plans: Mutex<HashMap<PlanId, Arc<Plan>>>,
    contracts: Mutex<HashMap<ContractId, Cached<Arc<Contract>>>>,
    indexes: Mutex<HashMap<CustomerId, Cached<Arc<Vec<ContractSummary>>>>>,
    customers: Mutex<HashMap<CustomerRef, Cached<CustomerId>>>,
    /// Derived ids and lines never change for a given input, so they are kept while warm
    /// (deriving one hashes): cleared past [`DERIVED_CACHE_LIMIT`] entries to bound memory.
    invoice_ids: Mutex<HashMap<(ContractId, NaiveDate), InvoiceId>>,
    pub(super) lines: Mutex<LineCache>,
    /// The usage event types some enabled webhook endpoint receives.
    subscriptions: Mutex<Option<Cached<Arc<BTreeSet<EventType>>>>>,
    /// The coalesced `invoice.updated` keys this instance wrote in the current window (one
    /// write per invoice and window is enough: the event is rendered when dispatched).
    pub(super) coalesced: Mutex<(Option<DateTime<Utc>>, HashSet<String>)>,
}

/// Entries after which the derived-id caches start over.
pub(super) const DERIVED_CACHE_LIMIT: usize = 100_000;

impl Cache {
    pub(super) fn invoice_id(&self, contract: &ContractId, start: NaiveDate) -> InvoiceId {
        let mut ids = lock(&self.invoice_ids);
        if ids.len() > DERIVED_CACHE_LIMIT {
            ids.clear();
        }
        ids.entry((contract.clone(), start))
            .or_insert_with(|| Invoice::id_for(contract, start))
            .clone()
    }
}

fn fresh<T: Clone>(entry: Option<&Cached<T>>) -> Option<T> {
    entry
        .filter(|c| c.at.elapsed() < CACHE_TTL)
        .map(|c| c.value.clone())
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Matcher {
    pub(super) async fn resolve_customer(
        &self,
        reference: &CustomerRef,
    ) -> Result<Option<CustomerId>> {
        if let Some(id) = fresh(lock(&self.cache.customers).get(reference)) {
            return Ok(Some(id));
        }
        let found = match reference {
            CustomerRef::Id(id) => self.customers.get(id).await?.map(|c| c.value.id),
            CustomerRef::External(x) => self.customers.get_by_external_id(x).await?.map(|c| c.id),
        };
        if let Some(id) = &found {
            lock(&self.cache.customers).insert(
                reference.clone(),
                Cached {
                    at: Instant::now(),
                    value: id.clone(),
                },
            );
        }
        Ok(found)
    }

    /// Which of the matcher's event types (`invoice.updated`, `usage.unbillable`) some enabled
    /// endpoint receives, read at most every [`CACHE_TTL`]: without a subscriber the matcher
    /// writes no coalesced event, so usage costs no webhook writes nobody will receive.
    pub(super) async fn subscriptions(
        &self,
        webhooks: &dyn crate::ports::WebhookStore,
    ) -> Result<Arc<BTreeSet<EventType>>> {
        if let Some(s) = fresh(lock(&self.cache.subscriptions).as_ref()) {
            return Ok(s);
        }
        let mut wanted = BTreeSet::new();
        let mut page = PageRequest {
            limit: crate::pagination::MAX_LIMIT,
            after: None,
        };
        loop {
            let result = webhooks.list_endpoints(&page).await?;
            for endpoint in &result.items {
                wanted.extend(
                    [EventType::InvoiceUpdated, EventType::UsageUnbillable]
                        .into_iter()
                        .filter(|t| endpoint.receives(*t)),
                );
            }
            match result.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let wanted = Arc::new(wanted);
        *lock(&self.cache.subscriptions) = Some(Cached {
            at: Instant::now(),
            value: wanted.clone(),
        });
        Ok(wanted)
    }

    pub(super) async fn all_meters(&self, refresh: bool) -> Result<Meters> {
        if !refresh && let Some(m) = fresh(lock(&self.cache.meters).as_ref()) {
            return Ok(m);
        }
        let mut meters = Vec::new();
        let mut page = PageRequest {
            limit: crate::pagination::MAX_LIMIT,
            after: None,
        };
        loop {
            let result = self.catalog.list_meters(&page).await?;
            meters.extend(result.items.into_iter().map(Arc::new));
            match result.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let meters = Arc::new(meters);
        *lock(&self.cache.meters) = Some(Cached {
            at: Instant::now(),
            value: meters.clone(),
        });
        Ok(meters)
    }

    pub(super) async fn index(
        &self,
        customer: &CustomerId,
        refresh: bool,
    ) -> Result<Arc<Vec<ContractSummary>>> {
        if !refresh && let Some(i) = fresh(lock(&self.cache.indexes).get(customer)) {
            return Ok(i);
        }
        let index = Arc::new(self.contracts.customer_contracts(customer).await?.value);
        lock(&self.cache.indexes).insert(
            customer.clone(),
            Cached {
                at: Instant::now(),
                value: index.clone(),
            },
        );
        Ok(index)
    }

    pub(super) async fn contract(&self, id: &ContractId) -> Result<Arc<Contract>> {
        if let Some(c) = fresh(lock(&self.cache.contracts).get(id)) {
            return Ok(c);
        }
        let contract = Arc::new(
            self.contracts
                .get_contract(id)
                .await?
                .ok_or_else(|| Error::internal(format!("contract {id} is indexed but missing")))?
                .value,
        );
        lock(&self.cache.contracts).insert(
            id.clone(),
            Cached {
                at: Instant::now(),
                value: contract.clone(),
            },
        );
        Ok(contract)
    }

    pub(super) async fn plan(&self, id: &PlanId) -> Result<Arc<Plan>> {
        if let Some(p) = lock(&self.cache.plans).get(id) {
            return Ok(p.clone());
        }
        let plan = Arc::new(
            self.catalog
                .get_plan(id)
                .await?
                .ok_or_else(|| Error::internal(format!("plan {id} is used but missing")))?,
        );
        lock(&self.cache.plans).insert(id.clone(), plan.clone());
        Ok(plan)
    }
}
