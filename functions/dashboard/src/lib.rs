//! The dashboard: server-rendered screens at `/dashboard` for the people who run billing day
//! to day, over the same use cases as the API ([`Billing`]); it never takes another path to
//! the data. Served by its own Lambda behind the same HTTP API, and locally by the dev server
//! through the same API Gateway conversion.
//!
//! Rooms: [`session`] (signed cookies and CSRF tokens), [`auth`] (the extractors that turn a
//! cookie into a principal and check every form), [`form`] (forms named like the API's JSON),
//! [`page`] (the layout, answers and formatting), [`chart`] (SVG charts drawn on the server),
//! [`assets`] (the stylesheet under a content-hashed path) and [`views`], one file per screen
//! with its askama template in `templates/`. No JavaScript: every screen is HTML and CSS, so
//! the Content-Security-Policy allows no script at all.

pub mod assets;
pub mod auth;
pub mod chart;
pub mod form;
pub mod page;
pub mod session;
pub mod views;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use billing::Billing;
use billing_startup::{Config, SessionSecret};

use session::Sessions;

/// Where the dashboard is served.
pub const BASE: &str = "/dashboard";

/// The largest form the dashboard accepts (a plan with twenty prices is far below it).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The strictest policy the screens allow: nothing but our own stylesheet and inline SVG
/// (charts), forms only to ourselves, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
    img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the dashboard needs beyond the use cases.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Signs sessions and CSRF tokens.
    pub sessions: Sessions,
}

impl Settings {
    /// From the configuration: `DASHBOARD_SESSION_KEY` is required (without it no one could
    /// sign in), and cookies are Secure unless `PUBLIC_BASE_URL` is plain http.
    pub fn from_config(config: &Config) -> billing::Result<Self> {
        let secret = config.dashboard_session_key.as_ref().ok_or_else(|| {
            billing::Error::internal(
                "DASHBOARD_SESSION_KEY: is not set (openssl rand -hex 32; see template.yaml)",
            )
        })?;
        Ok(Self::new(secret, config.secure_cookies))
    }

    /// From a secret and the cookie policy.
    pub fn new(secret: &SessionSecret, secure_cookies: bool) -> Self {
        Self {
            sessions: Sessions::new(secret.expose(), secure_cookies),
        }
    }
}

/// What every handler gets.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub billing: Billing,
    /// Sessions and CSRF.
    pub sessions: Arc<Sessions>,
}

/// Every screen, under [`BASE`].
pub fn app(billing: Billing, settings: Settings) -> Router {
    let state = AppState {
        billing,
        sessions: Arc::new(settings.sessions),
    };
    use views::*;
    Router::new()
        .route(BASE, get(home::show))
        .route("/dashboard/", get(home::show))
        .route(
            "/dashboard/sign-in",
            get(sign_in::show).post(sign_in::submit),
        )
        .route("/dashboard/sign-out", post(sign_in::sign_out))
        .route(
            "/dashboard/customers",
            get(customers::list).post(customers::create),
        )
        .route("/dashboard/customers/new", get(customers::new))
        .route("/dashboard/customers/{id}", get(customer::show))
        .route(
            "/dashboard/customers/{id}/auto-pay",
            post(customer::auto_pay),
        )
        .route("/dashboard/meters", get(meters::list).post(meters::create))
        .route("/dashboard/meters/new", get(meters::new))
        .route("/dashboard/meters/{id}/archive", post(meters::archive))
        .route("/dashboard/plans", get(plans::list).post(plans::create))
        .route("/dashboard/plans/new", get(plans::new))
        .route("/dashboard/plans/{id}", get(plan::show))
        .route(
            "/dashboard/contracts",
            get(contracts::list).post(contracts::create),
        )
        .route("/dashboard/contracts/new", get(contracts::new))
        .route("/dashboard/contracts/{id}", get(contract::show))
        .route(
            "/dashboard/contracts/{id}/cancel",
            get(contract::confirm_cancel).post(contract::cancel),
        )
        .route("/dashboard/invoices", get(invoices::list))
        .route("/dashboard/invoices/{id}", get(invoice::show))
        .route("/dashboard/events", get(events::list))
        .route(
            "/dashboard/api-keys",
            get(api_keys::list).post(api_keys::create),
        )
        .route("/dashboard/api-keys/{id}/revoke", post(api_keys::revoke))
        .route("/dashboard/assets/{file}", get(assets::serve))
        .route_layer(axum::middleware::from_fn(billing_http::trace::request_span))
        .fallback(page::not_found)
        .method_not_allowed_fallback(page::method_not_allowed)
        .layer(axum::middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .with_state(state)
}

/// Headers on every answer: the Content-Security-Policy, no sniffing, no referrer beyond our
/// origin, never framed, and no caching of anything but the hashed assets. `Server-Timing`
/// says how long the function took (reads included), which the benchmark reports.
async fn security_headers(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={took:.2}")) {
        headers.insert(HeaderName::from_static("server-timing"), value);
    }
    let fixed = [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
