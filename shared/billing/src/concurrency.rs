//! Optimistic concurrency, written once. Every versioned write in the platform (a customer
//! patch, a contract change, an invoice transition, a usage commit) is conditioned on the
//! version it read; when another writer got there first the store answers
//! [`Write::Conflict`] and the use case re-reads and re-applies its change. This module holds
//! that loop and the one attempt policy every caller shares.

use std::future::Future;
use std::time::Duration;

use crate::error::{Error, Result};

/// How many times a change is re-read and re-applied (or a transient failure retried) before
/// the caller gives up with a 409 `concurrent_modification` (or the failure itself). With the
/// backoff below that is about 2.5 s of trying: enough to ride out a burst of writers on one
/// item, short enough to answer an API client well within its timeout.
pub const ATTEMPTS: u32 = 8;

/// The outcome of a write conditioned on the version (or state) it was based on.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Written.
    Done,
    /// Nothing written: the stored value moved on since it was read.
    Conflict,
}

/// What one attempt of a change decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt<T> {
    /// Finished (written, or nothing to do): the loop ends with this value.
    Done(T),
    /// Lost a race: read again and re-apply.
    Conflict,
}

impl Write {
    /// The attempt this write makes: done with `value` when written, else another round.
    pub fn into_attempt<T>(self, value: T) -> Attempt<T> {
        match self {
            Write::Done => Attempt::Done(value),
            Write::Conflict => Attempt::Conflict,
        }
    }
}

/// Runs `attempt` (read, decide, conditional write) until it is done, at most [`ATTEMPTS`]
/// times, backing off between tries so racing writers spread out. `what` names the contended
/// thing in the 409 a caller gets when every attempt lost ("this contract").
pub async fn retry_on_conflict<T, F, Fut>(what: &str, mut attempt: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Attempt<T>>>,
{
    for n in 0..ATTEMPTS {
        if n > 0 {
            tokio::time::sleep(backoff(n)).await;
        }
        match attempt().await? {
            Attempt::Done(value) => return Ok(value),
            Attempt::Conflict => {
                tracing::debug!(what, attempt = n + 1, "lost a write race; re-reading");
            }
        }
    }
    Err(busy(what))
}

/// The 409 for a change that lost every race.
pub fn busy(what: &str) -> Error {
    Error::conflict(
        "concurrent_modification",
        format!("{what} kept changing under other requests; retry"),
    )
}

/// The pause before attempt `n` (1-based): 10 ms × 2^n, capped at 640 ms, scaled by a random
/// factor in [0.5, 1.0) so that writers colliding on one item do not collide again.
pub fn backoff(n: u32) -> Duration {
    let base = 10u64 << n.min(6);
    let jitter = u64::from(getrandom::u32().unwrap_or(0) % 512);
    Duration::from_millis(base / 2 + base * jitter / 1024)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_conflicts_and_stops_at_the_first_done() {
        let calls = AtomicU32::new(0);
        let value = retry_on_conflict("the thing", || async {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            Ok(if n < 3 {
                Attempt::Conflict
            } else {
                Attempt::Done(n)
            })
        })
        .await
        .unwrap();
        assert_eq!((value, calls.load(Ordering::SeqCst)), (3, 4));
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_policy_with_a_409_naming_the_thing() {
        let calls = AtomicU32::new(0);
        let e = retry_on_conflict::<(), _, _>("this contract", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Attempt::Conflict)
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(Ordering::SeqCst), ATTEMPTS);
        assert_eq!(e.code, "concurrent_modification");
        assert!(e.message.contains("this contract"), "{}", e.message);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_loop_at_once() {
        let calls = AtomicU32::new(0);
        let e = retry_on_conflict::<(), _, _>("x", || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(Error::internal("boom"))
        })
        .await
        .unwrap_err();
        assert_eq!(
            (calls.load(Ordering::SeqCst), e.code.as_ref()),
            (1, "internal_error")
        );
    }

    #[test]
    fn backoff_grows_and_stays_capped() {
        for n in 1..20 {
            let d = backoff(n);
            let base = 10u64 << n.min(6);
            assert!(d >= Duration::from_millis(base / 2) && d < Duration::from_millis(base));
        }
    }
}
