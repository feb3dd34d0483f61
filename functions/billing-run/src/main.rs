//! Lambda entry point of the daily billing run (EventBridge Scheduler target).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    lambda_runtime::run(lambda_runtime::service_fn(billing_run::handle)).await
}
