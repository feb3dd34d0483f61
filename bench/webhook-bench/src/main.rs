//! Outgoing webhooks benchmark (issue 14), run by `bench/webhooks.sh` (`make bench-webhooks`) on
//! a local stack of its own. Two measures, over the real code against DynamoDB Local and moto:
//!
//! 1. **Deliveries per second through the dispatcher.** New customers' `customer.created`
//!    entries (written by the real use cases over the real DynamoDB adapter, nudged onto the
//!    real SQS queue) are dispatched by `P` pollers (the dev server's SQS event source around the
//!    webhook-dispatcher handler, as Lambda would run `P` instances) to `E` endpoints served on
//!    127.0.0.1 by a receiver that verifies every signature with the `standardwebhooks` crate.
//!    Timed from the pollers' start until every (endpoint, event) pair has arrived; a "live" run
//!    keeps the pollers running while the customers are created and also times each delivery
//!    from its change's commit.
//! 2. **Write units a webhook adds to the change that causes it.** An SDK interceptor on the
//!    store's DynamoDB client asks DynamoDB Local for the consumed capacity of every write
//!    (`ReturnConsumedCapacity=INDEXES`) and, for each transaction carrying an outbox entry,
//!    sizes that entry as DynamoDB bills it. The dispatcher's own writes per delivery are counted
//!    the same way.
//!
//! Results: `bench/results/webhooks.md` and `webhooks.json` (paths from the arguments).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{ConsumedCapacity, ReturnConsumedCapacity, TransactWriteItem};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use billing::Billing;
use billing::customer::{CreateCustomer, UpdateCustomer};
use billing::webhooks::{CreateEndpoint, UrlPolicy};
use billing_aws::dynamodb::DynamoStore;
use billing_http::views::JsonRepresentation;
use billing_startup::Startup;
use billing_webhook_sender::HttpWebhookSender;
use futures::StreamExt;
use serde_json::{Value, json};
use usage_bench::{contract_start, create_catalog, item_size, wcu};

type Error = Box<dyn std::error::Error + Send + Sync>;

// --- Write accounting ------------------------------------------------------------------------

/// Totals of one kind of write.
#[derive(Debug, Clone, Default)]
struct Tally {
    calls: u64,
    table: f64,
    indexes: f64,
}

/// A change's transaction that carried an outbox entry.
#[derive(Debug, Clone, Default)]
struct ChangeTally {
    transactions: u64,
    events: u64,
    items: u64,
    reported: f64,
    outbox_bytes: Vec<usize>,
    /// One outbox item as written, for the probe.
    sample: Option<Item>,
}

type Item = HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

#[derive(Debug, Default)]
struct Ledger {
    writes: BTreeMap<&'static str, Tally>,
    changes: BTreeMap<String, ChangeTally>,
}

/// What the request side learned, for the response side.
#[derive(Debug, Clone)]
struct Pending {
    op: &'static str,
    /// Event types, event count, outbox item, items in the transaction.
    change: Option<(String, u64, Item, u64)>,
}

impl Storable for Pending {
    type Storer = StoreReplace<Self>;
}

/// Asks for and records the consumed capacity of every write of its client.
#[derive(Debug, Clone, Default)]
struct Capacity(Arc<Mutex<Ledger>>);

impl Capacity {
    fn writes(&self) -> BTreeMap<&'static str, Tally> {
        self.0.lock().unwrap().writes.clone()
    }

    fn changes(&self) -> BTreeMap<String, ChangeTally> {
        self.0.lock().unwrap().changes.clone()
    }
}

/// The outbox entry among a transaction's puts: its event types, event count and size.
fn outbox_of(items: &[TransactWriteItem]) -> Option<(String, u64, Item, u64)> {
    let put = items.iter().filter_map(|i| i.put()).find(|p| {
        p.item()
            .get("pk")
            .and_then(|v| v.as_s().ok())
            .is_some_and(|pk| pk.starts_with("WEBHOOK_OUTBOX#"))
    })?;
    let events: Vec<Value> = put
        .item()
        .get("events")
        .and_then(|v| v.as_s().ok())
        .and_then(|raw| serde_json::from_str(raw).ok())
        .unwrap_or_default();
    let mut types: Vec<String> = events
        .iter()
        .filter_map(|e| e["type"].as_str().map(str::to_owned))
        .collect();
    types.sort();
    types.dedup();
    Some((
        types.join(" + "),
        events.len() as u64,
        put.item().clone(),
        items.len() as u64,
    ))
}

impl Intercept for Capacity {
    fn name(&self) -> &'static str {
        "Capacity"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let indexes = Some(ReturnConsumedCapacity::Indexes);
        let pending = if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = indexes;
            Pending {
                op: "PutItem",
                change: None,
            }
        } else if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = indexes;
            Pending {
                op: "UpdateItem",
                change: None,
            }
        } else if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            i.return_consumed_capacity = indexes;
            Pending {
                op: "DeleteItem",
                change: None,
            }
        } else if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
            i.return_consumed_capacity = indexes;
            Pending {
                op: "BatchWriteItem",
                change: None,
            }
        } else if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = indexes;
            Pending {
                op: "TransactWriteItems",
                change: outbox_of(i.transact_items.as_deref().unwrap_or_default()),
            }
        } else {
            return Ok(());
        };
        cfg.interceptor_state().store_put(pending);
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(pending) = cfg.load::<Pending>().cloned() else {
            return Ok(());
        };
        let Ok(output) = context.output_or_error() else {
            return Ok(()); // refused (a condition failed): not part of the steady state
        };
        let capacities: Vec<ConsumedCapacity> =
            if let Some(o) = output.downcast_ref::<PutItemOutput>() {
                o.consumed_capacity.clone().into_iter().collect()
            } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
                o.consumed_capacity.clone().into_iter().collect()
            } else if let Some(o) = output.downcast_ref::<DeleteItemOutput>() {
                o.consumed_capacity.clone().into_iter().collect()
            } else if let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() {
                o.consumed_capacity.clone().unwrap_or_default()
            } else if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
                o.consumed_capacity.clone().unwrap_or_default()
            } else {
                Vec::new()
            };
        let table: f64 = capacities
            .iter()
            .filter_map(|c| c.table().and_then(|t| t.capacity_units()))
            .sum();
        let indexes: f64 = capacities
            .iter()
            .flat_map(|c| c.global_secondary_indexes().into_iter().flatten())
            .filter_map(|(_, c)| c.capacity_units())
            .sum();
        let mut ledger = self.0.lock().unwrap();
        let tally = ledger.writes.entry(pending.op).or_default();
        tally.calls += 1;
        tally.table += table;
        tally.indexes += indexes;
        if let Some((types, events, item, items)) = pending.change {
            let change = ledger.changes.entry(types).or_default();
            change.transactions += 1;
            change.events += events;
            change.items += items;
            change.reported += table + indexes;
            change.outbox_bytes.push(item_size(&item));
            change.sample.get_or_insert(item);
        }
        Ok(())
    }
}

// --- The receiver ------------------------------------------------------------------------------

/// One verified delivery.
#[derive(Debug, Clone)]
struct Arrival {
    endpoint: usize,
    webhook_id: String,
    customer: String,
    at: Instant,
}

#[derive(Default)]
struct ReceiverState {
    secrets: HashMap<(String, usize), standardwebhooks::Webhook>,
    arrivals: Vec<Arrival>,
    refused: u64,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<ReceiverState>>);

async fn receive(
    State(receiver): State<Receiver>,
    Path((run, endpoint)): Path<(String, usize)>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut state = receiver.0.lock().unwrap();
    let verified = state
        .secrets
        .get(&(run, endpoint))
        .is_some_and(|hook| hook.verify(&body, &headers).is_ok());
    if !verified {
        state.refused += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let event: Value = serde_json::from_slice(&body).unwrap_or_default();
    state.arrivals.push(Arrival {
        endpoint,
        webhook_id: headers
            .get("webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
        customer: event["data"]["id"].as_str().unwrap_or_default().to_owned(),
        at: Instant::now(),
    });
    StatusCode::NO_CONTENT
}

// --- Runs --------------------------------------------------------------------------------------

struct Bench {
    billing: Billing,
    startup: Startup,
    store: Arc<DynamoStore>,
    capacity: Capacity,
    receiver: Receiver,
    receiver_url: String,
}

/// One throughput configuration.
#[derive(Debug, Clone, Copy)]
struct Config {
    customers: usize,
    endpoints: usize,
    pollers: usize,
    live: bool,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn decode<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, Error> {
    Ok(serde_json::from_value(value)?)
}

fn write_totals(
    before: &BTreeMap<&'static str, Tally>,
    after: &BTreeMap<&'static str, Tally>,
) -> Value {
    let mut out = serde_json::Map::new();
    for (op, a) in after {
        let b = before.get(op).cloned().unwrap_or_default();
        if a.calls > b.calls {
            out.insert(
                (*op).to_owned(),
                json!({
                    "calls": a.calls - b.calls,
                    "tableWcu": a.table - b.table,
                    "indexWcu": a.indexes - b.indexes,
                }),
            );
        }
    }
    Value::Object(out)
}

impl Bench {
    fn spawn_pollers(&self, n: usize) -> Result<Vec<tokio::task::JoinHandle<()>>, Error> {
        let queue_url = self
            .startup
            .config()
            .webhooks
            .queue_url
            .clone()
            .ok_or("WEBHOOK_QUEUE_URL is not set")?;
        let sqs = aws_sdk_sqs::Client::new(self.startup.aws());
        let mut tasks = Vec::new();
        for _ in 0..n {
            let dispatcher = billing::webhooks::Dispatcher::new(
                self.store.clone(),
                Arc::new(JsonRepresentation),
                Arc::new(HttpWebhookSender::new(UrlPolicy::AllowLoopbackHttp)?),
                Arc::new(self.startup.webhook_queue().ok_or("no webhook queue")?),
            )
            .with_clock(self.startup.clock());
            let runtime = webhook_dispatcher::Runtime {
                dispatcher,
                sqs: sqs.clone(),
                queue_url: queue_url.clone(),
            };
            tasks.push(tokio::spawn(dev_server::sqs::poll(
                sqs.clone(),
                queue_url.clone(),
                runtime,
            )));
        }
        Ok(tasks)
    }

    async fn throughput(&self, run: &str, config: Config) -> Result<Value, Error> {
        eprintln!("webhook-bench: run {run}: {config:?}");
        let mut endpoints = Vec::new();
        for n in 0..config.endpoints {
            let created = self
                .billing
                .create_webhook_endpoint(CreateEndpoint {
                    url: Some(format!("{}/hook/{run}/{n}", self.receiver_url)),
                    events: Some(vec!["customer.created".into()]),
                    description: Some(format!("bench {run}")),
                })
                .await?;
            self.receiver.0.lock().unwrap().secrets.insert(
                (run.to_owned(), n),
                standardwebhooks::Webhook::new(&created.secret)?,
            );
            endpoints.push(created.endpoint.id.to_string());
        }
        let arrivals_before = self.receiver.0.lock().unwrap().arrivals.len();
        let writes_before = self.capacity.writes();
        let mut pollers = if config.live {
            self.spawn_pollers(config.pollers)?
        } else {
            Vec::new()
        };
        let created_at = Instant::now();
        let made: Vec<Result<(String, Instant), Error>> =
            futures::stream::iter(0..config.customers)
                .map(|i| async move {
                    let customer = self
                        .billing
                        .create_customer(decode::<CreateCustomer>(json!({
                            "name": format!("Webhook bench {i}"),
                        }))?)
                        .await?;
                    Ok((customer.id.to_string(), Instant::now()))
                })
                .buffer_unordered(8)
                .collect()
                .await;
        let committed: HashMap<String, Instant> = made.into_iter().collect::<Result<_, _>>()?;
        let creation_seconds = created_at.elapsed().as_secs_f64();
        let writes_after_changes = self.capacity.writes();
        let started = if config.live {
            created_at
        } else {
            pollers = self.spawn_pollers(config.pollers)?;
            Instant::now()
        };
        let expected = config.customers * config.endpoints;
        let deadline = Instant::now() + Duration::from_secs(900);
        let mut progress = Instant::now();
        let arrivals = loop {
            let arrivals: Vec<Arrival> = self.receiver.0.lock().unwrap().arrivals
                [arrivals_before..]
                .iter()
                .filter(|a| committed.contains_key(&a.customer))
                .cloned()
                .collect();
            let unique: HashSet<(usize, &str)> = arrivals
                .iter()
                .map(|a| (a.endpoint, a.webhook_id.as_str()))
                .collect();
            if unique.len() >= expected {
                break arrivals;
            }
            if progress.elapsed() > Duration::from_secs(10) {
                eprintln!(
                    "webhook-bench: {run}: {} of {expected} deliveries",
                    unique.len()
                );
                progress = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "run {run}: {} of {expected} deliveries in 900 s",
                    unique.len()
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let last = arrivals.iter().map(|a| a.at).max().unwrap_or(started);
        let seconds = (last - started).as_secs_f64();
        let unique: HashSet<(usize, &str)> = arrivals
            .iter()
            .map(|a| (a.endpoint, a.webhook_id.as_str()))
            .collect();
        let duplicates = arrivals.len() - unique.len();
        // The outbox entries are removed after their deliveries are sent: wait for them, so
        // the dispatcher's writes are all counted.
        let settle = Instant::now() + Duration::from_secs(30);
        while Instant::now() < settle {
            let writes = self.capacity.writes();
            let deletes =
                |w: &BTreeMap<&'static str, Tally>| w.get("DeleteItem").map_or(0, |t| t.calls);
            if deletes(&writes) - deletes(&writes_after_changes) >= config.customers as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for task in pollers {
            task.abort();
        }
        // An aborted poller's long poll (1 s) still ends on the server, and would take the next
        // run's first messages out of sight for the visibility timeout: let it end first.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let writes_after = self.capacity.writes();
        let mut latencies: Vec<f64> = arrivals
            .iter()
            .filter_map(|a| {
                committed
                    .get(&a.customer)
                    .map(|c| (a.at - *c).as_secs_f64())
            })
            .collect();
        latencies.sort_by(f64::total_cmp);
        for id in &endpoints {
            self.billing.delete_webhook_endpoint(id).await?;
        }
        let dispatch = if config.live {
            // The dispatcher writes no transactions: those are the changes'.
            let mut totals = write_totals(&writes_before, &writes_after);
            totals
                .as_object_mut()
                .map(|t| t.remove("TransactWriteItems"));
            totals
        } else {
            write_totals(&writes_after_changes, &writes_after)
        };
        Ok(json!({
            "run": run,
            "customers": config.customers,
            "endpoints": config.endpoints,
            "pollers": config.pollers,
            "live": config.live,
            "deliveries": unique.len(),
            "duplicates": duplicates,
            "seconds": seconds,
            "deliveriesPerSecond": unique.len() as f64 / seconds,
            "creationSeconds": creation_seconds,
            "commitToReceiptSeconds": if config.live { json!({
                "p50": percentile(&latencies, 50.0),
                "p90": percentile(&latencies, 90.0),
                "p99": percentile(&latencies, 99.0),
                "max": latencies.last(),
            }) } else { Value::Null },
            "dispatcherWrites": dispatch,
        }))
    }

    /// Changes of every kind that writes an outbox entry through a transaction, for the
    /// change-side accounting: customers with contracts, customer updates, voids.
    async fn changes(&self, customers: usize) -> Result<(), Error> {
        let now = chrono::Utc::now();
        let tag = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let catalog = create_catalog(
            &self.billing,
            &format!("wh_bench_{tag}"),
            customers,
            contract_start(now),
            4,
        )
        .await?;
        for (i, (customer, _)) in catalog.customers.iter().enumerate() {
            self.billing
                .update_customer(
                    customer.as_str(),
                    decode::<UpdateCustomer>(json!({"legalName": format!("Bench {i} Ltd")}))?,
                )
                .await?;
        }
        for i in 0..customers {
            if let Some(invoice) = catalog.invoice_for(i, now.date_naive()) {
                self.billing.void_invoice(invoice.as_str()).await?;
            }
        }
        Ok(())
    }
}

/// DynamoDB Local's accounting of an outbox item on its own: a copy under a probe key, put in a
/// transaction as the changes do (`INDEXES`), then deleted.
async fn probe(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    sample: &Item,
) -> Result<Value, Error> {
    use aws_sdk_dynamodb::types::{AttributeValue, Put};
    let mut item = sample.clone();
    let pk = format!("PROBE#{}", uuid::Uuid::new_v4().simple());
    item.insert("pk".into(), AttributeValue::S(pk.clone()));
    let sk = item
        .get("sk")
        .cloned()
        .unwrap_or(AttributeValue::S(String::new()));
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .build()?;
    let out = client
        .transact_write_items()
        .transact_items(TransactWriteItem::builder().put(put).build())
        .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
        .send()
        .await?;
    client
        .delete_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk))
        .key("sk", sk)
        .send()
        .await?;
    let capacity = out.consumed_capacity().first();
    Ok(json!({
        "table": capacity.and_then(|c| c.table()).and_then(|t| t.capacity_units()),
        "indexes": capacity
            .and_then(|c| c.global_secondary_indexes())
            .map(|g| g.iter().map(|(k, v)| (k.clone(), json!(v.capacity_units()))).collect::<serde_json::Map<_, _>>()),
    }))
}

fn change_rows(changes: &BTreeMap<String, ChangeTally>) -> Value {
    let mut rows = Vec::new();
    for (types, c) in changes {
        let mut sizes = c.outbox_bytes.clone();
        sizes.sort_unstable();
        let median = sizes[sizes.len() / 2];
        let max = *sizes.last().unwrap_or(&0);
        let added: Vec<u64> = sizes.iter().map(|s| wcu(*s, true) + 1).collect();
        let mean_added = added.iter().sum::<u64>() as f64 / added.len() as f64;
        rows.push(json!({
            "eventTypes": types,
            "transactions": c.transactions,
            "eventsPerEntry": c.events as f64 / c.transactions as f64,
            "itemsPerTransaction": c.items as f64 / c.transactions as f64,
            "outboxBytes": {"median": median, "max": max},
            "addedWcu": {"table": wcu(median, true), "index": 1, "total": wcu(median, true) + 1, "meanOverTransactions": mean_added},
            "changeWcuReportedByDynamoDbLocal": c.reported / c.transactions as f64,
        }));
    }
    Value::Array(rows)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let json_out = args.next().ok_or("usage: webhook-bench OUT.json OUT.md")?;
    let md_out = args.next().ok_or("usage: webhook-bench OUT.json OUT.md")?;
    let scale: f64 = std::env::var("WEBHOOK_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |count: usize| ((count as f64 * scale).round() as usize).max(1);

    lambda_runtime::tracing::init_default_subscriber();
    let startup = Startup::from_env().await?;
    let capacity = Capacity::default();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(startup.aws())
            .interceptor(capacity.clone())
            .build(),
    );
    let config = startup.config();
    let store = Arc::new(
        DynamoStore::new(dynamodb, &config.table_name, &config.usage_table_name)
            .with_webhook_queue(Arc::new(
                startup
                    .webhook_queue()
                    .ok_or("WEBHOOK_QUEUE_URL is not set")?,
            )),
    );
    let billing = Billing::new(store.clone(), startup.clock(), None)
        .with_url_policy(UrlPolicy::AllowLoopbackHttp);

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver_url = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/hook/{run}/{endpoint}", axum::routing::post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let bench = Bench {
        billing,
        startup,
        store,
        capacity,
        receiver,
        receiver_url,
    };
    let configs = [
        (
            "warmup",
            Config {
                customers: n(50),
                endpoints: 1,
                pollers: 1,
                live: false,
            },
        ),
        (
            "backlog-1x1",
            Config {
                customers: n(1000),
                endpoints: 1,
                pollers: 1,
                live: false,
            },
        ),
        (
            "backlog-10x1",
            Config {
                customers: n(200),
                endpoints: 10,
                pollers: 1,
                live: false,
            },
        ),
        (
            "backlog-1x4",
            Config {
                customers: n(1000),
                endpoints: 1,
                pollers: 4,
                live: false,
            },
        ),
        (
            "live-1x1",
            Config {
                customers: n(500),
                endpoints: 1,
                pollers: 1,
                live: true,
            },
        ),
    ];
    let mut runs = Vec::new();
    for (run, config) in configs {
        let result = bench.throughput(run, config).await?;
        if run != "warmup" {
            runs.push(result);
        }
    }
    // The throughput runs wrote only customer.created entries: every other kind comes from
    // these changes.
    bench.changes(n(30)).await?;
    let changes = bench.capacity.changes();
    let plain = aws_sdk_dynamodb::Client::new(bench.startup.aws());
    let mut probes = serde_json::Map::new();
    for (types, change) in &changes {
        if let Some(sample) = &change.sample {
            probes.insert(
                types.clone(),
                probe(&plain, &bench.startup.config().table_name, sample).await?,
            );
        }
    }
    let mut rows = change_rows(&changes);
    for row in rows.as_array_mut().into_iter().flatten() {
        let types = row["eventTypes"].as_str().unwrap_or_default().to_owned();
        row["outboxAloneReportedByDynamoDbLocal"] = probes.remove(&types).unwrap_or(Value::Null);
    }
    let refused = bench.receiver.0.lock().unwrap().refused;
    let result = json!({
        "throughput": runs,
        "changes": rows,
        "refusedBySignature": refused,
    });
    std::fs::write(&json_out, serde_json::to_string_pretty(&result)?)?;
    std::fs::write(&md_out, markdown(&result))?;
    eprintln!("webhook-bench: wrote {json_out} and {md_out}");
    if refused > 0 {
        return Err(format!("{refused} deliveries failed signature verification").into());
    }
    Ok(())
}

fn markdown(result: &Value) -> String {
    let mut md = String::new();
    md.push_str("## Deliveries per second through the dispatcher\n\n");
    md.push_str("| run | customers × endpoints | pollers | deliveries | duplicates | seconds | **deliveries/s** | commit → receipt p50 / p99 (s) | dispatcher writes per delivery (calls; WCU table + index, DynamoDB Local) |\n| --- | --: | --: | --: | --: | --: | --: | --: | --- |\n");
    for r in result["throughput"].as_array().into_iter().flatten() {
        let deliveries = r["deliveries"].as_f64().unwrap_or(1.0);
        let writes: Vec<String> = r["dispatcherWrites"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(op, w)| {
                format!(
                    "{op} {:.2}; {:.2} + {:.2}",
                    w["calls"].as_f64().unwrap_or(0.0) / deliveries,
                    w["tableWcu"].as_f64().unwrap_or(0.0) / deliveries,
                    w["indexWcu"].as_f64().unwrap_or(0.0) / deliveries,
                )
            })
            .collect();
        let latency = if r["live"].as_bool() == Some(true) {
            format!(
                "{:.3} / {:.3}",
                r["commitToReceiptSeconds"]["p50"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                r["commitToReceiptSeconds"]["p99"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
            )
        } else {
            "—".to_owned()
        };
        md.push_str(&format!(
            "| {} | {} × {} | {} | {} | {} | {:.1} | **{:.0}** | {} | {} |\n",
            r["run"].as_str().unwrap_or(""),
            r["customers"],
            r["endpoints"],
            r["pollers"],
            r["deliveries"],
            r["duplicates"],
            r["seconds"].as_f64().unwrap_or(0.0),
            r["deliveriesPerSecond"].as_f64().unwrap_or(0.0),
            latency,
            writes.join("<br>"),
        ));
    }
    md.push_str("\n## Write units a webhook adds to the change that causes it\n\n");
    md.push_str("| change (its events) | transactions | events per entry | items per transaction | outbox item bytes (median / max) | **added WCU**, AWS rules (2 per started KB + 1 gsi4 entry) | the outbox item alone in a transaction, DynamoDB Local reports | whole change, DynamoDB Local reports (WCU) |\n| --- | --: | --: | --: | --: | --: | --- | --: |\n");
    for c in result["changes"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.1} | {} / {} | **{}** | {} | {:.1} |\n",
            c["eventTypes"].as_str().unwrap_or(""),
            c["transactions"],
            c["eventsPerEntry"].as_f64().unwrap_or(0.0),
            c["itemsPerTransaction"].as_f64().unwrap_or(0.0),
            c["outboxBytes"]["median"],
            c["outboxBytes"]["max"],
            c["addedWcu"]["total"],
            describe(&c["outboxAloneReportedByDynamoDbLocal"]),
            c["changeWcuReportedByDynamoDbLocal"]
                .as_f64()
                .unwrap_or(0.0),
        ));
    }
    md
}

fn describe(probe: &Value) -> String {
    let indexes: Vec<String> = probe["indexes"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k} {}", v))
        .collect();
    format!(
        "table {}{}",
        probe["table"],
        if indexes.is_empty() {
            String::new()
        } else {
            format!(", {}", indexes.join(", "))
        }
    )
}
