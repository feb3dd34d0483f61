//! Lambda entry point of the REST API: build the domain once per cold start, then serve.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let billing = billing_startup::Startup::from_env().await?.billing()?;
    lambda_http::run(api::app(billing)).await
}
