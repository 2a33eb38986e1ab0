//! `/probe` over HTTP against SNTP responders on loopback: off by default,
//! the allow-list (addresses and ports) enforced before any packet goes
//! out, θ's sign, Prometheus' scrape timeout honoured, the concurrency
//! bound, hostile queries.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use clock_exporter::testing::Scraper;
use clock_exporter::testing::http::{self, App, Net, ProbeConfig, Security, WebConfig};
use clock_exporter::testing::proto::ntp::{Header, NtpShort, NtpTimestamp, RefId};

fn probe_net(s: &str) -> Net {
    Net::parse(s).expect("address block")
}

/// A loopback SNTP server, `offset` seconds ahead, or silent.
struct Responder {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Responder {
    fn start(offset: Option<f64>) -> Responder {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = sock.local_addr().expect("addr");
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            while !s.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                r.fetch_add(1, Ordering::SeqCst);
                let (Some(offset), Ok(req)) = (offset, Header::parse(&buf[..n])) else {
                    continue;
                };
                let t = NtpTimestamp::from_system_time(SystemTime::now()).shifted(offset);
                let resp = Header {
                    version: 4,
                    mode: 4,
                    stratum: 2,
                    precision: -20,
                    root_delay: NtpShort::from_seconds(0.001),
                    root_dispersion: NtpShort::from_seconds(0.001),
                    reference_id: RefId([192, 0, 2, 1]),
                    reference: t,
                    origin: req.transmit,
                    receive: t,
                    transmit: t,
                    ..Header::default()
                };
                let _ = sock.send_to(&resp.encode(), from);
            }
        });
        Responder {
            addr,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Server {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(probe: ProbeConfig) -> Server {
    let scraper = Arc::new(Scraper::new(Vec::new(), Duration::from_secs(5)));
    let app = App::new(
        scraper,
        WebConfig {
            telemetry_path: "/metrics".into(),
            max_requests: 4,
            max_requests_wait: Duration::ZERO,
            max_connections: 64,
            read_header_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(1),
            probe,
            security: Arc::new(Security::off()),
        },
    );
    let listeners = http::bind(&["127.0.0.1:0".parse().expect("addr")])
        .await
        .expect("bind");
    let addr = listeners[0].local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(http::serve(listeners, app, async {
        let _ = rx.await;
    }));
    Server { addr, _stop: tx }
}

fn allowing(ports: &[u16]) -> ProbeConfig {
    ProbeConfig {
        allow: vec![probe_net("127.0.0.0/8")],
        ports: ports.to_vec(),
        max_concurrent: 8,
        timeout: Duration::from_secs(5),
        samples: 1,
        exchange_timeout: Duration::from_millis(500),
    }
}

/// `GET path` with extra header lines; the status and the body.
async fn get(addr: SocketAddr, path: String, headers: &'static str) -> (u16, String) {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        write!(s, "GET {path} HTTP/1.0\r\n{headers}\r\n").expect("send");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    })
    .await
    .expect("join")
}

/// The value of the series whose line starts with `prefix` (name and labels).
fn value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_is_off_without_an_allow_list_and_sends_nothing() {
    let r = Responder::start(Some(0.0));
    let s = server(ProbeConfig::default()).await;
    let (status, body) = get(s.addr, format!("/probe?target={}", r.addr), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--probe.allow"), "{body}");
    assert_eq!(r.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_addresses_and_ports_are_probed() {
    let r = Responder::start(Some(0.0));
    // The address is allowed, the port is not.
    let s = server(allowing(&[123])).await;
    let (status, body) = get(s.addr, format!("/probe?target={}", r.addr), "").await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("resolves to"), "{body}");
    // The port is allowed, the address is not.
    let s = server(ProbeConfig {
        allow: vec![probe_net("192.0.2.0/24")],
        ..allowing(&[r.addr.port()])
    })
    .await;
    let (status, _) = get(s.addr, format!("/probe?target={}", r.addr), "").await;
    assert_eq!(status, 403);
    // A name that resolves to a loopback address is judged by that address.
    let s = server(ProbeConfig {
        allow: vec![probe_net("192.0.2.0/24")],
        ..allowing(&[r.addr.port()])
    })
    .await;
    let (status, _) = get(
        s.addr,
        format!("/probe?target=localhost:{}", r.addr.port()),
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(r.requests(), 0, "nothing was sent for a refused probe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_server_is_probed_with_theta_s_sign() {
    let r = Responder::start(Some(11.5));
    let s = server(allowing(&[r.addr.port()])).await;
    let (status, body) = get(
        s.addr,
        format!("/probe?target={}&samples=2", r.addr),
        "X-Prometheus-Scrape-Timeout-Seconds: 4\r\n",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let labels = format!("{{server=\"{0}\",address=\"{0}\"}}", r.addr);
    let offset = value(&body, &format!("clock_sntp_offset_seconds{labels}")).expect(&body);
    assert!((offset - 11.5).abs() < 0.01, "θ {offset}");
    assert_eq!(value(&body, "clock_probe_success "), Some(1.0), "{body}");
    assert_eq!(
        value(&body, &format!("clock_sntp_samples{labels}")),
        Some(2.0)
    );
    assert_eq!(
        value(&body, &format!("clock_sntp_stratum{labels}")),
        Some(2.0)
    );
    assert_eq!(r.requests(), 2);
    let took = value(&body, "clock_probe_duration_seconds ").expect("duration");
    assert!(
        (2.0..3.5).contains(&took),
        "two samples 2 s apart took {took} s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_fails_within_prometheus_scrape_timeout() {
    let r = Responder::start(None);
    let s = server(ProbeConfig {
        samples: 3,
        exchange_timeout: Duration::from_secs(3),
        ..allowing(&[r.addr.port()])
    })
    .await;
    let start = Instant::now();
    let (status, body) = get(
        s.addr,
        format!("/probe?target={}", r.addr),
        "X-Prometheus-Scrape-Timeout-Seconds: 1.5\r\n",
    )
    .await;
    let took = start.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_millis(1400),
        "{took:?}"
    );
    assert_eq!(value(&body, "clock_probe_success "), Some(0.0));
    assert!(body.contains("reason=\"no_reply\"} 1"), "{body}");
    assert!(!body.contains("clock_sntp_offset_seconds{"), "{body}");
    assert_eq!(
        r.requests(),
        1,
        "the second sample did not fit in the deadline"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_probes_are_bounded() {
    let r = Responder::start(None);
    let s = server(ProbeConfig {
        max_concurrent: 2,
        exchange_timeout: Duration::from_secs(1),
        ..allowing(&[r.addr.port()])
    })
    .await;
    let probes: Vec<_> = (0..5)
        .map(|_| tokio::spawn(get(s.addr, format!("/probe?target={}", r.addr), "")))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(r.requests(), 2, "two probes at once, three waiting");
    for p in probes {
        let (status, body) = p.await.expect("join");
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(r.requests(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_get_400_and_nothing_is_sent() {
    let r = Responder::start(Some(0.0));
    let s = server(allowing(&[r.addr.port()])).await;
    for q in [
        "/probe".to_owned(),
        "/probe?".to_owned(),
        "/probe?target=".to_owned(),
        format!("/probe?target={}&target=127.0.0.2", r.addr),
        format!("/probe?target={}&samples=99", r.addr),
        format!("/probe?target={}&module=x", r.addr),
        "/probe?target=%00".to_owned(),
        "/probe?target=a%0d%0aX-Injected:%201".to_owned(),
        format!("/probe?target={}", "a".repeat(3000)),
        "/probe?%ff%fe=%ff".to_owned(),
    ] {
        let (status, body) = get(s.addr, q.clone(), "").await;
        assert_eq!(status, 400, "{q}: {body}");
    }
    assert_eq!(r.requests(), 0);
    // The exporter still serves.
    let (status, _) = get(s.addr, "/metrics".to_owned(), "").await;
    assert_eq!(status, 200);
}
