//! One file per resource. Each handler extracts the caller first, checks its scope, parses the
//! request, calls one use case on [`Billing`], and shapes the answer.

pub mod api_keys;
pub mod contracts;
pub mod customers;
pub mod events;
pub mod invoices;
pub mod meters;
pub mod openapi;
pub mod plans;
pub mod portal;
pub mod webhook_endpoints;

use serde::{Deserialize, Serialize};

/// The list envelope every list route answers with.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct List<T> {
    /// This page's items.
    pub data: Vec<T>,
    /// Whether another page follows.
    pub has_more: bool,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

impl<T> List<T> {
    /// Shapes a domain page, converting each item to its view.
    pub fn from_page<U>(page: billing::pagination::Page<U>, view: impl Fn(U) -> T) -> Self {
        Self {
            has_more: page.next.is_some(),
            next_cursor: page.next.map(|c| c.encode()),
            data: page.items.into_iter().map(view).collect(),
        }
    }
}

/// The query parameters of a plain list route: `limit` and `cursor`, nothing else.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (1 to 100).
    pub limit: Option<String>,
    /// Where the previous page ended.
    pub cursor: Option<String>,
}
