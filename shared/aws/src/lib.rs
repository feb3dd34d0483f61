//! The AWS adapters of the billing ports, and nothing else that knows AWS: DynamoDB implements
//! every store port ([`dynamodb`]), SQS the usage queue ([`sqs`]) and the webhook dispatcher's ([`webhook_queue`]), SES mail ([`ses`]) and
//! EventBridge Scheduler the auto-pay retries ([`scheduler`]). Each is built from an
//! [`aws_config::SdkConfig`] and explicit settings (the configuration is read once, by
//! `billing-startup`), so the same binary talks to DynamoDB Local, moto, LocalStack or AWS
//! depending on the standard `AWS_ENDPOINT_URL*` variables.

pub mod dynamodb;
pub mod scheduler;
pub mod ses;
pub mod sqs;
pub mod webhook_queue;

/// Loads AWS configuration the standard way (environment, profile, or the Lambda role), with
/// endpoint overrides from `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
