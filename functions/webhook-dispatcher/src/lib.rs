//! The webhook dispatcher, invoked two ways:
//! - by its SQS queue (`ReportBatchItemFailures`): each message is a [`Job`]; a job that is not
//!   due yet ([`Outcome::RetryIn`]) is held invisible until it is (up to 12 hours at a time)
//!   and reported failed, so SQS hands it out again then; a job that fails is retried by SQS
//!   and, after the redrive limit, kept in the dead-letter queue;
//! - by EventBridge Scheduler every minute with `{"kind": "sweep"}`: re-queue what lost its job.
//!
//! The rules are in `billing::webhooks`; this decodes, calls, and encodes.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use billing::webhooks::{Dispatcher, Job, Outcome};
use futures_util::StreamExt;
use lambda_runtime::{Error, LambdaEvent};
use serde::Deserialize;

/// Messages of one batch handled at once (each may wait up to 10 s on a receiver).
const CONCURRENT_JOBS: usize = 10;

/// What invokes the function.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Invocation {
    /// The schedule's sweep.
    Sweep(Sweep),
    /// A batch from the queue.
    Queue(SqsEvent),
}

/// `{"kind": "sweep"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Always `sweep`.
    pub kind: SweepKind,
}

/// The only kind of scheduled invocation.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SweepKind {
    /// Re-queue lost jobs, send pending alerts.
    Sweep,
}

/// The dispatcher and the queue its jobs come from (to hold jobs not due yet).
pub struct Runtime {
    /// The rules.
    pub dispatcher: Dispatcher,
    /// The queue's client.
    pub sqs: aws_sdk_sqs::Client,
    /// The queue's URL.
    pub queue_url: String,
}

/// Handles one invocation; answers the batch's failures, or the sweep's report.
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn handle(
    runtime: &Runtime,
    event: LambdaEvent<Invocation>,
) -> Result<serde_json::Value, Error> {
    match event.payload {
        Invocation::Sweep(_) => Ok(serde_json::to_value(runtime.dispatcher.sweep().await?)?),
        Invocation::Queue(batch) => {
            let failures: Vec<BatchItemFailure> = futures_util::stream::iter(batch.records)
                .map(|message| run(runtime, message))
                .buffer_unordered(CONCURRENT_JOBS)
                .filter_map(|failed| async move { failed })
                .collect()
                .await;
            let mut response = SqsBatchResponse::default();
            response.batch_item_failures = failures;
            Ok(serde_json::to_value(response)?)
        }
    }
}

/// Runs one message's job; `Some` when the message must come back (held, or failed).
async fn run(runtime: &Runtime, message: SqsMessage) -> Option<BatchItemFailure> {
    let id = message.message_id.clone().unwrap_or_default();
    let failed = || {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id.clone();
        Some(failure)
    };
    let job: Job = match message.body.as_deref().map(serde_json::from_str) {
        Some(Ok(job)) => job,
        other => {
            tracing::error!(message = %id, problem = ?other.map(|r| r.err()), "malformed webhook job");
            return failed();
        }
    };
    match runtime.dispatcher.handle(&job).await {
        Ok(Outcome::Done) => None,
        Ok(Outcome::RetryIn(wait)) => {
            let receipt = message.receipt_handle.as_deref().unwrap_or_default();
            if let Err(e) =
                billing_aws::webhook_queue::hold(&runtime.sqs, &runtime.queue_url, receipt, wait)
                    .await
            {
                tracing::warn!(message = %id, error = %e, "job not held; it comes back sooner");
            }
            failed()
        }
        Err(e) => {
            tracing::error!(message = %id, job = ?job, error = %e, "webhook job failed; SQS retries it");
            failed()
        }
    }
}
