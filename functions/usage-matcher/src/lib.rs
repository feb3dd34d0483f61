//! The SQS-triggered usage matcher: decode the batch, hand its events to
//! [`billing::matcher::Matcher`], and report failures per message (`ReportBatchItemFailures`).
//! A message that cannot be decoded is reported failed every time, so after the queue's
//! redrive limit it lands in the dead-letter queue; a batch whose events could not all be
//! committed is reported failed as a whole and redelivered, which is safe because nothing
//! counts twice.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use billing::matcher::Matcher;
use billing::usage::QueuedEvents;
use lambda_runtime::{Error, LambdaEvent};

/// Handles one SQS batch.
#[tracing::instrument(skip_all, fields(
    request_id = %event.context.request_id,
    messages = event.payload.records.len(),
    batch_size = tracing::field::Empty,
))]
pub async fn handle(
    matcher: &Matcher,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let mut events = Vec::new();
    let mut decoded = Vec::new();
    let mut failed = Vec::new();
    for record in event.payload.records {
        let id = record.message_id.unwrap_or_default();
        match record
            .body
            .as_deref()
            .map(serde_json::from_str::<QueuedEvents>)
        {
            Some(Ok(queued)) if queued.v == 1 => {
                events.extend(queued.events);
                decoded.push(id);
            }
            Some(Ok(queued)) => {
                tracing::error!(message = %id, version = queued.v, "unknown message version");
                failed.push(id);
            }
            Some(Err(e)) => {
                tracing::error!(message = %id, error = %e, "malformed usage message");
                failed.push(id);
            }
            None => {
                tracing::error!(message = %id, "usage message without a body");
                failed.push(id);
            }
        }
    }
    let count = events.len();
    tracing::Span::current().record("batch_size", count);
    match matcher.process(events).await {
        Ok(report) => tracing::info!(
            events = count,
            recorded = report.recorded,
            duplicates = report.duplicates,
            transactions = report.transactions,
            write_actions = report.write_actions,
            statuses = ?report.by_status,
            "usage batch matched"
        ),
        Err(e) => {
            tracing::error!(events = count, error = %e, "usage batch not fully matched; it will be redelivered");
            failed.extend(decoded);
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    Ok(response)
}
