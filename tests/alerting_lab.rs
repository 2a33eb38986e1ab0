//! The alert rules against real daemons: a client host running ntpd or
//! chronyd, with servers in namespaces of their own, our exporter beside the
//! daemon, and a real Prometheus (unpacked by scripts/lab-fetch) in the
//! client's namespace scraping it every second with `alerts/*.rules.yml`
//! loaded. One lab per fault, each asserting which alerts go pending and
//! which server they name (within a lab's time only `pending` is reachable;
//! `firing` belongs to `promtool test rules`):
//!
//! - three honest servers: nothing at warning or critical once settled;
//! - the seed's vB, 11.5 s ahead, among three: it alone is named;
//! - a server whose clock runs fast at a constant rate: it alone is named,
//!   before its offset passes a second;
//! - two servers only, one 11.5 s ahead: no majority, so "no usable source"
//!   with the runbook's advice of 3–4 sources, and nothing names the honest
//!   server, nor pages for an offset the daemon cannot know;
//! - a free-running upstream (chronyd `local`, no upstream): the client's
//!   side names it;
//! - the seed seen from the centre: Prometheus scrapes `/probe` for the
//!   servers with the README's relabelling, and vB alone is named.
//!
//! The lab shares this machine's kernel clock, which no lab daemon
//! disciplines (`-x`, `disable ntp`): the kernel alerts report this
//! machine, not the lab, and are left out of "nothing at warning or
//! critical" ([`MACHINE_ALERTS`]). ntpd under `disable ntp` never runs its
//! clock discipline, so it reports itself unsynchronised (leap 3) however
//! good its sources: `ClockNotSynchronising` is the truth about it
//! ([`lab_artefacts`]), and its worst-case error is unknown.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use common::lab::{
    Daemon, Exporter, Lab, LabBuilder, Netns, Proc, TempDir, http_get, in_netns, sample, wait_for,
};
use serde_json::Value;

const PROMETHEUS: &str = "127.0.0.1:9090";

/// Alerts about this machine's kernel clock, which the lab shares and does
/// not discipline: whether they are raised depends on the machine.
const MACHINE_ALERTS: [&str; 2] = ["ClockKernelNotSynchronising", "ClockKernelFreeRunning"];

/// The scrape config of clock_exporters at `target` (`HOST:PORT`).
fn clock_job(target: &str) -> String {
    format!("  - job_name: clock\n    static_configs:\n      - targets: [\"{target}\"]\n")
}

/// Prometheus in `ns`, evaluating every rule file each second, with
/// `scrape_configs` (YAML list items, indented two spaces).
fn start_prometheus(root: &Path, ns: &Netns, dir: &TempDir, scrape_configs: &str) -> Proc {
    let files = common::rule_files_evaluated_every(dir.path(), "1s");
    assert!(files.len() >= 2, "{files:?}");
    let rules = files
        .iter()
        .map(|f| format!("  - {}", f.display()))
        .collect::<Vec<_>>()
        .join("\n");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}\n\
         scrape_configs:\n{scrape_configs}"
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

/// A Prometheus HTTP API call from inside the namespace; its `data`.
fn api(ns: &Netns, path: String) -> Value {
    let (status, body) =
        in_netns(&ns.name, move || http_get(PROMETHEUS, &path, None)).expect("query prometheus");
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v["data"].clone()
}

/// An instant query's result vector.
fn query(ns: &Netns, expr: &str) -> Vec<Value> {
    api(
        ns,
        format!("/api/v1/query?query={}", common::percent_encode(expr)),
    )["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The single value of an instant query, if it has one.
fn value(ns: &Netns, expr: &str) -> Option<f64> {
    query(ns, expr).first()?["value"][1].as_str()?.parse().ok()
}

/// A pending or firing alert as Prometheus holds it.
#[derive(Debug, Clone)]
struct Alert {
    name: String,
    severity: String,
    peer: String,
    /// The server a probe alert names.
    server: String,
    description: String,
}

fn alerts(ns: &Netns) -> Vec<Alert> {
    api(ns, "/api/v1/alerts".to_owned())["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            Alert {
                name: s(&a["labels"]["alertname"]),
                severity: s(&a["labels"]["severity"]),
                peer: s(&a["labels"]["peer"]),
                server: s(&a["labels"]["server"]),
                description: s(&a["annotations"]["description"]),
            }
        })
        .collect()
}

/// Alerts that state the truth about the lab's daemon rather than its
/// sources: ntpd under `disable ntp` stays unsynchronised.
fn lab_artefacts(daemon: Daemon) -> &'static [&'static str] {
    match daemon {
        Daemon::Ntpd => &["ClockNotSynchronising"],
        Daemon::Chronyd | Daemon::Timesyncd => &[],
    }
}

/// Warning and critical alerts, but the machine's kernel ones.
fn raised(ns: &Netns) -> Vec<Alert> {
    alerts(ns)
        .into_iter()
        .filter(|a| a.severity == "warning" || a.severity == "critical")
        .filter(|a| !MACHINE_ALERTS.contains(&a.name.as_str()))
        .collect()
}

/// The lab, watched by Prometheus.
struct Watched {
    // Declaration order is drop order: Prometheus and the exporter first.
    _prometheus: Proc,
    exporter: Exporter,
    _dir: TempDir,
    daemon: Daemon,
    lab: Lab,
}

impl Watched {
    fn ns(&self) -> &Netns {
        self.lab.client()
    }

    /// Waits until an alert named `name` is raised, then returns every
    /// alert raised at that moment.
    fn until_raised(&self, name: &str, patience: Duration) -> Vec<Alert> {
        until_raised(self.ns(), name, patience)
    }

    /// The exporter's value for one of the client daemon's peers.
    fn peer_value(&self, metric: &str, peer: Ipv4Addr) -> f64 {
        let body = self.exporter.scrape();
        sample(
            &body,
            &format!(
                "{metric}{{daemon=\"{}\",peer=\"{peer}\"}}",
                self.daemon.label()
            ),
        )
        .unwrap_or_else(|| panic!("{metric} of {peer}:\n{body}"))
    }
}

/// Waits until an alert named `name` is raised in `ns`'s Prometheus, then
/// returns every alert raised at that moment.
fn until_raised(ns: &Netns, name: &str, patience: Duration) -> Vec<Alert> {
    wait_for(&format!("{name} raised"), patience, || {
        let a = raised(ns);
        a.iter().any(|x| x.name == name).then_some(a)
    })
}

/// Whether the exporter says `peer` is in `state` for `daemon`.
fn in_state(body: &str, daemon: Daemon, peer: Ipv4Addr, state: &str) -> bool {
    sample(
        body,
        &format!(
            "clock_peer_state{{daemon=\"{}\",peer=\"{peer}\",state=\"{state}\"}}",
            daemon.label()
        ),
    ) == Some(1.0)
}

fn survived(body: &str, daemon: Daemon, peer: Ipv4Addr) -> bool {
    ["selected", "candidate", "backup", "outlier"]
        .iter()
        .any(|s| in_state(body, daemon, peer, s))
}

/// Builds the lab, starts the exporter beside the client's daemon (chrony
/// over its unix socket, which gives each source's reference id), waits
/// until `settled` holds for the exporter's page, then starts Prometheus:
/// as on a host that has been running for a while, whose rules do not see
/// the daemon's first seconds (every peer still unreachable).
fn watched(builder: LabBuilder, daemon: Daemon, settled: impl Fn(&Lab, &str) -> bool) -> Watched {
    let lab = builder.client(daemon).build();
    let flags: Vec<String> = match daemon {
        Daemon::Ntpd => vec!["--collector.ntpd.address".into(), "127.0.0.1:123".into()],
        Daemon::Chronyd => vec![
            "--collector.chrony.socket".into(),
            lab.chronyd().socket().display().to_string(),
        ],
        Daemon::Timesyncd => vec![lab.timesyncd_flag()],
    };
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = lab.exporter(&flags);
    wait_for("the daemon to settle", Duration::from_secs(90), || {
        settled(&lab, &exporter.scrape()).then_some(())
    });
    let dir = TempDir::new("prometheus");
    let prometheus = start_prometheus(lab.root(), lab.client(), &dir, &clock_job("127.0.0.1:9857"));
    Watched {
        _prometheus: prometheus,
        exporter,
        _dir: dir,
        daemon,
        lab,
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn three_honest_servers_raise_nothing_at_warning_or_critical() {
    honest_lab_is_quiet(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn three_honest_servers_raise_nothing_at_warning_or_critical_under_chronyd() {
    honest_lab_is_quiet(Daemon::Chronyd);
}

fn honest_lab_is_quiet(daemon: Daemon) {
    let builder = Lab::builder().honest("a").honest("b").honest("c");
    let w = watched(builder, daemon, |lab, body| {
        ["a", "b", "c"]
            .iter()
            .all(|n| survived(body, daemon, lab.addr(n)))
    });
    // Until the rules have seen three usable sources, and a few more
    // evaluations, so that every group has run over that data.
    wait_for("three usable sources", Duration::from_secs(90), || {
        let n = value(w.ns(), "clock_sync_usable_sources")?;
        (n >= 3.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(5));
    // Then 20 evaluations with nothing at warning or critical.
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        let r: Vec<Alert> = raised(w.ns())
            .into_iter()
            .filter(|a| !lab_artefacts(daemon).contains(&a.name.as_str()))
            .collect();
        assert!(r.is_empty(), "alerts on a healthy host: {r:#?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    // The rules really evaluated over our series: each server is reached,
    // none of them is free-running, and the worst case is known and small.
    let peers = query(w.ns(), "clock_peer_state{state=\"falseticker\"}");
    assert_eq!(peers.len(), 3, "{peers:?}");
    assert!(
        query(w.ns(), "peer:clock_peer_free_running:bool").is_empty(),
        "an honest server taken for free-running"
    );
    let worst = value(w.ns(), "instance:clock_worst_case_error_seconds");
    match daemon {
        Daemon::Chronyd => {
            let worst = worst.expect("a worst case for a synchronised chronyd");
            assert!(worst < 0.05, "{worst}");
        }
        Daemon::Ntpd => assert_eq!(worst, None, "ntpd under `disable ntp` is unsynchronised"),
        Daemon::Timesyncd => unreachable!("timesyncd polls one server, not three"),
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_among_three_is_named_alone() {
    skewed_server_is_named(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_among_three_is_named_alone_under_chronyd() {
    skewed_server_is_named(Daemon::Chronyd);
}

fn skewed_server_is_named(daemon: Daemon) {
    let builder = Lab::builder().honest("a").honest("b").skewed("c", 11.5);
    let w = watched(builder, daemon, |lab, body| {
        in_state(body, daemon, lab.addr("c"), "falseticker")
            && survived(body, daemon, lab.addr("a"))
            && survived(body, daemon, lab.addr("b"))
    });
    let c = w.lab.addr("c");
    let found = wait_for(
        "falseticker and disagreement alerts",
        Duration::from_secs(90),
        || {
            let a = raised(w.ns());
            let has = |n: &str| a.iter().any(|x| x.name == n);
            (has("ClockPeerFalseticker") && has("ClockPeersDisagree")).then_some(a)
        },
    );
    assert_names_only(&found, c);
    // The series behind them, as Prometheus stored them from our exporter.
    let v = value(
        w.ns(),
        &format!(
            "clock_peer_offset_seconds{{daemon=\"{}\",peer=\"{c}\"}}",
            w.daemon.label()
        ),
    )
    .expect("offset");
    assert!((v - 11.5).abs() < 0.01, "{v}");
}

/// systemd-timesyncd following the skewed server alone (its one server):
/// its own bound, not the kernel's maxerror that timesyncd zeroes, makes
/// the offset alert go pending; a timesyncd host is neither "no daemon" nor
/// "too few sources".
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn timesyncd_on_the_skewed_server_raises_the_offset_alert() {
    let builder = Lab::builder().skewed("b", 11.5);
    let w = watched(builder, Daemon::Timesyncd, |_, body| {
        sample(body, "clock_timesyncd_synchronized") == Some(1.0)
    });
    let found = w.until_raised("ClockOffsetTooLarge", Duration::from_secs(60));
    let offset = found
        .iter()
        .find(|a| a.name == "ClockOffsetTooLarge")
        .expect("raised");
    assert!(
        offset.description.contains("timesyncd: |offset|"),
        "{offset:#?}"
    );
    let wce = value(
        w.ns(),
        "instance:clock_worst_case_error_seconds{daemon=\"timesyncd\"}",
    )
    .expect("the daemon's bound");
    assert!((wce - 11.5).abs() < 0.1, "{wce}");
    for quiet in ["ClockNoDaemon", "ClockTooFewSources", "ClockNoUsableSource"] {
        assert!(
            alerts(w.ns()).iter().all(|a| a.name != quiet),
            "{quiet} on a synchronised timesyncd host: {found:#?}"
        );
    }
}

/// Every alert that names a server names `bad`, and something does.
fn assert_names_only(found: &[Alert], bad: Ipv4Addr) {
    let naming: Vec<&Alert> = found.iter().filter(|a| !a.peer.is_empty()).collect();
    assert!(!naming.is_empty(), "nothing names {bad}: {found:#?}");
    for a in naming {
        assert_eq!(
            a.peer,
            bad.to_string(),
            "{} names another server: {found:#?}",
            a.name
        );
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_drifting_server_is_named_before_it_is_a_second_off() {
    drifting_server_is_named(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_drifting_server_is_named_before_it_is_a_second_off_under_chronyd() {
    drifting_server_is_named(Daemon::Chronyd);
}

/// How fast the drifting server runs: 2 ms a second, a second after about
/// 8 minutes, far longer than the lab takes to name it.
const DRIFT_PPM: f64 = 2000.0;

fn drifting_server_is_named(daemon: Daemon) {
    let builder = Lab::builder()
        .honest("a")
        .honest("b")
        .drifting("d", DRIFT_PPM);
    let w = watched(builder, daemon, |lab, body| {
        in_state(body, daemon, lab.addr("d"), "falseticker")
            && survived(body, daemon, lab.addr("a"))
            && survived(body, daemon, lab.addr("b"))
    });
    let d = w.lab.addr("d");
    let found = w.until_raised("ClockPeerFalseticker", Duration::from_secs(90));
    assert_names_only(&found, d);
    let offset = w.peer_value("clock_peer_offset_seconds", d);
    assert!(
        offset > 0.0 && offset < 1.0,
        "named at an offset of {offset} s: {found:#?}"
    );
    // A rate, not a step: the offset the daemon measures keeps growing.
    wait_for(
        "the drifting offset to grow",
        Duration::from_secs(60),
        || (w.peer_value("clock_peer_offset_seconds", d) > offset + 0.005).then_some(()),
    );
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn two_servers_one_wrong_leave_no_majority_and_page_no_one_else() {
    two_servers_no_majority(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn two_servers_one_wrong_leave_no_majority_and_page_no_one_else_under_chronyd() {
    two_servers_no_majority(Daemon::Chronyd);
}

fn two_servers_no_majority(daemon: Daemon) {
    let builder = Lab::builder().honest("a").skewed("b", 11.5);
    let w = watched(builder, daemon, |lab, body| {
        in_state(body, daemon, lab.addr("a"), "falseticker")
            && in_state(body, daemon, lab.addr("b"), "falseticker")
    });
    let (a, b) = (w.lab.addr("a"), w.lab.addr("b"));
    let found = w.until_raised("ClockNoUsableSource", Duration::from_secs(90));
    // A few more evaluations: whatever else the rules would raise, they
    // have raised by now.
    std::thread::sleep(Duration::from_secs(5));
    let found = [found, raised(w.ns())].concat();
    let nus = found
        .iter()
        .find(|x| x.name == "ClockNoUsableSource")
        .expect("raised");
    assert!(
        nus.description.contains("no majority") && nus.description.contains("give it 3 or 4"),
        "{}",
        nus.description
    );
    for x in &found {
        assert_ne!(
            x.peer,
            a.to_string(),
            "{} names the honest server: {found:#?}",
            x.name
        );
        assert!(
            ![
                "ClockPeerFalseticker",
                "ClockServerRejectedByClients",
                "ClockOffsetTooLarge"
            ]
            .contains(&x.name.as_str()),
            "{} raised without a majority: {found:#?}",
            x.name
        );
    }
    // The disagreement is still seen, and names the wrong one.
    let disagree: Vec<&Alert> = found
        .iter()
        .filter(|x| x.name == "ClockPeersDisagree")
        .collect();
    assert!(
        disagree.iter().all(|x| x.peer == b.to_string()),
        "{disagree:#?}"
    );
    // Its offset is unknown: no worst case recorded, whatever the daemon
    // still believes.
    assert!(
        query(w.ns(), "instance:clock_worst_case_error_seconds").is_empty(),
        "a worst case without a usable source"
    );
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_free_running_upstream_is_named_by_its_client() {
    free_running_upstream_is_named(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_free_running_upstream_is_named_by_its_client_under_chronyd() {
    free_running_upstream_is_named(Daemon::Chronyd);
}

fn free_running_upstream_is_named(daemon: Daemon) {
    let builder = Lab::builder().honest("a").honest("b").free_running("f");
    let w = watched(builder, daemon, |lab, body| {
        ["a", "b", "f"]
            .iter()
            .all(|n| survived(body, daemon, lab.addr(n)))
    });
    let f = w.lab.addr("f");
    let found = w.until_raised("ClockSourceFreeRunning", Duration::from_secs(60));
    assert_names_only(&found, f);
    let free = query(w.ns(), "peer:clock_peer_free_running:bool");
    assert_eq!(free.len(), 1, "{free:?}");
    assert_eq!(free[0]["metric"]["peer"], f.to_string(), "{free:?}");
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_rogue_leap_flag_is_named() {
    rogue_leap_is_named(Daemon::Ntpd);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_rogue_leap_flag_is_named_under_chronyd() {
    rogue_leap_is_named(Daemon::Chronyd);
}

/// Two honest servers and a responder with the right time that announces a
/// leap second (LI 1): the exporter publishes each source's leap indicator,
/// and ClockPeerRogueLeap names the one that announces, alone.
fn rogue_leap_is_named(daemon: Daemon) {
    let builder = Lab::builder().honest("a").honest("b").leaping("l");
    let w = watched(builder, daemon, |lab, body| {
        ["a", "b", "l"]
            .iter()
            .all(|n| survived(body, daemon, lab.addr(n)))
    });
    let l = w.lab.addr("l");
    assert_eq!(w.peer_value("clock_peer_leap", l), 1.0);
    for n in ["a", "b"] {
        assert_eq!(w.peer_value("clock_peer_leap", w.lab.addr(n)), 0.0, "{n}");
    }
    let found = w.until_raised("ClockPeerRogueLeap", Duration::from_secs(60));
    assert_names_only(&found, l);
    let rogue: Vec<&Alert> = found
        .iter()
        .filter(|a| a.name == "ClockPeerRogueLeap")
        .collect();
    assert_eq!(rogue.len(), 1, "{found:#?}");
}

/// The one alert of this name among `found`.
fn only_alert<'a>(found: &'a [Alert], name: &str) -> &'a Alert {
    let named: Vec<&Alert> = found.iter().filter(|x| x.name == name).collect();
    assert_eq!(named.len(), 1, "one {name}: {found:#?}");
    named[0]
}

/// NTS under chronyd: three honest servers, `a` serving NTS with a
/// certificate the client trusts. Once `a` is authenticated its server
/// restarts without NTS (its key-establishment port closed, the client's
/// cookies worthless): ClockPeerAuthenticationFailing names `a`, alone.
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn an_nts_source_whose_server_lost_nts_is_named_under_chronyd() {
    let daemon = Daemon::Chronyd;
    let builder = Lab::builder().honest("a").honest("b").honest("c").nts("a");
    let mut w = watched(builder, daemon, |lab, body| {
        ["a", "b", "c"]
            .iter()
            .all(|n| survived(body, daemon, lab.addr(n)))
            && sample(
                body,
                &format!(
                    "clock_peer_authenticated{{daemon=\"chronyd\",peer=\"{}\"}}",
                    lab.addr("a")
                ),
            ) == Some(1.0)
    });
    let a = w.lab.addr("a");
    // Authenticated, nothing raised for it.
    std::thread::sleep(Duration::from_secs(3));
    let before: Vec<Alert> = raised(w.ns())
        .into_iter()
        .filter(|x| x.name == "ClockPeerAuthenticationFailing")
        .collect();
    assert!(before.is_empty(), "{before:#?}");
    w.lab
        .reconfigure_server("a", &common::lab::honest_server_conf());
    let found = w.until_raised("ClockPeerAuthenticationFailing", Duration::from_secs(90));
    let failing = only_alert(&found, "ClockPeerAuthenticationFailing");
    assert_eq!(failing.peer, a.to_string(), "{found:#?}");
    assert!(failing.description.contains("(nts)"), "{found:#?}");
    assert_eq!(w.peer_value("clock_peer_authenticated", a), 0.0);
}

/// Symmetric keys under ntpd: `a` and `b` polled with their keys, `c` with
/// a wrong value under its key id: ClockPeerAuthenticationFailing names
/// `c`, alone, and nothing is raised for `a` and `b`.
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_source_polled_with_a_wrong_key_is_named() {
    let daemon = Daemon::Ntpd;
    let builder = Lab::builder()
        .honest("a")
        .honest("b")
        .honest("c")
        .keyed("a", true)
        .keyed("b", true)
        .keyed("c", false);
    let w = watched(builder, daemon, |lab, body| {
        ["a", "b"]
            .iter()
            .all(|n| survived(body, daemon, lab.addr(n)))
    });
    let c = w.lab.addr("c");
    let found = w.until_raised("ClockPeerAuthenticationFailing", Duration::from_secs(60));
    let failing = only_alert(&found, "ClockPeerAuthenticationFailing");
    assert_eq!(failing.peer, c.to_string(), "{found:#?}");
    assert!(
        failing.description.contains("(symmetric_key)"),
        "{found:#?}"
    );
    for n in ["a", "b"] {
        assert_eq!(
            w.peer_value("clock_peer_authenticated", w.lab.addr(n)),
            1.0,
            "{n}"
        );
    }
}

/// The `/probe` job of the README, verbatim but for its targets, the
/// prober's address and a lab's scrape interval.
fn readme_probe_job(targets: &[Ipv4Addr]) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .find(|b| b.contains("metrics_path: /probe"))
        .expect("the README's /probe scrape config");
    let job = block
        .strip_prefix("scrape_configs:\n")
        .expect("the block begins with scrape_configs:");
    let list = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let mut job = job.to_owned();
    for (from, to) in [
        (
            "[ntp1.example.net, ntp2.example.net, ntp3.example.net]",
            format!("[{list}]"),
        ),
        ("prober.example.net:9857", "127.0.0.1:9857".to_owned()),
        ("scrape_interval: 30s", "scrape_interval: 2s".to_owned()),
        ("scrape_timeout: 10s", "scrape_timeout: 2s".to_owned()),
    ] {
        assert_eq!(job.matches(from).count(), 1, "{from} in {job}");
        job = job.replace(from, &to);
    }
    job
}

/// The seed seen from the centre: a real Prometheus scrapes `/probe` for
/// two honest servers and vB with the README's relabelling, and
/// ClockProbedServerDisagrees names vB alone, with its +11.5 s. vB runs
/// clock_exporter too, scraped by the `clock` job: the NTP servers
/// dashboard's prober row joins its clocksource to what the prober sees.
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn the_skewed_server_probed_from_the_centre_is_named_alone() {
    let lab = Lab::builder()
        .honest("a")
        .honest("b")
        .skewed("vb", 11.5)
        .build();
    let mut flags = common::lab::only_collectors(&[]);
    flags.extend(["--probe.allow".to_owned(), "192.0.2.0/24".to_owned()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _exporter = lab.exporter(&flags);
    let targets = [lab.addr("a"), lab.addr("b"), lab.addr("vb")];
    let vb_exporter_addr = SocketAddr::from((lab.addr("vb"), 9857));
    let facts = common::lab::only_collectors(&["time", "clocksource"]);
    let facts: Vec<&str> = facts.iter().map(String::as_str).collect();
    let vb_exporter = Exporter::start_on(lab.ns("vb"), vb_exporter_addr, &facts);
    let vb_clocksource = vb_exporter
        .scrape()
        .lines()
        .find_map(|l| {
            let labels = l.strip_prefix("clock_source_current_info{")?;
            let (_, rest) = labels.split_once("clocksource=\"")?;
            rest.split('"').next().map(str::to_owned)
        })
        .expect("vB's exporter publishes its clocksource");
    let dir = TempDir::new("prometheus");
    let jobs = readme_probe_job(&targets) + &clock_job(&vb_exporter_addr.to_string());
    let _prometheus = start_prometheus(lab.root(), lab.client(), &dir, &jobs);
    let ns = lab.client();
    let found = until_raised(ns, "ClockProbedServerDisagrees", Duration::from_secs(60));
    let vb = lab.addr("vb").to_string();
    let naming: Vec<&Alert> = found.iter().filter(|a| !a.server.is_empty()).collect();
    for a in &naming {
        assert_eq!(a.server, vb, "{} names another server: {found:#?}", a.name);
    }
    let disagrees = naming
        .iter()
        .find(|a| a.name == "ClockProbedServerDisagrees")
        .expect("raised");
    assert!(
        disagrees.description.contains("Probed from dc1,")
            && disagrees
                .description
                .contains("median of the 3 synchronised servers"),
        "{disagrees:#?}"
    );
    for t in targets {
        assert_eq!(
            value(ns, &format!("clock_probe_success{{instance=\"{t}\"}}")),
            Some(1.0),
            "{t}"
        );
    }
    let from_median = value(
        ns,
        &format!("prober:clock_sntp_offset_from_median_seconds{{prober=\"dc1\",server=\"{vb}\"}}"),
    )
    .expect("vB's distance from the median");
    assert!((from_median - 11.5).abs() < 0.01, "{from_median}");

    assert_prober_row(ns, &targets, &vb, &vb_clocksource);
}

/// The NTP servers dashboard's prober row, as Grafana asks it: each query
/// has a row per probed server, and the server's own facts join for `vb`
/// alone, the one server that runs clock_exporter.
fn assert_prober_row(ns: &Netns, targets: &[Ipv4Addr], vb: &str, vb_clocksource: &str) {
    let row = |ref_id: &str| {
        common::panel_queries()
            .into_iter()
            .find(|q| q.panel == "Servers probed over SNTP" && q.ref_id == ref_id)
            .unwrap_or_else(|| panic!("query {ref_id} of the prober row"))
            .raw
    };
    let joined = wait_for(
        "the prober row to join vB's exporter",
        Duration::from_secs(30),
        || {
            let r = query(ns, &row("G"));
            (!r.is_empty()).then_some(r)
        },
    );
    assert_eq!(joined.len(), 1, "only vB runs an exporter: {joined:#?}");
    assert_eq!(joined[0]["metric"]["server"], vb, "{joined:#?}");
    assert_eq!(
        joined[0]["metric"]["clocksource"], vb_clocksource,
        "{joined:#?}"
    );
    let want: BTreeSet<String> = targets.iter().map(ToString::to_string).collect();
    for ref_id in ["A", "B", "C", "D", "E", "F"] {
        let servers: BTreeSet<String> = query(ns, &row(ref_id))
            .iter()
            .map(|r| {
                r["metric"]["server"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert_eq!(servers, want, "query {ref_id} of the prober row");
    }
}
