//! The SQS event source mapping in miniature: long-poll a queue, hand its function (the usage
//! matcher, the webhook dispatcher) a real `SqsEvent` batch, delete what it processed and leave
//! what it reported as failed (partial batch response) for redelivery after the visibility
//! timeout (or the one the function set), as Lambda does.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName,
};
use billing::matcher::Matcher;
use lambda_http::{Context, LambdaEvent};
use serde_json::{Value, json};

/// Messages per batch: SQS's maximum for one receive call.
const BATCH_SIZE: i32 = 10;

/// A function an SQS queue invokes.
#[async_trait]
pub trait Consumer: Send + Sync {
    /// Its name, for logs.
    fn name(&self) -> &'static str;

    /// Handles a batch as its Lambda handler does.
    async fn invoke(&self, event: SqsEvent) -> Result<SqsBatchResponse, String>;
}

#[async_trait]
impl Consumer for Matcher {
    fn name(&self) -> &'static str {
        "usage-matcher"
    }

    async fn invoke(&self, event: SqsEvent) -> Result<SqsBatchResponse, String> {
        usage_matcher::handle(self, LambdaEvent::new(event, Context::default()))
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Consumer for webhook_dispatcher::Runtime {
    fn name(&self) -> &'static str {
        "webhook-dispatcher"
    }

    async fn invoke(&self, event: SqsEvent) -> Result<SqsBatchResponse, String> {
        let invocation = webhook_dispatcher::Invocation::Queue(event);
        let answer =
            webhook_dispatcher::handle(self, LambdaEvent::new(invocation, Context::default()))
                .await
                .map_err(|e| e.to_string())?;
        serde_json::from_value(answer).map_err(|e| format!("not a batch response: {e}"))
    }
}

/// Polls `queue_url` until the task is dropped, invoking `consumer` per batch.
pub async fn poll<C: Consumer>(client: Client, queue_url: String, consumer: C) {
    let arn = queue_arn(&client, &queue_url).await;
    loop {
        match poll_once(&client, &queue_url, &arn, &consumer).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, queue = %queue_url, "SQS poll failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn queue_arn(client: &Client, queue_url: &str) -> String {
    client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .ok()
        .and_then(|out| out.attributes)
        .and_then(|mut attrs| attrs.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default()
}

/// One receive → invoke → delete cycle. Returns how many messages were received.
pub async fn poll_once<C: Consumer>(
    client: &Client,
    queue_url: &str,
    arn: &str,
    consumer: &C,
) -> Result<usize, String> {
    let received = client
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(BATCH_SIZE)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .send()
        .await
        .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    let messages = received.messages.unwrap_or_default();
    if messages.is_empty() {
        return Ok(0);
    }
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: HashMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": arn,
                "awsRegion": arn.split(':').nth(3).unwrap_or("us-east-1"),
            })
        })
        .collect();
    let event: SqsEvent = serde_json::from_value(json!({ "Records": records }))
        .map_err(|e| format!("cannot build SqsEvent: {e}"))?;
    let processed: Vec<_> = match consumer.invoke(event).await {
        Ok(SqsBatchResponse {
            batch_item_failures,
            ..
        }) => {
            let failed: Vec<String> = batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect();
            messages
                .iter()
                .filter(|m| !failed.iter().any(|id| Some(id.as_str()) == m.message_id()))
                .collect()
        }
        Err(e) => {
            // Like Lambda: a failed invocation acknowledges nothing; the batch comes back.
            tracing::error!(error = %e, messages = messages.len(), function = consumer.name(), "the function failed the batch");
            Vec::new()
        }
    };
    if !processed.is_empty() {
        let entries = processed
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()?;
        client
            .delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
    }
    Ok(messages.len())
}
