//! `make dev` runs this: the whole API on http://127.0.0.1:$PORT against the local emulators.

use dev_server::Options;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    lambda_http::tracing::init_default_subscriber();
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3000);
    let key = std::env::var("LOCAL_API_KEY").unwrap_or_else(|_| "sk_local_dev".to_owned());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let running = dev_server::start(
        listener,
        Options {
            seed_api_key: Some(key.clone()),
            poll_usage_queue: true,
            usage_queue_url: None,
            dispatch_webhooks: true,
        },
    )
    .await?;
    let url = running.url();
    println!(
        "\nBilling API on {url}  (API key, scope *: {key})\n\
         Dashboard: {url}/dashboard  (sign in with the API key above)\n\
         Try:\n  curl -s -X POST {url}/v1/customers -H 'Authorization: Bearer {key}' \
         -H 'Content-Type: application/json' -d '{{\"name\": \"Acme\", \"externalCustomerId\": \"acme-1\"}}'\n  \
         curl -s {url}/v1/customers -H 'Authorization: Bearer {key}'\n\
         Test clock: curl -s -X POST {url}/_local/clock -H 'Content-Type: application/json' \
         -d '{{\"now\": \"2027-01-01T00:15:00Z\"}}'   (GET reads it, DELETE returns to real time)\n\
         Billing run for the clock's day: curl -s -X POST {url}/_local/run/billing   (or ?date=YYYY-MM-DD)\n"
    );
    running.wait().await;
    Ok(())
}
