//! The template with a scripted adapter: presence, backoff, `clock_daemon_up`
//! and what each kind of error publishes, in virtual time.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::metrics::find;

/// An adapter that answers each query with the next scripted outcome (the
/// last one again when the script runs out), after `delay`, and counts its
/// queries and reports.
#[derive(Debug)]
struct Scripted {
    outcomes: Mutex<VecDeque<Result<u32, QueryError>>>,
    delay: Duration,
    queries: Mutex<Vec<Depth>>,
}

impl Scripted {
    fn new(outcomes: Vec<Result<u32, QueryError>>) -> Scripted {
        Scripted {
            outcomes: Mutex::new(outcomes.into()),
            delay: Duration::ZERO,
            queries: Mutex::new(Vec::new()),
        }
    }

    fn queries(&self) -> Vec<Depth> {
        self.queries.lock().expect("lock").clone()
    }
}

impl Adapter for Scripted {
    type Reading = u32;
    /// The readings reported so far.
    type Memory = Vec<u32>;
    const DAEMON: Daemon = Daemon::Ntpd;

    fn endpoint(&self) -> String {
        "test:1".into()
    }

    async fn query(
        &self,
        depth: Depth,
        _: &Sequences,
        _: &mut Vec<u32>,
    ) -> Result<u32, QueryError> {
        self.queries.lock().expect("lock").push(depth);
        tokio::time::sleep(self.delay).await;
        let mut outcomes = self.outcomes.lock().expect("lock");
        if outcomes.len() > 1 {
            outcomes.pop_front().expect("outcome")
        } else {
            outcomes.front().cloned().expect("outcome")
        }
    }

    fn report(&self, reading: u32, memory: &mut Vec<u32>) -> Collected {
        memory.push(reading);
        Collected {
            families: vec![
                model::SYNC_STRATUM
                    .family()
                    .with(crate::metrics::labels!["ntpd"], f64::from(reading)),
            ],
            errors: Vec::new(),
        }
    }
}

fn up(c: &Collected) -> Option<f64> {
    find(&c.families, &model::DAEMON_UP).and_then(|f| f.value(&["ntpd"]))
}

fn stratum(c: &Collected) -> Option<f64> {
    find(&c.families, &model::SYNC_STRATUM).and_then(|f| f.value(&["ntpd"]))
}

fn text(c: &Collected) -> Vec<String> {
    c.errors.iter().map(ToString::to_string).collect()
}

const SKIPPED: &str =
    "no data: ntpd at test:1 did not answer; skipped until a background probe finds it";

/// Lets spawned tasks (the background probe) run to their end.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn an_absent_daemon_is_no_data_then_skipped_then_probed_and_found() {
    let c = Arc::new(DaemonCollector::new(
        Scripted::new(vec![
            Err(QueryError::Absent("refused".into())),
            Err(QueryError::Absent("refused".into())),
            Ok(3),
        ]),
        false,
    ));
    let first = c.clone().collect().await;
    assert_eq!(text(&first), ["no data: refused"]);
    assert!(!first.errors[0].is_failure());
    assert_eq!(up(&first), None, "never seen, not configured: no up series");
    // Within the backoff: skipped, with the same words every time, no query.
    for _ in 0..3 {
        let skipped = c.clone().collect().await;
        assert_eq!(text(&skipped), [SKIPPED]);
        assert_eq!(up(&skipped), None);
    }
    assert_eq!(c.adapter().queries(), [Depth::Full]);
    // Due: skipped now, and probed in the background (still absent).
    tokio::time::advance(MIN_BACKOFF).await;
    assert_eq!(text(&c.clone().collect().await), [SKIPPED]);
    settle().await;
    assert_eq!(c.adapter().queries(), [Depth::Full, Depth::Probe]);
    // The backoff doubled: no probe after MIN_BACKOFF, one after twice it.
    tokio::time::advance(MIN_BACKOFF).await;
    assert_eq!(text(&c.clone().collect().await), [SKIPPED]);
    settle().await;
    assert_eq!(c.adapter().queries().len(), 2);
    tokio::time::advance(MIN_BACKOFF).await;
    assert_eq!(text(&c.clone().collect().await), [SKIPPED]);
    settle().await;
    assert_eq!(c.adapter().queries().len(), 3, "the second probe finds it");
    // Found: the next scrape queries in full, and up is published from now on.
    let found = c.clone().collect().await;
    assert!(found.errors.is_empty(), "{:?}", found.errors);
    assert_eq!(up(&found), Some(1.0));
    assert_eq!(stratum(&found), Some(3.0));
    assert_eq!(
        c.adapter().queries(),
        [Depth::Full, Depth::Probe, Depth::Probe, Depth::Full]
    );
}

#[tokio::test(start_paused = true)]
async fn each_kind_of_error_publishes_what_it_means() {
    // (error, up when configured explicitly, a failure, skipped next time)
    let cases = [
        (QueryError::Absent("a".into()), 0.0, false, true),
        (QueryError::Foreign("f".into()), 0.0, true, true),
        (QueryError::Io("i".into()), 0.0, true, true),
        (QueryError::Unusable("u".into()), 1.0, true, false),
    ];
    for (error, want_up, failure, skipped) in cases {
        let c = Arc::new(DaemonCollector::new(
            Scripted::new(vec![Err(error.clone())]),
            true,
        ));
        let first = c.clone().collect().await;
        assert_eq!(up(&first), Some(want_up), "{error:?}");
        assert_eq!(first.errors.len(), 1);
        assert_eq!(first.errors[0].is_failure(), failure, "{error:?}");
        let second = c.clone().collect().await;
        if skipped {
            assert_eq!(text(&second), [SKIPPED], "{error:?}");
            assert_eq!(up(&second), Some(0.0));
        } else {
            assert_eq!(text(&second), text(&first), "{error:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_daemon_seen_once_keeps_its_up_series_when_it_goes() {
    let c = Arc::new(DaemonCollector::new(
        Scripted::new(vec![Ok(2), Err(QueryError::Absent("gone".into()))]),
        false,
    ));
    assert_eq!(up(&c.clone().collect().await), Some(1.0));
    let gone = c.clone().collect().await;
    assert_eq!(up(&gone), Some(0.0));
    assert_eq!(text(&gone), ["no data: gone"]);
    assert_eq!(up(&c.clone().collect().await), Some(0.0));
}

#[tokio::test(start_paused = true)]
async fn an_abandoned_query_still_reaches_presence_and_memory() {
    let adapter = Scripted {
        delay: Duration::from_secs(2),
        ..Scripted::new(vec![Ok(5)])
    };
    let c = Arc::new(DaemonCollector::new(adapter, false));
    // The scrape gives up after one second; the query goes on.
    let abandoned = tokio::time::timeout(Duration::from_secs(1), c.clone().collect()).await;
    assert!(abandoned.is_err());
    tokio::time::advance(Duration::from_secs(2)).await;
    settle().await;
    assert_eq!(*c.memory.lock().await, [5]);
    assert!(c.presence().publish_up(), "the answer was recorded");
}

#[test]
fn sequences_count_on_from_a_random_start() {
    let a = Sequences::new();
    let first = a.next();
    assert_eq!(a.next(), first.wrapping_add(1));
    // Two collectors (or two runs) start apart; equal starts are a 2^-32 chance.
    let starts: std::collections::HashSet<u32> = (0..8).map(|_| Sequences::new().next()).collect();
    assert!(starts.len() > 1, "{starts:?}");
}
