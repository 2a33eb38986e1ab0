//! The collector and the probe against responders on loopback, each
//! wrong in its own way.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;

use super::probe::{self, Outcome, Plan};
use super::*;
use crate::metrics::find;
use crate::proto::ntp::{Header, NtpShort, NtpTimestamp, RefId};

/// How a test responder answers.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// The local time shifted by this many seconds.
    Skewed(f64),
    /// A kiss-o'-death with this code.
    Kiss([u8; 4]),
    /// A good time, but echoing a wrong origin timestamp; then nothing.
    WrongOrigin,
    /// First a forgery (wrong origin), then the real answer.
    ForgeryFirst(f64),
    /// Unsynchronised: LI 3, stratum 16.
    Unsynchronised,
    /// Never answers.
    Silent,
}

/// A responder: its address, and the source ports requests came from.
struct Responder {
    address: SocketAddr,
    ports: Arc<Mutex<Vec<u16>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn responder(b: Behaviour) -> Responder {
    let sock = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = sock.local_addr().expect("address");
    let ports = Arc::new(Mutex::new(Vec::new()));
    let seen = ports.clone();
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                continue;
            };
            seen.lock().expect("ports").push(from.port());
            let Ok(req) = Header::parse(&buf[..n]) else {
                continue;
            };
            let now = NtpTimestamp::from_system_time(SystemTime::now());
            let good = |shift: f64| Header {
                leap: 0,
                version: 4,
                mode: 4,
                stratum: 3,
                poll: 0,
                precision: -20,
                root_delay: NtpShort::from_seconds(0.010),
                root_dispersion: NtpShort::from_seconds(0.020),
                reference_id: RefId([192, 0, 2, 9]),
                reference: now.shifted(shift - 10.0),
                origin: req.transmit,
                receive: now.shifted(shift),
                transmit: now.shifted(shift),
            };
            let replies = match b {
                Behaviour::Skewed(s) => vec![good(s)],
                Behaviour::Kiss(code) => vec![Header {
                    stratum: 0,
                    reference_id: RefId(code),
                    ..good(0.0)
                }],
                Behaviour::WrongOrigin => vec![Header {
                    origin: NtpTimestamp(req.transmit.0.wrapping_add(1)),
                    ..good(0.0)
                }],
                Behaviour::ForgeryFirst(s) => vec![
                    Header {
                        origin: NtpTimestamp(!req.transmit.0),
                        ..good(1000.0)
                    },
                    good(s),
                ],
                Behaviour::Unsynchronised => vec![Header {
                    leap: 3,
                    stratum: 16,
                    ..good(0.0)
                }],
                Behaviour::Silent => vec![],
            };
            for r in replies {
                let _ = sock.send_to(&r.encode(), from).await;
            }
        }
    });
    Responder {
        address,
        ports,
        task,
    }
}

fn config(servers: Vec<String>) -> Config {
    Config {
        servers,
        timeout: Duration::from_millis(300),
        interval: Duration::from_secs(2),
        samples: 4,
        all_addresses: false,
    }
}

fn value(families: &[Family], desc: &crate::metrics::Desc, labels: &[&str]) -> Option<f64> {
    find(families, desc)?.value(labels)
}

#[tokio::test]
async fn an_honest_and_a_skewed_server_and_their_theta_signs() {
    let ahead = responder(Behaviour::Skewed(11.5)).await;
    let behind = responder(Behaviour::Skewed(-0.25)).await;
    let (a, b) = (ahead.address.to_string(), behind.address.to_string());
    let c = Arc::new(SntpCollector::new(config(vec![a.clone(), b.clone()])).expect("config"));
    let got = c.clone().collect().await;
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    crate::collector::assert_declared(&REGISTRATION, &got.families);
    let f = &got.families;
    let off = value(f, &probe::OFFSET, &[&a, &a]).expect("offset");
    assert!((off - 11.5).abs() < 0.005, "θ {off}");
    let off = value(f, &probe::OFFSET, &[&b, &b]).expect("offset");
    assert!((off + 0.25).abs() < 0.005, "θ {off}");
    assert_eq!(value(f, &probe::UP, &[&a, &a]), Some(1.0));
    assert_eq!(value(f, &probe::STRATUM, &[&a, &a]), Some(3.0));
    assert_eq!(value(f, &probe::SYNCHRONIZED, &[&a, &a]), Some(1.0));
    assert_eq!(
        value(f, &probe::REFERENCE, &[&a, &a, "192.0.2.9"]),
        Some(1.0)
    );
    let delay = value(f, &probe::DELAY, &[&a, &a]).expect("delay");
    let dist = value(f, &probe::ROOT_DISTANCE, &[&a, &a]).expect("distance");
    // 10 ms / 2 + 20 ms + δ/2 + 2^-20 s.
    assert!(
        (dist - (0.025 + delay / 2.0 + 2f64.powi(-20))).abs() < 1e-4,
        "{dist}"
    );
    assert_eq!(value(f, &REQUESTS, &[&a, &a]), Some(1.0));
    assert!(find(f, &probe::FAILURE).is_none());
}

#[tokio::test]
async fn requests_are_held_to_the_interval_whatever_the_scrape_rate() {
    let r = responder(Behaviour::Skewed(0.0)).await;
    let a = r.address.to_string();
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    for _ in 0..5 {
        let got = c.clone().collect().await;
        assert_eq!(value(&got.families, &REQUESTS, &[&a, &a]), Some(1.0));
        assert_eq!(value(&got.families, &probe::UP, &[&a, &a]), Some(1.0));
    }
    assert_eq!(
        r.ports.lock().expect("ports").len(),
        1,
        "one request for five scrapes"
    );
}

#[tokio::test]
async fn a_silent_server_fails_within_the_timeout_and_publishes_no_offset() {
    let r = responder(Behaviour::Silent).await;
    let a = r.address.to_string();
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    let start = std::time::Instant::now();
    let got = c.clone().collect().await;
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    let f = &got.families;
    assert_eq!(value(f, &probe::UP, &[&a, &a]), Some(0.0));
    assert_eq!(value(f, &probe::FAILURE, &[&a, &a, "no_reply"]), Some(1.0));
    assert!(find(f, &probe::OFFSET).is_none());
}

#[tokio::test]
async fn a_closed_port_is_refused() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind")
        .port();
    let a = format!("127.0.0.1:{port}");
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    let got = c.collect().await;
    assert_eq!(
        value(&got.families, &probe::FAILURE, &[&a, &a, "refused"]),
        Some(1.0)
    );
}

#[tokio::test]
async fn a_kiss_is_reported_and_holds_requests_back() {
    let r = responder(Behaviour::Kiss(*b"RATE")).await;
    let a = r.address.to_string();
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    let got = c.clone().collect().await;
    let f = &got.families;
    assert_eq!(value(f, &probe::KISS, &[&a, &a, "RATE"]), Some(1.0));
    assert_eq!(value(f, &probe::FAILURE, &[&a, &a, "kiss"]), Some(1.0));
    assert_eq!(value(f, &probe::UP, &[&a, &a]), Some(0.0));
    assert!(find(f, &probe::OFFSET).is_none());
    let due = c.state.lock().expect("state")[&a].due.expect("due");
    let held = due.saturating_duration_since(Instant::now());
    assert!(
        held > Duration::from_secs(15),
        "held back {held:?}, not 8 intervals"
    );
}

#[tokio::test]
async fn a_wrong_origin_is_discarded_and_counted() {
    let r = responder(Behaviour::WrongOrigin).await;
    let a = r.address.to_string();
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    let got = c.collect().await;
    let f = &got.families;
    assert_eq!(value(f, &probe::FAILURE, &[&a, &a, "no_reply"]), Some(1.0));
    assert_eq!(value(f, &DISCARDED, &[&a, &a]), Some(1.0));
    assert!(find(f, &probe::OFFSET).is_none());
}

#[tokio::test]
async fn a_forgery_before_the_answer_does_not_win() {
    let r = responder(Behaviour::ForgeryFirst(0.5)).await;
    let a = r.address.to_string();
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    let got = c.collect().await;
    let f = &got.families;
    let off = value(f, &probe::OFFSET, &[&a, &a]).expect("offset");
    assert!(
        (off - 0.5).abs() < 0.005,
        "θ {off}: the forgery said +1000 s"
    );
    assert_eq!(value(f, &DISCARDED, &[&a, &a]), Some(1.0));
}

#[tokio::test]
async fn an_unsynchronised_server_is_measured_and_flagged() {
    let r = responder(Behaviour::Unsynchronised).await;
    let a = r.address.to_string();
    let c = Arc::new(SntpCollector::new(config(vec![a.clone()])).expect("config"));
    let got = c.collect().await;
    let f = &got.families;
    assert_eq!(value(f, &probe::UP, &[&a, &a]), Some(1.0));
    assert_eq!(value(f, &probe::SYNCHRONIZED, &[&a, &a]), Some(0.0));
    assert_eq!(value(f, &probe::LEAP, &[&a, &a]), Some(3.0));
    assert_eq!(value(f, &probe::STRATUM, &[&a, &a]), Some(16.0));
}

#[tokio::test]
async fn a_probe_of_several_samples_spaces_them_and_uses_new_ports() {
    let r = responder(Behaviour::Skewed(2.0)).await;
    let plan = Plan {
        samples: 3,
        spacing: probe::MIN_SPACING,
        timeout: Duration::from_millis(300),
    };
    let start = Instant::now();
    let (p, discarded) =
        probe::probe_address("s", r.address, plan, start + Duration::from_secs(10)).await;
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!((p.samples, discarded), (3, 0));
    assert!(p.up());
    let best = p.best.expect("best");
    assert!((best.offset - 2.0).abs() < 0.005);
    let ports = r.ports.lock().expect("ports").clone();
    assert_eq!(ports.len(), 3);
    assert!(
        ports[0] != ports[1] || ports[1] != ports[2],
        "source ports {ports:?}"
    );
}

#[tokio::test]
async fn a_probe_sends_only_what_fits_before_its_deadline() {
    let r = responder(Behaviour::Skewed(0.0)).await;
    let plan = Plan {
        samples: 5,
        spacing: probe::MIN_SPACING,
        timeout: Duration::from_millis(300),
    };
    let start = Instant::now();
    let (p, _) = probe::probe_address("s", r.address, plan, start + Duration::from_secs(3)).await;
    assert!(start.elapsed() < Duration::from_secs(3));
    assert_eq!(
        p.samples, 2,
        "samples at 0 s and 2 s fit in 3 s, one at 4 s does not"
    );
}

#[tokio::test]
async fn a_kiss_ends_a_probe() {
    let r = responder(Behaviour::Kiss(*b"DENY")).await;
    let plan = Plan {
        samples: 3,
        spacing: probe::MIN_SPACING,
        timeout: Duration::from_millis(300),
    };
    let (p, _) = probe::probe_address(
        "s",
        r.address,
        plan,
        Instant::now() + Duration::from_secs(10),
    )
    .await;
    assert!(matches!(p.last, Some(Outcome::Kiss(_))));
    assert_eq!(
        r.ports.lock().expect("ports").len(),
        1,
        "nothing sent after DENY"
    );
}

#[test]
fn targets_split_and_hostile_ones_are_refused() {
    let ok = |t: &str, h: &str, p: u16| {
        assert_eq!(probe::split_target(t), Ok((h.to_owned(), p)), "{t}");
    };
    ok("ntp.example", "ntp.example", 123);
    ok("ntp.example:10123", "ntp.example", 10123);
    ok("192.0.2.1", "192.0.2.1", 123);
    ok("[2001:db8::1]:124", "2001:db8::1", 124);
    ok("[2001:db8::1]", "2001:db8::1", 123);
    ok("2001:db8::1", "2001:db8::1", 123);
    for bad in [
        "",
        "host:0",
        "host:65536",
        "host:",
        ":123",
        "[2001:db8::1",
        "[2001:db8::1]x",
        "[not-v6]:123",
        "2001:db8::1:123:zz",
        "a b",
        "host/path",
        "héllo",
        "x\n",
        // Found by the fuzzer: brackets inside a name.
        "t193[620a",
        "host]:123",
        "[2001:db8::1]:12[3",
    ] {
        assert!(probe::split_target(bad).is_err(), "{bad:?} accepted");
    }
    assert!(probe::split_target(&"a".repeat(probe::MAX_TARGET_BYTES + 1)).is_err());
    assert!(SntpCollector::new(config(vec!["bad target".into()])).is_err());
    let mut c = config(vec![]);
    c.interval = Duration::from_secs(1);
    assert!(SntpCollector::new(c).is_err(), "an interval under 2 s");
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_reported() {
    let s = "no-such-host.invalid".to_owned();
    let c = Arc::new(SntpCollector::new(config(vec![s.clone()])).expect("config"));
    let got = c.collect().await;
    assert_eq!(
        value(&got.families, &probe::FAILURE, &[&s, "", "resolve"]),
        Some(1.0)
    );
    assert_eq!(value(&got.families, &probe::UP, &[&s, ""]), Some(0.0));
}

#[tokio::test]
async fn no_servers_is_no_data() {
    let c = Arc::new(SntpCollector::new(config(vec![])).expect("config"));
    let got = c.collect().await;
    assert!(got.families.is_empty());
    assert!(matches!(&got.errors[..], [CollectError::NoData(_)]));
}
