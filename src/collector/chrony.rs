//! chronyd over its native command protocol (cmdmon), on the shared model.
//!
//! Over UDP (`--collector.chrony.address`, 127.0.0.1:323) chronyd answers the
//! monitoring commands it lists as open: TRACKING, N_SOURCES, SOURCE_DATA and
//! SOURCESTATS. With `--collector.chrony.socket` the exporter talks on
//! chronyd's unix socket instead, which also answers NTP_DATA (per-source
//! delay, dispersion, what the source announces) and SERVER_STATS (is this
//! host a time server?). Requests go one at a time, each with a random
//! sequence number; replies to other sequence numbers are skipped. The whole
//! query runs under `--collector.chrony.timeout`.
//!
//! [`Presence`] keeps a host without chronyd cheap: once chronyd does not
//! answer, scrapes skip it and a background probe retries with backoff.

mod counters;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::parser::ValueSource;
use tokio::time::Instant;

use super::daemon::{Gate, Presence};
use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration};
use crate::model::{self, Daemon};
use crate::proto::cmdmon::{self, MAX_DATAGRAM, MAX_SOURCES, Reply, ReplyError, Request, Status};
use crate::sys::cmdmon::{Connection, Endpoint, TransportError};

pub use counters::Monotonic;
pub use report::{Snapshot, report};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "chrony",
    help: "chronyd's tracking, sources and server statistics over its command protocol",
    default_enabled: true,
    metrics: &[model::METRICS, report::METRICS],
    args,
    build,
};

const ADDRESS: &str = "collector.chrony.address";
const SOCKET: &str = "collector.chrony.socket";
const TIMEOUT: &str = "collector.chrony.timeout";

/// How often an unanswered request is sent again within the timeout.
const RESEND: Duration = Duration::from_millis(300);
/// Requests sent at once: a burst that any socket buffer holds.
const BATCH: usize = 32;

fn args() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new(ADDRESS)
            .long(ADDRESS)
            .value_name("HOST:PORT")
            .default_value("127.0.0.1:323")
            .value_parser(clap::value_parser!(std::net::SocketAddr))
            .help("chronyd's command address (UDP); chronyd answers the monitoring commands there from localhost."),
        clap::Arg::new(SOCKET)
            .long(SOCKET)
            .value_name("PATH")
            .value_parser(clap::value_parser!(PathBuf))
            .help("chronyd's unix command socket (e.g. /run/chrony/chronyd.sock); used instead of UDP, and needed for serverstats and per-source delay. The exporter needs write access to its directory (see docs/metrics.md)."),
        clap::Arg::new(TIMEOUT)
            .long(TIMEOUT)
            .value_name("DURATION")
            .default_value("1s")
            .value_parser(super::flags::parse_duration)
            .help("Longest a scrape waits for chronyd's answers."),
    ]
}

fn build(m: &clap::ArgMatches, _ctx: &Context) -> Result<Arc<dyn Collector>, String> {
    let udp = *m
        .get_one::<std::net::SocketAddr>(ADDRESS)
        .ok_or("missing address")?;
    let socket = m.get_one::<PathBuf>(SOCKET).cloned();
    let timeout = *m.get_one::<Duration>(TIMEOUT).ok_or("missing timeout")?;
    let explicit = m.value_source(ADDRESS) == Some(ValueSource::CommandLine) || socket.is_some();
    Ok(Arc::new(Chrony::new(udp, socket, timeout, explicit)))
}

/// The chrony collector.
#[derive(Debug)]
pub struct Chrony {
    udp: std::net::SocketAddr,
    socket: Option<PathBuf>,
    timeout: Duration,
    presence: Presence,
    state: tokio::sync::Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    counters: Monotonic,
    /// Whether SERVER_STATS was asked over UDP (once, to tell the user what
    /// it needs) and whether chronyd answered it there.
    serverstats_over_udp: Option<bool>,
}

impl Chrony {
    /// A collector for chronyd at `udp`, or on the unix `socket` when given.
    /// `explicit`: the user configured it, so `clock_daemon_up` is published
    /// even before chronyd was ever seen.
    pub fn new(
        udp: std::net::SocketAddr,
        socket: Option<PathBuf>,
        timeout: Duration,
        explicit: bool,
    ) -> Chrony {
        Chrony {
            udp,
            socket,
            timeout,
            presence: Presence::new(Daemon::Chronyd.label(), explicit),
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    fn down(&self, errors: Vec<CollectError>) -> Collected {
        let mut families = Vec::new();
        if self.presence.publish_up() {
            families.push(model::up_family(Daemon::Chronyd, false));
        }
        Collected { families, errors }
    }

    async fn run(self: Arc<Self>) -> Collected {
        match self.presence.gate(Instant::now()) {
            Gate::Query => {}
            Gate::Skip => return self.down(Vec::new()),
            Gate::SkipAndProbe => {
                let me = self.clone();
                tokio::spawn(async move { me.probe().await });
                return self.down(Vec::new());
            }
        }
        let mut state = self.state.lock().await;
        let mut errors = Vec::new();
        let conn = match self.connect(&mut errors).await {
            Ok(c) => c,
            Err(e) => return self.not_answering(&e, errors),
        };
        let mut client = Client::new(&conn, self.timeout);
        let tracking = match client.tracking().await {
            Ok(t) => t,
            Err(e) => return self.not_answering(&e, errors),
        };
        self.presence.record(Instant::now(), Ok(()));
        let mut snapshot = Snapshot {
            tracking: Some(tracking),
            ..Snapshot::default()
        };
        let via_socket = matches!(conn.endpoint(), Endpoint::Unix(_));
        if let Err(e) = read_sources(&mut client, &mut snapshot, via_socket).await {
            errors.push(e.into_collect_error());
        }
        if let Err(e) = self
            .read_server_stats(&mut client, &mut state, &mut snapshot, &conn)
            .await
        {
            errors.push(e.into_collect_error());
        }
        if client.skipped > 0 {
            tracing::debug!(
                skipped = client.skipped,
                "ignored chrony replies to other requests"
            );
        }
        let (report, extras) = report(&snapshot);
        let mut families = vec![model::up_family(Daemon::Chronyd, true)];
        families.extend(report.families());
        families.extend(extras);
        Collected { families, errors }
    }

    /// Connects on the socket when configured, else (or when the socket
    /// cannot be used, which is recorded as an error) over UDP.
    async fn connect(&self, errors: &mut Vec<CollectError>) -> Result<Connection, QueryError> {
        if let Some(path) = &self.socket {
            match Connection::open(&Endpoint::Unix(path.clone())).await {
                Ok(c) => return Ok(c),
                Err(TransportError::Absent(s)) => return Err(QueryError::Absent(s)),
                Err(e) => errors.push(CollectError::Io(format!(
                    "{e}; falling back to UDP {} for the open commands",
                    self.udp
                ))),
            }
        }
        Connection::open(&Endpoint::Udp(self.udp))
            .await
            .map_err(QueryError::from)
    }

    /// chronyd did not answer the first request: record it for [`Presence`].
    fn not_answering(&self, e: &QueryError, mut errors: Vec<CollectError>) -> Collected {
        let message = e.to_string();
        self.presence.record(Instant::now(), Err(&message));
        errors.push(match e {
            // Not running: the usual state of a host without chronyd.
            QueryError::Absent(_) => CollectError::NoData(message),
            _ => e.clone().into_collect_error(),
        });
        self.down(errors)
    }

    async fn probe(&self) {
        let endpoint = match &self.socket {
            Some(p) => Endpoint::Unix(p.clone()),
            None => Endpoint::Udp(self.udp),
        };
        let result = match Connection::open(&endpoint).await {
            Ok(conn) => Client::new(&conn, self.timeout)
                .tracking()
                .await
                .map(|_| ()),
            Err(e) => Err(e.into()),
        };
        let message = result.as_ref().err().map(ToString::to_string);
        self.presence
            .record(Instant::now(), message.as_deref().map_or(Ok(()), Err));
    }

    async fn read_server_stats(
        &self,
        client: &mut Client<'_>,
        state: &mut State,
        snapshot: &mut Snapshot,
        conn: &Connection,
    ) -> Result<(), QueryError> {
        let via_socket = matches!(conn.endpoint(), Endpoint::Unix(_));
        if !via_socket && state.serverstats_over_udp == Some(false) {
            return Ok(());
        }
        match client.ask(Request::ServerStats).await {
            Ok(Reply::ServerStats(s)) => {
                state.serverstats_over_udp.get_or_insert(true);
                let (published, event) = state.counters.update(&s, conn.socket_identity());
                match event {
                    counters::Event::Restarted => {
                        tracing::info!("chronyd restarted: its server counters start again");
                    }
                    counters::Event::Continued { wraps } if wraps > 0 => {
                        tracing::info!(
                            wraps,
                            "chronyd's 32-bit server counters wrapped; the published counters continue"
                        );
                    }
                    _ => {}
                }
                snapshot.server = Some((s, published));
                Ok(())
            }
            Ok(_) => Err(QueryError::Protocol(
                "unexpected reply to serverstats".into(),
            )),
            Err(QueryError::Refused {
                status: Status::Unauthorised,
                ..
            }) if !via_socket => {
                // Optional over UDP: tell once what it needs, never fail for it.
                state.serverstats_over_udp = Some(false);
                tracing::info!(
                    "serverstats needs the unix socket: set --collector.chrony.socket (chronyd refused it over UDP)"
                );
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Collector for Chrony {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(self.run())
    }
}

/// Reads every source, its statistics, and with the socket its NTP data.
async fn read_sources(
    client: &mut Client<'_>,
    snapshot: &mut Snapshot,
    via_socket: bool,
) -> Result<(), QueryError> {
    let Reply::NSources(n) = client.ask(Request::NSources).await? else {
        return Err(QueryError::Protocol("unexpected reply to sources".into()));
    };
    if n > MAX_SOURCES {
        return Err(QueryError::Protocol(format!(
            "chronyd reports {n} sources, more than the {MAX_SOURCES} this exporter reads"
        )));
    }
    let requests: Vec<Request> = (0..n)
        .flat_map(|i| [Request::SourceData(i), Request::SourceStats(i)])
        .collect();
    for batch in requests.chunks(BATCH) {
        for result in client.ask_all(batch).await {
            match result {
                Ok(Reply::SourceData(d)) => snapshot.sources.push(d),
                Ok(Reply::SourceStats(s)) => snapshot.stats.push(s),
                Ok(_) => return Err(QueryError::Protocol("unexpected reply to sources".into())),
                // The source list shrank during the scrape (a pool replaced a
                // server): skip it; the next scrape sees the new list.
                Err(QueryError::Refused {
                    status: Status::NoSuchSource,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    if via_socket {
        let ips: Vec<_> = snapshot
            .sources
            .iter()
            .filter(|s| s.mode != cmdmon::SourceMode::Reference)
            .filter_map(|s| s.address.ip())
            .collect();
        let requests: Vec<Request> = ips.into_iter().map(Request::NtpData).collect();
        for batch in requests.chunks(BATCH) {
            for result in client.ask_all(batch).await {
                match result {
                    Ok(Reply::NtpData(d)) => snapshot.ntp_data.push(d),
                    Ok(_) => {
                        return Err(QueryError::Protocol("unexpected reply to ntpdata".into()));
                    }
                    Err(QueryError::Refused {
                        status: Status::NoSuchSource,
                        ..
                    }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(())
}

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum QueryError {
    /// Nobody answers: chronyd is not running there.
    Absent(String),
    /// No reply to a request before the deadline.
    Timeout {
        request: &'static str,
        endpoint: String,
        timeout: Duration,
        skipped: u32,
    },
    /// chronyd refused a request.
    Refused {
        request: Request,
        status: Status,
        endpoint: String,
    },
    /// The reply was not understood.
    Protocol(String),
    /// The operating system refused access.
    Permission(String),
    /// Other IO failures.
    Io(String),
}

impl From<TransportError> for QueryError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Absent(s) => QueryError::Absent(s),
            TransportError::Permission(s) => QueryError::Permission(s),
            TransportError::Io(s) => QueryError::Io(s),
        }
    }
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Absent(s)
            | QueryError::Protocol(s)
            | QueryError::Permission(s)
            | QueryError::Io(s) => f.write_str(s),
            QueryError::Timeout {
                request,
                endpoint,
                timeout,
                skipped,
            } => {
                write!(
                    f,
                    "no reply to {request} from {endpoint} within {timeout:?}"
                )?;
                if *skipped > 0 {
                    write!(
                        f,
                        " ({skipped} replies with other sequence numbers ignored)"
                    )?;
                }
                Ok(())
            }
            QueryError::Refused {
                request,
                status,
                endpoint,
            } => {
                write!(
                    f,
                    "chronyd refused {} on {endpoint}: {status}",
                    request.name()
                )?;
                match (status, endpoint.starts_with("udp")) {
                    (Status::Unauthorised, true)
                        if matches!(request, Request::ServerStats | Request::NtpData(_)) =>
                    {
                        write!(
                            f,
                            "; {} needs the unix socket: set --collector.chrony.socket",
                            request.name()
                        )
                    }
                    (Status::Unauthorised, true) => f.write_str(
                        "; chronyd answers UDP commands from localhost and from hosts its cmdallow lists",
                    ),
                    (Status::BadPacketVersion, _) => f.write_str(
                        "; this exporter speaks cmdmon protocol version 6 (chrony 2.2 and later)",
                    ),
                    _ => Ok(()),
                }
            }
        }
    }
}

impl QueryError {
    fn into_collect_error(self) -> CollectError {
        match self {
            QueryError::Absent(_) => CollectError::NoData(self.to_string()),
            QueryError::Protocol(_) | QueryError::Refused { .. } => {
                CollectError::Protocol(self.to_string())
            }
            QueryError::Timeout { .. } | QueryError::Permission(_) | QueryError::Io(_) => {
                CollectError::Io(self.to_string())
            }
        }
    }
}

static SEQUENCES: AtomicU64 = AtomicU64::new(0);

/// A random sequence number, as chronyc draws one for every request: a late
/// reply to an abandoned request can then never be taken for a new one's.
/// std's `RandomState` is seeded from the operating system's randomness.
fn random_sequence() -> u32 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new()
        .hash_one(SEQUENCES.fetch_add(1, Ordering::Relaxed)) as u32
}

/// Asks chronyd one request at a time until the deadline.
struct Client<'a> {
    conn: &'a Connection,
    deadline: Instant,
    timeout: Duration,
    skipped: u32,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl<'a> Client<'a> {
    fn new(conn: &'a Connection, timeout: Duration) -> Client<'a> {
        Client {
            conn,
            deadline: Instant::now() + timeout,
            timeout,
            skipped: 0,
            buf: Box::new([0u8; MAX_DATAGRAM]),
        }
    }

    async fn tracking(&mut self) -> Result<cmdmon::Tracking, QueryError> {
        match self.ask(Request::Tracking).await? {
            Reply::Tracking(t) => Ok(t),
            _ => Err(QueryError::Protocol("unexpected reply to tracking".into())),
        }
    }

    async fn ask(&mut self, request: Request) -> Result<Reply, QueryError> {
        self.ask_all(&[request])
            .await
            .pop()
            .unwrap_or_else(|| Err(QueryError::Protocol("no request".into())))
    }

    /// Sends the requests at once, each with its own random sequence number,
    /// and matches the replies to them by sequence number: chronyd answers
    /// each datagram on its own, so a scrape costs one round trip per batch
    /// rather than one per request. Unanswered requests are sent again every
    /// [`RESEND`], as chronyc does, until the deadline.
    async fn ask_all(&mut self, requests: &[Request]) -> Vec<Result<Reply, QueryError>> {
        let mut results: Vec<Option<Result<Reply, QueryError>>> =
            requests.iter().map(|_| None).collect();
        let sequences: Vec<u32> = requests.iter().map(|_| random_sequence()).collect();
        let datagrams: Vec<Vec<u8>> = requests
            .iter()
            .zip(&sequences)
            .map(|(r, s)| r.encode(*s))
            .collect();
        if let Err(e) = self.send_pending(&datagrams, &results).await {
            return fill(results, &e);
        }
        let mut pending = requests.len();
        let mut resend_at = Instant::now() + RESEND;
        while pending > 0 {
            let wait_until = resend_at.min(self.deadline);
            let n = match tokio::time::timeout_at(wait_until, self.conn.recv(&mut self.buf[..]))
                .await
            {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return fill(results, &e.into()),
                Err(_) if Instant::now() >= self.deadline => {
                    for (slot, request) in results.iter_mut().zip(requests) {
                        slot.get_or_insert_with(|| {
                            Err(QueryError::Timeout {
                                request: request.name(),
                                endpoint: self.conn.endpoint().to_string(),
                                timeout: self.timeout,
                                skipped: self.skipped,
                            })
                        });
                    }
                    break;
                }
                Err(_) => {
                    // Lost on the way, or chronyd was busy: ask again with the
                    // same sequence numbers.
                    if let Err(e) = self.send_pending(&datagrams, &results).await {
                        return fill(results, &e);
                    }
                    resend_at += RESEND;
                    continue;
                }
            };
            let endpoint = self.conn.endpoint().to_string();
            let bytes = &self.buf[..n];
            if n >= MAX_DATAGRAM {
                let e = QueryError::Protocol(format!(
                    "reply from {endpoint} is {n} bytes or more, too long for chronyd"
                ));
                return fill(results, &e);
            }
            let header = match cmdmon::ReplyHeader::parse(bytes) {
                Ok(h) => h,
                Err(e) => {
                    let e = QueryError::Protocol(format!("reply from {endpoint}: {e}"));
                    return fill(results, &e);
                }
            };
            let Some(i) = (0..requests.len())
                .find(|&i| sequences[i] == header.sequence && results[i].is_none())
            else {
                self.skipped += 1;
                continue;
            };
            let request = requests[i];
            results[i] = match cmdmon::decode_reply(request, sequences[i], bytes) {
                Ok(reply) => Some(Ok(reply)),
                Err(ReplyError::NotOurs { .. }) => {
                    self.skipped += 1;
                    continue;
                }
                Err(ReplyError::Refused(status)) => Some(Err(QueryError::Refused {
                    request,
                    status,
                    endpoint,
                })),
                Err(ReplyError::Parse(e)) => Some(Err(QueryError::Protocol(format!(
                    "reply to {} from {endpoint}: {e}",
                    request.name()
                )))),
            };
            pending -= 1;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(QueryError::Protocol("unanswered".into()))))
            .collect()
    }

    async fn send_pending(
        &self,
        datagrams: &[Vec<u8>],
        results: &[Option<Result<Reply, QueryError>>],
    ) -> Result<(), QueryError> {
        for (d, r) in datagrams.iter().zip(results) {
            if r.is_none() {
                self.conn.send(d).await?;
            }
        }
        Ok(())
    }
}

/// Every request not answered yet fails with `e`.
fn fill(
    results: Vec<Option<Result<Reply, QueryError>>>,
    e: &QueryError,
) -> Vec<Result<Reply, QueryError>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(e.clone())))
        .collect()
}

#[cfg(test)]
mod tests;
