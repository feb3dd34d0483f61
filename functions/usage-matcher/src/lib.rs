//! Matches queued usage events to invoice lines. Not built yet: until it is, every batch fails
//! loudly, so its messages stay on the queue (and reach the dead-letter queue after the redrive
//! limit) instead of being acknowledged and lost.

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent};

/// Handles one SQS batch. Returns an error for the whole batch: nothing is matched yet, and an
/// acknowledged event would be a lost event.
pub async fn handle(event: LambdaEvent<SqsEvent>) -> Result<SqsBatchResponse, Error> {
    Err(format!(
        "usage-matcher is not implemented yet: {} message(s) left on the queue for redelivery",
        event.payload.records.len()
    )
    .into())
}
