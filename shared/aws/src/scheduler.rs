//! One-time auto-pay retries as EventBridge Scheduler `at(...)` schedules that invoke the
//! billing-run function with `{"kind": "retry", "invoiceId": …}` and delete themselves after.

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target,
};
use chrono::{DateTime, Utc};

use billing::error::{Error, Result};
use billing::ids::InvoiceId;
use billing::ports::RetryScheduler;

/// Creates schedules targeting the billing-run function. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBridgeRetryScheduler {
    client: Client,
    target_arn: String,
    role_arn: String,
    group: String,
}

impl EventBridgeRetryScheduler {
    /// Schedules in `group` that invoke `target_arn` (the billing-run function) with
    /// `role_arn`.
    pub fn new(
        config: &aws_config::SdkConfig,
        target_arn: impl Into<String>,
        role_arn: impl Into<String>,
        group: impl Into<String>,
    ) -> Self {
        Self {
            client: Client::new(config),
            target_arn: target_arn.into(),
            role_arn: role_arn.into(),
            group: group.into(),
        }
    }
}

#[async_trait]
impl RetryScheduler for EventBridgeRetryScheduler {
    async fn schedule_retry(
        &self,
        invoice: &InvoiceId,
        attempt: u32,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let input = serde_json::json!({
            "kind": "retry",
            "invoiceId": invoice.as_str(),
            "time": "<aws.scheduler.scheduled-time>",
        })
        .to_string();
        let target = Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(input)
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| Error::internal(e.to_string()))?;
        let result = self
            .client
            .create_schedule()
            // One per invoice and attempt, so creating it twice is a no-op.
            .name(billing::idempotency::retry_schedule(invoice, attempt))
            .group_name(&self.group)
            .schedule_expression(format!("at({})", at.format("%Y-%m-%dT%H:%M:%S")))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target(target)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = e.into_service_error();
                if e.is_conflict_exception() {
                    Ok(()) // already scheduled by an earlier try of this attempt
                } else {
                    Err(Error::unavailable(format!(
                        "cannot schedule the retry: {e}"
                    )))
                }
            }
        }
    }
}
