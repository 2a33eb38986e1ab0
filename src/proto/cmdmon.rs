//! chrony's command and monitoring protocol ("cmdmon"), as chrony's `candm.h`
//! defines it: the requests this exporter sends and the replies it reads.
//!
//! Pure: requests are encoded into bytes, replies are decoded from `&[u8]`,
//! nothing here touches a socket. Every multi-byte field is big-endian.
//!
//! - A request is a 20-byte header (`CMD_Request`: version, packet type,
//!   command, attempt, sequence) and the command's data, *padded with zeros to
//!   the length of the reply*: chronyd never sends a reply longer than the
//!   request (an anti-amplification rule of protocol version 6), and drops
//!   requests shorter than their command's full length. Where chrony versions
//!   answer one command with replies of different lengths (SERVER_STATS,
//!   NTP_DATA), requests are padded to the longest, which older chronyd
//!   accepts (it only refuses requests *shorter* than it expects).
//! - A reply is a 28-byte header (`CMD_Reply`: version, packet type, command,
//!   reply format, status, sequence) and the reply format's data.
//! - Numbers that are not integers travel in chrony's own 32-bit [`Float`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The protocol version this module speaks (`PROTO_VERSION_NUMBER`).
pub const PROTO_VERSION: u8 = 6;
/// chronyd's default command port (`DEFAULT_CANDM_PORT`).
pub const DEFAULT_PORT: u16 = 323;
/// Length of a request header (`offsetof(CMD_Request, data)`).
pub const REQUEST_HEADER_LEN: usize = 20;
/// Length of a reply header (`offsetof(CMD_Reply, data)`).
pub const REPLY_HEADER_LEN: usize = 28;
/// A receive buffer this long holds any reply chronyd sends (`CMD_Reply` is
/// under 500 bytes in every version); longer datagrams are not chronyd's.
pub const MAX_DATAGRAM: usize = 1024;
/// More sources than this in an N_SOURCES reply is not a real chronyd (its
/// source table holds a few hundred at most); the exporter refuses to send
/// that many requests.
pub const MAX_SOURCES: u32 = 4096;

const PKT_TYPE_CMD_REQUEST: u8 = 1;
const PKT_TYPE_CMD_REPLY: u8 = 2;

/// Request codes (`REQ_*` in `candm.h`).
mod req {
    pub const N_SOURCES: u16 = 14;
    pub const SOURCE_DATA: u16 = 15;
    pub const TRACKING: u16 = 33;
    pub const SOURCESTATS: u16 = 34;
    pub const SERVER_STATS: u16 = 54;
    pub const NTP_DATA: u16 = 57;
    pub const AUTH_DATA: u16 = 67;
}

/// Reply formats (`RPY_*` in `candm.h`).
mod rpy {
    pub const N_SOURCES: u16 = 2;
    pub const SOURCE_DATA: u16 = 3;
    pub const TRACKING: u16 = 5;
    pub const SOURCESTATS: u16 = 6;
    /// chrony 3.x: five 32-bit counters.
    pub const SERVER_STATS: u16 = 14;
    /// chrony 4.0 and 4.1: adds NTS-KE and authenticated NTP counters.
    pub const SERVER_STATS2: u16 = 22;
    /// chrony 4.2 and 4.3: adds interleaved-mode statistics.
    pub const SERVER_STATS3: u16 = 24;
    /// chrony 4.4 and later: 64-bit counters, timestamp sources.
    pub const SERVER_STATS4: u16 = 25;
    /// chrony 3.x up to 4.3.
    pub const NTP_DATA: u16 = 16;
    /// chrony 4.4 and later: adds good-sample and timestamping counts.
    pub const NTP_DATA2: u16 = 26;
    /// chrony 4.0 and later: a source's authentication (`RPY_AuthData`).
    pub const AUTH_DATA: u16 = 20;
}

/// Length of the data of each reply format (`offsetof(CMD_Reply, data.X.EOR)`
/// minus the header), as `pktlength.c` computes it.
fn reply_data_len(reply: u16) -> Option<usize> {
    Some(match reply {
        rpy::N_SOURCES => 4,
        rpy::SOURCE_DATA => 48,
        rpy::TRACKING => 76,
        rpy::SOURCESTATS => 56,
        rpy::SERVER_STATS => 5 * 4,
        rpy::SERVER_STATS2 => 8 * 4,
        rpy::SERVER_STATS3 => 11 * 4,
        rpy::SERVER_STATS4 => 21 * 8,
        rpy::NTP_DATA => 124,
        rpy::NTP_DATA2 => 144,
        rpy::AUTH_DATA => 24,
        _ => return None,
    })
}

/// Why bytes are not the reply this module expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the header or the reply format needs.
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes present.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// Not a cmdmon reply: wrong packet type or non-zero reserved bytes.
    NotAReply {
        /// The packet type byte.
        pkt_type: u8,
    },
    /// A reply in another protocol version.
    Version {
        /// The version byte.
        got: u8,
    },
    /// A reply format that does not answer the command.
    UnexpectedReply {
        /// The command the reply is for.
        command: u16,
        /// The reply format it has.
        reply: u16,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { what, len, need } => {
                write!(f, "{what} truncated: {len} bytes, need {need}")
            }
            ParseError::NotAReply { pkt_type } => write!(
                f,
                "not a chrony command reply (packet type {pkt_type}); is chronyd listening there?"
            ),
            ParseError::Version { got } => write!(
                f,
                "chronyd answered in cmdmon protocol version {got}, this exporter speaks {PROTO_VERSION}"
            ),
            ParseError::UnexpectedReply { command, reply } => {
                write!(f, "reply format {reply} does not answer command {command}")
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// A reply status (`STT_*` in `candm.h`) other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// `STT_FAILED`.
    Failed,
    /// `STT_UNAUTH`: the command is not allowed from where it came; over UDP
    /// only the monitoring commands chronyd lists as open are.
    Unauthorised,
    /// `STT_INVALID`: chronyd does not know the command.
    Invalid,
    /// `STT_NOSUCHSOURCE`.
    NoSuchSource,
    /// `STT_INACTIVE`.
    Inactive,
    /// `STT_BADPKTVERSION`.
    BadPacketVersion,
    /// `STT_BADPKTLENGTH`: the request was shorter than chronyd expects.
    BadPacketLength,
    /// Any other code.
    Other(u16),
}

impl Status {
    /// The status of a code; `None` for success.
    pub fn from_code(code: u16) -> Option<Status> {
        Some(match code {
            0 => return None,
            1 => Status::Failed,
            2 => Status::Unauthorised,
            3 => Status::Invalid,
            4 => Status::NoSuchSource,
            15 => Status::Inactive,
            18 => Status::BadPacketVersion,
            19 => Status::BadPacketLength,
            c => Status::Other(c),
        })
    }

    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            Status::Failed => 1,
            Status::Unauthorised => 2,
            Status::Invalid => 3,
            Status::NoSuchSource => 4,
            Status::Inactive => 15,
            Status::BadPacketVersion => 18,
            Status::BadPacketLength => 19,
            Status::Other(c) => c,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Failed => f.write_str("command failed"),
            Status::Unauthorised => {
                f.write_str("not authorised (chronyd answers this command only on its unix socket)")
            }
            Status::Invalid => f.write_str("chronyd does not know this command (older chronyd?)"),
            Status::NoSuchSource => f.write_str("no such source"),
            Status::Inactive => f.write_str("client logging is not active in chronyd"),
            Status::BadPacketVersion => {
                f.write_str("chronyd speaks another cmdmon protocol version")
            }
            Status::BadPacketLength => f.write_str("request shorter than chronyd expects"),
            Status::Other(c) => write!(f, "status {c}"),
        }
    }
}

/// Why a datagram is not the answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A well-formed reply to another request (a late answer to an earlier
    /// one): skip it and keep waiting.
    NotOurs {
        /// Its command.
        command: u16,
        /// Its sequence number.
        sequence: u32,
    },
    /// chronyd refused the request.
    Refused(Status),
    /// The bytes are not a usable reply.
    Parse(ParseError),
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::NotOurs { command, sequence } => write!(
                f,
                "reply to another request (command {command}, sequence {sequence:#010x})"
            ),
            ReplyError::Refused(s) => write!(f, "chronyd refused: {s}"),
            ReplyError::Parse(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ReplyError {}

impl From<ParseError> for ReplyError {
    fn from(e: ParseError) -> Self {
        ReplyError::Parse(e)
    }
}

/// chrony's 32-bit floating-point number (`Float` in `candm.h`): a 7-bit
/// signed exponent above a 25-bit signed coefficient without hidden bit,
/// worth `coef · 2^(exp − 25)` (`UTI_FloatNetworkToHost` in `util.c`). Its
/// resolution is 2⁻²⁴ relative, about 6e-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Float(pub u32);

const FLOAT_EXP_BITS: u32 = 7;
const FLOAT_COEF_BITS: u32 = 32 - FLOAT_EXP_BITS;
const FLOAT_EXP_MIN: i32 = -(1 << (FLOAT_EXP_BITS - 1));
const FLOAT_EXP_MAX: i32 = -FLOAT_EXP_MIN - 1;
const FLOAT_COEF_MAX: i32 = (1 << (FLOAT_COEF_BITS - 1)) - 1;

impl Float {
    /// The value.
    pub fn to_f64(self) -> f64 {
        let x = self.0;
        let mut exp = (x >> FLOAT_COEF_BITS) as i32;
        if exp >= 1 << (FLOAT_EXP_BITS - 1) {
            exp -= 1 << FLOAT_EXP_BITS;
        }
        exp -= FLOAT_COEF_BITS as i32;
        let mut coef = (x % (1 << FLOAT_COEF_BITS)) as i32;
        if coef >= 1 << (FLOAT_COEF_BITS - 1) {
            coef -= 1 << FLOAT_COEF_BITS;
        }
        f64::from(coef) * 2f64.powi(exp)
    }

    /// The nearest representable value, as chronyd encodes it
    /// (`UTI_FloatHostToNetwork`): NaN becomes 0, magnitudes beyond the range
    /// saturate, tiny ones become 0. Used by tests and test responders.
    pub fn from_f64(x: f64) -> Float {
        let (neg, x) = if x < 0.0 {
            (true, -x)
        } else if x >= 0.0 {
            (false, x)
        } else {
            (false, 0.0)
        };
        let neg_i = i32::from(neg);
        let (mut exp, mut coef): (i32, i32);
        if x < 1.0e-100 {
            (exp, coef) = (0, 0);
        } else if x > 1.0e100 {
            (exp, coef) = (FLOAT_EXP_MAX, FLOAT_COEF_MAX + neg_i);
        } else {
            exp = (x.ln() / std::f64::consts::LN_2) as i32 + 1;
            coef = (x * 2f64.powi(-exp + FLOAT_COEF_BITS as i32) + 0.5) as i32;
            while coef > FLOAT_COEF_MAX + neg_i {
                coef >>= 1;
                exp += 1;
            }
            if exp > FLOAT_EXP_MAX {
                (exp, coef) = (FLOAT_EXP_MAX, FLOAT_COEF_MAX + neg_i);
            } else if exp < FLOAT_EXP_MIN {
                if exp + FLOAT_COEF_BITS as i32 >= FLOAT_EXP_MIN {
                    coef >>= FLOAT_EXP_MIN - exp;
                    exp = FLOAT_EXP_MIN;
                } else {
                    (exp, coef) = (0, 0);
                }
            }
        }
        let coef = if neg {
            (coef.wrapping_neg() as u32) << FLOAT_EXP_BITS >> FLOAT_EXP_BITS
        } else {
            coef as u32
        };
        Float(((exp as u32) << FLOAT_COEF_BITS) | coef)
    }
}

/// chrony's `Timespec`: seconds in two 32-bit halves (the high half
/// `0x7fffffff` on a 32-bit `time_t` build means 0) and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Timespec {
    /// High 32 bits of the seconds, or `TV_NOHIGHSEC`.
    pub sec_high: u32,
    /// Low 32 bits of the seconds.
    pub sec_low: u32,
    /// Nanoseconds.
    pub nsec: u32,
}

const TV_NOHIGHSEC: u32 = 0x7fff_ffff;

impl Timespec {
    /// Seconds since the Unix epoch (`UTI_TimespecNetworkToHost`).
    pub fn to_unix_seconds(self) -> f64 {
        let high = if self.sec_high == TV_NOHIGHSEC {
            0
        } else {
            self.sec_high
        };
        let secs = (u64::from(high) << 32) | u64::from(self.sec_low);
        secs as f64 + f64::from(self.nsec.min(999_999_999)) * 1e-9
    }
}

/// chrony's `IPAddr`: 16 address bytes, a family and padding (20 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Address {
    /// `IPADDR_UNSPEC`: no address (reference clocks in some replies, no reference).
    Unspec,
    /// `IPADDR_INET4`.
    Inet4(Ipv4Addr),
    /// `IPADDR_INET6`.
    Inet6(Ipv6Addr),
    /// `IPADDR_ID`: a source whose name is not resolved yet.
    Id(u32),
    /// A family this module does not know.
    Unknown(u16),
}

/// Wire length of an [`Address`].
pub const ADDRESS_LEN: usize = 20;

impl Address {
    /// The IP address, for the two IP families.
    pub fn ip(self) -> Option<IpAddr> {
        match self {
            Address::Inet4(a) => Some(IpAddr::V4(a)),
            Address::Inet6(a) => Some(IpAddr::V6(a)),
            _ => None,
        }
    }

    fn parse(b: &[u8; ADDRESS_LEN]) -> Address {
        match u16::from_be_bytes([b[16], b[17]]) {
            0 => Address::Unspec,
            1 => Address::Inet4(Ipv4Addr::new(b[0], b[1], b[2], b[3])),
            2 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(&b[..16]);
                Address::Inet6(Ipv6Addr::from(a))
            }
            3 => Address::Id(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
            f => Address::Unknown(f),
        }
    }

    /// The 20 wire bytes (`UTI_IPHostToNetwork`).
    pub fn encode(self) -> [u8; ADDRESS_LEN] {
        let mut b = [0u8; ADDRESS_LEN];
        let family: u16 = match self {
            Address::Unspec | Address::Unknown(_) => 0,
            Address::Inet4(a) => {
                b[..4].copy_from_slice(&a.octets());
                1
            }
            Address::Inet6(a) => {
                b[..16].copy_from_slice(&a.octets());
                2
            }
            Address::Id(id) => {
                b[..4].copy_from_slice(&id.to_be_bytes());
                3
            }
        };
        b[16..18].copy_from_slice(&family.to_be_bytes());
        b
    }
}

impl From<IpAddr> for Address {
    fn from(a: IpAddr) -> Self {
        match a {
            IpAddr::V4(a) => Address::Inet4(a),
            IpAddr::V6(a) => Address::Inet6(a),
        }
    }
}

/// A reference id as chronyc prints it in brackets (`UTI_RefidToString`):
/// its four bytes as characters, non-printable ones left out.
pub fn refid_text(ref_id: u32) -> String {
    ref_id
        .to_be_bytes()
        .iter()
        .filter(|b| (0x20..0x7f).contains(*b))
        .map(|&b| b as char)
        .collect()
}

/// A request this exporter sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// `tracking`: the daemon's own synchronisation.
    Tracking,
    /// The number of sources.
    NSources,
    /// One source's selection data, by index.
    SourceData(u32),
    /// One source's sample statistics, by index.
    SourceStats(u32),
    /// Server statistics (unix socket only).
    ServerStats,
    /// One NTP source's last packet and measurement, by address (unix socket only).
    NtpData(IpAddr),
    /// One NTP source's authentication: symmetric key or NTS, by address
    /// (unix socket only up to chrony 4.6).
    AuthData(IpAddr),
}

impl Request {
    /// The command code.
    pub fn command(self) -> u16 {
        match self {
            Request::Tracking => req::TRACKING,
            Request::NSources => req::N_SOURCES,
            Request::SourceData(_) => req::SOURCE_DATA,
            Request::SourceStats(_) => req::SOURCESTATS,
            Request::ServerStats => req::SERVER_STATS,
            Request::NtpData(_) => req::NTP_DATA,
            Request::AuthData(_) => req::AUTH_DATA,
        }
    }

    /// The command's name as chronyc calls it, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Request::Tracking => "tracking",
            Request::NSources => "sources (count)",
            Request::SourceData(_) => "sources",
            Request::SourceStats(_) => "sourcestats",
            Request::ServerStats => "serverstats",
            Request::NtpData(_) => "ntpdata",
            Request::AuthData(_) => "authdata",
        }
    }

    /// The reply formats that answer it, newest last.
    fn replies(self) -> &'static [u16] {
        match self {
            Request::Tracking => &[rpy::TRACKING],
            Request::NSources => &[rpy::N_SOURCES],
            Request::SourceData(_) => &[rpy::SOURCE_DATA],
            Request::SourceStats(_) => &[rpy::SOURCESTATS],
            Request::ServerStats => &[
                rpy::SERVER_STATS,
                rpy::SERVER_STATS2,
                rpy::SERVER_STATS3,
                rpy::SERVER_STATS4,
            ],
            Request::NtpData(_) => &[rpy::NTP_DATA, rpy::NTP_DATA2],
            Request::AuthData(_) => &[rpy::AUTH_DATA],
        }
    }

    /// The encoded length: the header and data, padded to the longest reply.
    pub fn encoded_len(self) -> usize {
        let data = match self {
            Request::Tracking | Request::NSources | Request::ServerStats => 0,
            Request::SourceData(_) | Request::SourceStats(_) => 4,
            Request::NtpData(_) | Request::AuthData(_) => ADDRESS_LEN,
        };
        let longest_reply = self
            .replies()
            .iter()
            .filter_map(|&r| reply_data_len(r))
            .max()
            .unwrap_or(0);
        (REQUEST_HEADER_LEN + data).max(REPLY_HEADER_LEN + longest_reply)
    }

    /// The request datagram, with the given sequence number (chronyc draws a
    /// random one for every request; so does the exporter) and attempt 0.
    pub fn encode(self, sequence: u32) -> Vec<u8> {
        let mut b = vec![0u8; self.encoded_len()];
        b[0] = PROTO_VERSION;
        b[1] = PKT_TYPE_CMD_REQUEST;
        b[4..6].copy_from_slice(&self.command().to_be_bytes());
        // b[6..8]: attempt 0; b[12..20]: pad1, pad2.
        b[8..12].copy_from_slice(&sequence.to_be_bytes());
        match self {
            Request::SourceData(i) | Request::SourceStats(i) => {
                b[20..24].copy_from_slice(&i.to_be_bytes());
            }
            Request::NtpData(a) | Request::AuthData(a) => {
                b[20..40].copy_from_slice(&Address::from(a).encode());
            }
            Request::Tracking | Request::NSources | Request::ServerStats => {}
        }
        b
    }
}

/// The reply header (`CMD_Reply` up to `data`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    /// Protocol version.
    pub version: u8,
    /// The command answered.
    pub command: u16,
    /// The reply format.
    pub reply: u16,
    /// The status code (0 success).
    pub status: u16,
    /// The request's sequence number, echoed.
    pub sequence: u32,
}

impl ReplyHeader {
    /// Decodes the 28-byte header.
    pub fn parse(b: &[u8]) -> Result<ReplyHeader, ParseError> {
        let mut r = Reader::new(b, "reply header", REPLY_HEADER_LEN)?;
        let version = r.u8();
        let pkt_type = r.u8();
        let (res1, res2) = (r.u8(), r.u8());
        if pkt_type != PKT_TYPE_CMD_REPLY || res1 != 0 || res2 != 0 {
            return Err(ParseError::NotAReply { pkt_type });
        }
        let command = r.u16();
        let reply = r.u16();
        let status = r.u16();
        r.skip(6);
        let sequence = r.u32();
        Ok(ReplyHeader {
            version,
            command,
            reply,
            status,
            sequence,
        })
    }
}

/// The synchronisation source's state in SOURCE_DATA (`RPY_SD_ST_*`), as
/// chronyd names it. Note chrony's names: `Unselected` is the `+` of
/// `chronyc sources` (combined), `Selectable` the `-` (not combined).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    /// 0, `*`: the current reference.
    Selected,
    /// 1, `?`: unusable (unreachable, no samples, `noselect`, too far).
    Nonselectable,
    /// 2, `x`: may be in error (rejected by the intersection).
    Falseticker,
    /// 3, `~`: too variable.
    Jittery,
    /// 4, `+`: combined with the selected source.
    Unselected,
    /// 5, `-`: acceptable but not combined.
    Selectable,
    /// Any other code.
    Unknown(u16),
}

impl SourceState {
    fn from_code(c: u16) -> SourceState {
        match c {
            0 => SourceState::Selected,
            1 => SourceState::Nonselectable,
            2 => SourceState::Falseticker,
            3 => SourceState::Jittery,
            4 => SourceState::Unselected,
            5 => SourceState::Selectable,
            c => SourceState::Unknown(c),
        }
    }

    /// The state character of `chronyc sources`.
    pub fn symbol(self) -> char {
        match self {
            SourceState::Selected => '*',
            SourceState::Nonselectable => '?',
            SourceState::Falseticker => 'x',
            SourceState::Jittery => '~',
            SourceState::Unselected => '+',
            SourceState::Selectable => '-',
            SourceState::Unknown(_) => ' ',
        }
    }
}

/// What a source is (`RPY_SD_MD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceMode {
    /// An NTP server (`^`).
    Client,
    /// A symmetric peer (`=`).
    Peer,
    /// A reference clock (`#`).
    Reference,
    /// Any other code.
    Unknown(u16),
}

/// A TRACKING reply (`RPY_Tracking`), in chrony's own units and signs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tracking {
    /// Reference id of the reference.
    pub ref_id: u32,
    /// Its address (unspecified for reference clocks and none).
    pub address: Address,
    /// Local stratum.
    pub stratum: u16,
    /// Leap status: 0 normal, 1 insert, 2 delete, 3 unsynchronised.
    pub leap_status: u16,
    /// When the last clock update was made.
    pub ref_time: Timespec,
    /// Correction still to be applied to the system clock, seconds; positive
    /// when the system clock is behind ("slow of NTP time").
    pub current_correction: f64,
    /// Offset estimated at the last update, seconds, local minus reference.
    pub last_offset: f64,
    /// Long-term average of the offset, seconds.
    pub rms_offset: f64,
    /// Frequency error of the clock, ppm, positive when it runs fast
    /// (the kernel's correction negated).
    pub freq_ppm: f64,
    /// Residual frequency of the reference, ppm.
    pub resid_freq_ppm: f64,
    /// Error bound of the frequency, ppm.
    pub skew_ppm: f64,
    /// Root delay, seconds.
    pub root_delay: f64,
    /// Root dispersion, seconds.
    pub root_dispersion: f64,
    /// Interval between the last two clock updates, seconds.
    pub last_update_interval: f64,
}

/// A SOURCE_DATA reply (`RPY_Source_Data`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceData {
    /// The source's address; for a reference clock, IPv4-shaped holding its refid.
    pub address: Address,
    /// log2 of the polling interval.
    pub poll: i16,
    /// Stratum.
    pub stratum: u16,
    /// Selection state.
    pub state: SourceState,
    /// Mode.
    pub mode: SourceMode,
    /// Flags (unused by chrony 4).
    pub flags: u16,
    /// Reach register (8 bits).
    pub reachability: u16,
    /// Seconds since the last sample, `u32::MAX` when there is none.
    pub since_sample: u32,
    /// The last measured offset, seconds, local minus source.
    pub orig_latest_meas: f64,
    /// The same, adjusted for corrections chronyd made to the clock since.
    pub latest_meas: f64,
    /// Error bound of the measurement, seconds.
    pub latest_meas_err: f64,
}

/// A SOURCESTATS reply (`RPY_Sourcestats`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SourceStats {
    /// Reference id chronyd gives the source (for NTP sources derived from the address).
    pub ref_id: u32,
    /// Address; unspecified for reference clocks.
    pub address: Address,
    /// Samples held.
    pub n_samples: u32,
    /// Runs of residuals with the same sign.
    pub n_runs: u32,
    /// Time the samples span, seconds.
    pub span_seconds: u32,
    /// Standard deviation of the samples, seconds.
    pub sd: f64,
    /// Frequency of the source relative to the local clock, ppm, chrony's sign.
    pub resid_freq_ppm: f64,
    /// Error bound of that frequency, ppm.
    pub skew_ppm: f64,
    /// Estimated offset now, seconds, local minus source.
    pub est_offset: f64,
    /// Error of that estimate, seconds.
    pub est_offset_err: f64,
}

/// A SERVER_STATS reply in any of its four formats, counters widened to 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerStats {
    /// Which format (1 to 4): 1 to 3 carry 32-bit counters that wrap.
    pub format: u8,
    /// NTP packets received.
    pub ntp_hits: u64,
    /// NTS-KE connections accepted (format 2+).
    pub nke_hits: Option<u64>,
    /// Command packets received.
    pub cmd_hits: u64,
    /// NTP packets dropped by rate limiting.
    pub ntp_drops: u64,
    /// NTS-KE connections dropped (format 2+).
    pub nke_drops: Option<u64>,
    /// Command packets dropped.
    pub cmd_drops: u64,
    /// Client log records dropped.
    pub log_drops: u64,
    /// Authenticated NTP packets (format 2+).
    pub ntp_auth_hits: Option<u64>,
    /// Interleaved NTP packets (format 3+).
    pub ntp_interleaved_hits: Option<u64>,
    /// Server timestamps held for interleaved mode (format 3+; a level, not a count).
    pub ntp_timestamps: Option<u64>,
    /// Span of the held timestamps, seconds (format 3+).
    pub ntp_span_seconds: Option<u64>,
    /// Receive and transmit timestamps by source: daemon, kernel, hardware (format 4).
    pub timestamps: Option<TimestampCounts>,
}

/// Counts of server timestamps by where they were taken (SERVER_STATS4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimestampCounts {
    /// Receive timestamps taken by the daemon.
    pub daemon_rx: u64,
    /// Transmit timestamps taken by the daemon.
    pub daemon_tx: u64,
    /// Receive timestamps taken by the kernel.
    pub kernel_rx: u64,
    /// Transmit timestamps taken by the kernel.
    pub kernel_tx: u64,
    /// Receive timestamps taken by the network hardware.
    pub hw_rx: u64,
    /// Transmit timestamps taken by the network hardware.
    pub hw_tx: u64,
}

impl ServerStats {
    /// Whether the counters are 32-bit and wrap (formats 1 to 3: chrony 4.3 and older).
    pub fn counters_wrap(&self) -> bool {
        self.format < 4
    }
}

/// An NTP_DATA reply (`RPY_NTPData`), either format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NtpData {
    /// The source's address.
    pub remote_addr: Address,
    /// The local address used.
    pub local_addr: Address,
    /// The source's port.
    pub remote_port: u16,
    /// Leap indicator of the last packet.
    pub leap: u8,
    /// NTP version of the last packet.
    pub version: u8,
    /// NTP mode of the last packet.
    pub mode: u8,
    /// Stratum of the last packet.
    pub stratum: u8,
    /// Poll exponent of the last packet.
    pub poll: i8,
    /// Precision exponent of the last packet.
    pub precision: i8,
    /// Root delay the source announced, seconds.
    pub root_delay: f64,
    /// Root dispersion the source announced, seconds.
    pub root_dispersion: f64,
    /// Reference id the source announced.
    pub ref_id: u32,
    /// Reference time the source announced.
    pub ref_time: Timespec,
    /// Offset of the last measurement, seconds, source minus local (θ:
    /// the opposite of SOURCE_DATA's sign, as the captured fixtures show).
    pub offset: f64,
    /// Round-trip delay of the last measurement, seconds.
    pub peer_delay: f64,
    /// Dispersion of the last measurement, seconds.
    pub peer_dispersion: f64,
    /// The source's processing time, seconds.
    pub response_time: f64,
    /// Estimated asymmetry of the network jitter (−0.5 to 0.5).
    pub jitter_asymmetry: f64,
    /// Test bits and flags ([`NtpData::AUTHENTICATED`], …).
    pub flags: u16,
    /// Where the transmit timestamp was taken (`D`, `K`, `H`).
    pub tx_tss_char: u8,
    /// Where the receive timestamp was taken.
    pub rx_tss_char: u8,
    /// Packets sent.
    pub total_tx_count: u32,
    /// Packets received.
    pub total_rx_count: u32,
    /// Valid packets received.
    pub total_valid_count: u32,
    /// Good samples (NTP_DATA2 only).
    pub total_good_count: Option<u32>,
}

impl NtpData {
    /// `flags`: authentication is enabled for the source
    /// (`RPY_NTP_FLAG_AUTHENTICATED`; chronyd sets it from the source's
    /// configuration when it takes a packet, and takes no unauthentic one).
    pub const AUTHENTICATED: u16 = 0x8000;

    /// Whether a packet from the source was ever taken: before one, chronyd
    /// reports zeros.
    pub fn answered(&self) -> bool {
        self.total_valid_count > 0
    }
}

/// How a source's packets are authenticated (`RPY_AD_MD_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// 0: not at all.
    None,
    /// 1: a symmetric key (`key` in the source's directive).
    Symmetric,
    /// 2: Network Time Security (`nts`).
    Nts,
    /// A code this module does not know (a newer chrony).
    Other(u16),
}

impl AuthMode {
    fn from_code(code: u16) -> AuthMode {
        match code {
            0 => AuthMode::None,
            1 => AuthMode::Symmetric,
            2 => AuthMode::Nts,
            c => AuthMode::Other(c),
        }
    }

    /// The name `chronyc authdata` shows: `-`, `SK`, `NTS`, `?`.
    pub fn name(self) -> &'static str {
        match self {
            AuthMode::None => "-",
            AuthMode::Symmetric => "SK",
            AuthMode::Nts => "NTS",
            AuthMode::Other(_) => "?",
        }
    }
}

/// An AUTH_DATA reply (`RPY_AuthData`): what `chronyc authdata` shows of
/// one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthData {
    /// How its packets are authenticated.
    pub mode: AuthMode,
    /// The key's type: a hash or cipher code (`key_type`), 0 without one.
    pub key_type: u16,
    /// The symmetric key's id, or the NTS key id.
    pub key_id: u32,
    /// The key's length, bits.
    pub key_length: u16,
    /// NTS-KE sessions started since the source's last authentic NTS reply
    /// (`Atmp`; chronyd resets it on such a reply, not when NTS-KE itself
    /// succeeds).
    pub ke_attempts: u16,
    /// Seconds since the last successful NTS-KE session (`LastKE`); `None`
    /// when there has been none (chronyd sends 2³²−1, also for sources
    /// without NTS).
    pub last_ke_ago: Option<u32>,
    /// NTS cookies held (`Cook`, at most 8).
    pub cookies: u16,
    /// Length of the cookies, bytes (`CLen`).
    pub cookie_length: u16,
    /// A NTS NAK (kiss code `NTSN`) received since the last NTS-KE (`Nak`).
    pub nak: bool,
}

/// A decoded reply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// To [`Request::Tracking`].
    Tracking(Tracking),
    /// To [`Request::NSources`].
    NSources(u32),
    /// To [`Request::SourceData`].
    SourceData(SourceData),
    /// To [`Request::SourceStats`].
    SourceStats(SourceStats),
    /// To [`Request::ServerStats`].
    ServerStats(ServerStats),
    /// To [`Request::NtpData`].
    NtpData(NtpData),
    /// To [`Request::AuthData`].
    AuthData(AuthData),
}

/// Checks that a datagram answers `request` sent with `sequence`, and decodes it.
///
/// As chronyc does, a reply to another command or sequence number is
/// [`ReplyError::NotOurs`] (a late answer to an earlier request), to be
/// skipped; a status other than success is [`ReplyError::Refused`].
pub fn decode_reply(request: Request, sequence: u32, b: &[u8]) -> Result<Reply, ReplyError> {
    let h = ReplyHeader::parse(b)?;
    if h.command != request.command() || h.sequence != sequence {
        return Err(ReplyError::NotOurs {
            command: h.command,
            sequence: h.sequence,
        });
    }
    if h.version != PROTO_VERSION {
        return Err(ParseError::Version { got: h.version }.into());
    }
    if let Some(s) = Status::from_code(h.status) {
        return Err(ReplyError::Refused(s));
    }
    if !request.replies().contains(&h.reply) {
        return Err(ParseError::UnexpectedReply {
            command: h.command,
            reply: h.reply,
        }
        .into());
    }
    Ok(decode_data(h.reply, &b[REPLY_HEADER_LEN..])?)
}

/// Decodes the data of a reply format. Bytes beyond the format's length are ignored.
pub fn decode_data(reply: u16, data: &[u8]) -> Result<Reply, ParseError> {
    let need = reply_data_len(reply).ok_or(ParseError::UnexpectedReply { command: 0, reply })?;
    let mut r = Reader::new(data, "reply data", need)?;
    Ok(match reply {
        rpy::N_SOURCES => Reply::NSources(r.u32()),
        rpy::SOURCE_DATA => Reply::SourceData(source_data(&mut r)),
        rpy::TRACKING => Reply::Tracking(tracking(&mut r)),
        rpy::SOURCESTATS => Reply::SourceStats(sourcestats(&mut r)),
        rpy::NTP_DATA | rpy::NTP_DATA2 => Reply::NtpData(ntp_data(&mut r, reply == rpy::NTP_DATA2)),
        rpy::AUTH_DATA => Reply::AuthData(auth_data(&mut r)),
        _ => Reply::ServerStats(server_stats(&mut r, reply)),
    })
}

fn auth_data(r: &mut Reader<'_>) -> AuthData {
    AuthData {
        mode: AuthMode::from_code(r.u16()),
        key_type: r.u16(),
        key_id: r.u32(),
        key_length: r.u16(),
        ke_attempts: r.u16(),
        last_ke_ago: Some(r.u32()).filter(|&s| s != u32::MAX),
        cookies: r.u16(),
        cookie_length: r.u16(),
        nak: r.u16() != 0,
    }
}

fn source_data(r: &mut Reader<'_>) -> SourceData {
    SourceData {
        address: r.address(),
        poll: r.u16() as i16,
        stratum: r.u16(),
        state: SourceState::from_code(r.u16()),
        mode: match r.u16() {
            0 => SourceMode::Client,
            1 => SourceMode::Peer,
            2 => SourceMode::Reference,
            m => SourceMode::Unknown(m),
        },
        flags: r.u16(),
        reachability: r.u16(),
        since_sample: r.u32(),
        orig_latest_meas: r.float(),
        latest_meas: r.float(),
        latest_meas_err: r.float(),
    }
}

fn tracking(r: &mut Reader<'_>) -> Tracking {
    Tracking {
        ref_id: r.u32(),
        address: r.address(),
        stratum: r.u16(),
        leap_status: r.u16(),
        ref_time: r.timespec(),
        current_correction: r.float(),
        last_offset: r.float(),
        rms_offset: r.float(),
        freq_ppm: r.float(),
        resid_freq_ppm: r.float(),
        skew_ppm: r.float(),
        root_delay: r.float(),
        root_dispersion: r.float(),
        last_update_interval: r.float(),
    }
}

fn sourcestats(r: &mut Reader<'_>) -> SourceStats {
    SourceStats {
        ref_id: r.u32(),
        address: r.address(),
        n_samples: r.u32(),
        n_runs: r.u32(),
        span_seconds: r.u32(),
        sd: r.float(),
        resid_freq_ppm: r.float(),
        skew_ppm: r.float(),
        est_offset: r.float(),
        est_offset_err: r.float(),
    }
}

/// The four SERVER_STATS formats share their field order; each adds fields
/// at the end, and the fourth widens all to 64 bits (`Integer64`).
fn server_stats(r: &mut Reader<'_>, reply: u16) -> ServerStats {
    if reply == rpy::SERVER_STATS {
        return ServerStats {
            format: 1,
            ntp_hits: r.u32().into(),
            cmd_hits: r.u32().into(),
            ntp_drops: r.u32().into(),
            cmd_drops: r.u32().into(),
            log_drops: r.u32().into(),
            ..ServerStats::default()
        };
    }
    let format: u8 = match reply {
        rpy::SERVER_STATS2 => 2,
        rpy::SERVER_STATS3 => 3,
        _ => 4,
    };
    let mut next = || {
        if format == 4 { r.u64() } else { r.u32().into() }
    };
    let mut s = ServerStats {
        format,
        ntp_hits: next(),
        nke_hits: Some(next()),
        cmd_hits: next(),
        ntp_drops: next(),
        nke_drops: Some(next()),
        cmd_drops: next(),
        log_drops: next(),
        ntp_auth_hits: Some(next()),
        ..ServerStats::default()
    };
    if format >= 3 {
        s.ntp_interleaved_hits = Some(next());
        s.ntp_timestamps = Some(next());
        s.ntp_span_seconds = Some(next());
    }
    if format == 4 {
        s.timestamps = Some(TimestampCounts {
            daemon_rx: next(),
            daemon_tx: next(),
            kernel_rx: next(),
            kernel_tx: next(),
            hw_rx: next(),
            hw_tx: next(),
        });
    }
    s
}

fn ntp_data(r: &mut Reader<'_>, v2: bool) -> NtpData {
    NtpData {
        remote_addr: r.address(),
        local_addr: r.address(),
        remote_port: r.u16(),
        leap: r.u8(),
        version: r.u8(),
        mode: r.u8(),
        stratum: r.u8(),
        poll: r.u8() as i8,
        precision: r.u8() as i8,
        root_delay: r.float(),
        root_dispersion: r.float(),
        ref_id: r.u32(),
        ref_time: r.timespec(),
        offset: r.float(),
        peer_delay: r.float(),
        peer_dispersion: r.float(),
        response_time: r.float(),
        jitter_asymmetry: r.float(),
        flags: r.u16(),
        tx_tss_char: r.u8(),
        rx_tss_char: r.u8(),
        total_tx_count: r.u32(),
        total_rx_count: r.u32(),
        total_valid_count: r.u32(),
        total_good_count: v2.then(|| r.u32()),
    }
}

/// Reads fields from a slice whose length was checked once up front, so the
/// field reads themselves cannot fail.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(b: &'a [u8], what: &'static str, need: usize) -> Result<Reader<'a>, ParseError> {
        if b.len() < need {
            return Err(ParseError::Truncated {
                what,
                len: b.len(),
                need,
            });
        }
        Ok(Reader {
            b: &b[..need],
            at: 0,
        })
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        // Within the checked length by construction of every caller; a
        // mistake reads zeros rather than panicking.
        if let Some(s) = self.b.get(self.at..self.at + N) {
            out.copy_from_slice(s);
        }
        self.at += N;
        out
    }

    fn skip(&mut self, n: usize) {
        self.at += n;
    }

    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }

    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }

    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }

    fn float(&mut self) -> f64 {
        Float(self.u32()).to_f64()
    }

    fn address(&mut self) -> Address {
        Address::parse(&self.take())
    }

    fn timespec(&mut self) -> Timespec {
        Timespec {
            sec_high: self.u32(),
            sec_low: self.u32(),
            nsec: self.u32(),
        }
    }
}

#[cfg(test)]
pub(crate) mod captured;
#[cfg(test)]
mod tests;
