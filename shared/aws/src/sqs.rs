//! The usage queue (SQS FIFO): packed event messages sent with `SendMessageBatch` (up to 10
//! messages and 256 KiB a request), each in its lane's message group, retrying entries SQS
//! reports as failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use billing::ports::EventQueue;
use billing::usage::OutgoingMessage;

/// SQS's limit on one `SendMessageBatch` request (all bodies together).
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// SQS's limit on entries per `SendMessageBatch`.
const MAX_BATCH_ENTRIES: usize = 10;
/// Attempts per message before it is reported as not enqueued.
const ATTEMPTS: u32 = 4;

/// Sends to one queue. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqsEventQueue {
    client: Client,
    url: String,
    requests: Arc<AtomicU64>,
}

impl SqsEventQueue {
    /// The queue at `url`.
    pub fn new(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            url: url.into(),
            requests: Arc::default(),
        }
    }

    /// `SendMessageBatch` requests made so far (for the cost benchmark).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Sends one batch request; returns the indexes (into `batch`) that failed. Each message
    /// goes to its lane's group and is deduplicated by its nonce, so a send retried after a
    /// lost answer is one message.
    async fn send_batch(&self, batch: &[(usize, &OutgoingMessage)]) -> Vec<usize> {
        let entries: Vec<SendMessageBatchRequestEntry> = batch
            .iter()
            .filter_map(|(i, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(message.body.as_str())
                    .message_group_id(message.lane.group())
                    .message_deduplication_id(message.nonce.as_str())
                    .build()
                    .ok()
            })
            .collect();
        self.requests.fetch_add(1, Ordering::Relaxed);
        match self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => out
                .failed
                .iter()
                .filter_map(|f| f.id.parse().ok())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "SendMessageBatch failed");
                batch.iter().map(|(i, _)| *i).collect()
            }
        }
    }
}

#[async_trait]
impl EventQueue for SqsEventQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Vec<bool> {
        let mut sent = vec![false; messages.len()];
        let mut pending: Vec<usize> = (0..messages.len()).collect();
        for attempt in 0..ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
            }
            let mut failed = Vec::new();
            let mut batch: Vec<(usize, &OutgoingMessage)> = Vec::new();
            let mut size = 0;
            for &i in &pending {
                let message = &messages[i];
                let len = message.body.len();
                if !batch.is_empty()
                    && (batch.len() == MAX_BATCH_ENTRIES || size + len > MAX_BATCH_BYTES)
                {
                    failed.extend(self.send_batch(&batch).await);
                    batch.clear();
                    size = 0;
                }
                size += len;
                batch.push((i, message));
            }
            if !batch.is_empty() {
                failed.extend(self.send_batch(&batch).await);
            }
            for &i in &pending {
                if !failed.contains(&i) {
                    sent[i] = true;
                }
            }
            pending = failed;
        }
        sent
    }
}
