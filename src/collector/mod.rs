//! Collectors: one module per kernel or daemon interface, all registered in
//! [`REGISTRY`], which also generates their `--collector.<name>` flags.

pub mod chrony;
pub mod clocksource;
pub mod daemon;
pub mod flags;
pub mod kmsg;
pub mod listing;
pub mod ntpd;
pub mod ptp_kvm;
pub mod rate;
pub mod sntp;
pub mod time;
pub mod timesyncd;
pub mod timex;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::metrics::{Desc, Family};
use crate::sys::fs::{FileError, Roots};

/// What every collector may use: the file roots.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// `--path.procfs` and `--path.sysfs`.
    pub roots: Roots,
}

/// Why a collector (or part of one) produced no data.
#[derive(Debug)]
pub enum CollectError {
    /// The data does not exist here; expected and not worth a warning
    /// (a daemon that is not installed, a call the kernel refuses).
    NoData(String),
    /// The collector did not finish within its timeout.
    Timeout,
    /// A file or socket could not be read.
    Io(String),
    /// What was read could not be understood.
    Protocol(String),
}

impl CollectError {
    /// Whether the error makes `clock_scrape_collector_success` 0.
    pub fn is_failure(&self) -> bool {
        !matches!(self, CollectError::NoData(_))
    }
}

impl fmt::Display for CollectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CollectError::NoData(s) => write!(f, "no data: {s}"),
            CollectError::Timeout => f.write_str("timed out"),
            CollectError::Io(s) => write!(f, "io: {s}"),
            CollectError::Protocol(s) => write!(f, "protocol: {s}"),
        }
    }
}

impl From<FileError> for CollectError {
    fn from(e: FileError) -> Self {
        CollectError::Io(e.to_string())
    }
}

/// What one collector produced in one scrape: the families it could fill and
/// the errors that kept it from filling others.
#[derive(Debug, Default)]
pub struct Collected {
    /// Filled families.
    pub families: Vec<Family>,
    /// Problems met on the way; any failure sets the collector's success to 0.
    pub errors: Vec<CollectError>,
}

impl Collected {
    /// A result with only an error.
    pub fn error(e: CollectError) -> Self {
        Collected {
            families: Vec::new(),
            errors: vec![e],
        }
    }
}

/// A boxed future, as the collector trait returns.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// One source of metrics, run on every scrape.
pub trait Collector: Send + Sync + 'static {
    /// Gathers this scrape's families. Runs under the scrape's timeout; a
    /// collector whose work blocks wraps it in [`blocking`], one whose work
    /// cannot block in [`nonblocking`].
    fn collect(self: Arc<Self>) -> BoxFuture<Collected>;
}

impl fmt::Debug for dyn Collector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Collector")
    }
}

/// Runs synchronous collection work on tokio's blocking pool, so the scrape's
/// timeout can abandon it.
pub fn blocking<F>(f: F) -> BoxFuture<Collected>
where
    F: FnOnce() -> Collected + Send + 'static,
{
    Box::pin(async move {
        tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
            Collected::error(CollectError::Io(format!("collector task failed: {e}")))
        })
    })
}

/// Runs synchronous collection work that cannot block (a system call that
/// never sleeps, the vDSO clock) in the scrape's own task. A timeout has
/// nothing to abandon there, and the hand-off to the blocking pool and back
/// would cost several times the work itself (docs/performance.md, "Work that
/// cannot block runs in the scrape's task").
pub fn nonblocking<F>(f: F) -> BoxFuture<Collected>
where
    F: FnOnce() -> Collected + Send + 'static,
{
    Box::pin(async move { f() })
}

/// Extra flags a collector declares (`--collector.<name>.<option>`).
pub type ArgsFn = fn() -> Vec<clap::Arg>;
/// Builds a collector from the parsed flags; the error is shown to the user.
pub type BuildFn = fn(&clap::ArgMatches, &Context) -> Result<Arc<dyn Collector>, String>;

/// One entry of the collector table.
#[derive(Debug)]
pub struct Registration {
    /// The collector's name, as in `--collector.<name>` and the `collector` label.
    pub name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether it runs without `--collector.<name>`.
    pub default_enabled: bool,
    /// Every family it may emit, in groups (a daemon collector lists the
    /// shared `model::METRICS` and its own).
    pub metrics: &'static [&'static [&'static Desc]],
    /// Its options.
    pub args: ArgsFn,
    /// Its constructor.
    pub build: BuildFn,
}

/// Every collector, in the order they are listed and encoded.
pub static REGISTRY: &[Registration] = &[
    timex::REGISTRATION,
    time::REGISTRATION,
    clocksource::REGISTRATION,
    kmsg::REGISTRATION,
    rate::REGISTRATION,
    ptp_kvm::REGISTRATION,
    ntpd::REGISTRATION,
    chrony::REGISTRATION,
    timesyncd::REGISTRATION,
    sntp::REGISTRATION,
];

/// The wall clock as Unix seconds (0 before 1970): what a reading is
/// stamped with, and what `diagnose` judges ages against.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Asserts that every family in `families` is one `reg` declares: the
/// catalogue, and so docs/metrics.md, is then complete. The scrape checks
/// the same in debug builds; collectors' tests check their readings with it.
#[cfg(test)]
pub fn assert_declared(reg: &Registration, families: &[Family]) {
    for f in families {
        assert!(
            reg.metrics
                .iter()
                .flat_map(|group| group.iter())
                .any(|d| std::ptr::eq(*d, f.desc)),
            "the {} collector emits {}, which it does not declare",
            reg.name,
            f.desc.name
        );
    }
}

/// No extra flags.
pub fn no_args() -> Vec<clap::Arg> {
    Vec::new()
}
