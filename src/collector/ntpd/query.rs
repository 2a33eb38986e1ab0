//! One ntpd query: mode-6 requests pipelined on one connected socket of
//! [`crate::sys::udp`], their fragments reassembled by offset with the
//! sequence checked, and the answers decoded into a [`Reading`].

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::Reading;
use crate::collector::daemon::{Depth, QueryError, Sequences};
use crate::model::MAX_PEERS;
use crate::proto::mode6::{
    self, AssocId, DEFAULT_RESPONSE_LIMIT, ErrorCode, Fragment, Opcode, PeerCounters, PeerReading,
    PeerStatus, PeerVariables, Progress, Reassembler, ReassemblyError, Response, Sequence,
    SystemStats, SystemStatus, SystemVariables, Variables,
};
use crate::sys::TransportError;
use crate::sys::udp::Connection;

/// Requests in flight at once: two for each of 32 associations (its
/// variables, up to three fragments, and its one-fragment packet counter),
/// enough for any usual ntpd in one round trip, few enough that the answers
/// fit a default socket receive buffer.
pub const WINDOW: usize = 64;

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

/// Pipelined requests on one connected mode-6 channel.
struct Session<'a> {
    connection: Connection,
    deadline: Instant,
    sequences: &'a Sequences,
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
            // Mode 6's sequence field is 16 bits wide.
            let sequence = Sequence(self.sequences.next() as u16);
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
            self.connection.send(&datagram).await.map_err(transport)?;
        }
        Ok(())
    }

    /// Runs the queued requests to completion or the deadline.
    async fn run(&mut self) -> Result<(), QueryError> {
        let mut buf = vec![0u8; 4096];
        self.send_next().await?;
        while !self.pending.is_empty() {
            // The channel is connected: the kernel drops other senders.
            let received = tokio::time::timeout_at(self.deadline, self.connection.recv(&mut buf));
            let n = match received.await {
                Err(_) => return self.timed_out(),
                Ok(r) => r.map_err(transport)?,
            };
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
                self.connection.address(),
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

/// A transport failure: a refusal means nothing listens; anything else is
/// the exporter's own problem.
fn transport(e: TransportError) -> QueryError {
    match e {
        TransportError::Absent(s) => QueryError::Absent(s),
        TransportError::Permission(s) | TransportError::Io(s) => QueryError::Io(s),
    }
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

/// Queries ntpd at `address` within `timeout`. A probe reads only the
/// association list: enough to tell whether ntpd answers.
pub async fn query(
    address: SocketAddr,
    timeout: Duration,
    sequences: &Sequences,
    depth: Depth,
) -> Result<Reading, QueryError> {
    let deadline = Instant::now() + timeout;
    let connection = Connection::open(address).await.map_err(transport)?;
    let full = depth == Depth::Full;
    let mut session = Session {
        connection,
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
    let mut associations = match session.take(Ask::Associations) {
        Some(Ok(r)) => mode6::parse_status_list(&r.data)
            .map_err(|e| QueryError::Unusable(format!("association list: {e}")))?,
        Some(Err(e)) => return Err(QueryError::Unusable(format!("association list: {e}"))),
        None => return Err(QueryError::Unusable("association list: no answer".into())),
    };
    if !full {
        return Ok(reading);
    }
    if associations.len() > MAX_PEERS {
        reading.problems.push(format!(
            "ntpd has {} associations; the exporter reads the first {MAX_PEERS} and skips {}",
            associations.len(),
            associations.len() - MAX_PEERS
        ));
        associations.truncate(MAX_PEERS);
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
