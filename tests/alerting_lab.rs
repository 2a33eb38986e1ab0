//! The alert rules against real daemons: a client host running ntpd or chronyd, with
//! three servers in namespaces of their own, our exporter beside ntpd, and a
//! real Prometheus (unpacked by scripts/lab-fetch) in the client's namespace
//! scraping it every second with `alerts/*.rules.yml` loaded.
//!
//! - With the seed's vB (a server 11.5 s ahead) among the servers, the
//!   falseticker and disagreement alerts go pending and name it, and only it.
//! - With three honest servers, no peer-related alert is raised.

mod lab;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use lab::{
    Exporter, Netns, Ntpd, Proc, SkewedServer, TempDir, chrony_server, http_get, in_netns, link,
    wait_for,
};
use serde_json::Value;

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVERS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 11),
    Ipv4Addr::new(192, 0, 2, 12),
    Ipv4Addr::new(192, 0, 2, 13),
];
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

/// The lab: client with ntpd and the exporter, three servers; the third is
/// `skewed` seconds ahead (a test responder) or an honest chronyd.
struct Lab {
    // Declaration order is drop order: processes before namespaces.
    _prometheus: Proc,
    _exporter: Exporter,
    _ntpd: Option<Ntpd>,
    _client_chronyd: Option<lab::Chronyd>,
    daemon: &'static str,
    _chronyds: Vec<lab::Chronyd>,
    _skewed: Option<SkewedServer>,
    _dir: TempDir,
    client: Netns,
    _servers: Vec<Netns>,
}

/// `daemon` is "ntpd" or "chronyd": which one the client runs.
fn lab(daemon: &'static str, third_skewed: bool) -> Lab {
    lab::require_root();
    let root = lab::root();
    let client = Netns::new();
    let servers: Vec<Netns> = SERVERS.iter().map(|_| Netns::new()).collect();
    for (ns, addr) in servers.iter().zip(SERVERS) {
        link(&client, CLIENT, ns, addr);
    }
    let mut chronyds = vec![
        chrony_server(&root, &servers[0], "server-a"),
        chrony_server(&root, &servers[1], "server-b"),
    ];
    let skewed = if third_skewed {
        Some(SkewedServer::start(&servers[2], SERVERS[2], 11.5, 0.0))
    } else {
        chronyds.push(chrony_server(&root, &servers[2], "server-c"));
        None
    };
    let polls = if daemon == "ntpd" {
        "iburst minpoll 3 maxpoll 4"
    } else {
        "iburst minpoll -2 maxpoll 0"
    };
    let config = SERVERS
        .iter()
        .map(|a| format!("server {a} {polls}"))
        .collect::<Vec<_>>()
        .join("\n");
    let (ntpd, client_chronyd, flags) = if daemon == "ntpd" {
        let n = Ntpd::start(&root, &client, "ntpd", &config);
        (Some(n), None, ["--collector.ntpd.address", "127.0.0.1:123"])
    } else {
        let c = lab::Chronyd::start(&root, &client, "client", &config);
        (
            None,
            Some(c),
            ["--collector.chrony.address", "127.0.0.1:323"],
        )
    };
    let exporter = Exporter::start(&client, &flags);
    // Prometheus starts watching once ntpd has settled, as it would on a
    // host that has been running for a while: the falseticker rule asks for
    // an unbroken run of samples, which ntpd's first seconds (every peer
    // still unreachable) would otherwise break for the whole window.
    wait_for("ntpd to settle", Duration::from_secs(60), || {
        let body = exporter.scrape(&client);
        let state = |peer: Ipv4Addr, state: &str| {
            lab::sample(
                &body,
                &format!(
                    "clock_peer_state{{daemon=\"{daemon}\",peer=\"{peer}\",state=\"{state}\"}}"
                ),
            ) == Some(1.0)
        };
        let survived = |peer: Ipv4Addr| {
            ["selected", "candidate", "backup", "outlier"]
                .iter()
                .any(|s| state(peer, s))
        };
        let settled = if third_skewed {
            state(SERVERS[2], "falseticker") && survived(SERVERS[0]) && survived(SERVERS[1])
        } else {
            SERVERS.iter().all(|p| survived(*p))
        };
        settled.then_some(())
    });
    let dir = TempDir::new("prometheus");
    let prometheus = start_prometheus(&root, &client, &dir);
    Lab {
        _prometheus: prometheus,
        _exporter: exporter,
        _ntpd: ntpd,
        _client_chronyd: client_chronyd,
        daemon,
        _chronyds: chronyds,
        _skewed: skewed,
        _dir: dir,
        client,
        _servers: servers,
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_drives_the_peer_alerts_and_is_named() {
    skewed_server_is_named("ntpd");
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_drives_the_peer_alerts_and_is_named_under_chronyd() {
    skewed_server_is_named("chronyd");
}

fn skewed_server_is_named(daemon: &'static str) {
    let lab = lab(daemon, true);
    let skewed = SERVERS[2].to_string();
    let found = wait_for(
        "falseticker and disagreement alerts",
        Duration::from_secs(90),
        || {
            let a = alerts(&lab.client);
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
        &lab.client,
        &format!(
            "clock_peer_offset_seconds{{daemon=\"{}\",peer=\"{skewed}\"}}",
            lab.daemon
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
    let lab = lab("ntpd", false);
    // Wait until the rules have seen three usable sources, and a few more
    // evaluations, so that every alert group has run over that data.
    wait_for("three usable sources", Duration::from_secs(90), || {
        let r = query(&lab.client, "instance:clock_usable_sources:count");
        let n: f64 = r.first()?["value"][1].as_str()?.parse().ok()?;
        (n >= 3.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    // Then watch the rules for a while: 20 evaluations.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let raised: Vec<_> = alerts(&lab.client)
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
        &lab.client,
        "clock_peer_state{daemon=\"ntpd\",state=\"falseticker\"}",
    );
    assert_eq!(states.len(), 3, "{states:?}");
}
