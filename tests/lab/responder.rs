//! The test-only NTP responder: a server that is wrong on purpose, by an
//! offset (`skewed`) or a rate (`drifting`), with a clock of its own; or
//! one that answers badly ([`Answer`]): a kiss-o'-death, a reply with the
//! wrong origin timestamp, nothing at all.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use clock_exporter::testing::proto::ntp::{Header, NtpShort, NtpTimestamp, RefId};

use super::netns::{Netns, enter_netns};
use super::plan::RESPONDER_REFID;

/// How a responder answers a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A time, shifted as the responder is.
    Time,
    /// A kiss-o'-death (stratum 0) with this code, origin echoed.
    Kiss([u8; 4]),
    /// A time whose origin timestamp is not the request's transmit
    /// timestamp: what an off-path forger without the nonce sends.
    WrongOrigin,
    /// Nothing (the request is counted).
    Silent,
    /// A time, sent this long after the request came: a server this many
    /// seconds of round trip away, on a machine without netem.
    After(Duration),
    /// A time, with leap indicator 1: a leap second announced (a rogue
    /// flag: none is scheduled).
    Leap,
}

/// A deliberately wrong NTP server: answers mode-3 requests on UDP 123 of
/// its namespace with the local time shifted by `offset` seconds, plus
/// `drift_ratio · elapsed` (a clock running fast or slow). It is the seed's
/// vB, whose clock was 11.5 s off.
#[derive(Debug)]
pub struct SkewedServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub requests: Arc<AtomicUsize>,
    /// When each answered request came, and when its answer left.
    pub served: Arc<Mutex<Vec<(Instant, Instant)>>>,
}

impl SkewedServer {
    /// On UDP 123 of `bind`.
    pub fn start(ns: &Netns, bind: Ipv4Addr, offset: f64, drift_ratio: f64) -> SkewedServer {
        Self::start_on(ns, SocketAddrV4::new(bind, 123), offset, drift_ratio)
    }

    /// On `bind`, an address and port of `ns`.
    pub fn start_on(ns: &Netns, bind: SocketAddrV4, offset: f64, drift_ratio: f64) -> SkewedServer {
        Self::answering(ns, bind, offset, drift_ratio, Answer::Time)
    }

    /// On `bind`, answering as `answer` says.
    pub fn answering(
        ns: &Netns,
        bind: SocketAddrV4,
        offset: f64,
        drift_ratio: f64,
        answer: Answer,
    ) -> SkewedServer {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(Mutex::new(Vec::new()));
        let path = format!("/var/run/netns/{}", ns.name);
        let (stop2, req2, served2) = (stop.clone(), requests.clone(), served.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter_netns(&path);
            let sock = UdpSocket::bind(bind).expect("bind skewed server");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let _ = ready_tx.send(());
            let start = SystemTime::now();
            let mut buf = [0u8; 1024];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let came = Instant::now();
                let mut now = SystemTime::now();
                let Ok(req) = Header::parse(&buf[..n]) else {
                    continue;
                };
                if req.mode != 3 {
                    continue;
                }
                if let Answer::After(wait) = answer {
                    // As if each way took half the wait: the reply's
                    // timestamps are those of a server in the middle, and
                    // the prober measures a delay of `wait`, an offset of 0.
                    std::thread::sleep(wait);
                    now += wait / 2;
                }
                let elapsed = now.duration_since(start).unwrap_or_default().as_secs_f64();
                let shift = offset + drift_ratio * elapsed;
                let t = NtpTimestamp::from_system_time(now).shifted(shift);
                req2.fetch_add(1, Ordering::Relaxed);
                let mut resp = Header {
                    leap: 0,
                    version: req.version,
                    mode: 4,
                    stratum: 2,
                    poll: req.poll,
                    precision: -20,
                    root_delay: NtpShort::from_seconds(0.0005),
                    root_dispersion: NtpShort::from_seconds(0.0005),
                    reference_id: RefId(RESPONDER_REFID),
                    reference: t.shifted(-1.0),
                    origin: req.transmit,
                    receive: t,
                    transmit: t,
                };
                match answer {
                    Answer::Time | Answer::After(_) => {}
                    Answer::Leap => resp.leap = 1,
                    Answer::Kiss(code) => {
                        resp.stratum = 0;
                        resp.reference_id = RefId(code);
                    }
                    Answer::WrongOrigin => resp.origin.0 = resp.origin.0.wrapping_add(1),
                    Answer::Silent => continue,
                }
                let _ = sock.send_to(&resp.encode(), from);
                if let Ok(mut log) = served2.lock() {
                    log.push((came, Instant::now()));
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("skewed server started");
        SkewedServer {
            stop,
            thread: Some(thread),
            requests,
            served,
        }
    }
}

impl Drop for SkewedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
