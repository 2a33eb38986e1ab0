//! End to end, with the real Prometheus and Alertmanager unpacked by
//! `scripts/lab-fetch`: Prometheus scrapes the built `clock_exporter` and
//! loads `alerts/*.rules.yml`; every dashboard query must return data; a
//! firing alert must reach a webhook through `alerts/alertmanager.example.yml`
//! with its labels, summary and runbook_url intact.
//!
//! The NTP daemon lab is not part of this test. The series an ntpd or chronyd
//! host would add come from a fixture target served by the test itself (a
//! static `/metrics` page, scraped with `honor_labels` so that it can speak
//! for several hosts): first a healthy fleet (a chrony client of three honest
//! servers), then the field report's fleet (a client of vA at −87 ms and vB at
//! +11487.6 ms marked falseticker, a host whose watchdog demoted `tsc`, and
//! a central prober that sees vB 11.5 s from the other servers).
//! Everything runs on loopback ports, in temporary folders, and every process
//! is killed when the test ends, whether it passes or fails.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::lab::{Proc, TempDir, free_port};
use common::{GRAFANA_VARIABLES, expand_grafana, lab_tool};
use serde_json::Value;

/// Dashboard queries that return nothing on the healthy fleet, and why.
const EMPTY_ON_HEALTHY_FLEET: [(&str, &str); 1] = [(
    "clock-fleet.json panel \"Firing clock alerts\" A",
    "no clock alert fires on a healthy fleet",
)];

/// How long any one condition may take to come true.
const PATIENCE: Duration = Duration::from_secs(60);

/// Reads one HTTP/1.x request: its first line and its body.
fn read_request(stream: &mut TcpStream) -> std::io::Result<(String, String)> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < header_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let first = head.lines().next().unwrap_or("").to_owned();
    let body = String::from_utf8_lossy(&buf[header_end..]).into_owned();
    Ok((first, body))
}

/// Serves HTTP on a loopback port from a background thread: `respond` gets
/// the request line and body and returns the content type and body. Every
/// response closes its connection. The thread ends with the test process.
fn serve<F>(respond: F) -> u16
where
    F: Fn(&str, &str) -> (&'static str, String) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Ok((line, body)) = read_request(&mut stream) else {
                continue;
            };
            let (content_type, out) = respond(&line, &body);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                out.len()
            );
        }
    });
    port
}

/// What a webhook received: each request's line and body.
type Inbox = Arc<Mutex<Vec<(String, String)>>>;

/// A webhook on a loopback port that keeps every request it receives.
fn webhook() -> (u16, Inbox) {
    let received: Inbox = Arc::default();
    let inbox = Arc::clone(&received);
    let port = serve(move |line, body| {
        inbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((line.to_owned(), body.to_owned()));
        ("text/plain", String::new())
    });
    (port, received)
}

/// A GET to a loopback port; the status and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    request(
        port,
        &format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"),
    )
}

/// A POST of a JSON body to a loopback port; the status and the body.
fn post(port: u16, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    request(
        port,
        &format!(
            "POST {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Sends one HTTP/1.0 request; the response's status and body.
fn request(port: u16, text: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(text.as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Ok((status, body))
}

/// Polls `check` until it returns `Some`, or panics with the last reason.
fn wait_for<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(why) if start.elapsed() > PATIENCE => {
                panic!("{what}: not after {PATIENCE:?}: {why}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// A Prometheus HTTP API call that must succeed; its `data`.
fn api(port: u16, path: &str) -> Result<Value, String> {
    let (status, body) = get(port, path).map_err(|e| format!("GET {path}: {e}"))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("GET {path}: {status} {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("GET {path}: {status} {body}"));
    }
    Ok(v["data"].clone())
}

/// An instant query's result vector.
fn query(port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let data = api(
        port,
        &format!("/api/v1/query?query={}", common::percent_encode(expr)),
    )?;
    Ok(data["result"].as_array().cloned().unwrap_or_default())
}

/// The test fleet's `/metrics`: one page speaking for several hosts.
#[derive(Debug)]
struct Fleet {
    started: Instant,
    seed: AtomicBool,
}

/// Writes one series with the labels of a host and its own.
fn line(out: &mut String, name: &str, instance: &str, labels: &str, value: f64) {
    let sep = if labels.is_empty() { "" } else { "," };
    writeln!(
        out,
        "{name}{{job=\"clock\",instance=\"{instance}\"{sep}{labels}}} {value}"
    )
    .expect("write to a String");
}

/// A client's daemon and its peers: (address, state, offset, jitter, bound),
/// as the exporter's own model publishes them (with the facts it computes
/// per daemon: usable sources, worst-case error, the sources' agreement).
fn client(out: &mut String, host: &str, daemon: &str, peers: &[(&str, &str, f64, f64, f64)]) {
    use clock_exporter::testing::model::{
        AuthMode, Daemon, DaemonReport, Peer, PeerAuth, PeerKind, PeerState, SyncStatus, up_family,
    };
    let daemon = match daemon {
        "ntpd" => Daemon::Ntpd,
        _ => Daemon::Chronyd,
    };
    let report = DaemonReport {
        daemon,
        sync: Some(SyncStatus {
            offset_seconds: Some(peers[0].2),
            leap: Some(0),
            root_delay_seconds: Some(0.0021),
            root_dispersion_seconds: Some(0.0004),
            frequency_ratio: Some(-0.000_012_3),
            frequency_wander_ratio: Some(0.000_000_03),
            reference: peers[0].0.to_owned(),
            ..SyncStatus::default()
        }),
        peers: peers
            .iter()
            .map(|&(address, state, offset, jitter, bound)| Peer {
                address: address.to_owned(),
                kind: PeerKind::Server,
                refid: "203.0.113.5".into(),
                state: PeerState::ALL
                    .into_iter()
                    .find(|s| s.label() == state)
                    .expect("a state label"),
                stratum: None,
                offset_seconds: Some(offset),
                delay_seconds: Some(0.000_433),
                jitter_seconds: Some(jitter),
                dispersion_seconds: None,
                error_bound_seconds: Some(bound),
                reachability_ratio: Some(1.0),
                poll_interval_seconds: None,
                leap: Some(0),
                auth: Some(PeerAuth {
                    mode: AuthMode::Nts,
                    authenticated: true,
                }),
            })
            .collect(),
        server_requests_total: None,
    };
    let mut families = report.families();
    families.push(up_family(daemon, true));
    write_families(out, host, &families);
}

/// A systemd-timesyncd host, synchronised to one server, as its collector
/// publishes it: the families of a reading of its D-Bus properties.
fn timesyncd_client(out: &mut String, host: &str) {
    use clock_exporter::testing::collector::timesyncd::{NtpMessage, Reading};
    use clock_exporter::testing::model::{Daemon, up_family};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros() as u64;
    let t1 = now - 5_000_000;
    let reading = Reading {
        server_name: "192.0.2.11".into(),
        server_address: Some("192.0.2.11".parse().expect("ip")),
        message: NtpMessage {
            leap: 0,
            version: 4,
            mode: 4,
            stratum: 2,
            precision: -20,
            root_delay_us: 2_100,
            root_dispersion_us: 400,
            refid: [203, 0, 113, 5],
            origin_us: t1,
            receive_us: t1 + 200,
            transmit_us: t1 + 220,
            destination_us: t1 + 400,
            spike: false,
            packet_count: 12,
            jitter_us: 300,
        },
        poll_interval_seconds: 64.0,
        root_distance_max_seconds: Some(5.0),
        frequency: Some(-806_000),
        read_at_unix_seconds: now as f64 * 1e-6,
    };
    let mut families = reading.families();
    families.push(up_family(Daemon::Timesyncd, true));
    write_families(out, host, &families);
}

/// Writes families as one host's series.
fn write_families(
    out: &mut String,
    host: &str,
    families: &[clock_exporter::testing::metrics::Family],
) {
    let target = format!("job=\"clock\",instance=\"{host}\"");
    for f in families {
        for s in &f.samples {
            let values: Vec<&str> = s
                .label_values
                .iter()
                .map(clock_exporter::testing::metrics::LabelValue::as_str)
                .collect();
            let series = common::series_text(f.desc, &target, &values);
            writeln!(out, "{series} {}", s.value).expect("write to a String");
        }
    }
}

/// An NTP server host: its address, clocksource and hypervisor, and a
/// request counter that grows 10 per second.
fn server(out: &mut String, host: &str, address: &str, clocksource: &str, elapsed: f64) {
    let a = format!("address=\"{address}\",interface=\"eth0\"");
    line(out, "clock_host_address_info", host, &a, 1.0);
    let c = format!("device=\"clocksource0\",clocksource=\"{clocksource}\"");
    line(out, "clock_source_current_info", host, &c, 1.0);
    line(
        out,
        "clock_virtualization_info",
        host,
        "hypervisor=\"kvm\",method=\"cpuid\"",
        1.0,
    );
    line(
        out,
        "clock_server_requests_total",
        host,
        "daemon=\"ntpd\"",
        (elapsed * 10.0).floor(),
    );
    line(
        out,
        "clock_sync_frequency_wander_ratio",
        host,
        "daemon=\"ntpd\"",
        0.000_000_02,
    );
    // The probes of a healthy guest: its clocksource follows the TSC, the
    // kernel log shows only the boot-time switch, its host is 20 µs ahead.
    let cs = format!("clocksource=\"{clocksource}\"");
    for (name, value) in [
        ("clock_rate_raw_residual_seconds", 0.000_000_4),
        ("clock_rate_raw_largest_step_seconds", 0.000_000_1),
        ("clock_rate_tsc_frequency_hertz", 2_596_098_000.0),
        ("clock_rate_monotonic_frequency_ratio", 0.000_012),
        ("clock_rate_window_seconds", 900.0),
        ("clock_kmsg_clocksource_switches_total", 1.0),
        ("clock_kmsg_clocksource_unstable_total", 0.0),
        (
            "clock_kmsg_clocksource_last_switch_timestamp_seconds",
            1.7e9,
        ),
    ] {
        line(out, name, host, &cs, value);
    }
    let ptp = "device=\"ptp0\"";
    line(out, "clock_ptp_kvm_offset_seconds", host, ptp, 0.000_02);
    line(out, "clock_ptp_kvm_delay_seconds", host, ptp, 0.000_004);
    // Its daemon in sync, as the ntpd collector says.
    let d = "daemon=\"ntpd\"";
    line(out, "clock_sync_leap", host, d, 0.0);
    line(out, "clock_sync_worst_case_error_seconds", host, d, 0.003);
}

/// A prober's sntp collector: each server (address, offset, root
/// distance) answering and synchronised.
fn prober(out: &mut String, host: &str, servers: &[(&str, f64, f64)]) {
    for &(address, offset, distance) in servers {
        let l = format!("server=\"{address}\",address=\"{address}:123\"");
        for (name, value) in [
            ("clock_sntp_up", 1.0),
            ("clock_sntp_synchronized", 1.0),
            ("clock_sntp_offset_seconds", offset),
            ("clock_sntp_delay_seconds", 0.0004),
            ("clock_sntp_root_distance_seconds", distance),
            ("clock_sntp_stratum", 2.0),
        ] {
            line(out, name, host, &l, value);
        }
    }
}

impl Fleet {
    fn metrics(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let seed = self.seed.load(Ordering::SeqCst);
        let mut out = String::new();
        // A healthy chrony client of three honest servers.
        client(
            &mut out,
            "hc:9857",
            "chronyd",
            &[
                ("192.0.2.11", "selected", -0.0012, 0.0003, 0.01),
                ("192.0.2.13", "candidate", 0.0008, 0.0004, 0.012),
                ("192.0.2.14", "candidate", 0.0021, 0.0005, 0.008),
            ],
        );
        // A systemd-timesyncd host, synchronised to va.
        timesyncd_client(&mut out, "ht:9857");
        server(&mut out, "va:9857", "192.0.2.11", "tsc", elapsed);
        server(&mut out, "vc:9857", "192.0.2.13", "kvm-clock", elapsed);
        // A central prober of the servers (vB among them in the seed).
        let mut probed = vec![
            ("192.0.2.11", 0.0011, 0.004),
            ("192.0.2.13", -0.0004, 0.005),
            ("192.0.2.14", 0.0002, 0.004),
        ];
        if seed {
            probed.push(("192.0.2.12", 11.4876, 0.006));
        }
        prober(&mut out, "pr:9857", &probed);
        let flip = if seed { "hpet" } else { "tsc" };
        let c = format!("device=\"clocksource0\",clocksource=\"{flip}\"");
        line(&mut out, "clock_source_current_info", "flip:9857", &c, 1.0);
        if seed {
            // The field report: `ntpq -p` showed vA at -87.076 ms (jitter
            // 20.341 ms) and vB at +11487.6 ms (jitter 9868.84 ms), falsetick.
            client(
                &mut out,
                "pc:9857",
                "ntpd",
                &[
                    ("192.0.2.11", "selected", -0.087_076, 0.020_341, 0.022_307_5),
                    ("192.0.2.12", "falseticker", 11.4876, 9.868_84, 9.871_626_5),
                ],
            );
            server(&mut out, "vb:9857", "192.0.2.12", "kvm-clock", elapsed);
        }
        out
    }
}

/// Dashboard queries that return no data now; the failures as errors.
fn empty_dashboard_queries(prometheus: u16) -> Result<Vec<String>, String> {
    let mut empty = Vec::new();
    for (what, raw) in common::dashboard_expressions() {
        let expr = expand_grafana(&raw, &GRAFANA_VARIABLES)?;
        if query(prometheus, &expr)
            .map_err(|e| format!("{what}: {e}"))?
            .is_empty()
        {
            empty.push(what);
        }
    }
    empty.sort();
    Ok(empty)
}

/// The alerts Prometheus holds, as (name, state, labels).
fn alerts(prometheus: u16) -> Result<Vec<(String, String, Value)>, String> {
    let data = api(prometheus, "/api/v1/alerts")?;
    Ok(data["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                a["state"].as_str().unwrap_or("").to_owned(),
                a["labels"].clone(),
            )
        })
        .collect())
}

/// The example Alertmanager configuration, pointed at the test's webhook and
/// with its waits cut to a second.
fn alertmanager_config(webhook: u16) -> String {
    let mut text = std::fs::read_to_string(common::repo().join("alerts/alertmanager.example.yml"))
        .expect("alertmanager.example.yml");
    for (from, to) in [
        (
            "https://pager.example.invalid",
            format!("http://127.0.0.1:{webhook}/pager"),
        ),
        (
            "https://tickets.example.invalid",
            format!("http://127.0.0.1:{webhook}/tickets"),
        ),
        ("group_wait: 30s", "group_wait: 1s".to_owned()),
        ("group_interval: 5m", "group_interval: 1s".to_owned()),
    ] {
        assert_eq!(text.matches(from).count(), 1, "{from} in the example");
        text = text.replace(from, &to);
    }
    text
}

/// The unpacked Alertmanager. Debian's build reads its default notification
/// template from the fixed path /usr/share/prometheus/alertmanager, which
/// exists only where the package is installed (and installing it would start
/// a service). Elsewhere Alertmanager runs in a private mount namespace in
/// which an overlay adds the lab's usr/share under /usr/share; the machine's
/// own /usr/share is not changed. That needs root, as the lab does.
fn alertmanager_command() -> Command {
    let binary = lab_tool("prometheus-alertmanager");
    if std::path::Path::new("/usr/share/prometheus/alertmanager/default.tmpl").is_file() {
        return Command::new(binary);
    }
    let share = common::lab_root().join("usr/share");
    let share = share.to_str().expect("lab path is UTF-8");
    assert!(
        !share.contains([':', ',']),
        "{share}: an overlay lower dir cannot contain ':' or ','"
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
        .arg(r#"mount -t overlay overlay -o "lowerdir=/usr/share:$0" /usr/share && exec "$@""#)
        .arg(share)
        .arg(binary);
    cmd
}

/// Starts a Prometheus-style server (`--config.file`, a storage flag,
/// `--web.listen-address`) on a free loopback port with its config and data
/// in `dir`, and waits until `/-/ready` answers; returns it and its port.
fn launch(
    name: &str,
    mut cmd: Command,
    dir: &TempDir,
    config: &str,
    storage_flag: &str,
    extra: &[&str],
) -> (Proc, u16) {
    let port = free_port();
    let config_file = dir.path().join(format!("{name}.yml"));
    std::fs::write(&config_file, config).expect("write config");
    let storage = dir.path().join(format!("{name}-data"));
    cmd.arg(format!("--config.file={}", config_file.display()))
        .arg(format!("--{storage_flag}={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(extra)
        .current_dir(dir.path());
    let process = Proc::spawn(cmd, dir.path().join(format!("{name}.log")), name);
    wait_for(&format!("{name} ready"), || match get(port, "/-/ready") {
        Ok((200, _)) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    (process, port)
}

/// Starts Alertmanager and Prometheus on loopback; returns them and
/// Prometheus' port.
fn start_stack(dir: &TempDir, exporter: u16, fleet: u16, webhook: u16) -> (Proc, Proc, u16) {
    let (alertmanager, am_port) = launch(
        "alertmanager",
        alertmanager_command(),
        dir,
        &alertmanager_config(webhook),
        "storage.path",
        // No gossip: a cluster listener would bind every address.
        &["--cluster.listen-address="],
    );
    let rule_files: Vec<String> = common::rule_files_evaluated_every(dir.path(), "1s")
        .iter()
        .map(|p| format!("  - {}\n", p.display()))
        .collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n{}\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"127.0.0.1:{am_port}\"]\n\
         scrape_configs:\n\
         \x20 - job_name: clock\n    static_configs:\n      - targets: [\"127.0.0.1:{exporter}\"]\n\
         \x20 - job_name: clock-fleet-fixture\n    honor_labels: true\n    static_configs:\n      - targets: [\"127.0.0.1:{fleet}\"]\n",
        rule_files.concat()
    );
    let (prometheus, prom_port) = launch(
        "prometheus",
        Command::new(lab_tool("prometheus")),
        dir,
        &config,
        "storage.tsdb.path",
        &["--rules.alert.resend-delay=1s"],
    );
    (alertmanager, prometheus, prom_port)
}

/// Every rule of the rule files is loaded and evaluates without error.
fn assert_rules_loaded(prometheus: u16) {
    let expected = common::rules().len();
    wait_for("every rule evaluated", || {
        let data = api(prometheus, "/api/v1/rules")?;
        let rules: Vec<&Value> = data["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if let Some(bad) = rules.iter().find(|r| r["health"] == "err") {
            panic!("a rule fails in Prometheus: {bad}");
        }
        let ok = rules.iter().filter(|r| r["health"] == "ok").count();
        if rules.len() == expected && ok == expected {
            Ok(())
        } else {
            Err(format!(
                "{ok} of {} rules ok, {expected} expected",
                rules.len()
            ))
        }
    });
}

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn prometheus_and_alertmanager_run_the_rules_dashboards_and_alerts() {
    let dir = TempDir::new("alerting-e2e");
    let exporter_port = free_port();
    let mut exporter_cmd = Command::new(env!("CARGO_BIN_EXE_clock_exporter"));
    exporter_cmd.arg(format!("--web.listen-address=127.0.0.1:{exporter_port}"));
    let mut exporter = Proc::spawn(
        exporter_cmd,
        dir.path().join("exporter.log"),
        "clock_exporter",
    );
    wait_for("clock_exporter answering", || {
        match get(exporter_port, "/metrics") {
            Ok((200, body)) if body.contains("clock_time_seconds ") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let fleet = Arc::new(Fleet {
        started: Instant::now(),
        seed: AtomicBool::new(false),
    });
    let page = Arc::clone(&fleet);
    let fleet_port = serve(move |_, _| ("text/plain; version=0.0.4", page.metrics()));
    let (webhook_port, received) = webhook();
    let (mut alertmanager, mut prometheus, prom) =
        start_stack(&dir, exporter_port, fleet_port, webhook_port);
    assert_rules_loaded(prom);

    // The healthy fleet: every panel has data but the firing alerts.
    let expected_empty: Vec<String> = EMPTY_ON_HEALTHY_FLEET
        .iter()
        .map(|(q, _)| (*q).to_owned())
        .collect();
    wait_for("dashboards on the healthy fleet", || {
        let empty = empty_dashboard_queries(prom)?;
        if empty == expected_empty {
            Ok(())
        } else {
            Err(format!("empty: {empty:#?}"))
        }
    });

    // The field report's fleet.
    fleet.seed.store(true, Ordering::SeqCst);
    check_seed_alerts(prom);
    wait_for("every dashboard query has data", || {
        let empty = empty_dashboard_queries(prom)?;
        if empty.is_empty() {
            Ok(())
        } else {
            Err(format!("empty: {empty:#?}"))
        }
    });
    check_delivery(&received);
    for p in [&mut exporter, &mut alertmanager, &mut prometheus] {
        p.assert_running();
    }
}

/// The seed's alerts name vB, from its clients and from the prober; the
/// healthy client raises no peer alert; the demoted tsc fires
/// ClockSourceChanged at once.
fn check_seed_alerts(prom: u16) {
    let has =
        |alerts: &[(String, String, Value)], name: &str, states: &[&str], label: (&str, &str)| {
            alerts
                .iter()
                .any(|(n, s, l)| n == name && states.contains(&s.as_str()) && l[label.0] == label.1)
        };
    let seen = wait_for("the seed's alerts", || {
        let a = alerts(prom)?;
        let ok = has(
            &a,
            "ClockPeersDisagree",
            &["pending", "firing"],
            ("peer", "192.0.2.12"),
        ) && has(
            &a,
            "ClockPeerFalseticker",
            &["pending", "firing"],
            ("peer", "192.0.2.12"),
        ) && has(
            &a,
            "ClockProbedServerDisagrees",
            &["pending", "firing"],
            ("server", "192.0.2.12"),
        ) && has(
            &a,
            "ClockSourceChanged",
            &["firing"],
            ("instance", "flip:9857"),
        );
        if ok { Ok(a) } else { Err(format!("{a:#?}")) }
    });
    for (name, _, labels) in &seen {
        if labels["peer"] == "192.0.2.12" {
            assert_eq!(labels["instance"], "pc:9857", "{name}: {labels}");
        }
        assert_ne!(
            labels["instance"], "hc:9857",
            "the healthy client raised {name}: {labels}"
        );
        assert_ne!(
            labels["peer"], "192.0.2.11",
            "{name} blames the honest vA: {labels}"
        );
        assert!(
            labels["server"].is_null() || labels["server"] == "192.0.2.12",
            "{name} blames an honest server: {labels}"
        );
    }
}

/// Alertmanager delivered ClockSourceChanged to the ticket webhook, labels
/// and annotations intact.
fn check_delivery(received: &Mutex<Vec<(String, String)>>) {
    let (line, payload) = wait_for("ClockSourceChanged at the webhook", || {
        let got = received
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        got.into_iter()
            .find(|(_, body)| body.contains("ClockSourceChanged"))
            .ok_or_else(|| "nothing yet".to_owned())
    });
    assert!(line.starts_with("POST /tickets/clock "), "routed to {line}");
    let v: Value = serde_json::from_str(&payload).expect("webhook JSON");
    assert_eq!(v["receiver"], "tickets", "{v}");
    assert_eq!(v["status"], "firing", "{v}");
    let alert = v["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["labels"]["alertname"] == "ClockSourceChanged")
        .unwrap_or_else(|| panic!("no ClockSourceChanged in {v}"));
    let labels = &alert["labels"];
    assert_eq!(labels["instance"], "flip:9857", "{alert}");
    assert_eq!(labels["job"], "clock", "{alert}");
    assert_eq!(labels["device"], "clocksource0", "{alert}");
    assert_eq!(labels["severity"], "warning", "{alert}");
    let ann = &alert["annotations"];
    assert_eq!(
        ann["summary"], "Clocksource of flip:9857 changed within the last hour",
        "{alert}"
    );
    assert_eq!(
        ann["description"],
        "flip:9857 (clocksource0) used 2 different clocksources within the last hour; it now uses hpet.",
        "{alert}"
    );
    assert_eq!(
        ann["runbook_url"],
        "https://example.invalid/clock_exporter/blob/main/docs/runbooks.md#clocksourcechanged",
        "{alert}"
    );
}

/// An alert as Prometheus sends it: its labels, from `alertname=... k=v`.
fn alert(labels: &str) -> Value {
    let map: serde_json::Map<String, Value> = labels
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("k=v");
            (k.to_owned(), Value::String(v.to_owned()))
        })
        .collect();
    serde_json::json!({ "labels": map, "annotations": { "summary": labels } })
}

/// The alerts each fault raises once its rules have fired, as
/// alerts/tests/truth.test.yml and fleet.test.yml expect them, with the
/// server each is about. The clients' own ClockPeerFalseticker and
/// ClockPeersDisagree about the server stay quiet: the fleet names it.
const FAULTS: [(&str, &str, &[&str]); 2] = [
    (
        "the seed's two servers: no client has a majority",
        "192.0.2.12",
        &[
            "alertname=ClockServerFarFromClients severity=critical peer=192.0.2.12",
            "alertname=ClockNoUsableSource severity=critical instance=ca:9857 job=clock daemon=chronyd peer=192.0.2.12",
            "alertname=ClockNoUsableSource severity=critical instance=cb:9857 job=clock daemon=ntpd peer=192.0.2.12",
            "alertname=ClockNoUsableSource severity=critical instance=cc:9857 job=clock daemon=chronyd peer=192.0.2.12",
            // Inhibited by each client's ClockNoUsableSource.
            "alertname=ClockTooFewSources severity=warning instance=ca:9857 job=clock daemon=chronyd",
            "alertname=ClockNotSynchronising severity=warning instance=cb:9857 job=clock daemon=ntpd",
            "alertname=ClockOffsetTooLarge severity=critical instance=cc:9857 job=clock daemon=chronyd",
            "alertname=ClockNtpServerOnKvmClockCorroborated severity=warning instance=vb:9857 job=clock device=clocksource0 clocksource=kvm-clock",
        ],
    ),
    (
        "the seed's three servers: the clients reject vB",
        "192.0.2.42",
        &[
            "alertname=ClockServerRejectedByClients severity=critical peer=192.0.2.42",
            "alertname=ClockServerFarFromClients severity=critical peer=192.0.2.42",
        ],
    ),
];

/// Inhibited by the fault's other alerts in the example configuration.
const INHIBITED: [&str; 3] = [
    "ClockTooFewSources",
    "ClockNotSynchronising",
    "ClockOffsetTooLarge",
];

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn one_fault_pages_once_through_the_example_alertmanager() {
    let dir = TempDir::new("alertmanager-pages");
    let (webhook, received) = webhook();
    let (mut alertmanager, am) = launch(
        "alertmanager",
        alertmanager_command(),
        &dir,
        &alertmanager_config(webhook),
        "storage.path",
        &["--cluster.listen-address="],
    );
    for (fault, server, alerts) in FAULTS {
        let body = Value::Array(alerts.iter().map(|a| alert(a)).collect()).to_string();
        let (status, out) = post(am, "/api/v2/alerts", &body).expect("post alerts");
        assert_eq!(status, 200, "{fault}: {out}");
        // Every alert of the fault is in Alertmanager; the inhibited ones
        // are suppressed by another alert of the same fault.
        let held = wait_for(&format!("{fault}: alerts held"), || {
            let (_, out) = get(am, "/api/v2/alerts").map_err(|e| e.to_string())?;
            let v: Vec<Value> = serde_json::from_str(&out).map_err(|e| e.to_string())?;
            let mine: Vec<Value> = v
                .into_iter()
                .filter(|a| alerts.contains(&a["annotations"]["summary"].as_str().unwrap_or("")))
                .collect();
            let settled = mine.iter().all(|a| {
                let name = a["labels"]["alertname"].as_str().unwrap_or("");
                let suppressed = a["status"]["state"] == "suppressed";
                suppressed == INHIBITED.contains(&name)
            });
            if mine.len() == alerts.len() && settled {
                Ok(mine)
            } else {
                Err(format!("{mine:#?}"))
            }
        });
        for a in &held {
            let name = a["labels"]["alertname"].as_str().unwrap_or("");
            if INHIBITED.contains(&name) {
                let by = a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len);
                assert!(
                    by > 0,
                    "{fault}: {name} is suppressed but not inhibited: {a}"
                );
            }
        }
        // The pager hears of the fault once: one group, keyed by the server,
        // holding every critical alert of the fault but the inhibited one.
        let pages = wait_for(&format!("{fault}: the page"), || {
            let got = received
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let pages: Vec<Value> = got
                .iter()
                .filter(|(line, _)| line.starts_with("POST /pager/"))
                .filter_map(|(_, body)| serde_json::from_str::<Value>(body).ok())
                .filter(|v| {
                    v["alerts"].as_array().into_iter().flatten().any(|a| {
                        alerts.contains(&a["annotations"]["summary"].as_str().unwrap_or(""))
                    })
                })
                .collect();
            let critical = alerts
                .iter()
                .filter(|a| a.contains("severity=critical"))
                .filter(|a| {
                    !INHIBITED
                        .iter()
                        .any(|i| a.contains(&format!("alertname={i} ")))
                })
                .count();
            let last = pages.last().ok_or("no page yet")?;
            let n = last["alerts"].as_array().map_or(0, Vec::len);
            if n == critical {
                Ok(pages)
            } else {
                Err(format!(
                    "{n} of {critical} critical alerts in the last page: {last}"
                ))
            }
        });
        let groups: BTreeSet<String> = pages
            .iter()
            .map(|p| p["groupKey"].as_str().unwrap_or("").to_owned())
            .collect();
        assert_eq!(groups.len(), 1, "{fault}: paged as {groups:#?}");
        for p in &pages {
            assert_eq!(
                p["groupLabels"],
                serde_json::json!({ "peer": server }),
                "{fault}: {p}"
            );
            assert_eq!(p["receiver"], "pager", "{fault}: {p}");
        }
    }
    alertmanager.assert_running();
}
