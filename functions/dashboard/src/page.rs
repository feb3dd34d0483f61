//! What every screen shares: the layout's data ([`Page`]), turning a template or a domain
//! error into an answer, and the words and numbers people read (money with its currency, dates,
//! statuses in the guide's words).

use std::collections::BTreeMap;

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use billing::invoice::InvoiceStatus;
use billing::money::Currency;
use billing::{Error, ErrorKind};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use crate::auth::Can;

/// The layout's data: title, which navigation entry is current, the CSRF token of the forms,
/// what the key may do, and the stylesheet's hashed path.
#[derive(Debug, Clone)]
pub struct Page {
    /// The document title and heading.
    pub title: String,
    /// The navigation entry to mark current (`customers`, `meters`, …; empty for none).
    pub section: &'static str,
    /// The CSRF token every form carries (empty when signed out).
    pub csrf: String,
    /// What the signed-in key may do.
    pub can: Can,
    /// Whether someone is signed in (the navigation and "Sign out" show).
    pub signed_in: bool,
    /// The stylesheet's path.
    pub css: &'static str,
}

impl Page {
    /// A signed-in screen's layout data.
    pub fn new(title: impl Into<String>, section: &'static str, csrf: String, can: Can) -> Self {
        Self {
            title: title.into(),
            section,
            csrf,
            can,
            signed_in: true,
            css: crate::assets::stylesheet_path(),
        }
    }

    /// A screen for someone not signed in (sign-in, errors before sign-in).
    pub fn signed_out(title: impl Into<String>) -> Self {
        Self {
            signed_in: false,
            ..Self::new(title, "", String::new(), Can::default())
        }
    }

    /// Whether `section` is the current one, for `aria-current`.
    pub fn current(&self, section: &str) -> bool {
        self.section == section
    }
}

/// Renders a template as a 200 answer.
pub fn render(template: &impl Template) -> Response {
    render_with(StatusCode::OK, template)
}

/// Renders a template with a status (a form shown again with its errors: 400/409/422).
pub fn render_with(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "This page could not be shown.",
            )
                .into_response()
        }
    }
}

/// Post/Redirect/Get: after a change, the browser loads the changed thing's page.
pub fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

/// The status an error kind answers with (the API's mapping).
pub fn status_of(error: &Error) -> StatusCode {
    billing_http::error::status_and_type(error.kind).0
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorScreen {
    page: Page,
    heading: String,
    message: String,
}

/// A domain error as a screen: its status, a heading in words and the message (never the
/// details of an internal error, which go to the log).
pub fn error(page: Option<Page>, error: Error) -> Response {
    let heading = match error.kind {
        ErrorKind::NotFound => "Not found",
        ErrorKind::Forbidden => "Not allowed",
        ErrorKind::Unauthenticated => "Please sign in",
        ErrorKind::Conflict => "Conflict",
        ErrorKind::Unavailable => "Temporarily unavailable",
        ErrorKind::Internal => "Something went wrong",
        _ => "That did not work",
    };
    let message = if error.kind == ErrorKind::Internal {
        tracing::error!(code = %error.code, message = %error.message, "internal error");
        "An internal error occurred and has been logged. Please try again later.".to_owned()
    } else {
        error.message.clone()
    };
    let page = page.unwrap_or_else(|| Page::signed_out(heading));
    render_with(
        status_of(&error),
        &ErrorScreen {
            page: Page {
                title: heading.to_owned(),
                ..page
            },
            heading: heading.to_owned(),
            message,
        },
    )
}

/// Paths no screen serves.
pub async fn not_found() -> Response {
    error(
        None,
        Error::new(
            ErrorKind::NotFound,
            "route_not_found",
            "There is no such page in the dashboard.",
        ),
    )
}

/// A path that exists, with a method it does not take.
pub async fn method_not_allowed() -> Response {
    error(
        None,
        Error::new(
            ErrorKind::MethodNotAllowed,
            "method_not_allowed",
            "This page does not accept that kind of request.",
        ),
    )
}

/// A form's state when it is shown again: the values typed, and each field's error.
#[derive(Debug, Clone, Default)]
pub struct FormState {
    /// Field name → value as typed.
    pub values: BTreeMap<String, String>,
    /// Field name → the error to show next to it.
    pub errors: BTreeMap<String, String>,
    /// An error that names no field of the form, shown at its top.
    pub general: Option<String>,
}

impl FormState {
    /// The value typed into `name`, or empty.
    pub fn value(&self, name: &str) -> &str {
        self.values.get(name).map_or("", String::as_str)
    }

    /// Whether checkbox `name` was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// The error of field `name`, if any.
    pub fn error(&self, name: &str) -> Option<&str> {
        self.errors.get(name).map(String::as_str)
    }

    /// The form shown again after `error`: the error goes next to the field its `param`
    /// names when the form has that field (`fields`), else on top.
    pub fn failed(values: BTreeMap<String, String>, error: &Error, fields: &[String]) -> Self {
        let mut state = Self {
            values,
            ..Self::default()
        };
        let message = for_people(&error.message);
        match error.param.as_deref() {
            Some(param) if fields.iter().any(|f| f == param) => {
                state.errors.insert(param.to_owned(), message);
            }
            Some(param) => state.general = Some(format!("{param}: {message}")),
            None => state.general = Some(message),
        }
        state
    }
}

/// A decoder's message as people read it: without the JSON position the form's reader cannot
/// see (`… at line 1 column 228`) and without a leading error code (`invalid_amount: …`).
pub fn for_people(message: &str) -> String {
    let mut text = message;
    if let Some(at) = text.rfind(" at line ")
        && text[at + 9..]
            .split(" column ")
            .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        text = &text[..at];
    }
    if let Some((code, rest)) = text.split_once(": ")
        && !code.is_empty()
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        text = rest;
    }
    let mut out = text.to_owned();
    if let Some(first) = out.get(..1) {
        out.replace_range(..1, &first.to_uppercase());
    }
    out
}

/// Money as people read it: the currency code, then the amount with exactly the currency's
/// minor units and thousands grouped (`USD 50.96`, `JPY 1,200`).
pub fn money(amount: Decimal, currency: Currency) -> String {
    group_thousands(&billing_http::portal::format_amount(amount, currency))
}

/// Money kept in minor units (running totals).
pub fn minor(amount: i64, currency: Currency) -> String {
    money(Decimal::new(amount, currency.minor_units()), currency)
}

/// A unit price: never rounded (sub-cent prices are real), thousands grouped.
pub fn unit_price(amount: Decimal, currency: Currency) -> String {
    group_thousands(&billing_http::portal::format_unit_price(amount, currency))
}

/// Inserts `,` between groups of three digits of the integer part of `CODE 1234.56`.
fn group_thousands(text: &str) -> String {
    let Some((code, number)) = text.split_once(' ') else {
        return text.to_owned();
    };
    let (sign, digits) = number
        .strip_prefix('-')
        .map_or(("", number), |rest| ("-", rest));
    let (int, frac) = digits
        .split_once('.')
        .map_or((digits, None), |(i, f)| (i, Some(f)));
    let grouped = grouped(int);
    match frac {
        Some(frac) => format!("{code} {sign}{grouped}.{frac}"),
        None => format!("{code} {sign}{grouped}"),
    }
}

/// A count as people read it: `12,345`.
pub fn count(n: u64) -> String {
    grouped(&n.to_string())
}

/// `,` between groups of three of a run of digits.
fn grouped(digits: &str) -> String {
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    grouped
}

/// A date for people: `30 Nov 2026`.
pub fn date(date: NaiveDate) -> String {
    date.format("%-d %b %Y").to_string()
}

/// A moment for people, in UTC: `30 Nov 2026, 10:04 UTC`.
pub fn moment(at: DateTime<Utc>) -> String {
    at.format("%-d %b %Y, %H:%M UTC").to_string()
}

/// An invoice status in the guide's words.
pub fn status_label(status: InvoiceStatus) -> &'static str {
    match status {
        InvoiceStatus::Drafted => "Drafted",
        InvoiceStatus::InProgress => "In Progress",
        InvoiceStatus::Sent => "Sent",
        InvoiceStatus::Paid => "Paid",
        InvoiceStatus::Void => "Void",
        InvoiceStatus::Refunded => "Refunded",
    }
}

/// The badge class of a status (colour is never the only signal: the word is always shown).
pub fn status_class(status: InvoiceStatus) -> &'static str {
    match status {
        InvoiceStatus::Drafted | InvoiceStatus::InProgress => "badge badge-open",
        InvoiceStatus::Sent => "badge badge-sent",
        InvoiceStatus::Paid => "badge badge-paid",
        InvoiceStatus::Void | InvoiceStatus::Refunded => "badge badge-closed",
    }
}

/// A half-open period shown with its last day included: `1 Nov 2026 – 30 Nov 2026`.
pub fn period(period: billing::period::Period) -> String {
    let last = period
        .end
        .pred_opt()
        .filter(|d| *d >= period.start)
        .unwrap_or(period.start);
    format!("{} – {}", date(period.start), date(last))
}

/// A link to a customer's Stripe dashboard page.
pub fn stripe_link(customer: &str) -> String {
    format!("https://dashboard.stripe.com/customers/{customer}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn decoder_messages_read_as_sentences() {
        assert_eq!(
            for_people("invalid_amount: amount 'abc' must be a plain decimal at line 1 column 228"),
            "Amount 'abc' must be a plain decimal"
        );
        assert_eq!(for_people("'x' is not valid"), "'x' is not valid");
        assert_eq!(for_people("at line 5"), "At line 5");
    }

    #[test]
    fn money_shows_its_currency_minor_units_and_groups() {
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(money(dec("50.96"), Currency::USD), "USD 50.96");
        assert_eq!(money(dec("0.7"), Currency::USD), "USD 0.70");
        assert_eq!(money(dec("1200"), jpy), "JPY 1,200");
        assert_eq!(money(dec("1234567.891"), Currency::USD), "USD 1,234,567.89");
        assert_eq!(money(dec("-1234"), Currency::USD), "USD -1,234.00");
        assert_eq!(minor(5096, Currency::USD), "USD 50.96");
        assert_eq!(minor(1200, jpy), "JPY 1,200");
        assert_eq!(unit_price(dec("0.0001"), Currency::USD), "USD 0.0001");
    }

    #[test]
    fn counts_group_thousands() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }
}

/// One option of a `<select>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The value sent.
    pub value: String,
    /// The words shown.
    pub label: String,
    /// Whether it is the current choice.
    pub selected: bool,
}

/// The options of a select whose current value is `current` (the first when none matches).
pub fn choices<'a>(
    options: impl IntoIterator<Item = (&'a str, &'a str)>,
    current: &str,
) -> Vec<Choice> {
    options
        .into_iter()
        .map(|(value, label)| Choice {
            value: value.to_owned(),
            label: label.to_owned(),
            selected: value == current,
        })
        .collect()
}
