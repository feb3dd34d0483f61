//! The HTTP edge, shared by every function that speaks HTTP (the API, the Stripe webhook
//! receiver, the dashboard) and by the dev server: the one mapping from domain errors to HTTP
//! answers ([`error`]), the extractors that parse requests at the edge ([`extract`]), the
//! fallbacks, a tracing span per request ([`trace`]), the payment portal's pages
//! ([`portal`]), and each resource's JSON representation ([`views`]). The domain returns outcomes; this crate renders them.

pub mod error;
pub mod extract;
pub mod portal;
pub mod trace;
pub mod views;

pub use error::{ApiError, method_not_allowed, route_not_found};

/// The largest request body a route accepts by default (1 MiB): far above any valid customer,
/// and below Lambda's 6 MB payload limit so an oversize body gets our 413 rather than a
/// gateway error.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
