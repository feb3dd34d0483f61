//! The daily billing run, triggered by EventBridge Scheduler with the payload set in
//! template.yaml (`{"kind": "daily", "time": "<aws.scheduler.scheduled-time>"}`), and the
//! one-time auto-pay retries it schedules (`{"kind": "retry", "invoiceId": …, "time": …}`).
//! The rules are in `billing::billing_run`; this decodes the event and reports.

use billing::billing_run::{BillingRun, RunReport};
use billing::ids::InvoiceId;
use chrono::{DateTime, Utc};
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};

/// What the scheduler sends: the scheduled instant is the run date, so a delayed or retried
/// invocation still bills the day it was meant for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum ScheduledRun {
    /// The daily pass.
    #[serde(rename_all = "camelCase")]
    Daily {
        /// The scheduled time; its UTC date is the run date.
        time: DateTime<Utc>,
    },
    /// One invoice's auto-pay retry.
    #[serde(rename_all = "camelCase")]
    Retry {
        /// Which invoice.
        invoice_id: String,
        /// The scheduled time.
        time: DateTime<Utc>,
    },
}

/// Runs the pass the event asks for. An `Err` is a failed invocation, which the scheduler's
/// retry policy retries (safe: the run is idempotent); per-invoice failures are in the report
/// and those invoices stay on the agenda.
#[tracing::instrument(skip_all, fields(request_id = %event.context.request_id))]
pub async fn handle(
    run: &BillingRun,
    event: LambdaEvent<ScheduledRun>,
) -> Result<RunReport, Error> {
    let report = match event.payload {
        ScheduledRun::Daily { time } => {
            run.run_daily(time.date_naive(), run.now().max(time))
                .await?
        }
        ScheduledRun::Retry { invoice_id, time } => {
            let id = InvoiceId::parse(&invoice_id)?;
            run.retry(&id, run.now().max(time)).await?
        }
    };
    tracing::info!(report = ?report, "billing run finished");
    Ok(report)
}
