//! What one chrony collection costs, against `chronyc -n sources` plus
//! `chronyc -n tracking` run as subprocesses, on a real chronyd with eight
//! sources. A benchmark, not a test: it reports the ratio
//! (docs/performance.md, "chrony collector against chronyc"). Needs root:
//! `cargo bench --bench chrony_vs_chronyc`.

#[path = "../tests/lab/mod.rs"]
mod lab;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use lab::{Daemon, Lab, plan, wait_for};

fn median(mut d: Vec<Duration>) -> Duration {
    d.sort();
    d[d.len() / 2]
}

fn main() {
    // Eight sources: three answer (honest vA, the skewed vB, honest vC), five
    // are addresses the namespace has no route to (nothing leaves it); each
    // is one SOURCE_DATA and one SOURCESTATS request all the same.
    let unrouted = plan::UNROUTED.iter().fold(String::new(), |mut conf, a| {
        writeln!(conf, "server {a} minpoll 6").expect("write to a String");
        conf
    });
    let lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .skewed("b", 11.5)
        .honest("c")
        .client_conf(&unrouted)
        .build();
    wait_for("a source selected", Duration::from_secs(30), || {
        let s = lab.chronyc(&["-n", "sources"]);
        s.lines().any(|l| l.starts_with("^*")).then_some(())
    });
    let root = lab.root();
    let ours = lab.client().enter(|| {
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
                    .env("LD_LIBRARY_PATH", lab::lib_path(root))
                    .arg("-h")
                    .arg(lab.chronyd().socket())
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
}
