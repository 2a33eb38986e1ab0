//! Whether a time daemon is there.
//!
//! A host runs one of ntpd and chronyd, or neither. chronyd serving on :123
//! silently drops mode-6 packets, so a naive ntpd collector would wait its
//! whole timeout on every scrape of every chrony host. [`Presence`] remembers
//! that a daemon did not answer: scrapes then skip it at once, and it is
//! probed again in the background with exponential backoff.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// First retry delay after a daemon stops answering.
pub const MIN_BACKOFF: Duration = Duration::from_secs(5);
/// Longest retry delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What a scrape should do about the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Query it in this scrape (it answered last time, or was never tried).
    Query,
    /// Known absent; do not wait on it. Report it down.
    Skip,
    /// Known absent, and a retry is due: report it down now, and probe it in
    /// the background (the caller spawns the probe and records its outcome).
    SkipAndProbe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Unknown,
    Up,
    Down {
        next_retry: Instant,
        backoff: Duration,
        probing: bool,
    },
}

/// Presence tracking for one daemon.
#[derive(Debug)]
pub struct Presence {
    name: &'static str,
    explicit: bool,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    state: State,
    /// Whether the daemon ever answered.
    seen: bool,
}

impl Presence {
    /// `explicit` is true when the user configured the daemon's address: then
    /// `clock_daemon_up` is published even before the daemon was ever seen.
    pub fn new(name: &'static str, explicit: bool) -> Presence {
        Presence {
            name,
            explicit,
            inner: Mutex::new(Inner {
                state: State::Unknown,
                seen: false,
            }),
        }
    }

    /// Decides what this scrape does.
    pub fn gate(&self, now: Instant) -> Gate {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match &mut inner.state {
            State::Unknown | State::Up => Gate::Query,
            State::Down {
                next_retry,
                probing,
                ..
            } => {
                if *probing || now < *next_retry {
                    Gate::Skip
                } else {
                    *probing = true;
                    Gate::SkipAndProbe
                }
            }
        }
    }

    /// Records the outcome of a query or probe; logs once per state change.
    pub fn record(&self, now: Instant, result: Result<(), &str>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let Inner { state, seen } = &mut *inner;
        match result {
            Ok(()) => {
                if *state != State::Up {
                    tracing::info!(daemon = self.name, "time daemon is answering");
                }
                *state = State::Up;
                *seen = true;
            }
            Err(why) => {
                let backoff = match *state {
                    State::Down { backoff, .. } => (backoff * 2).min(MAX_BACKOFF),
                    State::Up | State::Unknown => {
                        // Unknown → Down is the usual "not installed here":
                        // worth a line at info, not a warning.
                        if *state == State::Up {
                            tracing::warn!(
                                daemon = self.name,
                                error = why,
                                "time daemon stopped answering"
                            );
                        } else {
                            tracing::info!(
                                daemon = self.name,
                                error = why,
                                "time daemon not answering; will retry with backoff"
                            );
                        }
                        MIN_BACKOFF
                    }
                };
                *state = State::Down {
                    next_retry: now + backoff,
                    backoff,
                    probing: false,
                };
            }
        }
    }

    /// Whether `clock_daemon_up` should be published: the daemon was seen at
    /// least once, or its address was configured explicitly.
    pub fn publish_up(&self) -> bool {
        self.explicit
            || self
                .inner
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_daemon_is_skipped_and_retried_with_backoff() {
        let p = Presence::new("ntpd", false);
        let t0 = Instant::now();
        assert_eq!(p.gate(t0), Gate::Query);
        p.record(t0, Err("timeout"));
        assert!(!p.publish_up());
        // Within the backoff: skipped without waiting.
        assert_eq!(p.gate(t0 + Duration::from_secs(1)), Gate::Skip);
        // Due: one probe, and only one while it runs.
        let t1 = t0 + MIN_BACKOFF;
        assert_eq!(p.gate(t1), Gate::SkipAndProbe);
        assert_eq!(p.gate(t1), Gate::Skip);
        p.record(t1, Err("timeout"));
        // Backoff doubled.
        assert_eq!(p.gate(t1 + MIN_BACKOFF), Gate::Skip);
        assert_eq!(p.gate(t1 + MIN_BACKOFF * 2), Gate::SkipAndProbe);
        p.record(t1 + MIN_BACKOFF * 2, Ok(()));
        assert_eq!(p.gate(t1 + MIN_BACKOFF * 2), Gate::Query);
        assert!(p.publish_up());
    }

    #[test]
    fn backoff_is_capped_and_explicit_daemons_always_publish() {
        let p = Presence::new("chronyd", true);
        assert!(p.publish_up());
        let mut t = Instant::now();
        p.record(t, Err("refused"));
        for _ in 0..20 {
            t += MAX_BACKOFF;
            assert_eq!(p.gate(t), Gate::SkipAndProbe);
            p.record(t, Err("refused"));
        }
        assert_eq!(p.gate(t + MAX_BACKOFF - Duration::from_secs(1)), Gate::Skip);
        assert_eq!(p.gate(t + MAX_BACKOFF), Gate::SkipAndProbe);
    }
}
