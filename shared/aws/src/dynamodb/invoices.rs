//! Invoices, listed by period through four indexes: all (`gsi1`), a customer's (`gsi2`), a
//! contract's (`gsi3`) and the closed ones of one status (`gsi5`).

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{DynamoStore, Item, entity_item, from_item, keys, s, version_of};
use billing::aggregation::Aggregate;
use billing::error::{Error, Result};
use billing::ids::{InvoiceId, LineId};
use billing::invoice::{Invoice, InvoiceStatus};
use billing::pagination::{Cursor, Page, PageRequest};
use billing::period::parse_date;
use billing::ports::{InvoiceFilter, InvoiceState, InvoiceStore, InvoiceUsage};

fn position(invoice: &Invoice) -> String {
    keys::invoice_position(invoice.period.start, &invoice.id)
}

pub(super) fn invoice_item(invoice: &Invoice) -> Result<Item> {
    let position = position(invoice);
    let mut item = entity_item(
        invoice,
        &keys::invoice(&invoice.id),
        Some(("INVOICE", &position)),
    )?;
    item.insert(
        "gsi2pk".into(),
        s(keys::customer_partition(&invoice.customer_id)),
    );
    item.insert("gsi2sk".into(), s(keys::invoice_in_customer(&position)));
    item.insert(
        "gsi3pk".into(),
        s(keys::contract_partition(&invoice.contract_id)),
    );
    item.insert("gsi3sk".into(), s(&position));
    if let Some((pk, sk)) = super::ledger::agenda_keys(invoice) {
        item.insert("gsi4pk".into(), s(pk));
        item.insert("gsi4sk".into(), s(sk));
    }
    if let Some(partition) = keys::invoices_with_status(invoice.status) {
        item.insert("gsi5pk".into(), s(partition));
        item.insert("gsi5sk".into(), s(&position));
    }
    Ok(item)
}

/// Checks that a cursor is a position this API hands out.
fn parse_position(cursor: &Cursor) -> Result<String> {
    let raw = cursor.sort_key();
    let valid = raw
        .split_once('#')
        .is_some_and(|(date, id)| parse_date(date).is_ok() && InvoiceId::parse(id).is_ok());
    if valid {
        Ok(raw.to_owned())
    } else {
        Err(Cursor::invalid())
    }
}

/// Takes the usage version and the lines' aggregates (`agg#<lineId>`) out of an invoice item.
fn take_usage(item: &mut Item) -> Result<(u64, BTreeMap<LineId, Aggregate>)> {
    let version = version_of(item);
    item.remove("version");
    let mut aggregates = BTreeMap::new();
    let keys: Vec<String> = item
        .keys()
        .filter(|k| k.starts_with("agg#"))
        .cloned()
        .collect();
    for key in keys {
        if let Some(value) = item.remove(&key) {
            let aggregate: Aggregate = serde_dynamo::from_attribute_value(value)
                .map_err(|e| Error::internal(format!("bad aggregate {key}: {e}")))?;
            aggregates.insert(LineId::parse(&key["agg#".len()..])?, aggregate);
        }
    }
    Ok((version, aggregates))
}

/// Reads an invoice item: the invoice, its lines' aggregates (which give the lines their
/// quantities) and its usage version.
pub(super) fn decode_invoice(mut item: Item) -> Result<InvoiceState> {
    let (version, aggregates) = take_usage(&mut item)?;
    let mut invoice: Invoice = from_item(item)?;
    for line in &mut invoice.lines {
        if let Some(aggregate) = aggregates.get(&line.id) {
            line.quantity = aggregate.quantity();
        }
    }
    Ok(InvoiceState {
        invoice,
        aggregates,
        version,
    })
}

/// Reads only what the matcher needs of an invoice item (status, line ids, aggregates,
/// version), without decoding the invoice itself.
pub(super) fn decode_usage(mut item: Item) -> Result<(InvoiceId, InvoiceUsage)> {
    let (version, aggregates) = take_usage(&mut item)?;
    let text = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .ok_or_else(|| Error::internal(format!("invoice item without {name}")))
    };
    let id = InvoiceId::parse(text("id")?)?;
    let status = InvoiceStatus::parse(text("status")?)?;
    let line_ids = match item.get("lines") {
        Some(AttributeValue::L(lines)) => lines
            .iter()
            .map(|line| {
                line.as_m()
                    .ok()
                    .and_then(|m| m.get("id"))
                    .and_then(|v| v.as_s().ok())
                    .ok_or_else(|| Error::internal(format!("invoice {id} has a line without id")))
                    .and_then(|raw| LineId::parse(raw))
            })
            .collect::<Result<Vec<_>>>()?,
        _ => Vec::new(),
    };
    Ok((
        id,
        InvoiceUsage {
            status,
            line_ids,
            aggregates,
            version,
        },
    ))
}

#[async_trait]
impl InvoiceStore for DynamoStore {
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>> {
        Ok(self
            .get_item(&keys::invoice(id))
            .await?
            .map(decode_invoice)
            .transpose()?
            .map(|state| state.invoice))
    }

    async fn list_invoices(
        &self,
        filter: &InvoiceFilter,
        page: &PageRequest,
    ) -> Result<Page<Invoice>> {
        let after = page.after.as_ref().map(parse_position).transpose()?;
        let mut filters = Vec::new();
        if let Some(status) = filter.status {
            filters.push(("status", s(status.as_str())));
        }
        let items: Vec<Item> = match (&filter.contract, &filter.customer) {
            (Some(contract), customer) => {
                if let Some(customer) = customer {
                    filters.push(("customerId", s(customer.as_str())));
                }
                self.query_items(
                    keys::GSI3,
                    &keys::contract_partition(contract),
                    None,
                    after.as_deref(),
                    page.limit,
                    &filters,
                )
                .await?
            }
            (None, Some(customer)) => {
                let after = after.map(|a| keys::invoice_in_customer(&a));
                self.query_items(
                    keys::GSI2,
                    &keys::customer_partition(customer),
                    Some(keys::INVOICES_IN_CUSTOMER),
                    after.as_deref(),
                    page.limit,
                    &filters,
                )
                .await?
            }
            (None, None) => match filter.status.and_then(keys::invoices_with_status) {
                // A closed status has a partition of its own: no filter, no scan.
                Some(partition) => {
                    self.query_items(
                        keys::GSI5,
                        &partition,
                        None,
                        after.as_deref(),
                        page.limit,
                        &[],
                    )
                    .await?
                }
                None => {
                    self.query_items(
                        keys::GSI1,
                        "INVOICE",
                        None,
                        after.as_deref(),
                        page.limit,
                        &filters,
                    )
                    .await?
                }
            },
        };
        let invoices = items
            .into_iter()
            .map(|item| decode_invoice(item).map(|state| state.invoice))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page::from_overfetch(invoices, page.limit, position))
    }
}
