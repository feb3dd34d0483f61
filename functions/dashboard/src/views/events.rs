//! Events: usage events with their match result, filtered by customer and status. Unbillable
//! events show why, so an event that was not billed is never silently lost.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;
use billing::api_key::Scope;
use billing::usage::{CustomerRef, EventRecord};
use serde::Deserialize;

use crate::AppState;
use crate::auth::Signed;
use crate::page::{self, Choice, Page};

use super::{PAGE_SIZE, next_link, page_request, query};

/// The status filter's options.
const STATUSES: [(&str, &str); 11] = [
    ("unbillable", "Unbillable (any reason)"),
    ("", "Any status"),
    ("matched", "Matched"),
    ("late", "Late"),
    ("unmatched", "Unmatched"),
    ("unknown_customer", "Unknown customer"),
    ("no_contract", "No contract"),
    ("no_open_invoice", "No open invoice"),
    ("missing_property", "Missing property"),
    ("invalid_property", "Invalid property"),
    ("no_rate", "No rate"),
];

/// A row.
pub struct Row {
    /// When it happened.
    pub timestamp: String,
    /// When the matcher recorded it.
    pub processed: String,
    /// Its name.
    pub event_name: String,
    /// The customer: a link when known.
    pub customer: String,
    /// Whether `customer` is one of ours (linkable).
    pub known: bool,
    /// The client's key.
    pub idempotency_key: String,
    /// The outcome's word.
    pub status: String,
    /// Billed or not.
    pub billed: bool,
    /// Why, for people.
    pub reason: String,
    /// Properties, `tokens: 12`.
    pub properties: String,
}

impl Row {
    fn of(r: &EventRecord) -> Self {
        let (customer, known) = match (&r.customer_id, &r.event.customer) {
            (Some(id), _) => (id.to_string(), true),
            (None, CustomerRef::Id(id)) => (id.to_string(), false),
            (None, CustomerRef::External(x)) => (format!("external: {}", x.as_str()), false),
        };
        Self {
            timestamp: page::moment(r.event.timestamp),
            processed: page::moment(r.processed_at),
            event_name: r.event.event_name.to_string(),
            customer,
            known,
            idempotency_key: r.event.idempotency_key.as_str().to_owned(),
            status: STATUSES
                .iter()
                .find(|(w, _)| *w == r.status.as_str())
                .map_or(r.status.as_str().to_owned(), |(_, l)| (*l).to_owned()),
            billed: r.status.is_billed(),
            reason: r.status.reason().to_owned(),
            properties: r
                .event
                .properties
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{k}: {}",
                        serde_json::to_string(v)
                            .unwrap_or_default()
                            .trim_matches('"')
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

#[derive(Template)]
#[template(path = "events.html")]
struct List {
    page: Page,
    statuses: Vec<Choice>,
    customer: String,
    rows: Vec<Row>,
    next: Option<String>,
    error: Option<String>,
    unbillable: bool,
    /// Some reason's search stopped before a full page (a customer with many billed events):
    /// the overview is not the whole story, so the screen says so.
    partial: bool,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    customer: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
}

/// `GET /dashboard/events[?customer=…&status=…]`. With no status, or "unbillable", the first
/// unbillable events of every reason (lists run oldest first), most recently processed on top.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Events", "events");
    if let Err(e) = signed.require(Scope::UsageRead) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    let customer = q
        .customer
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let status = q.status.as_deref().unwrap_or("unbillable");
    let unbillable = status == "unbillable";
    let (id, external) = match customer {
        Some(c) if c.starts_with("cus_") => (Some(c), None),
        Some(c) => (None, Some(c)),
        None => (None, None),
    };
    let b = &state.billing;
    let mut partial = false;
    let result = if unbillable {
        let statuses = billing::use_cases::UNBILLABLE;
        let reads = statuses.iter().map(|s| {
            let request = billing::pagination::PageRequest {
                limit: PAGE_SIZE,
                after: None,
            };
            async move { b.events(&request, id, external, Some(s.as_str())).await }
        });
        let mut rows: Vec<EventRecord> = Vec::new();
        let mut failure = None;
        for found in futures_util::future::join_all(reads).await {
            match found {
                Ok(p) => {
                    partial |= p.next.is_some() && p.items.len() < PAGE_SIZE;
                    rows.extend(p.items);
                }
                Err(e) => failure = Some(e),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => {
                rows.sort_by_key(|r| std::cmp::Reverse(r.processed_at));
                rows.truncate(PAGE_SIZE * 2);
                Ok((rows, None))
            }
        }
    } else if id.is_none() && external.is_none() && status.is_empty() {
        Err(billing::Error::invalid(
            "missing_filter",
            "Choose a status, or give a customer: events are listed by one or the other.",
        ))
    } else {
        let st = (!status.is_empty()).then_some(status);
        b.events(&page_request(q.cursor.as_deref()), id, external, st)
            .await
            .map(|p| (p.items, p.next))
    };
    let (rows, next, error) = match result {
        Ok((rows, next)) => (rows, next, None),
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
        statuses: page::choices(STATUSES, status),
        customer: customer.unwrap_or_default().to_owned(),
        rows: rows.iter().map(Row::of).collect(),
        next: next_link(
            "/dashboard/events",
            &[
                ("status", status),
                ("customer", customer.unwrap_or_default()),
            ],
            next.as_ref(),
        ),
        error,
        unbillable,
        partial,
    })
}

#[cfg(test)]
mod tests {
    use askama::Template;

    use super::List;
    use crate::auth::Can;
    use crate::page::Page;

    fn list(next: Option<&str>, unbillable: bool, partial: bool) -> String {
        List {
            page: Page::new("Events", "events", String::new(), Can::default()),
            statuses: vec![],
            customer: String::new(),
            rows: vec![],
            next: next.map(str::to_owned),
            error: None,
            unbillable,
            partial,
        }
        .render()
        .unwrap()
    }

    #[test]
    fn an_empty_stretch_with_more_to_search_links_on_instead_of_saying_none_match() {
        let html = list(
            Some("/dashboard/events?status=late&cursor=abc"),
            false,
            false,
        );
        assert!(html.contains("None in this stretch"), "{html}");
        assert!(html.contains("Next page"), "{html}");
        assert!(!html.contains("No events match"));
    }

    #[test]
    fn an_overview_searched_in_part_does_not_claim_everything_was_billed() {
        let html = list(None, true, true);
        assert!(html.contains(r#"id="partial-search""#), "{html}");
        assert!(!html.contains("every event recorded so far was billed"));
        let whole = list(None, true, false);
        assert!(whole.contains("every event recorded so far was billed"));
        assert!(!whole.contains("partial-search"));
    }
}
