//! Tests of the chrony collector's mapping, on decoded replies.

use super::report::*;
use crate::model::PeerState;
use crate::proto::cmdmon::{Address, SourceData, SourceMode, SourceState};

fn source(state: SourceState, reach: u16) -> SourceData {
    SourceData {
        address: Address::Inet4("192.0.2.11".parse().expect("ip")),
        poll: -2,
        stratum: 8,
        state,
        mode: SourceMode::Client,
        flags: 0,
        reachability: reach,
        since_sample: 1,
        orig_latest_meas: -11.5,
        latest_meas: -11.5,
        latest_meas_err: 0.001,
    }
}

#[test]
fn states_map_by_meaning_not_by_name() {
    let cases = [
        (SourceState::Selected, 0o377, PeerState::Selected),
        (SourceState::Unselected, 0o377, PeerState::Candidate),
        (SourceState::Selectable, 0o377, PeerState::Outlier),
        (SourceState::Falseticker, 0o377, PeerState::Falseticker),
        (SourceState::Jittery, 0o377, PeerState::Rejected),
        (SourceState::Nonselectable, 0o377, PeerState::Rejected),
        (SourceState::Nonselectable, 0, PeerState::Unreachable),
        (SourceState::Unknown(9), 0o377, PeerState::Rejected),
    ];
    for (state, reach, want) in cases {
        assert_eq!(peer_state(&source(state, reach)), want, "{state:?}");
    }
}

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::counters::Monotonic;
use crate::collector::Collector;
use crate::metrics::find;
use crate::model::{self, MAX_PEERS};
use crate::proto::cmdmon::{Reply, Request, captured};

/// The captured replies of the lab's client, as one scrape would read them
/// (SOURCESTATS in reverse order: the join is by address, not by index).
fn captured_snapshot() -> Snapshot {
    let mut s = Snapshot::default();
    for (request, sent, reply) in captured::all() {
        match (request, captured::decode(request, (sent, reply))) {
            (Request::Tracking, Ok(Reply::Tracking(t))) if s.tracking.is_none() => {
                s.tracking = Some(t);
            }
            (_, Ok(Reply::SourceData(d))) => s.sources.push(d),
            (_, Ok(Reply::SourceStats(st))) => s.stats.insert(0, st),
            (_, Ok(Reply::NtpData(n))) => s.ntp_data.push(n),
            // The lab client's own (the NTS lab's captures come later).
            (Request::AuthData(ip), Ok(Reply::AuthData(a)))
                if !s.auth.iter().any(|(seen, _)| *seen == ip) =>
            {
                s.auth.push((ip, a));
            }
            (_, Ok(Reply::ServerStats(st))) => {
                let (c, _) = Monotonic::default().update(&st, None);
                s.server = Some((st, c));
            }
            _ => {}
        }
    }
    s
}

/// The value of a sample of the captured scrape's families.
fn captured_value(d: &crate::metrics::Desc, labels: &[&str]) -> Option<f64> {
    let (r, extras) = report(&captured_snapshot());
    let f = r.families();
    find(&f, d)
        .or_else(|| find(&extras, d))
        .and_then(|fam| fam.value(labels))
}

#[test]
fn captured_tracking_maps_onto_the_sync_series() {
    let v = captured_value;
    // Tracking: current_correction is already θ; frequency is negated.
    assert_eq!(
        v(&model::SYNC_OFFSET, &["chronyd"]),
        Some(-2.661_965_481_820_516_3e-6)
    );
    assert_eq!(v(&model::SYNC_STRATUM, &["chronyd"]), Some(9.0));
    assert_eq!(v(&model::SYNC_LEAP, &["chronyd"]), Some(0.0));
    assert_eq!(
        v(&model::SYNC_FREQUENCY, &["chronyd"]),
        Some(-0.151_127_651_333_808_9 * 1e-6)
    );
    assert_eq!(v(&model::SYNC_INFO, &["chronyd", "192.0.2.13"]), Some(1.0));
    assert_eq!(
        v(&TRACKING_LAST_OFFSET, &[]),
        Some(5.424_550_408_861_250_6e-8)
    );
    assert_eq!(v(&TRACKING_INFO, &["C000020D", "192.0.2.13"]), Some(1.0));
}

#[test]
fn captured_sources_map_onto_the_peer_series_with_theta_signs() {
    let v = captured_value;
    let (shared, extras) = report(&captured_snapshot());
    crate::collector::assert_declared(&super::REGISTRATION, &shared.families());
    crate::collector::assert_declared(&super::REGISTRATION, &extras);
    crate::metrics::assert_no_duplicate_series(&shared.families());
    crate::metrics::assert_no_duplicate_series(&extras);
    // Sources: the skewed server is ahead (+11.5 s) and a falseticker.
    let skewed = ["chronyd", "192.0.2.12"];
    // Peer minus system clock: chronyd's adjusted measurement moved by the
    // correction it has yet to apply.
    assert_eq!(
        v(&model::PEER_OFFSET, &skewed),
        Some(-2.661_965_481_820_516_3e-6 + 11.500_020_980_834_961)
    );
    assert_eq!(
        v(&PEER_MEASURED_OFFSET, &["192.0.2.12"]),
        Some(11.500_020_980_834_961)
    );
    assert_eq!(
        v(&PEER_ADJUSTED_OFFSET, &["192.0.2.13"]),
        Some(-7.142_445_497_265_726e-7)
    );
    assert_eq!(
        v(&model::PEER_ERROR_BOUND, &skewed),
        Some(0.000_770_265_934_988_856_3)
    );
    assert_eq!(
        v(&model::PEER_JITTER, &skewed),
        Some(6.008_017_408_021_26e-6)
    );
    assert_eq!(
        v(&model::PEER_DELAY, &skewed),
        Some(7.373_999_687_843_025e-5)
    );
    assert_eq!(v(&model::PEER_POLL, &skewed), Some(0.5));
    assert_eq!(v(&model::PEER_REACH, &skewed), Some(1.0));
    // The leap indicator of the source's last packet, from NTP_DATA: the
    // shared series and chrony's own agree.
    assert_eq!(v(&model::PEER_LEAP, &skewed), Some(0.0));
    assert_eq!(v(&PEER_LEAP, &["192.0.2.12"]), Some(0.0));
    assert_eq!(
        v(
            &model::PEER_STATE,
            &["chronyd", "192.0.2.12", "falseticker"]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(&model::PEER_STATE, &["chronyd", "192.0.2.13", "selected"]),
        Some(1.0)
    );
    assert_eq!(
        v(&model::PEER_STATE, &["chronyd", "192.0.2.11", "candidate"]),
        Some(1.0)
    );
    assert_eq!(
        v(&PEER_FREQUENCY, &["192.0.2.12"]),
        Some(1.182_961_463_928_222_7 * 1e-6)
    );
    assert_eq!(
        v(&PEER_ESTIMATED_OFFSET, &["192.0.2.12"]),
        Some(11.500_020_980_834_961)
    );
    // The refid of an NTP source comes from NTP_DATA (socket only).
    assert_eq!(
        v(
            &model::PEER_INFO,
            &["chronyd", "192.0.2.12", "server", "198.51.100.7"]
        ),
        Some(1.0)
    );
    assert_eq!(
        v(
            &model::PEER_INFO,
            &["chronyd", "192.0.2.11", "server", "127.127.1.1"]
        ),
        Some(1.0)
    );
    // The reference clock: labelled by refid, unreachable, no fake offset.
    assert_eq!(
        v(&model::PEER_INFO, &["chronyd", "GPS", "refclock", "GPS"]),
        Some(1.0)
    );
    assert_eq!(
        v(&model::PEER_STATE, &["chronyd", "GPS", "unreachable"]),
        Some(1.0)
    );
    assert_eq!(v(&model::PEER_OFFSET, &["chronyd", "GPS"]), None);
    assert_eq!(v(&model::PEER_JITTER, &["chronyd", "GPS"]), None);
    assert_eq!(v(&PEER_SAMPLES, &["GPS"]), Some(0.0));
    assert_eq!(v(&PEER_FREQUENCY_SKEW, &["GPS"]), None);
    // Server counters of the honest server's socket.
    assert_eq!(v(&model::SERVER_REQUESTS, &["chronyd"]), Some(19.0));
    assert_eq!(v(&SERVER_COMMAND_RECEIVED, &[]), Some(1.0));
    assert_eq!(v(&SERVER_TIMESTAMPS_HELD, &[]), Some(0.0));
    assert!(find(&extras, &SERVER_TIMESTAMPS).is_none());
}

/// The captured TRACKING of a chronyd on its `local` clock.
fn captured_local_tracking() -> crate::proto::cmdmon::Tracking {
    captured::all()
        .into_iter()
        .filter(|(r, ..)| *r == Request::Tracking)
        .find_map(|(r, q, p)| match captured::decode(r, (q, p)) {
            Ok(Reply::Tracking(t)) if t.ref_id == LOCAL_REFERENCE_ID => Some(t),
            _ => None,
        })
        .expect("local tracking")
}

#[test]
fn a_server_on_its_local_clock_has_a_local_peer() {
    let local = captured_local_tracking();
    let (r, _) = report(&Snapshot {
        tracking: Some(local),
        ..Snapshot::default()
    });
    let f = r.families();
    // The reference is the local peer's label: peer:clock_peer_free_running:bool
    // joins the two to know the server serves its own clock.
    assert_eq!(
        find(&f, &model::SYNC_INFO).and_then(|x| x.value(&["chronyd", "LOCL"])),
        Some(1.0)
    );
    assert_eq!(
        find(&f, &model::PEER_INFO).and_then(|x| x.value(&["chronyd", "LOCL", "local", "LOCL"])),
        Some(1.0)
    );
    assert_eq!(
        find(&f, &model::PEER_STATE).and_then(|x| x.value(&["chronyd", "LOCL", "selected"])),
        Some(1.0)
    );
}

#[test]
fn sources_that_share_a_label_are_numbered_so_no_series_repeats() {
    let local = captured_local_tracking();
    // A refclock whose refid is also LOCL, beside chronyd's local clock.
    let refclock = SourceData {
        mode: SourceMode::Reference,
        address: Address::Inet4(std::net::Ipv4Addr::from(u32::from_be_bytes(*b"LOCL"))),
        ..source(SourceState::Unselected, 0o377)
    };
    let snapshot = Snapshot {
        tracking: Some(local),
        // One address twice: two servers on one host at different ports,
        // which cmdmon's SOURCE_DATA cannot tell apart.
        sources: vec![
            source(SourceState::Selected, 0o377),
            source(SourceState::Unselected, 0o377),
            refclock,
        ],
        ..Snapshot::default()
    };
    let (r, extras) = report(&snapshot);
    let labels: Vec<(&str, &str)> = r
        .peers
        .iter()
        .map(|p| (p.address.as_str(), p.refid.as_str()))
        .collect();
    assert_eq!(
        labels,
        [
            ("LOCL", "LOCL"),
            ("192.0.2.11", ""),
            ("192.0.2.11#2", ""),
            ("LOCL#2", "LOCL"),
        ]
    );
    crate::metrics::assert_no_duplicate_series(&r.families());
    crate::metrics::assert_no_duplicate_series(&extras);
    assert_eq!(
        find(&extras, &PEER_ADJUSTED_OFFSET).and_then(|x| x.value(&["192.0.2.11#2"])),
        Some(11.5)
    );
}

/// A chronyd stand-in on loopback: every request is answered with the
/// captured reply to the same command (the honest server's source data and
/// statistics for every index), N_SOURCES saying `sources`. Counts the
/// SOURCE_DATA requests it answers.
async fn many_sources(sources: u32) -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let mut replies: HashMap<u16, Vec<u8>> = HashMap::new();
    for (request, sent, reply) in captured::all() {
        let wanted = matches!(
            request,
            Request::Tracking
                | Request::NSources
                | Request::SourceData(1)
                | Request::SourceStats(1)
                | Request::ServerStats
                // The first captured: chronyd 4.3's refusal over UDP.
                | Request::AuthData(_)
        );
        if wanted {
            replies
                .entry(u16::from_be_bytes([sent[4], sent[5]]))
                .or_insert_with(|| reply.to_vec());
        }
    }
    let n_sources = replies.get_mut(&14).expect("N_SOURCES reply");
    n_sources[28..32].copy_from_slice(&sources.to_be_bytes());
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            let command = u16::from_be_bytes([buf[4], buf[5]]);
            let Some(mut reply) = replies.get(&command).cloned() else {
                continue;
            };
            if command == 15 {
                counter.fetch_add(1, Ordering::Relaxed);
            }
            reply[16..20].copy_from_slice(&buf[8..12]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    (addr, asked)
}

#[tokio::test]
async fn a_chronyd_with_more_sources_than_the_bound_is_read_up_to_it() {
    let (addr, asked) = many_sources(1000).await;
    let chrony = Arc::new(super::collector(addr, None, Duration::from_secs(5), true));
    let c = chrony.collect().await;
    let message: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        message,
        ["protocol: chronyd reports 1000 sources; the exporter reads the first 256 and skips 744"]
    );
    assert_eq!(
        asked.load(Ordering::Relaxed),
        MAX_PEERS,
        "only those are asked for"
    );
    let states = find(&c.families, &model::PEER_STATE).expect("states");
    assert_eq!(states.samples.len(), MAX_PEERS * PeerState::ALL.len());
    crate::metrics::assert_no_duplicate_series(&c.families);
    assert_eq!(
        find(&c.families, &model::DAEMON_UP).and_then(|f| f.value(&["chronyd"])),
        Some(1.0)
    );
    // Below the bound, every source is read and nothing is said.
    let (addr, asked) = many_sources(3).await;
    let chrony = Arc::new(super::collector(addr, None, Duration::from_secs(5), true));
    let c = chrony.collect().await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(asked.load(Ordering::Relaxed), 3);
}

/// AUTH_DATA of an NTS source chronyd holds cookies for.
fn nts(cookies: u16, nak: bool) -> crate::proto::cmdmon::AuthData {
    crate::proto::cmdmon::AuthData {
        mode: crate::proto::cmdmon::AuthMode::Nts,
        key_type: 15,
        key_id: 3,
        key_length: 256,
        ke_attempts: if cookies == 0 { 4 } else { 0 },
        last_ke_ago: (cookies > 0).then_some(1200),
        cookies,
        cookie_length: 100,
        nak,
    }
}

fn auth_of(snapshot: &Snapshot) -> (Option<model::PeerAuth>, Vec<crate::metrics::Family>) {
    let (r, extras) = report(snapshot);
    crate::collector::assert_declared(&super::REGISTRATION, &r.families());
    crate::collector::assert_declared(&super::REGISTRATION, &extras);
    (r.peers[0].auth, extras)
}

#[test]
fn captured_authdata_of_an_unauthenticated_source_says_none() {
    let v = captured_value;
    let honest = ["chronyd", "192.0.2.11"];
    assert_eq!(v(&model::PEER_AUTHENTICATED, &honest), Some(0.0));
    assert_eq!(
        v(&model::PEER_AUTH_INFO, &["chronyd", "192.0.2.11", "none"]),
        Some(1.0)
    );
    // No AUTH_DATA was captured for the skewed server: NTP_DATA's flag
    // (clear) says the same; for the reference clock nothing is said.
    assert_eq!(
        v(&model::PEER_AUTH_INFO, &["chronyd", "192.0.2.12", "none"]),
        Some(1.0)
    );
    assert_eq!(v(&model::PEER_AUTHENTICATED, &["chronyd", "GPS"]), None);
    // Key and NTS details only for sources that have them.
    assert_eq!(v(&PEER_AUTH_KEY_ID, &["192.0.2.11"]), None);
    assert_eq!(v(&PEER_NTS_COOKIES, &["192.0.2.11"]), None);
}

#[test]
fn an_nts_source_is_authenticated_while_it_answers_holds_cookies_and_has_no_nak() {
    let ip: std::net::IpAddr = "192.0.2.11".parse().expect("ip");
    let snapshot = |reach: u16, auth: crate::proto::cmdmon::AuthData| Snapshot {
        sources: vec![source(SourceState::Selected, reach)],
        auth: vec![(ip, auth)],
        ..Snapshot::default()
    };
    let (a, extras) = auth_of(&snapshot(0o377, nts(8, false)));
    assert_eq!(
        a,
        Some(model::PeerAuth {
            mode: model::AuthMode::Nts,
            authenticated: true
        })
    );
    let x = |d: &crate::metrics::Desc| find(&extras, d).and_then(|f| f.value(&["192.0.2.11"]));
    assert_eq!(x(&PEER_NTS_COOKIES), Some(8.0));
    assert_eq!(x(&PEER_NTS_COOKIE_LENGTH), Some(100.0));
    assert_eq!(x(&PEER_NTS_KE_ATTEMPTS), Some(0.0));
    assert_eq!(x(&PEER_NTS_LAST_KE_AGE), Some(1200.0));
    assert_eq!(x(&PEER_NTS_NAK), Some(0.0));
    assert_eq!(x(&PEER_AUTH_KEY_ID), Some(3.0));
    assert_eq!(x(&PEER_AUTH_KEY_TYPE), Some(15.0));
    assert_eq!(x(&PEER_AUTH_KEY_LENGTH), Some(256.0));
    // Each way it stops working: no cookies (NTS-KE failing), a NAK, no
    // authentic reply in the last eight polls.
    for (reach, auth, why) in [
        (0o377, nts(0, false), "no cookies"),
        (0o377, nts(8, true), "a NAK"),
        (0, nts(8, false), "unanswered polls"),
    ] {
        let (a, extras) = auth_of(&snapshot(reach, auth));
        assert_eq!(
            a,
            Some(model::PeerAuth {
                mode: model::AuthMode::Nts,
                authenticated: false
            }),
            "{why}"
        );
        if why == "no cookies" {
            let x =
                |d: &crate::metrics::Desc| find(&extras, d).and_then(|f| f.value(&["192.0.2.11"]));
            assert_eq!(x(&PEER_NTS_COOKIES), Some(0.0));
            assert_eq!(x(&PEER_NTS_KE_ATTEMPTS), Some(4.0));
            // Never established: no age.
            assert_eq!(x(&PEER_NTS_LAST_KE_AGE), None);
        }
    }
}

#[test]
fn without_authdata_ntpdata_flag_means_a_symmetric_key_and_nothing_else_is_guessed() {
    let ip: std::net::IpAddr = "192.0.2.11".parse().expect("ip");
    let ntp = |flags: u16, valid: u32| {
        let mut n = captured::all()
            .into_iter()
            .find_map(
                |(r, sent, reply)| match captured::decode(r, (sent, reply)) {
                    Ok(Reply::NtpData(n)) => Some(n),
                    _ => None,
                },
            )
            .expect("a captured ntpdata");
        n.remote_addr = Address::Inet4("192.0.2.11".parse().expect("ip"));
        n.flags = flags;
        n.total_valid_count = valid;
        n
    };
    let snapshot = |n| Snapshot {
        sources: vec![source(SourceState::Selected, 0o17)],
        ntp_data: vec![n],
        ..Snapshot::default()
    };
    let sk = auth_of(&snapshot(ntp(0x8000, 5))).0;
    assert_eq!(
        sk,
        Some(model::PeerAuth {
            mode: model::AuthMode::SymmetricKey,
            authenticated: true
        })
    );
    assert_eq!(
        auth_of(&snapshot(ntp(0, 5))).0.map(|a| a.mode),
        Some(model::AuthMode::None)
    );
    // Before the first packet chronyd's NTP_DATA is zeros: neither the
    // authentication nor the leap indicator is known.
    let (r, _) = report(&snapshot(ntp(0x8000, 0)));
    assert_eq!(r.peers[0].auth, None);
    assert_eq!(r.peers[0].leap, None);
    // AUTH_DATA wins over the flag, which only says "enabled".
    let mut with_auth = snapshot(ntp(0x8000, 5));
    with_auth.auth = vec![(ip, nts(8, false))];
    assert_eq!(
        auth_of(&with_auth).0.map(|a| a.mode),
        Some(model::AuthMode::Nts)
    );
}
