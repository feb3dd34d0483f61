//! The ports: what the domain needs from the outside world, in its own terms. Storage
//! ([`store`]), the payment provider, mail and retry schedules ([`payments`]), and time
//! ([`clock`]), and outgoing webhooks ([`webhooks`]). Adapters in other crates implement them (`billing-aws`, `billing-stripe`);
//! [`crate::testing`] implements every one in memory.

pub mod clock;
pub mod payments;
pub mod store;
pub mod webhooks;

pub use clock::{Clock, SystemClock};
pub use payments::*;
pub use store::*;
pub use webhooks::*;
