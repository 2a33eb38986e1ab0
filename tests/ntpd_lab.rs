//! The ntpd collector against a real ntpd (NTPsec) in the lab: a client
//! namespace running ntpd with `disable ntp`, two honest chronyd servers and
//! one server whose clock is 11.5 s ahead (the seed's vB). Everything our
//! exporter says is checked against NTPsec's own `ntpq` and against
//! monitoring-plugins' `check_ntp_peer`, tools nobody here wrote.
//!
//! With `CLOCK_CAPTURE_FIXTURES=1` the main test also writes the mode-6
//! datagrams it exchanges with this ntpd to `tests/fixtures/mode6/`
//! (see the README there).

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clock_exporter::testing::proto::mode6::{
    self, AssocId, Fragment, Opcode, Progress, Reassembler, Sequence, SystemStats,
};
use clock_exporter::testing::proto::ntp::{Header, NtpShort, NtpTimestamp, RefId};
use common::lab::plan::CLIENT;
use common::lab::{self, Daemon, Exporter, Lab, Netns, Ntpd, sample, wait_for};

/// The falseticker lab's servers, by name; the fixtures are named after them.
const HONEST: [&str; 2] = ["honest-a", "honest-b"];
const SKEWED: &str = "skewed";
const SKEW_SECONDS: f64 = 11.5;

/// The falseticker lab: the client runs ntpd, polling two honest chronyd
/// servers and the responder 11.5 s ahead.
fn falseticker_lab() -> Lab {
    Lab::builder()
        .client(Daemon::Ntpd)
        .honest(HONEST[0])
        .honest(HONEST[1])
        .skewed(SKEWED, SKEW_SECONDS)
        .build()
}

/// The honest servers' addresses.
fn honest(lab: &Lab) -> [Ipv4Addr; 2] {
    HONEST.map(|n| lab.addr(n))
}

/// Waits until ntpd has chosen: a system peer and the skewed server a falseticker.
fn wait_for_selection(lab: &Lab) -> String {
    let ([a, b], skewed) = (honest(lab), lab.addr(SKEWED));
    wait_for(
        "ntpd to select an honest server and reject the skewed one",
        Duration::from_secs(90),
        || {
            let p = lab.ntpq(&["-n", "-p"]);
            let rows = ntpq_peers(&p);
            let tally = |ip: Ipv4Addr| rows.get(&ip.to_string()).map(|r| r.tally);
            (tally(skewed) == Some('x') && (tally(a) == Some('*') || tally(b) == Some('*')))
                .then_some(p)
        },
    )
}

/// One row of `ntpq -n -p`.
#[derive(Debug, Clone, PartialEq)]
struct NtpqRow {
    tally: char,
    refid: String,
    stratum: String,
    reach: String,
    /// delay, offset, jitter as printed (ms).
    delay: String,
    offset: String,
    jitter: String,
}

/// `ntpq -n -p` rows by remote address.
fn ntpq_peers(text: &str) -> BTreeMap<String, NtpqRow> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let tally = l.chars().next()?;
            let f: Vec<&str> = l.get(1..)?.split_whitespace().collect();
            (f.len() == 10).then(|| {
                (
                    f[0].to_owned(),
                    NtpqRow {
                        tally,
                        refid: f[1].to_owned(),
                        stratum: f[2].to_owned(),
                        reach: f[6].to_owned(),
                        delay: f[7].to_owned(),
                        offset: f[8].to_owned(),
                        jitter: f[9].to_owned(),
                    },
                )
            })
        })
        .collect()
}

/// A value ntpq printed in milliseconds, in seconds, with the half-width of
/// its display rounding (half a unit of its last printed digit).
fn printed_ms(text: &str) -> (f64, f64) {
    let v: f64 = text.parse().unwrap_or_else(|_| panic!("number: {text:?}"));
    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
    let half_unit_ms = 0.5 * 10f64.powi(-i32::try_from(decimals).expect("few decimals"));
    (v / 1e3, half_unit_ms / 1e3)
}

fn assert_agrees(what: &str, ours: f64, printed: &str) {
    let (theirs, tolerance) = printed_ms(printed);
    // 1e-12 s absorbs float formatting of our own value.
    assert!(
        (ours - theirs).abs() <= tolerance + 1e-12,
        "{what}: ours {ours} s, ntpq printed {printed} ms (±{tolerance} s)"
    );
}

fn peer_sample(body: &str, metric: &str, peer: Ipv4Addr) -> f64 {
    sample(
        body,
        &format!("{metric}{{daemon=\"ntpd\",peer=\"{peer}\"}}"),
    )
    .unwrap_or_else(|| panic!("{metric} for {peer} missing:\n{body}"))
}

fn state_of(body: &str, peer: Ipv4Addr) -> Vec<String> {
    let prefix = format!("clock_peer_state{{daemon=\"ntpd\",peer=\"{peer}\",state=\"");
    body.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (state, value) = rest.split_once("\"} ")?;
            (value.trim().parse::<f64>().ok()? == 1.0).then(|| state.to_owned())
        })
        .collect()
}

fn collector_duration(body: &str) -> f64 {
    sample(
        body,
        "clock_scrape_collector_duration_seconds{collector=\"ntpd\"}",
    )
    .unwrap_or_else(|| panic!("ntpd duration missing:\n{body}"))
}

fn ntpd_sample(body: &str, metric: &str, peer: Ipv4Addr) -> f64 {
    sample(body, &format!("{metric}{{peer=\"{peer}\"}}"))
        .unwrap_or_else(|| panic!("{metric} for {peer} missing:\n{body}"))
}

/// Runs `f` between two `ntpq -n -p` readings until they are identical
/// (ntpd took no new sample and changed no selection meanwhile), and
/// returns that reading with `f`'s result.
fn stable<T>(lab: &Lab, what: &str, mut f: impl FnMut() -> T) -> (BTreeMap<String, NtpqRow>, T) {
    wait_for(what, Duration::from_secs(60), || {
        let before = ntpq_peers(&lab.ntpq(&["-n", "-p"]));
        let t = f();
        let after = ntpq_peers(&lab.ntpq(&["-n", "-p"]));
        (before == after).then_some((before, t))
    })
}

/// The system peer in `ntpq -p` rows.
fn system_peer(rows: &BTreeMap<String, NtpqRow>) -> Ipv4Addr {
    rows.iter()
        .find(|(_, r)| r.tally == '*')
        .and_then(|(ip, _)| ip.parse().ok())
        .unwrap_or_else(|| panic!("no system peer in {rows:?}"))
}

/// `name=value` pairs of `ntpq -c rv` output.
fn ntpq_vars(text: &str) -> BTreeMap<String, String> {
    text.split([',', '\n'])
        .filter_map(|p| p.trim().split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn exporter_agrees_with_ntpq_on_a_falseticker_lab() {
    let mut lab = falseticker_lab();
    wait_for_selection(&lab);
    if std::env::var_os("CLOCK_CAPTURE_FIXTURES").is_some() {
        capture_fixtures(&lab);
    }
    let exporter = lab.exporter(&["--collector.ntpd.timeout=2s"]);
    let (rows, body) = peers_agree_with_ntpq(&lab, &exporter);
    selection_agrees_with_ntpq(&lab, &body, &rows);
    sync_agrees_with_ntpq(&lab, &exporter);
    check_ntp_peer_agrees(&lab, &exporter);
    no_client_no_server_requests(&lab, &exporter);
    killed_ntpd_is_down_at_once(&mut lab, &exporter);
}

/// Offsets, delays, jitters, reach and stratum equal what `ntpq -p` prints,
/// within its display rounding, read while ntpd's samples do not change:
/// ntpq before and after our scrape must print the same numbers.
fn peers_agree_with_ntpq(lab: &Lab, exporter: &Exporter) -> (BTreeMap<String, NtpqRow>, String) {
    let (rows, body) = stable(lab, "a scrape on an unchanged ntpd sample", || {
        exporter.scrape()
    });
    let [a, b] = honest(lab);
    let skewed = lab.addr(SKEWED);
    for ip in [a, b, skewed] {
        let row = &rows[&ip.to_string()];
        let ours = |metric| peer_sample(&body, metric, ip);
        assert_agrees(
            &format!("{ip} offset"),
            ours("clock_peer_offset_seconds"),
            &row.offset,
        );
        assert_agrees(
            &format!("{ip} delay"),
            ours("clock_peer_delay_seconds"),
            &row.delay,
        );
        assert_agrees(
            &format!("{ip} jitter"),
            ours("clock_peer_jitter_seconds"),
            &row.jitter,
        );
        let reach = u8::from_str_radix(&row.reach, 8).expect("octal reach");
        assert_eq!(
            ntpd_sample(&body, "clock_ntpd_peer_reach_register", ip),
            f64::from(reach),
            "{ip}"
        );
        assert_eq!(
            ours("clock_peer_reachability_ratio"),
            f64::from(reach.count_ones()) / 8.0
        );
        assert_eq!(
            ours("clock_peer_stratum"),
            row.stratum.parse::<f64>().expect("stratum"),
            "{ip}"
        );
        // Every server of this lab, the skewed responder too, sends LI 0.
        assert_eq!(ours("clock_peer_leap"), 0.0, "{ip}");
        assert_eq!(
            sample(
                &body,
                &format!(
                    "clock_peer_info{{daemon=\"ntpd\",peer=\"{ip}\",kind=\"server\",refid=\"{}\"}}",
                    row.refid
                )
            ),
            Some(1.0),
            "{ip}\n{body}"
        );
        eprintln!(
            "{ip}: ours offset {} s, delay {} s, jitter {} s; ntpq -p offset {} ms, delay {} ms, jitter {} ms",
            ours("clock_peer_offset_seconds"),
            ours("clock_peer_delay_seconds"),
            ours("clock_peer_jitter_seconds"),
            row.offset,
            row.delay,
            row.jitter
        );
    }
    // θ's sign: the server 11.5 s ahead is +11.5 s, as ntpq prints it.
    let off = peer_sample(&body, "clock_peer_offset_seconds", skewed);
    assert!((off - SKEW_SECONDS).abs() < 0.01, "{off}");
    for ip in [a, b] {
        let off = peer_sample(&body, "clock_peer_offset_seconds", ip);
        assert!(off.abs() < 0.01, "{ip}: {off}");
    }
    assert_eq!(sample(&body, "clock_daemon_up{daemon=\"ntpd\"}"), Some(1.0));
    assert_eq!(
        sample(&body, "clock_scrape_collector_success{collector=\"ntpd\"}"),
        Some(1.0),
        "{body}"
    );
    (rows, body)
}

/// The skewed server is a falseticker, an honest one selected; every state
/// is the one ntpq's tally shows.
fn selection_agrees_with_ntpq(lab: &Lab, body: &str, rows: &BTreeMap<String, NtpqRow>) {
    let skewed = lab.addr(SKEWED);
    assert_eq!(state_of(body, skewed), ["falseticker"], "{body}");
    assert_eq!(rows[&skewed.to_string()].tally, 'x');
    let mut selected = None;
    for ip in honest(lab) {
        let expected = match rows[&ip.to_string()].tally {
            '*' => "selected",
            '+' => "candidate",
            '#' => "backup",
            '-' => "outlier",
            t => panic!("{ip}: unexpected tally {t:?}"),
        };
        assert_eq!(state_of(body, ip), [expected], "{ip}");
        if expected == "selected" {
            selected = Some(ip);
        }
    }
    let selected = selected.expect("one honest server is the system peer");
    assert_eq!(
        ntpd_sample(body, "clock_ntpd_peer_selection_code", selected),
        6.0
    );
    assert_eq!(
        ntpd_sample(body, "clock_ntpd_peer_selection_code", skewed),
        1.0
    );
}

/// The system variables equal what `ntpq -c rv` shows, read between two
/// identical ntpq readings.
fn sync_agrees_with_ntpq(lab: &Lab, exporter: &Exporter) {
    let rv = "rv 0 leap,stratum,rootdelay,rootdisp,tc,offset,frequency,sys_jitter,clk_wander";
    let (rows, (vars, body)) = wait_for(
        "system variables unchanged around a scrape",
        Duration::from_secs(60),
        || {
            let (rows, (before, body, after)) = stable(lab, "peers unchanged", || {
                let before = ntpq_vars(&lab.ntpq(&["-c", rv]));
                let body = exporter.scrape();
                let after = ntpq_vars(&lab.ntpq(&["-c", rv]));
                (before, body, after)
            });
            (before == after).then_some((rows, (before, body)))
        },
    );
    let ours = |metric: &str| {
        sample(&body, &format!("{metric}{{daemon=\"ntpd\"}}"))
            .unwrap_or_else(|| panic!("{metric} missing\n{body}"))
    };
    let theirs = |name: &str| -> f64 {
        vars[name]
            .parse()
            .unwrap_or_else(|_| panic!("{name}: {vars:?}"))
    };
    // ntpq prints the leap bits in binary. ntpd with `disable ntp` never
    // runs its clock discipline, which is what clears the initial 3.
    let leap = u8::from_str_radix(&vars["leap"], 2).expect("leap bits");
    assert_eq!(ours("clock_sync_leap"), f64::from(leap));
    assert_eq!(leap, 3, "ntpd under `disable ntp` stays unsynchronised");
    // The honest chronyd is at stratum 3 (its reference announces 2); ntpd
    // following it is at 4.
    assert_eq!(ours("clock_sync_stratum"), 4.0);
    assert_eq!(theirs("stratum"), 4.0);
    for (metric, name, scale) in [
        ("clock_sync_root_delay_seconds", "rootdelay", 1e-3),
        ("clock_sync_root_dispersion_seconds", "rootdisp", 1e-3),
        ("clock_sync_offset_seconds", "offset", 1e-3),
        ("clock_sync_jitter_seconds", "sys_jitter", 1e-3),
        ("clock_sync_frequency_ratio", "frequency", 1e-6),
        ("clock_sync_frequency_wander_ratio", "clk_wander", 1e-6),
    ] {
        let (o, t) = (ours(metric), theirs(name) * scale);
        assert!((o - t).abs() <= 1e-12, "{metric} {o} vs ntpq {name} {t}");
    }
    assert_eq!(
        ours("clock_sync_poll_interval_seconds"),
        2f64.powf(theirs("tc"))
    );
    let selected = system_peer(&rows);
    assert_eq!(
        sample(
            &body,
            &format!("clock_sync_info{{daemon=\"ntpd\",reference=\"{selected}\"}}")
        ),
        Some(1.0),
        "{body}"
    );
}

/// monitoring-plugins' check_ntp_peer reports the system peer's offset.
fn check_ntp_peer_agrees(lab: &Lab, exporter: &Exporter) {
    let (rows, (text, body)) = stable(lab, "check_ntp_peer and a scrape on one sample", || {
        let plugin = lab.client().run(
            "/usr/lib/nagios/plugins/check_ntp_peer",
            &["-H", "127.0.0.1"],
        );
        let text = String::from_utf8_lossy(&plugin.stdout).into_owned();
        (text, exporter.scrape())
    });
    let selected = system_peer(&rows);
    let ours = peer_sample(&body, "clock_peer_offset_seconds", selected);
    let plugin_offset: f64 = text
        .split("Offset ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("check_ntp_peer output: {text}"));
    // It prints the offset with %.10g.
    assert!(
        (ours - plugin_offset).abs() <= ours.abs() * 5e-6 + 1e-12,
        "check_ntp_peer {plugin_offset} vs ours {ours}: {text}"
    );
    eprintln!(
        "check_ntp_peer: {}ours for {selected}: {ours} s",
        text.trim_end()
    );
}

/// Nobody asks this ntpd for time: although `ntpq -c sysstats` counts more
/// packets received between two readings (replies, ntpq's queries and ours),
/// no request was served.
fn no_client_no_server_requests(lab: &Lab, exporter: &Exporter) {
    let received = || -> f64 {
        let vars = ntpq_vars(&lab.ntpq(&["-c", "rv 0 ss_received_r"]));
        vars["ss_received_r"].parse().expect("ss_received_r")
    };
    let r1 = received();
    let body = exporter.scrape();
    let r2 = received();
    assert!(r1 < r2, "{r1} < {r2}");
    assert_eq!(
        sample(&body, "clock_server_requests_total{daemon=\"ntpd\"}"),
        Some(0.0),
        "{body}"
    );
}

/// ntpd killed: down at once, the other collectors unaffected.
fn killed_ntpd_is_down_at_once(lab: &mut Lab, exporter: &Exporter) {
    lab.ntpd_mut().proc.kill();
    let start = Instant::now();
    let body = exporter.scrape();
    let elapsed = start.elapsed();
    assert_eq!(sample(&body, "clock_daemon_up{daemon=\"ntpd\"}"), Some(0.0));
    assert!(
        elapsed < Duration::from_secs(1),
        "a refused query must not wait: {elapsed:?}"
    );
    assert!(collector_duration(&body) < 0.5, "{body}");
    assert!(!body.contains("clock_peer_offset_seconds{"), "{body}");
    for c in ["timex", "time", "clocksource"] {
        assert_eq!(
            sample(
                &body,
                &format!("clock_scrape_collector_success{{collector=\"{c}\"}}")
            ),
            Some(1.0),
            "{c}\n{body}"
        );
    }
    let log = exporter.proc.log_text();
    assert!(
        log.contains("time daemon stopped answering") && log.contains("refused"),
        "{log}"
    );
}

/// Starts an exporter for a host without ntpd and scrapes it twice with a
/// 2-second ntpd timeout, returning both bodies and wall times.
fn scrape_twice(lab: &Lab, extra: &[&str]) -> [(String, Duration); 2] {
    let mut args = vec!["--collector.ntpd.timeout=2s"];
    args.extend_from_slice(extra);
    let exporter = lab.exporter(&args);
    [0, 1].map(|_| {
        let start = Instant::now();
        let body = exporter.scrape();
        (body, start.elapsed())
    })
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn nothing_on_port_123_is_refused_fast() {
    let lab = Lab::builder().build();
    // Not configured: never seen, so no clock_daemon_up at all.
    for (body, elapsed) in scrape_twice(&lab, &[]) {
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
        assert!(collector_duration(&body) < 0.5, "{body}");
        assert_eq!(sample(&body, "clock_daemon_up{daemon=\"ntpd\"}"), None);
        assert_eq!(
            sample(&body, "clock_scrape_collector_success{collector=\"ntpd\"}"),
            Some(1.0),
            "absence is not a failure\n{body}"
        );
    }
    // Configured explicitly: published, and 0.
    for (body, elapsed) in scrape_twice(&lab, &["--collector.ntpd.address=127.0.0.1:123"]) {
        assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
        assert_eq!(
            sample(&body, "clock_daemon_up{daemon=\"ntpd\"}"),
            Some(0.0),
            "{body}"
        );
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn a_silent_port_123_costs_the_timeout_once() {
    let lab = Lab::builder().build();
    // Like chronyd serving NTP: the port is open, mode 6 is never answered.
    let silent: UdpSocket = lab
        .client()
        .enter(|| UdpSocket::bind("0.0.0.0:123").expect("bind :123"));
    for extra in [&[][..], &["--collector.ntpd.address=127.0.0.1:123"][..]] {
        let [(first, t1), (second, t2)] = scrape_twice(&lab, extra);
        let d1 = collector_duration(&first);
        assert!(
            (1.9..3.0).contains(&d1),
            "first scrape waits the 2 s timeout: {d1}"
        );
        assert!(t1 >= Duration::from_millis(1900), "{t1:?}");
        let d2 = collector_duration(&second);
        assert!(
            d2 < 0.2,
            "second scrape skips the known-absent daemon: {d2}"
        );
        assert!(t2 < Duration::from_secs(1), "{t2:?}");
        let up = sample(&second, "clock_daemon_up{daemon=\"ntpd\"}");
        if extra.is_empty() {
            assert_eq!(up, None, "{second}");
        } else {
            assert_eq!(up, Some(0.0), "{second}");
        }
    }
    let mut buf = [0u8; 64];
    silent.set_nonblocking(true).expect("nonblocking");
    assert!(
        silent.recv(&mut buf).is_ok(),
        "the exporter did send to the silent port"
    );
}

/// Where fixtures live.
fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mode6")
}

/// Sends one request from inside the client namespace and returns the
/// response's datagrams in arrival order, until reassembly completes.
fn exchange(
    ns: &Netns,
    sequence: u16,
    opcode: Opcode,
    assoc: u16,
    data: &'static [u8],
) -> Vec<Vec<u8>> {
    ns.enter(move || {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.connect("127.0.0.1:123").expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        let req = mode6::encode_request(opcode, Sequence(sequence), AssocId(assoc), data)
            .expect("encode");
        sock.send(&req).expect("send");
        let mut r = Reassembler::new(
            opcode,
            Sequence(sequence),
            AssocId(assoc),
            mode6::DEFAULT_RESPONSE_LIMIT,
        );
        let mut datagrams = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = sock.recv(&mut buf).expect("answer from ntpd");
            datagrams.push(buf[..n].to_vec());
            let f = Fragment::parse(&buf[..n]).expect("fragment");
            match r.push(&f) {
                Ok(Progress::Complete(_)) | Err(_) => return datagrams,
                Ok(Progress::Incomplete) => {}
            }
        }
    })
}

/// Records the request `ntpq` sends for `command` with `opcode`, by standing
/// in for ntpd on 127.0.0.1:123 of a fresh namespace. ntpq asks for the
/// association list before anything else: that is answered with an empty one.
fn ntpq_request(root: &Path, command: &str, opcode: Opcode) -> Vec<u8> {
    let stand_in = Lab::builder().build();
    let ns = stand_in.client();
    let sock = ns.enter(|| UdpSocket::bind("127.0.0.1:123").expect("bind :123"));
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let child = Ntpd::ntpq_command(root, ns)
        .args(["-n", "-c", command, "127.0.0.1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run ntpq");
    let _ntpq = lab::Proc {
        child,
        log: PathBuf::from("/dev/null"),
        what: "ntpq".into(),
    };
    let mut buf = [0u8; 1024];
    loop {
        let (n, from) = sock.recv_from(&mut buf).expect("ntpq's request");
        let request = mode6::Header::parse(&buf[..n]).expect("mode-6 header");
        if request.opcode == opcode {
            return buf[..n].to_vec();
        }
        if request.opcode == Opcode::READ_STATUS {
            let answer = mode6::Header {
                response: true,
                count: 0,
                ..request
            };
            sock.send_to(&answer.encode(), from).expect("answer ntpq");
        }
    }
}

fn write_fixture(name: &str, bytes: &[u8]) {
    let path = fixture_dir().join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Captures the fixtures described in tests/fixtures/mode6/README.md.
fn capture_fixtures(lab: &Lab) {
    std::fs::create_dir_all(fixture_dir()).expect("fixture dir");
    let save = |name: &str, datagrams: &[Vec<u8>]| {
        for (i, d) in datagrams.iter().enumerate() {
            write_fixture(&format!("{name}.{i}.bin"), d);
        }
    };
    let list = exchange(lab.client(), 0x0101, Opcode::READ_STATUS, 0, b"");
    save("readstat", &list);
    let mut seq = 0x0102;
    let mut next = || {
        seq += 1;
        seq
    };
    save(
        "readvar-system",
        &exchange(lab.client(), next(), Opcode::READ_VARIABLES, 0, b""),
    );
    save(
        "readvar-sysstats",
        &exchange(
            lab.client(),
            next(),
            Opcode::READ_VARIABLES,
            0,
            b"ss_received",
        ),
    );
    save(
        "readvar-sysstats-ntpsec",
        &exchange(
            lab.client(),
            next(),
            Opcode::READ_VARIABLES,
            0,
            b"ss_received_r,ss_numctlreq",
        ),
    );
    save(
        "error-unknown-variable",
        &exchange(
            lab.client(),
            next(),
            Opcode::READ_VARIABLES,
            0,
            b"no_such_variable",
        ),
    );
    save(
        "error-bad-association",
        &exchange(lab.client(), next(), Opcode::READ_VARIABLES, 0xfffe, b""),
    );
    // One file set per peer, named by the role of its address.
    let data: Vec<u8> = list
        .iter()
        .flat_map(|d| Fragment::parse(d).expect("fragment").data.to_vec())
        .collect();
    for (id, _) in mode6::parse_status_list(&data).expect("association list") {
        let datagrams = exchange(lab.client(), next(), Opcode::READ_VARIABLES, id.0, b"");
        let text: Vec<u8> = datagrams
            .iter()
            .flat_map(|d| Fragment::parse(d).expect("fragment").data.to_vec())
            .collect();
        let vars = mode6::Variables::parse(&text);
        let srcadr = vars.get("srcadr");
        let role = [HONEST[0], HONEST[1], SKEWED]
            .into_iter()
            .find(|n| srcadr == Some(lab.addr(n).to_string().as_str()))
            .unwrap_or_else(|| panic!("unexpected peer {srcadr:?}"));
        save(&format!("readvar-peer-{role}"), &datagrams);
    }
    write_fixture(
        "ntpq-request-readstat.bin",
        &ntpq_request(lab.root(), "associations", Opcode::READ_STATUS),
    );
    write_fixture(
        "ntpq-request-readvar.bin",
        &ntpq_request(lab.root(), "rv 0 ss_received", Opcode::READ_VARIABLES),
    );
    eprintln!("fixtures written to {}", fixture_dir().display());
}

/// The lab of `server_requests_count_only_clients`: ntpd on the client,
/// polling one honest chronyd, and a downstream host of clients that may
/// ask it for time. The lab's stock restrictions (`restrict default kod
/// nomodify nopeer noquery limited`): clients get time, and a rate limit.
fn served_lab() -> Lab {
    Lab::builder()
        .client(Daemon::Ntpd)
        .honest("upstream")
        .downstream("clients")
        .build()
}

/// Requests the lab's own client sends.
const N: u32 = 5;

/// System variables as NTPsec's ntpq reads them, by name.
fn vars(lab: &Lab, names: &str) -> BTreeMap<String, u64> {
    let text = lab.ntpq(&["-c", &format!("rv 0 {names}")]);
    ntpq_vars(&text)
        .into_iter()
        .map(|(k, v)| {
            let n = v.parse().unwrap_or_else(|_| panic!("{k}={v}"));
            (k, n)
        })
        .collect()
}

/// The upstream association's `received`, as `ntpq -c pstats` shows it.
fn upstream_received(lab: &Lab) -> u64 {
    let assoc = lab.ntpq(&["-c", "associations"]);
    let id = assoc
        .lines()
        .find_map(|l| l.split_whitespace().nth(1)?.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no association:\n{assoc}"));
    let pstats = lab.ntpq(&["-c", &format!("pstats {id}")]);
    pstats
        .lines()
        .find_map(|l| l.strip_prefix("packets received:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("pstats {id}:\n{pstats}"))
}

fn served(body: &str) -> f64 {
    sample(body, "clock_server_requests_total{daemon=\"ntpd\"}")
        .unwrap_or_else(|| panic!("clock_server_requests_total missing:\n{body}"))
}

/// Sends `n` client (mode 3) requests from `from` to ntpd at `server`, `gap`
/// apart, from a socket in `ns`; returns how many ntpd answered.
fn client_requests(ns: &Netns, from: Ipv4Addr, server: Ipv4Addr, n: u32, gap: Duration) -> u32 {
    ns.enter(move || {
        let sock = UdpSocket::bind((from, 0)).expect("bind client");
        sock.connect((server, 123)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let mut answered = 0;
        for _ in 0..n {
            let transmit = NtpTimestamp::from_system_time(std::time::SystemTime::now());
            let request = Header {
                leap: 0,
                version: 4,
                mode: 3,
                stratum: 0,
                poll: 6,
                precision: -20,
                root_delay: NtpShort(0),
                root_dispersion: NtpShort(0),
                reference_id: RefId([0; 4]),
                reference: NtpTimestamp(0),
                origin: NtpTimestamp(0),
                receive: NtpTimestamp(0),
                transmit,
            };
            sock.send(&request.encode()).expect("send request");
            let mut buf = [0u8; 128];
            if let Ok(len) = sock.recv(&mut buf)
                && let Ok(reply) = Header::parse(&buf[..len])
                && reply.mode == 4
                && reply.origin == transmit
            {
                answered += 1;
            }
            std::thread::sleep(gap);
        }
        answered
    })
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn server_requests_count_only_clients() {
    let lab = served_lab();
    let exporter = lab.exporter(
        &lab::only_collectors(&["ntpd"])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    idle_ntpd_serves_nobody(&lab, &exporter);
    a_client_is_counted_exactly(&lab, &exporter);
    if std::env::var_os("CLOCK_CAPTURE_FIXTURES").is_some() {
        capture_served_fixtures(&lab, N);
    }
    a_chronyd_client_is_counted_exactly(&lab, &exporter);
}

/// Only upstream replies and control queries reach ntpd: scraped
/// every second over several polls, nothing counts, while ss_received
/// (the old source of this counter) and the association's replies grow.
fn idle_ntpd_serves_nobody(lab: &Lab, exporter: &Exporter) {
    let before = vars(lab, "ss_received_r");
    let replies_before = upstream_received(lab);
    let first = served(&exporter.scrape());
    assert_eq!(first, 0.0, "an ntpd nobody asks for time served nobody");
    let replies = wait_for(
        "five more replies from the upstream server",
        Duration::from_secs(90),
        || {
            let body = exporter.scrape();
            assert_eq!(served(&body), first, "{body}");
            std::thread::sleep(Duration::from_secs(1));
            let r = upstream_received(lab);
            (r >= replies_before + 5).then_some(r)
        },
    );
    let after = vars(lab, "ss_received_r");
    let body = exporter.scrape();
    assert_eq!(served(&body), 0.0, "{body}");
    eprintln!(
        "idle: ss_received_r {} -> {}, upstream replies {replies_before} -> {replies}, clock_server_requests_total stays 0",
        before["ss_received_r"], after["ss_received_r"]
    );
    assert!(after["ss_received_r"] >= before["ss_received_r"] + 5 + 10);
}

/// A client asks N times, slowly enough for the stock `limited`
/// restriction to answer every request: the counter grows by N exactly.
fn a_client_is_counted_exactly(lab: &Lab, exporter: &Exporter) {
    let limits = vars(lab, "ss_limited_r,ss_kodsent_r");
    let answered = client_requests(
        lab.ns("clients"),
        lab.addr("clients"),
        CLIENT,
        N,
        Duration::from_millis(500),
    );
    assert_eq!(answered, N, "ntpd answered every request");
    assert_eq!(
        vars(lab, "ss_limited_r,ss_kodsent_r"),
        limits,
        "none was rate limited"
    );
    // A server's reply landing between the statistics and its association's
    // counter holds one scrape a packet short, never over: the next one
    // counts it.
    wait_for(
        "the client's requests counted",
        Duration::from_secs(10),
        || {
            let body = exporter.scrape();
            assert!(served(&body) <= f64::from(N), "{body}");
            (served(&body) == f64::from(N)).then_some(())
        },
    );
    // More upstream replies and scrapes change nothing.
    let replies = upstream_received(lab);
    wait_for("another upstream reply", Duration::from_secs(60), || {
        let body = exporter.scrape();
        assert_eq!(served(&body), f64::from(N), "{body}");
        std::thread::sleep(Duration::from_secs(1));
        (upstream_received(lab) > replies).then_some(())
    });
    eprintln!("{N} client requests: clock_server_requests_total {N}");
}

/// A real client: chronyd polling ntpd every 2 s. Every answer it
/// got (`Total RX` of `chronyc ntpdata`, a kiss-o'-death included) is one
/// more request served; read while chronyd sent and received nothing.
fn a_chronyd_client_is_counted_exactly(lab: &Lab, exporter: &Exporter) {
    let client = lab.start_chronyd("clients", &format!("server {CLIENT} minpoll 1 maxpoll 1"));
    let ntpdata = || -> (u64, u64) {
        let text = client.chronyc(
            lab.root(),
            lab.ns("clients"),
            &["ntpdata", &CLIENT.to_string()],
        );
        let field = |name: &str| -> u64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{name} in chronyc ntpdata:\n{text}"))
        };
        (field("Total TX"), field("Total RX"))
    };
    let (rx, body) = wait_for(
        "chronyd to have four answers, quiet around a scrape that counts them",
        Duration::from_secs(60),
        || {
            let before = ntpdata();
            let body = exporter.scrape();
            let expected = f64::from(N) + before.1 as f64;
            let quiet = ntpdata() == before;
            if quiet {
                assert!(served(&body) <= expected, "RX {}: {body}", before.1);
            }
            (before.1 >= 4 && quiet && served(&body) == expected).then_some((before.1, body))
        },
    );
    eprintln!(
        "chronyd client: Total RX {rx}; clock_server_requests_total {}",
        served(&body)
    );
}

/// Captures the fixtures of tests/fixtures/mode6/served (README there): one
/// query's worth of answers from the served lab, taken while the upstream
/// association's counter stays the same around them.
fn capture_served_fixtures(lab: &Lab, clients: u32) {
    let dir = fixture_dir().join("served");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    let text = |datagrams: &[Vec<u8>]| -> Vec<u8> {
        datagrams
            .iter()
            .flat_map(|d| Fragment::parse(d).expect("fragment").data.to_vec())
            .collect()
    };
    let mut seq = 0x0200;
    let mut next = || {
        seq += 1;
        seq
    };
    let (list, answers) = wait_for(
        "a capture without a reply in it",
        Duration::from_secs(60),
        || {
            let list = exchange(lab.client(), next(), Opcode::READ_STATUS, 0, b"");
            let associations = mode6::parse_status_list(&text(&list)).expect("association list");
            let [(id, _)] = associations.as_slice() else {
                panic!("one association expected: {associations:?}");
            };
            let counters = |seq| {
                exchange(
                    lab.client(),
                    seq,
                    Opcode::READ_VARIABLES,
                    id.0,
                    b"srcadr,received",
                )
            };
            let first = counters(next());
            let answers = [
                (
                    "readvar-system",
                    exchange(lab.client(), next(), Opcode::READ_VARIABLES, 0, b""),
                ),
                (
                    "readvar-sysstats",
                    exchange(
                        lab.client(),
                        next(),
                        Opcode::READ_VARIABLES,
                        0,
                        SystemStats::QUERY.as_bytes(),
                    ),
                ),
                (
                    "readvar-sysstats-ntpsec",
                    exchange(
                        lab.client(),
                        next(),
                        Opcode::READ_VARIABLES,
                        0,
                        SystemStats::QUERY_NTPSEC.as_bytes(),
                    ),
                ),
                (
                    "readvar-peer-upstream",
                    exchange(lab.client(), next(), Opcode::READ_VARIABLES, id.0, b""),
                ),
                ("readvar-counters-upstream", counters(next())),
            ];
            (text(&first) == text(&answers[4].1)).then_some((list, answers))
        },
    );
    let save = |name: &str, datagrams: &[Vec<u8>]| {
        for (i, d) in datagrams.iter().enumerate() {
            let path = dir.join(format!("{name}.{i}.bin"));
            std::fs::write(&path, d).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    };
    save("readstat", &list);
    for (name, datagrams) in &answers {
        save(name, datagrams);
    }
    eprintln!(
        "served fixtures ({clients} client requests) written to {}",
        dir.display()
    );
}

/// `ntpq -c associations` rows: (association id, the `auth` column).
fn ntpq_auth_column(text: &str) -> Vec<(u16, String)> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.get(1)?.parse().ok()?, (*f.get(5)?).to_owned()))
        })
        .collect()
}

/// ntpq's auth column and `ntscookies` by address (the associations'
/// `srcadr`), read before and after a scrape until they hold still; and
/// that scrape.
fn ntpq_auth_beside(
    lab: &Lab,
    exporter: &Exporter,
) -> (BTreeMap<Ipv4Addr, (String, Option<String>)>, String) {
    let read = || -> BTreeMap<Ipv4Addr, (String, Option<String>)> {
        ntpq_auth_column(&lab.ntpq(&["-n", "-c", "associations"]))
            .into_iter()
            .filter_map(|(id, auth)| {
                let rv = format!("rv {id} srcadr,ntscookies");
                let vars = ntpq_vars(&lab.ntpq(&["-n", "-c", &rv]));
                let cookies = vars.get("ntscookies").cloned();
                Some((vars.get("srcadr")?.parse().ok()?, (auth, cookies)))
            })
            .collect()
    };
    wait_for("ntpq to hold still", Duration::from_secs(30), || {
        let before = read();
        let body = exporter.scrape();
        (before == read()).then_some((before, body))
    })
}

/// The auth column alone.
fn auth_column(theirs: &BTreeMap<Ipv4Addr, (String, Option<String>)>) -> BTreeMap<Ipv4Addr, &str> {
    theirs.iter().map(|(p, (a, _))| (*p, a.as_str())).collect()
}

/// Symmetric keys: ntpd polls `a` with the key `a` holds, `b` with a wrong
/// value under `b`'s key id, and `c` without a key. The exporter says what
/// ntpq says: `a` authenticated (`auth ok`), `b` configured for a key but
/// not authentic (`auth bad`), `c` not authenticated (`auth none`).
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn symmetric_keys_right_and_wrong_agree_with_ntpq() {
    let lab = Lab::builder()
        .client(Daemon::Ntpd)
        .honest("a")
        .honest("b")
        .honest("c")
        .keyed("a", true)
        .keyed("b", false)
        .build();
    let [a, b, c] = ["a", "b", "c"].map(|n| lab.addr(n));
    let exporter = lab.exporter(&[]);
    let auth = |body: &str, p: Ipv4Addr| {
        sample(
            body,
            &format!("clock_peer_authenticated{{daemon=\"ntpd\",peer=\"{p}\"}}"),
        )
    };
    wait_for("a authenticated", Duration::from_secs(60), || {
        let body = exporter.scrape();
        (auth(&body, a) == Some(1.0) && auth(&body, c) == Some(0.0)).then_some(())
    });
    let (theirs, body) = ntpq_auth_beside(&lab, &exporter);
    let info = |p: Ipv4Addr, mode: &str| {
        sample(
            &body,
            &format!(
                "clock_peer_authentication_info{{daemon=\"ntpd\",peer=\"{p}\",mode=\"{mode}\"}}"
            ),
        )
    };
    assert_eq!(
        auth_column(&theirs),
        BTreeMap::from([(a, "ok"), (b, "bad"), (c, "none")])
    );
    assert_eq!(
        (info(a, "symmetric_key"), auth(&body, a)),
        (Some(1.0), Some(1.0)),
        "{body}"
    );
    assert_eq!(
        (info(b, "symmetric_key"), auth(&body, b)),
        (Some(1.0), Some(0.0)),
        "{body}"
    );
    assert_eq!(
        (info(c, "none"), auth(&body, c)),
        (Some(1.0), Some(0.0)),
        "{body}"
    );
    // NTPsec says ntscookies=-1 of every association; only NTS ones carry it here.
    for p in [a, b, c] {
        let series = format!("clock_ntpd_peer_nts_cookies{{peer=\"{p}\"}}");
        assert_eq!(sample(&body, &series), None, "{body}");
    }
}

/// NTS under NTPsec: `a` serves NTS with a certificate of the CA the client
/// trusts, `b` with one of a CA it does not. The exporter says what ntpq
/// says: both are NTS associations (`ntscookies`), `a` authentic (`auth
/// ok`) with its cookies, `b` never (`auth bad`, `ntscookies=-1`: key
/// establishment failed).
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn nts_associations_agree_with_ntpq() {
    let lab = Lab::builder()
        .client(Daemon::Ntpd)
        .honest("a")
        .honest("b")
        .nts("a")
        .nts_untrusted("b")
        .build();
    let [a, b] = ["a", "b"].map(|n| lab.addr(n));
    let exporter = lab.exporter(&[]);
    let auth = |body: &str, p: Ipv4Addr| {
        sample(
            body,
            &format!("clock_peer_authenticated{{daemon=\"ntpd\",peer=\"{p}\"}}"),
        )
    };
    wait_for("a authenticated over NTS", Duration::from_secs(60), || {
        (auth(&exporter.scrape(), a) == Some(1.0)).then_some(())
    });
    let (theirs, body) = ntpq_auth_beside(&lab, &exporter);
    let cookies = |p: Ipv4Addr| {
        sample(
            &body,
            &format!("clock_ntpd_peer_nts_cookies{{peer=\"{p}\"}}"),
        )
        .map(|c| c.to_string())
    };
    let nts = |p: Ipv4Addr| {
        sample(
            &body,
            &format!("clock_peer_authentication_info{{daemon=\"ntpd\",peer=\"{p}\",mode=\"nts\"}}"),
        )
    };
    assert_eq!(
        auth_column(&theirs),
        BTreeMap::from([(a, "ok"), (b, "bad")])
    );
    for p in [a, b] {
        assert_eq!(nts(p), Some(1.0), "{p}: {body}");
        assert_eq!(
            cookies(p),
            theirs.get(&p).and_then(|t| t.1.clone()),
            "{p}: {theirs:?}"
        );
    }
    assert!(cookies(a).is_some_and(|c| c != "0"), "{body}");
    assert_eq!(cookies(b).as_deref(), Some("-1"), "{body}");
    assert_eq!(
        (auth(&body, a), auth(&body, b)),
        (Some(1.0), Some(0.0)),
        "{body}"
    );
}
