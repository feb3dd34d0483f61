//! One file per resource. Each handler extracts the caller first, checks its scope, parses the
//! request, calls one use case on [`Billing`], and shapes the answer.

pub mod api_keys;
pub mod customers;

use serde::Serialize;

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
