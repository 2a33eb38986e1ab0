//! What one scrape costs inside the process, without HTTP: each enabled
//! collector alone, the whole scrape, and its encoding in both formats
//! (through the same `metrics::Encoder` the server uses), each timed
//! back to back ("hot") and 5 ms apart ("cold", as at 200 scrapes/s, when
//! caches have gone cold between scrapes). A diagnostic for
//! docs/performance.md ("How to measure", "In-process costs"), next to
//! `scripts/bench`; it asserts nothing.
//!
//! `cargo run --release --example scrape_cost -- [clock_exporter flags]`
//! (for example `--no-collector.ntpd`); pin it with `taskset -c 0` for
//! steadier figures.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clock_exporter::testing::Scraper;
use clock_exporter::testing::collector::{Context, REGISTRY};
use clock_exporter::testing::metrics::{Encoder, Format};
use clock_exporter::testing::sys::Roots;

const RUNS: usize = 300;
const COLD_PAUSE: Duration = Duration::from_millis(5);

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Times `f` `RUNS` times back to back, then `RUNS` times with a pause before each.
async fn hot_and_cold<F, Fut>(mut f: F) -> (Duration, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut times = [Vec::with_capacity(RUNS), Vec::with_capacity(RUNS)];
    for (pass, list) in times.iter_mut().enumerate() {
        for _ in 0..RUNS {
            if pass == 1 {
                std::thread::sleep(COLD_PAUSE);
            }
            let start = Instant::now();
            f().await;
            list.push(start.elapsed());
        }
    }
    let [hot, cold] = times;
    (median(hot), median(cold))
}

fn main() -> ExitCode {
    let (cli, matches) = clock_exporter::testing::parse_from(std::env::args());
    let ctx = Context {
        roots: Roots {
            procfs: cli.procfs.clone(),
            sysfs: cli.sysfs.clone(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("scrape_cost: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        println!("| what | hot (µs) | cold (µs) |\n|---|--:|--:|");
        let row = |what: &str, (hot, cold): (Duration, Duration)| {
            println!(
                "| {what} | {:.1} | {:.1} |",
                hot.as_secs_f64() * 1e6,
                cold.as_secs_f64() * 1e6
            );
        };
        for reg in REGISTRY {
            if !clock_exporter::testing::collector::flag(
                &matches,
                &format!("collector.{}", reg.name),
            ) {
                continue;
            }
            let collector = match (reg.build)(&matches, &ctx) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("scrape_cost: collector {}: {e}", reg.name);
                    return ExitCode::FAILURE;
                }
            };
            let times = hot_and_cold(|| {
                let c = collector.clone();
                async move {
                    std::hint::black_box(c.collect().await);
                }
            })
            .await;
            row(&format!("collector `{}`", reg.name), times);
        }
        let scraper = match Scraper::from_matches(&matches, &ctx, cli.scrape_timeout) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                eprintln!("scrape_cost: {e}");
                return ExitCode::FAILURE;
            }
        };
        row(
            "whole scrape",
            hot_and_cold(|| {
                let s = scraper.clone();
                async move {
                    std::hint::black_box(s.scrape().await);
                }
            })
            .await,
        );
        let families = scraper.scrape().await;
        for (name, format) in [
            ("OpenMetrics", Format::OpenMetrics),
            ("text 0.0.4", Format::Text),
        ] {
            let encoder = Encoder::default();
            // Each run encodes a fresh scrape, so that the values that change
            // between scrapes are encoded anew, as in the server.
            let times = hot_and_cold(|| {
                let (s, e) = (scraper.clone(), &encoder);
                async move {
                    let f = s.scrape().await;
                    std::hint::black_box(e.encode(f, format));
                }
            })
            .await;
            row(&format!("scrape + encode, {name}"), times);
        }
        for (what, times) in landing_costs(families).await {
            row(what, times);
        }
        let bytes = Encoder::default()
            .encode(scraper.scrape().await, Format::Text)
            .len();
        println!("\nbody: {bytes} bytes (text 0.0.4)");
        ExitCode::SUCCESS
    })
}

/// The landing page's costs: the verdict on a scrape's families and its
/// HTML with a full history (512 points), without the scrape; and one
/// history record, which every `/metrics` scrape pays.
async fn landing_costs(
    families: Vec<clock_exporter::testing::metrics::Family>,
) -> Vec<(&'static str, (Duration, Duration))> {
    // The landing page: the verdict on a scrape's families and its
    // HTML with a full history (512 points), without the scrape.
    // A daemon with four sources, one a falseticker, as on the lab's
    // skewed host, so that every part of the page is drawn.
    let mut families = families;
    {
        use clock_exporter::testing::model::{
            Daemon, DaemonReport, Peer, PeerKind, PeerState, SyncStatus, up_family,
        };
        let peer = |i: u8, state| Peer {
            address: format!("192.0.2.{i}"),
            kind: PeerKind::Server,
            refid: "192.0.2.1".into(),
            state,
            stratum: Some(2),
            offset_seconds: Some(if state == PeerState::Falseticker {
                11.5
            } else {
                1e-5
            }),
            delay_seconds: Some(2e-4),
            jitter_seconds: Some(5e-5),
            dispersion_seconds: Some(1e-4),
            error_bound_seconds: Some(1e-3),
            reachability_ratio: Some(1.0),
            poll_interval_seconds: Some(64.0),
            leap: Some(0),
            auth: None,
        };
        let report = DaemonReport {
            daemon: Daemon::Chronyd,
            sync: Some(SyncStatus {
                offset_seconds: Some(1e-5),
                stratum: Some(3),
                leap: Some(0),
                root_delay_seconds: Some(4e-4),
                root_dispersion_seconds: Some(6e-4),
                reference: "192.0.2.11".into(),
                ..SyncStatus::default()
            }),
            peers: vec![
                peer(11, PeerState::Selected),
                peer(12, PeerState::Falseticker),
                peer(13, PeerState::Candidate),
                peer(14, PeerState::Candidate),
            ],
            server_requests_total: None,
        };
        families.extend(report.families());
        families.push(up_family(Daemon::Chronyd, true));
    }
    let history = clock_exporter::testing::diagnose::History::default();
    for i in 0..600 {
        history.record(&families, f64::from(i) * 15.0);
    }
    let page_times = hot_and_cold(|| {
        let (f, h) = (&families, &history);
        async move {
            let v = clock_exporter::testing::diagnose::verdict(
                f,
                9000.0,
                &clock_exporter::testing::diagnose::Limits::default(),
            );
            std::hint::black_box(clock_exporter::testing::diagnose::landing(
                &v,
                &h.points(),
                &[],
                "/metrics",
                "bench",
            ));
        }
    })
    .await;
    let record_times = hot_and_cold(|| {
        let (f, h) = (&families, &history);
        async move {
            h.record(f, 1.0);
        }
    })
    .await;
    vec![
        ("landing page: verdict + HTML (no scrape)", page_times),
        ("history: one scrape recorded", record_times),
    ]
}
