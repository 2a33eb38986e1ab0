//! NTP mode-6 control messages (RFC 9327, first published as RFC 1305
//! appendix B): the protocol `ntpq` speaks to ntpd.
//!
//! A request is a 12-byte header and up to [`MAX_DATA_LEN`] bytes of ASCII
//! data. A response repeats the request's opcode, sequence number and
//! association id, sets the Response bit, and may come in several fragments,
//! each saying at which `offset` of the whole response its `count` bytes
//! belong; every fragment but the last sets the More bit. The Error bit marks
//! an error response whose status word carries the error code.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |LI | VN  |Mode |R|E|M| Opcode  |        Sequence Number        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Status             |        Association ID         |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |            Offset             |             Count             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                 Data (up to 468 octets), padded to 32 bits    |
//! ```
//!
//! Pure: bytes in, `Result` out. Reassembly is in [`Reassembler`], the
//! `name=value,...` text in [`Variables`], and the typed, unit-converted views
//! of it in [`SystemVariables`], [`SystemStats`] and [`PeerVariables`].

mod reassembly;
mod variables;

use std::fmt;

pub use reassembly::{Progress, Reassembler, ReassemblyError, Response};
pub use variables::{
    Log2Seconds, Millis, PeerCounters, PeerReading, PeerVariables, Ppm, Reach, SystemStats,
    SystemVariables, Variables, canonical_ip, ip_scope,
};

/// The header length.
pub const HEADER_LEN: usize = 12;

/// Most data bytes in one fragment (`CTL_MAX_DATA_LEN` in ntpd's `ntp_control.h`).
pub const MAX_DATA_LEN: usize = 468;

/// The NTP mode of control messages.
pub const MODE_CONTROL: u8 = 6;

/// The version requests carry. ntpq sends `NTP_OLDVERSION + 1` = 2 and ntpd
/// answers any version from 1 to 4 with the version it was asked in.
pub const REQUEST_VERSION: u8 = 2;

/// Largest whole response accepted by default: 32 full fragments, ntpq's
/// `MAXFRAGS`. A peer's variables take about 700 bytes, the association list
/// 4 bytes per association.
pub const DEFAULT_RESPONSE_LIMIT: usize = 32 * MAX_DATA_LEN;

const RESPONSE_BIT: u8 = 0x80;
const ERROR_BIT: u8 = 0x40;
const MORE_BIT: u8 = 0x20;
const OPCODE_MASK: u8 = 0x1f;

/// A control opcode (5 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Opcode(pub u8);

impl Opcode {
    /// READSTAT: the association list (association id 0) with status words.
    pub const READ_STATUS: Opcode = Opcode(1);
    /// READVAR: system (association id 0) or peer variables as `name=value` text.
    pub const READ_VARIABLES: Opcode = Opcode(2);
}

/// A 16-bit association id; 0 names the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct AssocId(pub u16);

impl AssocId {
    /// The system, not a peer.
    pub const SYSTEM: AssocId = AssocId(0);
}

/// A 16-bit request sequence number, echoed in every fragment of the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Sequence(pub u16);

/// Why bytes are not a mode-6 response, or a response's payload is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Fewer bytes than the header.
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// Not a control message (mode is not 6).
    NotControl {
        /// The mode found.
        mode: u8,
    },
    /// A control message without the Response bit: a request.
    NotResponse,
    /// The header's count claims more data than the datagram holds.
    CountBeyondDatagram {
        /// The header's count.
        count: u16,
        /// Data bytes present after the header.
        available: usize,
    },
    /// A READSTAT payload whose length is not a whole number of 4-byte
    /// (association id, status) pairs.
    BadStatusListLength {
        /// The payload length.
        len: usize,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Truncated { len } => {
                write!(
                    f,
                    "mode-6 datagram truncated: {len} bytes, header needs {HEADER_LEN}"
                )
            }
            ParseError::NotControl { mode } => write!(f, "not a mode-6 message (mode {mode})"),
            ParseError::NotResponse => f.write_str("mode-6 request where a response was expected"),
            ParseError::CountBeyondDatagram { count, available } => write!(
                f,
                "mode-6 fragment claims {count} data bytes but carries {available}"
            ),
            ParseError::BadStatusListLength { len } => write!(
                f,
                "association list of {len} bytes is not a whole number of 4-byte entries"
            ),
        }
    }
}

impl std::error::Error for ParseError {}

/// Why a request could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// More data than one request may carry.
    DataTooLong {
        /// The data length.
        len: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::DataTooLong { len } => write!(
                f,
                "mode-6 request data of {len} bytes exceeds {MAX_DATA_LEN}"
            ),
        }
    }
}

impl std::error::Error for EncodeError {}

/// The error code of an error response (the high byte of its status word;
/// `CERR_*` in ntpd's `ntp_control.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 0: unspecified.
    Unspecified,
    /// 1: not allowed (authentication needed, or no resources).
    Permission,
    /// 2: the request was malformed.
    BadFormat,
    /// 3: unknown opcode.
    BadOpcode,
    /// 4: no such association (it went away, e.g. a pool server replaced).
    BadAssociation,
    /// 5: a requested variable is unknown to this daemon.
    UnknownVariable,
    /// 6: a variable's value was bad.
    BadValue,
    /// 7: refused by a `restrict` rule.
    Restricted,
    /// Any other code.
    Other(u8),
}

impl ErrorCode {
    /// From the error response's status word.
    pub fn from_status(status: u16) -> ErrorCode {
        match (status >> 8) as u8 {
            0 => ErrorCode::Unspecified,
            1 => ErrorCode::Permission,
            2 => ErrorCode::BadFormat,
            3 => ErrorCode::BadOpcode,
            4 => ErrorCode::BadAssociation,
            5 => ErrorCode::UnknownVariable,
            6 => ErrorCode::BadValue,
            7 => ErrorCode::Restricted,
            n => ErrorCode::Other(n),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Unspecified => f.write_str("unspecified error"),
            ErrorCode::Permission => f.write_str("permission denied"),
            ErrorCode::BadFormat => f.write_str("bad request format"),
            ErrorCode::BadOpcode => f.write_str("unknown opcode"),
            ErrorCode::BadAssociation => f.write_str("unknown association"),
            ErrorCode::UnknownVariable => f.write_str("unknown variable"),
            ErrorCode::BadValue => f.write_str("bad variable value"),
            ErrorCode::Restricted => f.write_str("restricted"),
            ErrorCode::Other(n) => write!(f, "error code {n}"),
        }
    }
}

/// The 12-byte header, every bit kept so that decoding then encoding any 12
/// bytes gives them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// Leap indicator (responses carry the daemon's).
    pub leap: u8,
    /// Version (3 bits).
    pub version: u8,
    /// Mode (3 bits), 6 for control messages.
    pub mode: u8,
    /// R: a response.
    pub response: bool,
    /// E: an error response.
    pub error: bool,
    /// M: more fragments follow.
    pub more: bool,
    /// The operation.
    pub opcode: Opcode,
    /// Request sequence number.
    pub sequence: Sequence,
    /// System or peer status word; the error code in error responses.
    pub status: u16,
    /// Association id, 0 for the system.
    pub assoc_id: AssocId,
    /// Offset of this fragment's data in the whole response.
    pub offset: u16,
    /// Data bytes in this fragment.
    pub count: u16,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

impl Header {
    /// The header of a request.
    pub fn request(opcode: Opcode, sequence: Sequence, assoc_id: AssocId, count: u16) -> Header {
        Header {
            leap: 0,
            version: REQUEST_VERSION,
            mode: MODE_CONTROL,
            opcode,
            sequence,
            assoc_id,
            count,
            ..Header::default()
        }
    }

    /// Decodes the first 12 bytes, whatever they say.
    pub fn parse(b: &[u8]) -> Result<Header, ParseError> {
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated { len: b.len() });
        }
        Ok(Header {
            leap: b[0] >> 6,
            version: (b[0] >> 3) & 7,
            mode: b[0] & 7,
            response: b[1] & RESPONSE_BIT != 0,
            error: b[1] & ERROR_BIT != 0,
            more: b[1] & MORE_BIT != 0,
            opcode: Opcode(b[1] & OPCODE_MASK),
            sequence: Sequence(be16(b, 2)),
            status: be16(b, 4),
            assoc_id: AssocId(be16(b, 6)),
            offset: be16(b, 8),
            count: be16(b, 10),
        })
    }

    /// Encodes the 12 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = (self.leap & 3) << 6 | (self.version & 7) << 3 | (self.mode & 7);
        b[1] = (if self.response { RESPONSE_BIT } else { 0 })
            | (if self.error { ERROR_BIT } else { 0 })
            | (if self.more { MORE_BIT } else { 0 })
            | (self.opcode.0 & OPCODE_MASK);
        b[2..4].copy_from_slice(&self.sequence.0.to_be_bytes());
        b[4..6].copy_from_slice(&self.status.to_be_bytes());
        b[6..8].copy_from_slice(&self.assoc_id.0.to_be_bytes());
        b[8..10].copy_from_slice(&self.offset.to_be_bytes());
        b[10..12].copy_from_slice(&self.count.to_be_bytes());
        b
    }

    /// The error code, when this is an error response.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.error.then(|| ErrorCode::from_status(self.status))
    }
}

/// Encodes a request: header, data, and zero padding to a multiple of four
/// bytes (ntpd answers a request whose length is not one with BADFMT).
pub fn encode_request(
    opcode: Opcode,
    sequence: Sequence,
    assoc_id: AssocId,
    data: &[u8],
) -> Result<Vec<u8>, EncodeError> {
    if data.len() > MAX_DATA_LEN {
        return Err(EncodeError::DataTooLong { len: data.len() });
    }
    // Fits: MAX_DATA_LEN < u16::MAX.
    let header = Header::request(opcode, sequence, assoc_id, data.len() as u16);
    Ok(encode_datagram(&header, data))
}

/// Header, data and zero padding to 32 bits, as ntpd sends a fragment (it
/// zero-fills the rest of its buffer) and as requests must be.
pub fn encode_datagram(header: &Header, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + data.len() + 3);
    out.extend_from_slice(&header.encode());
    out.extend_from_slice(data);
    while out.len() % 4 != 0 {
        out.push(0);
    }
    out
}

/// One received response fragment: its header and its `count` data bytes
/// (padding and any MAC after them are not data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// The header.
    pub header: Header,
    /// The data.
    pub data: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Decodes a datagram that must be a mode-6 response.
    pub fn parse(b: &'a [u8]) -> Result<Fragment<'a>, ParseError> {
        let header = Header::parse(b)?;
        if header.mode != MODE_CONTROL {
            return Err(ParseError::NotControl { mode: header.mode });
        }
        if !header.response {
            return Err(ParseError::NotResponse);
        }
        let available = b.len() - HEADER_LEN;
        let count = usize::from(header.count);
        if count > available {
            return Err(ParseError::CountBeyondDatagram {
                count: header.count,
                available,
            });
        }
        Ok(Fragment {
            header,
            data: &b[HEADER_LEN..HEADER_LEN + count],
        })
    }
}

/// A peer's selection, bits 8–10 of its status word (`CTL_PST_SEL_*`), as
/// ntpq's tally column shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// 0 ` `: rejected (unreachable, or failed a sanity check).
    Reject,
    /// 1 `x`: falseticker, outside the intersection of the truechimers.
    Falsetick,
    /// 2 `.`: excess, beyond the survivors kept (`maxclock`).
    Excess,
    /// 3 `-`: outlier, discarded by the cluster algorithm.
    Outlier,
    /// 4 `+`: candidate, combined into the system offset.
    Candidate,
    /// 5 `#`: backup, survived but not combined.
    Backup,
    /// 6 `*`: the system peer.
    SysPeer,
    /// 7 `o`: the PPS peer.
    PpsPeer,
}

impl Selection {
    /// From the 3-bit code.
    pub fn from_code(code: u8) -> Selection {
        match code & 7 {
            0 => Selection::Reject,
            1 => Selection::Falsetick,
            2 => Selection::Excess,
            3 => Selection::Outlier,
            4 => Selection::Candidate,
            5 => Selection::Backup,
            6 => Selection::SysPeer,
            _ => Selection::PpsPeer,
        }
    }

    /// The 3-bit code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// ntpq's tally character.
    pub fn tally(self) -> char {
        char::from(b" x.-+#*o"[usize::from(self.code())])
    }

    /// ntpq's `condition` word (`ntpq -c associations`).
    pub fn condition(self) -> &'static str {
        match self {
            Selection::Reject => "reject",
            Selection::Falsetick => "falsetick",
            Selection::Excess => "excess",
            Selection::Outlier => "outlier",
            Selection::Candidate => "candidate",
            Selection::Backup => "backup",
            Selection::SysPeer => "sys.peer",
            Selection::PpsPeer => "pps.peer",
        }
    }
}

/// A peer status word (RFC 9327 section 2.2; `ctlpeerstatus()` in ntpd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerStatus(pub u16);

impl PeerStatus {
    /// The selection code, `(status >> 8) & 7`.
    pub fn selection(self) -> Selection {
        Selection::from_code((self.0 >> 8) as u8)
    }

    /// Configured (persistent) rather than spawned by a pool or a symmetric peer.
    pub fn configured(self) -> bool {
        self.0 & 0x8000 != 0
    }

    /// Authentication is enabled for the association.
    pub fn auth_enabled(self) -> bool {
        self.0 & 0x4000 != 0
    }

    /// The last packet authenticated.
    pub fn authentic(self) -> bool {
        self.0 & 0x2000 != 0
    }

    /// The reach register is not zero.
    pub fn reachable(self) -> bool {
        self.0 & 0x1000 != 0
    }

    /// A broadcast association.
    pub fn broadcast(self) -> bool {
        self.0 & 0x0800 != 0
    }

    /// Events since the counter was last read (4 bits).
    pub fn event_count(self) -> u8 {
        ((self.0 >> 4) & 0xf) as u8
    }

    /// The last event code (4 bits).
    pub fn last_event(self) -> u8 {
        (self.0 & 0xf) as u8
    }
}

/// The system status word (RFC 9327 section 2.1; `ctlsysstatus()` in ntpd).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemStatus(pub u16);

impl SystemStatus {
    /// Leap indicator: 0 none, 1 insert, 2 delete, 3 unsynchronised.
    pub fn leap(self) -> u8 {
        (self.0 >> 14) as u8
    }

    /// Clock source (6 bits): 0 unspecified, 1 PPS, ..., 6 NTP.
    pub fn source(self) -> u8 {
        ((self.0 >> 8) & 0x3f) as u8
    }

    /// Events since the counter was last read (4 bits).
    pub fn event_count(self) -> u8 {
        ((self.0 >> 4) & 0xf) as u8
    }

    /// The last event code (4 bits).
    pub fn last_event(self) -> u8 {
        (self.0 & 0xf) as u8
    }
}

/// Decodes a READSTAT response to association 0: (association id, status)
/// pairs, two big-endian 16-bit words each.
pub fn parse_status_list(data: &[u8]) -> Result<Vec<(AssocId, PeerStatus)>, ParseError> {
    if !data.len().is_multiple_of(4) {
        return Err(ParseError::BadStatusListLength { len: data.len() });
    }
    Ok(data
        .chunks_exact(4)
        .map(|c| (AssocId(be16(c, 0)), PeerStatus(be16(c, 2))))
        .collect())
}

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod tests;
