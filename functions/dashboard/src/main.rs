//! Lambda entry point of the dashboard: build the domain and the session signer once per cold
//! start, then serve `/dashboard` and below.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let startup = billing_startup::Startup::from_env().await?;
    let settings = dashboard::Settings::from_config(startup.config())?;
    lambda_http::run(dashboard::app(startup.billing()?, settings)).await
}
