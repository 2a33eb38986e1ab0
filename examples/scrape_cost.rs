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
        let bytes = Encoder::default().encode(families, Format::Text).len();
        println!("\nbody: {bytes} bytes (text 0.0.4)");
        ExitCode::SUCCESS
    })
}
