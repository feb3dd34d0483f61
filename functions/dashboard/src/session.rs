//! Sessions and CSRF tokens, stateless and signed.
//!
//! A session cookie is `<handle>.<expiry>.<nonce>.<tag>`: the key's [`KeyHandle`] (its
//! digest's lookup handle, or `bootstrap`; never the key), the expiry in Unix seconds, 16
//! random bytes, and an HMAC-SHA256 tag over them with `DASHBOARD_SESSION_KEY`. Every request
//! re-reads the key behind the handle, so a revoked key ends its sessions at once and scopes
//! are always current. The cookie is HttpOnly, SameSite=Strict, scoped to `/dashboard`, and
//! Secure except on the local http stack.
//!
//! Every form carries a CSRF token: an HMAC of the session cookie under another context, so it
//! is bound to that session and useless with any other. Before sign-in, a short-lived signed
//! "pre-session" cookie plays the session's part, so the sign-in form is protected too (no
//! one can sign a victim into the attacker's key).

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use billing::use_cases::KeyHandle;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "dashboard_session";
/// The sign-in form's pre-session cookie.
pub const SIGN_IN_COOKIE: &str = "dashboard_sign_in";
/// How long a session lasts: a working day. Signing in again is cheap; a stolen cookie is
/// worth less the sooner it ends.
pub const SESSION_LIFETIME: TimeDelta = TimeDelta::hours(8);
/// How long the sign-in form may stay open.
const SIGN_IN_LIFETIME: TimeDelta = TimeDelta::hours(1);
/// The path every cookie is scoped to.
pub const COOKIE_PATH: &str = "/dashboard";

const SESSION_CONTEXT: &[u8] = b"dashboard.session.v1.";
const SIGN_IN_CONTEXT: &[u8] = b"dashboard.sign-in.v1.";
const CSRF_CONTEXT: &[u8] = b"dashboard.csrf.v1.";
/// Cookies longer than this are not ours; refused before any work.
const MAX_COOKIE_CHARS: usize = 256;

/// A verified session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// How to find the key again.
    pub handle: KeyHandle,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// The cookie value, to which its CSRF token is bound.
    pub cookie: String,
}

/// Signs and checks sessions, pre-sessions and CSRF tokens.
#[derive(Clone)]
pub struct Sessions {
    mac: Hmac<Sha256>,
    secure: bool,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("secure", &self.secure)
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// A signer keyed by `secret` (at least 32 bytes, checked by the configuration).
    pub fn new(secret: &[u8], secure: bool) -> Self {
        Self {
            mac: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"),
            secure,
        }
    }

    fn tag(&self, context: &[u8], payload: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(context);
        mac.update(payload.as_bytes());
        mac
    }

    fn sign(&self, context: &[u8], payload: &str) -> String {
        let tag = hex::encode(self.tag(context, payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Checks a signed value's tag (in constant time) and expiry; the payload's fields.
    fn verify<'a>(
        &self,
        context: &[u8],
        value: &'a str,
        now: DateTime<Utc>,
    ) -> Option<Vec<&'a str>> {
        if value.len() > MAX_COOKIE_CHARS {
            return None;
        }
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        self.tag(context, payload).verify_slice(&tag).ok()?;
        let fields: Vec<&str> = payload.split('.').collect();
        let expiry: i64 = fields.get(fields.len().checked_sub(2)?)?.parse().ok()?;
        (now.timestamp() < expiry).then_some(fields)
    }

    /// A new session's cookie value for the key behind `handle`.
    pub fn open(&self, handle: &KeyHandle, now: DateTime<Utc>) -> String {
        let expires = (now + SESSION_LIFETIME).timestamp();
        self.sign(
            SESSION_CONTEXT,
            &format!("{}.{expires}.{}", handle.encode(), nonce()),
        )
    }

    /// The session a cookie value holds, if it is ours, untampered and not expired.
    pub fn read(&self, cookie: &str, now: DateTime<Utc>) -> Option<Session> {
        let fields = self.verify(SESSION_CONTEXT, cookie, now)?;
        let [handle, expires, _nonce] = fields.as_slice() else {
            return None;
        };
        Some(Session {
            handle: KeyHandle::decode(handle)?,
            expires_at: DateTime::from_timestamp(expires.parse().ok()?, 0)?,
            cookie: cookie.to_owned(),
        })
    }

    /// A new pre-session cookie value for the sign-in form.
    pub fn open_sign_in(&self, now: DateTime<Utc>) -> String {
        let expires = (now + SIGN_IN_LIFETIME).timestamp();
        self.sign(SIGN_IN_CONTEXT, &format!("{expires}.{}", nonce()))
    }

    /// Whether a pre-session cookie value is ours and current.
    pub fn check_sign_in(&self, cookie: &str, now: DateTime<Utc>) -> bool {
        self.verify(SIGN_IN_CONTEXT, cookie, now)
            .is_some_and(|fields| fields.len() == 2)
    }

    /// The CSRF token of the forms shown under a (pre-)session cookie.
    pub fn csrf(&self, cookie: &str) -> String {
        hex::encode(self.tag(CSRF_CONTEXT, cookie).finalize().into_bytes())
    }

    /// Whether `token` is the CSRF token of `cookie` (constant time).
    pub fn check_csrf(&self, cookie: &str, token: &str) -> bool {
        hex::decode(token)
            .ok()
            .is_some_and(|token| self.tag(CSRF_CONTEXT, cookie).verify_slice(&token).is_ok())
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Strict, under `/dashboard`, Secure unless the
    /// dashboard is served over plain http (the local stack).
    pub fn set_cookie(&self, name: &str, value: &str, max_age: TimeDelta) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{name}={value}; Path={COOKIE_PATH}; Max-Age={}; HttpOnly; SameSite=Strict{secure}",
            max_age.num_seconds().max(0)
        )
    }

    /// A `Set-Cookie` value that deletes the cookie.
    pub fn clear_cookie(&self, name: &str) -> String {
        self.set_cookie(name, "", TimeDelta::zero())
    }

    /// The pre-session cookie's lifetime, for its `Max-Age`.
    pub fn sign_in_lifetime() -> TimeDelta {
        SIGN_IN_LIFETIME
    }
}

/// 16 random bytes in hex: makes every session's cookie, and so its CSRF token, unique.
fn nonce() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T10:00:00Z".parse().unwrap()
    }

    fn sessions() -> Sessions {
        Sessions::new(&[7u8; 32], true)
    }

    #[test]
    fn a_session_reads_back_until_it_expires_and_carries_no_key() {
        let s = sessions();
        let handle = KeyHandle::Stored("0123456789abcdef".into());
        let cookie = s.open(&handle, now());
        assert!(!cookie.contains("sk_"));
        let session = s.read(&cookie, now()).unwrap();
        assert_eq!(session.handle, handle);
        assert_eq!(session.expires_at, now() + SESSION_LIFETIME);
        assert!(s.read(&cookie, now() + SESSION_LIFETIME).is_none());
        assert!(
            s.read(&s.open(&KeyHandle::Bootstrap, now()), now())
                .is_some()
        );
    }

    #[test]
    fn tampered_or_foreign_cookies_are_refused() {
        let s = sessions();
        let cookie = s.open(&KeyHandle::Stored("0123456789abcdef".into()), now());
        let tampered = cookie.replacen("0123456789abcdef", "fedcba9876543210", 1);
        assert!(s.read(&tampered, now()).is_none());
        let later = cookie.replacen(
            &(now() + SESSION_LIFETIME).timestamp().to_string(),
            "9999999999",
            1,
        );
        assert!(s.read(&later, now()).is_none());
        let other = Sessions::new(&[8u8; 32], true);
        assert!(other.read(&cookie, now()).is_none());
        for junk in ["", ".", "a.b.c.d", "bootstrap.1.2.zz", &"x".repeat(300)] {
            assert!(s.read(junk, now()).is_none(), "{junk}");
        }
        // A pre-session is not a session, nor the reverse.
        let sign_in = s.open_sign_in(now());
        assert!(s.read(&sign_in, now()).is_none());
        assert!(s.check_sign_in(&sign_in, now()));
        assert!(!s.check_sign_in(&cookie, now()));
    }

    #[test]
    fn csrf_tokens_are_bound_to_their_session() {
        let s = sessions();
        let a = s.open(&KeyHandle::Bootstrap, now());
        let b = s.open(&KeyHandle::Bootstrap, now());
        assert!(s.check_csrf(&a, &s.csrf(&a)));
        assert!(!s.check_csrf(&b, &s.csrf(&a)));
        assert!(!s.check_csrf(&a, "00"));
        assert!(!s.check_csrf(&a, "not hex"));
    }

    #[test]
    fn cookies_are_strict_http_only_and_secure_unless_local() {
        let cookie = sessions().set_cookie(SESSION_COOKIE, "v", SESSION_LIFETIME);
        assert_eq!(
            cookie,
            "dashboard_session=v; Path=/dashboard; Max-Age=28800; HttpOnly; SameSite=Strict; Secure"
        );
        let local =
            Sessions::new(&[7u8; 32], false).set_cookie(SESSION_COOKIE, "v", SESSION_LIFETIME);
        assert!(!local.contains("Secure"));
        assert_eq!(
            cookie_value("a=1; dashboard_session=xyz", SESSION_COOKIE),
            Some("xyz")
        );
    }
}
