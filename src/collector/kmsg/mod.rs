//! Clocksource events from the kernel log (`/dev/kmsg`): switches of the
//! clocksource and the watchdog's demotions, counted per clocksource, with
//! the time of the last of each.
//!
//! At start the log is read from the oldest record the kernel keeps, then
//! followed: each scrape reads what is new (non-blocking; one `read` returns
//! `EAGAIN` on a quiet host) and never reads a record twice. What the counts
//! cover is published (the first record's sequence number and time, and the
//! records overwritten before they could be read), so "since boot" is only
//! claimed when it is true. An exporter that may not read the log (no
//! `CAP_SYSLOG` with `kernel.dmesg_restrict=1`, or `printk_devkmsg=off`)
//! says so once at start and in `clock_kmsg_readable`, and is not a failing
//! collector: an install may choose not to grant the capability.

pub(crate) mod record;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::time::{ClockId, clock_gettime};

use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration, nonblocking};
use crate::metrics::{Family, labels, metrics};
use crate::sys::fs::Roots;
use crate::sys::kmsg::{Kmsg, KmsgError, Next};
use record::{Event, parse};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "kmsg",
    help: "clocksource switches and watchdog demotions from the kernel log",
    default_enabled: true,
    metrics: &[METRICS],
    args,
    build,
};

metrics! {
    /// Every family this collector emits.
    pub static METRICS = [
        READABLE: Gauge(
            "clock_kmsg_readable",
            [],
            "1 when the exporter reads the kernel log, 0 when it may not (it needs CAP_SYSLOG where kernel.dmesg_restrict=1, and nobody may with printk_devkmsg=off) or there is none; the exporter logs why at start."
        ),
        RECORDS: Counter(
            "clock_kmsg_records",
            [],
            "Kernel log records the exporter read, from the oldest one kept when it started."
        ),
        LOST: Counter(
            "clock_kmsg_records_lost",
            [],
            "Kernel log records overwritten before the exporter read them, after its first record (gaps in the sequence numbers)."
        ),
        MALFORMED: Counter(
            "clock_kmsg_records_malformed",
            [],
            "Kernel log records the exporter could not parse."
        ),
        FIRST_SEQUENCE: Gauge(
            "clock_kmsg_first_record_sequence",
            [],
            "Sequence number of the first kernel log record the exporter read: 0 when its counts cover the log since boot, more when older records had been overwritten."
        ),
        FIRST_TIME: Gauge(
            "clock_kmsg_first_record_timestamp_seconds",
            [],
            "When the first kernel log record the exporter read was logged, in seconds since the Unix epoch; approximate: the kernel stamps records with its scheduler clock, which stops during suspend and is converted here with the current boot time."
        ),
        SWITCHES: Counter(
            "clock_kmsg_clocksource_switches",
            ["clocksource"],
            "Switches of the kernel to this clocksource that the kernel log records, from the first record the exporter read."
        ),
        LAST_SWITCH: Gauge(
            "clock_kmsg_clocksource_last_switch_timestamp_seconds",
            ["clocksource"],
            "When the kernel last switched to this clocksource, in seconds since the Unix epoch; approximate as clock_kmsg_first_record_timestamp_seconds."
        ),
        UNSTABLE: Counter(
            "clock_kmsg_clocksource_unstable",
            ["clocksource"],
            "Times the kernel marked this clocksource unstable (the clocksource watchdog found its skew too large, or the TSC failed its own checks), from the first record the exporter read."
        ),
        LAST_UNSTABLE: Gauge(
            "clock_kmsg_clocksource_last_unstable_timestamp_seconds",
            ["clocksource"],
            "When the kernel last marked this clocksource unstable, in seconds since the Unix epoch; approximate as clock_kmsg_first_record_timestamp_seconds."
        ),
    ];
}

/// The most clocksources counted by name; any further name a log brings is
/// counted as `other`, so a flood of odd records cannot grow the series.
pub const MAX_CLOCKSOURCES: usize = 16;

/// The most records read in one scrape; the rest wait for the next one, so
/// a log flooded faster than it is scraped cannot make a scrape slow.
pub const MAX_RECORDS_PER_SCRAPE: usize = 20_000;

/// How long an unreadable log waits before it is opened again.
const REOPEN_AFTER: Duration = Duration::from_secs(60);

/// What the log said so far about the clocksources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Records read.
    pub records: u64,
    /// Records lost to overwriting after the first.
    pub lost: u64,
    /// Records that did not parse.
    pub malformed: u64,
    /// The first record read: its sequence number and µs since boot.
    pub first: Option<(u64, u64)>,
    /// The sequence number the next record should have.
    next: Option<u64>,
    /// Per clocksource, in the order first met.
    pub sources: Vec<Counts>,
}

/// One clocksource's events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counts {
    /// Its name, or `other`.
    pub name: String,
    /// Switches to it.
    pub switches: u64,
    /// The last switch, µs since boot.
    pub last_switch: Option<u64>,
    /// Demotions.
    pub unstable: u64,
    /// The last demotion, µs since boot.
    pub last_unstable: Option<u64>,
}

impl Tally {
    /// A tally whose counts start at 0 for `names` (the clocksources the
    /// kernel offers), so a first event is an increase a rule can see.
    pub fn seeded<'a>(names: impl IntoIterator<Item = &'a str>) -> Tally {
        let mut t = Tally::default();
        // A sysfs root may be a copy: its names are checked as the log's are.
        for n in names.into_iter().filter_map(record::name) {
            t.counts(n);
        }
        t
    }

    fn counts(&mut self, name: &str) -> &mut Counts {
        debug_assert!(record::name(name).is_some() || name == "other");
        let name = if self.sources.iter().any(|c| c.name == name)
            || self.sources.len() < MAX_CLOCKSOURCES
        {
            name
        } else {
            "other"
        };
        if let Some(i) = self.sources.iter().position(|c| c.name == name) {
            return &mut self.sources[i];
        }
        self.sources.push(Counts {
            name: name.to_owned(),
            ..Counts::default()
        });
        self.sources.last_mut().expect("just pushed")
    }

    /// Counts one record that could not be parsed (or was too long to be one).
    pub fn add_malformed(&mut self) {
        self.records += 1;
        self.malformed += 1;
    }

    /// Counts one record as read.
    pub fn add(&mut self, raw: &[u8]) {
        let record = match parse(raw) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(_) => return self.add_malformed(),
        };
        self.records += 1;
        if self.first.is_none() {
            self.first = Some((record.sequence, record.usec));
        }
        if let Some(next) = self.next
            && record.sequence > next
        {
            self.lost += record.sequence - next;
        }
        // A sequence going back (a test file, not the device) starts over
        // from there without counting a loss.
        self.next = Some(record.sequence.saturating_add(1));
        match record::event(&record) {
            Some(Event::Switched(cs)) => {
                let c = self.counts(cs);
                c.switches += 1;
                c.last_switch = Some(record.usec);
            }
            Some(Event::Unstable(cs)) => {
                let c = self.counts(cs);
                c.unstable += 1;
                c.last_unstable = Some(record.usec);
            }
            None => {}
        }
    }

    /// The families, with `boot` the Unix time of boot in seconds (to turn
    /// the records' µs since boot into Unix time).
    pub fn families(&self, boot: f64) -> Vec<Family> {
        let at = |usec: u64| boot + usec as f64 * 1e-6;
        let mut out = vec![
            RECORDS.single(self.records as f64),
            LOST.single(self.lost as f64),
            MALFORMED.single(self.malformed as f64),
        ];
        if let Some((seq, usec)) = self.first {
            out.push(FIRST_SEQUENCE.single(seq as f64));
            out.push(FIRST_TIME.single(at(usec)));
        }
        let mut switches = SWITCHES.family_of(self.sources.len());
        let mut unstable = UNSTABLE.family_of(self.sources.len());
        let mut last_switch = LAST_SWITCH.family();
        let mut last_unstable = LAST_UNSTABLE.family();
        for c in &self.sources {
            switches.push(labels![c.name.clone()], c.switches as f64);
            unstable.push(labels![c.name.clone()], c.unstable as f64);
            if let Some(u) = c.last_switch {
                last_switch.push(labels![c.name.clone()], at(u));
            }
            if let Some(u) = c.last_unstable {
                last_unstable.push(labels![c.name.clone()], at(u));
            }
        }
        out.extend([switches, unstable, last_switch, last_unstable]);
        out
    }
}

/// The Unix time of boot as the kernel log's stamps see it: realtime minus
/// the monotonic clock (the scheduler clock, like CLOCK_MONOTONIC, does not
/// count suspend).
fn boot_time() -> Result<f64, CollectError> {
    let secs = |id| {
        clock_gettime(id)
            .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
            .map_err(|e| CollectError::Io(format!("clock_gettime: {e}")))
    };
    Ok(secs(ClockId::CLOCK_REALTIME)? - secs(ClockId::CLOCK_MONOTONIC)?)
}

fn args() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.kmsg.path")
            .long("collector.kmsg.path")
            .value_name("PATH")
            .value_parser(clap::value_parser!(PathBuf))
            .default_value("/dev/kmsg")
            .help("The kernel log device (a file of records, one per line, for tests)"),
    ]
}

#[derive(Debug)]
struct State {
    log: Result<Kmsg, (KmsgError, Instant)>,
    tally: Tally,
}

#[derive(Debug)]
struct KmsgCollector {
    path: PathBuf,
    state: Mutex<State>,
}

fn build(m: &clap::ArgMatches, ctx: &Context) -> Result<Arc<dyn Collector>, String> {
    let path = m
        .get_one::<PathBuf>("collector.kmsg.path")
        .cloned()
        .ok_or("--collector.kmsg.path is missing")?;
    let collector = KmsgCollector::new(path, &ctx.roots);
    if let Err((e, _)) = &collector
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .log
    {
        tracing::warn!(collector = "kmsg", error = %e, "cannot read the kernel log; clocksource switches and demotions will not be counted");
    }
    Ok(Arc::new(collector))
}

/// The clocksources the kernel offers, to seed the counts.
fn available(roots: &Roots) -> Vec<String> {
    super::clocksource::sysfs::read_clocksources(roots)
        .map(|devices| devices.into_iter().flat_map(|d| d.available).collect())
        .unwrap_or_default()
}

impl KmsgCollector {
    fn new(path: PathBuf, roots: &Roots) -> KmsgCollector {
        let names = available(roots);
        KmsgCollector {
            state: Mutex::new(State {
                log: Kmsg::open(&path).map_err(|e| (e, Instant::now())),
                tally: Tally::seeded(names.iter().map(String::as_str)),
            }),
            path,
        }
    }

    fn read(&self) -> Collected {
        let mut out = Collected::default();
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = &mut *guard;
        if let Err((_, since)) = &state.log
            && since.elapsed() >= REOPEN_AFTER
        {
            state.log = Kmsg::open(&self.path).map_err(|e| (e, Instant::now()));
            if state.log.is_ok() {
                tracing::info!(collector = "kmsg", "the kernel log is readable now");
            }
        }
        if let Ok(log) = &mut state.log {
            for _ in 0..MAX_RECORDS_PER_SCRAPE {
                match log.next() {
                    Ok(Next::Record(r)) => state.tally.add(r),
                    Ok(Next::Lost) => {}
                    Ok(Next::Oversized) => state.tally.add_malformed(),
                    Ok(Next::End) => break,
                    Err(e) => {
                        state.log = Err((e, Instant::now()));
                        break;
                    }
                }
            }
        }
        let readable = state.log.is_ok();
        if let Err((e, _)) = &state.log {
            out.errors.push(match e {
                KmsgError::Denied(s) | KmsgError::Missing(s) => CollectError::NoData(s.clone()),
                KmsgError::Unusable(s) => CollectError::Io(s.clone()),
            });
        }
        out.families
            .push(READABLE.single(if readable { 1.0 } else { 0.0 }));
        match boot_time() {
            Ok(boot) => out.families.extend(state.tally.families(boot)),
            Err(e) => out.errors.push(e),
        }
        out
    }
}

impl Collector for KmsgCollector {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        // Reads of a non-blocking /dev/kmsg never sleep; a test file is local.
        nonblocking(move || self.read())
    }
}

#[cfg(test)]
mod tests;
