//! The HTTP side of outgoing webhooks: one signed POST per attempt.
//!
//! Safety, because an endpoint URL is typed in by a user and fetched by our servers:
//! - every name is resolved here, and refused whole when any of its addresses is one the
//!   [`UrlPolicy`] refuses (private, link-local and cloud metadata, and loopback except on the
//!   local stack); the connection then goes to exactly the addresses checked, so a DNS answer
//!   that changes in between changes nothing;
//! - IP literals are checked the same way; no proxy is used;
//! - redirects are not followed (a 3xx is the answer); each attempt stops after 10 s;
//! - at most 1 KB of the answer's body is read and kept.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use billing::ports::{OutgoingRequest, WebhookSender};
use billing::webhooks::UrlPolicy;
use billing::webhooks::delivery::{ATTEMPT_TIMEOUT, MAX_RESPONSE_BYTES, SendResult};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves names and keeps only addresses the policy allows (all or nothing per name).
#[derive(Debug, Clone, Copy)]
struct GuardedResolver(UrlPolicy);

/// Why a name was not resolved to anything usable.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(Box::new(Refused(format!("{host} has no address"))) as _);
            }
            if let Some(bad) = addrs.iter().find(|a| !policy.allows_ip(a.ip())) {
                return Err(Box::new(Refused(format!(
                    "refused: {host} resolves to {}, a private, loopback, link-local or reserved address",
                    bad.ip()
                ))) as _);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Sends deliveries with one shared connection pool.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    /// Built on the first send: building it loads the platform's root certificates, which
    /// takes milliseconds of a cold start that a sweep (no delivery) never needs.
    client: std::sync::OnceLock<reqwest::Client>,
    policy: UrlPolicy,
}

impl HttpWebhookSender {
    /// A sender under `policy` (deployed: [`UrlPolicy::PublicHttps`]).
    pub fn new(policy: UrlPolicy) -> Result<Self, String> {
        Ok(Self {
            client: std::sync::OnceLock::new(),
            policy,
        })
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(GuardedResolver(self.policy)))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .user_agent(concat!("billing-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(self.client.get_or_init(|| client))
    }

    /// Refuses a URL the policy does not allow before any connection: the scheme, and an IP
    /// literal host (names are checked by the resolver).
    fn check(&self, raw: &str) -> Result<url::Url, String> {
        let url = url::Url::parse(raw).map_err(|e| format!("invalid url: {e}"))?;
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err("invalid url: no host".to_owned()),
        };
        if let Some(ip) = literal
            && !self.policy.allows_ip(ip)
        {
            return Err(format!(
                "refused: {ip} is a private, loopback, link-local or reserved address"
            ));
        }
        match (url.scheme(), self.policy) {
            ("https", _) | ("http", UrlPolicy::AllowLoopbackHttp) => Ok(url),
            (scheme, _) => Err(format!("refused: {scheme} is not allowed (https only)")),
        }
    }
}

/// Why a request failed, in words an operator can act on (the resolver's refusal included).
fn describe(e: &reqwest::Error) -> String {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        if let Some(refused) = c.downcast_ref::<Refused>() {
            return refused.0.clone();
        }
        cause = c.source();
    }
    if e.is_timeout() {
        format!("timed out after {} s", ATTEMPT_TIMEOUT.as_secs())
    } else if e.is_connect() {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            text = format!("{text}: {s}");
            source = s.source();
        }
        format!("could not connect: {text}")
    } else {
        e.to_string()
    }
}

fn elapsed(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn failed(start: Instant, error: String) -> SendResult {
    SendResult {
        status_code: None,
        duration_ms: elapsed(start),
        error: Some(error),
        response_body: None,
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn send(&self, request: &OutgoingRequest<'_>) -> SendResult {
        let start = Instant::now();
        let url = match self.check(request.url) {
            Ok(url) => url,
            Err(e) => return failed(start, e),
        };
        let timestamp = request.timestamp.timestamp();
        let mut signatures = Vec::with_capacity(request.secrets.len());
        for secret in &request.secrets {
            let signed = standardwebhooks::Webhook::new(secret).and_then(|w| {
                w.sign(
                    request.event_id.as_str(),
                    timestamp,
                    request.payload.as_bytes(),
                )
            });
            match signed {
                Ok(signature) => signatures.push(signature),
                Err(e) => return failed(start, format!("cannot sign: {e}")),
            }
        }
        let client = match self.client() {
            Ok(client) => client,
            Err(e) => return failed(start, e),
        };
        let sent = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", request.event_id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signatures.join(" "))
            .body(request.payload.to_owned())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => return failed(start, describe(&e)),
        };
        let status = response.status().as_u16();
        let mut body = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while body.len() < MAX_RESPONSE_BYTES {
            match tokio::time::timeout_at(deadline, response.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(MAX_RESPONSE_BYTES);
        let text = String::from_utf8_lossy(&body).into_owned();
        SendResult {
            status_code: Some(status),
            duration_ms: elapsed(start),
            error: (!(200..300).contains(&status)).then(|| format!("answered {status}")),
            response_body: (!text.is_empty()).then_some(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use billing::ids::WebhookEventId;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot HTTP server on loopback answering `answer`; returns its URL and the request
    /// it read.
    async fn server(answer: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let n = socket.read(&mut buf).await.unwrap();
            socket.write_all(answer.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        (url, task)
    }

    fn request<'a>(
        url: &'a str,
        id: &'a WebhookEventId,
        secrets: Vec<&'a str>,
    ) -> OutgoingRequest<'a> {
        OutgoingRequest {
            url,
            event_id: id,
            timestamp: chrono::Utc::now(),
            payload: r#"{"id":"x"}"#,
            secrets,
        }
    }

    #[tokio::test]
    async fn a_delivery_is_signed_so_the_standard_library_verifies_it() {
        let (url, got) = server("HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n").await;
        let sender = HttpWebhookSender::new(UrlPolicy::AllowLoopbackHttp).unwrap();
        let id = WebhookEventId::generate();
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let result = sender.send(&request(&url, &id, vec![secret])).await;
        assert_eq!((result.status_code, result.error), (Some(204), None));
        let raw = got.await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        for line in head.lines().skip(1) {
            let (name, value) = line.split_once(':').unwrap();
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value.trim().parse().unwrap(),
            );
        }
        assert_eq!(headers["webhook-id"], id.as_str());
        standardwebhooks::Webhook::new(secret)
            .unwrap()
            .verify(body.as_bytes(), &headers)
            .expect("a valid Standard Webhooks signature");
        let other =
            standardwebhooks::Webhook::new("whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCE=").unwrap();
        assert!(other.verify(body.as_bytes(), &headers).is_err());
    }

    #[tokio::test]
    async fn redirects_are_not_followed_and_bodies_are_cut_at_one_kilobyte() {
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 3000\r\n\r\n{}",
                "x".repeat(3000)
            )
            .into_boxed_str(),
        );
        let (url, _got) = server(answer).await;
        let sender = HttpWebhookSender::new(UrlPolicy::AllowLoopbackHttp).unwrap();
        let id = WebhookEventId::generate();
        let result = sender
            .send(&request(
                &url,
                &id,
                vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            ))
            .await;
        assert_eq!(result.status_code, Some(302));
        assert_eq!(result.error.as_deref(), Some("answered 302"));
        assert_eq!(result.response_body.unwrap().len(), MAX_RESPONSE_BYTES);
    }

    #[tokio::test]
    async fn private_and_metadata_targets_are_refused_before_connecting() {
        let local = HttpWebhookSender::new(UrlPolicy::AllowLoopbackHttp).unwrap();
        let deployed = HttpWebhookSender::new(UrlPolicy::PublicHttps).unwrap();
        let id = WebhookEventId::generate();
        for (sender, url) in [
            (&local, "http://169.254.169.254/latest/meta-data/"),
            (&local, "http://10.1.2.3/"),
            (&local, "http://[fd00:ec2::254]/"),
            (&local, "http://[::ffff:192.168.0.1]/"),
            (&deployed, "https://127.0.0.1/"),
            (&deployed, "http://example.com/"),
            // A name: refused after resolution (localhost is loopback).
            (&deployed, "https://localhost:9/"),
        ] {
            let result = sender
                .send(&request(
                    url,
                    &id,
                    vec!["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
                ))
                .await;
            assert_eq!(result.status_code, None, "{url}");
            let error = result.error.unwrap();
            assert!(error.starts_with("refused"), "{url}: {error}");
        }
    }
}
