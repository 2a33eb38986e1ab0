//! SNTP probes: names resolved, exchanges run on [`crate::sys::udp`] under
//! a deadline, and what they found turned into families. The exchange's
//! checks are [`crate::proto::sntp`]'s; this is the IO around them and the
//! families both the `sntp` collector and `/probe` publish.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::metrics::{Family, labels, metrics};
use crate::proto::ntp::NtpTimestamp;
use crate::proto::sntp::{self, Discarded, Kiss, MAX_REPLY, Rejected, Sample, Verdict};
use crate::sys::udp::Connection;
use crate::sys::{TransportError, random_u64};

/// NTP's port.
pub const NTP_PORT: u16 = 123;

/// The shortest spacing between two requests to one server: ntpd's
/// `discard minimum` (2 s), below which its `limited` drops requests or
/// sends a `RATE` kiss, and chrony's `ratelimit` likewise.
pub const MIN_SPACING: Duration = Duration::from_secs(2);

/// The longest target accepted, in bytes (a DNS name and a port).
pub const MAX_TARGET_BYTES: usize = 260;

metrics! {
    /// What a probe of one server address publishes, from the `sntp`
    /// collector and from `/probe`. `server` is the target as configured or
    /// asked (`HOST[:PORT]`), `address` the address probed.
    pub static METRICS = [
        UP: Gauge(
            "clock_sntp_up",
            ["server", "address"],
            "1 when the server answered the last request with a time (even one it says is unsynchronised), else 0; clock_sntp_failure_info says why not."
        ),
        FAILURE: Gauge(
            "clock_sntp_failure_info",
            ["server", "address", "reason"],
            "1 for the reason the last request got no time: no_reply (nothing within the timeout), refused (ICMP port unreachable), network (the request could not be sent), kiss (a kiss-o'-death, code in clock_sntp_kiss_info), invalid (a reply that fails RFC 5905's checks), resolve (the name did not resolve; address is empty)."
        ),
        OFFSET: Gauge(
            "clock_sntp_offset_seconds",
            ["server", "address"],
            "Offset of the server's clock from this host's clock (theta; positive when the server is ahead), of the sample with the least delay, in seconds."
        ),
        DELAY: Gauge(
            "clock_sntp_delay_seconds",
            ["server", "address"],
            "Round-trip delay of that sample (delta), in seconds."
        ),
        ROOT_DISTANCE: Gauge(
            "clock_sntp_root_distance_seconds",
            ["server", "address"],
            "Bound on that sample's error as seen from here: the server's root delay / 2 + its root dispersion + the sample's delay / 2 + the server's precision, in seconds; the server's true offset lies within offset plus or minus this."
        ),
        ROOT_DELAY: Gauge(
            "clock_sntp_root_delay_seconds",
            ["server", "address"],
            "The server's root delay, as it sent it, in seconds."
        ),
        ROOT_DISPERSION: Gauge(
            "clock_sntp_root_dispersion_seconds",
            ["server", "address"],
            "The server's root dispersion, as it sent it, in seconds."
        ),
        STRATUM: Gauge(
            "clock_sntp_stratum",
            ["server", "address"],
            "The server's stratum."
        ),
        LEAP: Gauge(
            "clock_sntp_leap",
            ["server", "address"],
            "The server's leap indicator: 0 none, 1 a leap second is inserted at the end of the day, 2 one is deleted, 3 the server is unsynchronised."
        ),
        PRECISION: Gauge(
            "clock_sntp_precision_seconds",
            ["server", "address"],
            "The server's clock precision, in seconds."
        ),
        SYNCHRONIZED: Gauge(
            "clock_sntp_synchronized",
            ["server", "address"],
            "1 when the server says it is synchronised (leap indicator not 3, stratum 1 to 15), else 0; an unsynchronised server's offset is still published."
        ),
        REFERENCE: Gauge(
            "clock_sntp_reference_info",
            ["server", "address", "reference"],
            "1, labelled with the server's reference id as ntpq shows it (an IPv4 address, or a code like GPS at stratum 1)."
        ),
        KISS: Gauge(
            "clock_sntp_kiss_info",
            ["server", "address", "code"],
            "1 when the last reply was a kiss-o'-death, labelled with its code (RATE, DENY, RSTR, ...), accepted only after the origin check."
        ),
        SAMPLES: Gauge(
            "clock_sntp_samples",
            ["server", "address"],
            "How many samples the published one was chosen from (the least delay wins)."
        ),
    ];
}

/// What one exchange came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A time.
    Time(Sample),
    /// A kiss-o'-death.
    Kiss(Kiss),
    /// A reply that fails the checks.
    Rejected(Rejected),
    /// Nothing that passed the origin check before the deadline.
    NoReply,
    /// ICMP port unreachable.
    Refused,
    /// The request could not be sent (no route, no socket, permission).
    Network(String),
}

impl Outcome {
    /// The `reason` label of `clock_sntp_failure_info`, or `None` for a time.
    pub fn failure(&self) -> Option<&'static str> {
        match self {
            Outcome::Time(_) => None,
            Outcome::Kiss(_) => Some("kiss"),
            Outcome::Rejected(_) => Some("invalid"),
            Outcome::NoReply => Some("no_reply"),
            Outcome::Refused => Some("refused"),
            Outcome::Network(_) => Some("network"),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Time(s) => write!(f, "offset {:+.6} s, delay {:.6} s", s.offset, s.delay),
            Outcome::Kiss(k) => write!(f, "kiss-o'-death {k}"),
            Outcome::Rejected(r) => r.fmt(f),
            Outcome::NoReply => f.write_str("no reply"),
            Outcome::Refused => f.write_str("refused (ICMP port unreachable)"),
            Outcome::Network(s) => f.write_str(s),
        }
    }
}

/// One exchange and what was thrown away on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    /// What it came to.
    pub outcome: Outcome,
    /// Datagrams dropped before the answer (wrong origin, bad length).
    pub discarded: u32,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or_else(|e| -e.duration().as_secs_f64(), |d| d.as_secs_f64())
}

/// One request to `address` and its answer, by `deadline`. A fresh socket
/// (so a fresh random source port) and a fresh random transmit timestamp
/// every time.
pub async fn exchange(address: SocketAddr, deadline: Instant) -> Exchange {
    let mut discarded = 0;
    let outcome = tokio::time::timeout_at(deadline, exchange_inner(address, &mut discarded))
        .await
        .unwrap_or(Outcome::NoReply);
    Exchange { outcome, discarded }
}

async fn exchange_inner(address: SocketAddr, discarded: &mut u32) -> Outcome {
    let nonce = match random_u64() {
        Ok(n) => NtpTimestamp(n),
        Err(e) => return Outcome::Network(e),
    };
    let conn = match Connection::open(address).await {
        Ok(c) => c,
        Err(e) => return transport(e),
    };
    let t1 = SystemTime::now();
    if let Err(e) = conn.send(&sntp::request(nonce)).await {
        return transport(e);
    }
    // One byte more than the largest reply judged, so a longer one is seen
    // as such rather than cut to size.
    let mut buf = vec![0u8; MAX_REPLY + 1];
    loop {
        let n = match conn.recv(&mut buf).await {
            Ok(n) => n,
            Err(e) => return transport(e),
        };
        let t4 = SystemTime::now();
        match sntp::judge(&buf[..n], nonce, unix(t1), unix(t4)) {
            Verdict::Time(s) => return Outcome::Time(s),
            Verdict::Kiss(k) => return Outcome::Kiss(k),
            Verdict::Rejected(r) => return Outcome::Rejected(r),
            Verdict::Discard(why) => {
                *discarded += 1;
                log_discard(address, &why);
            }
        }
    }
}

fn log_discard(address: SocketAddr, why: &Discarded) {
    tracing::debug!(%address, reason = %why, "SNTP reply discarded");
}

fn transport(e: TransportError) -> Outcome {
    match e {
        TransportError::Absent(_) => Outcome::Refused,
        TransportError::Permission(s) | TransportError::Io(s) => Outcome::Network(s),
    }
}

/// A target split into host and port: `HOST`, `HOST:PORT`, `[V6]`,
/// `[V6]:PORT` or a bare IPv6 address; the port defaults to 123.
pub fn split_target(target: &str) -> Result<(String, u16), String> {
    if target.is_empty() {
        return Err("empty target".into());
    }
    if target.len() > MAX_TARGET_BYTES {
        return Err(format!("target longer than {MAX_TARGET_BYTES} bytes"));
    }
    if target
        .bytes()
        .any(|b| !(b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b)))
    {
        return Err(format!("{target:?} is not a host name or address"));
    }
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{target:?}: {p:?} is not a port"))
    };
    if let Some(rest) = target.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{target:?}: no closing ]"))?;
        let p = match after {
            "" => NTP_PORT,
            a => port(
                a.strip_prefix(':')
                    .ok_or_else(|| format!("{target:?}: junk after ]"))?,
            )?,
        };
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{target:?}: {host:?} is not an IPv6 address"))?;
        return Ok((host.to_owned(), p));
    }
    if target.contains(['[', ']']) {
        return Err(format!(
            "{target:?}: brackets only around an IPv6 address, as [ADDRESS]:PORT"
        ));
    }
    if target.parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((target.to_owned(), NTP_PORT));
    }
    match target.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') && !host.is_empty() => {
            Ok((host.to_owned(), port(p)?))
        }
        Some(_) => Err(format!(
            "{target:?}: write an IPv6 address with a port as [ADDRESS]:PORT"
        )),
        None => Ok((target.to_owned(), NTP_PORT)),
    }
}

/// The addresses of `target` (all, or the first the resolver gives), by
/// `deadline`.
pub async fn resolve(
    target: &str,
    all: bool,
    deadline: Instant,
) -> Result<Vec<SocketAddr>, String> {
    let (host, port) = split_target(target)?;
    let found = tokio::time::timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
        .await
        .map_err(|_| format!("resolving {host:?} timed out"))?
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    let mut out: Vec<SocketAddr> = Vec::new();
    for a in found {
        if !out.contains(&a) {
            out.push(a);
        }
        if !all {
            break;
        }
    }
    if out.is_empty() {
        return Err(format!("{host:?} has no address"));
    }
    Ok(out)
}

/// What is published for one address of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Probed {
    /// The target as configured or asked.
    pub server: String,
    /// The address probed; `None` when the name did not resolve.
    pub address: Option<SocketAddr>,
    /// The last exchange's outcome (for a name that did not resolve, none).
    pub last: Option<Outcome>,
    /// The sample published: the least delay among those kept, or none
    /// when the last exchange gave no time.
    pub best: Option<Sample>,
    /// How many samples `best` was chosen from.
    pub samples: usize,
}

impl Probed {
    /// Whether the last exchange gave a time.
    pub fn up(&self) -> bool {
        matches!(self.last, Some(Outcome::Time(_)))
    }
}

/// The families of a set of probed addresses.
pub fn families(probed: &[Probed]) -> Vec<Family> {
    let n = probed.len();
    let mut up = UP.family_of(n);
    let mut failure = FAILURE.family_of(n);
    let mut kiss = KISS.family();
    let mut offset = OFFSET.family_of(n);
    let mut delay = DELAY.family_of(n);
    let mut distance = ROOT_DISTANCE.family_of(n);
    let mut root_delay = ROOT_DELAY.family_of(n);
    let mut root_dispersion = ROOT_DISPERSION.family_of(n);
    let mut stratum = STRATUM.family_of(n);
    let mut leap = LEAP.family_of(n);
    let mut precision = PRECISION.family_of(n);
    let mut synchronized = SYNCHRONIZED.family_of(n);
    let mut reference = REFERENCE.family_of(n);
    let mut samples = SAMPLES.family_of(n);
    for p in probed {
        let server = p.server.clone();
        let address = p.address.map(|a| a.to_string()).unwrap_or_default();
        let l = || labels![server.clone(), address.clone()];
        up.push(l(), f64::from(u8::from(p.up())));
        let reason = match &p.last {
            None => Some("resolve"),
            Some(o) => o.failure(),
        };
        if let Some(reason) = reason {
            failure.push(labels![server.clone(), address.clone(), reason], 1.0);
        }
        if let Some(Outcome::Kiss(k)) = &p.last {
            kiss.push(labels![server.clone(), address.clone(), k.code()], 1.0);
        }
        let Some(s) = &p.best else { continue };
        offset.push(l(), s.offset);
        delay.push(l(), s.delay);
        distance.push(l(), s.root_distance());
        root_delay.push(l(), s.root_delay);
        root_dispersion.push(l(), s.root_dispersion);
        stratum.push(l(), f64::from(s.stratum));
        leap.push(l(), f64::from(s.leap));
        precision.push(l(), 2f64.powi(i32::from(s.precision)));
        synchronized.push(l(), f64::from(u8::from(s.synchronized())));
        reference.push(labels![server.clone(), address.clone(), s.reference()], 1.0);
        samples.push(l(), p.samples as f64);
    }
    [
        up,
        failure,
        kiss,
        offset,
        delay,
        distance,
        root_delay,
        root_dispersion,
        stratum,
        leap,
        precision,
        synchronized,
        reference,
        samples,
    ]
    .into_iter()
    .filter(|f| !f.samples.is_empty())
    .collect()
}

/// How a probe of several samples runs.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Samples wanted per address.
    pub samples: usize,
    /// Time between two requests to one address (at least [`MIN_SPACING`]).
    pub spacing: Duration,
    /// The longest one exchange waits for its answer.
    pub timeout: Duration,
}

/// Probes one address with up to `plan.samples` exchanges, `plan.spacing`
/// apart, all by `deadline`: a request is sent only if its answer can
/// arrive before it. A kiss-o'-death or a refusal ends the probe (a
/// server that asks for less traffic gets none).
pub async fn probe_address(
    server: &str,
    address: SocketAddr,
    plan: Plan,
    deadline: Instant,
) -> (Probed, u32) {
    let mut kept = Vec::new();
    let mut last = None;
    let mut discarded = 0;
    let mut next = Instant::now();
    for i in 0..plan.samples.max(1) {
        if i > 0 {
            // A later sample only when its whole timeout fits before the deadline.
            if next + plan.timeout > deadline {
                break;
            }
            tokio::time::sleep_until(next).await;
        }
        next = Instant::now() + plan.spacing.max(MIN_SPACING);
        let ex = exchange(address, (Instant::now() + plan.timeout).min(deadline)).await;
        discarded += ex.discarded;
        let stop = matches!(
            ex.outcome,
            Outcome::Kiss(_) | Outcome::Refused | Outcome::Network(_)
        );
        if let Outcome::Time(s) = &ex.outcome {
            kept.push(*s);
        }
        last = Some(ex.outcome);
        if stop {
            break;
        }
    }
    // Within one probe the time of any sample stands: the best of them is
    // published even if a later request went unanswered.
    let best = sntp::best(&kept).copied();
    let last = match (&best, last) {
        (Some(s), Some(o)) if o.failure().is_some() && !matches!(o, Outcome::Kiss(_)) => {
            Some(Outcome::Time(*s))
        }
        (_, o) => o,
    };
    (
        Probed {
            server: server.to_owned(),
            address: Some(address),
            last,
            best,
            samples: kept.len(),
        },
        discarded,
    )
}

/// An address block of `--probe.allow`: `ADDRESS/PREFIX` or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    base: std::net::IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `192.0.2.0/24`, `2001:db8::/32`, `192.0.2.1` (a /32).
    pub fn parse(s: &str) -> Result<Net, String> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let base: std::net::IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?}: not an address or ADDRESS/PREFIX"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= max)
                .ok_or_else(|| format!("{s:?}: prefix must be 0 to {max}"))?,
        };
        let net = Net { base, prefix };
        if net.masked(base) != base {
            return Err(format!("{s:?}: host bits set after /{prefix}"));
        }
        Ok(net)
    }

    fn masked(self, a: std::net::IpAddr) -> std::net::IpAddr {
        use std::net::IpAddr;
        match a {
            IpAddr::V4(v) => {
                let m = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(v) & m).into())
            }
            IpAddr::V6(v) => {
                let m = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(v) & m).into())
            }
        }
    }

    /// Whether `a` is in the block. An IPv4-mapped IPv6 address counts as
    /// its IPv4 address.
    pub fn contains(self, a: std::net::IpAddr) -> bool {
        let a = match a {
            std::net::IpAddr::V6(v) => v.to_ipv4_mapped().map_or(a, std::net::IpAddr::V4),
            v4 @ std::net::IpAddr::V4(_) => v4,
        };
        a.is_ipv4() == self.base.is_ipv4() && self.masked(a) == self.base
    }
}

impl std::fmt::Display for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}
