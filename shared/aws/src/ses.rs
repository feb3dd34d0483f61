//! Mail through Amazon SES (v2 API). In local stacks moto (or LocalStack) records what is sent.

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};

use billing::error::{Error, Result};
use billing::ports::{Mail, Mailer};

/// Sends from one verified address. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SesMailer {
    client: Client,
    from: String,
}

impl SesMailer {
    /// Sends from `from`, a sender SES has verified.
    pub fn new(config: &aws_config::SdkConfig, from: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            from: from.into(),
        }
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
                // The whole chain: a bare service error loses the provider's own message (an
                // emulator answering 501 for a service it does not serve said nothing else).
                let detail = aws_sdk_sesv2::error::DisplayErrorContext(&e).to_string();
                tracing::warn!(error = %detail, "SES refused the mail");
                Error::unavailable(format!("SES refused the mail: {detail}"))
            })?;
        Ok(())
    }
}
