//! Lambda entry point of the Stripe webhook receiver (API Gateway HTTP API route).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let webhooks = billing::webhooks_from_env().await?;
    lambda_http::run(stripe_webhook::app(webhooks)).await
}
