//! Sign in with an API key, sign out. The key is checked once, then forgotten: the session
//! cookie carries only its lookup handle ([`crate::session`]).

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::auth::{SignedForm, forged};
use crate::form::Form;
use crate::page::{self, Page};
use crate::session::{SESSION_COOKIE, SESSION_LIFETIME, SIGN_IN_COOKIE, Sessions, cookie_value};

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignIn {
    page: Page,
    csrf: String,
    error: Option<String>,
}

/// The form, with a fresh pre-session cookie its CSRF token is bound to.
fn form(state: &AppState, status: StatusCode, error: Option<String>) -> Response {
    let cookie = state.sessions.open_sign_in(state.billing.now());
    let mut response = page::render_with(
        status,
        &SignIn {
            page: Page::signed_out("Sign in"),
            csrf: state.sessions.csrf(&cookie),
            error,
        },
    );
    let set = state
        .sessions
        .set_cookie(SIGN_IN_COOKIE, &cookie, Sessions::sign_in_lifetime());
    if let Ok(value) = set.parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

/// `GET /dashboard/sign-in`.
pub async fn show(State(state): State<AppState>) -> Response {
    form(&state, StatusCode::OK, None)
}

/// `POST /dashboard/sign-in`: checks the form's CSRF token against the pre-session, then the
/// key; on success opens a session and goes Home.
pub async fn submit(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let now = state.billing.now();
    let pre = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| cookie_value(h, SIGN_IN_COOKIE))
        .filter(|c| state.sessions.check_sign_in(c, now));
    let Ok(fields) = Form::parse(&body) else {
        return form(
            &state,
            StatusCode::BAD_REQUEST,
            Some("The form could not be read.".into()),
        );
    };
    let token = fields.get("_csrf").unwrap_or_default();
    if !pre.is_some_and(|c| state.sessions.check_csrf(c, token)) {
        return page::error(None, forged());
    }
    let key = fields.get("apiKey").unwrap_or_default().trim();
    if key.is_empty() {
        return form(
            &state,
            StatusCode::BAD_REQUEST,
            Some("Enter your API key.".into()),
        );
    }
    match state.billing.keys().sign_in(key).await {
        Ok((_, handle)) => {
            let session = state.sessions.open(&handle, now);
            let mut response = page::see_other("/dashboard");
            let cookies = [
                state
                    .sessions
                    .set_cookie(SESSION_COOKIE, &session, SESSION_LIFETIME),
                state.sessions.clear_cookie(SIGN_IN_COOKIE),
            ];
            for cookie in cookies {
                if let Ok(value) = cookie.parse() {
                    response.headers_mut().append(SET_COOKIE, value);
                }
            }
            response
        }
        Err(e) if e.kind == billing::ErrorKind::Unauthenticated => form(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("This API key is not valid or has been revoked.".into()),
        ),
        Err(e) => page::error(None, e),
    }
}

/// `POST /dashboard/sign-out`: forgets the session cookie.
pub async fn sign_out(State(state): State<AppState>, _form: SignedForm) -> Response {
    let mut response = page::see_other("/dashboard/sign-in");
    if let Ok(value) = state.sessions.clear_cookie(SESSION_COOKIE).parse() {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response.into_response()
}
