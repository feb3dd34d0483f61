//! Mail through Amazon SES (v2 API). In local stacks moto records what is sent.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use crate::error::{Error, Result};
use crate::payments::{Mail, Mailer};

/// Sends from one verified address. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    /// From `MAIL_FROM` (set by template.yaml); `None` when unset, so mail stays queued.
    pub fn from_config(config: &aws_config::SdkConfig) -> Option<Self> {
        let from = std::env::var("MAIL_FROM").ok().filter(|f| !f.is_empty())?;
        Some(Self {
            client: Client::new(config),
            from,
        })
    }
}

fn content(text: &str) -> Result<Content> {
    Content::builder()
        .data(text)
        .charset("UTF-8")
        .build()
        .map_err(|e| Error::internal(e.to_string()))
}

#[async_trait]
impl Mailer for SesMailer {
    async fn send(&self, mail: &Mail) -> Result<()> {
        let message = Message::builder()
            .subject(content(&mail.subject)?)
            .body(Body::builder().text(content(&mail.text)?).build())
            .build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(
                        mail.to.iter().map(|e| e.as_str().to_owned()).collect(),
                    ))
                    .build(),
            )
            .content(EmailContent::builder().simple(message).build())
            .send()
            .await
            .map_err(|e| {
                Error::unavailable(format!("SES refused the mail: {}", e.into_service_error()))
            })?;
        Ok(())
    }
}
