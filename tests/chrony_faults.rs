//! The chrony collector against responders that are not a healthy chronyd:
//! garbage, short replies, wrong sequence numbers, silence. Each gives a
//! clear error, no panic, and a collection within the collector's timeout.
//! What does not answer as chronyd is `clock_daemon_up 0` and skipped by the
//! next scrape; a chronyd whose answer is broken is up, and failing. Runs
//! without root: the responder is a UDP socket on loopback in this process.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clock_exporter::testing::collector::chrony;
use clock_exporter::testing::collector::{CollectError, Collected, Collector};
use clock_exporter::testing::metrics::find;
use clock_exporter::testing::model;

const TIMEOUT: Duration = Duration::from_millis(400);

/// A responder that answers every datagram with `answer(request)`, or not
/// at all when it returns `None`.
fn responder(answer: fn(&[u8]) -> Option<Vec<u8>>) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = s.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            if let Some(reply) = answer(&buf[..n]) {
                let _ = s.send_to(&reply, from);
            }
        }
    });
    addr
}

/// A well-formed TRACKING reply header for a request, with `sequence_delta`
/// added to its sequence number, and zero data.
fn tracking_reply(request: &[u8], sequence_delta: u32) -> Vec<u8> {
    let mut r = vec![0u8; 104];
    r[0] = 6;
    r[1] = 2;
    r[4..6].copy_from_slice(&request[4..6]);
    r[6..8].copy_from_slice(&5u16.to_be_bytes());
    let seq = u32::from_be_bytes([request[8], request[9], request[10], request[11]]);
    r[16..20].copy_from_slice(&seq.wrapping_add(sequence_delta).to_be_bytes());
    r
}

/// Two scrapes of a collector configured for `addr`: the first, how long
/// it took, and the second.
fn collect(addr: SocketAddr) -> (Collected, Duration, Collected) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let chrony = Arc::new(chrony::collector(addr, None, TIMEOUT, true));
    let start = Instant::now();
    let first = rt.block_on(chrony.clone().collect());
    let took = start.elapsed();
    let second = rt.block_on(chrony.collect());
    (first, took, second)
}

/// What answered is not chronyd: the next scrape does not wait at all,
/// reports it down and says it skipped it, without failing.
fn skipped_next(addr: SocketAddr, second: &Collected) {
    assert_eq!(up(second), Some(0.0));
    assert!(!second.errors.iter().any(CollectError::is_failure));
    assert_eq!(
        message(second),
        format!(
            "no data: chronyd at udp {addr} did not answer; skipped until a background probe finds it"
        )
    );
}

fn up(c: &Collected) -> Option<f64> {
    find(&c.families, &model::DAEMON_UP).and_then(|f| f.value(&["chronyd"]))
}

fn message(c: &Collected) -> String {
    c.errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn garbage_is_a_protocol_error_at_once() {
    let addr = responder(|_| Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec()));
    let (c, took, second) = collect(addr);
    assert!(took < TIMEOUT, "{took:?}");
    assert_eq!(up(&c), Some(0.0));
    let m = message(&c);
    assert!(m.contains("not a chrony command reply"), "{m}");
    assert!(c.errors.iter().any(CollectError::is_failure));
    skipped_next(addr, &second);
}

#[test]
fn a_short_reply_is_a_protocol_error() {
    let addr = responder(|req| Some(tracking_reply(req, 0)[..60].to_vec()));
    let (c, took, second) = collect(addr);
    assert!(took < TIMEOUT, "{took:?}");
    let m = message(&c);
    assert!(m.contains("truncated: 32 bytes, need 76"), "{m}");
    // A reply to our request, in chronyd's header: chronyd answered, badly.
    // It is asked again next time, and fails again.
    assert!(c.errors.iter().any(CollectError::is_failure));
    assert_eq!(up(&c), Some(1.0));
    assert_eq!(message(&second), m);
    assert_eq!(up(&second), Some(1.0));
}

#[test]
fn replies_with_wrong_sequence_numbers_are_ignored_until_the_timeout() {
    let addr = responder(|req| Some(tracking_reply(req, 1)));
    let (c, took, second) = collect(addr);
    assert!(took >= TIMEOUT && took < TIMEOUT * 2, "{took:?}");
    let m = message(&c);
    assert!(m.contains("no reply to tracking"), "{m}");
    assert!(
        m.contains("replies with other sequence numbers ignored"),
        "{m}"
    );
    assert_eq!(up(&c), Some(0.0));
    assert!(!c.errors.iter().any(CollectError::is_failure));
    skipped_next(addr, &second);
}

#[test]
fn silence_times_out_within_the_timeout() {
    let addr = responder(|_| None);
    let (c, took, second) = collect(addr);
    assert!(took >= TIMEOUT && took < TIMEOUT * 2, "{took:?}");
    let m = message(&c);
    assert!(m.contains("no reply to tracking"), "{m}");
    assert_eq!(up(&c), Some(0.0));
    // Silence is absence, as for ntpd: no data, not a failure.
    assert!(!c.errors.iter().any(CollectError::is_failure));
    skipped_next(addr, &second);
}
