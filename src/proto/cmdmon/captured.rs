//! Datagrams captured from Debian's chronyd 4.3 in the test lab (see
//! `tests/fixtures/cmdmon/README.md`): decoded to literal values, and the
//! requests that drew them re-encoded to the same bytes.
//!
//! The client chronyd had four sources, in this index order: a SOCK
//! reference clock `GPS` that never got a sample, the honest chronyd server
//! 192.0.2.11 (`+`), the skewed responder 192.0.2.12 at +11.5 s (`x`), and
//! the honest server 192.0.2.13 (`*`).

use super::*;

macro_rules! fixture {
    ($name:literal) => {
        (
            include_bytes!(concat!(
                "../../../tests/fixtures/cmdmon/",
                $name,
                ".request.bin"
            ))
            .as_slice(),
            include_bytes!(concat!(
                "../../../tests/fixtures/cmdmon/",
                $name,
                ".reply.bin"
            ))
            .as_slice(),
        )
    };
}

/// Every captured pair with the request that was sent.
pub(crate) fn all() -> Vec<(Request, &'static [u8], &'static [u8])> {
    let a: IpAddr = "192.0.2.11".parse().expect("ip");
    let b: IpAddr = "192.0.2.12".parse().expect("ip");
    let f = |r: Request, (q, p): (&'static [u8], &'static [u8])| (r, q, p);
    vec![
        f(Request::Tracking, fixture!("tracking")),
        f(Request::NSources, fixture!("n_sources")),
        f(Request::SourceData(0), fixture!("source_data.0")),
        f(Request::SourceStats(0), fixture!("sourcestats.0")),
        f(Request::SourceData(1), fixture!("source_data.1")),
        f(Request::SourceStats(1), fixture!("sourcestats.1")),
        f(Request::SourceData(2), fixture!("source_data.2")),
        f(Request::SourceStats(2), fixture!("sourcestats.2")),
        f(Request::SourceData(3), fixture!("source_data.3")),
        f(Request::SourceStats(3), fixture!("sourcestats.3")),
        f(Request::SourceData(99), fixture!("source_data.nosuch")),
        f(Request::ServerStats, fixture!("server_stats.udp")),
        f(Request::NtpData(a), fixture!("ntp_data.udp")),
        f(Request::NtpData(a), fixture!("ntp_data.honest")),
        f(Request::NtpData(b), fixture!("ntp_data.skewed")),
        f(Request::ServerStats, fixture!("server_stats.unix")),
        f(Request::Tracking, fixture!("tracking.local")),
        f(Request::AuthData(a), fixture!("auth_data.udp")),
        f(Request::AuthData(a), fixture!("auth_data.honest")),
        f(
            Request::AuthData("192.0.2.99".parse().expect("ip")),
            fixture!("auth_data.nosuch"),
        ),
        f(Request::AuthData(a), fixture!("auth_data.nts")),
        f(
            Request::AuthData("192.0.2.13".parse().expect("ip")),
            fixture!("auth_data.nts_untrusted"),
        ),
    ]
}

fn sequence_of(request: &[u8]) -> u32 {
    u32::from_be_bytes([request[8], request[9], request[10], request[11]])
}

/// The decoded reply to a captured pair.
pub(crate) fn decode(request: Request, pair: (&[u8], &[u8])) -> Result<Reply, ReplyError> {
    decode_reply(request, sequence_of(pair.0), pair.1)
}

#[test]
fn captured_requests_re_encode_to_the_same_bytes() {
    for (request, sent, _) in all() {
        assert_eq!(request.encode(sequence_of(sent)), sent, "{request:?}");
    }
}

#[test]
fn captured_replies_answer_their_requests_and_not_others() {
    for (request, sent, reply) in all() {
        let seq = sequence_of(sent);
        assert!(
            !matches!(
                decode_reply(request, seq, reply),
                Err(ReplyError::NotOurs { .. } | ReplyError::Parse(_))
            ),
            "{request:?}"
        );
        assert!(matches!(
            decode_reply(request, seq.wrapping_add(1), reply),
            Err(ReplyError::NotOurs { .. })
        ));
        // Every truncation is an error, never a panic or a wrong value.
        for n in 0..reply.len() {
            if let Ok(r) = decode_reply(request, seq, &reply[..n]) {
                panic!("{request:?} truncated to {n} decoded to {r:?}");
            }
        }
    }
}

#[test]
fn tracking_of_a_synchronised_client() {
    let Ok(Reply::Tracking(t)) = decode(Request::Tracking, fixture!("tracking")) else {
        panic!("tracking")
    };
    assert_eq!(t.ref_id, 0xc000_020d);
    assert_eq!(t.address, Address::Inet4(Ipv4Addr::new(192, 0, 2, 13)));
    assert_eq!((t.stratum, t.leap_status), (9, 0));
    assert_eq!(
        t.ref_time,
        Timespec {
            sec_high: 0,
            sec_low: 1_795_617_476,
            nsec: 594_984_600
        }
    );
    assert_eq!(t.current_correction, -2.661_965_481_820_516_3e-6);
    assert_eq!(t.last_offset, -5.424_550_408_861_250_6e-8);
    // The client followed the skewed server for a moment at start.
    assert_eq!(t.rms_offset, 5.218_165_397_644_043);
    assert_eq!(t.freq_ppm, 0.151_127_651_333_808_9);
    assert_eq!(t.resid_freq_ppm, -0.003_773_030_126_467_347);
    assert_eq!(t.skew_ppm, 0.158_672_541_379_928_6);
    assert_eq!(t.root_delay, 9.364_000_106_870_662e-6);
    assert_eq!(t.root_dispersion, 6.899_083_473_399_514e-7);
    assert_eq!(t.last_update_interval, 0.253_486_871_719_360_35);
}

#[test]
fn tracking_of_a_server_on_its_local_clock() {
    let Ok(Reply::Tracking(t)) = decode(Request::Tracking, fixture!("tracking.local")) else {
        panic!("tracking")
    };
    assert_eq!(t.ref_id, 0x7f7f_0101);
    assert_eq!(t.address, Address::Unspec);
    assert_eq!((t.stratum, t.leap_status), (8, 0));
    assert_eq!(t.current_correction, 0.0);
}

#[test]
fn sources_of_every_kind() {
    assert_eq!(
        decode(Request::NSources, fixture!("n_sources")),
        Ok(Reply::NSources(4))
    );
    let Ok(Reply::SourceData(gps)) = decode(Request::SourceData(0), fixture!("source_data.0"))
    else {
        panic!("0")
    };
    // A reference clock: its refid in an IPv4-shaped address; no sample yet.
    assert_eq!(
        gps.address,
        Address::Inet4(Ipv4Addr::new(b'G', b'P', b'S', 0))
    );
    assert_eq!(gps.mode, SourceMode::Reference);
    assert_eq!(gps.state, SourceState::Nonselectable);
    assert_eq!((gps.poll, gps.stratum, gps.reachability), (4, 0, 0));
    assert_eq!(gps.since_sample, u32::MAX);
    let Ok(Reply::SourceData(skewed)) = decode(Request::SourceData(2), fixture!("source_data.2"))
    else {
        panic!("2")
    };
    assert_eq!(
        skewed,
        SourceData {
            address: Address::Inet4(Ipv4Addr::new(192, 0, 2, 12)),
            poll: -1,
            stratum: 2,
            state: SourceState::Falseticker,
            mode: SourceMode::Client,
            flags: 0,
            reachability: 0o377,
            since_sample: 1,
            // chrony's sign: local minus source; the source is 11.5 s ahead.
            orig_latest_meas: -11.500_020_980_834_961,
            latest_meas: -11.500_020_980_834_961,
            latest_meas_err: 0.000_770_265_934_988_856_3,
        }
    );
    let Ok(Reply::SourceData(selected)) = decode(Request::SourceData(3), fixture!("source_data.3"))
    else {
        panic!("3")
    };
    assert_eq!(selected.state, SourceState::Selected);
    assert_eq!(selected.orig_latest_meas, 6.600_000_119_760_807e-7);
    // Adjusted for the correction chronyd made since the sample.
    assert_eq!(selected.latest_meas, 7.142_445_497_265_726e-7);
    let Ok(Reply::SourceData(combined)) = decode(Request::SourceData(1), fixture!("source_data.1"))
    else {
        panic!("1")
    };
    assert_eq!(combined.state, SourceState::Unselected);
    assert_eq!(combined.state.symbol(), '+');
}

#[test]
fn sourcestats_of_every_kind() {
    let Ok(Reply::SourceStats(gps)) = decode(Request::SourceStats(0), fixture!("sourcestats.0"))
    else {
        panic!("0")
    };
    // A reference clock has no address in SOURCESTATS, only its refid.
    assert_eq!((gps.ref_id, gps.address), (0x4750_5300, Address::Unspec));
    assert_eq!(gps.n_samples, 0);
    let Ok(Reply::SourceStats(skewed)) = decode(Request::SourceStats(2), fixture!("sourcestats.2"))
    else {
        panic!("2")
    };
    assert_eq!(
        skewed,
        SourceStats {
            ref_id: 0xc000_020c,
            address: Address::Inet4(Ipv4Addr::new(192, 0, 2, 12)),
            n_samples: 19,
            n_runs: 12,
            span_seconds: 4,
            sd: 6.008_017_408_021_26e-6,
            resid_freq_ppm: -1.182_961_463_928_222_7,
            skew_ppm: 4.223_635_673_522_949,
            est_offset: -11.500_020_980_834_961,
            est_offset_err: 0.000_773_896_463_215_351_1,
        }
    );
}

#[test]
fn ntp_data_over_the_socket_and_refusals_over_udp() {
    let Ok(Reply::NtpData(skewed)) = decode(
        Request::NtpData("192.0.2.12".parse().expect("ip")),
        fixture!("ntp_data.skewed"),
    ) else {
        panic!("ntpdata")
    };
    assert_eq!(
        skewed.remote_addr,
        Address::Inet4(Ipv4Addr::new(192, 0, 2, 12))
    );
    assert_eq!(
        skewed.local_addr,
        Address::Inet4(Ipv4Addr::new(192, 0, 2, 1))
    );
    assert_eq!(
        (skewed.remote_port, skewed.leap, skewed.version, skewed.mode),
        (123, 0, 4, 4)
    );
    assert_eq!(
        (skewed.stratum, skewed.poll, skewed.precision),
        (2, -2, -20)
    );
    assert_eq!(skewed.root_delay, 0.000_488_281_25);
    assert_eq!(skewed.ref_id, 0xc633_6407);
    // NTP_DATA's offset, unlike SOURCE_DATA's, is source minus local (θ).
    assert_eq!(skewed.offset, 11.500_020_980_834_961);
    assert_eq!(skewed.peer_delay, 7.373_999_687_843_025e-5);
    assert_eq!((skewed.tx_tss_char, skewed.rx_tss_char), (b'K', b'K'));
    assert_eq!(
        (
            skewed.total_tx_count,
            skewed.total_rx_count,
            skewed.total_valid_count
        ),
        (19, 19, 19)
    );
    assert_eq!(skewed.total_good_count, None);
    let Ok(Reply::NtpData(honest)) = decode(
        Request::NtpData("192.0.2.11".parse().expect("ip")),
        fixture!("ntp_data.honest"),
    ) else {
        panic!("ntpdata")
    };
    assert_eq!(honest.ref_id, 0x7f7f_0101);
    assert_eq!(honest.offset, -7.759_999_789_413_996e-7);
    assert_eq!(
        decode(Request::ServerStats, fixture!("server_stats.udp")),
        Err(ReplyError::Refused(Status::Unauthorised))
    );
    assert_eq!(
        decode(
            Request::NtpData("192.0.2.11".parse().expect("ip")),
            fixture!("ntp_data.udp")
        ),
        Err(ReplyError::Refused(Status::Unauthorised))
    );
    assert_eq!(
        decode(Request::SourceData(99), fixture!("source_data.nosuch")),
        Err(ReplyError::Refused(Status::NoSuchSource))
    );
}

#[test]
fn auth_data_of_an_unauthenticated_source_and_refusals() {
    let a: IpAddr = "192.0.2.11".parse().expect("ip");
    assert_eq!(
        decode(Request::AuthData(a), fixture!("auth_data.honest")),
        Ok(Reply::AuthData(AuthData {
            mode: AuthMode::None,
            key_type: 0,
            key_id: 0,
            key_length: 0,
            ke_attempts: 0,
            last_ke_ago: None,
            cookies: 0,
            cookie_length: 0,
            nak: false,
        }))
    );
    // chrony 4.3 answers it on the unix socket only.
    assert_eq!(
        decode(Request::AuthData(a), fixture!("auth_data.udp")),
        Err(ReplyError::Refused(Status::Unauthorised))
    );
    assert_eq!(
        decode(
            Request::AuthData("192.0.2.99".parse().expect("ip")),
            fixture!("auth_data.nosuch")
        ),
        Err(ReplyError::Refused(Status::NoSuchSource))
    );
}

#[test]
fn auth_data_of_nts_sources_established_and_failing() {
    // An NTS source whose key establishment succeeded: AES-SIV-CMAC-256
    // (type 15, 256 bits), the first session, eight cookies of 100 bytes.
    assert_eq!(
        decode(
            Request::AuthData("192.0.2.11".parse().expect("ip")),
            fixture!("auth_data.nts")
        ),
        Ok(Reply::AuthData(AuthData {
            mode: AuthMode::Nts,
            key_type: 15,
            key_id: 1,
            key_length: 256,
            ke_attempts: 0,
            last_ke_ago: Some(0),
            cookies: 8,
            cookie_length: 100,
            nak: false,
        }))
    );
    // One whose certificate the client does not trust: no keys, no
    // cookies, one attempt so far, never established.
    assert_eq!(
        decode(
            Request::AuthData("192.0.2.13".parse().expect("ip")),
            fixture!("auth_data.nts_untrusted")
        ),
        Ok(Reply::AuthData(AuthData {
            mode: AuthMode::Nts,
            key_type: 0,
            key_id: 0,
            key_length: 0,
            ke_attempts: 1,
            last_ke_ago: None,
            cookies: 0,
            cookie_length: 0,
            nak: false,
        }))
    );
}

#[test]
fn server_stats_of_chrony_4_3_are_format_3() {
    assert_eq!(
        decode(Request::ServerStats, fixture!("server_stats.unix")),
        Ok(Reply::ServerStats(ServerStats {
            format: 3,
            ntp_hits: 19,
            nke_hits: Some(0),
            cmd_hits: 1,
            ntp_drops: 0,
            nke_drops: Some(0),
            cmd_drops: 0,
            log_drops: 0,
            ntp_auth_hits: Some(0),
            ntp_interleaved_hits: Some(0),
            ntp_timestamps: Some(0),
            ntp_span_seconds: Some(0),
            timestamps: None,
        }))
    );
}

proptest::proptest! {
    /// Regression seeds: every captured reply with bytes flipped decodes
    /// or fails cleanly.
    #[test]
    fn captured_replies_with_flipped_bytes_never_panic(
        which in 0usize..64,
        at in 0usize..200,
        byte in proptest::num::u8::ANY,
    ) {
        let pairs = all();
        let (request, sent, reply) = pairs[which % pairs.len()];
        let mut b = reply.to_vec();
        let i = at % b.len();
        b[i] = byte;
        let _ = decode_reply(request, sequence_of(sent), &b);
    }
}
