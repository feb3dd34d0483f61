//! Home: the current month at a glance. Billed and collected so far, invoices sent, paid and
//! overdue, events received today (from the matcher's day tallies), unbillable events, and a
//! chart of the last six months, all from bounded reads ([`billing::Billing::overview`]), so
//! the screen costs the same however large the table.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use billing::api_key::Scope;
use billing::money::Currency;
use billing::use_cases::{CappedCount, Overview};

use crate::AppState;
use crate::auth::Signed;
use crate::chart::{self, Bar};
use crate::page::{self, Page};

/// A per-currency figure.
pub struct Amount {
    /// `USD 50.96`
    pub text: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct Home {
    page: Page,
    month: String,
    billed: Vec<Amount>,
    collected: Vec<Amount>,
    sent: i64,
    paid: i64,
    overdue: String,
    unbillable: Option<String>,
    today: Option<Today>,
    chart: Option<String>,
    chart_label: String,
}

/// Events received today (UTC).
struct Today {
    /// `12,345`
    events: String,
    /// How many of them bill nothing, when any do.
    unbillable: Option<String>,
}

fn capped(count: CappedCount) -> String {
    if count.more {
        format!("{}+", count.count)
    } else {
        count.count.to_string()
    }
}

fn amounts(map: &std::collections::BTreeMap<Currency, i64>) -> Vec<Amount> {
    map.iter()
        .filter(|(_, v)| **v != 0)
        .map(|(c, v)| Amount {
            text: page::minor(*v, *c),
        })
        .collect()
}

/// The chart's currency: the one with the most billed over the six months (USD when nothing
/// was billed yet).
fn main_currency(overview: &Overview) -> Currency {
    let mut sums: std::collections::BTreeMap<Currency, i64> = Default::default();
    for (_, totals) in &overview.history {
        for (c, v) in &totals.billed {
            *sums.entry(*c).or_default() += v;
        }
    }
    sums.into_iter()
        .max_by_key(|(_, v)| *v)
        .map_or(Currency::USD, |(c, _)| c)
}

/// `GET /dashboard`.
pub async fn show(State(state): State<AppState>, signed: Signed) -> Response {
    let page = signed.page("Home", "home");
    if let Err(e) = signed.require(Scope::InvoicesRead) {
        return page::error(Some(page), e);
    }
    let overview = match state.billing.overview().await {
        Ok(o) => o,
        Err(e) => return page::error(Some(page), e),
    };
    let currency = main_currency(&overview);
    let bars: Vec<Bar> = overview
        .history
        .iter()
        .map(|(m, t)| Bar {
            label: m.first_day().format("%b %Y").to_string(),
            value: t.billed.get(&currency).copied().unwrap_or(0) as f64
                / 10f64.powi(currency.minor_units() as i32),
        })
        .collect();
    let described: Vec<String> = overview
        .history
        .iter()
        .map(|(m, t)| {
            format!(
                "{}: {}",
                m.first_day().format("%B %Y"),
                page::minor(t.billed.get(&currency).copied().unwrap_or(0), currency)
            )
        })
        .collect();
    page::render(&Home {
        page,
        month: overview.month.first_day().format("%B %Y").to_string(),
        billed: amounts(&overview.this_month.billed),
        collected: amounts(&overview.this_month.collected),
        sent: overview.this_month.sent,
        paid: overview.this_month.paid,
        overdue: capped(overview.overdue),
        unbillable: signed.can.read_usage.then(|| capped(overview.unbillable)),
        today: signed.can.read_usage.then(|| Today {
            events: page::count(overview.today.events),
            unbillable: (overview.today.unbillable > 0)
                .then(|| page::count(overview.today.unbillable)),
        }),
        chart: chart::bars(&bars, currency.code(), 640, 220),
        chart_label: format!(
            "Billed per month in {}, last six months. {}",
            currency.code(),
            described.join("; ")
        ),
    })
}
