//! The billing domain: customers, API keys, meters, plans, contracts and invoices (usage
//! matching and payment come in later stages). Rules live here; Lambda functions only decode events, call
//! [`service::Billing`], and encode results. AWS appears only under [`adapters`].

pub mod adapters;
pub mod aggregation;
pub mod api_key;
pub mod change;
pub mod contract;
pub mod customer;
pub mod error;
pub mod ids;
pub mod invoice;
pub mod matcher;
pub mod meter;
pub mod money;
pub mod pagination;
pub mod period;
pub mod plan;
pub mod pricing;
pub mod service;
pub mod store;
mod text;
pub mod usage;

pub use error::{Error, ErrorKind, Result};
pub use service::Billing;

use std::sync::Arc;

/// Builds the use cases over DynamoDB from the standard environment (`TABLE_NAME`,
/// `BOOTSTRAP_API_KEY_SHA256`, AWS variables). Every entry point starts from this.
pub async fn billing_from_env() -> Result<Billing> {
    let config = adapters::aws_config().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::from_config(&config)?);
    let bootstrap_key = match std::env::var("BOOTSTRAP_API_KEY_SHA256") {
        Ok(hex) if !hex.is_empty() => Some(api_key::SecretDigest::from_hex(&hex)?),
        _ => None,
    };
    let billing = Billing::new(store, Arc::new(service::SystemClock), bootstrap_key);
    Ok(match std::env::var("USAGE_QUEUE_URL") {
        Ok(url) if !url.is_empty() => billing.with_queue(Arc::new(
            adapters::sqs::SqsEventQueue::from_config(&config)?,
        )),
        _ => billing,
    })
}

/// Builds the usage matcher over DynamoDB from the standard environment.
pub async fn matcher_from_env() -> Result<matcher::Matcher> {
    let config = adapters::aws_config().await;
    let store = Arc::new(adapters::dynamodb::DynamoStore::from_config(&config)?);
    Ok(matcher::Matcher::new(
        store.clone(),
        store,
        Arc::new(service::SystemClock),
    ))
}
