//! Invoices, listed by period through four indexes: all (`gsi1`), a customer's (`gsi2`), a
//! contract's (`gsi3`) and the closed ones of one status (`gsi5`).

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};

use super::{DynamoStore, Item, entity_item, from_item, keys, s, string_attr, version_of};
use billing::error::Result;
use billing::ids::InvoiceId;
use billing::invoice::Invoice;
use billing::lanes::merge;
use billing::pagination::{Cursor, Page, PageRequest};
use billing::period::parse_date;
use billing::ports::{InvoiceFilter, InvoiceState, InvoiceStore};

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

impl DynamoStore {
    /// An invoice with its usage: one strongly consistent query of its partition returns the
    /// invoice item and its lane shares, merged as [`billing::lanes::merge`] says.
    pub(super) async fn invoice_with_usage(&self, id: &InvoiceId) -> Result<Option<InvoiceState>> {
        let key = keys::invoice(id);
        let items = self
            .query_in(&self.table, None, &key.pk, None, None, 100, &[])
            .await?;
        self.state_of(id, items)
    }

    /// An invoice item (from an index) with its usage: closed invoices carry their frozen
    /// quantities; open ones are read again with their lanes.
    async fn listed_invoice(&self, item: Item) -> Result<Invoice> {
        let invoice: Invoice = from_item(item)?;
        if !invoice.status.is_open() {
            return Ok(invoice);
        }
        let id = invoice.id.clone();
        Ok(self
            .invoice_with_usage(&id)
            .await?
            .map(|state| state.invoice)
            .unwrap_or(invoice))
    }

    fn state_of(&self, id: &InvoiceId, items: Vec<Item>) -> Result<Option<InvoiceState>> {
        let mut invoice_item = None;
        let mut lanes = Vec::new();
        for item in items {
            let sk = string_attr(&item, "sk").unwrap_or_default();
            if sk == keys::invoice(id).sk {
                invoice_item = Some(item);
            } else if sk.starts_with(keys::LANE_PREFIX) {
                lanes.push(super::usage::lane_from_item(id, &item)?);
            }
        }
        let Some(item) = invoice_item else {
            return Ok(None);
        };
        let version = version_of(&item);
        let (invoice, aggregates) = merge(from_item(item)?, &lanes)?;
        Ok(Some(InvoiceState {
            invoice,
            aggregates,
            version,
            lanes,
        }))
    }
}

#[async_trait]
impl InvoiceStore for DynamoStore {
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>> {
        Ok(self
            .invoice_with_usage(id)
            .await?
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
        let reads: Vec<_> = items
            .into_iter()
            .map(|item| self.listed_invoice(item))
            .collect();
        let invoices: Vec<Invoice> = futures_util::stream::iter(reads)
            .buffered(16)
            .try_collect()
            .await?;
        Ok(Page::from_overfetch(invoices, page.limit, position))
    }
}
