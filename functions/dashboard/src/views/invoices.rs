//! Invoices: the list, filtered by status and customer.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use billing::api_key::Scope;
use serde::Deserialize;

use crate::AppState;
use crate::auth::Signed;
use crate::page::{self, Choice, Page};

use super::customer::InvoiceRow;
use super::{next_link, page_request, query};

/// The status filter's options: (wire name, the guide's word).
pub const STATUSES: [(&str, &str); 7] = [
    ("", "Any status"),
    ("DRAFTED", "Drafted"),
    ("IN_PROGRESS", "In Progress"),
    ("SENT", "Sent"),
    ("PAID", "Paid"),
    ("VOID", "Void"),
    ("REFUNDED", "Refunded"),
];

#[derive(Template)]
#[template(path = "invoices.html")]
struct List {
    page: Page,
    statuses: Vec<Choice>,
    customer: String,
    invoices: Vec<InvoiceRow>,
    next: Option<String>,
    filtered: bool,
    error: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    status: Option<String>,
    customer: Option<String>,
    cursor: Option<String>,
}

/// Puts the customers' names on the rows (one concurrent read per distinct customer).
async fn with_names(state: &AppState, mut rows: Vec<InvoiceRow>) -> Vec<InvoiceRow> {
    let names = super::customer_names(state, rows.iter().map(|r| r.customer.as_str())).await;
    for row in &mut rows {
        row.customer_name = names.get(&row.customer).cloned().unwrap_or_default();
    }
    rows
}

/// `GET /dashboard/invoices[?status=…&customer=…]`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Invoices", "invoices");
    if let Err(e) = signed.require(Scope::InvoicesRead) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    let status = q.status.as_deref().filter(|s| !s.is_empty());
    let customer = q
        .customer
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let found = state
        .billing
        .invoices(&page_request(q.cursor.as_deref()), customer, None, status)
        .await;
    let (invoices, next, error) = match found {
        Ok(p) => (
            with_names(&state, p.items.iter().map(InvoiceRow::of).collect()).await,
            next_link(
                "/dashboard/invoices",
                &[
                    ("status", status.unwrap_or_default()),
                    ("customer", customer.unwrap_or_default()),
                ],
                p.next.as_ref(),
            ),
            None,
        ),
        // A malformed customer id is a filter typed wrong: say so next to the filters.
        Err(e)
            if e.kind == billing::ErrorKind::InvalidRequest
                || e.kind == billing::ErrorKind::Unprocessable =>
        {
            (vec![], None, Some(e.message))
        }
        Err(e) => return page::error(Some(page), e),
    };
    page::render(&List {
        page,
        statuses: page::choices(STATUSES, status.unwrap_or_default()),
        customer: customer.unwrap_or_default().to_owned(),
        invoices,
        next,
        filtered: status.is_some() || customer.is_some(),
        error,
    })
}
