//! Decoding datagrams captured from NTPsec 1.2.2 (tests/fixtures/mode6,
//! README there), hostile inputs, and properties of every decoder.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::fixtures::*;
use super::*;

fn reassemble(datagrams: &[&[u8]]) -> Response {
    let first = Fragment::parse(datagrams[0]).expect("fragment").header;
    let mut r = Reassembler::new(
        first.opcode,
        first.sequence,
        first.assoc_id,
        DEFAULT_RESPONSE_LIMIT,
    );
    let mut last = Progress::Incomplete;
    for d in datagrams {
        last = r
            .push(&Fragment::parse(d).expect("fragment"))
            .expect("push");
    }
    match last {
        Progress::Complete(resp) => resp,
        Progress::Incomplete => panic!("incomplete"),
    }
}

fn approx(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

#[test]
fn captured_association_list_decodes_to_three_peers() {
    let f = Fragment::parse(READSTAT).expect("fragment");
    assert_eq!(
        f.header,
        Header {
            leap: 3,
            version: 2,
            mode: 6,
            response: true,
            error: false,
            more: false,
            opcode: Opcode::READ_STATUS,
            sequence: Sequence(0x0101),
            status: 0xc016,
            assoc_id: AssocId(0),
            offset: 0,
            count: 12,
        }
    );
    let system = SystemStatus(f.header.status);
    assert_eq!(
        (
            system.leap(),
            system.source(),
            system.event_count(),
            system.last_event()
        ),
        (3, 0, 1, 6)
    );
    let list = parse_status_list(f.data).expect("list");
    assert_eq!(
        list,
        vec![
            (AssocId(17769), PeerStatus(0xb114)),
            (AssocId(17768), PeerStatus(0xb414)),
            (AssocId(17767), PeerStatus(0xb61a)),
        ]
    );
    let selections: Vec<_> = list.iter().map(|(_, s)| s.selection()).collect();
    assert_eq!(
        selections,
        [
            Selection::Falsetick,
            Selection::Candidate,
            Selection::SysPeer
        ]
    );
    let tally: String = selections.iter().map(|s| s.tally()).collect();
    assert_eq!(tally, "x+*");
    let sys = list[2].1;
    assert!(sys.configured() && sys.authentic() && sys.reachable());
    assert!(!sys.auth_enabled() && !sys.broadcast());
    // One event, the last "sys_peer" (0xa).
    assert_eq!((sys.event_count(), sys.last_event()), (1, 0xa));
    // No padding was needed: the whole datagram re-encodes.
    assert_eq!(encode_datagram(&f.header, f.data), READSTAT);
}

#[test]
fn captured_system_variables_convert_units() {
    let f = Fragment::parse(SYSTEM).expect("fragment");
    assert_eq!((f.header.count, f.header.more), (356, false));
    let v = Variables::parse(f.data);
    assert_eq!(v.get("processor"), Some("x86_64"));
    assert_eq!(v.get("system"), Some("Linux/6.18.44-fc-v657"));
    assert_eq!(v.get("reftime"), Some("0xeeb170f1.caaf1030"));
    let s = SystemVariables::from_variables(&v);
    assert_eq!(
        s,
        SystemVariables {
            leap: Some(3),
            stratum: Some(9),
            root_delay: Some(Millis(0.013)),
            root_dispersion: Some(Millis(437.545)),
            refid: Some("192.0.2.11".into()),
            peer: Some(AssocId(17767)),
            poll: Some(Log2Seconds(3)),
            offset: Some(Millis(0.0)),
            frequency: Some(Ppm(0.0)),
            sys_jitter: Some(Millis(0.015_123)),
            clk_jitter: Some(Millis(0.000_060)),
            clk_wander: Some(Ppm(0.0)),
            version: Some("ntpd ntpsec-1.2.2".into()),
        }
    );
    approx(s.root_dispersion.expect("rootdisp").seconds(), 0.437_545);
    approx(s.sys_jitter.expect("jitter").seconds(), 0.000_015_123);
    assert_eq!(s.poll.expect("tc").seconds(), 8.0);
    assert_eq!(encode_datagram(&f.header, f.data), SYSTEM);
}

#[test]
fn captured_system_statistics() {
    // The first capture asked for other variables: only ss_numctlreq is one
    // the exporter reads.
    let classic = Variables::parse(Fragment::parse(SYSSTATS).expect("fragment").data);
    let ntpsec = Variables::parse(Fragment::parse(SYSSTATS_NTPSEC).expect("fragment").data);
    assert_eq!(classic.get("ss_received"), Some("84"));
    assert_eq!(
        SystemStats::from_variables(&classic),
        SystemStats::default()
    );
    assert_eq!(
        SystemStats::from_variables(&ntpsec),
        SystemStats {
            control_requests: Some(72),
            ..SystemStats::default()
        }
    );
    // The served lab's answers to the two statistics requests, merged as
    // the collector merges them.
    let query = |d| {
        let f = Fragment::parse(d).expect("fragment");
        assert_eq!(f.header.assoc_id, AssocId::SYSTEM);
        Variables::parse(f.data)
    };
    let mut both = query(served_lab::SYSSTATS);
    both.0.extend(query(served_lab::SYSSTATS_NTPSEC).0);
    assert_eq!(
        SystemStats::from_variables(&both),
        SystemStats {
            uptime: Some(10),
            processed_total: Some(82),
            control_requests: Some(73),
            this_version: Some(10),
            old_version: Some(0),
            declined: Some(0),
            bad_auth: Some(0),
            limited: Some(0),
            kod_sent: Some(0),
        }
    );
    // Re-encoded, the message is the same (the padding is ntpd's stale
    // buffer, see the README).
    for d in [served_lab::SYSSTATS, served_lab::SYSSTATS_NTPSEC] {
        let f = Fragment::parse(d).expect("fragment");
        let message = HEADER_LEN + f.data.len();
        assert_eq!(encode_datagram(&f.header, f.data)[..message], d[..message]);
    }
}

#[test]
fn captured_peer_counters() {
    let f = Fragment::parse(served_lab::UPSTREAM_COUNTERS).expect("fragment");
    assert_eq!(f.header.assoc_id, AssocId(17767));
    assert_eq!(f.data, b"srcadr=192.0.2.11, received=5\r\n");
    assert_eq!(
        PeerCounters::from_variables(&Variables::parse(f.data)),
        PeerCounters {
            address: Some("192.0.2.11".parse().expect("ip")),
            received: Some(5),
        }
    );
    // Not in the default list: the default answer has no counter.
    let v = Variables::parse(&reassemble(&served_lab::UPSTREAM).data);
    assert_eq!(v.get("srcadr"), Some("192.0.2.11"));
    assert_eq!(PeerCounters::from_variables(&v).received, None);
}

#[test]
fn captured_skewed_peer_reassembles_and_shows_theta() {
    let resp = reassemble(&SKEWED);
    assert_eq!(resp.assoc_id, AssocId(17769));
    assert_eq!(PeerStatus(resp.status).selection(), Selection::Falsetick);
    assert_eq!(resp.data.len(), 468 + 231);
    let v = Variables::parse(&resp.data);
    let p = PeerVariables::from_variables(&v);
    assert_eq!(
        p,
        PeerVariables {
            address: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 13))),
            address_text: None,
            scope: None,
            refid: Some("198.51.100.7".into()),
            host_mode: Some(3),
            stratum: Some(2),
            leap: Some(0),
            peer_poll: Some(Log2Seconds(99)),
            host_poll: Some(Log2Seconds(3)),
            reach: Some(Reach(1)),
            root_delay: Some(Millis(0.488)),
            root_dispersion: Some(Millis(0.488)),
            delay: Some(Millis(0.112_446)),
            offset: Some(Millis(11_500.033_407)),
            jitter: Some(Millis(0.033_505)),
            dispersion: Some(Millis(937.521_521)),
            key_id: Some(0),
            // NTPsec sends it for every association: -1 without cookies.
            nts_cookies: Some(-1),
        }
    );
    // θ: the server 11.5 s ahead has a positive offset, in seconds.
    approx(p.offset.expect("offset").seconds(), 11.500_033_407);
    assert_eq!(p.poll(), Some(Log2Seconds(3)));
    approx(
        p.root_distance_seconds().expect("distance"),
        (0.488 / 2.0 + 0.488 + 0.112_446 / 2.0 + 937.521_521 + 0.033_505) / 1e3,
    );
    // The variables after ntpd's uninitialised filter arrays survive.
    assert_eq!(v.get("pmode"), Some("4"));
    assert_eq!(v.get("flash"), Some("0x0"));
    assert_eq!(v.get("ntscookies"), Some("-1"));
}

#[test]
fn ntpsec_nts_and_keyed_associations_are_told_apart() {
    // The tail of what NTPsec 1.2.2 sent for NTS associations in the lab
    // (ntpq -c "rv &N"): one whose key establishment failed, one with its
    // cookies; and a reference ntpd's keyed association, without
    // ntscookies (NTPsec sends -1 for every association without cookies).
    let failing = b"srcadr=192.0.2.13, reach=000, keyid=0,\r\n filtdelay =0.00\t0.00,\r\nflash=1400 peer_dist peer_unreach, headway=0, ntscookies=-1";
    let p = PeerVariables::from_variables(&Variables::parse(failing));
    assert_eq!((p.key_id, p.nts_cookies), (Some(0), Some(-1)));
    let held = b"srcadr=192.0.2.11, keyid=0, pmode=4,\r\nflash=00 ok, headway=25, ntscookies=8";
    let p = PeerVariables::from_variables(&Variables::parse(held));
    assert_eq!((p.key_id, p.nts_cookies), (Some(0), Some(8)));
    let keyed = b"srcadr=192.0.2.11, keyid=1, flash=00 ok";
    let p = PeerVariables::from_variables(&Variables::parse(keyed));
    assert_eq!((p.key_id, p.nts_cookies), (Some(1), None));
    // Nonsense is no value, never a panic.
    let bad = b"keyid=-3, ntscookies=99999999999";
    let p = PeerVariables::from_variables(&Variables::parse(bad));
    assert_eq!((p.key_id, p.nts_cookies), (None, None));
}

#[test]
fn fragments_reassemble_by_offset_in_any_order_and_duplicated() {
    let in_order = reassemble(&HONEST_A);
    let reversed = reassemble(&[HONEST_A[1], HONEST_A[0]]);
    let duplicated = reassemble(&[HONEST_A[1], HONEST_A[1], HONEST_A[0]]);
    assert_eq!(in_order, reversed);
    assert_eq!(in_order, duplicated);
    assert_eq!(
        PeerVariables::from_variables(&Variables::parse(&in_order.data)).offset,
        Some(Millis(-0.000_929))
    );
}

/// Found by the mode6_reassembly fuzz target (fuzz/regressions/): a final
/// fragment that repeats the range and bytes of one received with the More
/// bit set was taken for a plain duplicate, so the response's end was never
/// recorded and it never completed, in one order of three fragments.
#[test]
fn a_final_fragment_repeating_an_earlier_one_still_ends_the_response() {
    let header = |offset: u16, more: bool| Header {
        leap: 0,
        version: 2,
        mode: 6,
        response: true,
        error: false,
        more,
        opcode: Opcode::READ_VARIABLES,
        sequence: Sequence(1),
        status: 0,
        assoc_id: AssocId(1),
        offset,
        count: 1,
    };
    let last = encode_datagram(&header(1, false), b"b");
    let middle = encode_datagram(&header(1, true), b"b");
    let head = encode_datagram(&header(0, true), b"a");
    let forward = reassemble(&[&last, &middle, &head]);
    let reverse = reassemble(&[&head, &middle, &last]);
    assert_eq!(forward.data, b"ab");
    assert_eq!(reverse, forward);
}

#[test]
fn captured_fragments_reencode_up_to_their_stale_padding() {
    for d in HONEST_A.iter().chain(&HONEST_B).chain(&SKEWED) {
        let f = Fragment::parse(d).expect("fragment");
        let again = encode_datagram(&f.header, f.data);
        assert_eq!(again.len(), d.len());
        let end = HEADER_LEN + f.data.len();
        // ntpd leaves old buffer bytes in the padding (README): only the
        // header and data are the message.
        assert_eq!(again[..end], d[..end]);
        assert!(again[end..].iter().all(|&b| b == 0));
    }
    let first = Fragment::parse(SKEWED[0]).expect("fragment").header;
    assert!(first.more && first.offset == 0 && usize::from(first.count) == MAX_DATA_LEN);
    let second = Fragment::parse(SKEWED[1]).expect("fragment").header;
    assert!(!second.more && usize::from(second.offset) == MAX_DATA_LEN);
}

#[test]
fn captured_error_responses_are_typed() {
    let f = Fragment::parse(BAD_ASSOCIATION).expect("fragment");
    assert_eq!(f.header.error_code(), Some(ErrorCode::BadAssociation));
    assert_eq!(f.header.assoc_id, AssocId(0xfffe));
    let mut r = Reassembler::new(
        Opcode::READ_VARIABLES,
        f.header.sequence,
        AssocId(0xfffe),
        DEFAULT_RESPONSE_LIMIT,
    );
    assert_eq!(
        r.push(&f),
        Err(ReassemblyError::Server(ErrorCode::BadAssociation))
    );
    let f = Fragment::parse(UNKNOWN_VARIABLE).expect("fragment");
    assert_eq!(f.header.error_code(), Some(ErrorCode::UnknownVariable));
    assert_eq!(
        ErrorCode::UnknownVariable.to_string(),
        "unknown variable",
        "log text"
    );
}

#[test]
fn requests_match_what_ntpq_sends() {
    // ntpq (NTPsec) sets the leap bits of its requests to 3, "unsynchronised";
    // ntpd ignores them and ours are 0. Everything else is the same bytes.
    let ntpq = Header::parse(NTPQ_READVAR).expect("header");
    assert_eq!(
        (
            ntpq.leap,
            ntpq.version,
            ntpq.mode,
            ntpq.response,
            ntpq.opcode,
            ntpq.count
        ),
        (3, 2, 6, false, Opcode::READ_VARIABLES, 11)
    );
    let ours = encode_request(
        Opcode::READ_VARIABLES,
        ntpq.sequence,
        AssocId::SYSTEM,
        b"ss_received",
    )
    .expect("encode");
    assert_eq!(ours[0], NTPQ_READVAR[0] & 0x3f);
    assert_eq!(ours[1..], NTPQ_READVAR[1..]);
    let ntpq = Header::parse(NTPQ_READSTAT).expect("header");
    let ours =
        encode_request(Opcode::READ_STATUS, ntpq.sequence, AssocId::SYSTEM, b"").expect("encode");
    assert_eq!(ours[0], NTPQ_READSTAT[0] & 0x3f);
    assert_eq!(ours[1..], NTPQ_READSTAT[1..]);
    // Requests are not responses.
    assert_eq!(Fragment::parse(NTPQ_READSTAT), Err(ParseError::NotResponse));
}

#[test]
fn requests_are_padded_and_bounded() {
    let r =
        encode_request(Opcode::READ_VARIABLES, Sequence(7), AssocId(3), b"abcde").expect("encode");
    assert_eq!(r.len(), 20);
    assert_eq!(&r[17..], &[0, 0, 0]);
    assert_eq!(
        encode_request(
            Opcode::READ_VARIABLES,
            Sequence(1),
            AssocId(0),
            &[b'a'; 469]
        ),
        Err(EncodeError::DataTooLong { len: 469 })
    );
    assert!(
        encode_request(
            Opcode::READ_VARIABLES,
            Sequence(1),
            AssocId(0),
            &[b'a'; 468]
        )
        .is_ok()
    );
}

#[test]
fn hostile_datagrams_are_typed_errors() {
    assert_eq!(
        Fragment::parse(&READSTAT[..11]),
        Err(ParseError::Truncated { len: 11 })
    );
    assert_eq!(
        Fragment::parse(&READSTAT[..20]),
        Err(ParseError::CountBeyondDatagram {
            count: 12,
            available: 8
        })
    );
    let mut ntp = READSTAT.to_vec();
    ntp[0] = 0x24; // an NTP server packet, mode 4
    assert_eq!(
        Fragment::parse(&ntp),
        Err(ParseError::NotControl { mode: 4 })
    );
    assert_eq!(
        parse_status_list(&[0, 1, 2]),
        Err(ParseError::BadStatusListLength { len: 3 })
    );
    assert_eq!(parse_status_list(&[]), Ok(vec![]));
}

fn frag(seq: u16, offset: u16, more: bool, data: &[u8]) -> (Header, Vec<u8>) {
    let h = Header {
        response: true,
        more,
        opcode: Opcode::READ_VARIABLES,
        sequence: Sequence(seq),
        assoc_id: AssocId(5),
        offset,
        count: data.len() as u16,
        mode: MODE_CONTROL,
        version: 2,
        ..Header::default()
    };
    (h, data.to_vec())
}

fn push(r: &mut Reassembler, f: &(Header, Vec<u8>)) -> Result<Progress, ReassemblyError> {
    r.push(&Fragment {
        header: f.0,
        data: &f.1,
    })
}

fn new_reassembler(limit: usize) -> Reassembler {
    Reassembler::new(Opcode::READ_VARIABLES, Sequence(9), AssocId(5), limit)
}

#[test]
fn reassembly_rejects_what_one_response_cannot_be() {
    // Overlap with other bytes.
    let mut r = new_reassembler(1000);
    push(&mut r, &frag(9, 0, true, b"abcd")).expect("first");
    assert_eq!(
        push(&mut r, &frag(9, 2, false, b"XXyy")),
        Err(ReassemblyError::Overlap { offset: 2, end: 6 })
    );
    // Same range, other bytes: not a duplicate.
    assert_eq!(
        push(&mut r, &frag(9, 0, true, b"abcX")),
        Err(ReassemblyError::Overlap { offset: 0, end: 4 })
    );
    // Beyond the cap.
    let mut r = new_reassembler(6);
    assert_eq!(
        push(&mut r, &frag(9, 4, false, b"abc")),
        Err(ReassemblyError::TooLarge { end: 7, limit: 6 })
    );
    // Data beyond the end the last fragment set, and a last fragment that
    // ends before data already received.
    let mut r = new_reassembler(1000);
    push(&mut r, &frag(9, 4, false, b"ef")).expect("last");
    assert_eq!(
        push(&mut r, &frag(9, 5, true, b"zz")),
        Err(ReassemblyError::BeyondEnd { end: 7, total: 6 })
    );
    assert_eq!(
        push(&mut r, &frag(9, 0, false, b"ab")),
        Err(ReassemblyError::ConflictingEnd {
            first: 6,
            second: 2
        })
    );
    let mut r = new_reassembler(1000);
    push(&mut r, &frag(9, 4, true, b"efgh")).expect("middle");
    assert_eq!(
        push(&mut r, &frag(9, 0, false, b"ab")),
        Err(ReassemblyError::BeyondEnd { end: 8, total: 2 })
    );
    // An empty fragment that promises more.
    assert_eq!(
        push(&mut r, &frag(9, 100, true, b"")),
        Err(ReassemblyError::EmptyFragment { offset: 100 })
    );
    // A gap: never complete, and said so when giving up.
    let mut r = new_reassembler(1000);
    assert_eq!(
        push(&mut r, &frag(9, 0, true, b"ab")),
        Ok(Progress::Incomplete)
    );
    assert_eq!(
        push(&mut r, &frag(9, 4, false, b"ef")),
        Ok(Progress::Incomplete)
    );
    assert_eq!(
        r.incomplete(),
        ReassemblyError::Incomplete {
            received: 4,
            total: Some(6)
        }
    );
    assert_eq!(
        r.incomplete().to_string(),
        "incomplete response: 4 of 6 bytes"
    );
    // Filling the gap completes it.
    assert_eq!(
        push(&mut r, &frag(9, 2, true, b"cd")),
        Ok(Progress::Complete(Response {
            status: 0,
            assoc_id: AssocId(5),
            data: b"abcdef".to_vec()
        }))
    );
}

#[test]
fn reassembly_ignores_other_requests_without_harm() {
    let mut r = new_reassembler(1000);
    push(&mut r, &frag(9, 0, true, b"ab")).expect("first");
    let stale = push(&mut r, &frag(8, 2, false, b"zz")).expect_err("other sequence");
    assert!(stale.is_mismatch(), "{stale}");
    let mut other_assoc = frag(9, 2, false, b"zz");
    other_assoc.0.assoc_id = AssocId(6);
    assert!(push(&mut r, &other_assoc).expect_err("other").is_mismatch());
    let mut other_op = frag(9, 2, false, b"zz");
    other_op.0.opcode = Opcode::READ_STATUS;
    assert!(push(&mut r, &other_op).expect_err("other").is_mismatch());
    assert!(matches!(
        push(&mut r, &frag(9, 2, false, b"cd")),
        Ok(Progress::Complete(Response { ref data, .. })) if data == b"abcd"
    ));
    // An error response for our request is the daemon's answer.
    let mut error = frag(9, 0, false, b"");
    error.0.error = true;
    error.0.status = 0x0100;
    let mut r = new_reassembler(1000);
    assert_eq!(
        push(&mut r, &error),
        Err(ReassemblyError::Server(ErrorCode::Permission))
    );
    // An empty last fragment ends an empty response.
    let mut r = new_reassembler(1000);
    assert!(matches!(
        push(&mut r, &frag(9, 0, false, b"")),
        Ok(Progress::Complete(Response { ref data, .. })) if data.is_empty()
    ));
}

#[test]
fn variables_parser_handles_quotes_empty_values_and_garbage() {
    let v = Variables::parse(
        b"a=1, b=\"x, y\", c=, d,\r\n e = \" spaced \" ,=nameless, \x00bad name=3, \"q\"=4, f=\"unterminated, g=5",
    );
    assert_eq!(
        v.0,
        vec![
            ("a".into(), "1".into()),
            ("b".into(), "x, y".into()),
            ("c".into(), String::new()),
            ("d".into(), String::new()),
            ("e".into(), " spaced ".into()),
            ("f".into(), "unterminated, g=5".into()),
        ]
    );
    // A stray quote inside an unquoted value (ntpd's uninitialised filter
    // arrays can contain one) does not swallow what follows.
    let v = Variables::parse(b"filtdelay= \x93\"\xa7 0.01, offset=1.5, flash=0x0");
    assert_eq!(v.get("offset"), Some("1.5"));
    assert_eq!(v.get("filtdelay"), Some("\" 0.01"));
    assert_eq!(v.uint("flash"), Some(0));
    // Typed reads refuse what is not their type.
    let v = Variables::parse(b"x=nan, y=inf, z=-3, w=0x1ff, r=0xff, h=0xzz");
    assert_eq!(v.float("x"), None);
    assert_eq!(v.float("y"), None);
    assert_eq!(v.uint("z"), None);
    assert_eq!(v.int("z"), Some(-3));
    assert_eq!(v.byte("w"), None);
    assert_eq!(v.byte("r"), Some(255));
    assert_eq!(v.uint("h"), None);
    assert_eq!(v.log2("z"), Some(Log2Seconds(-3)));
}

#[test]
fn addresses_are_canonical() {
    assert_eq!(
        canonical_ip("2001:0db8:0000:0000:0000:0000:0000:0001").map(|a| a.to_string()),
        Some("2001:db8::1".into())
    );
    assert_eq!(
        canonical_ip("fe80::1%eth0").map(|a| a.to_string()),
        Some("fe80::1".into())
    );
    assert_eq!(
        canonical_ip("[2001:db8::2]:123").map(|a| a.to_string()),
        Some("2001:db8::2".into())
    );
    assert_eq!(
        canonical_ip(" 192.0.2.1 ").map(|a| a.to_string()),
        Some("192.0.2.1".into())
    );
    assert_eq!(canonical_ip("ntp.example"), None);
}

#[test]
fn units_convert_at_the_boundary() {
    assert_eq!(Millis(11_487.6).seconds(), 11.4876);
    approx(Ppm(-12.5).ratio(), -12.5e-6);
    assert_eq!(Log2Seconds(6).seconds(), 64.0);
    assert_eq!(Log2Seconds(-2).seconds(), 0.25);
    assert_eq!(Log2Seconds(99).seconds(), 2f64.powi(17));
    assert_eq!(Reach(0o377).ratio(), 1.0);
    assert_eq!(Reach(0o17).ratio(), 0.5);
}

/// Splits `payload` into fragments at the given cut points.
fn split(payload: &[u8], cuts: &[usize]) -> Vec<(Header, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    points.push(0);
    points.push(payload.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| frag(9, w[0] as u16, w[1] != payload.len(), &payload[w[0]..w[1]]))
        .collect()
}

proptest! {
    #[test]
    fn header_decoding_never_panics_and_round_trips(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        match Header::parse(&bytes) {
            Ok(h) => prop_assert_eq!(&h.encode()[..], &bytes[..HEADER_LEN]),
            Err(e) => prop_assert_eq!(e, ParseError::Truncated { len: bytes.len() }),
        }
        if let Ok(f) = Fragment::parse(&bytes) {
            prop_assert_eq!(f.data.len(), usize::from(f.header.count));
            prop_assert!(HEADER_LEN + f.data.len() <= bytes.len());
            prop_assert_eq!(f.header.mode, MODE_CONTROL);
        }
    }

    #[test]
    fn reassembly_of_any_split_in_any_order_gives_the_payload(
        payload in prop::collection::vec(any::<u8>(), 1..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        order in prop::collection::vec(any::<u32>(), 9),
        duplicate in any::<prop::sample::Index>(),
    ) {
        let mut fragments = split(&payload, &cuts);
        let dup = fragments[duplicate.index(fragments.len())].clone();
        fragments.push(dup);
        let mut keyed: Vec<_> = fragments.into_iter().zip(order.iter().cycle()).collect();
        keyed.sort_by_key(|(_, k)| **k);
        let mut r = new_reassembler(DEFAULT_RESPONSE_LIMIT);
        let mut done = None;
        for (f, _) in &keyed {
            match push(&mut r, f) {
                Ok(Progress::Complete(resp)) => done = Some(resp.data),
                Ok(Progress::Incomplete) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
        prop_assert_eq!(done, Some(payload));
    }

    #[test]
    fn reassembly_of_arbitrary_fragments_never_panics_or_exceeds_its_cap(
        frags in prop::collection::vec(
            (any::<u16>(), 0u16..3000, any::<bool>(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..600)),
            0..40,
        ),
    ) {
        let limit = 4096;
        let mut r = new_reassembler(limit);
        for (seq_noise, offset, more, error, data) in frags {
            let mut f = frag(if seq_noise % 8 == 0 { seq_noise } else { 9 }, offset, more, &data);
            f.0.error = error && seq_noise % 5 == 0;
            if let Ok(Progress::Complete(resp)) = push(&mut r, &f) {
                prop_assert!(resp.data.len() <= limit);
            }
            match r.incomplete() {
                ReassemblyError::Incomplete { received, total } => {
                    prop_assert!(received <= limit);
                    prop_assert!(total.is_none_or(|t| t <= limit));
                }
                other => prop_assert!(false, "{other}"),
            }
        }
    }

    #[test]
    fn variables_parser_never_panics_and_allocates_at_most_its_input(bytes in prop::collection::vec(any::<u8>(), 0..1500)) {
        let v = Variables::parse(&bytes);
        let stored: usize = v.0.iter().map(|(n, val)| n.len() + val.len()).sum();
        prop_assert!(stored <= bytes.len());
        prop_assert!(v.0.len() <= bytes.len() / 2 + 1);
        let _ = SystemVariables::from_variables(&v);
        let _ = PeerVariables::from_variables(&v);
        let _ = SystemStats::from_variables(&v);
        let _ = PeerCounters::from_variables(&v);
    }

    #[test]
    fn variables_written_as_ntpd_does_parse_back(
        pairs in prop::collection::vec(("[a-z_][a-z0-9_.]{0,12}", "[ -~&&[^,\"]]{0,20}", any::<bool>()), 0..20),
    ) {
        // ntpd's layout: ", " between pairs, "\r\n" when a line gets long,
        // strings in quotes (which may then contain commas).
        let mut text = String::new();
        let mut expected = Vec::new();
        for (i, (name, value, quoted)) in pairs.iter().enumerate() {
            if i > 0 {
                text.push_str(if i % 3 == 0 { ",\r\n" } else { ", " });
            }
            let value = value.trim();
            if *quoted {
                let _ = write!(text, "{name}=\"{value}, more\"");
                expected.push((name.clone(), format!("{value}, more")));
            } else {
                let _ = write!(text, "{name}={value}");
                expected.push((name.clone(), value.to_owned()));
            }
        }
        text.push_str("\r\n");
        prop_assert_eq!(Variables::parse(text.as_bytes()).0, expected);
    }

    #[test]
    fn status_lists_decode_whole_entries_only(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        match parse_status_list(&bytes) {
            Ok(list) => prop_assert_eq!(list.len() * 4, bytes.len()),
            Err(e) => prop_assert_eq!(e, ParseError::BadStatusListLength { len: bytes.len() }),
        }
    }

    #[test]
    fn address_text_never_panics(s in "\\PC{0,60}") {
        let _ = canonical_ip(&s);
    }
}
