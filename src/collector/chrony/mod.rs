//! chronyd over its native command protocol (cmdmon), on the shared model:
//! an adapter of the daemon collector template ([`super::daemon`]), which
//! owns presence, backoff and `clock_daemon_up`.
//!
//! Over UDP (`--collector.chrony.address`, 127.0.0.1:323) chronyd answers the
//! monitoring commands it lists as open: TRACKING, N_SOURCES, SOURCE_DATA and
//! SOURCESTATS. With `--collector.chrony.socket` the exporter talks on
//! chronyd's unix socket instead, which also answers NTP_DATA (per-source
//! delay, dispersion, what the source announces), AUTH_DATA (how each source
//! is authenticated, and its NTS state) and SERVER_STATS (is this host a time
//! server?). AUTH_DATA is asked over UDP once too (chrony 4.7 answers it
//! there with `opencommands`); a refusal is remembered, not reported.
//! Requests go in batches on a channel of [`crate::sys::cmdmon`], each with
//! its own sequence number; replies to other sequence numbers are skipped
//! ([`client`]). The whole query runs
//! under `--collector.chrony.timeout`. The replies become the shared model
//! in [`report`], a pure function tested with captured datagrams.

mod client;
mod counters;
pub mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::daemon::{Adapter, DaemonCollector, Depth, QueryError, Sequences};
use super::flags::{given, timeout};
use super::{CollectError, Collected, Collector, Context, Registration};
use crate::model::{self, Daemon, MAX_PEERS};
use crate::proto::cmdmon::{self, Reply, Request, ServerStats, Status};
use crate::sys::TransportError;
use crate::sys::cmdmon::{Connection, Endpoint, SocketIdentity};
use client::{Client, RequestError};

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
    let udp = *m.get_one::<SocketAddr>(ADDRESS).ok_or("missing address")?;
    let socket = m.get_one::<PathBuf>(SOCKET).cloned();
    let timeout = timeout(m, TIMEOUT)?;
    let explicit = given(m, &[ADDRESS, SOCKET]);
    Ok(Arc::new(collector(udp, socket, timeout, explicit)))
}

/// The chrony collector for chronyd at `udp`, or on the unix `socket` when
/// given. `explicit`: the user configured it, so `clock_daemon_up` is
/// published even before chronyd was ever seen.
pub fn collector(
    udp: SocketAddr,
    socket: Option<PathBuf>,
    timeout: Duration,
    explicit: bool,
) -> DaemonCollector<Chrony> {
    DaemonCollector::new(
        Chrony {
            udp,
            socket,
            timeout,
        },
        explicit,
    )
}

/// The chrony adapter: where chronyd is, and how long a query may take.
#[derive(Debug)]
pub struct Chrony {
    udp: SocketAddr,
    socket: Option<PathBuf>,
    timeout: Duration,
}

/// What the chrony adapter keeps between scrapes.
#[derive(Debug, Default)]
pub struct Memory {
    counters: Monotonic,
    /// Whether SERVER_STATS was asked over UDP (once, to tell the user what
    /// it needs) and whether chronyd answered it there.
    serverstats_over_udp: Option<bool>,
    /// Whether chronyd answered AUTH_DATA over UDP, once asked; and whether
    /// it knows the request at all (chrony before 4.0 does not).
    authdata_over_udp: Option<bool>,
    authdata_unknown: bool,
}

/// What one query read.
#[derive(Debug, Default)]
pub struct Reading {
    /// Tracking and sources; the server counters are added in the report.
    snapshot: Snapshot,
    /// SERVER_STATS as chronyd gave it, with the identity of its socket.
    server: Option<(ServerStats, Option<SocketIdentity>)>,
    /// Requests that failed while others succeeded.
    problems: Vec<CollectError>,
}

impl Adapter for Chrony {
    type Reading = Reading;
    type Memory = Memory;
    const DAEMON: Daemon = Daemon::Chronyd;

    fn endpoint(&self) -> String {
        self.endpoint().to_string()
    }

    async fn query(
        &self,
        depth: Depth,
        sequences: &Sequences,
        memory: &mut Memory,
    ) -> Result<Reading, QueryError> {
        let mut reading = Reading::default();
        let conn = self.connect(&mut reading.problems).await?;
        let mut client = Client::new(&conn, sequences, self.timeout);
        let tracking = client
            .tracking()
            .await
            .map_err(RequestError::into_query_error)?;
        if depth == Depth::Probe {
            return Ok(reading);
        }
        reading.snapshot.tracking = Some(tracking);
        let via_socket = matches!(conn.endpoint(), Endpoint::Unix(_));
        if let Err(e) =
            read_sources(&mut client, &mut reading.snapshot, &mut reading.problems).await
        {
            reading.problems.push(e.into_collect_error());
        }
        if let Err(e) =
            read_per_source(&mut client, &mut reading.snapshot, memory, via_socket).await
        {
            reading.problems.push(e.into_collect_error());
        }
        match read_server_stats(&mut client, memory, via_socket).await {
            Ok(stats) => reading.server = stats.map(|s| (s, conn.socket_identity())),
            Err(e) => reading.problems.push(e.into_collect_error()),
        }
        if client.skipped > 0 {
            tracing::debug!(
                skipped = client.skipped,
                "ignored chrony replies to other requests"
            );
        }
        Ok(reading)
    }

    fn report(&self, mut reading: Reading, memory: &mut Memory) -> Collected {
        if let Some((stats, identity)) = reading.server {
            let (published, event) = memory.counters.update(&stats, identity);
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
            reading.snapshot.server = Some((stats, published));
        }
        let (report, extras) = report(&reading.snapshot);
        let mut families = report.families();
        families.extend(extras);
        Collected {
            families,
            errors: reading.problems,
        }
    }
}

impl Chrony {
    /// Where a query goes first: the socket when configured, else UDP.
    fn endpoint(&self) -> Endpoint {
        match &self.socket {
            Some(p) => Endpoint::Unix(p.clone()),
            None => Endpoint::Udp(self.udp),
        }
    }

    /// Connects on the socket when configured, else (or when the socket
    /// cannot be used, which is recorded as a problem) over UDP. A probe
    /// takes the same way as a full query, so that a chronyd a scrape would
    /// read over the fallback is also found by the probe.
    async fn connect(&self, problems: &mut Vec<CollectError>) -> Result<Connection, QueryError> {
        let opened = |e: TransportError| RequestError::from(e).into_query_error();
        if let Some(path) = &self.socket {
            match Connection::open(&Endpoint::Unix(path.clone())).await {
                Ok(c) => return Ok(c),
                Err(e @ TransportError::Absent(_)) => return Err(opened(e)),
                Err(e) => problems.push(CollectError::Io(format!(
                    "{e}; falling back to UDP {} for the open commands",
                    self.udp
                ))),
            }
        }
        Connection::open(&Endpoint::Udp(self.udp))
            .await
            .map_err(opened)
    }
}

/// Asks SERVER_STATS, unless chronyd refused it over UDP before. `None`
/// when it is not to be had here.
async fn read_server_stats(
    client: &mut Client<'_>,
    memory: &mut Memory,
    via_socket: bool,
) -> Result<Option<ServerStats>, RequestError> {
    if !via_socket && memory.serverstats_over_udp == Some(false) {
        return Ok(None);
    }
    match client.ask(Request::ServerStats).await {
        Ok(Reply::ServerStats(s)) => {
            memory.serverstats_over_udp.get_or_insert(true);
            Ok(Some(s))
        }
        Ok(_) => Err(RequestError::Protocol(
            "unexpected reply to serverstats".into(),
        )),
        Err(RequestError::Refused {
            status: Status::Unauthorised,
            ..
        }) if !via_socket => {
            // Optional over UDP: tell once what it needs, never fail for it.
            memory.serverstats_over_udp = Some(false);
            tracing::info!(
                "serverstats needs the unix socket: set --collector.chrony.socket (chronyd refused it over UDP)"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The addresses of the NTP sources read (not the reference clocks).
fn ntp_sources(snapshot: &Snapshot) -> Vec<std::net::IpAddr> {
    snapshot
        .sources
        .iter()
        .filter(|s| s.mode != cmdmon::SourceMode::Reference)
        .filter_map(|s| s.address.ip())
        .collect()
}

/// Asks, of every NTP source, NTP_DATA (on the socket) and AUTH_DATA, in
/// the same batches: one round trip for both. AUTH_DATA is not asked once
/// chronyd refused it over UDP or does not know it (chrony before 4.0):
/// then the sources' authentication is what NTP_DATA's flag says, or
/// unknown, and neither is a problem.
async fn read_per_source(
    client: &mut Client<'_>,
    snapshot: &mut Snapshot,
    memory: &mut Memory,
    via_socket: bool,
) -> Result<(), RequestError> {
    let auth = !memory.authdata_unknown && (via_socket || memory.authdata_over_udp != Some(false));
    let requests: Vec<Request> = ntp_sources(snapshot)
        .into_iter()
        .flat_map(|ip| {
            let ntp = via_socket.then_some(Request::NtpData(ip));
            ntp.into_iter().chain(auth.then_some(Request::AuthData(ip)))
        })
        .collect();
    for batch in requests.chunks(BATCH) {
        for (request, result) in batch.iter().zip(client.ask_all(batch).await) {
            match (request, result) {
                (_, Ok(Reply::NtpData(d))) => snapshot.ntp_data.push(d),
                (Request::AuthData(ip), Ok(Reply::AuthData(a))) => {
                    memory.authdata_over_udp.get_or_insert(true);
                    snapshot.auth.push((*ip, a));
                }
                (_, Ok(_)) => {
                    return Err(RequestError::Protocol(format!(
                        "unexpected reply to {}",
                        request.name()
                    )));
                }
                // The source list shrank since SOURCE_DATA: skip it.
                (
                    _,
                    Err(RequestError::Refused {
                        status: Status::NoSuchSource,
                        ..
                    }),
                ) => {}
                (
                    Request::AuthData(_),
                    Err(RequestError::Refused {
                        status: Status::Unauthorised,
                        ..
                    }),
                ) if !via_socket => {
                    if memory.authdata_over_udp != Some(false) {
                        tracing::debug!(
                            "chronyd answers authdata only on its unix socket (--collector.chrony.socket)"
                        );
                    }
                    memory.authdata_over_udp = Some(false);
                }
                (
                    Request::AuthData(_),
                    Err(RequestError::Refused {
                        status: Status::Invalid,
                        ..
                    }),
                ) => {
                    if !memory.authdata_unknown {
                        tracing::debug!("chronyd does not know authdata (chrony before 4.0)");
                    }
                    memory.authdata_unknown = true;
                }
                (_, Err(e)) => return Err(e),
            }
        }
    }
    Ok(())
}

/// Reads every source and its statistics.
async fn read_sources(
    client: &mut Client<'_>,
    snapshot: &mut Snapshot,
    problems: &mut Vec<CollectError>,
) -> Result<(), RequestError> {
    let Reply::NSources(n) = client.ask(Request::NSources).await? else {
        return Err(RequestError::Protocol("unexpected reply to sources".into()));
    };
    let read = n.min(MAX_PEERS as u32);
    if n > read {
        problems.push(CollectError::Protocol(format!(
            "chronyd reports {n} sources; the exporter reads the first {read} and skips {}",
            n - read
        )));
    }
    let requests: Vec<Request> = (0..read)
        .flat_map(|i| [Request::SourceData(i), Request::SourceStats(i)])
        .collect();
    for batch in requests.chunks(BATCH) {
        for result in client.ask_all(batch).await {
            match result {
                Ok(Reply::SourceData(d)) => snapshot.sources.push(d),
                Ok(Reply::SourceStats(s)) => snapshot.stats.push(s),
                Ok(_) => return Err(RequestError::Protocol("unexpected reply to sources".into())),
                // The source list shrank during the scrape (a pool replaced a
                // server): skip it; the next scrape sees the new list.
                Err(RequestError::Refused {
                    status: Status::NoSuchSource,
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
