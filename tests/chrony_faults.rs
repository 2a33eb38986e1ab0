//! The chrony collector against responders that are not a healthy chronyd:
//! garbage, short replies, wrong sequence numbers, silence. Each gives a
//! clear error, no panic, `clock_daemon_up 0`, and a collection within the
//! collector's timeout. Runs without root: the responder is a UDP socket on
//! loopback in this process.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clock_exporter::collector::chrony::Chrony;
use clock_exporter::collector::{Collected, Collector};
use clock_exporter::metrics::find;
use clock_exporter::model;

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

fn collect(addr: SocketAddr) -> (Collected, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let chrony = Arc::new(Chrony::new(addr, None, TIMEOUT, true));
    let start = Instant::now();
    let first = rt.block_on(chrony.clone().collect());
    let took = start.elapsed();
    // chronyd now counts as absent: the next scrape does not wait at all.
    let start = Instant::now();
    let second = rt.block_on(chrony.collect());
    assert!(start.elapsed() < Duration::from_millis(50));
    assert!(second.errors.is_empty());
    assert_eq!(up(&second), Some(0.0));
    (first, took)
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
    let (c, took) = collect(responder(|_| {
        Some(b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec())
    }));
    assert!(took < TIMEOUT, "{took:?}");
    assert_eq!(up(&c), Some(0.0));
    let m = message(&c);
    assert!(m.contains("not a chrony command reply"), "{m}");
    assert!(
        c.errors
            .iter()
            .any(clock_exporter::collector::CollectError::is_failure)
    );
}

#[test]
fn a_short_reply_is_a_protocol_error() {
    let (c, took) = collect(responder(|req| Some(tracking_reply(req, 0)[..60].to_vec())));
    assert!(took < TIMEOUT, "{took:?}");
    let m = message(&c);
    assert!(m.contains("truncated: 32 bytes, need 76"), "{m}");
    assert_eq!(up(&c), Some(0.0));
}

#[test]
fn replies_with_wrong_sequence_numbers_are_ignored_until_the_timeout() {
    let (c, took) = collect(responder(|req| Some(tracking_reply(req, 1))));
    assert!(took >= TIMEOUT && took < TIMEOUT * 2, "{took:?}");
    let m = message(&c);
    assert!(m.contains("no reply to tracking"), "{m}");
    assert!(
        m.contains("replies with other sequence numbers ignored"),
        "{m}"
    );
    assert_eq!(up(&c), Some(0.0));
}

#[test]
fn silence_times_out_within_the_timeout() {
    let (c, took) = collect(responder(|_| None));
    assert!(took >= TIMEOUT && took < TIMEOUT * 2, "{took:?}");
    let m = message(&c);
    assert!(m.contains("no reply to tracking"), "{m}");
    assert_eq!(up(&c), Some(0.0));
}
