//! The daily billing run, triggered by EventBridge Scheduler with the payload set in
//! template.yaml (`{"kind": "daily", "time": "<aws.scheduler.scheduled-time>"}`). Not built yet:
//! it fails loudly so the scheduler's retry policy and alarms see it, rather than reporting a
//! run that did nothing.

use chrono::{DateTime, Utc};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};

/// What the scheduler sends: the scheduled instant is the run date, so a delayed or retried
/// invocation still bills the day it was meant for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledRun {
    /// `daily` for the daily run.
    pub kind: String,
    /// The scheduled time; its UTC date is the run date.
    pub time: DateTime<Utc>,
}

/// What a finished run reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The run date (UTC).
    pub date: chrono::NaiveDate,
}

/// Runs the daily pass for the event's date.
pub async fn handle(event: LambdaEvent<ScheduledRun>) -> Result<RunReport, Error> {
    Err(format!(
        "billing-run is not implemented yet (run date {})",
        event.payload.time.date_naive()
    )
    .into())
}
