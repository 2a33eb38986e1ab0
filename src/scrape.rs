//! One scrape: every enabled collector runs concurrently under the scrape
//! timeout, into one list of families, plus the exporter's own series.

use std::fmt;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use futures_util::FutureExt as _;
use futures_util::future::{WeakShared, maybe_done};
use tokio::time::{Instant, Sleep};

use crate::collector::{BoxFuture, CollectError, Collected, Collector, Context, REGISTRY};
use crate::metrics::{Desc, Family, Kept, KeptText, labels, metrics};

metrics! {
    /// The exporter's own families.
    pub static METRICS = [
        SUCCESS: Gauge(
            "clock_scrape_collector_success",
            ["collector"],
            "1 when the collector gathered everything it expected in this scrape, 0 when it failed or timed out."
        ),
        DURATION: Gauge(
            "clock_scrape_collector_duration_seconds",
            ["collector"],
            "Time the collector took in this scrape, in seconds."
        ),
        BUILD_INFO: Gauge(
            "clock_exporter_build_info",
            ["version", "revision"],
            "The exporter's version and the source revision it was built from."
        ),
    ];
}

/// The exporter's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The source revision, set by build.rs.
pub const REVISION: &str = env!("CLOCK_EXPORTER_REVISION");

/// What the last scrape said of one collector (for the landing page).
#[derive(Debug, Clone, PartialEq)]
pub struct Status {
    /// Whether it succeeded.
    pub success: bool,
    /// How long it took.
    pub duration: Duration,
    /// Its errors, joined; empty when none.
    pub message: KeptText,
}

/// One collector of a scraper: its name, the families it declares, itself.
#[derive(Debug)]
pub struct Entry {
    name: &'static str,
    declares: &'static [&'static [&'static Desc]],
    collector: Arc<dyn Collector>,
}

impl Entry {
    /// A collector named `name` that may emit only the families `declares`
    /// lists (in groups, as [`crate::collector::Registration`] does).
    pub fn new(
        name: &'static str,
        declares: &'static [&'static [&'static Desc]],
        collector: Arc<dyn Collector>,
    ) -> Entry {
        Entry {
            name,
            declares,
            collector,
        }
    }

    /// The first family of `families` that this collector does not declare.
    fn undeclared(&self, families: &[Family]) -> Option<&'static str> {
        let declared = |d: &Desc| {
            self.declares
                .iter()
                .flat_map(|group| group.iter())
                .any(|x| std::ptr::eq(*x, d))
        };
        families
            .iter()
            .find(|f| !declared(f.desc))
            .map(|f| f.desc.name)
    }
}

/// One collection's families, as concurrent scrapes share them.
type Collection = BoxFuture<Arc<Vec<Family>>>;

/// Runs scrapes.
#[derive(Debug)]
pub struct Scraper {
    entries: Vec<Entry>,
    timeout: Duration,
    /// The last status of each entry, by index.
    last: Mutex<Vec<Option<Status>>>,
    /// `clock_exporter_build_info`, the same in every scrape.
    build_info: Kept,
    /// The collection in flight, which concurrent scrapes join.
    in_flight: Mutex<Option<WeakShared<Collection>>>,
}

impl Scraper {
    /// Builds the collectors enabled in `m`, in table order.
    pub fn from_matches(
        m: &clap::ArgMatches,
        ctx: &Context,
        timeout: Duration,
    ) -> Result<Scraper, String> {
        let mut entries = Vec::new();
        for reg in REGISTRY {
            if crate::collector::flags::flag(m, &format!("collector.{}", reg.name)) {
                let collector =
                    (reg.build)(m, ctx).map_err(|e| format!("collector {}: {e}", reg.name))?;
                entries.push(Entry::new(reg.name, reg.metrics, collector));
            }
        }
        Ok(Self::new(entries, timeout))
    }

    /// A scraper over the given collectors.
    pub fn new(entries: Vec<Entry>, timeout: Duration) -> Scraper {
        Scraper {
            last: Mutex::new(vec![None; entries.len()]),
            entries,
            timeout,
            build_info: Kept::new([BUILD_INFO.family().with(labels![VERSION, REVISION], 1.0)]),
            in_flight: Mutex::new(None),
        }
    }

    /// The enabled collectors' names.
    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.name).collect()
    }

    /// The last status of each enabled collector, `None` before its first scrape.
    pub fn statuses(&self) -> Vec<(&'static str, Option<Status>)> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        self.entries
            .iter()
            .zip(last.iter())
            .map(|(e, s)| (e.name, s.clone()))
            .collect()
    }

    /// One scrape's families: the collection in flight, if a concurrent
    /// scrape started one, or a new one that later scrapes may join.
    ///
    /// Each collection queries the daemons once; without sharing, scrapes
    /// arriving together each ran their own, queued behind one another on
    /// the daemons' locks, so that one client scraping in a loop held every
    /// `--web.max-requests` permit and a legitimate scraper got 503 or waited
    /// for the scrape timeout. A joined collection is one that started at
    /// most one collection ago, as fresh as a scrape of its own would be. It
    /// keeps running while any scrape waits for it; when every one of them
    /// has gone, the next scrape starts afresh.
    pub async fn scrape(self: &Arc<Self>) -> Vec<Family> {
        let shared = {
            let mut slot = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(joined) = slot.as_ref().and_then(WeakShared::upgrade) {
                joined
            } else {
                let me = Arc::clone(self);
                let collection: Collection = Box::pin(async move { Arc::new(me.collect().await) });
                let shared = collection.shared();
                *slot = shared.downgrade();
                shared
            }
        };
        let families = shared.clone().await;
        {
            let mut slot = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if slot
                .as_ref()
                .and_then(WeakShared::upgrade)
                .is_some_and(|s| s.ptr_eq(&shared))
            {
                *slot = None;
            }
        }
        drop(shared);
        // Alone, the families are this scrape's own; shared, a copy.
        Arc::try_unwrap(families).unwrap_or_else(|shared| (*shared).clone())
    }

    /// Runs every collector concurrently, each under the timeout, and returns
    /// the merged families followed by the exporter's own.
    async fn collect(&self) -> Vec<Family> {
        // The futures are polled together in this task, not spawned one task
        // each: spawning wakes the runtime's other worker to steal the task,
        // and that hand-off costs more than most collectors' own work
        // (docs/performance.md, "Collectors are polled in the scrape's task").
        // Collectors whose work blocks already run it on the blocking pool
        // ([`crate::collector::blocking`]). A future that panics is caught on
        // its own and never polled again, so the others go on as they would
        // in tasks of their own.
        //
        // They all start together, so one deadline serves them all: a
        // collector still running at the deadline gets a timeout and only it
        // loses its series (docs/performance.md, "One scrape deadline"). The
        // timer is made only if a collector has to wait; most finish on their
        // first poll.
        let start = Instant::now();
        let mut runs: Vec<_> = self
            .entries
            .iter()
            .map(|e| {
                maybe_done(
                    AssertUnwindSafe(Timed {
                        fut: e.collector.clone().collect(),
                        start: None,
                    })
                    .catch_unwind(),
                )
            })
            .collect();
        let mut deadline: Option<Pin<Box<Sleep>>> = None;
        std::future::poll_fn(|cx| {
            let mut pending = false;
            for run in &mut runs {
                pending |= Pin::new(run).poll(cx).is_pending();
            }
            if !pending {
                return Poll::Ready(());
            }
            deadline
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(start + self.timeout)))
                .as_mut()
                .poll(cx)
        })
        .await;
        let results = runs.iter_mut().map(|run| {
            Pin::new(run).take_output().map_or_else(
                || Ok((Collected::error(CollectError::Timeout), start.elapsed())),
                |r| r.map_err(|payload| panic_message(payload.as_ref())),
            )
        });

        let mut families = Vec::with_capacity(64);
        let mut success = SUCCESS.family_of(self.entries.len());
        let mut duration = DURATION.family_of(self.entries.len());
        for (index, (e, r)) in self.entries.iter().zip(results).enumerate() {
            let (c, d) = r.unwrap_or_else(|panic| {
                tracing::error!(collector = e.name, panic = %panic, "collector panicked");
                (
                    Collected::error(CollectError::Io("collector panicked".into())),
                    Duration::ZERO,
                )
            });
            // Every family a collector emits is one it declares, so the
            // catalogue (and docs/metrics.md) is complete. Checked in debug
            // builds, which every test runs: a collector that breaks the rule
            // fails there, with the family named.
            let mut c = c;
            if cfg!(debug_assertions)
                && let Some(name) = e.undeclared(&c.families)
            {
                tracing::error!(
                    collector = e.name,
                    family = name,
                    "collector emitted a family it does not declare"
                );
                c.errors.push(CollectError::Protocol(format!(
                    "emitted {name}, which the collector does not declare (a bug)"
                )));
            }
            // No input may make the exposition invalid: a series repeated
            // (two peers with one label, say) is dropped, and the collector
            // fails, naming it. Kept families were checked when kept; a
            // collector's families of one descriptor are merged first, so a
            // series repeated across them shows too.
            c.families = crate::metrics::merge(std::mem::take(&mut c.families));
            for f in c.families.iter_mut().filter(|f| !f.is_kept()) {
                let dropped = f.drop_duplicates();
                if dropped > 0 {
                    c.errors.push(CollectError::Protocol(format!(
                        "dropped {dropped} duplicate series of {} (a bug)",
                        f.desc.name
                    )));
                }
            }
            let ok = !c.errors.iter().any(CollectError::is_failure);
            self.record(index, ok, d, &c.errors);
            success.push(labels![e.name], f64::from(u8::from(ok)));
            duration.push(labels![e.name], d.as_secs_f64());
            families.extend(c.families);
        }
        let mut families = crate::metrics::merge(families);
        families.push(success);
        families.push(duration);
        families.extend(self.build_info.families());
        families
    }

    /// Remembers the status and logs only when a collector's errors change, so
    /// a persistent problem is one log line, not one per scrape.
    fn record(&self, index: usize, success: bool, duration: Duration, errors: &[CollectError]) {
        let name = self.entries[index].name;
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut last[index];
        // Most scrapes repeat the last outcome: compared with the kept
        // message as it is written, nothing is allocated.
        let write = |w: &mut dyn fmt::Write| write_errors(w, errors);
        if let Some(status) = slot.as_mut()
            && status.message.is(write)
        {
            status.success = success;
            status.duration = duration;
            return;
        }
        let message = KeptText::make(write);
        let previous = slot.as_ref().map(|s| s.message.as_str());
        if message.as_str().is_empty() {
            if previous.is_some() {
                tracing::info!(collector = name, "collector recovered");
            }
        } else if success {
            tracing::debug!(collector = name, detail = %message.as_str(), "collector has no data");
        } else {
            tracing::warn!(collector = name, error = %message.as_str(), "collector failed");
        }
        *slot = Some(Status {
            success,
            duration,
            message,
        });
    }
}

/// Writes a collector's errors as one line, separated by `; `.
fn write_errors(out: &mut dyn fmt::Write, errors: &[CollectError]) -> fmt::Result {
    for (i, e) in errors.iter().enumerate() {
        if i > 0 {
            out.write_str("; ")?;
        }
        write!(out, "{e}")?;
    }
    Ok(())
}

/// A collector's future, timed from its first poll to its end.
struct Timed {
    fut: BoxFuture<Collected>,
    start: Option<Instant>,
}

impl Future for Timed {
    type Output = (Collected, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let start = *self.start.get_or_insert_with(Instant::now);
        self.fut
            .as_mut()
            .poll(cx)
            .map(|collected| (collected, start.elapsed()))
    }
}

/// The message of a panic, when it has one (`panic!` with a literal or a format).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::BoxFuture;

    #[test]
    fn errors_are_joined_with_semicolons() {
        let two = [
            CollectError::Io("a".into()),
            CollectError::NoData("b; c".into()),
        ];
        let joined = KeptText::make(|w| write_errors(w, &two));
        assert_eq!(joined.as_str(), "io: a; no data: b; c");
        assert!(joined.is(|w| write_errors(w, &two)));
        assert!(!joined.is(|w| write_errors(w, &two[..1])));
        assert!(KeptText::default().is(|w| write_errors(w, &[])));
    }

    metrics! {
        static TEST = [X: Gauge("clock_test_x", [], "Test.")];
    }

    /// What the test collectors declare.
    static DECLARES: &[&[&Desc]] = &[TEST];

    struct Fixed(f64);
    impl Collector for Fixed {
        fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
            Box::pin(async move {
                Collected {
                    families: vec![X.single(self.0)],
                    errors: vec![],
                }
            })
        }
    }

    /// Waits this long, then answers with nothing.
    struct Sleeps(Duration);
    impl Collector for Sleeps {
        fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
            Box::pin(async move {
                tokio::time::sleep(self.0).await;
                Collected::default()
            })
        }
    }

    struct Panics;
    impl Collector for Panics {
        fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
            Box::pin(async { panic!("deliberate test panic") })
        }
    }

    fn value(fams: &[Family], desc: &Desc, collector: &str) -> f64 {
        crate::metrics::find(fams, desc)
            .and_then(|f| f.value(&[collector]))
            .expect("sample")
    }

    #[cfg(debug_assertions)]
    #[tokio::test]
    async fn a_family_the_collector_does_not_declare_fails_it_in_debug_builds() {
        let s = Arc::new(Scraper::new(
            vec![
                Entry::new("declares", DECLARES, Arc::new(Fixed(1.0))),
                Entry::new("does-not", &[], Arc::new(Fixed(2.0))),
            ],
            Duration::from_secs(1),
        ));
        let fams = s.scrape().await;
        assert_eq!(value(&fams, &SUCCESS, "declares"), 1.0);
        assert_eq!(value(&fams, &SUCCESS, "does-not"), 0.0);
        let st = s.statuses();
        assert_eq!(
            st[1].1.as_ref().map(|s| s.message.as_str()),
            Some("protocol: emitted clock_test_x, which the collector does not declare (a bug)")
        );
    }

    /// Emits one series three times.
    struct Repeats;
    impl Collector for Repeats {
        fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
            Box::pin(async move {
                Collected {
                    families: vec![
                        X.single(1.0),
                        crate::metrics::merge(vec![X.single(2.0), X.single(3.0)]).remove(0),
                    ],
                    errors: vec![],
                }
            })
        }
    }

    #[tokio::test]
    async fn a_repeated_series_is_dropped_and_fails_its_collector() {
        let s = Arc::new(Scraper::new(
            vec![Entry::new("repeats", DECLARES, Arc::new(Repeats))],
            Duration::from_secs(1),
        ));
        let fams = s.scrape().await;
        crate::metrics::assert_no_duplicate_series(&fams);
        let x = crate::metrics::find(&fams, &X).expect("x");
        assert_eq!(x.samples.len(), 1, "{x:?}");
        assert_eq!(x.samples[0].value, 1.0, "the first is kept");
        assert_eq!(value(&fams, &SUCCESS, "repeats"), 0.0);
        let st = s.statuses();
        assert_eq!(
            st[0].1.as_ref().map(|s| s.message.as_str()),
            Some("protocol: dropped 2 duplicate series of clock_test_x (a bug)")
        );
    }

    /// Counts its collections; each takes `delay`.
    struct Counting {
        delay: Duration,
        runs: std::sync::atomic::AtomicU32,
    }

    impl Collector for Counting {
        fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
            Box::pin(async move {
                let n = self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                tokio::time::sleep(self.delay).await;
                Collected {
                    families: vec![X.single(f64::from(n))],
                    errors: vec![],
                }
            })
        }
    }

    fn counting(delay: Duration) -> (Arc<Scraper>, Arc<Counting>) {
        let c = Arc::new(Counting {
            delay,
            runs: std::sync::atomic::AtomicU32::new(0),
        });
        let s = Arc::new(Scraper::new(
            vec![Entry::new("counting", DECLARES, c.clone())],
            Duration::from_secs(5),
        ));
        (s, c)
    }

    fn x(fams: &[Family]) -> f64 {
        crate::metrics::find(fams, &X).expect("x").samples[0].value
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_scrapes_share_one_collection() {
        let (s, c) = counting(Duration::from_millis(100));
        let scrapes: Vec<_> = (0..10)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.scrape().await })
            })
            .collect();
        for scrape in scrapes {
            assert_eq!(x(&scrape.await.expect("join")), 1.0, "all joined the first");
        }
        assert_eq!(c.runs.load(std::sync::atomic::Ordering::Relaxed), 1);
        // The next scrape after it collects anew.
        assert_eq!(x(&s.scrape().await), 2.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_collection_nobody_waits_for_any_more_is_not_joined() {
        let (s, c) = counting(Duration::from_secs(2));
        // Abandoned by its only scrape (a client that went away).
        assert!(
            tokio::time::timeout(Duration::from_secs(1), s.scrape())
                .await
                .is_err()
        );
        tokio::time::advance(Duration::from_secs(10)).await;
        // Started afresh, with a deadline of its own: no collector timed out.
        let fams = s.scrape().await;
        assert_eq!(x(&fams), 2.0);
        assert_eq!(value(&fams, &SUCCESS, "counting"), 1.0);
        assert_eq!(c.runs.load(std::sync::atomic::Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_and_panicking_collectors_cost_only_their_own_series() {
        let s = Arc::new(Scraper::new(
            vec![
                Entry::new("fixed", DECLARES, Arc::new(Fixed(7.0))),
                Entry::new("slow", &[], Arc::new(Sleeps(Duration::from_secs(3600)))),
                Entry::new("panics", &[], Arc::new(Panics)),
                // Waits, then answers well within the timeout.
                Entry::new("late", &[], Arc::new(Sleeps(Duration::from_millis(50)))),
            ],
            Duration::from_millis(200),
        ));
        let fams = s.scrape().await;
        let x = crate::metrics::find(&fams, &X).expect("x");
        assert_eq!(x.samples[0].value, 7.0);
        assert_eq!(value(&fams, &SUCCESS, "fixed"), 1.0);
        assert_eq!(value(&fams, &SUCCESS, "slow"), 0.0);
        assert_eq!(value(&fams, &SUCCESS, "panics"), 0.0);
        // The slow one was cut at the timeout (virtual time); the late one
        // waited, finished before it, and kept its time.
        let d = value(&fams, &DURATION, "slow");
        assert!((0.2..0.3).contains(&d), "{d}");
        assert_eq!(value(&fams, &SUCCESS, "late"), 1.0);
        let d = value(&fams, &DURATION, "late");
        assert!((0.05..0.1).contains(&d), "{d}");
        assert_eq!(
            value(&fams, &DURATION, "fixed"),
            0.0,
            "virtual time stands still"
        );
        let st = s.statuses();
        assert_eq!(
            st[1].1.as_ref().map(|s| s.message.as_str()),
            Some("timed out")
        );
        let build = fams
            .iter()
            .find(|f| std::ptr::eq(f.desc, &BUILD_INFO))
            .expect("build");
        assert_eq!(build.samples[0].label_values[0], VERSION);
    }
}
