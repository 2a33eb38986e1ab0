//! The HTTP server: `/` (landing page), the telemetry path, `/probe`
//! ([`probe`], SNTP probes of allowed servers), 404 elsewhere,
//! 405 for methods other than GET and HEAD. Bounded everywhere: concurrent
//! scrapes (beyond them a bounded wait in order of arrival, then 503), open
//! connections (the oldest idle one shed for a newcomer, [`connections`]),
//! header size, header-read time.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, ALLOW, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

use crate::diagnose::{findings, history::History, page, unix_now};
use crate::metrics;
use crate::scrape::{Scraper, VERSION};
use connections::{Admission, Held, Table};
use web_config::live::{Security, Verdict};

mod connections;
pub mod probe;
pub mod web_config;

/// The server's limits and paths.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// Where metrics are served.
    pub telemetry_path: String,
    /// Concurrent scrapes.
    pub max_requests: usize,
    /// How long a scrape beyond `max_requests` waits for a turn (in order
    /// of arrival) before it gets 503; zero: 503 at once.
    pub max_requests_wait: Duration,
    /// Open connections; at the limit the oldest idle one is closed to make
    /// room for a new one.
    pub max_connections: usize,
    /// hyper's header read timeout, which also ends idle keep-alive connections.
    pub read_header_timeout: Duration,
    /// How long in-flight requests get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// What `/probe` may do (off unless it allows some addresses).
    pub probe: probe::ProbeConfig,
    /// `--web.config.file`: TLS, basic auth, headers, rate limit
    /// ([`web_config::live::Security::off`] without one).
    pub security: Arc<Security>,
}

/// Largest request head accepted; hyper answers 431 beyond it.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Everything a request handler needs.
#[derive(Debug)]
pub struct App {
    scraper: Arc<Scraper>,
    cfg: WebConfig,
    scrapes: Arc<Semaphore>,
    encoder: metrics::Encoder,
    /// The format of the last `Accept` header negotiated.
    formats: metrics::KeptFormat,
    /// The offset and error bound of recent scrapes, for the landing page.
    history: History,
    /// `/probe`.
    prober: probe::Prober,
}

impl App {
    /// A new application.
    pub fn new(scraper: Arc<Scraper>, cfg: WebConfig) -> Arc<App> {
        let scrapes = Arc::new(Semaphore::new(cfg.max_requests));
        let prober = probe::Prober::new(cfg.probe.clone());
        Arc::new(App {
            prober,
            scraper,
            cfg,
            scrapes,
            encoder: metrics::Encoder::default(),
            formats: metrics::KeptFormat::default(),
            history: History::default(),
        })
    }
}

/// Binds every address. `[::]` falls back to `0.0.0.0` on hosts without IPv6.
pub async fn bind(addrs: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for addr in addrs {
        let listener = match TcpListener::bind(addr).await {
            Err(e) if addr.ip().is_unspecified() && addr.is_ipv6() => {
                tracing::debug!(error = %e, "IPv6 unavailable, listening on IPv4 only");
                TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()))).await
            }
            other => other,
        }
        .map_err(|e| io::Error::new(e.kind(), format!("listen on {addr}: {e}")))?;
        out.push(listener);
    }
    Ok(out)
}

/// Raises the soft open-file limit to the hard limit, as Go's runtime does for
/// every Go exporter; connections stay capped by `--web.max-connections`.
pub fn raise_nofile_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => {
            if let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
                tracing::warn!(error = %e, soft, hard, "could not raise the open-file limit");
            } else {
                tracing::debug!(from = soft, to = hard, "raised the open-file limit");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not read the open-file limit"),
    }
}

/// Serves until `shutdown` completes, then stops accepting and gives
/// in-flight connections `shutdown_grace` to finish.
pub async fn serve(listeners: Vec<TcpListener>, app: Arc<App>, shutdown: impl Future<Output = ()>) {
    let table = Table::new(app.cfg.max_connections);
    let (tx, mut rx) = mpsc::channel::<TcpStream>(64);
    let mut acceptors = tokio::task::JoinSet::new();
    for l in listeners {
        acceptors.spawn(accept_loop(l, tx.clone()));
    }
    drop(tx);

    let builders = Arc::new(Builders::new(&app.cfg));
    let graceful = GracefulShutdown::new();
    // Checks --web.config.file for changes while the server runs.
    let watcher = tokio::spawn(Arc::clone(&app.cfg.security).watch());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            next = rx.recv() => {
                let Some(stream) = next else { break };
                let entry = match table.admit() {
                    Admission::Admitted(e) => e,
                    Admission::AdmittedShedding(e) => {
                        tracing::debug!(
                            open = table.len(),
                            shed_total = table.shed_total(),
                            "--web.max-connections reached: closed the oldest idle connection"
                        );
                        e
                    }
                    Admission::Refused => {
                        tracing::debug!("--web.max-connections reached and every connection is serving a request: refused one");
                        continue;
                    }
                };
                let entry = Arc::new(entry);
                let app = app.clone();
                let requests = entry.clone();
                let svc = service_fn(move |req: Request<Incoming>| {
                    let busy = requests.busy();
                    let app = app.clone();
                    async move {
                        let resp = handle(app, req).await?;
                        Ok::<_, Infallible>(resp.map(|body| Held::new(body, busy)))
                    }
                });
                let connection = builders.clone().connection(stream, svc, graceful.watcher());
                tokio::spawn(async move {
                    tokio::select! {
                        () = connection => {}
                        // Shed to make room for a newer connection (one
                        // still in its TLS handshake is idle too): dropping
                        // the connection closes it.
                        () = entry.shed() => {}
                    }
                });
            }
        }
    }
    watcher.abort();
    acceptors.abort_all();
    tracing::info!("shutting down");
    if tokio::time::timeout(app.cfg.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the shutdown grace period; closing them");
    }
}

/// How connections are served: HTTP/1.1, and HTTP/2 where TLS negotiated it.
struct Builders {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    security: Arc<Security>,
    handshake_timeout: Duration,
}

impl Builders {
    fn new(cfg: &WebConfig) -> Builders {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(cfg.read_header_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .keep_alive(true);
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            // Scrapes are bounded by --web.max-requests; streams beyond
            // that would only wait.
            .max_concurrent_streams(u32::try_from(cfg.max_requests.clamp(1, 256)).unwrap_or(256))
            // An idle HTTP/2 connection is pinged and closed when the peer
            // is gone, as the header-read timeout ends an idle HTTP/1 one.
            .keep_alive_interval(Some(cfg.read_header_timeout))
            .keep_alive_timeout(cfg.read_header_timeout);
        Builders {
            http1: h1,
            http2: h2,
            security: Arc::clone(&cfg.security),
            handshake_timeout: cfg.read_header_timeout,
        }
    }

    /// Serves one connection to its end: the TLS handshake first when TLS
    /// is on (bounded by the header-read timeout; a failure is logged at
    /// debug, rate-limited), then HTTP.
    async fn connection<S>(
        self: Arc<Self>,
        stream: TcpStream,
        svc: S,
        watcher: hyper_util::server::graceful::Watcher,
    ) where
        S: hyper::service::HttpService<Incoming, ResBody = Held<Full<Bytes>>>
            + Clone
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let active = self.security.current();
        let Some(acceptor) = &active.acceptor else {
            let conn = self.http1.serve_connection(TokioIo::new(stream), svc);
            log_end(watcher.watch(conn).await);
            return;
        };
        let tls = match tokio::time::timeout(self.handshake_timeout, acceptor.accept(stream)).await
        {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => return self.security.handshake_failed(&e),
            Err(_) => {
                return self
                    .security
                    .handshake_failed(&"no handshake within --web.read-header-timeout");
            }
        };
        let (_, session) = tls.get_ref();
        if active.require_cert && session.peer_certificates().is_none() {
            return self.security.handshake_failed(
                &"the client sent no certificate, and client_allowed_sans needs one",
            );
        }
        let h2 = session.alpn_protocol() == Some(b"h2");
        drop(active);
        if h2 {
            let conn = self.http2.serve_connection(TokioIo::new(tls), svc);
            log_end(watcher.watch(conn).await);
        } else {
            let conn = self.http1.serve_connection(TokioIo::new(tls), svc);
            log_end(watcher.watch(conn).await);
        }
    }
}

fn log_end<E: std::fmt::Display>(ended: Result<(), E>) {
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Accepts connections as they come. The table decides what to keep: at
/// the limit it sheds an idle connection rather than leaving new ones in
/// the kernel's backlog (see [`connections`]).
async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<TcpStream>) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(5);
                let _ = stream.set_nodelay(true);
                if tx.send(stream).await.is_err() {
                    return;
                }
            }
            Err(e) if is_resource_exhaustion(&e) => {
                // EMFILE and friends: accepting again at once would spin.
                tracing::warn!(error = %e, retry_in = ?backoff, "accept failed: out of resources");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => tracing::debug!(error = %e, "accept failed"),
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

type Resp = Response<Full<Bytes>>;

fn text_response(status: StatusCode, body: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_owned())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Answers one request, on every path behind `--web.config.file`'s rate
/// limit and basic auth, with its headers (as exporter-toolkit: a 429 gets
/// none, a 401 gets them). Generic over the body, which is never read.
pub async fn handle<B>(app: Arc<App>, req: Request<B>) -> Result<Resp, Infallible> {
    let security = &app.cfg.security;
    let active = security.current();
    let mut r = match security.admit(&active, req.headers()).await {
        Verdict::Limited => {
            return Ok(text_response(
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests\n",
            ));
        }
        Verdict::Unauthorized => {
            let mut r = text_response(StatusCode::UNAUTHORIZED, "Unauthorized\n");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Basic"));
            r
        }
        Verdict::In => route(&app, req).await,
    };
    for (name, value) in &active.headers {
        r.headers_mut().insert(name.clone(), value.clone());
    }
    Ok(r)
}

/// Routes a request let in.
async fn route<B>(app: &Arc<App>, req: Request<B>) -> Resp {
    let path = req.uri().path();
    let is_metrics = path == app.cfg.telemetry_path;
    let is_probe = path == "/probe";
    if !(is_metrics || is_probe || path == "/") {
        return text_response(StatusCode::NOT_FOUND, "404 page not found\n");
    }
    let head = match *req.method() {
        Method::GET => false,
        Method::HEAD => true,
        _ => {
            let mut r = text_response(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
    };
    if is_probe {
        let format = app
            .formats
            .negotiate(req.headers().get(ACCEPT).map(HeaderValue::as_bytes));
        if head {
            // A HEAD asks for headers only: no packets are sent for it.
            let mut r = Response::new(Full::new(Bytes::new()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            );
            return r;
        }
        return app
            .prober
            .handle(req.uri().query().unwrap_or_default(), req.headers(), format)
            .await;
    }
    if !is_metrics {
        let body = if head {
            Bytes::new()
        } else {
            let Some(_permit) = scrape_permit(app).await else {
                return busy();
            };
            let families = app.scraper.scrape().await;
            app.history.record(&families, unix_now());
            Bytes::from(landing_page(app, &families))
        };
        let mut r = Response::new(Full::new(body));
        r.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        return r;
    }

    let format = app
        .formats
        .negotiate(req.headers().get(ACCEPT).map(HeaderValue::as_bytes));
    let body = if head {
        Bytes::new()
    } else {
        let Some(_permit) = scrape_permit(app).await else {
            return busy();
        };
        let families = app.scraper.scrape().await;
        app.history.record(&families, unix_now());
        app.encoder.encode(families, format)
    };
    let mut r = Response::new(Full::new(body));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

fn busy() -> Resp {
    tracing::debug!("scrape refused: --web.max-requests busy for --web.max-requests-wait");
    text_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "503 too many concurrent scrapes (--web.max-requests, waited --web.max-requests-wait)\n",
    )
}

/// A turn to scrape: at once when one of `--web.max-requests` is free,
/// else after those that came first (tokio's semaphore is fair), for at most
/// `--web.max-requests-wait`. Waiting costs only the connection, which the
/// connection table bounds; a client scraping in a loop gets no more turns
/// than its place in the queue, so a scraper at Prometheus' pace is served
/// beside 200 of them.
async fn scrape_permit(app: &App) -> Option<tokio::sync::SemaphorePermit<'_>> {
    if let Ok(p) = app.scrapes.try_acquire() {
        return Some(p);
    }
    if app.cfg.max_requests_wait.is_zero() {
        return None;
    }
    tokio::time::timeout(app.cfg.max_requests_wait, app.scrapes.acquire())
        .await
        .ok()?
        .ok()
}

/// The landing page: the verdict on this scrape, the recent history, and
/// the collectors with their last status.
pub fn landing_page(app: &App, families: &[metrics::Family]) -> String {
    let verdict = findings::verdict(families, unix_now(), &findings::Limits::default());
    let rows: Vec<page::CollectorRow> = app
        .scraper
        .statuses()
        .into_iter()
        .map(|(name, status)| {
            let (state, detail) = match status {
                None => ("not scraped yet".to_owned(), String::new()),
                Some(s) if s.success && s.message.as_str().starts_with("no data") => (
                    format!("no data ({:.3} s)", s.duration.as_secs_f64()),
                    s.message.as_str().to_owned(),
                ),
                Some(s) if s.success => (
                    format!("ok ({:.3} s)", s.duration.as_secs_f64()),
                    s.message.as_str().to_owned(),
                ),
                Some(s) => (
                    format!("failed ({:.3} s)", s.duration.as_secs_f64()),
                    s.message.as_str().to_owned(),
                ),
            };
            (name.to_owned(), state, detail)
        })
        .collect();
    page::landing(
        &verdict,
        &app.history.points(),
        &rows,
        &app.cfg.telemetry_path,
        VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            page::escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }

    #[test]
    fn exhaustion_errors() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
