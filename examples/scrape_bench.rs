//! The scrape benchmark that `scripts/bench` runs (issue 2, "Set-up, CI and speed").
//!
//! It starts clock_exporter, the floor (`examples/floor_server.rs`, a minimal
//! hyper server answering with a body of the same size) and node_exporter
//! (timex and time collectors only) one at a time, never two at once, and
//! loads each with the same open-loop client: a fixed rate of scrapes over
//! keep-alive connections, every request with the same headers. It measures
//! each scrape from the tick that issues it to the last byte of its body, and
//! reads each server's peak RSS (`VmHWM`) before stopping it. `--also` adds
//! other clock_exporter builds to the same run, to compare before and after a
//! change under the same machine load.
//!
//! `--tls` adds clock_exporter behind `--web.config.file` (TLS with a
//! certificate of its own CA, one basic-auth user with a bcrypt hash of cost
//! 10, a header), scraped over TLS with the credentials on every request as
//! Prometheus does, on the same keep-alive connections: what TLS and basic
//! auth cost a scrape, paired round by round against the plain server.
//!
//! Two passes: one with Prometheus' own `Accept` header (clock_exporter then
//! answers OpenMetrics, node_exporter 1.5 the text format), one with
//! `Accept: text/plain`, where both answer text 0.0.4.
//!
//! Open loop: a request is issued on every tick whether or not the previous
//! one has been answered. A request that finds no idle connection opens a new
//! one and its latency includes the connect, so a slow answer shows in the
//! figures instead of silently lowering the rate (the error wrk2 was written
//! to avoid).
//!
//! The median targets are judged on the median of the rounds' ratios (ours
//! against the floor or node_exporter in the same round), not on the ratio of
//! medians pooled over all rounds: on a shared machine the load drifts over a
//! run by more than the difference being measured, and many short rounds
//! with paired ratios cancel that drift.
//!
//! It reports; it never fails on a missed target. Timings belong here, never in
//! the test suite.

use std::fmt::Write as _;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

// The certificate authority the web configuration's tests use.
#[path = "../tests/common/ca.rs"]
mod ca;

/// The `Accept` header Prometheus 2.x sends on every scrape.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Benchmark clock_exporter against a hyper floor and node_exporter.
#[derive(Debug, Parser)]
struct Args {
    /// The clock_exporter binary (release build).
    #[arg(long)]
    ours: PathBuf,
    /// The floor server (`examples/floor_server.rs`, release build).
    #[arg(long)]
    floor: PathBuf,
    /// node_exporter's binary.
    #[arg(long)]
    node_exporter: PathBuf,
    /// Where captured bodies and server logs go.
    #[arg(long, default_value = "target/bench")]
    work_dir: PathBuf,
    /// Scrapes per second.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds measured per server and pass.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seconds of load before measuring, discarded.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Times every server is measured per pass; rounds interleave the servers
    /// so that a change in machine load hits all three alike.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// CPU the servers are pinned to (with taskset); the caller pins this
    /// client to another one.
    #[arg(long)]
    server_cpu: Option<u32>,
    /// Another clock_exporter build measured like the first, as `LABEL=PATH`
    /// (for example the build before a change); repeatable.
    #[arg(long, value_parser = parse_also)]
    also: Vec<(String, PathBuf)>,
    /// Also clock_exporter with `--web.config.file`: TLS and basic auth.
    #[arg(long)]
    tls: bool,
}

fn parse_also(s: &str) -> Result<(String, PathBuf), String> {
    let (label, path) = s.split_once('=').ok_or("expected LABEL=PATH")?;
    Ok((label.to_owned(), PathBuf::from(path)))
}

/// A server under test.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Ours,
    /// Another clock_exporter build (`--also`).
    Also(String, PathBuf),
    /// clock_exporter behind TLS and basic auth (`--tls`).
    OursTls,
    Floor,
    NodeExporter,
}

impl Target {
    /// Every server, in the order each round measures them: clock_exporter
    /// first, since its body is what the floor serves.
    fn all(args: &Args) -> Vec<Target> {
        let mut out = vec![Target::Ours];
        out.extend(
            args.also
                .iter()
                .map(|(l, p)| Target::Also(l.clone(), p.clone())),
        );
        if args.tls {
            out.push(Target::OursTls);
        }
        out.extend([Target::Floor, Target::NodeExporter]);
        out
    }

    fn name(&self) -> &str {
        match self {
            Target::Ours => "clock_exporter",
            Target::Also(label, _) => label,
            Target::OursTls => "clock_exporter, TLS and basic auth",
            Target::Floor => "floor (hyper)",
            Target::NodeExporter => "node_exporter",
        }
    }

    /// A file name for the server's log.
    fn log_name(&self) -> String {
        let name: String = self
            .name()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{name}.log")
    }
}

/// One pass: the `Accept` header every request of it carries.
#[derive(Debug, Clone, Copy)]
struct Pass {
    name: &'static str,
    accept: &'static str,
    file: &'static str,
}

const PASSES: [Pass; 2] = [
    Pass {
        name: "Prometheus' Accept header",
        accept: PROMETHEUS_ACCEPT,
        file: "prometheus",
    },
    Pass {
        name: "Accept: text/plain",
        accept: "text/plain",
        file: "text",
    },
];

/// A server process, killed when dropped so that no exit path leaves one behind.
#[derive(Debug)]
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(
        args: &Args,
        target: &Target,
        floor_body: &Path,
        content_type: &str,
    ) -> Result<Server, String> {
        let addr = free_port()?;
        let listen = addr.to_string();
        let mut cmd = match args.server_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]);
                c
            }
            None => Command::new("env"),
        };
        match target {
            Target::Ours | Target::Also(..) => {
                let path = match target {
                    Target::Also(_, path) => path,
                    _ => &args.ours,
                };
                // Defaults except the listen address.
                cmd.arg(path).arg(format!("--web.listen-address={listen}"));
            }
            Target::OursTls => {
                cmd.arg(&args.ours)
                    .arg(format!("--web.listen-address={listen}"))
                    .arg(format!(
                        "--web.config.file={}",
                        args.work_dir.join("tls/web-config.yml").display()
                    ));
            }
            Target::Floor => {
                cmd.arg(&args.floor)
                    .arg(&listen)
                    .arg(floor_body)
                    .arg(content_type);
            }
            Target::NodeExporter => {
                cmd.arg(&args.node_exporter).args([
                    "--collector.disable-defaults",
                    "--collector.timex",
                    "--collector.time",
                    &format!("--web.listen-address={listen}"),
                ]);
            }
        }
        let log_path = args.work_dir.join(target.log_name());
        let log =
            fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", target.name()))?;
        Ok(Server { child, addr })
    }

    /// CPU time the server has used, user and system, in seconds, from
    /// `/proc/PID/stat` (which counts threads that have exited too).
    fn cpu_seconds(&self) -> Result<f64, String> {
        let path = format!("/proc/{}/stat", self.child.id());
        let stat = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        // Fields after the command name, which is in parentheses and may hold
        // spaces: state is field 3, utime and stime are fields 14 and 15.
        let after = stat.rsplit_once(')').map_or("", |(_, a)| a);
        let field = |n: usize| -> Option<f64> { after.split_whitespace().nth(n - 3)?.parse().ok() };
        let ticks = field(14)
            .zip(field(15))
            .map(|(u, s)| u + s)
            .ok_or_else(|| format!("{path}: no utime/stime"))?;
        Ok(ticks / clock_ticks_per_second())
    }

    /// Peak resident set size in KiB, from `/proc/PID/status`.
    fn peak_rss_kib(&self) -> Result<u64, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("{path}: no VmHWM"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// USER_HZ, the unit of `/proc/PID/stat` times.
fn clock_ticks_per_second() -> f64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100.0, |t| t as f64)
}

/// A loopback port nobody listens on now.
fn free_port() -> Result<SocketAddr, String> {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("finding a free port: {e}"))
}

/// The request every scrape sends, the same for all three servers but for the
/// port in `Host`. No `Accept-Encoding`: Prometheus sends `gzip`, which
/// node_exporter honours and clock_exporter does not, and compressing 10 kB
/// would measure zlib rather than the exporters.
fn request(client: &Client) -> Request<Empty<Bytes>> {
    let (addr, accept) = (client.addr, client.accept);
    let mut r = Request::new(Empty::new());
    *r.uri_mut() = hyper::Uri::from_static("/metrics");
    let h = r.headers_mut();
    h.insert(
        HOST,
        HeaderValue::from_str(&addr.to_string()).unwrap_or(HeaderValue::from_static("localhost")),
    );
    h.insert(
        USER_AGENT,
        HeaderValue::from_static("clock_exporter-bench/1"),
    );
    h.insert(ACCEPT, HeaderValue::from_static(accept));
    if let Some(auth) = &client.auth {
        h.insert(AUTHORIZATION, auth.clone());
    }
    r
}

/// How the load generator reaches one server.
#[derive(Clone)]
struct Client {
    addr: SocketAddr,
    accept: &'static str,
    /// TLS, for [`Target::OursTls`].
    tls: Option<TlsConnector>,
    /// `Authorization`, for [`Target::OursTls`].
    auth: Option<HeaderValue>,
}

impl Client {
    fn new(addr: SocketAddr, accept: &'static str, tls: Option<&TlsClient>) -> Client {
        Client {
            addr,
            accept,
            tls: tls.map(|t| t.connector.clone()),
            auth: tls.map(|t| t.auth.clone()),
        }
    }
}

/// The `--tls` set-up: the files in `WORK_DIR/tls`, and the client's side.
struct TlsClient {
    connector: TlsConnector,
    auth: HeaderValue,
}

/// Writes a CA, a server certificate for `localhost` and the web
/// configuration into `dir`; returns the client that trusts the CA and
/// knows the password.
fn tls_setup(dir: &Path) -> Result<TlsClient, String> {
    use base64::Engine as _;
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let err = |e: &dyn std::fmt::Display| format!("--tls: {e}");
    fs::create_dir_all(dir).map_err(|e| err(&e))?;
    let ca = ca::Ca::new("scrape_bench CA");
    let (cert, key) = ca.leaf(&["localhost"]);
    let hash = bcrypt::hash("bench-password", 10).map_err(|e| err(&e))?;
    for (name, text) in [
        ("server.crt", cert),
        ("server.key", key),
        (
            "web-config.yml",
            format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n\
                 http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n\
                 basic_auth_users:\n  prometheus: {hash}\n"
            ),
        ),
    ] {
        fs::write(dir.join(name), text).map_err(|e| err(&e))?;
    }
    let mut roots = RootCertStore::empty();
    let ca_der = CertificateDer::from_pem_slice(ca.pem().as_bytes()).map_err(|e| err(&e))?;
    roots.add(ca_der).map_err(|e| err(&e))?;
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let auth = base64::engine::general_purpose::STANDARD.encode("prometheus:bench-password");
    Ok(TlsClient {
        connector: TlsConnector::from(Arc::new(config)),
        auth: HeaderValue::from_str(&format!("Basic {auth}")).map_err(|e| err(&e))?,
    })
}

type Pool = Arc<Mutex<Vec<SendRequest<Empty<Bytes>>>>>;

async fn connect(client: &Client) -> Result<SendRequest<Empty<Bytes>>, String> {
    let stream = TcpStream::connect(client.addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("nodelay: {e}"))?;
    let Some(tls) = &client.tls else {
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        return Ok(sender);
    };
    let stream = tls
        .connect(
            ServerName::try_from("localhost").map_err(|e| format!("server name: {e}"))?,
            stream,
        )
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// What one scrape gave.
#[derive(Debug)]
struct Scrape {
    latency: Duration,
    body: Bytes,
    content_type: String,
    new_connection: bool,
}

/// One scrape on an idle pooled connection, or a new one; timed from `due`
/// (the tick that issued it) to the last byte of the body.
async fn scrape(client: Client, pool: Pool, due: Instant) -> Result<Scrape, String> {
    let idle = pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
    let (mut sender, new_connection) = match idle {
        Some(s) if !s.is_closed() => (s, false),
        _ => (connect(&client).await?, true),
    };
    sender
        .ready()
        .await
        .map_err(|e| format!("connection: {e}"))?;
    let resp = sender
        .send_request(request(&client))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    let latency = due.elapsed();
    pool.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(sender);
    if status != StatusCode::OK {
        return Err(format!("status {status}"));
    }
    Ok(Scrape {
        latency,
        body,
        content_type,
        new_connection,
    })
}

/// What a stretch of load gave.
#[derive(Debug, Default)]
struct Load {
    latencies: Vec<Duration>,
    errors: Vec<String>,
    connections: usize,
    body_len: usize,
    content_type: String,
}

/// Issues `rate` scrapes a second for `seconds`, each on its tick whatever the
/// state of the previous ones (open loop).
async fn load(client: &Client, rate: u32, seconds: u64, pool: &Pool) -> Load {
    let n = u64::from(rate) * seconds;
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    // Late ticks fire at once, so the count (and the mean rate) holds.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let mut out = Load::default();
    let record = |out: &mut Load, r: Result<Result<Scrape, String>, tokio::task::JoinError>| match r
    {
        Ok(Ok(s)) => {
            out.latencies.push(s.latency);
            out.connections += usize::from(s.new_connection);
            out.body_len = s.body.len();
            out.content_type = s.content_type;
        }
        Ok(Err(e)) => out.errors.push(e),
        Err(e) => out.errors.push(e.to_string()),
    };
    for _ in 0..n {
        ticker.tick().await;
        tasks.spawn(scrape(client.clone(), pool.clone(), Instant::now()));
        while let Some(r) = tasks.try_join_next() {
            record(&mut out, r);
        }
    }
    while let Some(r) = tasks.join_next().await {
        record(&mut out, r);
    }
    out
}

/// Waits until the server answers a scrape.
async fn wait_ready(server: &mut Server, client: &Client) -> Result<Scrape, String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!("exited with {status} before answering"));
        }
        let pool = Pool::default();
        match scrape(client.clone(), pool, Instant::now()).await {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() > deadline => return Err(format!("not answering: {e}")),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// One server measured once.
#[derive(Debug)]
struct Run {
    load: Load,
    peak_rss_kib: u64,
    /// CPU time the server used during the measured load, in seconds.
    cpu_seconds: f64,
}

async fn measure(
    args: &Args,
    target: &Target,
    pass: Pass,
    floor_body: &Path,
    floor_type: &str,
    tls: Option<&TlsClient>,
) -> Result<Run, String> {
    let mut server = Server::start(args, target, floor_body, floor_type)?;
    let tls = tls.filter(|_| *target == Target::OursTls);
    let client = Client::new(server.addr, pass.accept, tls);
    let first = wait_ready(&mut server, &client)
        .await
        .map_err(|e| format!("{}: {e}", target.name()))?;
    if *target == Target::Ours {
        fs::write(floor_body, &first.body).map_err(|e| format!("{}: {e}", floor_body.display()))?;
    }
    let pool = Pool::default();
    let _ = load(&client, args.rate, args.warmup, &pool).await;
    let cpu_before = server.cpu_seconds()?;
    let load = load(&client, args.rate, args.seconds, &pool).await;
    let cpu_seconds = server.cpu_seconds()? - cpu_before;
    let peak_rss_kib = server.peak_rss_kib()?;
    drop(server);
    Ok(Run {
        load,
        peak_rss_kib,
        cpu_seconds,
    })
}

/// Nearest-rank quantile of sorted durations, in microseconds.
fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1e6
}

/// The figures of one server over all rounds of a pass.
#[derive(Debug)]
struct Summary {
    median_us: f64,
    p99_us: f64,
    max_us: f64,
    round_medians_us: Vec<f64>,
    peak_rss_kib: u64,
    cpu_us_per_scrape: f64,
    body_len: usize,
    format: &'static str,
    scrapes: usize,
    errors: usize,
    connections: usize,
}

fn summarize(runs: &[Run]) -> Summary {
    let mut all: Vec<Duration> = runs
        .iter()
        .flat_map(|r| r.load.latencies.iter().copied())
        .collect();
    all.sort_unstable();
    let round_medians_us = runs
        .iter()
        .map(|r| {
            let mut l = r.load.latencies.clone();
            l.sort_unstable();
            quantile_us(&l, 0.5)
        })
        .collect();
    let content_type = runs.last().map_or("", |r| r.load.content_type.as_str());
    Summary {
        median_us: quantile_us(&all, 0.5),
        p99_us: quantile_us(&all, 0.99),
        max_us: all.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e6),
        round_medians_us,
        peak_rss_kib: runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0),
        cpu_us_per_scrape: runs.iter().map(|r| r.cpu_seconds).sum::<f64>() * 1e6
            / runs
                .iter()
                .map(|r| r.load.latencies.len() + r.load.errors.len())
                .sum::<usize>() as f64,
        body_len: runs.last().map_or(0, |r| r.load.body_len),
        format: if content_type.starts_with("application/openmetrics-text") {
            "OpenMetrics 1.0.0"
        } else if content_type.starts_with("text/plain") {
            "text 0.0.4"
        } else {
            "?"
        },
        scrapes: all.len(),
        errors: runs.iter().map(|r| r.load.errors.len()).sum(),
        connections: runs.iter().map(|r| r.load.connections).sum(),
    }
}

/// The ratios of `a`'s round medians to `b`'s, round by round, sorted: the
/// two servers of a round were measured minutes apart at most, so slow
/// changes of the machine's load cancel out of these ratios, where they do
/// not out of the ratio of pooled medians.
fn paired_ratios(a: &Summary, b: &Summary) -> Vec<f64> {
    let mut r: Vec<f64> = a
        .round_medians_us
        .iter()
        .zip(&b.round_medians_us)
        .map(|(x, y)| x / y)
        .collect();
    r.sort_by(f64::total_cmp);
    r
}

/// The median of sorted ratios, and the text `median× (min–max)`.
fn ratio_summary(sorted: &[f64]) -> (f64, String) {
    let median = match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[n / 2],
        n => f64::midpoint(sorted[n / 2 - 1], sorted[n / 2]),
    };
    let text = match (sorted.first(), sorted.last()) {
        (Some(lo), Some(hi)) => format!(
            "{median:.2}× ({lo:.2}–{hi:.2}× over {} rounds)",
            sorted.len()
        ),
        _ => "no rounds".to_owned(),
    };
    (median, text)
}

/// The ratios of `a`'s figures to `b`'s.
fn compare(a: &Summary, b: &Summary) -> String {
    format!(
        "median {:.2}×, p99 {:.2}×, CPU {:.2}×, RSS {:.2}×",
        a.median_us / b.median_us,
        a.p99_us / b.p99_us,
        a.cpu_us_per_scrape / b.cpu_us_per_scrape,
        a.peak_rss_kib as f64 / b.peak_rss_kib as f64
    )
}

fn report(pass: Pass, summaries: &[(Target, Summary)]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n### {} (`{}`)\n", pass.name, pass.accept);
    let _ = writeln!(
        s,
        "| server | format | body (bytes) | median (µs) | p99 (µs) | max (µs) | CPU (µs/scrape) | peak RSS (KiB) | round medians (µs) | scrapes | errors | new connections |"
    );
    let _ = writeln!(s, "|---|---|--:|--:|--:|--:|--:|--:|---|--:|--:|--:|");
    for (t, m) in summaries {
        let rounds: Vec<String> = m
            .round_medians_us
            .iter()
            .map(|v| format!("{v:.0}"))
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
            t.name(),
            m.format,
            m.body_len,
            m.median_us,
            m.p99_us,
            m.max_us,
            m.cpu_us_per_scrape,
            m.peak_rss_kib,
            rounds.join(", "),
            m.scrapes,
            m.errors,
            m.connections,
        );
    }
    let get = |t: Target| summaries.iter().find(|(x, _)| *x == t).map(|(_, m)| m);
    let (Some(ours), Some(floor), Some(node)) = (
        get(Target::Ours),
        get(Target::Floor),
        get(Target::NodeExporter),
    ) else {
        return s;
    };
    let (vs_floor, vs_floor_text) = ratio_summary(&paired_ratios(ours, floor));
    let (vs_node, vs_node_text) = ratio_summary(&paired_ratios(ours, node));
    let (_, floor_vs_node_text) = ratio_summary(&paired_ratios(floor, node));
    let rss_vs_node = ours.peak_rss_kib as f64 / node.peak_rss_kib as f64;
    let _ = writeln!(s);
    let _ = writeln!(s, "ours/floor: {}", compare(ours, floor));
    let _ = writeln!(
        s,
        "ours/node_exporter: {}, body {:.2}×",
        compare(ours, node),
        ours.body_len as f64 / node.body_len as f64
    );
    if let Some(tls) = get(Target::OursTls) {
        let (_, paired) = ratio_summary(&paired_ratios(tls, ours));
        let _ = writeln!(
            s,
            "TLS and basic auth/plain: {}; median round by round {paired}",
            compare(tls, ours)
        );
    }
    for (t, m) in summaries {
        if let Target::Also(label, _) = t {
            let _ = writeln!(
                s,
                "clock_exporter/{label}: {}; {label}/floor: median {:.2}×",
                compare(ours, m),
                m.median_us / floor.median_us,
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "Round by round, median of the rounds' ratios (min–max):");
    let _ = writeln!(s, "- ours/floor: {vs_floor_text}");
    let _ = writeln!(s, "- ours/node_exporter: {vs_node_text}");
    let _ = writeln!(s, "- floor/node_exporter: {floor_vs_node_text}");
    let _ = writeln!(s);
    let _ = writeln!(s, "Targets (medians: round by round, as above):");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let _ = writeln!(
        s,
        "- median ≤ 1.3× floor: {} ({vs_floor:.2}×)",
        verdict(vs_floor <= 1.3)
    );
    let _ = writeln!(
        s,
        "- median ≤ 1/4 of node_exporter's: {} ({vs_node:.2}×)",
        verdict(vs_node <= 0.25)
    );
    let _ = writeln!(
        s,
        "- peak RSS ≤ 1/3 of node_exporter's: {} ({rss_vs_node:.2}×)",
        verdict(rss_vs_node <= 1.0 / 3.0)
    );
    let _ = writeln!(
        s,
        "- p99 < 1 ms: {} ({:.0} µs)",
        verdict(ours.p99_us < 1000.0),
        ours.p99_us
    );
    s
}

fn machine() -> String {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|v| v.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    // Counted from /proc/cpuinfo: this process may be pinned to one of them.
    let cpus = fs::read_to_string("/proc/cpuinfo").map_or(0, |c| {
        c.lines().filter(|l| l.starts_with("processor")).count()
    });
    format!("{cpus} × {cpu}, load average {} at the start", loadavg())
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

async fn run(args: Args) -> Result<(), String> {
    fs::create_dir_all(&args.work_dir).map_err(|e| format!("{}: {e}", args.work_dir.display()))?;
    println!("## Scrape benchmark");
    println!();
    println!("- machine: {}", machine());
    println!(
        "- load: {} scrapes/s, open loop, keep-alive; {} s warm-up then {} s measured per server, {} round(s) per pass; servers one at a time{}",
        args.rate,
        args.warmup,
        args.seconds,
        args.rounds,
        args.server_cpu
            .map_or(", not pinned".to_owned(), |c| format!(
                ", pinned to CPU {c}"
            ))
    );
    let tls = if args.tls {
        Some(tls_setup(&args.work_dir.join("tls"))?)
    } else {
        None
    };
    for pass in PASSES {
        let floor_body = args.work_dir.join(format!("floor-body-{}", pass.file));
        let mut runs: Vec<(Target, Vec<Run>)> = Target::all(&args)
            .into_iter()
            .map(|t| (t, Vec::new()))
            .collect();
        let mut floor_type = String::new();
        for round in 1..=args.rounds {
            for (target, target_runs) in &mut runs {
                eprintln!(
                    "bench: {} round {round}/{}: {} (load {})",
                    pass.file,
                    args.rounds,
                    target.name(),
                    loadavg()
                );
                let run =
                    measure(&args, target, pass, &floor_body, &floor_type, tls.as_ref()).await?;
                if *target == Target::Ours {
                    floor_type.clone_from(&run.load.content_type);
                }
                for e in run.load.errors.iter().take(3) {
                    eprintln!("bench: {}: {e}", target.name());
                }
                target_runs.push(run);
            }
        }
        let summaries: Vec<(Target, Summary)> =
            runs.into_iter().map(|(t, r)| (t, summarize(&r))).collect();
        print!("{}", report(pass, &summaries));
    }
    println!("\n- load average at the end: {}", loadavg());
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    // One thread: the client's own scheduling stays on the CPU it is pinned to.
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        tokio::select! {
            r = run(args) => r,
            // Returning drops the running server, which kills it.
            () = interrupted() => Err("interrupted".to_owned()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn interrupted() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
