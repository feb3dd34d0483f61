//! Every key of the table, in one place: the primary key of each item kind and the index keys
//! that list it. The layout is drawn in docs/ARCHITECTURE.md ("Tables"); nothing else in this
//! crate spells a `pk`, `sk` or `gsi*` value.

use billing::ids::{ApiKeyId, ContractId, CustomerId, InvoiceId, MeterId, PlanId};
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

/// A usage event's record, by its identity ([`billing::usage::EventRecord::key`]).
pub(crate) fn event_record(record_key: &str) -> Key {
    key(format!("EVENT#{record_key}"), "EVENT")
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
/// The prefix of a customer's event records in `gsi2`.
pub(crate) const EVENTS_IN_CUSTOMER: &str = "EVENT#";

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

/// The partition of unknown customers' event records in `gsi2`: the reference as sent.
pub(crate) fn unknown_customer_partition(reference: &billing::usage::CustomerRef) -> String {
    match reference {
        billing::usage::CustomerRef::Id(id) => format!("EVENTREF#{id}"),
        billing::usage::CustomerRef::External(x) => format!("EVENTREF#ext:{x}"),
    }
}

/// The `gsi1` partition of event records with one outcome.
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
