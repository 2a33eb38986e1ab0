//! Load and fault figures (issue 11): clock_exporter, on loopback only,
//! under each abuse in turn, with legitimate scrapers beside it.
//!
//! `scripts/load` runs it. For every case the exporter is started afresh and
//! two legitimate scrapers run beside the abuse for its whole length, one
//! scrape every `--pace` each: one on a fresh connection for every scrape,
//! one on a kept-alive connection (reconnecting only when the server closes
//! it). For each case it reports the legitimate scrapers' p50, p99 and
//! failures, the abuse's own outcome, and the exporter's RSS and open file
//! descriptors before, at peak (RSS) and after (fds, once the abusers have
//! gone and the server has had a moment to close).
//!
//! The cases: 2,000 idle connections; 500 slowloris connections (a header
//! byte every few seconds); requests with 1 MiB of headers and a 100 KiB URI;
//! 1,000 pipelined requests (a batch a second, and batches back to back on
//! two connections, a CPU flood like the next); 200 concurrent scrapers (how many get
//! 200, how many 503); garbage, the HTTP/2 preface and a TLS ClientHello on
//! the plain port; and a soak at 200 scrapes/s.
//!
//! It reports; it never fails on a missed goal, and nothing in the test
//! suite depends on its timings.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;

/// Load and fault figures for clock_exporter.
#[derive(Debug, Parser)]
struct Args {
    /// The clock_exporter binary (release build).
    #[arg(long)]
    ours: PathBuf,
    /// How long each abuse lasts, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// How long the soak at 200 scrapes/s lasts, in seconds (0 skips it).
    #[arg(long, default_value_t = 600)]
    soak_seconds: u64,
    /// Milliseconds between a legitimate scraper's scrapes.
    #[arg(long, default_value_t = 250)]
    pace_ms: u64,
    /// Run only the cases whose name contains this.
    #[arg(long)]
    only: Option<String>,
}

/// A legitimate scraper's record.
#[derive(Debug, Default)]
struct Record {
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

impl Record {
    fn quantile(&self, q: f64) -> Duration {
        let mut v = self.latencies.clone();
        v.sort();
        if v.is_empty() {
            return Duration::ZERO;
        }
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
}

/// Reads one HTTP/1.1 response (status line, headers, `Content-Length`
/// body) from `s`; returns the status.
fn read_response(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
        if head.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
    let text = String::from_utf8_lossy(&head);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length: usize = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    s.read_exact(&mut body)?;
    Ok(status)
}

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: load\r\nAccept: text/plain\r\n\r\n";

/// One scrape on `conn` (or a new connection), returning its status.
fn scrape_on(addr: SocketAddr, conn: &mut Option<TcpStream>) -> std::io::Result<u16> {
    if conn.is_none() {
        let c = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        c.set_read_timeout(Some(Duration::from_secs(10)))?;
        c.set_write_timeout(Some(Duration::from_secs(10)))?;
        c.set_nodelay(true)?;
        *conn = Some(c);
    }
    let c = conn.as_mut().expect("connected");
    let result = c.write_all(SCRAPE).and_then(|()| read_response(c));
    if result.is_err() {
        *conn = None;
    }
    result
}

/// A legitimate scraper: one scrape every `pace` until `stop`, on a fresh
/// connection each time or on one kept alive. A kept-alive connection the
/// server closed between scrapes (idle timeout, shedding) is reopened and
/// the scrape retried once, as every HTTP client does.
fn legit(
    addr: SocketAddr,
    pace: Duration,
    fresh: bool,
    stop: Arc<AtomicBool>,
) -> JoinHandle<Record> {
    std::thread::spawn(move || {
        let mut record = Record::default();
        let mut conn: Option<TcpStream> = None;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            next += pace;
            let started = Instant::now();
            let mut result = scrape_on(addr, &mut conn);
            if result.is_err() && !fresh {
                result = scrape_on(addr, &mut conn);
            }
            match result {
                Ok(200) => record.latencies.push(started.elapsed()),
                Ok(code) => record.failures.push(format!("status {code}")),
                Err(e) => record.failures.push(e.to_string()),
            }
            if fresh {
                conn = None;
            }
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        record
    })
}

/// The exporter under test, killed on drop.
struct Exporter {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Exporter {
    fn start(bin: &PathBuf, dir: &std::path::Path) -> Result<Exporter, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let log = dir.join(format!("exporter-{port}.log"));
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .args([
                "--web.listen-address",
                &addr.to_string(),
                // No daemon here: only the kernel's collectors, so every
                // case measures the server, not a daemon's absence.
                "--no-collector.ntpd",
                "--no-collector.chrony",
            ])
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(|e| e.to_string())?)
            .stderr(out)
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let e = Exporter { child, addr, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !matches!(scrape_on(addr, &mut None), Ok(200)) {
            if Instant::now() > deadline {
                return Err("the exporter did not answer within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(e)
    }

    fn status_field(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines().find_map(|l| {
                    l.strip_prefix(field)?
                        .split_whitespace()
                        .next()?
                        .parse()
                        .ok()
                })
            })
            .unwrap_or(0)
    }

    fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    fn peak_rss_kib(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, Iterator::count)
    }

    fn panicked(&self) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|l| l.contains("panicked"))
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an abuse reports of itself.
type Abuse = Box<dyn FnOnce(SocketAddr, Arc<AtomicBool>) -> String + Send>;

/// Connections opened and held idle until `stop`.
fn idle(n: usize) -> Abuse {
    Box::new(move |addr, stop| {
        let held: Vec<TcpStream> = (0..n)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        let opened = held.len();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let closed = held
            .into_iter()
            .filter(|mut c| {
                let _ = c.set_nonblocking(true);
                let mut b = [0u8; 1];
                matches!(c.read(&mut b), Ok(0))
            })
            .count();
        format!("{opened} opened; {closed} closed by the server by the end")
    })
}

/// Connections that send a request head one byte every few seconds.
fn slowloris(n: usize) -> Abuse {
    Box::new(move |addr, stop| {
        let mut held: Vec<TcpStream> = (0..n)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        let head = b"GET /metrics HTTP/1.1\r\nHost: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        let mut at = 0;
        let mut dropped = 0;
        while !stop.load(Ordering::Relaxed) {
            held.retain_mut(|c| {
                let ok = c
                    .write_all(&head[at % head.len()..=at % head.len()])
                    .is_ok();
                if !ok {
                    dropped += 1;
                }
                ok
            });
            at += 1;
            for _ in 0..30 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        format!("{n} opened; {dropped} closed by the server while trickling")
    })
}

/// Threads sending `request` over and over, each on a new connection,
/// counting the answers by status (0: closed without one).
fn repeated(request: Vec<u8>, threads: usize, what: &'static str) -> Abuse {
    Box::new(move |addr, stop| {
        let request = Arc::new(request);
        let counts = Arc::new(Mutex::new(std::collections::BTreeMap::<u16, u64>::new()));
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let (request, counts, stop) = (request.clone(), counts.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let code = TcpStream::connect(addr)
                            .and_then(|mut c| {
                                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                                let _ = c.write_all(&request);
                                let mut out = Vec::new();
                                let _ = c.read_to_end(&mut out);
                                Ok(String::from_utf8_lossy(&out)
                                    .split_whitespace()
                                    .nth(1)
                                    .and_then(|c| c.parse().ok())
                                    .unwrap_or(0))
                            })
                            .unwrap_or(0);
                        *counts
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .entry(code)
                            .or_default() += 1;
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        let counts = counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = format!("{what}:");
        for (code, n) in counts.iter() {
            let name = if *code == 0 {
                "closed".to_owned()
            } else {
                code.to_string()
            };
            let _ = write!(out, " {n} × {name}");
        }
        out
    })
}

/// Concurrent scrapers, each back to back on a kept-alive connection.
fn crowd(n: usize) -> Abuse {
    Box::new(move |addr, stop| {
        let ok = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicU64::new(0));
        let other = Arc::new(AtomicU64::new(0));
        let workers: Vec<_> = (0..n)
            .map(|_| {
                let (ok, busy, other, stop) =
                    (ok.clone(), busy.clone(), other.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut conn = None;
                    while !stop.load(Ordering::Relaxed) {
                        match scrape_on(addr, &mut conn) {
                            Ok(200) => ok.fetch_add(1, Ordering::Relaxed),
                            Ok(503) => busy.fetch_add(1, Ordering::Relaxed),
                            _ => other.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.join();
        }
        format!(
            "{n} scrapers: {} × 200, {} × 503, {} other",
            ok.load(Ordering::Relaxed),
            busy.load(Ordering::Relaxed),
            other.load(Ordering::Relaxed)
        )
    })
}

/// One batch of pipelined requests every second on a fresh connection,
/// each batch timed from its first byte sent to its last answer read.
fn paced_batches(request: Vec<u8>, answers: usize) -> Abuse {
    Box::new(move |addr, stop| {
        let mut times = Vec::new();
        let mut short = 0u64;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            next += Duration::from_secs(1);
            let start = Instant::now();
            let got = TcpStream::connect(addr).and_then(|mut c| {
                c.set_read_timeout(Some(Duration::from_secs(10)))?;
                c.write_all(&request)?;
                let mut out = Vec::new();
                let _ = c.read_to_end(&mut out);
                Ok(out.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count())
            });
            times.push(start.elapsed());
            if got.map_or(true, |n| n != answers) {
                short += 1;
            }
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        times.sort();
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        format!(
            "{} batches of {answers}, each answered in {:.0} ms (median) / {:.0} ms (max); {short} short",
            times.len(),
            ms(times.get(times.len() / 2)),
            ms(times.last()),
        )
    })
}

/// Scrapes at a fixed rate on kept-alive connections (the soak).
fn rate(per_second: u32) -> Abuse {
    Box::new(move |addr, stop| {
        let mut conns: Vec<Option<TcpStream>> = (0..4).map(|_| None).collect();
        let mut n = 0u64;
        let mut failed = 0u64;
        let pace = Duration::from_secs(1) / per_second;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            next += pace;
            let conn = &mut conns[(n % 4) as usize];
            if !matches!(scrape_on(addr, conn), Ok(200)) {
                failed += 1;
            }
            n += 1;
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
        }
        format!("{n} scrapes at {per_second}/s, {failed} failed")
    })
}

/// Raises this process's open-file limit, for the floods.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

struct Row {
    case: String,
    fresh: Record,
    kept: Record,
    abuse: String,
    rss: (u64, u64, u64),
    fds: (usize, usize),
    panicked: bool,
}

fn run_case(
    args: &Args,
    dir: &std::path::Path,
    case: &str,
    seconds: u64,
    abuse: Abuse,
) -> Result<Row, String> {
    let e = Exporter::start(&args.ours, dir)?;
    // Settle: a few scrapes, so the resting state includes the first ones.
    for _ in 0..5 {
        let _ = scrape_on(e.addr, &mut None);
    }
    std::thread::sleep(Duration::from_millis(200));
    let (rss_before, fds_before) = (e.rss_kib(), e.fds());
    let stop = Arc::new(AtomicBool::new(false));
    let pace = Duration::from_millis(args.pace_ms);
    let abuser = {
        let (addr, stop) = (e.addr, stop.clone());
        std::thread::spawn(move || abuse(addr, stop))
    };
    std::thread::sleep(Duration::from_millis(500));
    let fresh = legit(e.addr, pace, true, stop.clone());
    let kept = legit(e.addr, pace, false, stop.clone());
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let abuse = abuser.join().map_err(|_| "the abuse thread panicked")?;
    let fresh = fresh.join().map_err(|_| "a scraper panicked")?;
    let kept = kept.join().map_err(|_| "a scraper panicked")?;
    // The abusers are gone; the server closes what they left within a
    // moment (their sockets are closed on our side already).
    let settle = Instant::now() + Duration::from_secs(5);
    while e.fds() > fds_before && Instant::now() < settle {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Row {
        case: case.to_owned(),
        fresh,
        kept,
        abuse,
        rss: (rss_before, e.peak_rss_kib(), e.rss_kib()),
        fds: (fds_before, e.fds()),
        panicked: e.panicked(),
    })
}

/// Every case: its name, how long it lasts, and its abuse.
fn cases(args: &Args) -> Vec<(&'static str, u64, Abuse)> {
    let big_header = [
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ".as_slice(),
        &vec![b'a'; 1 << 20],
        b"\r\n\r\n",
    ]
    .concat();
    let long_uri = [
        b"GET /".as_slice(),
        &vec![b'a'; 100 * 1024],
        b" HTTP/1.1\r\nHost: x\r\n\r\n",
    ]
    .concat();
    let mut pipelined = Vec::new();
    for _ in 0..999 {
        pipelined.extend_from_slice(SCRAPE);
    }
    pipelined
        .extend_from_slice(b"GET /metrics HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n");
    let tls_hello: Vec<u8> = [
        &[
            0x16u8, 0x03, 0x01, 0x00, 0x2f, 0x01, 0x00, 0x00, 0x2b, 0x03, 0x03,
        ][..],
        &[0u8; 33],
        &[0x00, 0x02, 0x13, 0x01, 0x01, 0x00],
    ]
    .concat();
    let s = args.seconds;
    vec![
        ("2,000 idle connections", s, idle(2000)),
        ("500 slowloris connections", s, slowloris(500)),
        ("1 MiB headers", s, repeated(big_header, 4, "1 MiB header")),
        ("100 KiB URI", s, repeated(long_uri, 4, "100 KiB URI")),
        (
            "1,000 pipelined requests, a batch a second",
            s,
            paced_batches(pipelined.clone(), 1000),
        ),
        (
            "pipelined batches back to back, 2 connections",
            s,
            repeated(pipelined, 2, "batches"),
        ),
        ("200 concurrent scrapers", s, crowd(200)),
        (
            "garbage",
            s,
            repeated(b"GARBAGE\x00\xff\r\n\r\n".to_vec(), 2, "garbage"),
        ),
        (
            "HTTP/2 preface",
            s,
            repeated(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 2, "preface"),
        ),
        ("TLS ClientHello", s, repeated(tls_hello, 2, "ClientHello")),
        ("soak at 200 scrapes/s", args.soak_seconds, rate(200)),
    ]
}

/// The figures, as a Markdown table.
fn print_table(args: &Args, rows: Vec<Row>) {
    println!(
        "Legitimate scrapers: one scrape every {} ms each, on a fresh connection and on a kept-alive one. Latencies in ms.\n",
        args.pace_ms
    );
    println!(
        "| case | fresh p50 / p99 / max | fresh failures | kept-alive p50 / p99 / max | kept-alive failures | the abuse | RSS KiB before / peak / after | fds before / after | panic |"
    );
    println!("|---|--:|--:|--:|--:|---|--:|--:|---|");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for r in rows {
        let line = |rec: &Record| {
            (
                format!(
                    "{:.1} / {:.1} / {:.1}",
                    ms(rec.quantile(0.5)),
                    ms(rec.quantile(0.99)),
                    ms(rec.quantile(1.0))
                ),
                format!(
                    "{} of {}{}",
                    rec.failures.len(),
                    rec.failures.len() + rec.latencies.len(),
                    rec.failures
                        .first()
                        .map(|f| format!(" ({f})"))
                        .unwrap_or_default()
                ),
            )
        };
        let (fl, ff) = line(&r.fresh);
        let (kl, kf) = line(&r.kept);
        println!(
            "| {} | {fl} | {ff} | {kl} | {kf} | {} | {} / {} / {} | {} / {} | {} |",
            r.case,
            r.abuse,
            r.rss.0,
            r.rss.1,
            r.rss.2,
            r.fds.0,
            r.fds.1,
            if r.panicked { "**yes**" } else { "no" }
        );
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    raise_nofile();
    let dir = std::env::temp_dir().join(format!("clock-load-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("load_faults: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let cases = cases(&args);
    let mut rows = Vec::new();
    for (case, seconds, abuse) in cases {
        if seconds == 0 || args.only.as_deref().is_some_and(|o| !case.contains(o)) {
            continue;
        }
        eprintln!("load_faults: {case} for {seconds} s");
        match run_case(&args, &dir, case, seconds, abuse) {
            Ok(row) => rows.push(row),
            Err(e) => {
                eprintln!("load_faults: {case}: {e}");
                let _ = std::fs::remove_dir_all(&dir);
                return ExitCode::FAILURE;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    print_table(&args, rows);
    ExitCode::SUCCESS
}
