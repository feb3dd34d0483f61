//! Adapters: the only code that knows about AWS. Each implements ports from `crate::store` or
//! `crate::payments` (Stripe, SES, EventBridge Scheduler) and is built from the standard AWS environment, so the
//! same binary talks to DynamoDB Local, moto, LocalStack or AWS depending on `AWS_ENDPOINT_URL*`.

pub mod dynamodb;
pub mod scheduler;
pub mod ses;
pub mod sqs;
pub mod stripe;

/// Loads AWS configuration the standard way (environment, profile, or the Lambda role), with
/// endpoint overrides from `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>`.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}
