//! Tests of the cmdmon wire format: literal values, status handling, and
//! properties on arbitrary input. Decoding of datagrams captured from a real
//! chronyd is in `captured.rs`.

use super::*;
use proptest::prelude::*;

/// A reply header with the given fields, followed by `data`.
fn reply(command: u16, reply: u16, status: u16, sequence: u32, data: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; REPLY_HEADER_LEN];
    b[0] = PROTO_VERSION;
    b[1] = 2;
    b[4..6].copy_from_slice(&command.to_be_bytes());
    b[6..8].copy_from_slice(&reply.to_be_bytes());
    b[8..10].copy_from_slice(&status.to_be_bytes());
    b[16..20].copy_from_slice(&sequence.to_be_bytes());
    b.extend_from_slice(data);
    b
}

#[test]
fn floats_decode_as_chrony_defines_them() {
    // 2^(exp-25) · coef with a 7-bit exponent over a 25-bit coefficient.
    assert_eq!(Float(0).to_f64(), 0.0);
    assert_eq!(Float(0x0480_0000).to_f64(), 1.0);
    assert_eq!(Float(0x0300_0000).to_f64(), -1.0);
    // The smallest exponent (-64) with coefficient 1.
    assert_eq!(Float(0x8000_0001).to_f64(), 2f64.powi(-89));
    // The largest magnitude.
    assert_eq!(
        Float(0x7eff_ffff).to_f64(),
        f64::from(FLOAT_COEF_MAX) * 2f64.powi(38)
    );
}

#[test]
fn floats_encode_as_chronyd_does() {
    assert_eq!(Float::from_f64(1.0), Float(0x0480_0000));
    assert_eq!(Float::from_f64(-1.0), Float(0x0300_0000));
    assert_eq!(Float::from_f64(0.0), Float(0));
    assert_eq!(Float::from_f64(f64::NAN), Float(0));
    assert_eq!(Float::from_f64(1e-200), Float(0));
    assert_eq!(Float::from_f64(1e200), Float(0x7eff_ffff));
    assert!(Float::from_f64(-1e200).to_f64() < -1e18);
    let x = -11.5;
    assert_eq!(Float::from_f64(x).to_f64(), x);
}

#[test]
fn timespecs_and_refids() {
    let t = Timespec {
        sec_high: 0,
        sec_low: 1_700_000_000,
        nsec: 500_000_000,
    };
    assert_eq!(t.to_unix_seconds(), 1_700_000_000.5);
    // TV_NOHIGHSEC marks a 32-bit time_t build.
    let t32 = Timespec {
        sec_high: 0x7fff_ffff,
        ..t
    };
    assert_eq!(t32.to_unix_seconds(), 1_700_000_000.5);
    // Nanoseconds beyond a second are clamped as chrony clamps them.
    let big = Timespec {
        sec_high: 0,
        sec_low: 5,
        nsec: u32::MAX,
    };
    assert!(big.to_unix_seconds() < 6.0);
    assert_eq!(refid_text(0x4750_5300), "GPS");
    assert_eq!(refid_text(0x7f7f_0101), "");
    assert_eq!(refid_text(0xc000_020b), "");
    assert_eq!(refid_text(0x5048_4330), "PHC0");
}

#[test]
fn addresses_encode_as_chrony_does() {
    let v4 = Address::Inet4(Ipv4Addr::new(192, 0, 2, 11));
    let b = v4.encode();
    assert_eq!(&b[..4], &[192, 0, 2, 11]);
    assert_eq!(&b[16..], &[0, 1, 0, 0]);
    assert_eq!(Address::parse(&b), v4);
    let v6 = Address::Inet6("2001:db8::1".parse().expect("v6"));
    assert_eq!(v6.encode()[17], 2);
    assert_eq!(Address::parse(&v6.encode()), v6);
    assert_eq!(Address::parse(&Address::Id(7).encode()), Address::Id(7));
    assert_eq!(Address::parse(&[0u8; 20]), Address::Unspec);
    let mut odd = [0u8; 20];
    odd[17] = 9;
    assert_eq!(Address::parse(&odd), Address::Unknown(9));
    assert_eq!(Address::Unknown(9).encode(), [0u8; 20]);
    assert_eq!(v4.ip(), Some("192.0.2.11".parse().expect("ip")));
    assert_eq!(Address::Id(7).ip(), None);
}

#[test]
fn requests_are_padded_to_the_longest_reply() {
    let t = Request::Tracking.encode(0x0102_0304);
    assert_eq!(t.len(), 104);
    assert_eq!(&t[..12], &[6, 1, 0, 0, 0, 33, 0, 0, 1, 2, 3, 4]);
    assert!(t[12..].iter().all(|&b| b == 0));
    assert_eq!(Request::NSources.encode(0).len(), 32);
    let sd = Request::SourceData(7).encode(9);
    assert_eq!(sd.len(), 76);
    assert_eq!(&sd[4..6], &[0, 15]);
    assert_eq!(&sd[20..24], &[0, 0, 0, 7]);
    assert_eq!(Request::SourceStats(1).encode(0).len(), 84);
    // chrony 4.4's SERVER_STATS4 is the longest serverstats reply.
    assert_eq!(Request::ServerStats.encode(0).len(), 28 + 168);
    let nd = Request::NtpData("2001:db8::7".parse().expect("ip")).encode(0);
    assert_eq!(nd.len(), 28 + 144);
    assert_eq!(&nd[4..6], &[0, 57]);
    assert_eq!(nd[20], 0x20);
    assert_eq!(&nd[36..40], &[0, 2, 0, 0]);
}

/// AUTH_DATA as `candm.h` lays it out: an NTS source with 8 cookies of 100
/// bytes after 1 NTS-KE attempt 3600 s ago, an AES-SIV-CMAC-256 key
/// (chrony's key type 15) of 256 bits with id 7, no NAK.
#[test]
fn auth_data_is_decoded_and_requested_by_address() {
    let mut d = Vec::new();
    for field in [2u16, 15] {
        d.extend_from_slice(&field.to_be_bytes());
    }
    d.extend_from_slice(&7u32.to_be_bytes());
    for field in [256u16, 1] {
        d.extend_from_slice(&field.to_be_bytes());
    }
    d.extend_from_slice(&3600u32.to_be_bytes());
    for field in [8u16, 100, 0, 0] {
        d.extend_from_slice(&field.to_be_bytes());
    }
    assert_eq!(d.len(), 24);
    let want = AuthData {
        mode: AuthMode::Nts,
        key_type: 15,
        key_id: 7,
        key_length: 256,
        ke_attempts: 1,
        last_ke_ago: Some(3600),
        cookies: 8,
        cookie_length: 100,
        nak: false,
    };
    let request = Request::AuthData("192.0.2.9".parse().expect("ip"));
    let b = reply(67, 20, 0, 5, &d);
    assert_eq!(decode_reply(request, 5, &b), Ok(Reply::AuthData(want)));
    assert_eq!(want.mode.name(), "NTS");

    // A NAK, a symmetric key, a mode from a newer chrony.
    d[20..22].copy_from_slice(&1u16.to_be_bytes());
    d[0..2].copy_from_slice(&1u16.to_be_bytes());
    let Ok(Reply::AuthData(a)) = decode_data(20, &d) else {
        panic!("decodes");
    };
    assert!(a.nak);
    assert_eq!((a.mode, a.mode.name()), (AuthMode::Symmetric, "SK"));
    d[0..2].copy_from_slice(&9u16.to_be_bytes());
    let Ok(Reply::AuthData(a)) = decode_data(20, &d) else {
        panic!("decodes");
    };
    assert_eq!((a.mode, a.mode.name()), (AuthMode::Other(9), "?"));
    d[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
    let Ok(Reply::AuthData(a)) = decode_data(20, &d) else {
        panic!("decodes");
    };
    assert_eq!(a.last_ke_ago, None, "2^32-1: no NTS-KE yet");

    // One byte short; a NOSUCHSOURCE answer; another command's reply.
    assert_eq!(
        decode_data(20, &d[..23]),
        Err(ParseError::Truncated {
            what: "reply data",
            len: 23,
            need: 24
        })
    );
    let refused = reply(67, 1, 7, 5, &[]);
    assert!(matches!(
        decode_reply(request, 5, &refused),
        Err(ReplyError::Refused(_))
    ));
    assert!(decode_reply(request, 5, &reply(67, 16, 0, 5, &[0; 124])).is_err());

    // The request: command 67, the address as NTP_DATA carries it, padded
    // to the reply's length.
    let e = request.encode(0x0a0b_0c0d);
    assert_eq!(e.len(), 28 + 24);
    assert_eq!(&e[4..6], &[0, 67]);
    assert_eq!(&e[8..12], &[0x0a, 0x0b, 0x0c, 0x0d]);
    assert_eq!(&e[20..24], &[192, 0, 2, 9]);
    assert_eq!(&e[36..38], &[0, 1], "IPv4 family");
    assert_eq!(request.name(), "authdata");
}

#[test]
fn replies_to_other_requests_are_skipped_not_errors() {
    let data = 3u32.to_be_bytes();
    let ok = reply(14, 2, 0, 42, &data);
    assert_eq!(
        decode_reply(Request::NSources, 42, &ok),
        Ok(Reply::NSources(3))
    );
    assert_eq!(
        decode_reply(Request::NSources, 43, &ok),
        Err(ReplyError::NotOurs {
            command: 14,
            sequence: 42
        })
    );
    assert!(matches!(
        decode_reply(Request::Tracking, 42, &ok),
        Err(ReplyError::NotOurs { command: 14, .. })
    ));
}

#[test]
fn statuses_are_typed_errors() {
    let unauth = reply(54, 1, 2, 5, &[]);
    let e = decode_reply(Request::ServerStats, 5, &unauth).expect_err("refused");
    assert_eq!(e, ReplyError::Refused(Status::Unauthorised));
    assert!(e.to_string().contains("unix socket"), "{e}");
    let nosuch = reply(15, 1, 4, 5, &[]);
    assert_eq!(
        decode_reply(Request::SourceData(9), 5, &nosuch),
        Err(ReplyError::Refused(Status::NoSuchSource))
    );
    for code in 1..40 {
        let s = Status::from_code(code).expect("not success");
        assert_eq!(s.code(), code);
        assert!(!s.to_string().is_empty());
    }
    assert_eq!(Status::from_code(0), None);
}

#[test]
fn malformed_replies_are_parse_errors() {
    assert_eq!(
        decode_reply(Request::Tracking, 0, &[6, 2, 0]),
        Err(ReplyError::Parse(ParseError::Truncated {
            what: "reply header",
            len: 3,
            need: 28
        }))
    );
    let mut request_echo = reply(33, 5, 0, 1, &[0; 76]);
    request_echo[1] = 1;
    assert_eq!(
        decode_reply(Request::Tracking, 1, &request_echo),
        Err(ReplyError::Parse(ParseError::NotAReply { pkt_type: 1 }))
    );
    let mut v5 = reply(33, 5, 0, 1, &[0; 76]);
    v5[0] = 5;
    assert_eq!(
        decode_reply(Request::Tracking, 1, &v5),
        Err(ReplyError::Parse(ParseError::Version { got: 5 }))
    );
    let wrong_format = reply(33, 6, 0, 1, &[0; 76]);
    assert_eq!(
        decode_reply(Request::Tracking, 1, &wrong_format),
        Err(ReplyError::Parse(ParseError::UnexpectedReply {
            command: 33,
            reply: 6
        }))
    );
    let short = reply(33, 5, 0, 1, &[0; 75]);
    assert_eq!(
        decode_reply(Request::Tracking, 1, &short),
        Err(ReplyError::Parse(ParseError::Truncated {
            what: "reply data",
            len: 75,
            need: 76
        }))
    );
}

#[test]
fn every_serverstats_format_decodes_with_its_fields() {
    let words = |n: u32| -> Vec<u8> { (1..=n).flat_map(u32::to_be_bytes).collect() };
    let v1 = decode_data(14, &words(5)).expect("v1");
    assert_eq!(
        v1,
        Reply::ServerStats(ServerStats {
            format: 1,
            ntp_hits: 1,
            cmd_hits: 2,
            ntp_drops: 3,
            cmd_drops: 4,
            log_drops: 5,
            ..ServerStats::default()
        })
    );
    let Reply::ServerStats(v2) = decode_data(22, &words(8)).expect("v2") else {
        panic!("v2")
    };
    assert_eq!(
        (
            v2.ntp_hits,
            v2.nke_hits,
            v2.cmd_hits,
            v2.log_drops,
            v2.ntp_auth_hits
        ),
        (1, Some(2), 3, 7, Some(8))
    );
    assert_eq!(v2.ntp_interleaved_hits, None);
    let Reply::ServerStats(v3) = decode_data(24, &words(11)).expect("v3") else {
        panic!("v3")
    };
    assert_eq!(v3.format, 3);
    assert!(v3.counters_wrap());
    assert_eq!(
        (
            v3.ntp_interleaved_hits,
            v3.ntp_timestamps,
            v3.ntp_span_seconds
        ),
        (Some(9), Some(10), Some(11))
    );
    let longs: Vec<u8> = (1..=21u64)
        .map(|i| i << 32 | i)
        .flat_map(u64::to_be_bytes)
        .collect();
    let Reply::ServerStats(v4) = decode_data(25, &longs).expect("v4") else {
        panic!("v4")
    };
    assert!(!v4.counters_wrap());
    assert_eq!(v4.ntp_hits, 0x1 << 32 | 0x1);
    assert_eq!(v4.cmd_hits, 0x3 << 32 | 0x3);
    assert_eq!(v4.timestamps.map(|t| t.hw_tx), Some(0x11 << 32 | 0x11));
}

#[test]
fn both_ntp_data_formats_decode() {
    let mut d = vec![0u8; 144];
    d[..20].copy_from_slice(&Address::Inet4(Ipv4Addr::new(192, 0, 2, 11)).encode());
    d[40..42].copy_from_slice(&123u16.to_be_bytes());
    d[42] = 3; // leap
    d[45] = 8; // stratum
    d[46] = 0xfe; // poll -2
    d[72..76].copy_from_slice(&Float::from_f64(0.25).0.to_be_bytes()); // offset
    d[96..100].copy_from_slice(&5u32.to_be_bytes()); // tx count
    d[108..112].copy_from_slice(&4u32.to_be_bytes()); // good count (v2)
    let Reply::NtpData(v1) = decode_data(16, &d[..124]).expect("v1") else {
        panic!("v1")
    };
    assert_eq!(v1.remote_port, 123);
    assert_eq!((v1.leap, v1.stratum, v1.poll), (3, 8, -2));
    assert_eq!(v1.offset, 0.25);
    assert_eq!(v1.total_tx_count, 5);
    assert_eq!(v1.total_good_count, None);
    let Reply::NtpData(v2) = decode_data(26, &d).expect("v2") else {
        panic!("v2")
    };
    assert_eq!(v2.total_good_count, Some(4));
    assert!(decode_data(26, &d[..124]).is_err());
}

const REPLY_FORMATS: [u16; 11] = [2, 3, 5, 6, 14, 22, 24, 25, 16, 26, 20];

proptest! {
    #[test]
    fn float_decoding_is_total_and_finite(raw in any::<u32>()) {
        let x = Float(raw).to_f64();
        prop_assert!(x.is_finite());
        // Re-encoding a decoded value gives a value equal to it (the
        // encoding of a value is not unique, its value is).
        prop_assert_eq!(Float::from_f64(x).to_f64(), x);
    }

    #[test]
    fn float_round_trip_keeps_24_bits(x in -1e15f64..1e15f64) {
        let back = Float::from_f64(x).to_f64();
        let tolerance = x.abs() * 2f64.powi(-23) + 2f64.powi(-89);
        prop_assert!((back - x).abs() <= tolerance, "{} -> {}", x, back);
    }

    #[test]
    fn float_encoding_never_panics(x in any::<f64>()) {
        let _ = Float::from_f64(x).to_f64();
    }

    #[test]
    fn every_reply_decoder_is_total(
        format in proptest::sample::select(REPLY_FORMATS.to_vec()),
        data in proptest::collection::vec(any::<u8>(), 0..400),
    ) {
        let need = reply_data_len(format).expect("known format");
        match decode_data(format, &data) {
            Ok(_) => prop_assert!(data.len() >= need),
            Err(e) => prop_assert_eq!(e, ParseError::Truncated { what: "reply data", len: data.len(), need }),
        }
    }

    #[test]
    fn arbitrary_datagrams_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        sequence in any::<u32>(),
        index in any::<u32>(),
    ) {
        for request in [
            Request::Tracking,
            Request::NSources,
            Request::SourceData(index),
            Request::SourceStats(index),
            Request::ServerStats,
            Request::NtpData("192.0.2.1".parse().expect("ip")),
            Request::AuthData("192.0.2.1".parse().expect("ip")),
        ] {
            let _ = decode_reply(request, sequence, &bytes);
        }
    }

    #[test]
    fn well_formed_headers_with_arbitrary_data_never_panic(
        format in proptest::sample::select(REPLY_FORMATS.to_vec()),
        status in 0u16..30,
        data in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let command = match format {
            2 => 14, 3 => 15, 5 => 33, 6 => 34, 16 | 26 => 57, 20 => 67, _ => 54,
        };
        let request = match command {
            14 => Request::NSources,
            15 => Request::SourceData(0),
            33 => Request::Tracking,
            34 => Request::SourceStats(0),
            57 => Request::NtpData("192.0.2.1".parse().expect("ip")),
            67 => Request::AuthData("192.0.2.1".parse().expect("ip")),
            _ => Request::ServerStats,
        };
        let b = reply(command, format, status, 7, &data);
        match decode_reply(request, 7, &b) {
            Ok(_) => prop_assert_eq!(status, 0),
            Err(ReplyError::Refused(s)) => prop_assert_eq!(s.code(), status),
            Err(ReplyError::Parse(ParseError::Truncated { .. })) => {}
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }

    #[test]
    fn addresses_round_trip(bytes in proptest::array::uniform20(any::<u8>())) {
        let a = Address::parse(&bytes);
        if !matches!(a, Address::Unknown(_)) {
            prop_assert_eq!(Address::parse(&a.encode()), a);
        }
    }

    #[test]
    fn requests_round_trip_their_fields(sequence in any::<u32>(), index in any::<u32>()) {
        for r in [Request::Tracking, Request::NSources, Request::SourceData(index), Request::SourceStats(index), Request::ServerStats] {
            let b = r.encode(sequence);
            prop_assert_eq!(b.len(), r.encoded_len());
            prop_assert_eq!(u32::from_be_bytes([b[8], b[9], b[10], b[11]]), sequence);
            prop_assert_eq!(u16::from_be_bytes([b[4], b[5]]), r.command());
            prop_assert!(b.len() <= MAX_DATAGRAM);
        }
    }
}
