//! ntpd (classic or NTPsec) over its mode-6 control protocol: what `ntpq -p`,
//! `ntpq -c associations`, `ntpq -c rv` and `ntpq -c sysstats` show, read
//! natively (nothing is executed).
//!
//! One query costs two round trips however many peers ntpd has: the
//! association list, the system variables and the system statistics are
//! requested together, then every association's variables and its packet
//! counter, all on one UDP socket, each request with its own sequence number
//! (see [`query`]). The decoded answers become the shared model
//! (`clock_sync_*`, `clock_peer_*`) in [`Reading::report`], a pure function
//! tested with datagrams captured from a real ntpd. The client requests ntpd
//! answered (`clock_server_requests_total`) need the previous scrape's
//! counters too: [`served`] keeps them.
//!
//! A host running chronyd on :123 drops mode-6 packets silently, and one
//! running no daemon refuses them: [`Presence`] remembers that, so such a
//! host costs a scrape the collector's timeout at most once per backoff.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Arg, ArgMatches};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::daemon::{Gate, Presence};
use super::flags::{bool_flag, flag, parse_duration};
use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration};
use crate::metrics::{Family, labels, metrics};
use crate::model::{self, Daemon, DaemonReport, Peer, PeerKind, PeerState, SyncStatus};
use crate::proto::mode6::{
    self, AssocId, DEFAULT_RESPONSE_LIMIT, ErrorCode, Fragment, Opcode, PeerCounters, PeerReading,
    PeerStatus, PeerVariables, Progress, Reassembler, ReassemblyError, Response, Selection,
    Sequence, SystemStats, SystemStatus, SystemVariables, Variables,
};
use served::{Sample, Served, SystemCounts};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "ntpd",
    help: "ntpd (classic or NTPsec) over its mode-6 control protocol, what ntpq shows",
    default_enabled: true,
    metrics: &[model::METRICS, METRICS],
    args,
    build,
};

/// Where ntpd listens by default.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:123";

/// How long one query may take by default. ntpd answers on loopback within a
/// millisecond; a host whose :123 drops mode 6 (chronyd) costs this once per
/// backoff.
pub const DEFAULT_TIMEOUT: &str = "1s";

/// Requests in flight at once: two for each of 32 associations (its
/// variables, up to three fragments, and its one-fragment packet counter),
/// enough for any usual ntpd in one round trip, few enough that the answers
/// fit a default socket receive buffer.
pub const WINDOW: usize = 64;

metrics! {
    /// The families only ntpd emits; the shared model's are listed beside
    /// them in the collector's registration.
    pub static METRICS = [
        PEER_REACH_REGISTER: Gauge(
            "clock_ntpd_peer_reach_register",
            ["peer"],
            "The peer's 8-bit reach register as a number (ntpq prints it in octal); bit 0 is the latest poll, set when it was answered."
        ),
        PEER_HOST_MODE: Gauge(
            "clock_ntpd_peer_host_mode",
            ["peer"],
            "The association mode ntpd uses with the peer (hmode): 1 symmetric active, 2 symmetric passive, 3 client, 5 broadcast server, 6 broadcast client."
        ),
        PEER_SELECTION_CODE: Gauge(
            "clock_ntpd_peer_selection_code",
            ["peer"],
            "The raw selection code ntpd gives the peer, (status >> 8) & 7: 0 reject, 1 falsetick, 2 excess, 3 outlier, 4 candidate, 5 backup, 6 sys.peer, 7 pps.peer."
        ),
        CONTROL_REQUESTS: Counter(
            "clock_ntpd_control_requests",
            [],
            "Mode-6 control requests ntpd received since it started (ss_numctlreq, NTPsec only), including this exporter's."
        ),
        INFO: Gauge(
            "clock_ntpd_info",
            ["version"],
            "The version string of the ntpd that answered."
        ),
    ];
}

fn args() -> Vec<Arg> {
    let mut a = vec![
        Arg::new("collector.ntpd.address")
            .long("collector.ntpd.address")
            .value_name("IP:PORT")
            .default_value(DEFAULT_ADDRESS)
            .value_parser(parse_address)
            .help("Address of ntpd's mode-6 control port, a literal IP and port. Setting it also publishes clock_daemon_up{daemon=\"ntpd\"} before ntpd was ever seen."),
        Arg::new("collector.ntpd.timeout")
            .long("collector.ntpd.timeout")
            .value_name("DURATION")
            .default_value(DEFAULT_TIMEOUT)
            .value_parser(parse_duration)
            .help("Longest wait for ntpd's answers in one scrape; a daemon that does not answer is then skipped and retried with backoff."),
    ];
    a.extend(bool_flag(
        "collector.ntpd.allow-remote",
        false,
        "Allow a non-loopback --collector.ntpd.address (mode 6 travels unauthenticated)",
    ));
    a
}

fn parse_address(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?}: expected a literal IP and port, e.g. 127.0.0.1:123 or [::1]:123")
    })
}

fn build(m: &ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    let address = *m
        .get_one::<SocketAddr>("collector.ntpd.address")
        .ok_or("--collector.ntpd.address is missing")?;
    let timeout = *m
        .get_one::<Duration>("collector.ntpd.timeout")
        .ok_or("--collector.ntpd.timeout is missing")?;
    if timeout.is_zero() {
        return Err("--collector.ntpd.timeout must be longer than 0".into());
    }
    if !address.ip().to_canonical().is_loopback() && !flag(m, "collector.ntpd.allow-remote") {
        return Err(format!(
            "--collector.ntpd.address {address} is not a loopback address; mode 6 is unauthenticated, so querying another host needs --collector.ntpd.allow-remote"
        ));
    }
    let explicit = matches!(
        m.value_source("collector.ntpd.address"),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    );
    Ok(Arc::new(Ntpd::new(address, timeout, explicit)))
}

/// The ntpd collector.
#[derive(Debug)]
pub struct Ntpd {
    address: SocketAddr,
    timeout: Duration,
    presence: Presence,
    sequence: AtomicU16,
    /// The counters behind `clock_server_requests_total`, and the lock that
    /// makes full queries take turns, so that readings reach it in order.
    served: tokio::sync::Mutex<Served>,
    /// Why a scrape skipped ntpd, made once (it is the same every time).
    skipped: String,
}

impl Ntpd {
    /// A collector for ntpd at `address`; `explicit` when the user configured
    /// the address, so that `clock_daemon_up` is published before ntpd was seen.
    pub fn new(address: SocketAddr, timeout: Duration, explicit: bool) -> Ntpd {
        // Start sequence numbers somewhere else on every run, so answers
        // meant for a previous exporter process can never match.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Ntpd {
            address,
            timeout,
            presence: Presence::new(Daemon::Ntpd.label(), explicit),
            sequence: AtomicU16::new(seed as u16),
            served: tokio::sync::Mutex::new(Served::default()),
            skipped: format!(
                "ntpd at {address} did not answer; skipped until a background probe finds it"
            ),
        }
    }

    fn down(&self, error: CollectError) -> Collected {
        let mut families = Vec::new();
        if self.presence.publish_up() {
            families.push(model::up_family(Daemon::Ntpd, false));
        }
        Collected {
            families,
            errors: vec![error],
        }
    }

    /// Queries ntpd on a task of its own, so that the outcome is recorded in
    /// [`Presence`] even if the scrape's timeout abandons this collector.
    async fn query_recorded(self: Arc<Self>, full: bool) -> Result<Reading, QueryError> {
        let me = self.clone();
        let task = tokio::spawn(async move {
            let result = query(me.address, me.timeout, &me.sequence, full).await;
            // A local socket error is recorded as not answering too: a
            // background probe must always record, or none would follow.
            match &result {
                Ok(_) | Err(QueryError::Protocol(_)) => me.presence.record(Instant::now(), Ok(())),
                Err(QueryError::Absent(why) | QueryError::Io(why)) => {
                    me.presence.record(Instant::now(), Err(why));
                }
            }
            result
        });
        task.await
            .unwrap_or_else(|e| Err(QueryError::Io(format!("ntpd query task failed: {e}"))))
    }
}

impl Collector for Ntpd {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(async move {
            match self.presence.gate(Instant::now()) {
                Gate::Query => {}
                gate => {
                    if gate == Gate::SkipAndProbe {
                        let me = self.clone();
                        tokio::spawn(async move {
                            let _ = me.query_recorded(false).await;
                        });
                    }
                    return self.down(CollectError::NoData(self.skipped.clone()));
                }
            }
            let mut served = self.served.lock().await;
            match self.clone().query_recorded(true).await {
                Ok(reading) => {
                    let requests = served_requests(&mut served, &reading);
                    let mut out = Collected {
                        families: reading.families(requests),
                        errors: reading
                            .problems
                            .iter()
                            .map(|p| CollectError::Protocol(p.clone()))
                            .collect(),
                    };
                    out.families.push(model::up_family(Daemon::Ntpd, true));
                    out
                }
                // The daemon answered, but not with anything usable.
                Err(QueryError::Protocol(why)) => Collected {
                    families: vec![model::up_family(Daemon::Ntpd, true)],
                    errors: vec![CollectError::Protocol(why)],
                },
                // Absent is the normal state of a host without ntpd: the
                // series say so, and it is not a collector failure.
                Err(QueryError::Absent(why)) => self.down(CollectError::NoData(why)),
                Err(QueryError::Io(why)) => self.down(CollectError::Io(why)),
            }
        })
    }
}

/// Updates the served-requests state with a reading and returns the value
/// to publish: the last one when this reading lacks a counter.
fn served_requests(state: &mut Served, reading: &Reading) -> Option<u64> {
    let Some(sample) = reading.served_sample() else {
        return state.current();
    };
    let (value, event) = state.update(sample);
    if event == served::Event::Restarted {
        tracing::info!(
            collector = "ntpd",
            "ntpd restarted: clock_server_requests_total starts again"
        );
    }
    Some(value)
}

/// Why a query produced nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// Nothing answered: connection refused, or no mode-6 response before
    /// the timeout. The text says which, and what was ignored meanwhile.
    Absent(String),
    /// ntpd answered, but the answer to a request every query needs was an
    /// error or malformed.
    Protocol(String),
    /// A local socket error.
    Io(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::Absent(s) | QueryError::Protocol(s) | QueryError::Io(s) => f.write_str(s),
        }
    }
}

/// Everything one query read, decoded; the input of [`Reading::report`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// The system status word, from the system variables' response.
    pub system_status: Option<SystemStatus>,
    /// The system variables.
    pub system: Option<SystemVariables>,
    /// The system statistics.
    pub stats: SystemStats,
    /// Every association that answered.
    pub peers: Vec<PeerReading>,
    /// Every association's packet counter, or `None` when one that still
    /// exists did not answer for it (then no sum of them is right).
    pub counters: Option<Vec<(AssocId, PeerCounters)>>,
    /// Requests that failed while others succeeded, as log text.
    pub problems: Vec<String>,
}

/// The shared vocabulary's state for an ntpd selection code. `reject` splits
/// in two: a peer whose reach register is empty is `unreachable`, one that
/// answers but failed a sanity check (bad stratum, distance, loop) `rejected`.
pub fn peer_state(selection: Selection, reachable: bool) -> PeerState {
    match selection {
        Selection::Reject if !reachable => PeerState::Unreachable,
        Selection::Reject => PeerState::Rejected,
        Selection::Falsetick => PeerState::Falseticker,
        Selection::Excess => PeerState::Excess,
        Selection::Outlier => PeerState::Outlier,
        Selection::Candidate => PeerState::Candidate,
        Selection::Backup => PeerState::Backup,
        Selection::SysPeer | Selection::PpsPeer => PeerState::Selected,
    }
}

/// Whether an address is a refclock's pseudo-address `127.127.t.u`.
fn is_refclock_address(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if a.octets()[..2] == [127, 127])
}

/// One peer in the shared model with ntpd's own facts, or `None` for the
/// pool placeholder (refid `POOL`, source 0.0.0.0), which is not a source.
fn convert_peer(p: &PeerReading) -> Option<(Peer, NtpdPeerFacts)> {
    let v: &PeerVariables = &p.variables;
    let refid = v.refid.clone().unwrap_or_default();
    if refid == "POOL" || v.address.is_none_or(|a| a.is_unspecified()) {
        return None;
    }
    let address = v.address?;
    let refclock = is_refclock_address(address);
    let kind = if refid == "LOCL" {
        PeerKind::Local
    } else if refclock {
        PeerKind::Refclock
    } else {
        match v.host_mode {
            Some(1 | 2) => PeerKind::Peer,
            // A client association ntpd was not configured with was spawned
            // by a `pool` line (ntpq -c associations: conf=no).
            Some(3) if !p.status.configured() => PeerKind::Pool,
            _ => PeerKind::Server,
        }
    };
    let label = if (refclock || kind == PeerKind::Local) && !refid.is_empty() {
        refid.clone()
    } else {
        address.to_string()
    };
    let reachable = v.reach.map_or(p.status.reachable(), |r| r.0 != 0);
    // ntpd keeps showing the last sample, or zeros before the first one;
    // neither is a measurement once nothing answers.
    let measured = |m: Option<mode6::Millis>| m.filter(|_| reachable).map(mode6::Millis::seconds);
    let peer = Peer {
        address: label,
        kind,
        refid,
        state: peer_state(p.status.selection(), reachable),
        stratum: v.stratum,
        offset_seconds: measured(v.offset),
        delay_seconds: measured(v.delay),
        jitter_seconds: measured(v.jitter),
        dispersion_seconds: v.dispersion.map(mode6::Millis::seconds),
        error_bound_seconds: v.root_distance_seconds().filter(|_| reachable),
        reachability_ratio: v.reach.map(mode6::Reach::ratio),
        poll_interval_seconds: v.poll().map(mode6::Log2Seconds::seconds),
    };
    let facts = NtpdPeerFacts {
        reach: v.reach.map(|r| r.0),
        host_mode: v.host_mode,
        selection: p.status.selection(),
    };
    Some((peer, facts))
}

/// What ntpd says about a peer beyond the shared model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NtpdPeerFacts {
    reach: Option<u8>,
    host_mode: Option<u8>,
    selection: Selection,
}

impl Reading {
    fn peers(&self) -> Vec<(Peer, NtpdPeerFacts, AssocId)> {
        let mut used = HashSet::new();
        let mut out = Vec::new();
        for p in &self.peers {
            let Some((mut peer, facts)) = convert_peer(p) else {
                continue;
            };
            // Two refclocks with the same refid: the second keeps its
            // pseudo-address, so labels stay unique.
            if !used.insert(peer.address.clone())
                && let Some(a) = p.variables.address
            {
                peer.address = a.to_string();
                used.insert(peer.address.clone());
            }
            out.push((peer, facts, p.assoc_id));
        }
        out
    }

    /// The counters [`served`] needs, when ntpd gave them all.
    pub fn served_sample(&self) -> Option<Sample> {
        let counters = self.counters.as_ref()?;
        let mut received = std::collections::BTreeMap::new();
        for (id, c) in counters {
            // A refclock counts its samples in `received` without receive().
            if !c.address.is_some_and(is_refclock_address) {
                received.insert(id.0, c.received?);
            }
        }
        Some(Sample {
            uptime: self.stats.uptime?,
            system: SystemCounts::from_stats(&self.stats)?,
            received,
        })
    }

    /// The shared model of what ntpd said, with `server_requests` (what
    /// [`served`] made of this reading) as `clock_server_requests_total`.
    pub fn report(&self, server_requests: Option<u64>) -> DaemonReport {
        let peers = self.peers();
        let sync = self.system.as_ref().map(|s| {
            let sys_peer = s
                .peer
                .filter(|id| *id != AssocId::SYSTEM)
                .and_then(|id| peers.iter().find(|(_, _, a)| *a == id))
                .map(|(p, _, _)| p.address.clone());
            SyncStatus {
                offset_seconds: s.offset.map(mode6::Millis::seconds),
                stratum: s.stratum,
                leap: s
                    .leap
                    .or_else(|| self.system_status.map(SystemStatus::leap)),
                root_delay_seconds: s.root_delay.map(mode6::Millis::seconds),
                root_dispersion_seconds: s.root_dispersion.map(mode6::Millis::seconds),
                // ntpd's `frequency` is its drift_comp, which it hands to the
                // kernel unchanged (ntv.freq = drift_comp · 2^16 · 1e6 in
                // ntp_loopfilter.c): the kernel's sign already.
                frequency_ratio: s.frequency.map(mode6::Ppm::ratio),
                frequency_wander_ratio: s.clk_wander.map(mode6::Ppm::ratio),
                jitter_seconds: s.sys_jitter.map(mode6::Millis::seconds),
                poll_interval_seconds: s.poll.map(mode6::Log2Seconds::seconds),
                reference: sys_peer.or_else(|| s.refid.clone()).unwrap_or_default(),
            }
        });
        DaemonReport {
            daemon: Daemon::Ntpd,
            sync,
            peers: peers.into_iter().map(|(p, _, _)| p).collect(),
            server_requests_total: server_requests,
        }
    }

    /// The shared families and ntpd's own (without `clock_daemon_up`).
    pub fn families(&self, server_requests: Option<u64>) -> Vec<Family> {
        let mut out = self.report(server_requests).families();
        let mut reach = PEER_REACH_REGISTER.family();
        let mut mode = PEER_HOST_MODE.family();
        let mut selection = PEER_SELECTION_CODE.family();
        for (p, facts, _) in self.peers() {
            if let Some(r) = facts.reach {
                reach.push(labels![p.address.clone()], f64::from(r));
            }
            if let Some(m) = facts.host_mode {
                mode.push(labels![p.address.clone()], f64::from(m));
            }
            selection.push(labels![p.address], f64::from(facts.selection.code()));
        }
        out.extend([reach, mode, selection]);
        if let Some(n) = self.stats.control_requests {
            out.push(CONTROL_REQUESTS.single(n as f64));
        }
        if let Some(v) = self.system.as_ref().and_then(|s| s.version.clone()) {
            out.push(INFO.family().with(labels![v], 1.0));
        }
        out
    }
}

/// One request of a query: what it asks, and for which association.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ask {
    Associations,
    System,
    Stats,
    StatsNtpsec,
    Peer(AssocId, PeerStatus),
    Counters(AssocId),
}

impl Ask {
    fn request(self) -> (Opcode, AssocId, &'static [u8]) {
        match self {
            Ask::Associations => (Opcode::READ_STATUS, AssocId::SYSTEM, b""),
            Ask::System => (Opcode::READ_VARIABLES, AssocId::SYSTEM, b""),
            Ask::Stats => (
                Opcode::READ_VARIABLES,
                AssocId::SYSTEM,
                SystemStats::QUERY.as_bytes(),
            ),
            Ask::StatsNtpsec => (
                Opcode::READ_VARIABLES,
                AssocId::SYSTEM,
                SystemStats::QUERY_NTPSEC.as_bytes(),
            ),
            Ask::Peer(id, _) => (Opcode::READ_VARIABLES, id, b""),
            Ask::Counters(id) => (Opcode::READ_VARIABLES, id, PeerCounters::QUERY.as_bytes()),
        }
    }
}

/// Datagrams that were not answers to this query, summarised for the log.
#[derive(Debug, Default)]
struct Ignored {
    count: usize,
    first: Option<String>,
}

impl Ignored {
    fn note(&mut self, why: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            self.first = Some(why());
        }
    }

    fn suffix(&self) -> String {
        match &self.first {
            None => String::new(),
            Some(first) => format!(
                "; ignored {} datagram(s) that were not answers to these requests, the first: {first}",
                self.count
            ),
        }
    }
}

/// Pipelined requests on one connected UDP socket.
struct Session<'a> {
    socket: UdpSocket,
    address: SocketAddr,
    deadline: Instant,
    sequences: &'a AtomicU16,
    queue: VecDeque<Ask>,
    pending: HashMap<u16, (Ask, Reassembler)>,
    done: Vec<(Ask, Result<Response, ReassemblyError>)>,
    answered: bool,
    ignored: Ignored,
}

impl Session<'_> {
    async fn send_next(&mut self) -> Result<(), QueryError> {
        while self.pending.len() < WINDOW {
            let Some(ask) = self.queue.pop_front() else {
                return Ok(());
            };
            let sequence = Sequence(self.sequences.fetch_add(1, Ordering::Relaxed));
            let (opcode, assoc, data) = ask.request();
            let datagram = mode6::encode_request(opcode, sequence, assoc, data)
                .map_err(|e| QueryError::Io(e.to_string()))?;
            self.pending.insert(
                sequence.0,
                (
                    ask,
                    Reassembler::new(opcode, sequence, assoc, DEFAULT_RESPONSE_LIMIT),
                ),
            );
            match self.socket.send(&datagram).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(refused(self.address));
                }
                Err(e) => return Err(QueryError::Io(format!("send to {}: {e}", self.address))),
            }
        }
        Ok(())
    }

    /// Runs the queued requests to completion or the deadline.
    async fn run(&mut self) -> Result<(), QueryError> {
        let mut buf = vec![0u8; 4096];
        self.send_next().await?;
        while !self.pending.is_empty() {
            let received = tokio::time::timeout_at(self.deadline, self.socket.recv_from(&mut buf));
            let (n, from) = match received.await {
                Err(_) => return self.timed_out(),
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Err(refused(self.address));
                }
                Ok(Err(e)) => {
                    return Err(QueryError::Io(format!(
                        "receive from {}: {e}",
                        self.address
                    )));
                }
                Ok(Ok(r)) => r,
            };
            // The socket is connected, so the kernel already drops other
            // senders; checked again because the answer is trusted.
            if from != self.address {
                self.ignored.note(|| format!("from {from}"));
                continue;
            }
            self.accept(&buf[..n]);
            self.send_next().await?;
        }
        Ok(())
    }

    fn accept(&mut self, datagram: &[u8]) {
        let fragment = match Fragment::parse(datagram) {
            Ok(f) => f,
            Err(e) => return self.ignored.note(|| e.to_string()),
        };
        let seq = fragment.header.sequence.0;
        let Some((ask, reassembler)) = self.pending.get_mut(&seq) else {
            return self
                .ignored
                .note(|| format!("sequence {seq} was not asked for (or already answered)"));
        };
        let ask = *ask;
        match reassembler.push(&fragment) {
            Ok(Progress::Incomplete) => self.answered = true,
            Ok(Progress::Complete(response)) => {
                self.answered = true;
                self.pending.remove(&seq);
                self.done.push((ask, Ok(response)));
            }
            Err(e) if e.is_mismatch() => self.ignored.note(|| e.to_string()),
            Err(e) => {
                self.answered = true;
                self.pending.remove(&seq);
                self.done.push((ask, Err(e)));
            }
        }
    }

    fn timed_out(&mut self) -> Result<(), QueryError> {
        if !self.answered {
            return Err(QueryError::Absent(format!(
                "no mode-6 answer from {} in time{}",
                self.address,
                self.ignored.suffix()
            )));
        }
        for (_, (ask, r)) in self.pending.drain() {
            self.done.push((ask, Err(r.incomplete())));
        }
        Ok(())
    }

    fn take(&mut self, ask: Ask) -> Option<Result<Response, ReassemblyError>> {
        let at = self.done.iter().position(|(a, _)| *a == ask)?;
        Some(self.done.swap_remove(at).1)
    }
}

fn refused(address: SocketAddr) -> QueryError {
    QueryError::Absent(format!("connection to {address} refused: nothing listens"))
}

/// Decodes the second round trip: every association's variables and
/// counters.
fn read_associations(
    session: &mut Session<'_>,
    associations: Vec<(AssocId, PeerStatus)>,
    reading: &mut Reading,
) {
    let mut counters = Some(Vec::new());
    for (id, status) in associations {
        match session.take(Ask::Peer(id, status)) {
            Some(Ok(r)) => reading.peers.push(PeerReading {
                assoc_id: id,
                status: PeerStatus(r.status),
                variables: PeerVariables::from_variables(&Variables::parse(&r.data)),
            }),
            // The association went away between the two round trips (a pool
            // server replaced): not a problem.
            Some(Err(ReassemblyError::Server(ErrorCode::BadAssociation))) | None => {}
            Some(Err(e)) => reading.problems.push(format!("association {}: {e}", id.0)),
        }
        match session.take(Ask::Counters(id)) {
            Some(Ok(r)) => {
                let c = PeerCounters::from_variables(&Variables::parse(&r.data));
                if let Some(list) = counters.as_mut() {
                    list.push((id, c));
                }
            }
            // Gone since the list was read: its replies are not counted.
            Some(Err(ReassemblyError::Server(ErrorCode::BadAssociation))) => {}
            // A daemon without the variable: no counter, and nothing to
            // say on every scrape.
            Some(Err(ReassemblyError::Server(ErrorCode::UnknownVariable))) | None => {
                counters = None;
            }
            Some(Err(e)) => {
                reading
                    .problems
                    .push(format!("association {} counters: {e}", id.0));
                counters = None;
            }
        }
    }
    reading.counters = counters;
}

/// Queries ntpd at `address` within `timeout`. With `full` false only the
/// association list is read: enough to tell whether ntpd answers.
pub async fn query(
    address: SocketAddr,
    timeout: Duration,
    sequences: &AtomicU16,
    full: bool,
) -> Result<Reading, QueryError> {
    let deadline = Instant::now() + timeout;
    let local = match address {
        SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| QueryError::Io(format!("bind {local}: {e}")))?;
    socket
        .connect(address)
        .await
        .map_err(|e| QueryError::Io(format!("connect {address}: {e}")))?;
    let mut session = Session {
        socket,
        address,
        deadline,
        sequences,
        queue: if full {
            VecDeque::from([Ask::Associations, Ask::System, Ask::Stats, Ask::StatsNtpsec])
        } else {
            VecDeque::from([Ask::Associations])
        },
        pending: HashMap::new(),
        done: Vec::new(),
        answered: false,
        ignored: Ignored::default(),
    };
    session.run().await?;

    let mut reading = Reading::default();
    let associations = match session.take(Ask::Associations) {
        Some(Ok(r)) => mode6::parse_status_list(&r.data)
            .map_err(|e| QueryError::Protocol(format!("association list: {e}")))?,
        Some(Err(e)) => return Err(QueryError::Protocol(format!("association list: {e}"))),
        None => return Err(QueryError::Protocol("association list: no answer".into())),
    };
    if !full {
        return Ok(reading);
    }
    match session.take(Ask::System) {
        Some(Ok(r)) => {
            reading.system_status = Some(SystemStatus(r.status));
            reading.system = Some(SystemVariables::from_variables(&Variables::parse(&r.data)));
        }
        Some(Err(e)) => reading.problems.push(format!("system variables: {e}")),
        None => {}
    }
    let mut stats = Variables::default();
    for ask in [Ask::Stats, Ask::StatsNtpsec] {
        match session.take(ask) {
            Some(Ok(r)) => stats.0.extend(Variables::parse(&r.data).0),
            // ntpd classic has no NTPsec counters; anything else is worth saying.
            Some(Err(ReassemblyError::Server(ErrorCode::UnknownVariable))) | None => {}
            Some(Err(e)) => reading.problems.push(format!("system statistics: {e}")),
        }
    }
    reading.stats = SystemStats::from_variables(&stats);

    // Each association's counter right after its variables: in the same
    // round trip, and read after the statistics, so that a reply arriving
    // in between can only make the served estimate short (see `served`).
    session.queue = associations
        .iter()
        .flat_map(|&(id, status)| [Ask::Peer(id, status), Ask::Counters(id)])
        .collect();
    session.run().await?;
    read_associations(&mut session, associations, &mut reading);
    if session.ignored.count > 0 {
        tracing::debug!(
            collector = "ntpd",
            detail = %session.ignored.suffix().trim_start_matches("; "),
            "ignored datagrams"
        );
    }
    Ok(reading)
}

pub mod served;

#[cfg(test)]
mod tests;
