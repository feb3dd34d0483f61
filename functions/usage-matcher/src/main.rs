//! Lambda entry point of the usage matcher (SQS event source with ReportBatchItemFailures).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(lambda_runtime::service_fn(usage_matcher::handle)).await
}
