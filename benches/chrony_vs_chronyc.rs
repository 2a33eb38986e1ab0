//! What one chrony collection costs, against `chronyc -n sources` plus
//! `chronyc -n tracking` run as subprocesses, on a real chronyd with eight
//! sources; and on the unix socket, which adds NTP_DATA, AUTH_DATA and
//! SERVER_STATS, against chronyc adding `ntpdata` and `authdata`. A benchmark, not a test: it reports the ratio
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
    let socket = lab.chronyd().socket();
    let udp = collections(&lab, None);
    let unix = collections(&lab, Some(socket));
    let plain = chronyc_runs(&lab, &[&["-n", "sources"], &["-n", "tracking"]]);
    // What the socket adds: each source's NTP data and authentication.
    let full = chronyc_runs(
        &lab,
        &[
            &["-n", "sources"],
            &["-n", "tracking"],
            &["-n", "ntpdata"],
            &["-n", "authdata"],
        ],
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "chrony collector, 8 sources, UDP: median {udp:?}; chronyc -n sources + chronyc -n tracking as subprocesses: median {plain:?}; ratio ours/chronyc {:.3}",
        ratio(udp, plain)
    );
    println!(
        "chrony collector, 8 sources, unix socket (+ NTP_DATA, AUTH_DATA, SERVER_STATS): median {unix:?}; chronyc sources, tracking, ntpdata, authdata as subprocesses: median {full:?}; ratio ours/chronyc {:.3}; socket/UDP {:.2}",
        ratio(unix, full),
        ratio(unix, udp)
    );
}

/// The median of 50 collections, over UDP or on the unix socket.
fn collections(lab: &Lab, socket: Option<std::path::PathBuf>) -> Duration {
    let d = lab.client().enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let chrony = std::sync::Arc::new(clock_exporter::testing::collector::chrony::collector(
            "127.0.0.1:323".parse().expect("addr"),
            socket,
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
    median(d)
}

/// The median of 10 runs of these chronyc commands, one after the other,
/// straight on the unix socket (no `ip netns exec`).
fn chronyc_runs(lab: &Lab, commands: &[&[&str]]) -> Duration {
    let root = lab.root();
    let runs = (0..10)
        .map(|_| {
            let t = Instant::now();
            for args in commands {
                let out = std::process::Command::new(root.join("usr/bin/chronyc"))
                    .env("LD_LIBRARY_PATH", lab::lib_path(root))
                    .arg("-h")
                    .arg(lab.chronyd().socket())
                    .args(*args)
                    .output()
                    .expect("chronyc");
                assert!(out.status.success());
            }
            t.elapsed()
        })
        .collect();
    median(runs)
}
