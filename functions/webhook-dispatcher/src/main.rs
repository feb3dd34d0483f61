//! Lambda entry point of the webhook dispatcher (its SQS queue, and a sweep every minute).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let startup = billing_startup::Startup::from_env().await?;
    let runtime = webhook_dispatcher::Runtime {
        dispatcher: startup.dispatcher()?,
        sqs: aws_sdk_sqs::Client::new(startup.aws()),
        queue_url: startup
            .config()
            .webhooks
            .queue_url
            .clone()
            .unwrap_or_default(),
    };
    let runtime = &runtime;
    lambda_runtime::run(lambda_runtime::service_fn(move |event| {
        webhook_dispatcher::handle(runtime, event)
    }))
    .await
}
