//! API keys: the list (never a secret), create (the secret shown once), revoke. Only a key
//! with scope `*` manages keys, as in the API.

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use billing::api_key::{CreateApiKey, Scope};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::page::{self, FormState, Page};

use super::customers::is_form_error;
use super::{next_link, page_request, query};

/// Every scope a new key can get, with words.
const SCOPES: [(&str, &str); 10] = [
    ("*", "Everything, including API keys (*)"),
    ("customers:read", "Read customers"),
    ("customers:write", "Create and change customers"),
    ("pricing:read", "Read meters and plans"),
    ("pricing:write", "Create meters and plans"),
    ("contracts:read", "Read contracts"),
    ("contracts:write", "Create and cancel contracts"),
    ("invoices:read", "Read invoices"),
    ("usage:read", "Read usage events"),
    ("usage:write", "Send usage events"),
];

/// A row.
pub struct Row {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its scopes.
    pub scopes: String,
    /// When created.
    pub created: String,
    /// When revoked.
    pub revoked: Option<String>,
    /// Whether it is the key this session is signed in with.
    pub current: bool,
}

/// A scope checkbox.
pub struct ScopeBox {
    /// Wire name.
    pub value: &'static str,
    /// Words.
    pub label: &'static str,
    /// Element id.
    pub id: String,
    /// Ticked.
    pub checked: bool,
}

#[derive(Template)]
#[template(path = "api_keys.html")]
struct List {
    page: Page,
    rows: Vec<Row>,
    next: Option<String>,
    form: FormState,
    scopes: Vec<ScopeBox>,
    created: Option<(String, String)>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    cursor: Option<String>,
}

fn scope_boxes(ticked: &[String]) -> Vec<ScopeBox> {
    SCOPES
        .iter()
        .enumerate()
        .map(|(i, (value, label))| ScopeBox {
            value,
            label,
            id: format!("f-scope-{i}"),
            checked: ticked.iter().any(|t| t == value),
        })
        .collect()
}

async fn screen(
    state: &AppState,
    signed: &Signed,
    cursor: Option<&str>,
    form: FormState,
    ticked: &[String],
    created: Option<(String, String)>,
) -> Response {
    let page = signed.page("API keys", "api-keys");
    let found = match state.billing.keys().list(&page_request(cursor)).await {
        Ok(f) => f,
        Err(e) => return page::error(Some(page), e),
    };
    let status = if form.errors.is_empty() && form.general.is_none() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    page::render_with(
        status,
        &List {
            page,
            rows: found
                .items
                .iter()
                .map(|k| Row {
                    id: k.id.to_string(),
                    name: k
                        .name
                        .as_ref()
                        .map(|n| n.as_str().to_owned())
                        .unwrap_or_default(),
                    scopes: k.scopes.clone().into_iter_scopes().join(", "),
                    created: page::moment(k.created_at),
                    revoked: k.revoked_at.map(page::moment),
                    current: signed.principal.key_id.as_ref() == Some(&k.id),
                })
                .collect(),
            next: next_link("/dashboard/api-keys", &[], found.next.as_ref()),
            form,
            scopes: scope_boxes(ticked),
            created,
        },
    )
}

/// Scope names of a key, for showing.
trait ScopeNames {
    fn into_iter_scopes(self) -> Vec<String>;
}

impl ScopeNames for billing::api_key::Scopes {
    fn into_iter_scopes(self) -> Vec<String> {
        Vec::<Scope>::from(self)
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect()
    }
}

/// `GET /dashboard/api-keys`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(e) = signed.require(Scope::All) {
        return page::error(Some(signed.page("API keys", "api-keys")), e);
    }
    let q: ListQuery = query(raw.as_deref());
    screen(
        &state,
        &signed,
        q.cursor.as_deref(),
        FormState::default(),
        &[],
        None,
    )
    .await
}

/// `POST /dashboard/api-keys`: "Create API key"; the answer shows the secret once (a page
/// that is never cached, and not a redirect, so the secret is in no URL and no history).
pub async fn create(
    State(state): State<AppState>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    if let Err(e) = signed.require(Scope::All) {
        return page::error(Some(signed.page("API keys", "api-keys")), e);
    }
    let ticked: Vec<String> = form
        .pairs()
        .filter(|(k, _)| *k == "scopes")
        .map(|(_, v)| v.to_owned())
        .collect();
    let name = form.get("name").map(str::trim).filter(|n| !n.is_empty());
    let request = CreateApiKey {
        name: name.map(str::to_owned),
        scopes: Some(ticked.clone()),
    };
    match state.billing.create_api_key(request).await {
        Ok(created) => {
            let shown = (
                created
                    .key
                    .name
                    .as_ref()
                    .map_or_else(|| created.key.id.to_string(), |n| n.as_str().to_owned()),
                created.secret,
            );
            screen(
                &state,
                &signed,
                None,
                FormState::default(),
                &[],
                Some(shown),
            )
            .await
        }
        Err(e) if is_form_error(&e) => {
            let param = e
                .param
                .as_deref()
                .map(|p| if p.starts_with("scopes") { "scopes" } else { p });
            let mut failed = FormState {
                values: form.values(),
                ..FormState::default()
            };
            match param {
                Some(p @ ("scopes" | "name")) => {
                    failed.errors.insert(p.to_owned(), e.message.clone());
                }
                _ => failed.general = Some(e.message.clone()),
            }
            screen(&state, &signed, None, failed, &ticked, None).await
        }
        Err(e) => page::error(Some(signed.page("API keys", "api-keys")), e),
    }
}

/// `POST /dashboard/api-keys/{id}/revoke`: "Revoke"; the key stops working at once, and so do
/// the sessions signed in with it.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { signed, .. }: SignedForm,
) -> Response {
    if let Err(e) = signed.require(Scope::All) {
        return page::error(Some(signed.page("API keys", "api-keys")), e);
    }
    match state.billing.revoke_api_key(&id).await {
        Ok(_) => page::see_other("/dashboard/api-keys"),
        Err(e) => page::error(Some(signed.page("API keys", "api-keys")), e),
    }
}
