//! The customer-facing payment portal, pure part: signed payment links. Every sent invoice
//! carries a `paymentLink`, `{base}/pay/{token}`; the portal use cases
//! ([`crate::use_cases::PortalOutcome`]) verify the token and load the invoice, and the HTTP
//! edge (crate `billing-http`) renders the page. Nothing here does I/O.
//!
//! # Token format
//!
//! ```text
//! token   = payload "." tag
//! payload = base64url_nopad(invoice_id "|" expires_at_unix_seconds)   e.g. "inv_…|1767225600"
//! tag     = base64url_nopad(HMAC-SHA256(key, "billing.portal.v1." || payload))
//! ```
//!
//! The tag covers the *encoded* payload, the exact characters in the URL, so a token has one
//! valid spelling and nothing is decoded before the tag is checked; the context prefix keeps a
//! tag from being valid for any other use of the same key. Tokens are unguessable because the
//! tag is: the payload is readable by anyone holding the link (it only names the invoice and
//! the expiry), but cannot be changed without the key.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{Error, Result};
use crate::ids::InvoiceId;
use crate::invoice::InvoiceStatus;
use crate::ports::PaymentLinks;

/// How long a payment link works: long enough for slow accounts-payable cycles, short enough
/// that an old forwarded email stops opening the invoice.
pub const LINK_LIFETIME: TimeDelta = TimeDelta::days(90);

/// The shortest accepted key: HMAC-SHA256 is only as strong as its key, and 256 bits is its
/// full strength.
pub const MIN_KEY_BYTES: usize = 32;

/// Longest token [`PortalKey::verify`] looks at; real tokens are about 110 characters, so
/// anything longer is refused before any decoding work.
const MAX_TOKEN_CHARS: usize = 512;

/// Binds tags to this use and format version (see the module documentation).
const TAG_CONTEXT: &[u8] = b"billing.portal.v1.";

/// The secret that signs payment links. Kept as a keyed MAC ready to clone, never printed.
#[derive(Clone)]
pub struct PortalKey {
    mac: Hmac<Sha256>,
}

impl PortalKey {
    /// Accepts a raw secret of at least [`MIN_KEY_BYTES`] bytes.
    pub fn from_bytes(secret: &[u8]) -> Result<Self> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(Error::internal(format!(
                "the portal signing key must be at least {MIN_KEY_BYTES} bytes \
                 ({} hex characters)",
                MIN_KEY_BYTES * 2
            )));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| Error::internal("HMAC-SHA256 refused the portal signing key"))?;
        Ok(Self { mac })
    }

    /// Accepts the secret in hex, as configuration holds it (surrounding whitespace, such as a
    /// trailing newline from a secrets file, is ignored). The error never echoes the value.
    pub fn from_hex(raw: &str) -> Result<Self> {
        let secret = hex::decode(raw.trim()).map_err(|_| {
            Error::internal(format!(
                "the portal signing key must be hex, at least {} characters",
                MIN_KEY_BYTES * 2
            ))
        })?;
        Self::from_bytes(&secret)
    }

    /// A fresh random key, for local development and tests where no key is configured (links
    /// then stop working at restart, which is fine there).
    pub fn generate() -> Result<Self> {
        let mut secret = [0u8; MIN_KEY_BYTES];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::internal(format!("no randomness for a portal key: {e}")))?;
        Self::from_bytes(&secret)
    }

    /// The token for `token`'s invoice and expiry (format in the module documentation). The
    /// expiry is kept to whole seconds, rounded down.
    pub fn sign(&self, token: &PaymentToken) -> String {
        let payload = URL_SAFE_NO_PAD.encode(format!(
            "{}|{}",
            token.invoice_id,
            token.expires_at.timestamp()
        ));
        let tag = URL_SAFE_NO_PAD.encode(self.tag_for(&payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// Checks a token from a URL: its tag first, in constant time (anything malformed or
    /// tampered with is [`PortalError::Invalid`], saying nothing about why), then its expiry,
    /// so [`PortalError::Expired`] only ever names an invoice we really linked to.
    pub fn verify(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> std::result::Result<PaymentToken, PortalError> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(PortalError::Invalid);
        }
        let (payload, tag) = token.split_once('.').ok_or(PortalError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| PortalError::Invalid)?;
        // `verify_slice` compares in constant time and refuses a tag of the wrong length.
        self.tag_for(payload)
            .verify_slice(&tag)
            .map_err(|_| PortalError::Invalid)?;
        let token = PaymentToken::decode_payload(payload).ok_or(PortalError::Invalid)?;
        if now >= token.expires_at {
            return Err(PortalError::Expired {
                invoice_id: token.invoice_id,
            });
        }
        Ok(token)
    }

    /// The MAC over the context and an encoded payload, ready to finalize or verify.
    fn tag_for(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(TAG_CONTEXT);
        mac.update(payload.as_bytes());
        mac
    }
}

impl fmt::Debug for PortalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortalKey(<redacted>)")
    }
}

/// What a payment link grants: viewing and paying one invoice until a moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentToken {
    /// The invoice the link opens.
    pub invoice_id: InvoiceId,
    /// The link works strictly before this moment.
    pub expires_at: DateTime<Utc>,
}

impl PaymentToken {
    /// The token for a link issued at `now` (an invoice being sent): valid for
    /// [`LINK_LIFETIME`], the expiry cut to whole seconds as the signed form carries it.
    pub fn for_invoice(invoice_id: InvoiceId, now: DateTime<Utc>) -> Self {
        let expires_at = now
            .checked_add_signed(LINK_LIFETIME)
            .and_then(|at| DateTime::from_timestamp(at.timestamp(), 0))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Self {
            invoice_id,
            expires_at,
        }
    }

    /// Reads a payload whose tag has been checked; `None` when it is not ours after all.
    fn decode_payload(payload: &str) -> Option<Self> {
        let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let text = std::str::from_utf8(&bytes).ok()?;
        let (id, expiry) = text.split_once('|')?;
        let invoice_id = InvoiceId::parse(id).ok()?;
        let expires_at = DateTime::from_timestamp(expiry.parse::<i64>().ok()?, 0)?;
        Some(Self {
            invoice_id,
            expires_at,
        })
    }
}

/// Why a payment link does not open an invoice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalError {
    /// Malformed, tampered with, or signed with another key. Deliberately one case: telling
    /// which would help someone forging links.
    #[error("this payment link is not valid")]
    Invalid,
    /// Genuine but past its expiry; the invoice is named so the page can still say which
    /// invoice it was and how to get a new link.
    #[error("the payment link for invoice {invoice_id} has expired")]
    Expired {
        /// The invoice the link was for.
        invoice_id: InvoiceId,
    },
}

/// The route of the payment pages on the API's host. The router, the links in mails and the
/// checkout's return addresses all use this one spelling.
pub const PAY_ROUTE: &str = "/pay/{token}";

/// The path of the payment page for `token` (its form posts back to the same path).
pub fn pay_page_path(token: &str) -> String {
    PAY_ROUTE.replace("{token}", token)
}

/// The public address of an invoice's payment page, `{base_url}/pay/{token}`, the same
/// whether or not the base URL ends with a slash. The token is URL-safe as it is.
pub fn payment_link(base_url: &str, token: &str) -> String {
    format!("{}{}", base_url.trim_end_matches('/'), pay_page_path(token))
}

/// What the customer can do on the page, decided by the caller from the invoice and the link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortalState {
    /// Sent and unpaid: show the Pay form.
    Payable,
    /// Paid: nothing to do.
    Paid,
    /// The link has expired: the customer needs a new one.
    Expired,
    /// Cancelled: nothing is due.
    Void,
    /// Paid, then refunded.
    Refunded,
    /// Still open (drafted, in progress): amounts may change, nothing to pay yet.
    NotYetSent,
}

impl PortalState {
    /// The state a valid link shows for an invoice in `status`; one place decides which
    /// statuses get a Pay button (only `SENT`).
    pub fn from_status(status: InvoiceStatus) -> Self {
        match status {
            InvoiceStatus::Sent => Self::Payable,
            InvoiceStatus::Paid => Self::Paid,
            InvoiceStatus::Void => Self::Void,
            InvoiceStatus::Refunded => Self::Refunded,
            InvoiceStatus::Drafted | InvoiceStatus::InProgress => Self::NotYetSent,
        }
    }
}

/// Payment links signed with the portal key, pointing at the api function's payment pages.
#[derive(Debug, Clone)]
pub struct PortalLinks {
    key: PortalKey,
    base_url: String,
}

impl PortalLinks {
    /// Links under `base_url` (the API's public address) signed with `key`.
    pub fn new(key: PortalKey, base_url: impl Into<String>) -> Self {
        Self {
            key,
            base_url: base_url.into(),
        }
    }

    /// The signing key (the portal pages verify with it).
    pub fn key(&self) -> &PortalKey {
        &self.key
    }

    /// The payment page of `token` under the public base URL (the checkout's return address).
    pub fn page_url(&self, token: &str) -> String {
        payment_link(&self.base_url, token)
    }
}

impl PaymentLinks for PortalLinks {
    fn payment_link(&self, invoice: &InvoiceId, sent_at: DateTime<Utc>) -> String {
        let token = PaymentToken::for_invoice(invoice.clone(), sent_at);
        payment_link(&self.base_url, &self.key.sign(&token))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn key() -> PortalKey {
        PortalKey::from_hex(HEX_KEY).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn invoice_id() -> InvoiceId {
        InvoiceId::derive("ctr_test:2026-02-01")
    }

    #[test]
    fn a_signed_token_verifies_back_to_itself() {
        let token = PaymentToken::for_invoice(invoice_id(), now());
        assert_eq!(token.expires_at, now() + LINK_LIFETIME);
        let signed = key().sign(&token);
        assert!(signed.len() < 160, "{signed}");
        assert!(
            signed
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{signed}"
        );
        assert_eq!(key().verify(&signed, now()), Ok(token.clone()));
        let last_second = token.expires_at - TimeDelta::seconds(1);
        assert_eq!(key().verify(&signed, last_second), Ok(token));
    }

    #[test]
    fn expiry_is_kept_to_whole_seconds_rounded_down() {
        let now = now() + TimeDelta::milliseconds(999);
        let token = PaymentToken::for_invoice(invoice_id(), now);
        assert_eq!(token.expires_at, self::now() + LINK_LIFETIME);
        assert_eq!(LINK_LIFETIME, TimeDelta::days(90));
    }

    #[test]
    fn changing_any_character_invalidates_the_token() {
        let signed = key().sign(&PaymentToken::for_invoice(invoice_id(), now()));
        let dot = signed.find('.').unwrap();
        for (i, c) in signed.char_indices() {
            let replacement = if c == 'A' { 'B' } else { 'A' };
            let mut tampered = signed.clone();
            tampered.replace_range(i..=i, &replacement.to_string());
            assert_eq!(
                key().verify(&tampered, now()),
                Err(PortalError::Invalid),
                "position {i} ({}): {tampered}",
                if i < dot { "payload" } else { "tag" }
            );
        }
        // Truncated or extended tags too.
        for tampered in [signed[..signed.len() - 1].to_owned(), format!("{signed}A")] {
            assert_eq!(key().verify(&tampered, now()), Err(PortalError::Invalid));
        }
    }

    #[test]
    fn a_payload_for_another_invoice_does_not_borrow_a_valid_tag() {
        let signed = key().sign(&PaymentToken::for_invoice(invoice_id(), now()));
        let other = key().sign(&PaymentToken::for_invoice(
            InvoiceId::derive("ctr_test:2026-03-01"),
            now(),
        ));
        let (payload, _) = other.split_once('.').unwrap();
        let (_, tag) = signed.split_once('.').unwrap();
        assert_eq!(
            key().verify(&format!("{payload}.{tag}"), now()),
            Err(PortalError::Invalid)
        );
    }

    #[test]
    fn a_token_signed_with_another_key_is_invalid() {
        let other = PortalKey::from_bytes(&[7u8; 32]).unwrap();
        let signed = other.sign(&PaymentToken::for_invoice(invoice_id(), now()));
        assert_eq!(key().verify(&signed, now()), Err(PortalError::Invalid));
        let generated = PortalKey::generate().unwrap();
        assert_eq!(
            generated.verify(
                &key().sign(&PaymentToken::for_invoice(invoice_id(), now())),
                now()
            ),
            Err(PortalError::Invalid)
        );
    }

    #[test]
    fn an_expired_token_names_its_invoice_only_once_its_tag_verified() {
        let token = PaymentToken::for_invoice(invoice_id(), now());
        let signed = key().sign(&token);
        let expired = Err(PortalError::Expired {
            invoice_id: invoice_id(),
        });
        assert_eq!(key().verify(&signed, token.expires_at), expired);
        assert_eq!(
            key().verify(&signed, token.expires_at + TimeDelta::days(400)),
            expired
        );
        // An expired token with a bad tag says nothing about the invoice.
        let mut tampered = signed.clone();
        let at = signed.len() - 2;
        let replacement = if &signed[at..=at] == "A" { "B" } else { "A" };
        tampered.replace_range(at..=at, replacement);
        assert_eq!(
            key().verify(&tampered, token.expires_at),
            Err(PortalError::Invalid)
        );
        let other = PortalKey::from_bytes(&[9u8; 40]).unwrap();
        assert_eq!(
            other.verify(&signed, token.expires_at),
            Err(PortalError::Invalid)
        );
    }

    #[test]
    fn garbage_is_invalid_without_panicking() {
        let huge = "A".repeat(1_000_000);
        let huge_dotted = format!("{huge}.{huge}");
        let many_dots = ".".repeat(10_000);
        for garbage in [
            "",
            ".",
            "..",
            "abc",
            "abc.",
            ".abc",
            "a.b",
            "a.b.c",
            "!!!!.????",
            "é.é",
            "aW52X3g.%%%",
            "aW52X3g=.aW52X3g=",
            "\0.\0",
            huge.as_str(),
            huge_dotted.as_str(),
            many_dots.as_str(),
        ] {
            assert_eq!(
                key().verify(garbage, now()),
                Err(PortalError::Invalid),
                "{}",
                garbage.chars().take(40).collect::<String>()
            );
        }
    }

    #[test]
    fn a_correctly_tagged_payload_that_is_not_ours_is_invalid() {
        // Only a key holder could make these; they must still not panic or decode.
        for raw in [
            String::new(),
            "inv_x|123".to_owned(),
            "|".to_owned(),
            "no-separator".to_owned(),
            format!("{}|not-a-number", invoice_id()),
            format!("{}|99999999999999999999", invoice_id()),
            format!("{}|{}", invoice_id(), i64::MAX),
            format!("{}|1|2", invoice_id()),
        ] {
            let payload = URL_SAFE_NO_PAD.encode(&raw);
            let tag = URL_SAFE_NO_PAD.encode(key().tag_for(&payload).finalize().into_bytes());
            assert_eq!(
                key().verify(&format!("{payload}.{tag}"), now()),
                Err(PortalError::Invalid),
                "{raw}"
            );
        }
    }

    #[test]
    fn keys_must_be_long_enough_and_never_print() {
        assert!(PortalKey::from_bytes(&[1u8; 31]).is_err());
        assert!(PortalKey::from_bytes(&[1u8; 32]).is_ok());
        assert!(PortalKey::from_hex(&HEX_KEY[..62]).is_err());
        assert!(PortalKey::from_hex(&format!("{HEX_KEY}\n")).is_ok());
        let e = PortalKey::from_hex(&format!("zz{}", &HEX_KEY[2..])).unwrap_err();
        assert!(!e.message.contains(&HEX_KEY[2..]), "{}", e.message);
        let shown = format!("{:?}", key());
        assert_eq!(shown, "PortalKey(<redacted>)");
        assert!(!shown.contains("0001"), "{shown}");
    }

    #[test]
    fn payment_links_join_base_and_token_with_one_slash() {
        assert_eq!(
            payment_link("https://billing.example.com", "abc.def"),
            "https://billing.example.com/pay/abc.def"
        );
        assert_eq!(
            payment_link("https://billing.example.com/prod/", "abc.def"),
            "https://billing.example.com/prod/pay/abc.def"
        );
    }

    #[test]
    fn only_sent_invoices_are_payable() {
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Sent),
            PortalState::Payable
        );
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Paid),
            PortalState::Paid
        );
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Void),
            PortalState::Void
        );
        assert_eq!(
            PortalState::from_status(InvoiceStatus::Refunded),
            PortalState::Refunded
        );
        for open in [InvoiceStatus::Drafted, InvoiceStatus::InProgress] {
            assert_eq!(PortalState::from_status(open), PortalState::NotYetSent);
        }
    }
}
