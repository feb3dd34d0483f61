//! The webhook dispatcher's queue (SQS standard: order is not promised, and each message may
//! wait up to 15 minutes before it is handed out). Jobs are JSON ([`Job`]); the dispatcher's
//! function holds a job whose delivery is not due yet by changing its visibility
//! ([`hold`]), so a whole retry schedule rides on one message.

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use chrono::TimeDelta;

use billing::error::{Error, Result};
use billing::ports::WebhookQueue;
use billing::webhooks::Job;

/// SQS's limit on entries per `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;
/// SQS's longest message delay, in seconds.
const MAX_DELAY_SECONDS: i64 = 900;
/// SQS's longest visibility timeout, in seconds.
pub const MAX_VISIBILITY_SECONDS: i64 = 12 * 60 * 60;

/// Sends jobs to the dispatcher's queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsWebhookQueue {
    client: Client,
    url: String,
}

impl SqsWebhookQueue {
    /// The queue at `url`.
    pub fn new(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            url: url.into(),
        }
    }
}

#[async_trait]
impl WebhookQueue for SqsWebhookQueue {
    async fn send(&self, jobs: &[(Job, TimeDelta)]) -> Result<()> {
        for chunk in jobs.chunks(MAX_BATCH_ENTRIES) {
            let mut entries = Vec::with_capacity(chunk.len());
            for (i, (job, delay)) in chunk.iter().enumerate() {
                let body = serde_json::to_string(job)
                    .map_err(|e| Error::internal(format!("cannot encode a job: {e}")))?;
                let seconds = delay.num_seconds().clamp(0, MAX_DELAY_SECONDS);
                entries.push(
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .delay_seconds(i32::try_from(seconds).unwrap_or(0))
                        .build()
                        .map_err(|e| Error::internal(e.to_string()))?,
                );
            }
            let out = self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| {
                    tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "webhook jobs not sent");
                    Error::unavailable("the webhook queue is unreachable; retry shortly")
                })?;
            if !out.failed.is_empty() {
                return Err(Error::unavailable(format!(
                    "the webhook queue refused {} job(s): {}",
                    out.failed.len(),
                    out.failed
                        .iter()
                        .map(|f| f.message.clone().unwrap_or_else(|| f.code.clone()))
                        .collect::<Vec<_>>()
                        .join("; ")
                )));
            }
        }
        Ok(())
    }
}

/// Keeps a received message invisible for `wait` (at most 12 hours), so it is handed out again
/// when its job is due. The caller then reports it as not processed.
pub async fn hold(client: &Client, queue_url: &str, receipt: &str, wait: TimeDelta) -> Result<()> {
    let seconds = wait.num_seconds().clamp(0, MAX_VISIBILITY_SECONDS);
    client
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt)
        .visibility_timeout(i32::try_from(seconds).unwrap_or(0))
        .send()
        .await
        .map_err(|e| {
            Error::unavailable(format!(
                "cannot hold the webhook job: {}",
                aws_sdk_sqs::error::DisplayErrorContext(&e)
            ))
        })?;
    Ok(())
}
