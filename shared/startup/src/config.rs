//! The configuration, read once at cold start into one typed struct. Every variable the
//! functions take is named here and only here (template.yaml sets them); a missing or
//! malformed one stops startup with an error that names it. An empty value counts as unset, as
//! CloudFormation passes an unset optional parameter as `''`.

use billing::customer::Email;
use billing::webhooks::{RetrySchedule, UrlPolicy};
use std::fmt;

use billing::api_key::SecretDigest;
use billing::portal::PortalKey;

/// A variable that stops startup: which one, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem} (see template.yaml)")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with its value (never the value itself: it may be a secret).
    pub problem: String,
}

impl From<ConfigError> for billing::Error {
    fn from(e: ConfigError) -> Self {
        billing::Error::internal(e.to_string())
    }
}

/// Everything the functions read from their environment.
#[derive(Clone)]
pub struct Config {
    /// `TABLE_NAME`: the billing table (everything but event records).
    pub table_name: String,
    /// `USAGE_TABLE_NAME`: the usage table (event records).
    pub usage_table_name: String,
    /// `USAGE_QUEUE_URL`: where ingestion sends usage events (absent: ingestion answers 503).
    pub usage_queue_url: Option<String>,
    /// `BOOTSTRAP_API_KEY_SHA256`: the digest of a deployment's first admin key.
    pub bootstrap_key: Option<SecretDigest>,
    /// `STRIPE_SECRET_KEY` and `STRIPE_API_BASE`: the payment provider (absent: no payments).
    pub stripe: Option<StripeConfig>,
    /// `STRIPE_WEBHOOK_SECRET`: the signing secret of Stripe's webhooks to us.
    pub stripe_webhook_secret: Option<String>,
    /// `PORTAL_SIGNING_KEY` and `PUBLIC_BASE_URL`: signed payment links (absent: none).
    pub portal: Option<PortalConfig>,
    /// `MAIL_FROM`: the verified sender of invoice mail (absent: mail stays queued).
    pub mail_from: Option<String>,
    /// `BILLING_RUN_FUNCTION_ARN`, `SCHEDULER_ROLE_ARN`, `SCHEDULE_GROUP_NAME`: one-time
    /// auto-pay retries (absent: retries wait for the daily run).
    pub retry_schedules: Option<ScheduleConfig>,
    /// Outgoing webhooks.
    pub webhooks: WebhookConfig,
    /// `DASHBOARD_SESSION_KEY`: signs the dashboard's session cookies (absent: the dashboard
    /// cannot sign anyone in).
    pub dashboard_session_key: Option<SessionSecret>,
    /// Whether the dashboard's cookies are `Secure`: yes unless `PUBLIC_BASE_URL` is a plain
    /// `http://` address (the local stack), since a browser drops Secure cookies over http.
    pub secure_cookies: bool,
}

/// Outgoing webhooks' settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `WEBHOOK_QUEUE_URL`: the dispatcher's queue (absent: the sweep alone finds outbox
    /// entries, and manual retries answer 503).
    pub queue_url: Option<String>,
    /// `WEBHOOK_ALLOW_LOOPBACK_HTTP=1`: endpoints may be `http://` on loopback (the local stack
    /// only; never set in template.yaml).
    pub url_policy: UrlPolicy,
    /// `WEBHOOK_RETRY_SCHEDULE` (`5s,5m,30m,...`): the waits between attempts (the tests
    /// compress the day; the default spans 27.5 hours).
    pub retry_schedule: RetrySchedule,
    /// `OPERATOR_EMAIL`: who is told when an endpoint is disabled (comma-separated).
    pub operator_email: Vec<Email>,
}

/// The secret that signs dashboard sessions: at least 32 bytes, given in hex. Never printed.
#[derive(Clone)]
pub struct SessionSecret(Vec<u8>);

impl SessionSecret {
    /// The fewest bytes accepted (HMAC-SHA256's block of security).
    pub const MIN_BYTES: usize = 32;

    /// Accepts hex of at least [`Self::MIN_BYTES`] bytes; the error never echoes the value.
    pub fn from_hex(raw: &str) -> Result<Self, &'static str> {
        match hex::decode(raw.trim()) {
            Ok(bytes) if bytes.len() >= Self::MIN_BYTES => Ok(Self(bytes)),
            Ok(_) => Err("is too short: use at least 64 hex characters (openssl rand -hex 32)"),
            Err(_) => Err("is not hex (openssl rand -hex 32)"),
        }
    }

    /// A fresh random secret, for a local server started without one (sessions then end when
    /// it restarts, which is fine there).
    pub fn generate() -> Self {
        let mut bytes = vec![0u8; Self::MIN_BYTES];
        // The OS's CSPRNG; a machine without one cannot run anything here anyway.
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        Self(bytes)
    }

    /// The raw secret, for the HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// The Stripe account to use.
#[derive(Clone)]
pub struct StripeConfig {
    /// `sk_…`
    pub secret_key: String,
    /// Another API base than api.stripe.com (the local fake).
    pub api_base: Option<String>,
}

/// Signed payment links.
#[derive(Clone, Debug)]
pub struct PortalConfig {
    /// Signs and checks the links.
    pub key: PortalKey,
    /// The API's public address, under which `/pay/…` is served.
    pub public_base_url: String,
}

/// The one-time schedules that retry auto-pay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// The billing-run function they invoke.
    pub target_arn: String,
    /// The role EventBridge Scheduler assumes to invoke it.
    pub role_arn: String,
    /// The schedule group.
    pub group: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars(&lookup);
        let stripe = vars.optional("STRIPE_SECRET_KEY").map(|secret_key| {
            Ok::<_, ConfigError>(StripeConfig {
                secret_key,
                api_base: vars.url("STRIPE_API_BASE")?,
            })
        });
        Ok(Self {
            table_name: vars.required("TABLE_NAME")?,
            usage_table_name: vars.required("USAGE_TABLE_NAME")?,
            usage_queue_url: vars.url("USAGE_QUEUE_URL")?,
            bootstrap_key: vars
                .optional("BOOTSTRAP_API_KEY_SHA256")
                .map(|hex| {
                    SecretDigest::from_hex(&hex)
                        .map_err(|_| invalid("BOOTSTRAP_API_KEY_SHA256", "is not a SHA-256 in hex"))
                })
                .transpose()?,
            stripe: stripe.transpose()?,
            stripe_webhook_secret: vars.optional("STRIPE_WEBHOOK_SECRET"),
            portal: portal(&vars)?,
            mail_from: vars.optional("MAIL_FROM"),
            retry_schedules: schedules(&vars)?,
            webhooks: webhooks(&vars)?,
            dashboard_session_key: vars
                .optional("DASHBOARD_SESSION_KEY")
                .map(|hex| {
                    SessionSecret::from_hex(&hex).map_err(|e| invalid("DASHBOARD_SESSION_KEY", e))
                })
                .transpose()?,
            secure_cookies: !vars
                .url("PUBLIC_BASE_URL")?
                .is_some_and(|url| url.starts_with("http://")),
        })
    }
}

fn webhooks(vars: &Vars<'_>) -> Result<WebhookConfig, ConfigError> {
    let url_policy = match vars.optional("WEBHOOK_ALLOW_LOOPBACK_HTTP").as_deref() {
        None | Some("0") => UrlPolicy::PublicHttps,
        Some("1") => UrlPolicy::AllowLoopbackHttp,
        Some(_) => return Err(invalid("WEBHOOK_ALLOW_LOOPBACK_HTTP", "is not 0 or 1")),
    };
    let retry_schedule = match vars.optional("WEBHOOK_RETRY_SCHEDULE") {
        None => RetrySchedule::default(),
        Some(raw) => RetrySchedule::parse(&raw).ok_or_else(|| {
            invalid(
                "WEBHOOK_RETRY_SCHEDULE",
                "is not a list of waits such as 5s,5m,30m,2h (each at most 12h)",
            )
        })?,
    };
    let operator_email = vars
        .optional("OPERATOR_EMAIL")
        .map(|raw| {
            raw.split(',')
                .map(|a| Email::parse(a.trim()))
                .collect::<billing::Result<Vec<_>>>()
                .map_err(|_| {
                    invalid(
                        "OPERATOR_EMAIL",
                        "is not a comma-separated list of addresses",
                    )
                })
        })
        .transpose()?
        .unwrap_or_default();
    Ok(WebhookConfig {
        queue_url: vars.url("WEBHOOK_QUEUE_URL")?,
        url_policy,
        retry_schedule,
        operator_email,
    })
}

/// Payment links need both the key and the base URL; a key alone is no use, so it is ignored
/// (mails then carry no link), but a bad key is an error.
fn portal(vars: &Vars<'_>) -> Result<Option<PortalConfig>, ConfigError> {
    let Some(hex) = vars.optional("PORTAL_SIGNING_KEY") else {
        return Ok(None);
    };
    let key = PortalKey::from_hex(&hex).map_err(|e| invalid("PORTAL_SIGNING_KEY", &e.message))?;
    Ok(vars
        .url("PUBLIC_BASE_URL")?
        .map(|public_base_url| PortalConfig {
            key,
            public_base_url,
        }))
}

/// Retries need the target and the role together.
fn schedules(vars: &Vars<'_>) -> Result<Option<ScheduleConfig>, ConfigError> {
    let target = vars.optional("BILLING_RUN_FUNCTION_ARN");
    let role = vars.optional("SCHEDULER_ROLE_ARN");
    match (target, role) {
        (Some(target_arn), Some(role_arn)) => Ok(Some(ScheduleConfig {
            target_arn,
            role_arn,
            group: vars
                .optional("SCHEDULE_GROUP_NAME")
                .unwrap_or_else(|| "default".to_owned()),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(invalid(
            "SCHEDULER_ROLE_ARN",
            "is not set, but BILLING_RUN_FUNCTION_ARN is",
        )),
        (None, Some(_)) => Err(invalid(
            "BILLING_RUN_FUNCTION_ARN",
            "is not set, but SCHEDULER_ROLE_ARN is",
        )),
    }
}

fn invalid(variable: &'static str, problem: &str) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.to_owned(),
    }
}

/// The variables, read through a lookup.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn optional(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.optional(name)
            .ok_or_else(|| invalid(name, "is not set"))
    }

    /// An http(s) URL, without a trailing slash.
    fn url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(url) = self.optional(name) else {
            return Ok(None);
        };
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        let host = url.split_once("://").map(|(_, rest)| rest).unwrap_or("");
        if !scheme_ok || host.is_empty() || url.chars().any(char::is_whitespace) {
            return Err(invalid(name, "is not an http(s) URL"));
        }
        Ok(Some(url.trim_end_matches('/').to_owned()))
    }
}

impl fmt::Debug for Config {
    /// Secrets are never printed; only whether they are set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("table_name", &self.table_name)
            .field("usage_table_name", &self.usage_table_name)
            .field("usage_queue_url", &self.usage_queue_url)
            .field("bootstrap_key", &self.bootstrap_key.is_some())
            .field("stripe", &self.stripe.as_ref().map(|s| &s.api_base))
            .field(
                "stripe_webhook_secret",
                &self.stripe_webhook_secret.is_some(),
            )
            .field("portal", &self.portal.as_ref().map(|p| &p.public_base_url))
            .field("mail_from", &self.mail_from)
            .field("retry_schedules", &self.retry_schedules)
            .field("webhooks", &self.webhooks)
            .field(
                "dashboard_session_key",
                &self.dashboard_session_key.is_some(),
            )
            .field("secure_cookies", &self.secure_cookies)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn read(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    fn error(vars: &[(&str, &str)]) -> ConfigError {
        read(vars).map(|_| ()).unwrap_err()
    }

    #[test]
    fn only_the_tables_are_required_and_empty_means_unset() {
        assert_eq!(error(&[]).variable, "TABLE_NAME");
        assert_eq!(error(&[("TABLE_NAME", " ")]).variable, "TABLE_NAME");
        assert_eq!(error(&[("TABLE_NAME", "t")]).variable, "USAGE_TABLE_NAME");
        let config = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("STRIPE_SECRET_KEY", ""),
            ("MAIL_FROM", ""),
        ])
        .unwrap();
        assert_eq!(config.table_name, "t");
        assert!(config.stripe.is_none() && config.mail_from.is_none());
        assert!(config.portal.is_none() && config.retry_schedules.is_none());
    }

    #[test]
    fn malformed_values_name_their_variable_and_never_echo_it() {
        let e = error(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("PORTAL_SIGNING_KEY", "abcd-secret"),
        ]);
        assert_eq!(e.variable, "PORTAL_SIGNING_KEY");
        assert!(!e.to_string().contains("abcd-secret"), "{e}");
        let e = error(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("USAGE_QUEUE_URL", "queue"),
        ]);
        assert_eq!(e.variable, "USAGE_QUEUE_URL");
        let e = error(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("BOOTSTRAP_API_KEY_SHA256", "zz"),
        ]);
        assert_eq!(e.variable, "BOOTSTRAP_API_KEY_SHA256");
        let e = error(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            ("STRIPE_API_BASE", "localhost:12111"),
        ]);
        assert_eq!(e.variable, "STRIPE_API_BASE");
        assert!(e.to_string().starts_with("STRIPE_API_BASE: "), "{e}");
    }

    #[test]
    fn payment_links_need_a_key_and_a_base_url() {
        let key_only = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("PORTAL_SIGNING_KEY", HEX_KEY),
        ])
        .unwrap();
        assert!(key_only.portal.is_none());
        let both = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("PORTAL_SIGNING_KEY", HEX_KEY),
            ("PUBLIC_BASE_URL", "https://billing.example.com/"),
        ])
        .unwrap();
        assert_eq!(
            both.portal.unwrap().public_base_url,
            "https://billing.example.com"
        );
    }

    #[test]
    fn retry_schedules_need_the_target_and_the_role() {
        let e = error(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("BILLING_RUN_FUNCTION_ARN", "arn:x"),
        ]);
        assert_eq!(e.variable, "SCHEDULER_ROLE_ARN");
        let config = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("BILLING_RUN_FUNCTION_ARN", "arn:f"),
            ("SCHEDULER_ROLE_ARN", "arn:r"),
        ])
        .unwrap();
        assert_eq!(
            config.retry_schedules,
            Some(ScheduleConfig {
                target_arn: "arn:f".into(),
                role_arn: "arn:r".into(),
                group: "default".into(),
            })
        );
    }

    #[test]
    fn the_dashboard_key_is_checked_and_cookies_are_secure_unless_served_over_http() {
        let e = error(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("DASHBOARD_SESSION_KEY", "abcd"),
        ]);
        assert_eq!(e.variable, "DASHBOARD_SESSION_KEY");
        let config = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("DASHBOARD_SESSION_KEY", HEX_KEY),
        ])
        .unwrap();
        assert_eq!(config.dashboard_session_key.unwrap().expose().len(), 32);
        assert!(config.secure_cookies);
        let local = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("PUBLIC_BASE_URL", "http://127.0.0.1:3000"),
        ]);
        assert!(!local.unwrap().secure_cookies);
        let deployed = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("PUBLIC_BASE_URL", "https://b.example.com"),
        ]);
        assert!(deployed.unwrap().secure_cookies);
    }

    #[test]
    fn secrets_never_print() {
        let config = read(&[
            ("TABLE_NAME", "t"),
            ("USAGE_TABLE_NAME", "u"),
            ("STRIPE_SECRET_KEY", "sk_test_secret"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_secret"),
        ])
        .unwrap();
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("sk_test_secret") && !shown.contains("whsec_secret"),
            "{shown}"
        );
    }
}
