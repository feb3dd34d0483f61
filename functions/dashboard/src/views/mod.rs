//! One file per screen, each with its askama template in `templates/`. A screen's handler
//! checks the key's scope, calls the use cases, and renders; a form's handler builds the API's
//! request from the form ([`crate::form`]), calls the same use case the API calls, and either
//! redirects to the result (Post/Redirect/Get) or shows the form again with each error next
//! to its field.

pub mod api_keys;
pub mod contract;
pub mod contracts;
pub mod customer;
pub mod customers;
pub mod events;
pub mod home;
pub mod invoice;
pub mod invoices;
pub mod meters;
pub mod plan;
pub mod plan_form;
pub mod plans;
pub mod sign_in;

use serde::de::DeserializeOwned;

/// Rows per list page: a screenful, and a bounded read whatever the table holds.
pub const PAGE_SIZE: usize = 25;

/// A query string read leniently: a malformed one is treated as empty (a screen with no
/// filter), never an error page.
pub fn query<T: DeserializeOwned + Default>(raw: Option<&str>) -> T {
    raw.and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

/// The page request of a list screen: [`PAGE_SIZE`] rows after `cursor`; a cursor that is
/// not ours starts from the first page.
pub fn page_request(cursor: Option<&str>) -> billing::pagination::PageRequest {
    billing::pagination::PageRequest {
        limit: PAGE_SIZE,
        after: cursor
            .filter(|c| !c.is_empty())
            .and_then(|c| billing::pagination::Cursor::decode(c).ok()),
    }
}

/// `?cursor=…` for the next page of a list, keeping its other parameters.
pub fn next_link(
    base: &str,
    params: &[(&str, &str)],
    next: Option<&billing::pagination::Cursor>,
) -> Option<String> {
    let next = next?;
    let mut pairs: Vec<(&str, &str)> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    let cursor = next.encode();
    pairs.push(("cursor", &cursor));
    let query = serde_urlencoded::to_string(&pairs).ok()?;
    Some(format!("{base}?{query}"))
}

/// Names for ids shown in a table (customers', plans'), read concurrently, each id once. An id
/// whose read fails is shown as itself: a name is a nicety, not a reason to fail the screen.
pub async fn names<'a, F, Fut>(
    ids: impl IntoIterator<Item = &'a str>,
    read: F,
) -> std::collections::HashMap<String, String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = billing::Result<String>>,
{
    let unique: std::collections::BTreeSet<&str> = ids.into_iter().collect();
    let reads = unique.into_iter().map(|id| {
        let read = read(id.to_owned());
        async move { (id.to_owned(), read.await) }
    });
    futures_util::future::join_all(reads)
        .await
        .into_iter()
        .map(|(id, name)| {
            let name = name.unwrap_or_else(|_| id.clone());
            (id, name)
        })
        .collect()
}

/// The names of these customers.
pub async fn customer_names<'a>(
    state: &crate::AppState,
    ids: impl IntoIterator<Item = &'a str>,
) -> std::collections::HashMap<String, String> {
    names(ids, |id| async move {
        state
            .billing
            .customer(&id)
            .await
            .map(|c| c.name.as_str().to_owned())
    })
    .await
}

/// The names of these plans.
pub async fn plan_names<'a>(
    state: &crate::AppState,
    ids: impl IntoIterator<Item = &'a str>,
) -> std::collections::HashMap<String, String> {
    names(ids, |id| async move {
        state
            .billing
            .plan(&id)
            .await
            .map(|p| p.name.as_str().to_owned())
    })
    .await
}
