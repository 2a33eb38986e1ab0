//! Requests to chronyd and their replies, matched by sequence number, on a
//! channel of [`crate::sys::cmdmon`]; and the errors a request can meet.

use std::time::Duration;

use tokio::time::Instant;

use super::RESEND;
use crate::collector::CollectError;
use crate::collector::daemon::{QueryError, Sequences};
use crate::proto::cmdmon::{self, MAX_DATAGRAM, Reply, ReplyError, Request, Status};
use crate::sys::TransportError;
use crate::sys::cmdmon::Connection;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// Nobody answers: chronyd is not running there.
    Absent(String),
    /// What answered is not chronyd: the bytes are not a command reply.
    Foreign(String),
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

impl From<TransportError> for RequestError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Absent(s) => RequestError::Absent(s),
            TransportError::Permission(s) => RequestError::Permission(s),
            TransportError::Io(s) => RequestError::Io(s),
        }
    }
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestError::Absent(s)
            | RequestError::Foreign(s)
            | RequestError::Protocol(s)
            | RequestError::Permission(s)
            | RequestError::Io(s) => f.write_str(s),
            RequestError::Timeout {
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
            RequestError::Refused {
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

impl RequestError {
    /// The error as one of the first request's: what the daemon collector
    /// template makes of chronyd's presence.
    pub fn into_query_error(self) -> QueryError {
        let message = self.to_string();
        match self {
            // No reply in time is silence, as a refused port is.
            RequestError::Absent(_) | RequestError::Timeout { .. } => QueryError::Absent(message),
            RequestError::Foreign(_) => QueryError::Foreign(message),
            RequestError::Refused { .. } | RequestError::Protocol(_) => {
                QueryError::Unusable(message)
            }
            RequestError::Permission(_) | RequestError::Io(_) => QueryError::Io(message),
        }
    }

    /// The error as a later request's: a problem of an answering chronyd.
    pub fn into_collect_error(self) -> CollectError {
        match self {
            RequestError::Absent(_) => CollectError::NoData(self.to_string()),
            RequestError::Foreign(_) | RequestError::Protocol(_) | RequestError::Refused { .. } => {
                CollectError::Protocol(self.to_string())
            }
            RequestError::Timeout { .. } | RequestError::Permission(_) | RequestError::Io(_) => {
                CollectError::Io(self.to_string())
            }
        }
    }
}

/// Asks chronyd, in batches, until the deadline.
pub struct Client<'a> {
    conn: &'a Connection,
    sequences: &'a Sequences,
    deadline: Instant,
    timeout: Duration,
    /// Replies to other requests seen so far, for the log.
    pub skipped: u32,
    buf: Box<[u8; MAX_DATAGRAM]>,
}

impl<'a> Client<'a> {
    /// A client on `conn` whose requests must all be answered within
    /// `timeout` from now.
    pub fn new(conn: &'a Connection, sequences: &'a Sequences, timeout: Duration) -> Client<'a> {
        Client {
            conn,
            sequences,
            deadline: Instant::now() + timeout,
            timeout,
            skipped: 0,
            buf: Box::new([0u8; MAX_DATAGRAM]),
        }
    }

    /// Asks for TRACKING.
    pub async fn tracking(&mut self) -> Result<cmdmon::Tracking, RequestError> {
        match self.ask(Request::Tracking).await? {
            Reply::Tracking(t) => Ok(t),
            _ => Err(RequestError::Protocol(
                "unexpected reply to tracking".into(),
            )),
        }
    }

    /// Asks one request.
    pub async fn ask(&mut self, request: Request) -> Result<Reply, RequestError> {
        self.ask_all(&[request])
            .await
            .pop()
            .unwrap_or_else(|| Err(RequestError::Protocol("no request".into())))
    }

    /// Sends the requests at once, each with its own sequence number,
    /// and matches the replies to them by sequence number: chronyd answers
    /// each datagram on its own, so a scrape costs one round trip per batch
    /// rather than one per request. Unanswered requests are sent again every
    /// [`RESEND`], as chronyc does, until the deadline.
    pub async fn ask_all(&mut self, requests: &[Request]) -> Vec<Result<Reply, RequestError>> {
        let mut results: Vec<Option<Result<Reply, RequestError>>> =
            requests.iter().map(|_| None).collect();
        let sequences: Vec<u32> = requests.iter().map(|_| self.sequences.next()).collect();
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
                            Err(RequestError::Timeout {
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
                let e = RequestError::Foreign(format!(
                    "reply from {endpoint} is {n} bytes or more, too long for chronyd"
                ));
                return fill(results, &e);
            }
            let header = match cmdmon::ReplyHeader::parse(bytes) {
                Ok(h) => h,
                Err(e) => {
                    let e = RequestError::Foreign(format!("reply from {endpoint}: {e}"));
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
                Err(ReplyError::Refused(status)) => Some(Err(RequestError::Refused {
                    request,
                    status,
                    endpoint,
                })),
                Err(ReplyError::Parse(e)) => Some(Err(RequestError::Protocol(format!(
                    "reply to {} from {endpoint}: {e}",
                    request.name()
                )))),
            };
            pending -= 1;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(RequestError::Protocol("unanswered".into()))))
            .collect()
    }

    async fn send_pending(
        &self,
        datagrams: &[Vec<u8>],
        results: &[Option<Result<Reply, RequestError>>],
    ) -> Result<(), RequestError> {
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
    results: Vec<Option<Result<Reply, RequestError>>>,
    e: &RequestError,
) -> Vec<Result<Reply, RequestError>> {
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(e.clone())))
        .collect()
}
