//! The billing domain: customers, API keys, meters, plans, contracts, invoices, usage matching
//! ([`matcher`]), the billing run ([`billing_run`]), the payment provider's webhooks
//! ([`provider_webhooks`]), the payment portal ([`portal`]) and outgoing webhooks ([`webhooks`]).
//!
//! Rooms: domain types and their rules at the top level (`customer`, `plan`, `invoice`, ...);
//! the use cases the API calls in [`use_cases`], one file per resource; the ports to the
//! outside world in [`ports`]. This crate knows no AWS, Stripe, HTTP or Lambda type and reads
//! no environment: adapters live in `billing-aws` and `billing-stripe`, the HTTP edge in
//! `billing-http`, and `billing-startup` reads the configuration and wires them together.
//! [`testing`] (feature `testing`) implements every port in memory.

pub mod aggregation;
pub mod api_key;
pub mod billing_run;
pub mod change;
pub mod concurrency;
pub mod contract;
pub mod customer;
pub mod error;
pub mod idempotency;
pub mod ids;
pub mod invoice;
pub mod lanes;
pub mod mail;
pub mod matcher;
pub mod meter;
pub mod money;
pub mod pagination;
pub mod period;
pub mod plan;
pub mod portal;
pub mod ports;
pub mod pricing;
pub mod provider_webhooks;
pub mod refunds;
pub mod tally;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod text;
pub mod totals;
pub mod usage;
pub mod use_cases;
pub mod webhooks;

pub use error::{Error, ErrorKind, Result};
pub use use_cases::Billing;
