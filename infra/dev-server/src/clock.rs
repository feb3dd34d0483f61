//! The local stack's test clock: `POST /_local/clock` freezes "now" at a chosen instant for
//! everything the dev server hosts (the API, the matcher, the billing run, the portal, the
//! Stripe receiver's effects), `GET` reads it, `DELETE` returns to real time. Like a Stripe test
//! clock it stands still until moved, so a script can bill months in seconds and get the same
//! result every time. It lives here, in the one crate that is never deployed: the Lambda
//! binaries are built from `functions/` and read the system clock.

use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use billing::ports::{Clock, SystemClock};
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// Real time until set; then the instant it was set to, until set again or reset.
#[derive(Debug, Default)]
pub struct SimulatedClock {
    frozen: RwLock<Option<DateTime<Utc>>>,
}

impl SimulatedClock {
    /// Freezes "now" at `now` (to the millisecond, as stored timestamps are).
    pub fn set(&self, now: DateTime<Utc>) {
        *self.write() = Some(now.trunc_subsecs(3));
    }

    /// Goes back to real time.
    pub fn reset(&self) {
        *self.write() = None;
    }

    /// Whether "now" is simulated.
    pub fn is_simulated(&self) -> bool {
        self.read().is_some()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<DateTime<Utc>>> {
        self.frozen
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<DateTime<Utc>>> {
        self.frozen
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> DateTime<Utc> {
        self.read().unwrap_or_else(|| SystemClock.now())
    }
}

/// The body of `POST /_local/clock`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetClock {
    now: String,
}

/// What every clock route answers.
#[derive(Serialize)]
struct ClockState {
    now: DateTime<Utc>,
    simulated: bool,
}

/// `/_local/clock`: GET reads, POST `{"now": "<RFC 3339>"}` sets, DELETE resets.
pub fn routes(clock: Arc<SimulatedClock>) -> Router {
    Router::new()
        .route("/_local/clock", get(read).post(set).delete(reset))
        .with_state(clock)
}

async fn read(State(clock): State<Arc<SimulatedClock>>) -> Json<ClockState> {
    Json(state(&clock))
}

async fn set(
    State(clock): State<Arc<SimulatedClock>>,
    body: Result<Json<SetClock>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return crate::error(
            StatusCode::BAD_REQUEST,
            "invalid_clock",
            "send {\"now\": \"<RFC 3339 time>\"}, e.g. {\"now\": \"2027-01-01T00:15:00Z\"}",
        );
    };
    match DateTime::parse_from_rfc3339(&body.now) {
        Ok(now) => {
            clock.set(now.with_timezone(&Utc));
            tracing::info!(now = %clock.now(), "test clock set");
            Json(state(&clock)).into_response()
        }
        Err(e) => crate::error(
            StatusCode::BAD_REQUEST,
            "invalid_clock",
            &format!("now: {e}; expected an RFC 3339 time such as 2027-01-01T00:15:00Z"),
        ),
    }
}

async fn reset(State(clock): State<Arc<SimulatedClock>>) -> Json<ClockState> {
    clock.reset();
    tracing::info!("test clock back to real time");
    Json(state(&clock))
}

fn state(clock: &SimulatedClock) -> ClockState {
    ClockState {
        now: clock.now(),
        simulated: clock.is_simulated(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stands_still_once_set_and_follows_real_time_after_reset() {
        let clock = SimulatedClock::default();
        assert!(!clock.is_simulated());
        let then: DateTime<Utc> = "2027-03-31T23:59:59.123456Z".parse().unwrap();
        clock.set(then);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.now().to_rfc3339(), "2027-03-31T23:59:59.123+00:00");
        clock.reset();
        assert!((Utc::now() - clock.now()).num_seconds().abs() < 5);
    }
}
