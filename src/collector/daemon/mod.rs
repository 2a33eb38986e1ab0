//! The one shape of every time-daemon collector (ntpd, chrony, and the next
//! ones): a [`DaemonCollector`] owns everything the daemons have in common,
//! and an [`Adapter`] supplies only what differs.
//!
//! The template owns:
//! - presence ([`Presence`]): a daemon that does not answer is skipped at
//!   once by later scrapes and probed again in the background with backoff,
//!   so a host without it costs a scrape nothing;
//! - `clock_daemon_up`, published once the daemon has been seen or when its
//!   address was given explicitly ([`crate::collector::flags::given`]);
//! - request sequence numbers ([`Sequences`]);
//! - one typed error ([`QueryError`]) and what each kind means for the
//!   daemon's presence, `clock_daemon_up` and the collector's success;
//! - the memory an adapter keeps between scrapes (counters), locked so that
//!   readings reach it in order, and updated even when the scrape's timeout
//!   abandons a query (each query runs on a task of its own).
//!
//! An adapter supplies a query, through a transport in [`crate::sys`], and a
//! function from its reading to the shared model ([`crate::model`]) plus its
//! own series. See `docs/architecture.md`, "Adding a daemon collector".

mod presence;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::time::Instant;

#[cfg(test)]
pub use presence::MIN_BACKOFF;
use presence::{Gate, Presence};

use super::{BoxFuture, CollectError, Collected, Collector};
use crate::model::{self, Daemon};

/// How much a query asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Everything a scrape publishes.
    Full,
    /// Only enough to tell whether the daemon answers: the background probe
    /// of a daemon known absent.
    Probe,
}

/// Why a query produced no reading. The kind decides what the template
/// publishes; the text is what the landing page and the log show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Nothing answered: the connection was refused, the socket does not
    /// exist, or no answer came before the deadline. The usual state of a
    /// host without this daemon: `clock_daemon_up` 0, and not a failure.
    Absent(String),
    /// Something other than the daemon answers there (bytes that are not its
    /// protocol): `clock_daemon_up` 0, and a failure.
    Foreign(String),
    /// The daemon answered, but refused or garbled an answer that every
    /// reading needs: `clock_daemon_up` 1, and a failure.
    Unusable(String),
    /// The exporter could not ask: a permission it lacks, a local socket
    /// error: `clock_daemon_up` 0, and a failure.
    Io(String),
}

impl QueryError {
    /// Whether the daemon itself answered.
    pub fn answered(&self) -> bool {
        matches!(self, QueryError::Unusable(_))
    }

    fn message(&self) -> &str {
        match self {
            QueryError::Absent(s)
            | QueryError::Foreign(s)
            | QueryError::Unusable(s)
            | QueryError::Io(s) => s,
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl From<QueryError> for CollectError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Absent(s) => CollectError::NoData(s),
            QueryError::Foreign(s) | QueryError::Unusable(s) => CollectError::Protocol(s),
            QueryError::Io(s) => CollectError::Io(s),
        }
    }
}

/// Request sequence numbers: one counter per collector, starting somewhere
/// else on every run. Numbers are never reused within 2^32 requests (2^16 for
/// mode 6's 16-bit field), so a late answer to an abandoned request, or one
/// meant for a previous exporter process, can never be taken for a new
/// request's.
#[derive(Debug)]
pub struct Sequences(AtomicU32);

impl Sequences {
    /// A counter with a random start; std's `RandomState` is seeded from the
    /// operating system's randomness.
    pub fn new() -> Sequences {
        use std::hash::BuildHasher;
        let start = std::collections::hash_map::RandomState::new().hash_one(std::process::id());
        Sequences(AtomicU32::new(start as u32))
    }

    /// The next number.
    pub fn next(&self) -> u32 {
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

impl Default for Sequences {
    fn default() -> Self {
        Sequences::new()
    }
}

/// What a daemon collector supplies to [`DaemonCollector`].
pub trait Adapter: Send + Sync + 'static {
    /// What one query read, decoded.
    type Reading: Send + 'static;
    /// What the adapter keeps between scrapes (counters, what the daemon
    /// refused before); handed to every query and report, in order.
    type Memory: Default + Send + 'static;

    /// Which daemon: the `daemon` label and the name in log lines.
    const DAEMON: Daemon;

    /// Where the daemon is asked, as messages name it (`udp 127.0.0.1:323`).
    fn endpoint(&self) -> String;

    /// Asks the daemon, within the adapter's own timeout, through a
    /// transport of [`crate::sys`].
    fn query(
        &self,
        depth: Depth,
        sequences: &Sequences,
        memory: &mut Self::Memory,
    ) -> impl Future<Output = Result<Self::Reading, QueryError>> + Send;

    /// The families of a full reading (without `clock_daemon_up`) and the
    /// problems met on the way: a pure function of the reading and the
    /// memory, tested without a daemon.
    fn report(&self, reading: Self::Reading, memory: &mut Self::Memory) -> Collected;
}

/// A time-daemon collector: the template around one [`Adapter`].
#[derive(Debug)]
pub struct DaemonCollector<A: Adapter> {
    adapter: A,
    presence: Presence,
    sequences: Sequences,
    memory: tokio::sync::Mutex<A::Memory>,
    /// Why a scrape skipped the daemon, made once (it is the same every time).
    skipped: String,
}

impl<A: Adapter> DaemonCollector<A> {
    /// The collector around `adapter`; `explicit` when the user configured
    /// the daemon's address, so that `clock_daemon_up` is published before
    /// the daemon was ever seen.
    pub fn new(adapter: A, explicit: bool) -> DaemonCollector<A> {
        let name = A::DAEMON.label();
        DaemonCollector {
            skipped: format!(
                "{name} at {} did not answer; skipped until a background probe finds it",
                adapter.endpoint()
            ),
            adapter,
            presence: Presence::new(name, explicit),
            sequences: Sequences::new(),
            memory: tokio::sync::Mutex::new(A::Memory::default()),
        }
    }

    /// The adapter.
    pub fn adapter(&self) -> &A {
        &self.adapter
    }

    /// The daemon's presence, for tests that start from a known state.
    pub fn presence(&self) -> &Presence {
        &self.presence
    }

    fn down(&self, error: CollectError) -> Collected {
        let mut families = Vec::new();
        if self.presence.publish_up() {
            families.push(model::up_family(A::DAEMON, false));
        }
        Collected {
            families,
            errors: vec![error],
        }
    }

    /// Queries the daemon and records the outcome in [`Presence`]; a probe
    /// reports nothing.
    async fn run(self: Arc<Self>, depth: Depth) -> Collected {
        let mut memory = self.memory.lock().await;
        let result = self
            .adapter
            .query(depth, &self.sequences, &mut memory)
            .await;
        match &result {
            Ok(_) => self.presence.record(Instant::now(), Ok(())),
            Err(e) if e.answered() => self.presence.record(Instant::now(), Ok(())),
            Err(e) => self.presence.record(Instant::now(), Err(e.message())),
        }
        let up = || model::up_family(A::DAEMON, true);
        match result {
            Ok(_) if depth == Depth::Probe => Collected::default(),
            Ok(reading) => {
                let mut out = self.adapter.report(reading, &mut memory);
                out.families.push(up());
                out
            }
            Err(e) if e.answered() => Collected {
                families: vec![up()],
                errors: vec![e.into()],
            },
            Err(e) => self.down(e.into()),
        }
    }
}

impl<A: Adapter> Collector for DaemonCollector<A> {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(async move {
            match self.presence.gate(Instant::now()) {
                Gate::Query => {}
                gate => {
                    if gate == Gate::SkipAndProbe {
                        tokio::spawn(self.clone().run(Depth::Probe));
                    }
                    return self.down(CollectError::NoData(self.skipped.clone()));
                }
            }
            // On a task of its own, so that the outcome reaches the presence
            // and the memory even if the scrape's timeout abandons this
            // collector.
            tokio::spawn(self.clone().run(Depth::Full))
                .await
                .unwrap_or_else(|e| {
                    Collected::error(CollectError::Io(format!(
                        "{} query task failed: {e}",
                        A::DAEMON.label()
                    )))
                })
        })
    }
}

#[cfg(test)]
mod tests;
