//! A plan's page: its terms and prices, and "Create contract".

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use billing::api_key::Scope;
use billing::money::Currency;
use billing::plan::{PriceKind, RateCard};

use crate::AppState;
use crate::auth::Signed;
use crate::page::{self, Page};

/// A rate card in words: `USD 0.08 per unit`, `graduated: up to 1000 at USD 0.10, then …`.
pub fn rate_text(rate: &RateCard, currency: Currency) -> String {
    let tiers = |tiers: &[billing::pricing::Tier]| {
        tiers
            .iter()
            .map(|t| {
                let bound = t
                    .up_to
                    .as_ref()
                    .map_or("above".to_owned(), |u| format!("up to {u}"));
                let flat = t
                    .flat_amount
                    .as_ref()
                    .map(|f| format!(" + {} flat", page::money(f.value(), currency)))
                    .unwrap_or_default();
                format!(
                    "{bound} at {}{flat}",
                    page::unit_price(t.unit_amount.value(), currency)
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    match rate {
        RateCard::PerUnit(a) => format!("{} per unit", page::unit_price(a.value(), currency)),
        RateCard::Dimensional { rates, fallback } => {
            let listed: Vec<String> = rates
                .iter()
                .map(|r| {
                    let dims: Vec<String> = r
                        .dimensions
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    format!(
                        "{}: {}",
                        dims.join(", "),
                        page::unit_price(r.unit_amount.value(), currency)
                    )
                })
                .collect();
            let fallback = fallback
                .as_ref()
                .map(|f| format!("; otherwise {}", page::unit_price(f.value(), currency)))
                .unwrap_or_else(|| "; no fallback".into());
            format!("per unit by dimension ({}){fallback}", listed.join("; "))
        }
        RateCard::Graduated(t) => format!("graduated: {}", tiers(t)),
        RateCard::Volume(t) => format!("volume: {}", tiers(t)),
        RateCard::Package { size, unit_amount } => format!(
            "{} per package of {size}",
            page::unit_price(unit_amount.value(), currency)
        ),
    }
}

/// A price row.
pub struct PriceRow {
    /// Its id (contracts override by it).
    pub id: String,
    /// Shown on invoice lines.
    pub description: String,
    /// Fixed fee or usage price.
    pub kind: &'static str,
    /// The meter, for usage.
    pub meter: String,
    /// The price in words.
    pub price: String,
}

#[derive(Template)]
#[template(path = "plan.html")]
struct Show {
    page: Page,
    id: String,
    currency: String,
    net_terms: String,
    interval: String,
    auto_pay: bool,
    grace: u16,
    prices: Vec<PriceRow>,
}

/// `GET /dashboard/plans/{id}`.
pub async fn show(
    State(state): State<AppState>,
    signed: Signed,
    Path(id): Path<String>,
) -> Response {
    let page = signed.page("Plan", "plans");
    if let Err(e) = signed.require(Scope::PricingRead) {
        return page::error(Some(page), e);
    }
    let plan = match state.billing.plan(&id).await {
        Ok(p) => p,
        Err(e) => return page::error(Some(page), e),
    };
    let prices = plan
        .prices
        .iter()
        .map(|p| match &p.kind {
            PriceKind::Flat { flat_amount } => PriceRow {
                id: p.id.to_string(),
                description: p.description.clone(),
                kind: "Fixed fee",
                meter: "—".into(),
                price: format!(
                    "{} per period",
                    page::money(flat_amount.value(), plan.currency)
                ),
            },
            PriceKind::Usage(u) => PriceRow {
                id: p.id.to_string(),
                description: p.description.clone(),
                kind: "Usage price",
                meter: u.meter_code.to_string(),
                price: rate_text(&u.rate, plan.currency),
            },
        })
        .collect();
    page::render(&Show {
        page: Page {
            title: plan.name.as_str().to_owned(),
            ..page
        },
        id: plan.id.to_string(),
        currency: plan.currency.code().to_owned(),
        net_terms: super::plans::net_terms(plan.net_terms),
        interval: super::plans::interval(&plan),
        auto_pay: plan.auto_pay,
        grace: plan.grace_period_days,
        prices,
    })
}
