//! Shared pieces of the usage benchmarks (`bench/usage.sh`): the benchmark catalog (a COUNT
//! and a SUM meter listening to one event name, a plan with a flat fee and both usage prices,
//! one contract per customer), event generators, and DynamoDB item sizing.
//!
//! Nothing here is deployed; nothing in `shared/` depends on it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use billing::aggregation::UsageValue;
use billing::contract::{Contract, CreateContract};
use billing::customer::CreateCustomer;
use billing::ids::{CustomerId, InvoiceId};
use billing::invoice::Invoice;
use billing::meter::{CreateMeter, EventName, Meter};
use billing::plan::{CreatePlan, Plan};
use billing::ports::Clock;
use billing::usage::{CustomerRef, IdempotencyKey, UsageEvent};
use billing::{Billing, Error, Result};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use rust_decimal::Decimal;

// --- Catalog ---------------------------------------------------------------------------------

/// The benchmark catalog as created.
pub struct Catalog {
    /// The event name both meters listen to.
    pub event_name: String,
    /// The COUNT meter (one per event).
    pub count_meter: Meter,
    /// The SUM meter (adds property `tokens`).
    pub sum_meter: Meter,
    /// The plan: a flat monthly fee, a per-request price and a per-token price.
    pub plan: Plan,
    /// One customer per entry, each with one contract.
    pub customers: Vec<(CustomerId, Contract)>,
}

impl Catalog {
    /// The invoice a customer's usage on `date` lands on.
    pub fn invoice_for(&self, customer: usize, date: NaiveDate) -> Option<InvoiceId> {
        let contract = &self.customers[customer].1;
        let (_, period) = contract.schedule().period_containing(date)?;
        Some(Invoice::id_for(&contract.id, period.start))
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::internal(format!("bench request: {e}")))
}

/// The first day of `date`'s month.
pub fn month_start(date: NaiveDate) -> NaiveDate {
    date.with_day(1).unwrap_or(date)
}

/// Creates the catalog through the real use cases (so items are exactly what production
/// stores): meters listening to `event_name`, the plan, then `customers` customers with a
/// monthly contract from `start`, `concurrency` at a time.
pub async fn create_catalog(
    billing: &Billing,
    event_name: &str,
    customers: usize,
    start: NaiveDate,
    concurrency: usize,
) -> Result<Catalog> {
    use futures::StreamExt;
    let suffix = uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase();
    let count_meter = billing
        .create_meter(decode::<CreateMeter>(serde_json::json!({
            "code": format!("BENCH_REQUESTS_{suffix}"),
            "eventName": event_name,
            "displayName": "API requests",
            "aggregationType": "COUNT",
        }))?)
        .await?;
    let sum_meter = billing
        .create_meter(decode::<CreateMeter>(serde_json::json!({
            "code": format!("BENCH_TOKENS_{suffix}"),
            "eventName": event_name,
            "displayName": "Tokens",
            "aggregationType": "SUM",
            "aggregationKey": "tokens",
        }))?)
        .await?;
    let plan = billing
        .create_plan(decode::<CreatePlan>(serde_json::json!({
            "name": "Bench plan",
            "currency": "USD",
            "prices": [
                {"model": "FLAT", "description": "Platform fee", "flatAmount": "49"},
                {"model": "USAGE", "description": "API requests", "meterId": count_meter.id.as_str(), "unitAmount": "0.001"},
                {"model": "USAGE", "description": "Tokens", "meterId": sum_meter.id.as_str(), "unitAmount": "0.00002"},
            ],
        }))?)
        .await?;
    let plan_id = plan.id.to_string();
    let made: Vec<Result<(usize, CustomerId, Contract)>> = futures::stream::iter(0..customers)
        .map(|i| {
            let plan_id = plan_id.clone();
            async move {
                let customer = billing
                    .create_customer(decode::<CreateCustomer>(serde_json::json!({
                        "name": format!("Bench customer {i}"),
                    }))?)
                    .await?;
                let contract = billing
                    .create_contract(decode::<CreateContract>(serde_json::json!({
                        "customerId": customer.id.as_str(),
                        "planId": plan_id,
                        "startDate": start.to_string(),
                    }))?)
                    .await?;
                Ok((i, customer.id, contract))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut made = made.into_iter().collect::<Result<Vec<_>>>()?;
    made.sort_by_key(|(i, _, _)| *i);
    Ok(Catalog {
        event_name: event_name.to_owned(),
        count_meter,
        sum_meter,
        plan,
        customers: made.into_iter().map(|(_, c, k)| (c, k)).collect(),
    })
}

// --- Events ----------------------------------------------------------------------------------

/// Event `i` of a stream spread evenly (round robin) over the catalog's customers: the
/// benchmark event name, `tokens` between 1 and 1,000, and a key unique per `run` and `i`.
pub fn event(catalog: &Catalog, run: &str, i: usize, at: DateTime<Utc>) -> UsageEvent {
    let customer = &catalog.customers[i % catalog.customers.len()].0;
    event_for(customer, &catalog.event_name, run, i, at)
}

/// Event `i` of `run` for one customer (see [`event`]).
pub fn event_for(
    customer: &CustomerId,
    event_name: &str,
    run: &str,
    i: usize,
    at: DateTime<Utc>,
) -> UsageEvent {
    let mut properties = BTreeMap::new();
    properties.insert(
        "tokens".to_owned(),
        UsageValue::Number(Decimal::from(tokens(i))),
    );
    UsageEvent {
        event_name: EventName::parse(event_name.to_owned()).expect("valid event name"),
        customer: CustomerRef::Id(customer.clone()),
        idempotency_key: IdempotencyKey::parse(idempotency_key(run, i)).expect("valid key"),
        timestamp: at,
        properties,
        received_at: at,
    }
}

/// The `tokens` value of event `i`: 1 to 1,000.
pub fn tokens(i: usize) -> u64 {
    ((i * 37) % 1000 + 1) as u64
}

/// The idempotency key of event `i` of `run`: a UUID derived from both, so keys have the length
/// of the UUIDv4 the API generates when a client sends none (record sizes stay realistic).
pub fn idempotency_key(run: &str, i: usize) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, format!("{run}-{i}").as_bytes())
        .hyphenated()
        .to_string()
}

/// `count` events, `i` from `first`.
pub fn events(
    catalog: &Catalog,
    run: &str,
    first: usize,
    count: usize,
    at: DateTime<Utc>,
) -> Vec<UsageEvent> {
    (first..first + count)
        .map(|i| event(catalog, run, i, at))
        .collect()
}

// --- DynamoDB item size ----------------------------------------------------------------------

/// An item's size as DynamoDB bills it: per attribute, the UTF-8 length of its name plus its
/// value's size; strings and binaries by length, numbers 1 byte per 2 significant digits plus
/// 1, booleans and nulls 1 byte, lists and maps 3 bytes plus 1 byte per element plus their
/// elements (map keys count like attribute names), sets by their elements.
pub fn item_size(item: &HashMap<String, AttributeValue>) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn number_size(n: &str) -> usize {
    let digits: String = n
        .trim_start_matches('-')
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.max(1).div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// Write capacity units of one write of an item of `size` bytes: 1 per started KB, times 2
/// for a transactional write.
pub fn wcu(size: usize, transactional: bool) -> u64 {
    let units = size.max(1).div_ceil(1024) as u64;
    if transactional { 2 * units } else { units }
}

/// Today's date (UTC) and the contract start the benchmarks use: the first of the month.
pub fn contract_start(now: DateTime<Utc>) -> NaiveDate {
    month_start(now.date_naive())
}

/// The customer a record belongs to, as a `CustomerRef`.
pub fn customer_ref(id: &CustomerId) -> CustomerRef {
    CustomerRef::Id(id.clone())
}

/// Builds a Billing over `store` with the system clock (no queue).
pub fn billing_over<S: billing::use_cases::Store>(store: Arc<S>, clock: Arc<dyn Clock>) -> Billing {
    Billing::new(store, clock, None)
}
