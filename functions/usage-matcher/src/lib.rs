//! The usage matcher, triggered by the FIFO usage queue: decode the batch, hand each lane's
//! messages, in order, to [`billing::matcher::Matcher`], and report failures per message
//! (`ReportBatchItemFailures`). A lane's messages after one that fails (or cannot be decoded)
//! are reported failed too, so the lane is retried in order; a message that can never be
//! decoded fails every time and, after the queue's redrive limit, lands in the dead-letter
//! queue. Retrying is safe: nothing counts twice.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use billing::matcher::{LaneMessage, Matcher};
use billing::usage::{Lane, MESSAGE_VERSION, QueuedEvents};
use lambda_runtime::{Error, LambdaEvent};

/// Handles one SQS batch.
#[tracing::instrument(skip_all, fields(
    request_id = %event.context.request_id,
    messages = event.payload.records.len(),
))]
pub async fn handle(
    matcher: &Matcher,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    // Each lane's messages in delivery order, up to the first that cannot be decoded; that one
    // and every later message of its lane are reported failed.
    let mut batch: Vec<(String, LaneMessage)> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    let mut blocked: Vec<Option<Lane>> = Vec::new();
    for record in event.payload.records {
        let id = record.message_id.unwrap_or_default();
        let group = record.attributes.get("MessageGroupId").cloned();
        if group.is_some() && blocked.contains(&group.as_deref().and_then(lane_of_group)) {
            failed.push(id);
            continue;
        }
        match record
            .body
            .as_deref()
            .map(serde_json::from_str::<QueuedEvents>)
        {
            Some(Ok(queued)) if queued.v == MESSAGE_VERSION => {
                let lane = Lane::of(&queued.nonce);
                if blocked.contains(&Some(lane)) {
                    failed.push(id);
                    continue;
                }
                let message = LaneMessage {
                    nonce: queued.nonce,
                    lane,
                    events: queued.events,
                };
                batch.push((id, message));
            }
            other => {
                match other {
                    Some(Ok(queued)) => {
                        tracing::error!(message = %id, version = queued.v, "unknown message version")
                    }
                    Some(Err(e)) => {
                        tracing::error!(message = %id, error = %e, "malformed usage message")
                    }
                    None => tracing::error!(message = %id, "usage message without a body"),
                }
                blocked.push(group.as_deref().and_then(lane_of_group));
                failed.push(id);
            }
        }
    }
    let (ids, messages): (Vec<String>, Vec<LaneMessage>) = batch.into_iter().unzip();
    let lanes: Vec<Lane> = messages.iter().map(|m| m.lane).collect();
    for (lane, outcome) in matcher.process_lanes(messages).await {
        match outcome {
            Ok(report) => tracing::info!(
                lane = lane.number(),
                recorded = report.recorded,
                duplicates = report.duplicates,
                redelivered = report.redelivered,
                record_writes = report.record_writes,
                lane_writes = report.lane_writes,
                statuses = ?report.by_status,
                "usage lane matched"
            ),
            Err(e) => {
                tracing::error!(lane = lane.number(), error = %e, "usage lane not fully matched; it will be redelivered");
                failed.extend(
                    ids.iter()
                        .zip(&lanes)
                        .filter(|(_, l)| **l == lane)
                        .map(|(id, _)| id.clone()),
                );
            }
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

/// The lane a FIFO message group names (`lane-07`).
fn lane_of_group(group: &str) -> Option<Lane> {
    group
        .strip_prefix("lane-")
        .and_then(|n| n.parse().ok())
        .map(Lane::new)
}
