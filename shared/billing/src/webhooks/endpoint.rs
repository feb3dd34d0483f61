//! Webhook endpoints: where events go, which ones, and the secret that signs them. URLs are
//! parsed under a [`UrlPolicy`] so no endpoint can point the platform at its own network.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::error::{Error, Result};
use crate::ids::WebhookEndpointId;
use crate::text::bounded_text;

use super::EventType;

/// How long a rotated-out secret still signs deliveries (next to the new one), so receivers
/// can switch without missing an event.
pub const PREVIOUS_SECRET_GRACE: TimeDelta = TimeDelta::hours(24);

/// An endpoint failing this long is disabled, and the operator is mailed.
pub const DISABLE_AFTER_FAILING: TimeDelta = TimeDelta::days(5);

/// The longest URL accepted.
pub const MAX_URL_CHARS: usize = 2048;

/// Which URLs and addresses an endpoint may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlPolicy {
    /// Deployed: `https` only, to public addresses only.
    PublicHttps,
    /// The local stack: also `http`, to loopback only (a receiver on this machine). Private,
    /// link-local and metadata addresses stay refused.
    AllowLoopbackHttp,
}

impl UrlPolicy {
    /// Whether a connection to `ip` is allowed: never to private, link-local (cloud metadata),
    /// shared, reserved, multicast or documentation ranges; to loopback only on the local stack.
    pub fn allows_ip(self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        if ip.is_loopback() {
            return self == Self::AllowLoopbackHttp;
        }
        match ip {
            IpAddr::V4(v4) => public_v4(v4),
            IpAddr::V6(v6) => public_v6(v6),
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_unique_local() // fc00::/7, AWS's metadata fd00:ec2::254 included
        || ip.is_unicast_link_local()
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x64 && s[1] == 0xff9b) // NAT64 to any IPv4, private ones included
        || (s[0] == 0x2002) // 6to4, same
        || (s[0] == 0 && s[1] == 0 && s[2] == 0 && s[3] == 0 && s[4] == 0 && s[5] == 0)) // IPv4-compatible
}

/// Hostnames that name the machine itself or a cloud's metadata service.
fn local_or_metadata_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host == "metadata"
        || host == "instance-data"
        || host.ends_with(".internal")
}

/// A webhook URL that passed its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EndpointUrl(String);

impl EndpointUrl {
    /// Accepts an absolute `https` URL with a host (and, under
    /// [`UrlPolicy::AllowLoopbackHttp`], `http` to loopback), without credentials or fragment;
    /// an IP literal must be one the policy allows. Names are checked again after DNS
    /// resolution, when each delivery connects.
    pub fn parse(raw: &str, policy: UrlPolicy) -> Result<Self> {
        let refuse = |why: &str| Err(Error::unprocessable("invalid_url", why.to_owned()).at("url"));
        if raw.chars().count() > MAX_URL_CHARS {
            return refuse("url must be at most 2048 characters");
        }
        let url = match url::Url::parse(raw) {
            Ok(url) => url,
            Err(e) => return refuse(&format!("url is not an absolute URL: {e}")),
        };
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("url must not carry credentials");
        }
        if url.fragment().is_some() {
            return refuse("url must not have a fragment");
        }
        let loopback = match url.host() {
            None => return refuse("url must have a host"),
            Some(url::Host::Domain(name)) => {
                if local_or_metadata_host(name) && !(name.eq_ignore_ascii_case("localhost")) {
                    return Err(not_allowed(&format!("{name} is a local or metadata host")));
                }
                name.eq_ignore_ascii_case("localhost")
            }
            Some(url::Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), policy)?,
            Some(url::Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), policy)?,
        };
        match (url.scheme(), policy, loopback) {
            ("https", _, false) => {}
            ("http" | "https", UrlPolicy::AllowLoopbackHttp, true) => {}
            (_, UrlPolicy::PublicHttps, true) => {
                return Err(not_allowed("loopback addresses are not allowed"));
            }
            ("http", UrlPolicy::AllowLoopbackHttp, false) => {
                return refuse("url must use https (http only to loopback on the local stack)");
            }
            _ => return refuse("url must use https"),
        }
        Ok(Self(url.to_string()))
    }

    /// The URL as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether a literal address is loopback (allowed by the policy) or public; refuses the rest.
fn check_ip(ip: IpAddr, policy: UrlPolicy) -> Result<bool> {
    if policy.allows_ip(ip) {
        Ok(ip.is_loopback())
    } else {
        Err(not_allowed(&format!(
            "{ip} is a private, loopback, link-local or reserved address"
        )))
    }
}

fn not_allowed(why: &str) -> Error {
    Error::unprocessable("url_not_allowed", format!("url: {why}")).at("url")
}

/// The secret deliveries are signed with: `whsec_` and 24 random bytes in base64, as the
/// Standard Webhooks libraries expect.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WebhookSecret(String);

impl WebhookSecret {
    /// The prefix of every secret.
    pub const PREFIX: &'static str = "whsec_";

    /// A fresh secret.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes).map_err(|e| Error::internal(format!("no randomness: {e}")))?;
        Ok(Self(format!(
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )))
    }

    /// The secret as shown to the endpoint's owner (once) and given to signers.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(…)")
    }
}

/// The event types an endpoint receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "types")]
pub enum EventSelection {
    /// Every type, including types added later (`["*"]` on the wire).
    All,
    /// These.
    Only(BTreeSet<EventType>),
}

impl EventSelection {
    /// Parses `events` as sent: absent or `["*"]` is every type; otherwise known types, at
    /// least one.
    pub fn parse(raw: Option<Vec<String>>) -> Result<Self> {
        let Some(raw) = raw else {
            return Ok(Self::All);
        };
        if raw.iter().any(|t| t == "*") {
            return if raw.len() == 1 {
                Ok(Self::All)
            } else {
                Err(Error::unprocessable(
                    "invalid_event_type",
                    "\"*\" (every type) cannot be combined with other types",
                )
                .at("events"))
            };
        }
        if raw.is_empty() {
            return Err(Error::unprocessable(
                "invalid_event_type",
                "events must name at least one type (or omit it for every type)",
            )
            .at("events"));
        }
        let mut types = BTreeSet::new();
        for (i, t) in raw.iter().enumerate() {
            types.insert(EventType::parse(t).map_err(|e| e.at(format!("events[{i}]")))?);
        }
        Ok(Self::Only(types))
    }

    /// Whether `event_type` is selected.
    pub fn includes(&self, event_type: EventType) -> bool {
        match self {
            Self::All => true,
            Self::Only(types) => types.contains(&event_type),
        }
    }

    /// The wire form: `["*"]` or the type names.
    pub fn names(&self) -> Vec<&'static str> {
        match self {
            Self::All => vec!["*"],
            Self::Only(types) => types.iter().map(|t| t.as_str()).collect(),
        }
    }
}

bounded_text!(
    /// What an endpoint is for, for people.
    EndpointDescription,
    max = 500,
    code = "invalid_description",
    what = "description"
);

/// A secret being rotated out: it still signs until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreviousSecret {
    /// The old secret.
    pub secret: WebhookSecret,
    /// When it stops signing.
    pub expires_at: DateTime<Utc>,
}

/// Where webhooks go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    /// `we_…`.
    pub id: WebhookEndpointId,
    /// Where deliveries are POSTed.
    pub url: EndpointUrl,
    /// What it receives.
    pub events: EventSelection,
    /// For people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<EndpointDescription>,
    /// Receives nothing while set (deliveries to it are skipped, and not retried).
    #[serde(default)]
    pub disabled: bool,
    /// Why the platform disabled it (absent when its owner did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Signs deliveries.
    pub secret: WebhookSecret,
    /// The secret before the last rotation, during its grace period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_secret: Option<PreviousSecret>,
    /// Since when every attempt has failed (cleared by a success).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// The operator has not been mailed yet that the platform disabled it.
    #[serde(default)]
    pub alert_pending: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl WebhookEndpoint {
    /// Whether a delivery of `event_type` goes to this endpoint now.
    pub fn receives(&self, event_type: EventType) -> bool {
        !self.disabled && self.events.includes(event_type)
    }

    /// The secrets that sign a delivery at `now`: the current one, and the previous one during
    /// its grace period (receivers accept either signature).
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&WebhookSecret> {
        let mut secrets = vec![&self.secret];
        if let Some(previous) = &self.previous_secret
            && previous.expires_at > now
        {
            secrets.push(&previous.secret);
        }
        secrets
    }

    /// With a new secret; the old one keeps signing for [`PREVIOUS_SECRET_GRACE`].
    pub fn rotated(&self, now: DateTime<Utc>) -> Result<Self> {
        let mut next = self.clone();
        next.previous_secret = Some(PreviousSecret {
            secret: self.secret.clone(),
            expires_at: now + PREVIOUS_SECRET_GRACE,
        });
        next.secret = WebhookSecret::generate()?;
        next.updated_at = now;
        Ok(next)
    }

    /// After an attempt: a success clears the failing streak; a failure starts one, and one
    /// that has lasted [`DISABLE_AFTER_FAILING`] disables the endpoint. `None` when nothing
    /// changes; `Some((next, disabled_now))` otherwise.
    pub fn after_attempt(&self, succeeded: bool, now: DateTime<Utc>) -> Option<(Self, bool)> {
        let mut next = self.clone();
        match (succeeded, self.failing_since) {
            (true, None) => return None,
            (true, Some(_)) => next.failing_since = None,
            (false, None) => next.failing_since = Some(now),
            (false, Some(since)) if !self.disabled && now - since >= DISABLE_AFTER_FAILING => {
                next.disabled = true;
                next.alert_pending = true;
                next.disabled_reason = Some(format!(
                    "every delivery failed from {} to {}; re-enable it with PATCH {{\"disabled\": false}}",
                    since.format("%Y-%m-%d %H:%M UTC"),
                    now.format("%Y-%m-%d %H:%M UTC")
                ));
                next.updated_at = now;
                return Some((next, true));
            }
            (false, Some(_)) => return None,
        }
        Some((next, false))
    }
}

/// `POST /v1/webhook-endpoints` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Required.
    pub url: Option<String>,
    /// Event types; every type when omitted.
    pub events: Option<Vec<String>>,
    /// Optional.
    pub description: Option<String>,
}

impl CreateEndpoint {
    /// Parses every field under `policy`; assigns an id and a secret.
    pub fn parse(self, policy: UrlPolicy, now: DateTime<Utc>) -> Result<WebhookEndpoint> {
        let url = self
            .url
            .ok_or_else(|| Error::invalid("missing_field", "url is required").at("url"))?;
        Ok(WebhookEndpoint {
            id: WebhookEndpointId::generate(),
            url: EndpointUrl::parse(&url, policy)?,
            events: EventSelection::parse(self.events)?,
            description: self
                .description
                .map(|d| EndpointDescription::parse(d).map_err(|e| e.at("description")))
                .transpose()?,
            disabled: false,
            disabled_reason: None,
            secret: WebhookSecret::generate()?,
            previous_secret: None,
            failing_since: None,
            alert_pending: false,
            created_at: now,
            updated_at: now,
        })
    }
}

/// `PATCH /v1/webhook-endpoints/{id}` as sent.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateEndpoint {
    /// A new URL (cannot be removed).
    #[serde(default)]
    pub url: Change<String>,
    /// New event types (`["*"]`: every type; cannot be removed).
    #[serde(default)]
    pub events: Change<Vec<String>>,
    /// A new description, or `null` to remove it.
    #[serde(default)]
    pub description: Change<String>,
    /// Disable, or re-enable (which also forgets a failing streak).
    #[serde(default)]
    pub disabled: Change<bool>,
}

impl UpdateEndpoint {
    /// Applies the changes to `current`, parsing each.
    pub fn apply(
        self,
        current: &WebhookEndpoint,
        policy: UrlPolicy,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint> {
        let mut next = current.clone();
        if let Some(url) = self.url.required("url")? {
            next.url = EndpointUrl::parse(&url, policy)?;
        }
        if let Some(events) = self.events.required("events")? {
            next.events = EventSelection::parse(Some(events))?;
        }
        next.description = self
            .description
            .try_map(|d| EndpointDescription::parse(d).map_err(|e| e.at("description")))?
            .apply(next.description);
        match self.disabled.required("disabled")? {
            Some(true) => {
                next.disabled = true;
                next.disabled_reason = None;
            }
            Some(false) => {
                next.disabled = false;
                next.disabled_reason = None;
                next.failing_since = None;
            }
            None => {}
        }
        if next != *current {
            next.updated_at = now;
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str, policy: UrlPolicy) -> std::result::Result<String, String> {
        EndpointUrl::parse(url, policy)
            .map(|u| u.as_str().to_owned())
            .map_err(|e| e.code.to_string())
    }

    #[test]
    fn deployed_endpoints_are_https_to_public_hosts() {
        let p = UrlPolicy::PublicHttps;
        assert_eq!(
            parse("https://hooks.example.com/billing", p).unwrap(),
            "https://hooks.example.com/billing"
        );
        assert_eq!(
            parse("https://93.184.215.14:8443/x", p).unwrap(),
            "https://93.184.215.14:8443/x"
        );
        assert_eq!(
            parse("http://hooks.example.com/", p).unwrap_err(),
            "invalid_url"
        );
        assert_eq!(
            parse("http://127.0.0.1:9000/", p).unwrap_err(),
            "url_not_allowed"
        );
        assert_eq!(
            parse("https://localhost/", p).unwrap_err(),
            "url_not_allowed"
        );
        assert_eq!(
            parse("ftp://hooks.example.com/", p).unwrap_err(),
            "invalid_url"
        );
        assert_eq!(
            parse("https://user:pw@hooks.example.com/", p).unwrap_err(),
            "invalid_url"
        );
        assert_eq!(
            parse("https://hooks.example.com/#x", p).unwrap_err(),
            "invalid_url"
        );
        assert_eq!(parse("/relative", p).unwrap_err(), "invalid_url");
    }

    #[test]
    fn private_link_local_and_metadata_targets_are_refused_under_every_policy() {
        for policy in [UrlPolicy::PublicHttps, UrlPolicy::AllowLoopbackHttp] {
            for url in [
                "https://10.0.0.8/",
                "https://172.16.3.4/",
                "https://192.168.1.1/",
                "https://169.254.169.254/latest/meta-data/",
                "https://100.64.0.1/",
                "https://0.0.0.0/",
                "https://[fd00:ec2::254]/",
                "https://[fe80::1]/",
                "https://[::ffff:10.0.0.1]/",
                "https://[::ffff:169.254.169.254]/",
                "https://[64:ff9b::a9fe:a9fe]/",
                "https://metadata.google.internal/",
                "https://instance-data/",
                "http://0x7f000001.example/",
                "https://2130706433/",
            ] {
                let got = parse(url, policy);
                if url.contains("0x7f000001.example") {
                    // A name: checked after resolution; http is refused here anyway.
                    assert!(got.is_err(), "{url} under {policy:?}: {got:?}");
                    continue;
                }
                if url == "https://2130706433/" {
                    // The URL standard reads a bare number as an IPv4 address (127.0.0.1).
                    if policy == UrlPolicy::PublicHttps {
                        assert_eq!(got.unwrap_err(), "url_not_allowed", "{url}");
                    }
                    continue;
                }
                assert_eq!(
                    got.unwrap_err(),
                    "url_not_allowed",
                    "{url} under {policy:?}"
                );
            }
        }
    }

    #[test]
    fn the_local_stack_allows_http_to_loopback_only() {
        let p = UrlPolicy::AllowLoopbackHttp;
        assert!(parse("http://127.0.0.1:9000/hook", p).is_ok());
        assert!(parse("http://localhost:9000/hook", p).is_ok());
        assert!(parse("http://[::1]:9000/hook", p).is_ok());
        assert_eq!(
            parse("http://hooks.example.com/", p).unwrap_err(),
            "invalid_url"
        );
        assert!(parse("https://hooks.example.com/", p).is_ok());
    }

    #[test]
    fn event_selections_parse_and_select() {
        assert_eq!(EventSelection::parse(None).unwrap(), EventSelection::All);
        assert_eq!(
            EventSelection::parse(Some(vec!["*".into()])).unwrap(),
            EventSelection::All
        );
        let only = EventSelection::parse(Some(vec!["invoice.paid".into()])).unwrap();
        assert!(only.includes(EventType::InvoicePaid));
        assert!(!only.includes(EventType::InvoiceSent));
        assert_eq!(only.names(), ["invoice.paid"]);
        let err =
            EventSelection::parse(Some(vec!["invoice.paid".into(), "nope".into()])).unwrap_err();
        assert_eq!(
            (err.code.as_ref(), err.param.as_deref()),
            ("invalid_event_type", Some("events[1]"))
        );
        assert!(EventSelection::parse(Some(vec![])).is_err());
        assert!(EventSelection::parse(Some(vec!["*".into(), "invoice.paid".into()])).is_err());
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets_and_rotation_keeps_the_old_one_a_day() {
        let now: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let endpoint = CreateEndpoint {
            url: Some("https://hooks.example.com/".into()),
            ..Default::default()
        }
        .parse(UrlPolicy::PublicHttps, now)
        .unwrap();
        let secret = endpoint.secret.expose();
        assert!(secret.starts_with("whsec_"));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&secret[6..])
            .unwrap();
        assert_eq!(bytes.len(), 24);
        let rotated = endpoint.rotated(now).unwrap();
        assert_ne!(rotated.secret, endpoint.secret);
        assert_eq!(rotated.signing_secrets(now).len(), 2);
        assert_eq!(
            rotated.signing_secrets(now + PREVIOUS_SECRET_GRACE).len(),
            1,
            "the old secret stops signing after its grace"
        );
        assert!(
            !format!("{endpoint:?}").contains(secret),
            "secrets stay out of logs"
        );
    }

    #[test]
    fn five_days_of_failures_disable_an_endpoint_and_a_success_resets_the_streak() {
        let t0: DateTime<Utc> = "2026-12-01T00:00:00Z".parse().unwrap();
        let endpoint = CreateEndpoint {
            url: Some("https://hooks.example.com/".into()),
            ..Default::default()
        }
        .parse(UrlPolicy::PublicHttps, t0)
        .unwrap();
        let (failing, disabled) = endpoint.after_attempt(false, t0).unwrap();
        assert_eq!((failing.failing_since, disabled), (Some(t0), false));
        assert!(
            failing
                .after_attempt(false, t0 + TimeDelta::days(4))
                .is_none()
        );
        let (off, disabled) = failing
            .after_attempt(false, t0 + DISABLE_AFTER_FAILING)
            .unwrap();
        assert!(disabled && off.disabled && off.disabled_reason.is_some());
        assert!(!off.receives(EventType::InvoicePaid));
        let (healthy, _) = failing
            .after_attempt(true, t0 + TimeDelta::days(1))
            .unwrap();
        assert_eq!(healthy.failing_since, None);
    }
}
