//! What one chrony collection costs, against `chronyc -n sources` plus
//! `chronyc -n tracking` run as subprocesses, on a real chronyd with eight
//! sources. A benchmark, not a test: it reports the ratio
//! (docs/performance.md). Needs root: `cargo bench --bench chrony_vs_chronyc`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lab::{Chronyd, Netns, SkewedServer, chrony_server, link, wait_for};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const SKEWED: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);
const SERVER_C: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 13);
const FAST: &str = "iburst minpoll -2 maxpoll 0";

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn main() {
    lab::require_root();
    let root = lab::root();
    let client = Netns::new();
    let (ns_a, ns_skewed, ns_c) = (Netns::new(), Netns::new(), Netns::new());
    link(&client, CLIENT, &ns_a, SERVER_A);
    link(&client, CLIENT, &ns_skewed, SKEWED);
    link(&client, CLIENT, &ns_c, SERVER_C);
    let server_a = chrony_server(&root, &ns_a, "server-a");
    let server_c = chrony_server(&root, &ns_c, "server-c");
    let skewed = SkewedServer::start(&ns_skewed, SKEWED, 11.5, 0.0);
    // Eight sources: three answer, five are documentation addresses with no
    // route in the namespace (nothing leaves it); each is one SOURCE_DATA and
    // one SOURCESTATS request all the same.
    let unreachable = (20..25).fold(String::new(), |conf, i| {
        conf + &format!("server 198.51.100.{i} minpoll 6\n")
    });
    let conf = format!(
        "server {SERVER_A} {FAST}\nserver {SKEWED} {FAST}\nserver {SERVER_C} {FAST}\n{unreachable}"
    );
    let chronyd = Chronyd::start(&root, &client, "client", &conf);
    wait_for("a source selected", Duration::from_secs(30), || {
        let s = chronyd.chronyc(&root, &client, &["-n", "sources"]);
        s.lines().any(|l| l.starts_with("^*")).then_some(())
    });
    let ours = client.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let chrony = std::sync::Arc::new(clock_exporter::testing::collector::chrony::collector(
            "127.0.0.1:323".parse().expect("addr"),
            None,
            Duration::from_secs(1),
            true,
        ));
        (0..50)
            .map(|_| {
                let t = Instant::now();
                let c = rt.block_on(clock_exporter::testing::collector::Collector::collect(
                    chrony.clone(),
                ));
                assert!(c.errors.is_empty(), "{:?}", c.errors);
                t.elapsed()
            })
            .collect::<Vec<_>>()
    });
    let theirs: Vec<Duration> = (0..10)
        .map(|_| {
            // chronyc straight on the unix socket (no `ip netns exec`).
            let t = Instant::now();
            for args in [["-n", "sources"], ["-n", "tracking"]] {
                let out = std::process::Command::new(root.join("usr/bin/chronyc"))
                    .env("LD_LIBRARY_PATH", lab::lib_path(&root))
                    .arg("-h")
                    .arg(chronyd.socket())
                    .args(args)
                    .output()
                    .expect("chronyc");
                assert!(out.status.success());
            }
            t.elapsed()
        })
        .collect();
    let (ours, theirs) = (median(ours), median(theirs));
    println!(
        "chrony collector, 8 sources, UDP: median {ours:?}; chronyc -n sources + chronyc -n tracking as subprocesses: median {theirs:?}; ratio ours/chronyc {:.3}",
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
    drop((chronyd, server_a, server_c, skewed));
    drop((ns_a, ns_skewed, ns_c, client));
}
