//! Lambda entry point of the Stripe webhook receiver (API Gateway HTTP API route).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let startup = billing_startup::Startup::from_env().await?;
    let app = match startup.webhooks() {
        Ok(webhooks) => stripe_webhook::app(webhooks, startup.clock()),
        Err(e) => {
            tracing::error!(error = %e, "Stripe webhooks are off");
            stripe_webhook::unconfigured(e.message)
        }
    };
    lambda_http::run(app).await
}
