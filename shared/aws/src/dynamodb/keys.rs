//! Every key of the table, in one place: the primary key of each item kind and the index keys
//! that list it. The layout is drawn in docs/ARCHITECTURE.md ("Tables"); nothing else in this
//! crate spells a `pk`, `sk` or `gsi*` value.

use billing::ids::{
    ApiKeyId, ContractId, CustomerId, InvoiceId, MeterId, PlanId, WebhookEndpointId, WebhookEventId,
};
use billing::ports::{AgendaKind, MailTask};

/// An item's primary key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key {
    /// The partition key.
    pub pk: String,
    /// The sort key.
    pub sk: String,
}

fn key(pk: String, sk: &str) -> Key {
    Key {
        pk,
        sk: sk.to_owned(),
    }
}

/// A customer.
pub(crate) fn customer(id: &CustomerId) -> Key {
    key(customer_partition(id), "CUSTOMER")
}

/// A customer's contract index (spans and meters of its contracts, versioned).
pub(crate) fn contract_index(customer: &CustomerId) -> Key {
    key(customer_partition(customer), "CONTRACTS")
}

/// A unique value (`kind` names what is unique) held by one entity.
fn unique(kind: &str, value: &str) -> Key {
    key(format!("UNIQUE#{kind}#{value}"), "UNIQUE")
}

/// The claim on a customer's `externalCustomerId`.
pub(crate) fn external_customer_id_claim(value: &str) -> Key {
    unique("CUSTOMER_EXTERNAL_ID", value)
}

/// The claim on a payment provider's customer id (one of ours per provider customer).
pub(crate) fn provider_customer_claim(provider: &str, id: &str) -> Key {
    unique(&format!("PROVIDER_CUSTOMER#{provider}"), id)
}

/// The claim on a meter's code.
pub(crate) fn meter_code_claim(code: &str) -> Key {
    unique("METER_CODE", code)
}

/// An API key's record.
pub(crate) fn api_key(id: &ApiKeyId) -> Key {
    key(format!("APIKEY#{id}"), "APIKEY")
}

/// An API key's secret digest, found by its lookup handle.
pub(crate) fn api_key_secret(lookup: &str) -> Key {
    key(format!("APIKEY_SECRET#{lookup}"), "APIKEY_SECRET")
}

/// A meter.
pub(crate) fn meter(id: &MeterId) -> Key {
    key(format!("METER#{id}"), "METER")
}

/// A plan.
pub(crate) fn plan(id: &PlanId) -> Key {
    key(format!("PLAN#{id}"), "PLAN")
}

/// A contract.
pub(crate) fn contract(id: &ContractId) -> Key {
    key(format!("CONTRACT#{id}"), "CONTRACT")
}

/// An invoice.
pub(crate) fn invoice(id: &InvoiceId) -> Key {
    key(format!("INVOICE#{id}"), "INVOICE")
}

/// How many partitions one customer's event records spread over (by a hash of the idempotency
/// key): one partition key takes about 1,000 writes a second, so 32 buckets carry about 32,000
/// events a second from one customer (docs/SCALE.md). Part of every record's key: changing it
/// moves where a key's record is looked for, so it is fixed before the first event.
pub(crate) const RECORD_BUCKETS: u32 = 32;

/// A usage event's record, in the usage table: partitioned by its owner (the resolved
/// customer, or the reference as sent) and a bucket, sorted by idempotency key.
pub(crate) fn event_record(owner: &str, idempotency_key: &str) -> Key {
    let bucket = idempotency_key
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % RECORD_BUCKETS;
    Key {
        pk: record_partition(owner, bucket),
        sk: idempotency_key.to_owned(),
    }
}

/// Whether a record partition key is one of `owner`'s buckets.
pub(crate) fn owns_partition(owner: &str, pk: &str) -> bool {
    pk.strip_prefix("EVENTS#")
        .and_then(|rest| rest.strip_prefix(owner))
        .is_some_and(|rest| rest.starts_with('#'))
}

/// One bucket of an owner's records.
pub(crate) fn record_partition(owner: &str, bucket: u32) -> String {
    format!("EVENTS#{owner}#{bucket}")
}

/// The owner of a usage event's records: the customer it resolved to, else the reference as
/// sent (`ref:` or `ext:`), so an unknown customer's events are kept apart.
pub(crate) fn record_owner(
    customer: Option<&CustomerId>,
    reference: &billing::usage::CustomerRef,
) -> String {
    billing::idempotency::usage_owner(reference, customer)
}

/// An invoice's usage share in one lane: in the invoice's partition, so one query reads the
/// invoice with its usage.
pub(crate) fn lane(invoice: &InvoiceId, lane: billing::usage::Lane) -> Key {
    key(
        format!("INVOICE#{invoice}"),
        &format!("{LANE_PREFIX}{:02}", lane.number()),
    )
}

/// The sort key prefix of lane shares in an invoice's partition.
pub(crate) const LANE_PREFIX: &str = "LANE#";

/// A lane's tally of the events received on `day`, in the usage table: a partition per day,
/// so one query reads the day's lanes.
pub(crate) fn day_tally(day: chrono::NaiveDate, lane: billing::usage::Lane) -> Key {
    key(
        day_tallies(day),
        &format!("{LANE_PREFIX}{:02}", lane.number()),
    )
}

/// The partition of `day`'s tallies.
pub(crate) fn day_tallies(day: chrono::NaiveDate) -> String {
    format!("TALLY#{day}")
}

/// A distinct value of a `UNIQUE_COUNT` line, claimed once.
pub(crate) fn distinct_value(invoice: &InvoiceId, line: &billing::ids::LineId, value: &str) -> Key {
    Key {
        pk: format!("DISTINCT#{invoice}#{line}"),
        sk: value.to_owned(),
    }
}

/// A customer's running totals ([`billing::totals`]), beside the customer.
pub(crate) fn customer_totals(customer: &CustomerId) -> Key {
    key(customer_partition(customer), "TOTALS")
}

/// A month's running totals (`month` is `YYYY-MM`).
pub(crate) fn month_totals(month: &str) -> Key {
    key(format!("TOTALS#{month}"), "TOTALS")
}

/// The invoice number counter.
pub(crate) fn invoice_counter() -> Key {
    key("COUNTER".to_owned(), "INVOICE_NUMBER")
}

/// The partition of the mail outbox.
pub(crate) const OUTBOX: &str = "OUTBOX";

/// A queued mail.
pub(crate) fn outbox(task: &MailTask) -> Key {
    Key {
        pk: OUTBOX.to_owned(),
        sk: billing::idempotency::mail(&task.invoice_id, task.kind),
    }
}

/// A webhook outbox entry (events written with the change that caused them).
pub(crate) fn webhook_outbox(entry: &str) -> Key {
    key(format!("WEBHOOK_OUTBOX#{entry}"), "ENTRY")
}

/// A webhook endpoint.
pub(crate) fn webhook_endpoint(id: &WebhookEndpointId) -> Key {
    key(webhook_endpoint_partition(id), "ENDPOINT")
}

/// An endpoint's partition: the endpoint and its deliveries.
pub(crate) fn webhook_endpoint_partition(id: &WebhookEndpointId) -> String {
    format!("WEBHOOK_ENDPOINT#{id}")
}

/// The sort key prefix of deliveries in their endpoint's partition.
pub(crate) const DELIVERY_PREFIX: &str = "DELIVERY#";

/// One event's delivery to one endpoint, in the endpoint's partition, newest first.
pub(crate) fn webhook_delivery(endpoint: &WebhookEndpointId, event: &WebhookEventId) -> Key {
    Key {
        pk: webhook_endpoint_partition(endpoint),
        sk: format!(
            "{DELIVERY_PREFIX}{}",
            billing::webhooks::delivery::newest_first(event)
        ),
    }
}

/// How many `gsi4` partitions the webhook sweep's lists spread over, so no one partition takes
/// every outbox and delivery write.
pub(crate) const WEBHOOK_SHARDS: u32 = 8;

fn shard(text: &str) -> u32 {
    text.bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
        % WEBHOOK_SHARDS
}

/// `gsi4` partition of outbox entries (by the time they are due), for the sweep.
pub(crate) fn outbox_agenda(shard_number: u32) -> String {
    format!("AGENDA#WEBHOOK_OUTBOX#{shard_number}")
}

/// An outbox entry's `gsi4` keys.
pub(crate) fn outbox_agenda_keys(entry: &str, due: &str) -> (String, String) {
    (outbox_agenda(shard(entry)), format!("{due}#{entry}"))
}

/// `gsi4` partition of pending deliveries (by their next attempt), for the sweep.
pub(crate) fn delivery_agenda(shard_number: u32) -> String {
    format!("AGENDA#WEBHOOK_DELIVERY#{shard_number}")
}

/// A pending delivery's `gsi4` keys.
pub(crate) fn delivery_agenda_keys(
    endpoint: &WebhookEndpointId,
    event: &WebhookEventId,
    due: &str,
) -> (String, String) {
    (
        delivery_agenda(shard(event.as_str())),
        format!("{due}#{endpoint}#{event}"),
    )
}

/// A payment provider's event id, claimed once.
pub(crate) fn provider_event(id: &str) -> Key {
    key(format!("PROVIDER_EVENT#{id}"), "EVENT")
}

/// `gsi1`: every item of one kind, in id (creation) order, or for invoices in period order.
/// The partition is the kind's name (`CUSTOMER`, `METER`, `PLAN`, `CONTRACT`, `APIKEY`,
/// `INVOICE`); for event records, the outcome (`EVENT#<status>`).
pub(crate) const GSI1: &str = "gsi1";
/// `gsi2`: one customer's contracts, invoices and events, under [`customer_partition`].
pub(crate) const GSI2: &str = "gsi2";
/// `gsi3`: one contract's invoices, under [`contract_partition`].
pub(crate) const GSI3: &str = "gsi3";
/// `gsi4`: the billing run's agenda ([`agenda`]).
pub(crate) const GSI4: &str = "gsi4";
/// `gsi5`: closed invoices by status ([`invoices_with_status`]), in period order.
pub(crate) const GSI5: &str = "gsi5";

/// The `gsi5` partition of closed invoices with one status, or `None` for an open status
/// (open invoices are not in `gsi5`: the matcher moves them between DRAFTED and IN_PROGRESS
/// without rewriting their keys).
pub(crate) fn invoices_with_status(status: billing::invoice::InvoiceStatus) -> Option<String> {
    (!status.is_open()).then(|| format!("INVOICE#{}", status.as_str()))
}

/// A customer's partition: its own items, and its contracts, invoices and events in `gsi2`.
pub(crate) fn customer_partition(id: &CustomerId) -> String {
    format!("CUSTOMER#{id}")
}

/// A contract's invoices in `gsi3`.
pub(crate) fn contract_partition(id: &ContractId) -> String {
    format!("CONTRACT#{id}")
}

/// The prefix of a customer's contracts in `gsi2`.
pub(crate) const CONTRACTS_IN_CUSTOMER: &str = "CONTRACT#";
/// The prefix of a customer's invoices in `gsi2`.
pub(crate) const INVOICES_IN_CUSTOMER: &str = "INVOICE#";

/// A contract's sort key among its customer's items.
pub(crate) fn contract_in_customer(id: &ContractId) -> String {
    format!("{CONTRACTS_IN_CUSTOMER}{id}")
}

/// An invoice's sort key among its customer's items (`position` as in [`invoice_position`]).
pub(crate) fn invoice_in_customer(position: &str) -> String {
    format!("{INVOICES_IN_CUSTOMER}{position}")
}

/// `<period start>#<id>`: invoices sort by period, then id.
pub(crate) fn invoice_position(start: chrono::NaiveDate, id: &InvoiceId) -> String {
    format!("{start}#{id}")
}

/// The usage table's `gsi1` partition of unbillable event records with one outcome (sparse:
/// billed records carry no index keys, so they cost no index write).
pub(crate) fn events_with_status(status: &str) -> String {
    format!("EVENT#{status}")
}

/// An agenda's partition in `gsi4`.
pub(crate) fn agenda(kind: AgendaKind) -> &'static str {
    match kind {
        AgendaKind::Close => "AGENDA#CLOSE",
        AgendaKind::Collect => "AGENDA#COLLECT",
        AgendaKind::Due => "AGENDA#DUE",
    }
}
