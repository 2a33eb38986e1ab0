//! timesyncd's properties decoded, and turned into the shared model and
//! timesyncd's own series. Pure: properties in, families out.
//!
//! The types and units are systemd's (`src/timesync/timesyncd-bus.c`,
//! `org.freedesktop.timesync1(5)`):
//!
//! | property | signature | meaning |
//! |---|---|---|
//! | `ServerName` | `s` | the name of the server in use, as configured |
//! | `ServerAddress` | `(iay)` | its address family (`AF_INET` 2, `AF_INET6` 10, 0 none) and bytes |
//! | `PollIntervalUSec` | `t` | the current poll interval, µs |
//! | `RootDistanceMaxUSec` | `t` | the largest root distance timesyncd accepts, µs |
//! | `Frequency` | `x` | the kernel frequency timesyncd set (`timex.freq`, ppm × 2¹⁶) |
//! | `NTPMessage` | `(uuuuittayttttbtt)` | the last reply accepted: leap, version, mode, stratum, precision (log₂ s), root delay µs, root dispersion µs, reference id, origin (T1, local send time, µs since 1970), receive (T2), transmit (T3), destination (T4, local), spike, packet count, jitter µs |
//!
//! timesyncd saves a reply only after its own checks (LI ≠ 3, stratum
//! 1–15, version 3 or 4, mode 4, root distance within the maximum), and
//! keeps it after the server stops answering: how fresh it is says whether
//! timesyncd is still synchronised ([`Reading::synchronized`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::metrics::{Family, labels, metrics};
use crate::model::{
    AuthMode, Daemon, DaemonReport, Peer, PeerAuth, PeerKind, PeerState, SyncStatus,
};
use crate::proto::ntp::RefId;
use crate::sys::dbus::{Properties, Value};

/// RFC 5905's frequency tolerance φ: how fast a measurement's error grows
/// with its age, 15 ppm.
pub const PHI: f64 = 15e-6;

/// How long past twice the poll interval a reply may be before timesyncd
/// counts as unsynchronised: its reply timeout plus a margin.
pub const FRESHNESS_GRACE_SECONDS: f64 = 10.0;

/// The longest `ServerName` kept for a label, in bytes.
pub const MAX_NAME_BYTES: usize = 253;

const US: f64 = 1e-6;

metrics! {
    /// The families only timesyncd emits; the shared model's are listed
    /// beside them in the collector's registration.
    pub static METRICS = [
        SYNCHRONIZED: Gauge(
            "clock_timesyncd_synchronized",
            [],
            "1 when timesyncd counts as synchronised by the exporter's rule (a server in use, a reply fresher than twice the poll interval plus 10 s, leap not 3, stratum 1-15, root distance within RootDistanceMaxUSec), else 0; timesyncd itself has no such property."
        ),
        LAST_MESSAGE_AGE: Gauge(
            "clock_timesyncd_last_message_age_seconds",
            [],
            "Time since timesyncd received the last reply it accepted (NTPMessage's destination timestamp), in seconds."
        ),
        SPIKE: Gauge(
            "clock_timesyncd_spike",
            [],
            "1 when timesyncd's spike detection set the last reply aside (the clock was not adjusted for it), else 0."
        ),
        PACKETS: Counter(
            "clock_timesyncd_packets",
            [],
            "Replies timesyncd accepted and fed to its spike detection since it started (NTPMessage's packet count)."
        ),
        ROOT_DISTANCE_MAX: Gauge(
            "clock_timesyncd_root_distance_max_seconds",
            [],
            "The largest root distance timesyncd accepts from a server (RootDistanceMaxUSec), in seconds."
        ),
        SERVER_INFO: Gauge(
            "clock_timesyncd_server_info",
            ["name", "address"],
            "The server timesyncd uses: its configured name and its address (empty when none)."
        ),
    ];
}

/// Why timesyncd's properties could not be read as timesyncd's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub String);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `NTPMessage`, decoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NtpMessage {
    /// Leap indicator of the reply.
    pub leap: u32,
    /// NTP version of the reply.
    pub version: u32,
    /// NTP mode of the reply.
    pub mode: u32,
    /// The server's stratum.
    pub stratum: u32,
    /// The server's precision, log₂ seconds.
    pub precision: i32,
    /// The server's root delay, µs.
    pub root_delay_us: u64,
    /// The server's root dispersion, µs.
    pub root_dispersion_us: u64,
    /// The server's reference id.
    pub refid: [u8; 4],
    /// T1, when timesyncd sent the request (its clock), µs since 1970.
    pub origin_us: u64,
    /// T2, when the server received it (its clock).
    pub receive_us: u64,
    /// T3, when the server answered (its clock).
    pub transmit_us: u64,
    /// T4, when timesyncd received the answer (its clock).
    pub destination_us: u64,
    /// Whether timesyncd's spike detection set it aside.
    pub spike: bool,
    /// Replies fed to the spike detection so far.
    pub packet_count: u64,
    /// timesyncd's jitter estimate, µs.
    pub jitter_us: u64,
}

/// The signature of `NTPMessage`.
pub const NTP_MESSAGE_SIGNATURE: &str = "(uuuuittayttttbtt)";

/// `a − b` of two µs timestamps, exact for any u64 pair.
fn diff_us(a: u64, b: u64) -> i128 {
    i128::from(a) - i128::from(b)
}

impl NtpMessage {
    /// Whether timesyncd has received a reply at all: before the first,
    /// systemd sends the zeroed struct.
    pub fn received(&self) -> bool {
        self.destination_us != 0 && self.transmit_us != 0
    }

    /// θ = ((T2 − T1) + (T3 − T4)) / 2: the server's clock minus the local
    /// clock, in seconds (RFC 5905; positive when the server is ahead).
    pub fn offset_seconds(&self) -> f64 {
        (diff_us(self.receive_us, self.origin_us) + diff_us(self.transmit_us, self.destination_us))
            as f64
            / 2e6
    }

    /// δ = (T4 − T1) − (T3 − T2), in seconds, never below 0.
    pub fn delay_seconds(&self) -> f64 {
        ((diff_us(self.destination_us, self.origin_us) - diff_us(self.transmit_us, self.receive_us))
            as f64
            * US)
            .max(0.0)
    }

    /// The server's root distance as timesyncd checks it: root delay / 2 +
    /// root dispersion, in seconds.
    pub fn server_root_distance_seconds(&self) -> f64 {
        self.root_delay_us as f64 * US / 2.0 + self.root_dispersion_us as f64 * US
    }
}

/// What one read of timesyncd's properties says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// `ServerName`, cut to [`MAX_NAME_BYTES`]; empty when none.
    pub server_name: String,
    /// `ServerAddress`, when a server is in use.
    pub server_address: Option<IpAddr>,
    /// `NTPMessage`.
    pub message: NtpMessage,
    /// `PollIntervalUSec`, seconds.
    pub poll_interval_seconds: f64,
    /// `RootDistanceMaxUSec`, seconds, when published.
    pub root_distance_max_seconds: Option<f64>,
    /// `Frequency`, when published: the kernel's `freq` (ppm × 2¹⁶).
    pub frequency: Option<i64>,
    /// When the exporter read the properties, seconds since 1970 (its
    /// clock, as T4 is timesyncd's: the same clock).
    pub read_at_unix_seconds: f64,
}

fn property<'a>(p: &'a Properties, name: &str) -> Option<&'a Value<'static>> {
    p.get(name).map(|v| &**v)
}

fn wrong_type(name: &str, v: &Value<'_>, expected: &str) -> DecodeError {
    DecodeError(format!(
        "timesyncd's {name} has signature {}, expected {expected}: whatever owns org.freedesktop.timesync1 is not timesyncd as systemd documents it",
        v.value_signature()
    ))
}

fn required<'a>(p: &'a Properties, name: &str) -> Result<&'a Value<'static>, DecodeError> {
    property(p, name).ok_or_else(|| {
        DecodeError(format!(
            "timesyncd published no {name} property (is this systemd-timesyncd 239 or later?)"
        ))
    })
}

fn u64_of(name: &str, v: &Value<'_>) -> Result<u64, DecodeError> {
    match v {
        Value::U64(x) => Ok(*x),
        other => Err(wrong_type(name, other, "t")),
    }
}

fn optional_u64(p: &Properties, name: &str) -> Result<Option<u64>, DecodeError> {
    property(p, name).map(|v| u64_of(name, v)).transpose()
}

/// `ServerName`, cut at a character boundary within [`MAX_NAME_BYTES`].
fn server_name(p: &Properties) -> Result<String, DecodeError> {
    let Some(v) = property(p, "ServerName") else {
        return Ok(String::new());
    };
    let Value::Str(s) = v else {
        return Err(wrong_type("ServerName", v, "s"));
    };
    let s = s.as_str();
    let mut end = s.len().min(MAX_NAME_BYTES);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    Ok(s[..end].to_owned())
}

/// The bytes of an `ay`; `None` when an element is not a byte.
fn byte_array(a: &zbus::zvariant::Array<'_>) -> Option<Vec<u8>> {
    a.inner()
        .iter()
        .map(|b| match b {
            Value::U8(b) => Some(*b),
            _ => None,
        })
        .collect()
}

/// `ServerAddress` `(iay)`: family 0 with no bytes when no server is in use.
fn server_address(v: &Value<'_>) -> Result<Option<IpAddr>, DecodeError> {
    const NAME: &str = "ServerAddress";
    let Value::Structure(s) = v else {
        return Err(wrong_type(NAME, v, "(iay)"));
    };
    let (Some(Value::I32(family)), Some(Value::Array(bytes)), 2) =
        (s.fields().first(), s.fields().get(1), s.fields().len())
    else {
        return Err(wrong_type(NAME, v, "(iay)"));
    };
    let bytes = byte_array(bytes).ok_or_else(|| wrong_type(NAME, v, "(iay)"))?;
    match (*family, bytes.len()) {
        (0, _) => Ok(None),
        (libc::AF_INET, 4) => Ok(Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        )))),
        (libc::AF_INET6, 16) => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&bytes);
            Ok(Some(IpAddr::V6(Ipv6Addr::from(a)).to_canonical()))
        }
        (f, n) => Err(DecodeError(format!(
            "timesyncd's ServerAddress has family {f} with {n} bytes; expected 2 (AF_INET) with 4 or 10 (AF_INET6) with 16"
        ))),
    }
}

/// `NTPMessage` `(uuuuittayttttbtt)`.
fn ntp_message(v: &Value<'_>) -> Result<NtpMessage, DecodeError> {
    const NAME: &str = "NTPMessage";
    let bad = || wrong_type(NAME, v, NTP_MESSAGE_SIGNATURE);
    let Value::Structure(s) = v else {
        return Err(bad());
    };
    let f = s.fields();
    if f.len() != 15 {
        return Err(bad());
    }
    let u32_at = |i: usize| match f[i] {
        Value::U32(x) => Ok(x),
        _ => Err(bad()),
    };
    let u64_at = |i: usize| match f[i] {
        Value::U64(x) => Ok(x),
        _ => Err(bad()),
    };
    let Value::I32(precision) = f[4] else {
        return Err(bad());
    };
    let Value::Array(refid) = &f[7] else {
        return Err(bad());
    };
    let refid = byte_array(refid).ok_or_else(bad)?;
    let refid: [u8; 4] = refid.try_into().map_err(|r: Vec<u8>| {
        DecodeError(format!(
            "timesyncd's NTPMessage has a reference id of {} bytes, expected 4",
            r.len()
        ))
    })?;
    let Value::Bool(spike) = f[12] else {
        return Err(bad());
    };
    Ok(NtpMessage {
        leap: u32_at(0)?,
        version: u32_at(1)?,
        mode: u32_at(2)?,
        stratum: u32_at(3)?,
        precision,
        root_delay_us: u64_at(5)?,
        root_dispersion_us: u64_at(6)?,
        refid,
        origin_us: u64_at(8)?,
        receive_us: u64_at(9)?,
        transmit_us: u64_at(10)?,
        destination_us: u64_at(11)?,
        spike,
        packet_count: u64_at(13)?,
        jitter_us: u64_at(14)?,
    })
}

impl Reading {
    /// Decodes timesyncd's `GetAll` answer read at `read_at_unix_seconds`.
    /// `NTPMessage`, `ServerAddress` and `PollIntervalUSec` are required;
    /// the others may be missing. Any property of the wrong type is an
    /// error: it is not timesyncd that answers.
    pub fn decode(p: &Properties, read_at_unix_seconds: f64) -> Result<Reading, DecodeError> {
        let message = ntp_message(required(p, "NTPMessage")?)?;
        let server_address = server_address(required(p, "ServerAddress")?)?;
        let poll = u64_of("PollIntervalUSec", required(p, "PollIntervalUSec")?)?;
        let frequency = match property(p, "Frequency") {
            None => None,
            Some(Value::I64(x)) => Some(*x),
            Some(v) => return Err(wrong_type("Frequency", v, "x")),
        };
        Ok(Reading {
            server_name: server_name(p)?,
            server_address,
            message,
            poll_interval_seconds: poll as f64 * US,
            root_distance_max_seconds: optional_u64(p, "RootDistanceMaxUSec")?
                .map(|x| x as f64 * US),
            frequency,
            read_at_unix_seconds,
        })
    }

    /// Seconds since timesyncd received the last reply, when it has one;
    /// 0 when the reply looks newer than the read (the clock was stepped).
    pub fn message_age_seconds(&self) -> Option<f64> {
        self.message
            .received()
            .then(|| (self.read_at_unix_seconds - self.message.destination_us as f64 * US).max(0.0))
    }

    /// Whether the reply is recent enough: at most twice the poll interval
    /// plus [`FRESHNESS_GRACE_SECONDS`] old.
    pub fn fresh(&self) -> bool {
        self.message_age_seconds()
            .is_some_and(|a| a <= 2.0 * self.poll_interval_seconds + FRESHNESS_GRACE_SECONDS)
    }

    /// Whether the reply passes what timesyncd itself checks before using
    /// one: leap not 3, stratum 1 to 15, root distance within the maximum.
    fn acceptable(&self) -> bool {
        let m = &self.message;
        m.leap != 3
            && (1..=15).contains(&m.stratum)
            && self
                .root_distance_max_seconds
                .is_none_or(|max| m.server_root_distance_seconds() <= max)
    }

    /// The exporter's rule for "timesyncd is synchronised", which timesyncd
    /// does not publish: a server is in use, its last reply is fresh
    /// ([`Self::fresh`]) and acceptable (leap not 3, stratum 1–15, root
    /// distance within `RootDistanceMaxUSec`). A spike does not
    /// unsynchronise: timesyncd sets one sample aside and keeps its server.
    pub fn synchronized(&self) -> bool {
        self.server_address.is_some() && self.fresh() && self.acceptable()
    }

    /// The server's state in the shared vocabulary.
    fn state(&self) -> PeerState {
        if !self.message.received() || !self.fresh() {
            PeerState::Unreachable
        } else if !self.acceptable() {
            PeerState::Rejected
        } else if self.message.spike {
            PeerState::Outlier
        } else {
            PeerState::Selected
        }
    }

    /// The shared model: timesyncd's own status and its one server.
    pub fn report(&self) -> DaemonReport {
        let m = &self.message;
        let synced = self.synchronized();
        let received = m.received();
        let age = self.message_age_seconds().unwrap_or(0.0);
        let jitter = m.jitter_us as f64 * US;
        let root_delay = m.root_delay_us as f64 * US;
        let root_dispersion = m.root_dispersion_us as f64 * US;
        let reference = match (synced, self.server_address) {
            (true, Some(a)) => a.to_string(),
            _ => String::new(),
        };
        let sync = SyncStatus {
            offset_seconds: received.then(|| m.offset_seconds()),
            stratum: Some(if synced {
                m.stratum.saturating_add(1).min(16) as u8
            } else {
                16
            }),
            leap: Some(if synced { m.leap.min(3) as u8 } else { 3 }),
            root_delay_seconds: received.then(|| root_delay + m.delay_seconds()),
            root_dispersion_seconds: received.then_some(root_dispersion + PHI * age),
            frequency_ratio: self.frequency.map(|f| f as f64 / 65_536e6),
            frequency_wander_ratio: None,
            jitter_seconds: received.then_some(jitter),
            poll_interval_seconds: Some(self.poll_interval_seconds),
            reference,
        };
        let peers = self
            .server_address
            .map(|a| Peer {
                address: a.to_string(),
                kind: PeerKind::Server,
                refid: if received {
                    RefId(m.refid).text(m.stratum.min(255) as u8)
                } else {
                    String::new()
                },
                state: self.state(),
                stratum: received.then(|| m.stratum.min(255) as u8),
                offset_seconds: received.then(|| m.offset_seconds()),
                delay_seconds: received.then(|| m.delay_seconds()),
                jitter_seconds: received.then_some(jitter),
                dispersion_seconds: None,
                error_bound_seconds: received.then(|| {
                    f64::midpoint(root_delay, m.delay_seconds())
                        + root_dispersion
                        + PHI * age
                        + jitter
                }),
                // timesyncd keeps no reach register.
                reachability_ratio: None,
                poll_interval_seconds: Some(self.poll_interval_seconds),
                leap: received
                    .then_some(m.leap)
                    .and_then(|l| u8::try_from(l).ok())
                    .filter(|l| *l <= 3),
                // timesyncd has no authentication at all.
                auth: Some(PeerAuth {
                    mode: AuthMode::None,
                    authenticated: false,
                }),
            })
            .into_iter()
            .collect();
        DaemonReport {
            daemon: Daemon::Timesyncd,
            sync: Some(sync),
            peers,
            server_requests_total: None,
        }
    }

    /// The shared families and timesyncd's own.
    pub fn families(&self) -> Vec<Family> {
        let mut out = self.report().families();
        out.push(
            SYNCHRONIZED
                .family()
                .with(labels![], f64::from(u8::from(self.synchronized()))),
        );
        if let Some(age) = self.message_age_seconds() {
            out.push(LAST_MESSAGE_AGE.family().with(labels![], age));
            out.push(
                SPIKE
                    .family()
                    .with(labels![], f64::from(u8::from(self.message.spike))),
            );
        }
        out.push(
            PACKETS
                .family()
                .with(labels![], self.message.packet_count as f64),
        );
        if let Some(max) = self.root_distance_max_seconds {
            out.push(ROOT_DISTANCE_MAX.family().with(labels![], max));
        }
        let address = self
            .server_address
            .map(|a| a.to_string())
            .unwrap_or_default();
        out.push(
            SERVER_INFO
                .family()
                .with(labels![self.server_name.clone(), address], 1.0),
        );
        out
    }
}
