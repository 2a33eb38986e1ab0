//! The HTTP server under hostile and careless clients: malformed requests
//! (each with the exact answer it gets), oversized headers and URIs, request
//! smuggling framings, a thousand pipelined requests, idle and slowloris
//! connections by the thousand, more concurrent scrapes than
//! `--web.max-requests`, a client scraping in a loop, a full connection
//! table, and shutdown with a scrape in flight. The exporter keeps
//! answering and never panics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clock_exporter::testing::collector::{BoxFuture, Collected, Collector};
use clock_exporter::testing::http::{self, App, ProbeConfig, Security, WebConfig};
use clock_exporter::testing::metrics::{Desc, Kind};
use clock_exporter::testing::{Entry, Scraper};

static SLOW_VALUE: Desc = Desc {
    name: "clock_test_slow_value",
    help: "Test series.",
    kind: Kind::Gauge,
    labels: &[],
};

/// What the test collector declares.
static DECLARED: &[&[&Desc]] = &[&[&SLOW_VALUE]];

/// A collector that takes `delay` to answer.
struct Slow(Duration);

impl Collector for Slow {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(async move {
            tokio::time::sleep(self.0).await;
            Collected {
                families: vec![SLOW_VALUE.single(1.0)],
                errors: vec![],
            }
        })
    }
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: tokio::task::JoinHandle<()>,
}

async fn server(
    delay: Duration,
    max_requests: usize,
    max_connections: usize,
    header_timeout: Duration,
) -> Server {
    server_waiting(
        delay,
        max_requests,
        Duration::ZERO,
        max_connections,
        header_timeout,
    )
    .await
}

async fn server_waiting(
    delay: Duration,
    max_requests: usize,
    max_requests_wait: Duration,
    max_connections: usize,
    header_timeout: Duration,
) -> Server {
    let scraper = Arc::new(Scraper::new(
        vec![Entry::new("slow", DECLARED, Arc::new(Slow(delay)))],
        Duration::from_secs(10),
    ));
    let app = App::new(
        scraper,
        WebConfig {
            telemetry_path: "/metrics".into(),
            max_requests,
            max_requests_wait,
            max_connections,
            read_header_timeout: header_timeout,
            shutdown_grace: Duration::from_secs(5),
            probe: ProbeConfig::default(),
            security: Arc::new(Security::off()),
        },
    );
    let listeners = http::bind(&["127.0.0.1:0".parse().expect("addr")])
        .await
        .expect("bind");
    let addr = listeners[0].local_addr().expect("local addr");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let handle = tokio::spawn(http::serve(listeners, app, async {
        let _ = rx.await;
    }));
    Server {
        addr,
        stop: Some(tx),
        handle,
    }
}

/// Sends raw bytes and returns the whole response (the server closes after
/// HTTP/1.0 requests and after errors).
fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    s.write_all(request).expect("send");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn status(resp: &str) -> u16 {
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

async fn get(addr: SocketAddr, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        raw(addr, format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_formats() {
    let s = server(Duration::ZERO, 4, 64, Duration::from_secs(5)).await;
    let ok = get(s.addr, "/metrics").await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(
        ok.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{ok}"
    );
    assert!(ok.contains("clock_test_slow_value 1"), "{ok}");
    assert!(
        ok.contains("clock_scrape_collector_success{collector=\"slow\"} 1"),
        "{ok}"
    );
    let landing = get(s.addr, "/").await;
    assert_eq!(status(&landing), 200);
    assert!(landing.contains("<a href=\"/metrics\">"), "{landing}");
    assert!(landing.contains("<td>slow</td><td>ok"), "{landing}");
    assert_eq!(status(&get(s.addr, "/metrics/").await), 404);
    assert_eq!(status(&get(s.addr, "/favicon.ico").await), 404);
    let post = tokio::task::spawn_blocking(move || {
        raw(
            s.addr,
            b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        )
    })
    .await
    .expect("join");
    assert_eq!(status(&post), 405, "{post}");
    assert!(
        post.to_ascii_lowercase().contains("allow: get, head"),
        "{post}"
    );
    let head = tokio::task::spawn_blocking(move || raw(s.addr, b"HEAD /metrics HTTP/1.0\r\n\r\n"))
        .await
        .expect("join");
    assert_eq!(status(&head), 200);
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head:?}");
}

fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    assert!(
        hard >= 4096,
        "this test needs 4096 file descriptors, the hard limit is {hard}"
    );
}

/// What the server did with a request: its status, or how it ended the
/// connection without one.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    /// Closed (EOF) or reset without a status line.
    Closed,
}

/// Sends `request` (in pieces, while the server reads), then reads what
/// comes back: a write the server refused, or a reset, is an ending too.
fn outcome(addr: SocketAddr, request: &[u8]) -> Outcome {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for piece in request.chunks(64 * 1024) {
        if s.write_all(piece).is_err() {
            break;
        }
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    match status(&text) {
        0 => Outcome::Closed,
        code => Outcome::Status(code),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_the_answer_they_deserve_and_service_continues() {
    let s = server(Duration::ZERO, 4, 64, Duration::from_secs(5)).await;
    let addr = s.addr;
    let headers = |n: usize| -> Vec<u8> {
        let mut r = b"GET /metrics HTTP/1.1\r\nHost: x\r\n".to_vec();
        for i in 0..n {
            r.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        r.extend_from_slice(b"\r\n");
        r
    };
    let tls_client_hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00, 0x02,
        0x13, 0x01, 0x01, 0x00,
    ];
    let cases: Vec<(&str, Vec<u8>, Outcome)> = vec![
        ("garbage", b"GARBAGE\r\n\r\n".to_vec(), Outcome::Status(400)),
        ("NUL bytes", b"\x00\x01\x02\xff\xfe\r\n\r\n".to_vec(), Outcome::Status(400)),
        ("TLS ClientHello", tls_client_hello.to_vec(), Outcome::Status(400)),
        (
            "HTTP/2 preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            Outcome::Closed,
        ),
        ("unknown version", b"GET /metrics HTTP/9.9\r\n\r\n".to_vec(), Outcome::Status(400)),
        (
            "negative Content-Length",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".to_vec(),
            Outcome::Status(400),
        ),
        // Both framings: chunked wins and the connection is closed after
        // the answer (RFC 9112 section 6.1, as hyper does), so nothing can
        // be smuggled behind it; the test's 5 s bound shows the close.
        (
            "Content-Length and chunked Transfer-Encoding",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Outcome::Status(200),
        ),
        (
            "Content-Length and a Transfer-Encoding that is not chunked",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
            Outcome::Status(400),
        ),
        (
            "Transfer-Encoding in HTTP/1.0",
            b"GET /metrics HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
            Outcome::Status(400),
        ),
        (
            "two Content-Lengths",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(),
            Outcome::Status(400),
        ),
        (
            "100 KiB URI",
            [b"GET /".as_slice(), &vec![b'a'; 100 * 1024], b" HTTP/1.1\r\n\r\n"].concat(),
            Outcome::Status(431),
        ),
        ("5,000 headers", headers(5000), Outcome::Status(431)),
        (
            "1 MiB header",
            [
                b"GET /metrics HTTP/1.1\r\nX-Big: ".as_slice(),
                &vec![b'a'; 1 << 20],
                b"\r\n\r\n",
            ]
            .concat(),
            Outcome::Status(431),
        ),
        (
            "50 MiB body",
            [
                b"GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 52428800\r\nConnection: close\r\n\r\n".as_slice(),
                &vec![b'a'; 50 << 20],
            ]
            .concat(),
            Outcome::Status(200),
        ),
    ];
    for (what, request, want) in cases {
        let started = Instant::now();
        let got = tokio::task::spawn_blocking(move || outcome(addr, &request))
            .await
            .expect("join");
        assert_eq!(got, want, "{what}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            status(&get(addr, "/metrics").await),
            200,
            "still serving after {what}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pipelined_requests_are_all_answered_in_order() {
    let s = server(Duration::ZERO, 4, 64, Duration::from_secs(5)).await;
    let addr = s.addr;
    let answers = tokio::task::spawn_blocking(move || {
        let mut request = Vec::new();
        for i in 0..999 {
            let path = if i % 2 == 0 { "/metrics" } else { "/nope" };
            request.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        }
        request.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        raw(addr, &request)
    })
    .await
    .expect("join");
    let statuses: Vec<&str> = answers
        .lines()
        .filter(|l| l.starts_with("HTTP/1.1 "))
        .map(|l| &l[9..12])
        .collect();
    assert_eq!(statuses.len(), 1000);
    for (i, code) in statuses.iter().enumerate() {
        // The last is the landing page, the others alternate.
        let want = if i == 999 || i % 2 == 0 { "200" } else { "404" };
        assert_eq!(*code, want, "answer {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_connections_do_not_block_other_clients_and_are_reaped() {
    raise_fd_limit();
    let s = server(Duration::ZERO, 40, 1024, Duration::from_secs(2)).await;
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(s.addr).expect("connect"))
        .collect();
    let started = Instant::now();
    let resp = get(s.addr, "/metrics").await;
    assert_eq!(status(&resp), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // The header-read timeout closes them: every idle socket reads EOF.
    let closed = tokio::task::spawn_blocking(move || {
        idle.into_iter()
            .filter(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(10)))
                    .expect("timeout");
                let mut b = [0u8; 16];
                matches!(c.read(&mut b), Ok(0) | Err(_))
            })
            .count()
    })
    .await
    .expect("join");
    assert_eq!(closed, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_max_requests_wait_their_turn_then_get_503() {
    // Two turns, each scrape 600 ms, a wait of 1.5 s: the first two scrape
    // at once, the next two at 0.6 s, the next two at 1.2 s; the last two
    // would start at 1.8 s and get 503 when their wait ends, at 1.5 s.
    let s = server_waiting(
        Duration::from_millis(600),
        2,
        Duration::from_millis(1500),
        64,
        Duration::from_secs(5),
    )
    .await;
    let (started, addr) = (Instant::now(), s.addr);
    let handles: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(async move {
                let r = get(addr, "/metrics").await;
                (status(&r), r, started.elapsed())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(h.await.expect("join"));
    }
    let ok: Vec<Duration> = answers
        .iter()
        .filter(|(c, _, _)| *c == 200)
        .map(|(_, _, t)| *t)
        .collect();
    let busy: Vec<&(u16, String, Duration)> =
        answers.iter().filter(|(c, _, _)| *c == 503).collect();
    assert_eq!(ok.len(), 6, "{answers:?}");
    assert_eq!(busy.len(), 2, "{answers:?}");
    // The turns: two answers by each of 0.6, 1.2 and 1.8 s.
    let mut ok = ok;
    ok.sort();
    for (i, t) in ok.iter().enumerate() {
        let turn = Duration::from_millis(600 * (i as u64 / 2 + 1) - 50);
        assert!(*t >= turn, "answer {i} at {t:?}: {answers:?}");
    }
    for (_, body, t) in busy {
        assert!(body.contains("--web.max-requests-wait"), "{body}");
        assert!(
            *t >= Duration::from_millis(1450),
            "503 before the wait ended: {t:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_max_requests_get_503_at_once_without_a_wait() {
    let s = server(Duration::from_millis(1500), 2, 64, Duration::from_secs(5)).await;
    let started = Instant::now();
    let handles: Vec<_> = (0..6)
        .map(|_| tokio::spawn(get(s.addr, "/metrics")))
        .collect();
    let mut codes = Vec::new();
    for h in handles {
        let resp = h.await.expect("join");
        codes.push((status(&resp), resp));
    }
    let ok = codes.iter().filter(|(c, _)| *c == 200).count();
    let busy: Vec<&String> = codes
        .iter()
        .filter(|(c, _)| *c == 503)
        .map(|(_, r)| r)
        .collect();
    assert_eq!(ok, 2, "{codes:?}");
    assert_eq!(busy.len(), 4, "{codes:?}");
    assert!(busy[0].contains("--web.max-requests"), "{}", busy[0]);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The landing page is not a scrape and stays available.
    assert_eq!(status(&get(s.addr, "/").await), 200);
}

/// Whether the server closed `c`: a read gives EOF (or a reset) within
/// `wait`, rather than timing out on an open, silent connection.
fn closed_within(c: &mut TcpStream, wait: Duration) -> bool {
    c.set_read_timeout(Some(wait)).expect("timeout");
    let mut b = [0u8; 64];
    match c.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Opens `n` connections one after another, each admitted before the next
/// (so their age is their order), sending `first` on each.
async fn hold(addr: SocketAddr, n: usize, first: &'static [u8]) -> Vec<TcpStream> {
    tokio::task::spawn_blocking(move || {
        (0..n)
            .map(|_| {
                let mut c = TcpStream::connect(addr).expect("connect");
                c.write_all(first).expect("send");
                std::thread::sleep(Duration::from_millis(5));
                c
            })
            .collect()
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_table_of_idle_connections_sheds_the_oldest_for_a_new_scraper() {
    // A header timeout far beyond the test: only shedding can make room.
    let s = server(Duration::ZERO, 4, 8, Duration::from_secs(60)).await;
    let mut idle = hold(s.addr, 8, b"").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for round in 0..3 {
        let started = Instant::now();
        let resp = get(s.addr, "/metrics").await;
        assert_eq!(status(&resp), 200, "round {round}: {resp}");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }
    let closed: Vec<bool> = tokio::task::spawn_blocking(move || {
        idle.iter_mut()
            .map(|c| closed_within(c, Duration::from_millis(300)))
            .collect()
    })
    .await
    .expect("join");
    // The first scrape shed the oldest idle one. The others found the room
    // the one before them left (HTTP/1.0 closes after the response), unless
    // they came before its place was freed: then they shed the next oldest.
    // Either way the shed ones are the oldest, and the rest stay open.
    let shed = closed.iter().take_while(|c| **c).count();
    assert!((1..=3).contains(&shed), "{closed:?}");
    assert!(closed[shed..].iter().all(|c| !c), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_are_shed_like_idle_ones() {
    let s = server(Duration::ZERO, 4, 8, Duration::from_secs(60)).await;
    // Headers begun and never finished.
    let mut slow = hold(s.addr, 8, b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let resp = get(s.addr, "/metrics").await;
    assert_eq!(status(&resp), 200, "{resp}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let oldest = slow.remove(0);
    let closed = tokio::task::spawn_blocking(move || {
        let mut oldest = oldest;
        closed_within(&mut oldest, Duration::from_secs(1))
    })
    .await
    .expect("join");
    assert!(closed, "the oldest slowloris connection was shed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_serving_a_request_are_never_shed() {
    // Every scrape takes 1 s; four connections, four requests in flight.
    let s = server(Duration::from_secs(1), 8, 4, Duration::from_secs(60)).await;
    let in_flight: Vec<_> = (0..4)
        .map(|_| tokio::spawn(get(s.addr, "/metrics")))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fifth finds every connection busy: it is closed without an answer,
    // at once, and the four are served in full.
    let started = Instant::now();
    let refused = get(s.addr, "/metrics").await;
    assert_eq!(refused, "", "{refused}");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    for r in in_flight {
        let resp = r.await.expect("join");
        assert_eq!(status(&resp), 200, "{resp}");
        assert!(resp.contains("clock_test_slow_value 1"), "{resp}");
    }
    // Their responses written and closed, there is room again.
    assert_eq!(status(&get(s.addr, "/").await), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_beyond_the_default_limit_denies_no_scrape() {
    raise_fd_limit();
    // The default limit, and more idle connections than it holds, as in the
    // report: 1,600 of them against 1,024 places.
    let s = server(Duration::ZERO, 40, 1024, Duration::from_secs(30)).await;
    let flood = tokio::task::spawn_blocking({
        let addr = s.addr;
        move || {
            (0..1600)
                .map(|_| TcpStream::connect(addr).expect("connect"))
                .collect::<Vec<_>>()
        }
    })
    .await
    .expect("join");
    for round in 0..10 {
        let started = Instant::now();
        let resp = get(s.addr, "/metrics").await;
        assert_eq!(status(&resp), 200, "round {round}: {resp}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "round {round}: {:?}",
            started.elapsed()
        );
    }
    drop(flood);
}

/// A collector whose collections take turns, as a daemon collector's do
/// (one query at a time, on the daemon's lock), each `delay` long.
struct Serialized {
    delay: Duration,
    turn: tokio::sync::Mutex<()>,
}

impl Collector for Serialized {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(async move {
            let _turn = self.turn.lock().await;
            tokio::time::sleep(self.delay).await;
            Collected {
                families: vec![SLOW_VALUE.single(1.0)],
                errors: vec![],
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_scraping_in_a_loop_does_not_starve_another() {
    // A daemon that answers in 100 ms, and the default limits.
    let collector = Arc::new(Serialized {
        delay: Duration::from_millis(100),
        turn: tokio::sync::Mutex::new(()),
    });
    let scraper = Arc::new(Scraper::new(
        vec![Entry::new("serialized", DECLARED, collector)],
        Duration::from_secs(5),
    ));
    let app = App::new(
        scraper,
        WebConfig {
            telemetry_path: "/metrics".into(),
            max_requests: 40,
            max_requests_wait: Duration::from_secs(1),
            max_connections: 1024,
            read_header_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            probe: ProbeConfig::default(),
            security: Arc::new(Security::off()),
        },
    );
    let listeners = http::bind(&["127.0.0.1:0".parse().expect("addr")])
        .await
        .expect("bind");
    let addr = listeners[0].local_addr().expect("local addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(http::serve(listeners, app, async {
        let _ = stopped.await;
    }));
    // The hammering client: 30 connections scraping back to back.
    let hammering = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let hammers: Vec<_> = (0..30)
        .map(|_| {
            let on = hammering.clone();
            tokio::task::spawn_blocking(move || {
                while on.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = raw(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The legitimate scraper, beside it: every scrape answered, none waiting
    // for more than a couple of collections (it queued behind all thirty).
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let resp = get(addr, "/metrics").await;
        assert_eq!(status(&resp), 200, "{resp}");
        slowest = slowest.max(started.elapsed());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hammering.store(false, std::sync::atomic::Ordering::Relaxed);
    for h in hammers {
        h.await.expect("join");
    }
    assert!(slowest < Duration::from_millis(700), "{slowest:?}");
    let _ = stop.send(());
    server.await.expect("server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_the_scrape_in_flight_finish() {
    let mut s = server(Duration::from_millis(800), 4, 64, Duration::from_secs(5)).await;
    let inflight = tokio::spawn(get(s.addr, "/metrics"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.take().expect("stop").send(()).expect("signal");
    let resp = inflight.await.expect("join");
    assert_eq!(status(&resp), 200, "{resp}");
    tokio::time::timeout(Duration::from_secs(5), &mut s.handle)
        .await
        .expect("serve returns")
        .expect("serve task");
    assert!(TcpStream::connect(s.addr).is_err(), "no longer listening");
}
