//! Meters (under Products): the list, "Create meter", and "Archive".

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use billing::aggregation::Aggregation;
use billing::api_key::Scope;
use billing::meter::{CreateMeter, FilterOperator, Meter, MeterStatus};
use serde::Deserialize;

use crate::AppState;
use crate::auth::{Signed, SignedForm};
use crate::form::Kind;
use crate::page::{self, FormState, Page};

use super::customers::is_form_error;
use super::{next_link, page_request, query};

/// The aggregation choices: (wire name, the guide's word).
pub const AGGREGATIONS: [(&str, &str); 5] = [
    ("COUNT", "Count"),
    ("SUM", "Sum"),
    ("MAX", "Max"),
    ("MIN", "Min"),
    ("UNIQUE_COUNT", "Unique count"),
];

/// The guide's word for an aggregation.
pub fn aggregation_label(a: Aggregation) -> &'static str {
    AGGREGATIONS
        .iter()
        .find(|(wire, _)| *wire == a.as_str())
        .map_or("", |(_, label)| label)
}

/// A row of the list.
pub struct Row {
    /// Its id.
    pub id: String,
    /// `API_CALL`
    pub code: String,
    /// `call_count`
    pub event_name: String,
    /// "API Calls"
    pub display_name: String,
    /// "Count"
    pub aggregation: &'static str,
    /// The aggregation key and group keys, in words.
    pub keys: String,
    /// Filters in words.
    pub filters: String,
    /// Whether archived.
    pub archived: bool,
}

impl Row {
    fn of(m: &Meter) -> Self {
        let mut keys = Vec::new();
        if let Some(k) = &m.aggregation_key {
            keys.push(format!("key {k}"));
        }
        if !m.group_keys.is_empty() {
            let groups: Vec<&str> = m.group_keys.iter().map(|g| g.as_str()).collect();
            keys.push(format!("grouped by {}", groups.join(", ")));
        }
        let filters: Vec<String> = m
            .property_filters
            .iter()
            .map(|f| {
                let op = match f.operator {
                    FilterOperator::In => "is one of",
                    FilterOperator::NotIn => "is not one of",
                };
                format!("{} {op} {}", f.property, f.values.join(", "))
            })
            .collect();
        Self {
            id: m.id.to_string(),
            code: m.code.to_string(),
            event_name: m.event_name.to_string(),
            display_name: m.display_name.as_str().to_owned(),
            aggregation: aggregation_label(m.aggregation_type),
            keys: if keys.is_empty() {
                "—".into()
            } else {
                keys.join("; ")
            },
            filters: if filters.is_empty() {
                "—".into()
            } else {
                filters.join("; ")
            },
            archived: m.status == MeterStatus::Archived,
        }
    }
}

#[derive(Template)]
#[template(path = "meters.html")]
struct List {
    page: Page,
    rows: Vec<Row>,
    next: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    cursor: Option<String>,
}

/// `GET /dashboard/meters`.
pub async fn list(
    State(state): State<AppState>,
    signed: Signed,
    RawQuery(raw): RawQuery,
) -> Response {
    let page = signed.page("Meters", "meters");
    if let Err(e) = signed.require(Scope::PricingRead) {
        return page::error(Some(page), e);
    }
    let q: ListQuery = query(raw.as_deref());
    match state
        .billing
        .meters(&page_request(q.cursor.as_deref()))
        .await
    {
        Ok(found) => page::render(&List {
            page,
            rows: found.items.iter().map(Row::of).collect(),
            next: next_link("/dashboard/meters", &[], found.next.as_ref()),
        }),
        Err(e) => page::error(Some(page), e),
    }
}

#[derive(Template)]
#[template(path = "meter_new.html")]
struct New {
    page: Page,
    form: FormState,
    aggregations: Vec<page::Choice>,
}

fn fields() -> Vec<String> {
    let mut fields: Vec<String> = [
        "code",
        "eventName",
        "displayName",
        "aggregationType",
        "aggregationKey",
        "groupKeys",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..2 {
        for f in ["property", "operator", "values"] {
            fields.push(format!("propertyFilters[{i}].{f}"));
        }
    }
    fields
}

fn kind(name: &str) -> Kind {
    match name {
        "groupKeys" | "propertyFilters.values" => Kind::List,
        _ => Kind::Text,
    }
}

/// `GET /dashboard/meters/new`.
pub async fn new(signed: Signed) -> Response {
    let page = signed.page("Create meter", "meters");
    if let Err(e) = signed.require(Scope::PricingWrite) {
        return page::error(Some(page), e);
    }
    page::render(&New {
        page,
        form: FormState::default(),
        aggregations: page::choices(AGGREGATIONS, "COUNT"),
    })
}

/// `POST /dashboard/meters`: "Create meter".
pub async fn create(
    State(state): State<AppState>,
    SignedForm { signed, form }: SignedForm,
) -> Response {
    let page = signed.page("Create meter", "meters");
    if let Err(e) = signed.require(Scope::PricingWrite) {
        return page::error(Some(page), e);
    }
    let created = match form.request::<CreateMeter>(kind) {
        Ok(request) => state.billing.create_meter(request).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(_) => page::see_other("/dashboard/meters"),
        Err(e) if is_form_error(&e) => page::render_with(
            page::status_of(&e),
            &New {
                page,
                aggregations: page::choices(
                    AGGREGATIONS,
                    form.get("aggregationType").unwrap_or_default(),
                ),
                form: FormState::failed(form.values(), &e, &fields()),
            },
        ),
        Err(e) => page::error(Some(page), e),
    }
}

/// `POST /dashboard/meters/{id}/archive`: "Archive".
pub async fn archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    SignedForm { signed, .. }: SignedForm,
) -> Response {
    let page = signed.page("Meters", "meters");
    if let Err(e) = signed.require(Scope::PricingWrite) {
        return page::error(Some(page), e);
    }
    match state.billing.archive_meter(&id).await {
        Ok(_) => page::see_other("/dashboard/meters"),
        Err(e) => page::error(Some(page), e),
    }
}
