//! The chrony collector against real chronyd 4.3 (unpacked, `-x`, private
//! sockets) in network namespaces, cross-checked with chronyd's own chronyc.
//!
//! Most tests run the lab's client chronyd polling an honest chronyd server
//! (`a`, 192.0.2.11), the skewed responder (`b`, +11.5 s, the seed's vB,
//! 192.0.2.12) and, in some, a second honest server (`c`, 192.0.2.13). All
//! namespaces share this machine's clock, so the truth is known: an honest
//! server's clock minus the client's is 0, the skewed one's is +11.5 s.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clock_exporter::testing::proto::cmdmon::{self, AuthMode, Reply, ReplyError, Request, Status};
use common::lab::plan::{CLIENT, HONEST};
use common::lab::{
    self, Daemon, Exporter, Lab, LabBuilder, Netns, SERVE_LOCAL_CLOCK, sample, wait_for,
};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cmdmon")
}

/// A chronyd client of the honest `a` and the skewed `b` and, with `third`,
/// of the honest `c`, in that order.
fn chrony_lab(third: bool) -> LabBuilder {
    let lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .skewed("b", 11.5);
    if third { lab.honest("c") } else { lab }
}

/// A client host whose chronyd is itself a server (`local stratum 8`).
fn serving_chronyd() -> LabBuilder {
    Lab::builder()
        .client(Daemon::Chronyd)
        .client_conf(SERVE_LOCAL_CLOCK)
}

/// One request and its reply over UDP to chronyd's command port in `ns`.
fn exchange_udp(ns: &Netns, request: Vec<u8>) -> Vec<u8> {
    ns.enter(move || {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.connect("127.0.0.1:323").expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        s.send(&request).expect("send");
        let mut buf = vec![0u8; cmdmon::MAX_DATAGRAM];
        let n = s.recv(&mut buf).expect("reply over udp");
        buf.truncate(n);
        buf
    })
}

/// One request and its reply on chronyd's unix socket.
fn exchange_unix(socket: &Path, request: &[u8]) -> Vec<u8> {
    let me = socket.with_file_name(format!("capture.{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&me);
    let s = UnixDatagram::bind(&me).expect("bind client socket");
    s.connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.send(request).expect("send");
    let mut buf = vec![0u8; cmdmon::MAX_DATAGRAM];
    let n = s.recv(&mut buf).expect("reply over unix socket");
    buf.truncate(n);
    let _ = std::fs::remove_file(&me);
    buf
}

/// Writes fixtures when `CLOCK_CAPTURE_FIXTURES` is set; always decodes.
struct Capture {
    /// `CLOCK_CAPTURE_FIXTURES`: `1` writes every exchange, another value
    /// only those whose name starts with it (to add fixtures without
    /// changing the others).
    write: Option<String>,
    sequence: u32,
}

impl Capture {
    fn take(
        &mut self,
        name: &str,
        request: Request,
        send: impl FnOnce(Vec<u8>) -> Vec<u8>,
    ) -> Result<Reply, ReplyError> {
        self.sequence += 1;
        let sequence = 0x5eed_0000 + self.sequence;
        let bytes = request.encode(sequence);
        let reply = send(bytes.clone());
        if self
            .write
            .as_deref()
            .is_some_and(|w| w == "1" || name.starts_with(w))
        {
            let dir = fixtures_dir();
            std::fs::create_dir_all(&dir).expect("fixtures dir");
            std::fs::write(dir.join(format!("{name}.request.bin")), &bytes).expect("write");
            std::fs::write(dir.join(format!("{name}.reply.bin")), &reply).expect("write");
        }
        cmdmon::decode_reply(request, sequence, &reply)
    }
}

/// A fake chronyd on loopback that reads chronyc's requests.
enum Fake {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Fake {
    /// The next request and where to answer it.
    fn recv(&self) -> Option<(Vec<u8>, FakePeer)> {
        let mut buf = [0u8; 1024];
        match self {
            Fake::Udp(s) => {
                let (n, from) = s.recv_from(&mut buf).ok()?;
                Some((buf[..n].to_vec(), FakePeer::Udp(from)))
            }
            Fake::Unix(s) => {
                let (n, from) = s.recv_from(&mut buf).ok()?;
                Some((
                    buf[..n].to_vec(),
                    FakePeer::Unix(from.as_pathname()?.to_path_buf()),
                ))
            }
        }
    }

    fn send(&self, to: &FakePeer, b: &[u8]) {
        match (self, to) {
            (Fake::Udp(s), FakePeer::Udp(a)) => drop(s.send_to(b, a)),
            (Fake::Unix(s), FakePeer::Unix(p)) => drop(s.send_to(b, p)),
            _ => {}
        }
    }
}

enum FakePeer {
    Udp(SocketAddr),
    Unix(PathBuf),
}

/// chronyc's first request for a command, read by a fake chronyd on
/// loopback (UDP, or a unix socket for the socket-only commands). The fake
/// answers N_SOURCES with 1 so that chronyc goes on to SOURCE_DATA or
/// SOURCESTATS of index 0, and answers nothing else.
fn chronyc_request(root: &Path, args: &[&str], want_command: u16, unix: bool) -> Vec<u8> {
    let dir = lab::TempDir::new("fake-chronyd");
    let mut cmd = std::process::Command::new(root.join("usr/bin/chronyc"));
    cmd.env("LD_LIBRARY_PATH", lab::lib_path(root)).arg("-h");
    let fake = if unix {
        let path = dir.path().join("chronyd.sock");
        cmd.arg(&path);
        Fake::Unix(UnixDatagram::bind(&path).expect("bind fake"))
    } else {
        let s = UdpSocket::bind("127.0.0.1:0").expect("bind fake");
        let port = s.local_addr().expect("addr").port().to_string();
        cmd.args(["127.0.0.1", "-p", &port]);
        Fake::Udp(s)
    };
    match &fake {
        Fake::Udp(s) => s.set_read_timeout(Some(Duration::from_millis(200))),
        Fake::Unix(s) => s.set_read_timeout(Some(Duration::from_millis(200))),
    }
    .expect("timeout");
    cmd.args(args);
    let mut chronyc = lab::Proc::spawn(cmd, dir.path().join("chronyc.log"), "chronyc");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some((request, peer)) = fake.recv() else {
            continue;
        };
        let command = u16::from_be_bytes([request[4], request[5]]);
        if command == want_command {
            drop(chronyc.child.kill());
            return request;
        }
        if command == 14 {
            let mut r = vec![0u8; 32];
            r[0] = 6;
            r[1] = 2;
            r[4..6].copy_from_slice(&14u16.to_be_bytes());
            r[6..8].copy_from_slice(&2u16.to_be_bytes());
            r[16..20].copy_from_slice(&request[8..12]);
            r[28..32].copy_from_slice(&1u32.to_be_bytes());
            fake.send(&peer, &r);
        }
    }
    panic!("chronyc {args:?} sent no command {want_command}");
}

/// Our request with chronyc's sequence number: equal to chronyc's bytes
/// (sequence, attempt aside) where both pad to the same reply length.
fn same_as_chronyc(ours: &Request, theirs: &[u8]) {
    let sequence = u32::from_be_bytes([theirs[8], theirs[9], theirs[10], theirs[11]]);
    let mut mine = ours.encode(sequence);
    // chronyc 4.3 pads serverstats and ntpdata to its own replies
    // (SERVER_STATS3, NTP_DATA); the exporter pads to chrony 4.4's longer ones.
    assert!(
        mine.len() >= theirs.len(),
        "{ours:?} shorter than chronyc's"
    );
    mine.truncate(theirs.len());
    assert_eq!(mine, theirs, "{ours:?} differs from chronyc's request");
}

/// chronyc's own requests, read by a fake chronyd on loopback, are ours.
fn same_requests_as_chronyc(root: &Path) {
    for (args, command, unix, ours) in [
        (&["tracking"][..], 33, false, Request::Tracking),
        (&["sources"][..], 14, false, Request::NSources),
        (&["sources"][..], 15, false, Request::SourceData(0)),
        (&["sourcestats"][..], 34, false, Request::SourceStats(0)),
        (&["serverstats"][..], 54, true, Request::ServerStats),
        (
            &["ntpdata", "192.0.2.11"][..],
            57,
            true,
            Request::NtpData(HONEST[0].into()),
        ),
    ] {
        let theirs = chronyc_request(root, args, command, unix);
        same_as_chronyc(&ours, &theirs);
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn requests_equal_chronyc_and_replies_of_real_chronyd_decode() {
    lab::require_root();
    let root = lab::root();
    same_requests_as_chronyc(&root);

    // Outlives the lab: chronyd stops before its refclock's directory goes.
    let refclock_dir = lab::TempDir::new("refclock");
    let lab = chrony_lab(true)
        .downstream("l")
        .client_conf(&format!(
            "refclock SOCK {}/refclock.sock refid GPS",
            refclock_dir.path().display()
        ))
        .build();
    let (client, chronyd) = (lab.client(), lab.chronyd());
    let (honest, skewed) = (lab.addr("a"), lab.addr("b"));
    wait_for("a source selected", Duration::from_secs(30), || {
        let s = lab.chronyc(&["-n", "sources"]);
        s.lines().any(|l| l.starts_with("^*")).then_some(())
    });
    // A few more polls, so sourcestats has a frequency.
    std::thread::sleep(Duration::from_secs(4));

    let mut cap = Capture {
        write: std::env::var("CLOCK_CAPTURE_FIXTURES").ok(),
        sequence: 0,
    };
    let udp = |req| exchange_udp(client, req);
    let Ok(Reply::Tracking(t)) = cap.take("tracking", Request::Tracking, udp) else {
        panic!("tracking")
    };
    assert!(t.stratum > 0);
    let Ok(Reply::NSources(n)) = cap.take("n_sources", Request::NSources, udp) else {
        panic!("n_sources")
    };
    assert_eq!(n, 4);
    for i in 0..n {
        let r = cap.take(&format!("source_data.{i}"), Request::SourceData(i), udp);
        assert!(matches!(r, Ok(Reply::SourceData(_))), "{r:?}");
        let r = cap.take(&format!("sourcestats.{i}"), Request::SourceStats(i), udp);
        assert!(matches!(r, Ok(Reply::SourceStats(_))), "{r:?}");
    }
    let r = cap.take("source_data.nosuch", Request::SourceData(99), udp);
    assert_eq!(r, Err(ReplyError::Refused(Status::NoSuchSource)));
    let r = cap.take("server_stats.udp", Request::ServerStats, udp);
    assert_eq!(r, Err(ReplyError::Refused(Status::Unauthorised)));
    let r = cap.take("ntp_data.udp", Request::NtpData(honest.into()), udp);
    assert_eq!(r, Err(ReplyError::Refused(Status::Unauthorised)));

    let unix = |req: Vec<u8>| exchange_unix(&chronyd.socket(), &req);
    for (name, ip) in [("ntp_data.honest", honest), ("ntp_data.skewed", skewed)] {
        let r = cap.take(name, Request::NtpData(ip.into()), unix);
        assert!(matches!(r, Ok(Reply::NtpData(_))), "{r:?}");
    }
    let server = |req: Vec<u8>| exchange_unix(&lab.server("a").socket(), &req);
    let r = cap.take("server_stats.unix", Request::ServerStats, server);
    let Ok(Reply::ServerStats(s)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(s.format, 3, "chrony 4.3 answers SERVER_STATS3");
    assert!(s.ntp_hits > 0);
    // A chronyd serving its own clock (the lab's honest servers have a
    // reference): TRACKING names chronyd's local reference.
    let free = lab.start_chronyd("l", SERVE_LOCAL_CLOCK);
    let local = wait_for(
        "a chronyd tracking its local clock",
        Duration::from_secs(30),
        || match cap.take("tracking.local", Request::Tracking, |r| {
            exchange_unix(&free.socket(), &r)
        }) {
            Ok(Reply::Tracking(t)) if t.ref_id == 0x7f7f_0101 => Some(t),
            _ => None,
        },
    );
    assert_eq!(local.ref_id, 0x7f7f_0101);

    // AUTH_DATA (chronyc authdata): refused over UDP by chrony 4.3; over
    // the socket, a source without authentication, and no such source.
    let r = cap.take("auth_data.udp", Request::AuthData(honest.into()), udp);
    assert_eq!(r, Err(ReplyError::Refused(Status::Unauthorised)));
    let r = cap.take("auth_data.honest", Request::AuthData(honest.into()), unix);
    let Ok(Reply::AuthData(auth)) = r else {
        panic!("{r:?}")
    };
    assert_eq!(
        (
            auth.mode,
            auth.key_id,
            auth.ke_attempts,
            auth.cookies,
            auth.nak
        ),
        (AuthMode::None, 0, 0, 0, false)
    );
    let r = cap.take(
        "auth_data.nosuch",
        Request::AuthData("192.0.2.99".parse().expect("ip")),
        unix,
    );
    assert_eq!(r, Err(ReplyError::Refused(Status::NoSuchSource)));
}

// ---------------------------------------------------------------------
// chronyc's human output, parsed with the rounding it applies.

/// A value as chronyc printed it, with half its last digit as tolerance.
#[derive(Debug, Clone, Copy)]
struct Printed {
    value: f64,
    tolerance: f64,
}

/// Parses `-11.5s`, `+123us`, `0.000002662`: the number, its unit, and the
/// rounding of the digits shown (`print_signed_nanoseconds` in client.c).
fn printed(text: &str) -> Printed {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ns" => 1e-9,
        "us" | "ppm" => 1e-6,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => panic!("unit {unit:?} in {text:?}"),
    };
    let decimals = num.split_once('.').map_or(0, |(_, d)| d.len());
    let value: f64 = num.parse().unwrap_or_else(|_| panic!("number {num:?}"));
    Printed {
        value: value * scale,
        tolerance: 0.5 * 10f64.powi(-(decimals as i32)) * scale * 1.000_001,
    }
}

/// `chronyc -n tracking`, by field name.
fn tracking_fields(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(" : "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// One line of `chronyc -n sources -v`.
#[derive(Debug, Clone)]
struct SourceLine {
    state: char,
    name: String,
    stratum: f64,
    poll: f64,
    reach: u32,
    last_rx: Option<f64>,
    adjusted: Printed,
    measured: Printed,
    error: Printed,
}

fn source_lines(text: &str) -> Vec<SourceLine> {
    text.lines()
        .filter(|l| l.len() > 2 && "^=#".contains(&l[..1]) && l.contains("+/-"))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            let (adjusted, rest) = l.split_once('[').expect("[");
            let (measured, rest) = rest.split_once(']').expect("]");
            let error = rest.split_once("+/-").expect("+/-").1;
            SourceLine {
                state: l.chars().nth(1).expect("state"),
                name: t[1].to_owned(),
                stratum: t[2].parse().expect("stratum"),
                poll: t[3].parse().expect("poll"),
                reach: u32::from_str_radix(t[4], 8).expect("reach"),
                last_rx: t[5].parse().ok(),
                adjusted: printed(adjusted.split_whitespace().last().expect("adjusted")),
                measured: printed(measured),
                error: printed(error),
            }
        })
        .collect()
}

/// One line of `chronyc -n sourcestats`: name, NP, span, frequency, skew,
/// offset, std dev.
fn sourcestats_lines(text: &str) -> Vec<(String, f64, Printed, Printed, Printed, Printed)> {
    text.lines()
        .skip_while(|l| !l.starts_with("===="))
        .skip(1)
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            (
                t[0].to_owned(),
                t[1].parse().expect("NP"),
                printed(&format!("{}ppm", t[4])),
                printed(&format!("{}ppm", t[5])),
                printed(t[6]),
                printed(t[7]),
            )
        })
        .collect()
}

/// Two scrapes around one chronyc reading: chronyc's value must lie between
/// what the exporter showed before and after it, widened by chronyc's rounding.
/// That holds while the values move one way between the scrapes (a slew, one
/// new sample); a clock update or a new sample in between can move them back
/// (chronyd polls every 0.25 s here), so when chronyd's reference time or a
/// source's last sample differs between the two scrapes a value outside is
/// skipped, not a failure, and the bracket is taken again.
struct Bracket<'a> {
    before: &'a str,
    after: &'a str,
    checked: usize,
    skipped: usize,
}

impl<'a> Bracket<'a> {
    fn new(before: &'a str, after: &'a str) -> Self {
        Bracket {
            before,
            after,
            checked: 0,
            skipped: 0,
        }
    }

    /// Whether chronyd updated its clock between the two scrapes, or took
    /// a new sample of any source (its last sample's age went down): a new
    /// sample moves that source's values whether or not the clock is
    /// updated with it.
    fn updated(&self) -> bool {
        let (a, b) = self.reference_times();
        a != b || self.new_sample()
    }

    /// A source's last sample's age went down, or its last sample's offset
    /// changed: the lab polls every 0.25 s, and chronyd gives the age in
    /// whole seconds, so two samples within one second leave it at 0.
    fn new_sample(&self) -> bool {
        let series = |body: &'a str, family: &str| {
            let prefix = format!("{family}{{");
            body.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter_map(|l| {
                    let (series, value) = l.rsplit_once(' ')?;
                    Some((series, value.parse::<f64>().ok()?))
                })
                .collect::<std::collections::HashMap<&str, f64>>()
        };
        let age = "clock_chrony_peer_last_sample_age_seconds";
        let (before, after) = (series(self.before, age), series(self.after, age));
        let younger = after
            .iter()
            .any(|(s, a)| before.get(s).is_none_or(|b| a < b));
        let measured = "clock_chrony_peer_measured_offset_seconds";
        let (before, after) = (series(self.before, measured), series(self.after, measured));
        younger || after.iter().any(|(s, a)| before.get(s) != Some(a))
    }

    /// chronyd's reference time in both scrapes; a scrape without it is a
    /// failure, or every bracket would count as one without a clock update.
    fn reference_times(&self) -> (f64, f64) {
        let sel = "clock_chrony_tracking_reference_time_seconds";
        let get =
            |body: &str| sample(body, sel).unwrap_or_else(|| panic!("{sel} missing in {body}"));
        (get(self.before), get(self.after))
    }

    fn values(&self, selector: &str) -> (f64, f64) {
        let a = sample(self.before, selector).unwrap_or_else(|| panic!("{selector} missing"));
        let b = sample(self.after, selector).unwrap_or_else(|| panic!("{selector} missing"));
        (a.min(b), a.max(b))
    }

    /// Asserts chronyc's `theirs` equals `sign · ours` within the bracket.
    fn check(&mut self, what: &str, selector: &str, sign: f64, theirs: Printed) {
        let (lo, hi) = self.values(selector);
        let (lo, hi) = if sign < 0.0 { (-hi, -lo) } else { (lo, hi) };
        let slack = theirs.tolerance + 1e-12;
        let inside = theirs.value >= lo - slack && theirs.value <= hi + slack;
        if !inside && self.updated() {
            self.skipped += 1;
            return;
        }
        assert!(
            inside,
            "{what}: chronyc {theirs:?}, exporter {}·[{lo}, {hi}] ({selector})",
            if sign < 0.0 { "−" } else { "+" }
        );
        self.checked += 1;
    }

    fn one_hot(&self, peer: &str, state: &str) -> bool {
        let sel =
            format!("clock_peer_state{{daemon=\"chronyd\",peer=\"{peer}\",state=\"{state}\"}}");
        sample(self.before, &sel) == Some(1.0) || sample(self.after, &sel) == Some(1.0)
    }
}

fn state_label(c: char, reach: u32) -> &'static str {
    match c {
        '*' => "selected",
        '+' => "candidate",
        '-' => "outlier",
        'x' => "falseticker",
        '?' if reach == 0 => "unreachable",
        _ => "rejected",
    }
}

/// Compares one scrape bracket with `chronyc -n tracking`, `sources -v` and
/// `sourcestats` read in between; returns the number of values compared.
fn compare_with_chronyc(lab: &Lab, exporter: &Exporter) -> (usize, String, String) {
    let before = exporter.scrape();
    let tracking = lab.chronyc(&["-n", "tracking"]);
    let sources = lab.chronyc(&["-n", "sources", "-v"]);
    let stats = lab.chronyc(&["-n", "sourcestats"]);
    let after = exporter.scrape();
    let mut b = Bracket::new(&before, &after);
    let system_time = compare_tracking(&mut b, &tracking);
    compare_sources(&mut b, &sources, system_time);
    compare_sourcestats(&mut b, &stats);
    // A bracket crossed by a clock update says nothing: take another.
    let checked = if b.skipped > 0 { 0 } else { b.checked };
    (
        checked,
        before.clone(),
        format!("{tracking}\n{sources}\n{stats}"),
    )
}

/// `chronyc -n tracking` against the sync series; returns "System time" (θ).
fn compare_tracking(b: &mut Bracket<'_>, tracking: &str) -> Printed {
    let t = tracking_fields(tracking);
    let field = |k: &str| {
        t.get(k)
            .unwrap_or_else(|| panic!("{k} in {tracking}"))
            .clone()
    };
    // "System time : X seconds slow of NTP time": slow means the reference
    // is ahead, θ positive, which is current_correction's own sign.
    let system = field("System time");
    let mut st = printed(system.split_whitespace().next().expect("number"));
    if system.contains("fast") {
        st.value = -st.value;
    }
    b.check(
        "system time",
        "clock_sync_offset_seconds{daemon=\"chronyd\"}",
        1.0,
        st,
    );
    // "Last offset" is local minus reference: negated.
    b.check(
        "last offset",
        "clock_chrony_tracking_last_offset_seconds",
        -1.0,
        printed(field("Last offset").trim_end_matches(" seconds")),
    );
    b.check(
        "rms offset",
        "clock_sync_jitter_seconds{daemon=\"chronyd\"}",
        1.0,
        printed(field("RMS offset").trim_end_matches(" seconds")),
    );
    // "Frequency : X ppm fast": chrony's freq_ppm > 0, the kernel's sign negated.
    let freq = field("Frequency");
    let mut fp = printed(&freq.split_whitespace().take(2).collect::<String>());
    if freq.ends_with("slow") {
        fp.value = -fp.value;
    }
    b.check(
        "frequency",
        "clock_sync_frequency_ratio{daemon=\"chronyd\"}",
        -1.0,
        fp,
    );
    b.check(
        "residual frequency",
        "clock_chrony_tracking_residual_frequency_ratio",
        -1.0,
        printed(&field("Residual freq").replace(' ', "")),
    );
    b.check(
        "skew",
        "clock_sync_frequency_wander_ratio{daemon=\"chronyd\"}",
        1.0,
        printed(&field("Skew").replace(' ', "")),
    );
    for (k, m) in [
        ("Root delay", "clock_sync_root_delay_seconds"),
        ("Root dispersion", "clock_sync_root_dispersion_seconds"),
        ("Update interval", "clock_sync_poll_interval_seconds"),
    ] {
        b.check(
            k,
            &format!("{m}{{daemon=\"chronyd\"}}"),
            1.0,
            printed(field(k).trim_end_matches(" seconds")),
        );
    }
    let stratum: f64 = field("Stratum").parse().expect("stratum");
    b.check(
        "stratum",
        "clock_sync_stratum{daemon=\"chronyd\"}",
        1.0,
        Printed {
            value: stratum,
            tolerance: 0.0,
        },
    );
    let leap = match field("Leap status").as_str() {
        "Normal" => 0.0,
        "Insert second" => 1.0,
        "Delete second" => 2.0,
        _ => 3.0,
    };
    b.check(
        "leap",
        "clock_sync_leap{daemon=\"chronyd\"}",
        1.0,
        Printed {
            value: leap,
            tolerance: 0.0,
        },
    );
    let reference = field("Reference ID");
    let (id, name) = reference.split_once(' ').expect("reference");
    let name = name.trim_matches(|c| c == '(' || c == ')');
    let info =
        format!("clock_chrony_tracking_info{{reference_id=\"{id}\",reference_name=\"{name}\"}} 1");
    assert!(
        b.before.contains(&info) || b.after.contains(&info),
        "reference {reference}\n{}",
        b.before
    );
    st
}

/// `chronyc -n sources -v` against the peer series.
fn compare_sources(b: &mut Bracket<'_>, sources: &str, st: Printed) {
    for s in source_lines(sources) {
        let p = |m: &str| format!("{m}{{daemon=\"chronyd\",peer=\"{}\"}}", s.name);
        let x = |m: &str| format!("{m}{{peer=\"{}\"}}", s.name);
        assert!(
            b.one_hot(&s.name, state_label(s.state, s.reach)),
            "state {} of {}\n{sources}\n{}",
            s.state,
            s.name,
            b.before
        );
        b.check(
            "stratum",
            &p("clock_peer_stratum"),
            1.0,
            Printed {
                value: s.stratum,
                tolerance: 0.0,
            },
        );
        b.check(
            "poll",
            &p("clock_peer_poll_interval_seconds"),
            1.0,
            Printed {
                value: 2f64.powf(s.poll),
                tolerance: 0.0,
            },
        );
        b.check(
            "reach",
            &p("clock_peer_reachability_ratio"),
            1.0,
            Printed {
                value: f64::from(s.reach.count_ones()) / 8.0,
                tolerance: 0.0,
            },
        );
        let Some(last_rx) = s.last_rx else { continue };
        b.check(
            "last sample age",
            &x("clock_chrony_peer_last_sample_age_seconds"),
            1.0,
            Printed {
                value: last_rx,
                tolerance: 0.0,
            },
        );
        // chronyc prints chrony's sign (local minus source): negated.
        b.check(
            "measured offset",
            &x("clock_chrony_peer_measured_offset_seconds"),
            -1.0,
            s.measured,
        );
        b.check(
            "adjusted offset",
            &x("clock_chrony_peer_adjusted_offset_seconds"),
            -1.0,
            s.adjusted,
        );
        // Peer minus system clock: chronyc's adjusted offset (negated) moved
        // by the correction chronyd has yet to apply ("System time").
        b.check(
            "offset from the system clock",
            &p("clock_peer_offset_seconds"),
            1.0,
            Printed {
                value: st.value - s.adjusted.value,
                tolerance: st.tolerance + s.adjusted.tolerance,
            },
        );
        b.check(
            "error bound",
            &p("clock_peer_error_bound_seconds"),
            1.0,
            s.error,
        );
    }
}

/// `chronyc -n sourcestats` against chrony's per-source series.
fn compare_sourcestats(b: &mut Bracket<'_>, stats: &str) {
    for (name, np, freq, skew, offset, sd) in sourcestats_lines(stats) {
        let x = |m: &str| format!("{m}{{peer=\"{name}\"}}");
        b.check(
            "samples",
            &x("clock_chrony_peer_samples"),
            1.0,
            Printed {
                value: np,
                tolerance: 0.0,
            },
        );
        if np == 0.0 {
            continue;
        }
        b.check(
            "source frequency",
            &x("clock_chrony_peer_frequency_ratio"),
            -1.0,
            freq,
        );
        b.check(
            "source skew",
            &x("clock_chrony_peer_frequency_skew_ratio"),
            1.0,
            skew,
        );
        b.check(
            "estimated offset",
            &x("clock_chrony_peer_estimated_offset_seconds"),
            -1.0,
            offset,
        );
        b.check(
            "std dev",
            &format!("clock_peer_jitter_seconds{{daemon=\"chronyd\",peer=\"{name}\"}}"),
            1.0,
            sd,
        );
    }
}

fn peer_value(body: &str, metric: &str, peer: Ipv4Addr) -> f64 {
    sample(
        body,
        &format!("{metric}{{daemon=\"chronyd\",peer=\"{peer}\"}}"),
    )
    .unwrap_or_else(|| panic!("{metric} of {peer}\n{body}"))
}

fn is_state(body: &str, peer: Ipv4Addr, state: &str) -> bool {
    sample(
        body,
        &format!("clock_peer_state{{daemon=\"chronyd\",peer=\"{peer}\",state=\"{state}\"}}"),
    ) == Some(1.0)
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn three_sources_the_skewed_one_is_a_falseticker_and_values_agree_with_chronyc() {
    let lab = chrony_lab(true).build();
    let [a, b, c] = ["a", "b", "c"].map(|n| lab.addr(n));
    let socket = lab.chronyd().socket().display().to_string();
    let exporter = lab.exporter(&["--collector.chrony.socket", &socket]);
    let body = wait_for(
        "skewed falseticker, an honest one selected",
        Duration::from_secs(40),
        || {
            let body = exporter.scrape();
            (is_state(&body, b, "falseticker")
                && (is_state(&body, a, "selected") || is_state(&body, c, "selected")))
            .then_some(body)
        },
    );
    // θ: the skewed server is 11.5 s ahead of this host, the honest ones with it.
    let skewed = peer_value(&body, "clock_peer_offset_seconds", b);
    assert!((skewed - 11.5).abs() < 0.01, "{skewed}");
    for honest in [a, c] {
        let off = peer_value(&body, "clock_peer_offset_seconds", honest);
        assert!(off.abs() < 0.001, "{honest}: {off}");
        // With the socket: delay and dispersion from NTP_DATA, the refid the
        // server announces (its own reference's address).
        assert!(peer_value(&body, "clock_peer_delay_seconds", honest) > 0.0);
        let reference = lab::plan::HONEST_REFERENCE.ip();
        assert!(body.contains(&format!(
            "clock_peer_info{{daemon=\"chronyd\",peer=\"{honest}\",kind=\"server\",refid=\"{reference}\"}} 1"
        )), "{body}");
    }
    assert!(
        body.contains("clock_daemon_up{daemon=\"chronyd\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("clock_scrape_collector_success{collector=\"chrony\"} 1"),
        "{body}"
    );
    // The selected source is chronyd's reference.
    let selected = [a, c]
        .into_iter()
        .find(|p| is_state(&body, *p, "selected"))
        .expect("selected");
    assert!(body.contains(&format!(
        "clock_sync_info{{daemon=\"chronyd\",reference=\"{selected}\"}} 1"
    )));

    let mut compared = None;
    for _ in 0..20 {
        let (n, before, chronyc) = compare_with_chronyc(&lab, &exporter);
        eprintln!("compared {n} values with chronyc\n{chronyc}\n{before}");
        if n >= 40 {
            compared = Some(n);
            break;
        }
    }
    assert!(compared.is_some(), "too few values compared");
    assert_no_client_sockets(lab.chronyd().dir.path());
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn two_sources_that_disagree_are_both_falsetickers_and_sync_is_lost() {
    let lab = chrony_lab(false).build();
    let [a, b] = ["a", "b"].map(|n| lab.addr(n));
    // Over UDP, as an unprivileged exporter would run.
    let exporter = lab.exporter(&[]);
    let body = wait_for("both sources falsetickers", Duration::from_secs(40), || {
        let body = exporter.scrape();
        (is_state(&body, a, "falseticker") && is_state(&body, b, "falseticker")).then_some(body)
    });
    for peer in [a, b] {
        assert!(!is_state(&body, peer, "selected"), "{peer}\n{body}");
    }
    let sources = lab.chronyc(&["-n", "sources"]);
    let states: Vec<char> = source_lines(&sources).iter().map(|s| s.state).collect();
    assert_eq!(states, ['x', 'x'], "{sources}");
    // What chronyd reports without a majority: not synchronised (leap 3),
    // stratum 0, no reference (id 0).
    let tracking = lab.chronyc(&["-n", "tracking"]);
    eprintln!("{tracking}\n{sources}");
    assert!(
        tracking.contains("Leap status     : Not synchronised"),
        "{tracking}"
    );
    assert_eq!(
        sample(&body, "clock_sync_leap{daemon=\"chronyd\"}"),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "clock_sync_stratum{daemon=\"chronyd\"}"),
        Some(0.0),
        "{body}"
    );
    assert!(
        body.contains(
            "clock_chrony_tracking_info{reference_id=\"00000000\",reference_name=\"\"} 1"
        ),
        "{body}"
    );
    assert!(
        body.contains("clock_sync_info{daemon=\"chronyd\",reference=\"\"} 1"),
        "{body}"
    );
    // Offsets still say who is right: the skewed server is 11.5 s ahead.
    assert!((peer_value(&body, "clock_peer_offset_seconds", b) - 11.5).abs() < 0.01);
    assert!(peer_value(&body, "clock_peer_offset_seconds", a).abs() < 0.01);
    // Over UDP: no delay (NTP_DATA is socket-only), jitter from sourcestats,
    // and serverstats' refusal does not make chronyd "down" or the scrape fail.
    assert!(
        sample(
            &body,
            &format!("clock_peer_delay_seconds{{daemon=\"chronyd\",peer=\"{b}\"}}")
        )
        .is_none()
    );
    assert!(peer_value(&body, "clock_peer_jitter_seconds", b) >= 0.0);
    assert!(
        body.contains("clock_daemon_up{daemon=\"chronyd\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("clock_scrape_collector_success{collector=\"chrony\"} 1"),
        "{body}"
    );
    assert!(
        exporter
            .proc
            .log_text()
            .contains("serverstats needs the unix socket: set --collector.chrony.socket"),
        "{}",
        exporter.proc.log_text()
    );
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn following_a_wrong_source_peer_offsets_stay_true_to_the_system_clock() {
    // Only the skewed server may be selected; the honest one is watched.
    let lab = chrony_lab(false).noselect("a").build();
    let [a, b] = ["a", "b"].map(|n| lab.addr(n));
    let exporter = lab.exporter(&[]);
    let measured = |body: &str, peer: Ipv4Addr| {
        sample(
            body,
            &format!("clock_chrony_peer_measured_offset_seconds{{peer=\"{peer}\"}}"),
        )
    };
    // Wait until chronyd follows the skewed server and has measured the
    // honest one since: on chronyd's (virtually corrected) timescale the
    // honest server now looks 11.5 s behind.
    let body = wait_for(
        "chronyd following the skewed server",
        Duration::from_secs(40),
        || {
            let body = exporter.scrape();
            (is_state(&body, b, "selected")
                && measured(&body, a).is_some_and(|m| (m + 11.5).abs() < 0.01))
            .then_some(body)
        },
    );
    let sources = lab.chronyc(&["-n", "sources"]);
    let tracking = lab.chronyc(&["-n", "tracking"]);
    eprintln!("{tracking}\n{sources}");
    let honest = source_lines(&sources)
        .into_iter()
        .find(|s| s.name == a.to_string())
        .expect("honest line");
    // chronyc agrees: +11.5 s (its sign) in brackets and before them.
    assert!((honest.measured.value - 11.5).abs() < 0.1, "{sources}");
    assert!((honest.adjusted.value - 11.5).abs() < 0.1, "{sources}");
    // "System time     : 11.499999046 seconds slow of NTP time": compared as
    // a number, since chronyc prints it to the nanosecond.
    let system_time = tracking
        .lines()
        .find_map(|l| l.strip_prefix("System time     : "))
        .expect("System time line");
    let slow: f64 = system_time
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .expect("System time value");
    assert!((slow - 11.5).abs() < 0.01, "{tracking}");
    assert!(
        system_time.ends_with("seconds slow of NTP time"),
        "{tracking}"
    );
    // The system clock is 11.5 s behind chronyd's reference...
    let correction =
        sample(&body, "clock_sync_offset_seconds{daemon=\"chronyd\"}").expect("sync offset");
    assert!((correction - 11.5).abs() < 0.01, "{correction}");
    // ...and clock_peer_offset_seconds is the truth about the system clock,
    // which every namespace shares: the honest server 0, the skewed +11.5 s.
    let off_a = peer_value(&body, "clock_peer_offset_seconds", a);
    let off_b = peer_value(&body, "clock_peer_offset_seconds", b);
    eprintln!(
        "honest: clock_peer_offset_seconds {off_a}, measured (chronyd's timescale) {:?}; skewed: {off_b}",
        measured(&body, a)
    );
    assert!(off_a.abs() < 0.001, "honest {off_a}\n{body}");
    assert!((off_b - 11.5).abs() < 0.001, "skewed {off_b}\n{body}");
    assert!(
        is_state(&body, a, "rejected"),
        "noselect is '?' with samples: rejected"
    );
}

/// The serverstats counter of a scrape.
fn requests(body: &str) -> f64 {
    sample(body, "clock_server_requests_total{daemon=\"chronyd\"}")
        .unwrap_or_else(|| panic!("requests\n{body}"))
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn serverstats_over_the_socket_count_client_requests_and_reset_on_restart() {
    // The host under test is the server; its client is downstream.
    let mut lab = serving_chronyd().downstream("clients").build();
    let socket = lab.chronyd().socket().display().to_string();
    let exporter = lab.exporter(&["--collector.chrony.socket", &socket]);
    let first = requests(&exporter.scrape());
    let client = lab.start_chronyd(
        "clients",
        &format!("server {CLIENT} {}\n", Daemon::Chronyd.poll_options()),
    );
    let counted = wait_for(
        "the server counts the client's requests",
        Duration::from_secs(20),
        || {
            let n = requests(&exporter.scrape());
            (n >= first + 4.0).then_some(n)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    let body = exporter.scrape();
    let later = requests(&body);
    assert!(later > counted, "{first} → {counted} → {later}");
    // chronyc sees the same count (the exporter's scrape came first).
    let stats = lab.chronyc(&["serverstats"]);
    let theirs: f64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("NTP packets received       : "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(
        theirs >= later && theirs <= later + 4.0,
        "chronyc {theirs}, exporter {later}"
    );
    assert!(
        sample(&body, "clock_chrony_server_command_packets_received_total")
            .is_some_and(|c| c > 0.0)
    );
    assert!(
        body.contains("clock_scrape_collector_success{collector=\"chrony\"} 1"),
        "{body}"
    );
    // chronyd restarts (same config, same socket path, a new socket file):
    // the published counters start again from chronyd's. The client stops
    // first, so the new count stays below the old one.
    drop(client);
    lab.restart_chronyd();
    let after = wait_for(
        "the restarted server answers",
        Duration::from_secs(20),
        || {
            let body = exporter.scrape();
            body.contains("clock_daemon_up{daemon=\"chronyd\"} 1")
                .then(|| requests(&body))
        },
    );
    assert!(after < later, "counters did not reset: {later} → {after}");
    assert!(
        exporter.proc.log_text().contains("chronyd restarted"),
        "{}",
        exporter.proc.log_text()
    );
    assert_no_client_sockets(lab.chronyd().dir.path());
}

/// The exporter's client sockets never stay behind in chronyd's directory.
fn assert_no_client_sockets(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with("clock_exporter."))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

/// Scrapes and returns the body and how long it took.
fn timed_scrape(exporter: &Exporter) -> (String, Duration) {
    let t = Instant::now();
    let body = exporter.scrape();
    (body, t.elapsed())
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn without_chronyd_scrapes_stay_fast_and_up_follows_presence() {
    // No chronyd at all: nothing published about it, nothing failed.
    let empty = Lab::builder().build();
    let exporter = empty.exporter(&[]);
    for _ in 0..3 {
        let (body, took) = timed_scrape(&exporter);
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert!(
            !body.contains("clock_daemon_up{daemon=\"chronyd\"}"),
            "{body}"
        );
        assert!(
            body.contains("clock_scrape_collector_success{collector=\"chrony\"} 1"),
            "{body}"
        );
    }
    drop(exporter);
    // Configured explicitly: up is published, 0.
    let exporter = empty.exporter(&["--collector.chrony.address", "127.0.0.1:323"]);
    let (body, took) = timed_scrape(&exporter);
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert!(
        body.contains("clock_daemon_up{daemon=\"chronyd\"} 0"),
        "{body}"
    );
    drop(exporter);

    // chronyd seen, then killed: up 0, and scrapes stay fast.
    let mut lab = serving_chronyd().build();
    let exporter = lab.exporter(&["--collector.chrony.timeout", "2s"]);
    let (body, _) = timed_scrape(&exporter);
    assert!(
        body.contains("clock_daemon_up{daemon=\"chronyd\"} 1"),
        "{body}"
    );
    lab.chronyd_mut().proc.kill();
    for _ in 0..3 {
        let (body, took) = timed_scrape(&exporter);
        assert!(took < Duration::from_millis(500), "{took:?}");
        assert!(
            body.contains("clock_daemon_up{daemon=\"chronyd\"} 0"),
            "{body}"
        );
    }
    assert!(
        exporter
            .proc
            .log_text()
            .contains("time daemon stopped answering"),
        "{}",
        exporter.proc.log_text()
    );
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn without_permission_on_the_socket_the_log_says_so_and_udp_still_answers() {
    // chronyd's private directory is root's, mode 0700: nobody may not use it.
    let lab = serving_chronyd().build();
    let ns = lab.client();
    let socket = lab.chronyd().socket().display().to_string();
    let dir = lab::TempDir::new("exporter-nobody");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let mut cmd = ns.command("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(lab::exporter_bin())
        .args([
            "--web.listen-address",
            "127.0.0.1:9857",
            "--collector.chrony.socket",
            &socket,
        ]);
    let mut proc = lab::Proc::spawn(
        cmd,
        dir.path().join("exporter.log"),
        "clock_exporter as nobody",
    );
    let body = wait_for("the exporter answers", Duration::from_secs(10), || {
        proc.assert_running();
        ns.enter(|| lab::http_get("127.0.0.1:9857", "/metrics", None).ok())
            .map(|(_, b)| b)
    });
    // UDP still answers the open commands; the socket failure fails the collector.
    assert!(
        body.contains("clock_daemon_up{daemon=\"chronyd\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("clock_sync_stratum{daemon=\"chronyd\"} 8"),
        "{body}"
    );
    assert!(
        body.contains("clock_scrape_collector_success{collector=\"chrony\"} 0"),
        "{body}"
    );
    let log = proc.log_text();
    eprintln!("{log}");
    assert!(log.contains("Permission denied"), "{log}");
    // The socket exists; what fails is reaching it, and the text says so.
    assert!(log.contains("cannot reach unix "), "{log}");
    assert!(log.contains("write access to"), "{log}");
    assert!(log.contains("falling back to UDP"), "{log}");
    drop(proc);
    assert_no_client_sockets(lab.chronyd().dir.path());
}

/// One source's row of `chronyc -N authdata`: mode, key id, type, key
/// length, NTS-KE attempts, NAK, cookies, cookie length (the `Last` column
/// is an age that moves between the two reads, and is left out).
fn authdata_row(text: &str, peer: Ipv4Addr) -> Option<[String; 8]> {
    let line = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&peer.to_string()))?;
    let f: Vec<&str> = line.split_whitespace().collect();
    (f.len() == 10).then(|| [1, 2, 3, 4, 6, 7, 8, 9].map(|i| f[i].to_owned()))
}

/// The same row as the exporter publishes it for `peer`.
fn exported_authdata_row(body: &str, peer: Ipv4Addr) -> Option<[String; 8]> {
    let v = |m: &str| sample(body, &format!("{m}{{peer=\"{peer}\"}}")).map(|v| v.to_string());
    let mode = ["none", "symmetric_key", "nts"].into_iter().find(|m| {
        sample(
            body,
            &format!(
                "clock_peer_authentication_info{{daemon=\"chronyd\",peer=\"{peer}\",mode=\"{m}\"}}"
            ),
        ) == Some(1.0)
    })?;
    let chronyc_mode = match mode {
        "none" => "-",
        "symmetric_key" => "SK",
        _ => "NTS",
    };
    // chronyc prints zeros where the exporter publishes nothing: no key
    // without authentication, no NTS state without NTS.
    let only = |yes: bool, m: &str| if yes { v(m) } else { Some("0".to_owned()) };
    let key = |m: &str| only(mode != "none", m);
    let nts = |m: &str| only(mode == "nts", m);
    Some([
        chronyc_mode.to_owned(),
        key("clock_chrony_peer_auth_key_id")?,
        key("clock_chrony_peer_auth_key_type")?,
        key("clock_chrony_peer_auth_key_length_bits")?,
        nts("clock_chrony_peer_nts_ke_attempts")?,
        nts("clock_chrony_peer_nts_nak")?,
        nts("clock_chrony_peer_nts_cookies")?,
        nts("clock_chrony_peer_nts_cookie_length_bytes")?,
    ])
}

fn authenticated(body: &str, peer: Ipv4Addr) -> Option<f64> {
    sample(
        body,
        &format!("clock_peer_authenticated{{daemon=\"chronyd\",peer=\"{peer}\"}}"),
    )
}

/// Waits until the exporter's authentication of every peer equals
/// `chronyc -N authdata`'s, read just before and just after the scrape
/// (so that a row that moved in between is read again); the agreed page.
fn agreeing_with_authdata(lab: &Lab, exporter: &Exporter, peers: &[Ipv4Addr]) -> String {
    wait_for(
        "the exporter to agree with chronyc authdata",
        Duration::from_secs(20),
        || {
            let before = lab.chronyc(&["-N", "authdata"]);
            let body = exporter.scrape();
            let after = lab.chronyc(&["-N", "authdata"]);
            let agree = peers.iter().all(|p| {
                let ours = exported_authdata_row(&body, *p);
                ours.is_some()
                    && ours == authdata_row(&before, *p)
                    && ours == authdata_row(&after, *p)
            });
            if !agree {
                eprintln!("not yet:\n{before}");
            }
            agree.then_some(body)
        },
    )
}

/// NTS: a chronyd server with a certificate of the lab's CA (`a`), one whose
/// certificate comes from a CA the client does not trust (`b`), and a plain
/// server (`c`). The exporter on the client's socket says what `chronyc -N
/// authdata` says, row for row; `a` is authenticated, `b` (key
/// establishment failing: no cookies) and `c` (none) are not. Then `a`'s
/// server restarts without NTS (its key-establishment port closed, its
/// cookies worthless): `a` is reported as no longer authenticated, and
/// chronyd keeps trying key establishment.
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn nts_sources_are_reported_as_chronyc_authdata_shows_them_and_a_broken_one_fails() {
    let mut lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .honest("b")
        .honest("c")
        .nts("a")
        .nts_untrusted("b")
        .build();
    let [a, b, c] = ["a", "b", "c"].map(|n| lab.addr(n));
    let socket = lab.chronyd().socket().display().to_string();
    let exporter = lab.exporter(&["--collector.chrony.socket", &socket]);
    wait_for("a authenticated over NTS", Duration::from_secs(40), || {
        (authenticated(&exporter.scrape(), a) == Some(1.0)).then_some(())
    });
    let body = agreeing_with_authdata(&lab, &exporter, &[a, b, c]);
    let info = |p: Ipv4Addr, mode: &str| {
        sample(
            &body,
            &format!(
                "clock_peer_authentication_info{{daemon=\"chronyd\",peer=\"{p}\",mode=\"{mode}\"}}"
            ),
        )
    };
    assert_eq!(info(a, "nts"), Some(1.0), "{body}");
    assert_eq!(info(b, "nts"), Some(1.0), "{body}");
    assert_eq!(info(c, "none"), Some(1.0), "{body}");
    assert_eq!(authenticated(&body, b), Some(0.0), "{body}");
    assert_eq!(authenticated(&body, c), Some(0.0), "{body}");
    let v = |m: &str, p: Ipv4Addr| sample(&body, &format!("{m}{{peer=\"{p}\"}}"));
    // a: keys of a session that succeeded, cookies to ask with.
    assert!(v("clock_chrony_peer_nts_cookies", a) > Some(0.0), "{body}");
    assert!(
        v("clock_chrony_peer_auth_key_length_bits", a) > Some(0.0),
        "{body}"
    );
    assert!(
        v("clock_chrony_peer_nts_last_ke_age_seconds", a).is_some(),
        "{body}"
    );
    // b: never established; chronyd keeps trying.
    assert_eq!(v("clock_chrony_peer_nts_cookies", b), Some(0.0), "{body}");
    assert!(
        v("clock_chrony_peer_nts_ke_attempts", b) >= Some(1.0),
        "{body}"
    );
    assert_eq!(
        v("clock_chrony_peer_nts_last_ke_age_seconds", b),
        None,
        "{body}"
    );
    // c: no authentication, so no key or NTS series.
    assert_eq!(v("clock_chrony_peer_auth_key_id", c), None, "{body}");
    assert_eq!(v("clock_chrony_peer_nts_cookies", c), None, "{body}");
    // The AUTH_DATA replies themselves, decoded as the collector decodes
    // them (CLOCK_CAPTURE_FIXTURES=auth_data.nts writes them as fixtures).
    let mut cap = Capture {
        write: std::env::var("CLOCK_CAPTURE_FIXTURES").ok(),
        sequence: 0x100,
    };
    let sock = lab.chronyd().socket();
    let unix = |bytes: Vec<u8>| exchange_unix(&sock, &bytes);
    let Ok(Reply::AuthData(ours)) = cap.take("auth_data.nts", Request::AuthData(a.into()), unix)
    else {
        panic!("authdata of {a}");
    };
    assert_eq!(ours.mode, AuthMode::Nts);
    assert_eq!((ours.key_type, ours.key_length), (15, 256), "{ours:?}");
    assert!(
        ours.cookies > 0 && ours.cookie_length > 0 && !ours.nak,
        "{ours:?}"
    );
    assert!(ours.last_ke_ago.is_some(), "{ours:?}");
    let Ok(Reply::AuthData(theirs)) =
        cap.take("auth_data.nts_untrusted", Request::AuthData(b.into()), unix)
    else {
        panic!("authdata of {b}");
    };
    assert_eq!(theirs.mode, AuthMode::Nts);
    assert_eq!(
        (theirs.cookies, theirs.key_length, theirs.last_ke_ago),
        (0, 0, None)
    );
    assert!(theirs.ke_attempts >= 1, "{theirs:?}");

    lab.reconfigure_server("a", &lab::honest_server_conf());
    let body = wait_for("a no longer authenticated", Duration::from_secs(60), || {
        let body = exporter.scrape();
        (authenticated(&body, a) == Some(0.0)).then_some(body)
    });
    assert_eq!(info(a, "nts"), Some(1.0), "{body}");
    eprintln!("{}", lab.chronyc(&["-N", "authdata"]));
    agreeing_with_authdata(&lab, &exporter, &[a, b, c]);
    // Its cookies run out and key establishment is refused from then on.
    wait_for(
        "a's cookies gone, key establishment failing",
        Duration::from_secs(60),
        || {
            let body = exporter.scrape();
            let v = |m: &str| sample(&body, &format!("{m}{{peer=\"{a}\"}}"));
            (v("clock_chrony_peer_nts_cookies") == Some(0.0)
                && v("clock_chrony_peer_nts_ke_attempts") >= Some(1.0))
            .then_some(())
        },
    );
}

/// Symmetric keys under chronyd: `a` polled with the key it holds, `b` with
/// a wrong value under its key id. Both are `SK` in `chronyc -N authdata`
/// and the exporter says so row for row; `a` is authenticated, `b`, whose
/// replies fail chronyd's authentication test, is not.
#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn symmetric_keys_right_and_wrong_agree_with_chronyc_authdata() {
    let lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .honest("b")
        .keyed("a", true)
        .keyed("b", false)
        .build();
    let [a, b] = ["a", "b"].map(|n| lab.addr(n));
    let socket = lab.chronyd().socket().display().to_string();
    let exporter = lab.exporter(&["--collector.chrony.socket", &socket]);
    wait_for(
        "a authenticated with its key",
        Duration::from_secs(40),
        || (authenticated(&exporter.scrape(), a) == Some(1.0)).then_some(()),
    );
    let body = agreeing_with_authdata(&lab, &exporter, &[a, b]);
    for p in [a, b] {
        assert_eq!(
            sample(
                &body,
                &format!(
                    "clock_peer_authentication_info{{daemon=\"chronyd\",peer=\"{p}\",mode=\"symmetric_key\"}}"
                )
            ),
            Some(1.0),
            "{body}"
        );
        // SHA1: 160 bits.
        assert_eq!(
            sample(
                &body,
                &format!("clock_chrony_peer_auth_key_length_bits{{peer=\"{p}\"}}")
            ),
            Some(160.0),
            "{body}"
        );
    }
    assert_eq!(authenticated(&body, b), Some(0.0), "{body}");
}
