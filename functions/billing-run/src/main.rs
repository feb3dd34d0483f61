//! Lambda entry point of the daily billing run (EventBridge Scheduler target).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let run = billing_startup::Startup::from_env().await?.billing_run()?;
    let run = &run;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        billing_run::handle(run, event)
    }))
    .await
}
