//! The alert rules against real daemons: a client host running ntpd or chronyd, with
//! three servers in namespaces of their own, our exporter beside the daemon, and a
//! real Prometheus (unpacked by scripts/lab-fetch) in the client's namespace
//! scraping it every second with `alerts/*.rules.yml` loaded.
//!
//! - With the seed's vB (a server 11.5 s ahead) among the servers, the
//!   falseticker and disagreement alerts go pending and name it, and only it.
//! - With three honest servers, no peer-related alert is raised.

mod common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{
    Daemon, Exporter, Lab, Netns, Proc, TempDir, http_get, in_netns, sample, wait_for,
};
use serde_json::Value;

/// The servers every client here polls; the third may be the skewed one.
const SERVERS: [&str; 3] = ["a", "b", "c"];
const PROMETHEUS: &str = "127.0.0.1:9090";

/// Alerts about peers and their selection; none may fire on a healthy host.
const PEER_ALERTS: [&str; 5] = [
    "ClockPeerFalseticker",
    "ClockPeersDisagree",
    "ClockNoUsableSource",
    "ClockTooFewSources",
    "ClockServerRejectedByClients",
];

fn rule_files() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts");
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .expect("alerts/")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".rules.yml"))
        .map(|p| p.display().to_string())
        .collect();
    v.sort();
    assert!(v.len() >= 2, "{v:?}");
    v
}

fn start_prometheus(root: &Path, ns: &Netns, dir: &TempDir) -> Proc {
    let rules = rule_files()
        .iter()
        .map(|f| format!("  - {f}"))
        .collect::<Vec<_>>()
        .join("\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}\n\
         scrape_configs:\n  - job_name: clock\n    static_configs:\n      - targets: [\"127.0.0.1:9857\"]\n"
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let mut cmd = ns.command(root.join("usr/bin/prometheus"));
    cmd.arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={PROMETHEUS}"))
        .current_dir(dir.path());
    let mut proc = Proc::spawn(cmd, dir.path().join("prometheus.log"), "prometheus");
    let name = ns.name.clone();
    wait_for("prometheus ready", Duration::from_secs(30), || {
        proc.assert_running();
        let n = name.clone();
        in_netns(&n, || http_get(PROMETHEUS, "/-/ready", None).ok())
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    });
    proc
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An instant query through Prometheus' HTTP API, from inside the namespace.
fn query(ns: &Netns, expr: &str) -> Vec<Value> {
    let path = format!("/api/v1/query?query={}", encode(expr));
    let (status, body) =
        in_netns(&ns.name, move || http_get(PROMETHEUS, &path, None)).expect("query prometheus");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// (alertname, peer, state) of every pending or firing alert.
fn alerts(ns: &Netns) -> Vec<(String, String, String)> {
    query(ns, "ALERTS")
        .iter()
        .map(|a| {
            let l = &a["metric"];
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (s("alertname"), s("peer"), s("alertstate"))
        })
        .collect()
}

/// The lab, watched by Prometheus: the client with its daemon and the
/// exporter, three servers; the third (`c`) is 11.5 s ahead (the test
/// responder) or an honest chronyd.
struct Watched {
    // Declaration order is drop order: Prometheus and the exporter first.
    _prometheus: Proc,
    _exporter: Exporter,
    _dir: TempDir,
    daemon: Daemon,
    lab: Lab,
}

fn watched(daemon: Daemon, third_skewed: bool) -> Watched {
    let builder = Lab::builder().client(daemon).honest("a").honest("b");
    let lab = if third_skewed {
        builder.skewed("c", 11.5)
    } else {
        builder.honest("c")
    }
    .build();
    let flags = match daemon {
        Daemon::Ntpd => ["--collector.ntpd.address", "127.0.0.1:123"],
        Daemon::Chronyd => ["--collector.chrony.address", "127.0.0.1:323"],
    };
    let exporter = lab.exporter(&flags);
    let [a, b, c] = SERVERS.map(|n| lab.addr(n));
    // Prometheus starts watching once the daemon has settled, as it would on
    // a host that has been running for a while: the falseticker rule asks for
    // an unbroken run of samples, which the daemon's first seconds (every
    // peer still unreachable) would otherwise break for the whole window.
    wait_for("the daemon to settle", Duration::from_secs(60), || {
        let body = exporter.scrape();
        let state = |peer: Ipv4Addr, state: &str| {
            sample(
                &body,
                &format!(
                    "clock_peer_state{{daemon=\"{}\",peer=\"{peer}\",state=\"{state}\"}}",
                    daemon.label()
                ),
            ) == Some(1.0)
        };
        let survived = |peer: Ipv4Addr| {
            ["selected", "candidate", "backup", "outlier"]
                .iter()
                .any(|s| state(peer, s))
        };
        let settled = if third_skewed {
            state(c, "falseticker") && survived(a) && survived(b)
        } else {
            [a, b, c].into_iter().all(survived)
        };
        settled.then_some(())
    });
    let dir = TempDir::new("prometheus");
    let prometheus = start_prometheus(lab.root(), lab.client(), &dir);
    Watched {
        _prometheus: prometheus,
        _exporter: exporter,
        _dir: dir,
        daemon,
        lab,
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_drives_the_peer_alerts_and_is_named() {
    skewed_server_is_named(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_drives_the_peer_alerts_and_is_named_under_chronyd() {
    skewed_server_is_named(Daemon::Chronyd);
}

fn skewed_server_is_named(daemon: Daemon) {
    let w = watched(daemon, true);
    let skewed = w.lab.addr("c").to_string();
    let found = wait_for(
        "falseticker and disagreement alerts",
        Duration::from_secs(90),
        || {
            let a = alerts(w.lab.client());
            let names = |alert: &str| -> Vec<String> {
                a.iter()
                    .filter(|(n, _, _)| n == alert)
                    .map(|(_, p, _)| p.clone())
                    .collect()
            };
            let (f, d) = (names("ClockPeerFalseticker"), names("ClockPeersDisagree"));
            (!f.is_empty() && !d.is_empty()).then_some(a)
        },
    );
    for (alert, peer, state) in &found {
        if alert == "ClockPeerFalseticker" || alert == "ClockPeersDisagree" {
            assert_eq!(peer, &skewed, "{alert} names the skewed server: {found:?}");
            assert!(state == "pending" || state == "firing", "{found:?}");
        }
    }
    // The series behind them, as Prometheus stored them from our exporter.
    let offset = query(
        w.lab.client(),
        &format!(
            "clock_peer_offset_seconds{{daemon=\"{}\",peer=\"{skewed}\"}}",
            w.daemon.label()
        ),
    );
    let v: f64 = offset[0]["value"][1]
        .as_str()
        .expect("value")
        .parse()
        .expect("number");
    assert!((v - 11.5).abs() < 0.01, "{v}");
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn three_honest_servers_raise_no_peer_alert() {
    let w = watched(Daemon::Ntpd, false);
    // Wait until the rules have seen three usable sources, and a few more
    // evaluations, so that every alert group has run over that data.
    wait_for("three usable sources", Duration::from_secs(90), || {
        let r = query(w.lab.client(), "instance:clock_usable_sources:count");
        let n: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
        (n >= 3.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    // Then watch the rules for a while: 20 evaluations.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let raised: Vec<_> = alerts(w.lab.client())
            .into_iter()
            .filter(|(n, _, _)| PEER_ALERTS.contains(&n.as_str()))
            .collect();
        assert!(
            raised.is_empty(),
            "peer alerts on a healthy host: {raised:?}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    // And the rules really evaluated over our series.
    let states = query(
        w.lab.client(),
        "clock_peer_state{daemon=\"ntpd\",state=\"falseticker\"}",
    );
    assert_eq!(states.len(), 3, "{states:?}");
}
