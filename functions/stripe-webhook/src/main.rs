//! Lambda entry point of the Stripe webhook receiver (API Gateway HTTP API route).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let app = match billing::webhooks_from_env().await {
        Ok(webhooks) => stripe_webhook::app(webhooks),
        Err(e) => {
            tracing::error!(error = %e, "Stripe webhooks are off");
            stripe_webhook::unconfigured(e.message)
        }
    };
    lambda_http::run(app).await
}
