//! What probing 50 NTP servers costs: through the `sntp` collector in one
//! scrape, and through `/probe` scraped for all 50 at once, against NTPsec's
//! `ntpdig` run once per target (what a cron job or a Nagios check does;
//! given several targets, ntpdig reports only the first that answers).
//!
//! The servers are lab responders on 127.0.1.1–50 in a namespace of their
//! own, each answering 20 ms after the request came (this machine has no
//! netem), so a round trip is 20 ms and 50 round trips one after the other
//! would be a second. A benchmark, not a test: it prints the figures
//! (docs/performance.md, "Probing NTP servers") and fails only if the setup
//! does, or if an answer is wrong. Needs root (a network namespace) and the
//! unpacked ntpdig (scripts/lab-fetch): `cargo bench --bench sntp_probes`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lab::{Answer, Exporter, Netns, Ntpd, SkewedServer, only_collectors, sample};

const SERVERS: u8 = 50;
const RTT: Duration = Duration::from_millis(20);
/// Fresh probes measured per configuration, one per collector interval.
const RUNS: usize = 8;
const INTERVAL: &str = "2s";
const MAX_CONCURRENT: usize = 8;

fn server(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, i)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// The most requests any instant saw in service across all responders.
fn max_in_service(responders: &[SkewedServer]) -> usize {
    let mut edges: Vec<(Instant, i32)> = Vec::new();
    for r in responders {
        for &(came, left) in r.served.lock().expect("served").iter() {
            edges.push((came, 1));
            edges.push((left, -1));
        }
    }
    // An answer that leaves as another request comes: count the leaving first.
    edges.sort_by_key(|&(t, d)| (t, d));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    usize::try_from(most).expect("non-negative")
}

fn clear(responders: &[SkewedServer]) {
    for r in responders {
        r.served.lock().expect("served").clear();
    }
}

fn requests(responders: &[SkewedServer]) -> usize {
    responders
        .iter()
        .map(|r| r.requests.load(Ordering::Relaxed))
        .sum()
}

/// The collector probing `count` servers: the median scrape of RUNS, each
/// after the collector interval has passed, so every scrape probes anew.
fn collector(ns: &Netns, responders: &[SkewedServer], count: u8) -> Duration {
    let mut flags = only_collectors(&["sntp"]);
    flags.push(format!("--collector.sntp.interval={INTERVAL}"));
    flags.push("--collector.sntp.timeout=1s".to_owned());
    for i in 1..=count {
        flags.push(format!("--collector.sntp.server={}", server(i)));
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = Exporter::start(ns, &flags);
    let took: Vec<Duration> = (0..=RUNS)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(2100));
            let before = requests(responders);
            let start = Instant::now();
            let body = exporter.scrape();
            let took = start.elapsed();
            assert_eq!(
                requests(responders) - before,
                usize::from(count),
                "one request per server per scrape"
            );
            for i in 1..=count {
                let labels = format!("{{server=\"{0}\",address=\"{0}:123\"}}", server(i));
                assert_eq!(
                    sample(&body, &format!("clock_sntp_up{labels}")),
                    Some(1.0),
                    "{body}"
                );
                let delay =
                    sample(&body, &format!("clock_sntp_delay_seconds{labels}")).expect("delay");
                assert!(delay >= RTT.as_secs_f64(), "delay {delay}");
            }
            took
        })
        // The first scrape starts the collector's state: not counted.
        .skip(1)
        .collect();
    median(took)
}

/// `/probe` for every server at once, from one thread per target: the
/// wall time for all, and the most requests the servers saw in service.
fn probe_all(ns: &Netns, responders: &[SkewedServer], max_concurrent: usize) -> (Duration, usize) {
    let mut flags = only_collectors(&[]);
    flags.extend([
        "--probe.allow".to_owned(),
        "127.0.1.0/24".to_owned(),
        format!("--probe.max-concurrent={max_concurrent}"),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = Exporter::start(ns, &flags);
    let mut walls = Vec::new();
    let mut most = 0;
    for _ in 0..RUNS {
        clear(responders);
        let start = Instant::now();
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=SERVERS)
                .map(|i| {
                    let exporter = &exporter;
                    s.spawn(move || {
                        exporter.get(&format!("/probe?target={}&samples=1", server(i)), None)
                    })
                })
                .collect();
            for h in handles {
                let (status, body) = h.join().expect("probe thread");
                assert_eq!(status, 200, "{body}");
                assert_eq!(sample(&body, "clock_probe_success"), Some(1.0), "{body}");
            }
        });
        walls.push(start.elapsed());
        most = most.max(max_in_service(responders));
    }
    (median(walls), most)
}

fn main() {
    let ns = Netns::new();
    let responders: Vec<SkewedServer> = (1..=SERVERS)
        .map(|i| {
            SkewedServer::answering(
                &ns,
                SocketAddrV4::new(server(i), 123),
                0.0,
                0.0,
                Answer::After(RTT),
            )
        })
        .collect();

    let one = collector(&ns, &responders, 1);
    let fifty = collector(&ns, &responders, SERVERS);
    let (bounded, bounded_most) = probe_all(&ns, &responders, MAX_CONCURRENT);
    let (unbounded, unbounded_most) = probe_all(&ns, &responders, usize::from(SERVERS));

    let root = lab::root();
    let targets: Vec<String> = (1..=SERVERS).map(|i| server(i).to_string()).collect();
    let start = Instant::now();
    for t in &targets {
        let out = Ntpd::ntpdig(&root, &ns, &["-j", "-t", "1", t]);
        assert!(out.contains("\"offset\""), "ntpdig {t}: {out}");
    }
    let ntpdig_each = start.elapsed();
    let serial = RTT * u32::from(SERVERS);
    let waves = usize::from(SERVERS).div_ceil(MAX_CONCURRENT);
    println!(
        "{SERVERS} servers, {} round trip each; median of {RUNS} runs",
        ms(RTT)
    );
    println!();
    println!("| what | time | against |");
    println!("|---|---|---|");
    println!(
        "| `sntp` collector, 1 server, one scrape | {} | 1 round trip: {} |",
        ms(one),
        ms(RTT)
    );
    println!(
        "| `sntp` collector, {SERVERS} servers, one scrape | {} | {:.2}x the 1-server scrape; {SERVERS} round trips in a row: {} |",
        ms(fifty),
        fifty.as_secs_f64() / one.as_secs_f64(),
        ms(serial)
    );
    println!(
        "| `/probe` x {SERVERS} at once, --probe.max-concurrent {MAX_CONCURRENT} | {} | {waves} waves of round trips: {}; at most {bounded_most} requests in service at the servers |",
        ms(bounded),
        ms(RTT * u32::try_from(waves).expect("waves"))
    );
    println!(
        "| `/probe` x {SERVERS} at once, --probe.max-concurrent {SERVERS} | {} | at most {unbounded_most} requests in service |",
        ms(unbounded)
    );
    println!(
        "| `ntpdig` once per target, one after the other | {} | {:.0}x the collector's scrape |",
        ms(ntpdig_each),
        ntpdig_each.as_secs_f64() / fifty.as_secs_f64()
    );
    assert!(
        bounded_most <= MAX_CONCURRENT,
        "{bounded_most} probes in flight, over --probe.max-concurrent {MAX_CONCURRENT}"
    );
    drop(responders);
}
