//! What one ntpd query costs, against running `ntpq -pn` as a subprocess
//! (what telegraf's ntpq input does), on a real ntpd with ten associations.
//! A benchmark, not a test: it reports the ratio (docs/performance.md, "ntpd collector
//! against ntpq") and
//! fails only if the lab cannot be set up. Needs root (network namespaces):
//! `cargo bench --bench ntpd_vs_ntpq`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clock_exporter::testing::collector::daemon::{Depth, Sequences};
use clock_exporter::testing::collector::ntpd::query;
use lab::{Daemon, Lab, wait_for};

const SERVERS: u8 = 10;
const RUNS: usize = 15;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // Honest servers but one, the seed's vB, 11.5 s ahead.
    let lab = (1..SERVERS)
        .fold(
            Lab::builder().client(Daemon::Ntpd).skewed("vB", 11.5),
            |lab, i| lab.honest(&format!("honest-{i}")),
        )
        .build();
    let peers = wait_for("every association reached", Duration::from_secs(60), || {
        let p = lab.ntpq(&["-n", "-p"]);
        let reached = p
            .lines()
            .skip(2)
            .filter(|l| l.split_whitespace().nth(6).is_some_and(|r| r != "0"))
            .count();
        (reached == usize::from(SERVERS)).then_some(p)
    });

    let ours: Vec<Duration> = lab.client().enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let sequences = Sequences::new();
        let address: SocketAddr = "127.0.0.1:123".parse().expect("address");
        (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let reading = rt
                    .block_on(query(
                        address,
                        Duration::from_secs(2),
                        &sequences,
                        Depth::Full,
                    ))
                    .expect("query");
                let took = start.elapsed();
                assert_eq!(reading.peers.len(), usize::from(SERVERS));
                assert!(reading.problems.is_empty(), "{:?}", reading.problems);
                took
            })
            .collect()
    });
    let theirs: Vec<Duration> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            let out = lab.ntpq(&["-n", "-p"]);
            let took = start.elapsed();
            assert_eq!(out.lines().count(), 2 + usize::from(SERVERS), "{out}");
            took
        })
        .collect();
    let (ours, theirs) = (median(ours), median(theirs));
    eprintln!(
        "{SERVERS} associations, median of {RUNS}: our query {ours:?}, ntpq -pn {theirs:?} ({:.0}x)\n{peers}",
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
    println!(
        "ntpd query vs ntpq -pn: ours {ours:?}, ntpq {theirs:?}, ratio ours/ntpq {:.4}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
