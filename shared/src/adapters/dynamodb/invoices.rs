//! Invoices, listed by period through three indexes: all (`gsi1`), a customer's (`gsi2`) and
//! a contract's (`gsi3`).

use async_trait::async_trait;

use super::customers::customer_pk;
use super::{DynamoStore, Item, from_item, s, to_item};
use crate::error::Result;
use crate::ids::InvoiceId;
use crate::invoice::Invoice;
use crate::pagination::{Cursor, Page, PageRequest};
use crate::period::parse_date;
use crate::store::{InvoiceFilter, InvoiceStore};

pub(super) fn invoice_pk(id: &InvoiceId) -> String {
    format!("INVOICE#{id}")
}

/// `<period start>#<id>`: invoices sort by period, then id.
fn position(invoice: &Invoice) -> String {
    format!("{}#{}", invoice.period.start, invoice.id)
}

pub(super) fn invoice_item(invoice: &Invoice) -> Result<Item> {
    let mut item = to_item(invoice)?;
    let position = position(invoice);
    item.insert("pk".into(), s(invoice_pk(&invoice.id)));
    item.insert("sk".into(), s("INVOICE"));
    item.insert("gsi1pk".into(), s("INVOICE"));
    item.insert("gsi1sk".into(), s(position.clone()));
    item.insert("gsi2pk".into(), s(customer_pk(&invoice.customer_id)));
    item.insert("gsi2sk".into(), s(format!("INVOICE#{position}")));
    item.insert(
        "gsi3pk".into(),
        s(format!("CONTRACT#{}", invoice.contract_id)),
    );
    item.insert("gsi3sk".into(), s(position));
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

#[async_trait]
impl InvoiceStore for DynamoStore {
    async fn get_invoice(&self, id: &InvoiceId) -> Result<Option<Invoice>> {
        self.get_item(invoice_pk(id), "INVOICE")
            .await?
            .map(from_item)
            .transpose()
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
        let items: Vec<Invoice> = match (&filter.contract, &filter.customer) {
            (Some(contract), customer) => {
                if let Some(customer) = customer {
                    filters.push(("customerId", s(customer.as_str())));
                }
                self.query_index(
                    "gsi3",
                    &format!("CONTRACT#{contract}"),
                    None,
                    after.as_deref(),
                    page.limit,
                    &filters,
                )
                .await?
            }
            (None, Some(customer)) => {
                let after = after.map(|a| format!("INVOICE#{a}"));
                self.query_index(
                    "gsi2",
                    &customer_pk(customer),
                    Some("INVOICE#"),
                    after.as_deref(),
                    page.limit,
                    &filters,
                )
                .await?
            }
            (None, None) => {
                self.query_index(
                    "gsi1",
                    "INVOICE",
                    None,
                    after.as_deref(),
                    page.limit,
                    &filters,
                )
                .await?
            }
        };
        Ok(Page::from_overfetch(items, page.limit, position))
    }
}
