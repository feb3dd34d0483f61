//! Invoices after usage: conditional transitions (close, paid, attempts, refunded), the gapless
//! invoice number counter, the billing run's agenda and the mail outbox.
//!
//! - **Agenda**: sparse `gsi4` keys on the invoice item itself ([`agenda_keys`]): an open invoice
//!   sits under `AGENDA#CLOSE` by its closing date, a sent auto-pay invoice under
//!   `AGENDA#COLLECT` by its next attempt date; any other invoice has no `gsi4` keys, so it
//!   leaves the index in the same write that changes its status.
//! - **Numbers**: `COUNTER / INVOICE_NUMBER` holds the last number; a close moves it from
//!   `n - 1` to `n` in the transaction that writes the invoice, so a number is never skipped or
//!   given twice.
//! - **Outbox**: `OUTBOX / <invoice>#<kind>` items, written with the change they report.
//! - **Provider events**: `PROVIDER_EVENT#<id>` items (expiring after 30 days) make each
//!   webhook delivery count once.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use chrono::{DateTime, NaiveDate, Utc};

use super::invoices::invoice_item;
use super::{DynamoStore, Item, key_item, keys, n, number_attr, s, string_attr};
use billing::concurrency::Write;
use billing::error::{Error, Result};
use billing::ids::{CustomerId, InvoiceId};
use billing::invoice::{Invoice, InvoiceStatus};
use billing::lanes::UsageLane;
use billing::money::Currency;
use billing::pagination::{Cursor, Page, PageRequest};
use billing::ports::{AgendaKind, InvoiceState, LedgerStore, MailKind, MailTask};
use billing::totals::{Month, Totals, TotalsChange};
use billing::usage::Lane;
use billing::webhooks::OutgoingEvent;

/// How long a provider event id is remembered (Stripe retries for 3 days).
const PROVIDER_EVENT_RETENTION: chrono::Duration = chrono::Duration::days(30);

/// The agenda an invoice is on, if any, with its sort key (`<date>#<id>`).
pub(super) fn agenda_keys(invoice: &Invoice) -> Option<(&'static str, String)> {
    if invoice.status.is_open() {
        return Some((
            keys::agenda(AgendaKind::Close),
            format!("{}#{}", invoice.closes_on, invoice.id),
        ));
    }
    match (invoice.status, invoice.payment.next_attempt_on) {
        (InvoiceStatus::Sent, Some(date)) if invoice.auto_pay => Some((
            keys::agenda(AgendaKind::Collect),
            format!("{date}#{}", invoice.id),
        )),
        (InvoiceStatus::Sent, _) => Some((
            keys::agenda(AgendaKind::Due),
            format!("{}#{}", invoice.due_date, invoice.id),
        )),
        _ => None,
    }
}

impl DynamoStore {
    fn update(&self, update: Update) -> TransactWriteItem {
        TransactWriteItem::builder().update(update).build()
    }

    /// The writes sealing every usage lane of an invoice. With `read`, each lane read is sealed
    /// on condition of its version, and each lane not read must still not exist (a sealed
    /// placeholder is put); without, every lane is sealed whatever it holds (a void).
    pub(super) fn seal_lanes(
        &self,
        invoice: &InvoiceId,
        read: Option<&[UsageLane]>,
    ) -> Result<Vec<TransactWriteItem>> {
        let mut items = Vec::new();
        for lane in Lane::all() {
            let key = keys::lane(invoice, lane);
            let mut update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(&key.pk))
                .key("sk", s(&key.sk))
                .update_expression(
                    "SET sealed = :sealed, #version = if_not_exists(#version, :zero) + :one",
                )
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":sealed", AttributeValue::Bool(true))
                .expression_attribute_values(":zero", n(0))
                .expression_attribute_values(":one", n(1));
            if let Some(read) = read {
                update = match read.iter().find(|l| l.key.lane == lane) {
                    Some(seen) => update
                        .condition_expression("#version = :version")
                        .expression_attribute_values(":version", n(seen.version)),
                    None => update.condition_expression("attribute_not_exists(pk)"),
                };
            }
            items.push(self.update(update.build().map_err(|e| Error::internal(e.to_string()))?));
        }
        Ok(items)
    }
}

impl DynamoStore {
    /// Adds a totals change to the counters under `key` (created by the first `ADD`).
    fn totals_update(&self, key: &keys::Key, change: &TotalsChange) -> Result<Update> {
        let code = change.currency.code();
        let mut expression =
            "ADD #sent :sent, #paid :paid, #billed :billed, #collected :collected".to_owned();
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("pk", s(&key.pk))
            .key("sk", s(&key.sk))
            .expression_attribute_names("#sent", "sent")
            .expression_attribute_names("#paid", "paid")
            .expression_attribute_names("#billed", format!("{BILLED}{code}"))
            .expression_attribute_names("#collected", format!("{COLLECTED}{code}"))
            .expression_attribute_values(":sent", signed(change.sent))
            .expression_attribute_values(":paid", signed(change.paid))
            .expression_attribute_values(":billed", signed(change.billed))
            .expression_attribute_values(":collected", signed(change.collected));
        if let Some(at) = change.paid_at {
            // No condition: a failed one would cancel the transition itself. Payments are
            // recorded in the order they arrive, which is the order people expect to see.
            expression.push_str(" SET #last = :at");
            update = update
                .expression_attribute_names("#last", LAST_PAYMENT_AT)
                .expression_attribute_values(
                    ":at",
                    s(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                );
        }
        update
            .update_expression(expression)
            .build()
            .map_err(|e| Error::internal(e.to_string()))
    }

    /// Reads totals items by key, in batches of 100.
    async fn read_totals(&self, keys: Vec<keys::Key>) -> Result<HashMap<String, Totals>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(100) {
            for item in self.batch_get(&self.table, chunk.to_vec(), None).await? {
                let pk = string_attr(&item, "pk").unwrap_or_default();
                found.insert(pk, decode_totals(&item));
            }
        }
        Ok(found)
    }
}

const BILLED: &str = "billed_";
const COLLECTED: &str = "collected_";
const LAST_PAYMENT_AT: &str = "lastPaymentAt";

/// A signed count as a DynamoDB number.
fn signed(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// Reads a totals item: counts, per-currency amounts (`billed_USD`, ...), last payment.
fn decode_totals(item: &Item) -> Totals {
    let number = |v: &AttributeValue| v.as_n().ok().and_then(|n| n.parse::<i64>().ok());
    let mut totals = Totals {
        sent: item.get("sent").and_then(number).unwrap_or(0),
        paid: item.get("paid").and_then(number).unwrap_or(0),
        last_payment_at: string_attr(item, LAST_PAYMENT_AT).and_then(|t| t.parse().ok()),
        ..Totals::default()
    };
    for (name, value) in item {
        let (Some(amount), Some((prefix, code))) = (number(value), name.split_once('_')) else {
            continue;
        };
        let Ok(currency) = Currency::parse(code) else {
            continue;
        };
        match prefix {
            "billed" => {
                totals.billed.insert(currency, amount);
            }
            "collected" => {
                totals.collected.insert(currency, amount);
            }
            _ => {}
        }
    }
    totals
}

#[async_trait]
impl LedgerStore for DynamoStore {
    async fn invoice_state(&self, id: &InvoiceId) -> Result<Option<InvoiceState>> {
        self.invoice_with_usage(id).await
    }

    async fn agenda(
        &self,
        kind: AgendaKind,
        up_to: NaiveDate,
        page: &PageRequest,
    ) -> Result<Page<InvoiceId>> {
        let after = page.after.as_ref().map(|c| c.sort_key().to_owned());
        let items = self
            .query_items(
                keys::GSI4,
                keys::agenda(kind),
                None,
                after.as_deref(),
                page.limit,
                &[],
            )
            .await?;
        // Sort keys start with the date, so the due ones come first; stop at the first later.
        let bound = format!("{up_to}#\u{10FFFF}");
        let mut due: Vec<(String, InvoiceId)> = Vec::new();
        let mut beyond = false;
        for item in items {
            let sort = string_attr(&item, "gsi4sk").unwrap_or_default();
            if sort > bound {
                beyond = true;
                break;
            }
            let id = string_attr(&item, "id")
                .ok_or_else(|| Error::internal("agenda item without id"))?;
            due.push((sort, InvoiceId::parse(&id)?));
        }
        let has_more = !beyond && due.len() > page.limit;
        due.truncate(page.limit);
        let next = has_more
            .then(|| due.last().map(|(sort, _)| Cursor::after(sort.clone())))
            .flatten();
        Ok(Page {
            items: due.into_iter().map(|(_, id)| id).collect(),
            next,
        })
    }

    async fn last_invoice_number(&self) -> Result<u64> {
        Ok(self
            .get_item(&keys::invoice_counter())
            .await?
            .and_then(|item| number_attr(&item, "last"))
            .unwrap_or(0))
    }

    async fn transition(
        &self,
        previous: &InvoiceState,
        next: &Invoice,
        number: Option<u64>,
        mail: &[MailTask],
        events: &[OutgoingEvent],
    ) -> Result<Write> {
        let mut item = invoice_item(next)?;
        item.insert("version".into(), n(previous.version + 1));
        let mut values: Item =
            HashMap::from([(":status".to_owned(), s(previous.invoice.status.as_str()))]);
        let version_check = if previous.version == 0 {
            "attribute_not_exists(#version)"
        } else {
            values.insert(":version".into(), n(previous.version));
            "#version = :version"
        };
        let put = aws_sdk_dynamodb::types::Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(format!("{version_check} AND #status = :status"))
            .expression_attribute_names("#version", "version")
            .expression_attribute_names("#status", "status")
            .set_expression_attribute_values(Some(values))
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        // A close or a void freezes the usage counted: every lane is sealed on condition that
        // it did not move since read, so no usage lands after the quantities were taken.
        if previous.invoice.status.is_open() && !next.status.is_open() {
            items.extend(self.seal_lanes(&next.id, Some(&previous.lanes))?);
        }
        if let Some(number) = number {
            let counter = keys::invoice_counter();
            let mut update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(&counter.pk))
                .key("sk", s(&counter.sk))
                .update_expression("SET #last = :number")
                .expression_attribute_names("#last", "last")
                .expression_attribute_values(":number", n(number));
            update = if number <= 1 {
                update.condition_expression("attribute_not_exists(#last)")
            } else {
                update
                    .condition_expression("#last = :previous")
                    .expression_attribute_values(":previous", n(number - 1))
            };
            items.push(self.update(update.build().map_err(|e| Error::internal(e.to_string()))?));
        }
        if let Some(change) = billing::totals::change(&previous.invoice, next) {
            items.push(
                self.update(self.totals_update(&keys::customer_totals(&change.customer), &change)?),
            );
            items.push(
                self.update(self.totals_update(&keys::month_totals(&change.month.key()), &change)?),
            );
        }
        for task in mail {
            items.push(self.put(
                key_item(
                    &keys::outbox(task),
                    [
                        ("invoiceId", s(task.invoice_id.as_str())),
                        ("kind", s(task.kind.as_str())),
                    ],
                ),
                None,
            ));
        }
        // The invoice, its lanes and the counter come first: only they carry conditions.
        let conditioned = items.len();
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
                // The invoice or a lane moved, or another close took this number first.
                let mail_start = conditioned - mail.len();
                if (0..mail_start).any(failed) {
                    Ok(Write::Conflict)
                } else {
                    Err(Error::internal(format!(
                        "invoice transition cancelled: {reasons:?}"
                    )))
                }
            }
        }
    }

    async fn pending_mail(&self, limit: usize) -> Result<Vec<MailTask>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::OUTBOX))
            .consistent_read(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(super::sdk_error)?;
        out.items()
            .iter()
            .map(|item| {
                let id = string_attr(item, "invoiceId")
                    .ok_or_else(|| Error::internal("outbox item without invoiceId"))?;
                let kind = string_attr(item, "kind")
                    .and_then(|k| MailKind::parse(&k))
                    .ok_or_else(|| Error::internal("outbox item without a known kind"))?;
                Ok(MailTask {
                    invoice_id: InvoiceId::parse(&id)?,
                    kind,
                })
            })
            .collect()
    }

    async fn mail_sent(&self, task: &MailTask) -> Result<()> {
        self.delete_item(&keys::outbox(task)).await
    }

    async fn claim_provider_event(&self, id: &str, at: DateTime<Utc>) -> Result<bool> {
        let expires = (at + PROVIDER_EVENT_RETENTION).timestamp();
        self.put_item(
            key_item(
                &keys::provider_event(id),
                [
                    (
                        "receivedAt",
                        s(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
                    ),
                    ("expiresAt", n(u64::try_from(expires).unwrap_or(0))),
                ],
            ),
            Some("attribute_not_exists(pk)"),
        )
        .await
    }

    async fn release_provider_event(&self, id: &str) -> Result<()> {
        self.delete_item(&keys::provider_event(id)).await
    }

    async fn customer_totals(
        &self,
        customers: &[CustomerId],
    ) -> Result<HashMap<CustomerId, Totals>> {
        let mut found = self
            .read_totals(customers.iter().map(keys::customer_totals).collect())
            .await?;
        Ok(customers
            .iter()
            .filter_map(|c| {
                found
                    .remove(&keys::customer_totals(c).pk)
                    .map(|t| (c.clone(), t))
            })
            .collect())
    }

    async fn month_totals(&self, months: &[Month]) -> Result<HashMap<Month, Totals>> {
        let mut found = self
            .read_totals(
                months
                    .iter()
                    .map(|m| keys::month_totals(&m.key()))
                    .collect(),
            )
            .await?;
        Ok(months
            .iter()
            .filter_map(|m| {
                found
                    .remove(&keys::month_totals(&m.key()).pk)
                    .map(|t| (*m, t))
            })
            .collect())
    }
}
