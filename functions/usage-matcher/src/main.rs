//! Lambda entry point of the usage matcher (SQS event source with ReportBatchItemFailures).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let matcher = billing_startup::Startup::from_env().await?.matcher();
    let matcher = &matcher;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        usage_matcher::handle(matcher, event)
    }))
    .await
}
