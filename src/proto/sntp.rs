//! One SNTP client exchange (RFC 5905 sections 8 and 14, RFC 4330), with
//! the checks RFC 8633 asks of a client. Pure: the caller supplies the
//! random transmit timestamp, its own send and receive times, and the bytes
//! that came back.
//!
//! - The request carries a random transmit timestamp (the NTP
//!   data-minimisation draft: nothing of the client's clock leaves the
//!   host); the real send time T1 stays with the caller. A reply counts only
//!   if its origin timestamp echoes that random value, so an off-path
//!   attacker must guess 64 bits (RFC 8633 section 4.3; the source port,
//!   random too, is the caller's, RFC 9109).
//! - A reply that fails the origin check is [`Verdict::Discard`]: the caller
//!   keeps waiting for the real one until its deadline. Everything else is
//!   judged only after that check, so a spoofed kiss-o'-death cannot silence
//!   a server (RFC 5905 section 7.4).
//! - Stratum 0 is a kiss-o'-death: its code (`RATE`, `DENY`, `RSTR`, …)
//!   is reported, never a time. LI = 3 or stratum 16 is a server that says
//!   it is unsynchronised: its timestamps are measured and reported with
//!   that flag, for a human to read, and never taken as a good time.

use std::fmt;

use super::ntp::{HEADER_LEN, Header, NtpTimestamp, RefId, offset_delay};

/// The NTP version the requests speak.
pub const VERSION: u8 = 4;

/// The largest reply judged, in bytes: the header, a MAC and room for
/// extension fields (NTS replies are about 200 bytes with one cookie and
/// up to about 1 KiB with eight). Anything longer is refused unread.
pub const MAX_REPLY: usize = 1024;

/// A request: a version-4, mode-3 header whose only non-zero field is the
/// random transmit timestamp `nonce`.
pub fn request(nonce: NtpTimestamp) -> [u8; HEADER_LEN] {
    Header {
        version: VERSION,
        mode: 3,
        transmit: nonce,
        ..Header::default()
    }
    .encode()
}

/// What one exchange measured: the server's header fields and the offset θ
/// and delay δ of RFC 5905 section 8 (θ > 0: the server is ahead of this
/// host's clock).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// θ, seconds.
    pub offset: f64,
    /// δ, seconds, never negative.
    pub delay: f64,
    /// The server's leap indicator.
    pub leap: u8,
    /// The version the server answered with.
    pub version: u8,
    /// The server's stratum.
    pub stratum: u8,
    /// log₂ of the server's precision, seconds.
    pub precision: i8,
    /// The server's root delay, seconds.
    pub root_delay: f64,
    /// The server's root dispersion, seconds.
    pub root_dispersion: f64,
    /// The server's reference id.
    pub reference_id: RefId,
}

impl Sample {
    /// Whether the server says it is synchronised: LI not 3 and a stratum
    /// of 1 to 15.
    pub fn synchronized(&self) -> bool {
        self.leap != 3 && (1..=15).contains(&self.stratum)
    }

    /// The bound on this sample's error: the server's root distance
    /// (half its root delay plus its root dispersion) plus half the delay
    /// of this exchange and the server's precision. The true offset lies
    /// within `offset ± root_distance` (RFC 5905 sections 4 and 11.2).
    pub fn root_distance(&self) -> f64 {
        self.root_delay / 2.0
            + self.root_dispersion
            + self.delay / 2.0
            + 2f64.powi(i32::from(self.precision.clamp(-40, 10)))
    }

    /// The reference id as `ntpq` shows it.
    pub fn reference(&self) -> String {
        self.reference_id.text(self.stratum)
    }
}

/// A kiss-o'-death code (RFC 5905 section 7.4): four ASCII letters in the
/// reference id of a stratum-0 reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kiss(pub [u8; 4]);

impl Kiss {
    /// The code as text; bytes outside printable ASCII become `?`, so a
    /// label never carries what a server chose to send.
    pub fn code(self) -> String {
        self.0
            .iter()
            .map(|&b| {
                if b.is_ascii_alphanumeric() {
                    b as char
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// Whether the code asks the client to stop (`DENY`, `RSTR`) or to
    /// slow down (`RATE`), the three RFC 5905 says a client must honour.
    pub fn must_back_off(self) -> bool {
        matches!(&self.0, b"DENY" | b"RSTR" | b"RATE")
    }
}

impl fmt::Display for Kiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

/// Why a reply that passed the origin check still gave no time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// Not a server reply (mode 4).
    Mode(u8),
    /// A version this client does not speak (1 to 4 are accepted).
    Version(u8),
    /// Trailing bytes that are not whole 32-bit words: not extension fields
    /// or a MAC (RFC 7822).
    Length(usize),
    /// A zero receive or transmit timestamp: the server never read the clock.
    ZeroTimestamp,
    /// The server's transmit time is before its receive time.
    Backwards,
}

impl fmt::Display for Rejected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejected::Mode(m) => write!(f, "reply has mode {m}, not 4 (server)"),
            Rejected::Version(v) => write!(f, "reply has NTP version {v}, not 1 to 4"),
            Rejected::Length(n) => write!(
                f,
                "reply of {n} bytes: what follows the 48-byte header is not whole 32-bit words"
            ),
            Rejected::ZeroTimestamp => {
                f.write_str("reply has a zero receive or transmit timestamp")
            }
            Rejected::Backwards => {
                f.write_str("reply's transmit timestamp is before its receive timestamp")
            }
        }
    }
}

/// Why a datagram is not the answer to this request: it is dropped and
/// the exchange goes on waiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discarded {
    /// Shorter than the header.
    Truncated(usize),
    /// Longer than [`MAX_REPLY`].
    Oversized(usize),
    /// Its origin timestamp is not this request's transmit timestamp: a
    /// late reply to an earlier request, or a forgery.
    Origin,
}

impl fmt::Display for Discarded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discarded::Truncated(n) => write!(f, "{n} bytes, shorter than the 48-byte header"),
            Discarded::Oversized(n) => write!(f, "{n} bytes, longer than {MAX_REPLY}"),
            Discarded::Origin => f.write_str("origin timestamp does not echo the request"),
        }
    }
}

/// What a datagram means for the exchange.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The answer: a time (see [`Sample::synchronized`]).
    Time(Sample),
    /// The answer: a kiss-o'-death.
    Kiss(Kiss),
    /// The answer, unusable.
    Rejected(Rejected),
    /// Not the answer; keep waiting.
    Discard(Discarded),
}

impl Verdict {
    /// Whether the exchange is over.
    pub fn is_answer(&self) -> bool {
        !matches!(self, Verdict::Discard(_))
    }
}

/// Judges the datagram `reply` as the answer to the request whose transmit
/// timestamp was `nonce`, sent at `t1` and received at `t4` (Unix seconds
/// of this host's clock).
pub fn judge(reply: &[u8], nonce: NtpTimestamp, t1: f64, t4: f64) -> Verdict {
    if reply.len() > MAX_REPLY {
        return Verdict::Discard(Discarded::Oversized(reply.len()));
    }
    let Ok(h) = Header::parse(reply) else {
        return Verdict::Discard(Discarded::Truncated(reply.len()));
    };
    if h.origin != nonce {
        return Verdict::Discard(Discarded::Origin);
    }
    if h.mode != 4 {
        return Verdict::Rejected(Rejected::Mode(h.mode));
    }
    if !(1..=4).contains(&h.version) {
        return Verdict::Rejected(Rejected::Version(h.version));
    }
    if !(reply.len() - HEADER_LEN).is_multiple_of(4) {
        return Verdict::Rejected(Rejected::Length(reply.len()));
    }
    if h.stratum == 0 {
        return Verdict::Kiss(Kiss(h.reference_id.0));
    }
    if h.receive.0 == 0 || h.transmit.0 == 0 {
        return Verdict::Rejected(Rejected::ZeroTimestamp);
    }
    if h.transmit.0.wrapping_sub(h.receive.0) > u64::MAX / 2 {
        return Verdict::Rejected(Rejected::Backwards);
    }
    // T2 and T3 may be in another era than this host's clock; their
    // distance from t1 decides, so differences are taken on the wire's
    // 64-bit circle, not between absolute seconds.
    let t2 = t1 + era_difference(h.receive, t1);
    let t3 = t1 + era_difference(h.transmit, t1);
    let (offset, delay) = offset_delay(t1, t2, t3, t4);
    Verdict::Time(Sample {
        offset,
        delay: delay.max(0.0),
        leap: h.leap,
        version: h.version,
        stratum: h.stratum,
        precision: h.precision,
        root_delay: h.root_delay.seconds(),
        root_dispersion: h.root_dispersion.seconds(),
        reference_id: h.reference_id,
    })
}

/// `ts − t` in seconds, taken modulo 2³² s, so that a timestamp a few
/// seconds across an era boundary from `t` is a few seconds away.
fn era_difference(ts: NtpTimestamp, t: f64) -> f64 {
    let local = NtpTimestamp::from_unix_seconds(t);
    ts.0.wrapping_sub(local.0) as i64 as f64 / 4_294_967_296.0
}

/// The sample of least delay among `samples`, which has the least error
/// from the network (RFC 5905 section 10's clock filter keeps the same).
pub fn best<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Option<&'a Sample> {
    samples
        .into_iter()
        .min_by(|a, b| a.delay.total_cmp(&b.delay))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ntp::NtpShort;

    const NONCE: NtpTimestamp = NtpTimestamp(0x1234_5678_9abc_def0);
    /// 2026-12-03T00:00:00Z.
    const T1: f64 = 1_796_256_000.0;

    /// A reply 11.5 s ahead, 1 ms each way, 10 µs in the server.
    fn reply() -> Header {
        let t2 = NtpTimestamp::from_unix_seconds(T1 + 0.001 + 11.5);
        Header {
            leap: 0,
            version: 4,
            mode: 4,
            stratum: 2,
            poll: 6,
            precision: -20,
            root_delay: NtpShort::from_seconds(0.004),
            root_dispersion: NtpShort::from_seconds(0.002),
            reference_id: RefId([192, 0, 2, 7]),
            reference: t2.shifted(-30.0),
            origin: NONCE,
            receive: t2,
            transmit: t2.shifted(0.000_01),
        }
    }

    const T4: f64 = T1 + 0.002_01;

    fn judged(h: Header) -> Verdict {
        judge(&h.encode(), NONCE, T1, T4)
    }

    #[test]
    fn the_request_carries_only_the_nonce() {
        let r = request(NONCE);
        assert_eq!(r[0], 0x23, "LI 0, version 4, mode 3");
        assert!(r[1..40].iter().all(|&b| b == 0));
        assert_eq!(&r[40..], &NONCE.0.to_be_bytes());
    }

    #[test]
    fn a_good_reply_gives_theta_and_delta() {
        let Verdict::Time(s) = judged(reply()) else {
            panic!("not a time: {:?}", judged(reply()));
        };
        assert!((s.offset - 11.5).abs() < 1e-6, "θ {}", s.offset);
        assert!((s.delay - 0.002).abs() < 1e-6, "δ {}", s.delay);
        assert_eq!((s.stratum, s.leap, s.version, s.precision), (2, 0, 4, -20));
        assert!((s.root_delay - 0.004).abs() < 1e-4);
        assert!((s.root_dispersion - 0.002).abs() < 1e-4);
        assert_eq!(s.reference(), "192.0.2.7");
        assert!(s.synchronized());
        // 2 ms + 2 ms + 1 ms + 2^-20 s.
        assert!(
            (s.root_distance() - 0.005_001).abs() < 1e-5,
            "{}",
            s.root_distance()
        );
    }

    #[test]
    fn a_server_behind_has_a_negative_offset() {
        let mut h = reply();
        h.receive = NtpTimestamp::from_unix_seconds(T1 + 0.001 - 0.25);
        h.transmit = h.receive.shifted(0.000_01);
        let Verdict::Time(s) = judged(h) else {
            panic!("not a time")
        };
        assert!((s.offset + 0.25).abs() < 1e-6, "θ {}", s.offset);
    }

    #[test]
    fn the_origin_check_comes_before_everything() {
        for mut h in [
            reply(),
            Header {
                stratum: 0,
                reference_id: RefId(*b"DENY"),
                ..reply()
            },
            Header { mode: 3, ..reply() },
        ] {
            h.origin = NtpTimestamp(NONCE.0 ^ 1);
            assert_eq!(judged(h), Verdict::Discard(Discarded::Origin));
        }
        // A zero origin is a reply to nothing this client sent.
        let h = Header {
            origin: NtpTimestamp(0),
            ..reply()
        };
        assert_eq!(judged(h), Verdict::Discard(Discarded::Origin));
    }

    #[test]
    fn kiss_codes_are_reported_after_the_origin_check() {
        for code in [*b"RATE", *b"DENY", *b"RSTR", *b"INIT"] {
            let h = Header {
                stratum: 0,
                reference_id: RefId(code),
                ..reply()
            };
            let Verdict::Kiss(k) = judged(h) else {
                panic!("not a kiss")
            };
            assert_eq!(k.code(), std::str::from_utf8(&code).expect("ascii"));
            assert_eq!(k.must_back_off(), &code != b"INIT");
        }
        // A hostile code cannot reach a label as it was sent.
        assert_eq!(Kiss([b'<', 0, b'A', 0xff]).code(), "??A?");
    }

    #[test]
    fn unsynchronised_servers_are_measured_and_flagged() {
        for h in [
            Header { leap: 3, ..reply() },
            Header {
                stratum: 16,
                ..reply()
            },
        ] {
            let Verdict::Time(s) = judged(h) else {
                panic!("not a time")
            };
            assert!(!s.synchronized(), "{s:?}");
            assert!((s.offset - 11.5).abs() < 1e-6);
        }
        let Verdict::Time(s) = judged(Header { leap: 1, ..reply() }) else {
            panic!("not a time")
        };
        assert!(s.synchronized(), "a leap warning is not unsynchronised");
        assert_eq!(s.leap, 1);
    }

    #[test]
    fn replies_that_are_not_answers_are_rejected() {
        assert_eq!(
            judged(Header { mode: 3, ..reply() }),
            Verdict::Rejected(Rejected::Mode(3))
        );
        assert_eq!(
            judged(Header { mode: 5, ..reply() }),
            Verdict::Rejected(Rejected::Mode(5))
        );
        assert_eq!(
            judged(Header {
                version: 0,
                ..reply()
            }),
            Verdict::Rejected(Rejected::Version(0))
        );
        assert_eq!(
            judged(Header {
                version: 7,
                ..reply()
            }),
            Verdict::Rejected(Rejected::Version(7))
        );
        assert_eq!(
            judged(Header {
                transmit: NtpTimestamp(0),
                ..reply()
            }),
            Verdict::Rejected(Rejected::ZeroTimestamp)
        );
        assert_eq!(
            judged(Header {
                receive: NtpTimestamp(0),
                ..reply()
            }),
            Verdict::Rejected(Rejected::ZeroTimestamp)
        );
        let h = reply();
        assert_eq!(
            judged(Header {
                transmit: h.receive.shifted(-1.0),
                ..h
            }),
            Verdict::Rejected(Rejected::Backwards)
        );
    }

    #[test]
    fn lengths_truncated_oversized_and_extension_fields() {
        let bytes = reply().encode();
        for n in [0, 1, 47] {
            assert_eq!(
                judge(&bytes[..n], NONCE, T1, T4),
                Verdict::Discard(Discarded::Truncated(n))
            );
        }
        // An extension field (RFC 7822: type, length, value in whole words)
        // or a MAC after the header is not read, and does not matter.
        let mut with_ext = bytes.to_vec();
        with_ext.extend_from_slice(&[0x01, 0x04, 0x00, 0x10]);
        with_ext.extend_from_slice(&[0xaa; 12]);
        assert!(matches!(judge(&with_ext, NONCE, T1, T4), Verdict::Time(_)));
        let mut mac = bytes.to_vec();
        mac.extend_from_slice(&[0x55; 20]);
        assert!(matches!(judge(&mac, NONCE, T1, T4), Verdict::Time(_)));
        let mut ragged = bytes.to_vec();
        ragged.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            judge(&ragged, NONCE, T1, T4),
            Verdict::Rejected(Rejected::Length(51))
        );
        let mut huge = bytes.to_vec();
        huge.resize(MAX_REPLY + 4, 0);
        assert_eq!(
            judge(&huge, NONCE, T1, T4),
            Verdict::Discard(Discarded::Oversized(MAX_REPLY + 4))
        );
        huge.truncate(MAX_REPLY);
        assert!(matches!(judge(&huge, NONCE, T1, T4), Verdict::Time(_)));
    }

    #[test]
    fn a_negative_delay_is_floored_at_zero() {
        // The server claims 5 ms between receive and transmit in a 2 ms round trip.
        let h = reply();
        let h = Header {
            transmit: h.receive.shifted(0.005),
            ..h
        };
        let Verdict::Time(s) = judged(h) else {
            panic!("not a time")
        };
        assert_eq!(s.delay, 0.0);
    }

    #[test]
    fn timestamps_across_the_2036_era_boundary() {
        // This host just before the NTP era rolls over (2036-02-07T06:28:16Z),
        // the server 1 s after it: its timestamps are small numbers.
        let t1 = 2_085_978_496.0 - 0.5;
        let t2 = NtpTimestamp(1 << 31); // 0.5 s into era 1
        let h = Header {
            receive: t2,
            transmit: t2,
            ..reply()
        };
        let Verdict::Time(s) = judge(&h.encode(), NONCE, t1, t1 + 0.002) else {
            panic!("not a time")
        };
        assert!((s.offset - 0.999).abs() < 1e-6, "θ {}", s.offset);
    }

    #[test]
    fn the_best_sample_has_the_least_delay() {
        let Verdict::Time(a) = judged(reply()) else {
            panic!()
        };
        let b = Sample {
            delay: 0.0005,
            offset: 11.49,
            ..a
        };
        let c = Sample { delay: 0.01, ..a };
        assert_eq!(best(&[a, b, c]), Some(&b));
        assert_eq!(best(&[]), None);
    }

    proptest::proptest! {
        #[test]
        fn judging_never_panics(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..1100),
            echo in proptest::bool::ANY,
            t1 in -1e10f64..1e10,
            rtt in -10f64..10.0,
        ) {
            let mut bytes = bytes;
            if echo && bytes.len() >= 32 {
                bytes[24..32].copy_from_slice(&NONCE.0.to_be_bytes());
            }
            let v = judge(&bytes, NONCE, t1, t1 + rtt);
            if let Verdict::Time(s) = v {
                proptest::prop_assert!(s.delay >= 0.0 && s.offset.is_finite());
                proptest::prop_assert!(s.root_distance().is_finite());
            }
            if v.is_answer() {
                proptest::prop_assert_eq!(bytes.get(24..32), Some(&NONCE.0.to_be_bytes()[..]));
            }
        }
    }
}
