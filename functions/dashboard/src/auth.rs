//! Who is signed in, and the checks every request passes: [`Signed`] turns the session cookie
//! into a principal (re-reading the key, so a revoked key is out at once) or sends the browser
//! to the sign-in screen; [`SignedForm`] does the same for a POST and then checks its CSRF
//! token before the handler sees a single field.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use billing::api_key::{Principal, Scope};
use billing::{Error, ErrorKind};

use crate::AppState;
use crate::form::Form;
use crate::page::{self, Page};
use crate::session::{SESSION_COOKIE, Session, cookie_value};

/// What the signed-in key may do, for showing or hiding buttons (the handlers check again).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Can {
    /// customers:read
    pub read_customers: bool,
    /// customers:write
    pub write_customers: bool,
    /// pricing:read
    pub read_pricing: bool,
    /// pricing:write
    pub write_pricing: bool,
    /// contracts:read
    pub read_contracts: bool,
    /// contracts:write
    pub write_contracts: bool,
    /// invoices:read
    pub read_invoices: bool,
    /// usage:read
    pub read_usage: bool,
    /// `*`: API keys.
    pub manage_keys: bool,
}

impl Can {
    fn of(principal: &Principal) -> Self {
        let s = |scope| principal.scopes.allows(scope);
        Self {
            read_customers: s(Scope::CustomersRead) || s(Scope::CustomersWrite),
            write_customers: s(Scope::CustomersWrite),
            read_pricing: s(Scope::PricingRead) || s(Scope::PricingWrite),
            write_pricing: s(Scope::PricingWrite),
            read_contracts: s(Scope::ContractsRead) || s(Scope::ContractsWrite),
            write_contracts: s(Scope::ContractsWrite),
            read_invoices: s(Scope::InvoicesRead),
            read_usage: s(Scope::UsageRead),
            manage_keys: s(Scope::All),
        }
    }
}

/// A signed-in request.
pub struct Signed {
    /// The key's principal, read fresh.
    pub principal: Principal,
    /// The session.
    pub session: Session,
    /// The CSRF token the screen's forms carry.
    pub csrf: String,
    /// What the key may do.
    pub can: Can,
}

impl Signed {
    /// The layout's data for a screen of this session.
    pub fn page(&self, title: impl Into<String>, section: &'static str) -> Page {
        Page::new(title, section, self.csrf.clone(), self.can)
    }

    /// 403 unless the key carries `scope` (a write scope implies its read scope, as in the
    /// screens' buttons).
    pub fn require(&self, scope: Scope) -> Result<(), Error> {
        let implied = match scope {
            Scope::CustomersRead => Some(Scope::CustomersWrite),
            Scope::PricingRead => Some(Scope::PricingWrite),
            Scope::ContractsRead => Some(Scope::ContractsWrite),
            _ => None,
        };
        if implied.is_some_and(|s| self.principal.scopes.allows(s)) {
            return Ok(());
        }
        self.principal.require(scope)
    }
}

/// Back to the sign-in screen, forgetting a cookie that did not check out.
fn to_sign_in(state: &AppState, had_cookie: bool) -> Response {
    let mut response = Redirect::to("/dashboard/sign-in").into_response();
    if had_cookie && let Ok(value) = state.sessions.clear_cookie(SESSION_COOKIE).parse() {
        response.headers_mut().insert(SET_COOKIE, value);
    }
    response
}

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let cookie = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|h| cookie_value(h, SESSION_COOKIE))
            .map(str::to_owned);
        let Some(cookie) = cookie else {
            return Err(to_sign_in(state, false));
        };
        let Some(session) = state.sessions.read(&cookie, state.billing.now()) else {
            return Err(to_sign_in(state, true));
        };
        let principal = match state.billing.keys().resume(&session.handle).await {
            Ok(principal) => principal,
            Err(e) if e.kind == ErrorKind::Unauthenticated => return Err(to_sign_in(state, true)),
            Err(e) => return Err(page::error(None, e)),
        };
        Ok(Self {
            csrf: state.sessions.csrf(&session.cookie),
            can: Can::of(&principal),
            principal,
            session,
        })
    }
}

/// A signed-in POST whose CSRF token checked out, with its form.
pub struct SignedForm {
    /// Who sent it.
    pub signed: Signed,
    /// The fields.
    pub form: Form,
}

impl FromRequest<AppState> for SignedForm {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let signed = Signed::from_request_parts(&mut parts, state).await?;
        let request = Request::from_parts(parts, body);
        let bytes = Bytes::from_request(request, state).await.map_err(|_| {
            page::error(
                Some(signed.page("Form too large", "")),
                Error::new(
                    ErrorKind::PayloadTooLarge,
                    "payload_too_large",
                    "The form is too large.",
                ),
            )
        })?;
        let form =
            Form::parse(&bytes).map_err(|e| page::error(Some(signed.page("Error", "")), e))?;
        let token = form.get("_csrf").unwrap_or_default();
        if !state.sessions.check_csrf(&signed.session.cookie, token) {
            return Err(page::error(Some(signed.page("Form expired", "")), forged()));
        }
        Ok(Self { signed, form })
    }
}

/// The 403 of a form whose CSRF token is missing or not this session's.
pub fn forged() -> Error {
    Error::new(
        ErrorKind::Forbidden,
        "invalid_csrf_token",
        "This form was not sent from this dashboard session, or it has expired. Go back, \
         reload the page and try again.",
    )
}
