//! The conversion to the shared model from datagrams captured from NTPsec
//! (tests/fixtures/mode6), and the query against responders on loopback
//! that replay those datagrams, mangle them, or never answer.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::reading::*;
use super::served::{self, Sample, SystemCounts};
use super::*;
use crate::collector::daemon::{DaemonCollector, MIN_BACKOFF};
use crate::metrics::{Desc, Family, find};
use crate::model::{self, Daemon, MAX_PEERS, PeerKind, PeerState};
use crate::proto::mode6::fixtures::*;
use crate::proto::mode6::{
    self, AssocId, Fragment, Opcode, PeerCounters, PeerReading, PeerStatus, PeerVariables,
    Selection, Sequence, SystemStats, SystemStatus, SystemVariables, Variables,
};
use crate::proto::mode6::{Header, Log2Seconds, Millis, Reach, encode_datagram};

/// The captured answer to a request, its sequence number and association
/// rewritten to the request's (their data and stale padding unchanged).
/// The falseticker capture has the default variables only: requests naming
/// variables (the statistics, the associations' counters) are answered with
/// its "unknown variable" error, as by an ntpd that has none of them.
fn captured_answer(req: &Header, data: &[u8]) -> Vec<Vec<u8>> {
    let datagrams: Vec<&[u8]> = match (req.opcode, req.assoc_id.0, data) {
        (Opcode::READ_STATUS, 0, _) => vec![READSTAT],
        (Opcode::READ_VARIABLES, 0, b"") => vec![SYSTEM],
        (Opcode::READ_VARIABLES, _, d) if !d.is_empty() => vec![UNKNOWN_VARIABLE],
        (Opcode::READ_VARIABLES, 17767, _) => HONEST_A.to_vec(),
        (Opcode::READ_VARIABLES, 17768, _) => HONEST_B.to_vec(),
        (Opcode::READ_VARIABLES, 17769, _) => SKEWED.to_vec(),
        _ => vec![BAD_ASSOCIATION],
    };
    datagrams.iter().map(|d| rewrite(d, req)).collect()
}

/// The served capture's answer to a request, rewritten as above.
fn served_answer(req: &Header, data: &[u8]) -> Vec<Vec<u8>> {
    use served_lab as lab;
    let datagrams: Vec<&[u8]> = match (req.opcode, req.assoc_id.0, data) {
        (Opcode::READ_STATUS, 0, _) => vec![lab::READSTAT],
        (Opcode::READ_VARIABLES, 0, b"") => vec![lab::SYSTEM],
        (Opcode::READ_VARIABLES, 0, d) if d == SystemStats::QUERY.as_bytes() => {
            vec![lab::SYSSTATS]
        }
        (Opcode::READ_VARIABLES, 0, d) if d == SystemStats::QUERY_NTPSEC.as_bytes() => {
            vec![lab::SYSSTATS_NTPSEC]
        }
        (Opcode::READ_VARIABLES, 17767, b"") => lab::UPSTREAM.to_vec(),
        (Opcode::READ_VARIABLES, 17767, d) if d == PeerCounters::QUERY.as_bytes() => {
            vec![lab::UPSTREAM_COUNTERS]
        }
        (Opcode::READ_VARIABLES, 0, _) => vec![UNKNOWN_VARIABLE],
        _ => vec![BAD_ASSOCIATION],
    };
    datagrams.iter().map(|d| rewrite(d, req)).collect()
}

fn rewrite(datagram: &[u8], req: &Header) -> Vec<u8> {
    let mut out = datagram.to_vec();
    let mut h = Header::parse(datagram).expect("fixture header");
    h.sequence = req.sequence;
    h.assoc_id = req.assoc_id;
    out[..mode6::HEADER_LEN].copy_from_slice(&h.encode());
    out
}

/// A response's status word and data, from its fragments in order.
fn data(d: &[&[u8]]) -> (u16, Vec<u8>) {
    let mut out = Vec::new();
    let mut status = 0;
    for f in d {
        let f = Fragment::parse(f).expect("fragment");
        status = f.header.status;
        out.extend_from_slice(f.data);
    }
    (status, out)
}

/// The falseticker fixtures decoded the way [`query`] decodes answers
/// (without statistics or counters, which that capture does not have).
fn captured_reading() -> Reading {
    let (sys_status, sys) = data(&[SYSTEM]);
    let peer = |id: u16, d: [&[u8]; 2]| {
        let (status, text) = data(&d);
        PeerReading {
            assoc_id: AssocId(id),
            status: PeerStatus(status),
            variables: PeerVariables::from_variables(&Variables::parse(&text)),
        }
    };
    Reading {
        system_status: Some(SystemStatus(sys_status)),
        system: Some(SystemVariables::from_variables(&Variables::parse(&sys))),
        stats: SystemStats::default(),
        peers: vec![
            peer(17769, SKEWED),
            peer(17768, HONEST_B),
            peer(17767, HONEST_A),
        ],
        counters: None,
        problems: vec![],
    }
}

/// The served fixtures decoded the way [`query`] decodes answers.
fn served_reading() -> Reading {
    use served_lab as lab;
    let (sys_status, sys) = data(&[lab::SYSTEM]);
    let mut stats = Variables::parse(&data(&[lab::SYSSTATS]).1);
    stats
        .0
        .extend(Variables::parse(&data(&[lab::SYSSTATS_NTPSEC]).1).0);
    let (status, peer) = data(&lab::UPSTREAM);
    Reading {
        system_status: Some(SystemStatus(sys_status)),
        system: Some(SystemVariables::from_variables(&Variables::parse(&sys))),
        stats: SystemStats::from_variables(&stats),
        peers: vec![PeerReading {
            assoc_id: AssocId(17767),
            status: PeerStatus(status),
            variables: PeerVariables::from_variables(&Variables::parse(&peer)),
        }],
        counters: Some(vec![(
            AssocId(17767),
            PeerCounters::from_variables(&Variables::parse(&data(&[lab::UPSTREAM_COUNTERS]).1)),
        )]),
        problems: vec![],
    }
}

fn value(fams: &[Family], desc: &Desc, labels: &[&str]) -> Option<f64> {
    find(fams, desc).and_then(|f| f.value(labels))
}

fn approx(a: Option<f64>, b: f64) {
    let a = a.expect("value present");
    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
}

#[test]
fn captured_ntpd_becomes_the_shared_model() {
    let report = captured_reading().report(None);
    assert_eq!(report.daemon, Daemon::Ntpd);
    assert_eq!(report.server_requests_total, None);
    let sync = report.sync.expect("sync");
    assert_eq!(sync.reference, "192.0.2.11", "assoc 17767 is the sys peer");
    assert_eq!((sync.stratum, sync.leap), (Some(9), Some(3)));
    approx(sync.root_dispersion_seconds, 0.437_545);
    approx(sync.root_delay_seconds, 0.000_013);
    approx(sync.jitter_seconds, 0.000_015_123);
    assert_eq!(sync.poll_interval_seconds, Some(8.0));
    assert_eq!(sync.offset_seconds, Some(0.0));
    assert_eq!(sync.frequency_ratio, Some(0.0));
    let by = |a: &str| report.peers.iter().find(|p| p.address == a).expect(a);
    let skewed = by("192.0.2.13");
    assert_eq!(skewed.state, PeerState::Falseticker);
    assert_eq!(skewed.kind, PeerKind::Server);
    assert_eq!(skewed.refid, "198.51.100.7");
    assert_eq!(skewed.stratum, Some(2));
    approx(skewed.offset_seconds, 11.500_033_407);
    approx(skewed.delay_seconds, 0.000_112_446);
    approx(skewed.jitter_seconds, 0.000_033_505);
    approx(skewed.dispersion_seconds, 0.937_521_521);
    approx(
        skewed.error_bound_seconds,
        (0.488 / 2.0 + 0.488 + 0.112_446 / 2.0 + 937.521_521 + 0.033_505) / 1e3,
    );
    assert_eq!(skewed.reachability_ratio, Some(0.125));
    assert_eq!(skewed.poll_interval_seconds, Some(8.0));
    assert_eq!(by("192.0.2.12").state, PeerState::Candidate);
    assert_eq!(by("192.0.2.11").state, PeerState::Selected);
    approx(by("192.0.2.11").offset_seconds, -0.000_000_929);
    assert_eq!(report.peers.len(), 3);
}

#[test]
fn captured_ntpd_families_include_ntpd_facts() {
    let fams = captured_reading().families(None);
    approx(
        value(&fams, &model::PEER_OFFSET, &["ntpd", "192.0.2.13"]),
        11.500_033_407,
    );
    assert_eq!(
        value(
            &fams,
            &model::PEER_STATE,
            &["ntpd", "192.0.2.13", "falseticker"]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &fams,
            &model::PEER_INFO,
            &["ntpd", "192.0.2.11", "server", "127.127.1.1"]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&fams, &PEER_SELECTION_CODE, &["192.0.2.11"]),
        Some(6.0)
    );
    assert_eq!(
        value(&fams, &PEER_REACH_REGISTER, &["192.0.2.12"]),
        Some(1.0)
    );
    assert_eq!(value(&fams, &PEER_HOST_MODE, &["192.0.2.13"]), Some(3.0));
    // Each reachable peer's leap indicator, from its `leap` variable.
    for peer in ["192.0.2.11", "192.0.2.12", "192.0.2.13"] {
        assert_eq!(
            value(&fams, &model::PEER_LEAP, &["ntpd", peer]),
            Some(0.0),
            "{peer}"
        );
    }
    assert_eq!(value(&fams, &INFO, &["ntpd ntpsec-1.2.2"]), Some(1.0));
    // No statistics in this capture: no counters.
    assert!(find(&fams, &CONTROL_REQUESTS).is_none());
    assert!(find(&fams, &model::SERVER_REQUESTS).is_none());
    assert_eq!(
        value(&fams, &model::SYNC_INFO, &["ntpd", "192.0.2.11"]),
        Some(1.0)
    );
    crate::collector::assert_declared(&REGISTRATION, &fams);
    crate::metrics::assert_no_duplicate_series(&fams);
}

#[test]
fn selection_codes_map_to_the_shared_vocabulary() {
    let expected = [
        (Selection::Reject, true, PeerState::Rejected),
        (Selection::Reject, false, PeerState::Unreachable),
        (Selection::Falsetick, true, PeerState::Falseticker),
        (Selection::Excess, true, PeerState::Excess),
        (Selection::Outlier, true, PeerState::Outlier),
        (Selection::Candidate, true, PeerState::Candidate),
        (Selection::Backup, true, PeerState::Backup),
        (Selection::SysPeer, true, PeerState::Selected),
        (Selection::PpsPeer, true, PeerState::Selected),
    ];
    for (sel, reachable, state) in expected {
        assert_eq!(peer_state(sel, reachable), state, "{sel:?} {reachable}");
    }
}

fn reading_of(status: u16, v: PeerVariables) -> PeerReading {
    PeerReading {
        assoc_id: AssocId(1),
        status: PeerStatus(status),
        variables: v,
    }
}

fn base(address: [u8; 4], refid: &str) -> PeerVariables {
    PeerVariables {
        address: Some(IpAddr::V4(Ipv4Addr::from(address))),
        refid: Some(refid.into()),
        host_mode: Some(3),
        stratum: Some(1),
        reach: Some(Reach(0o377)),
        host_poll: Some(Log2Seconds(6)),
        peer_poll: Some(Log2Seconds(10)),
        root_delay: Some(Millis(0.0)),
        root_dispersion: Some(Millis(0.0)),
        delay: Some(Millis(0.0)),
        offset: Some(Millis(-1.0)),
        jitter: Some(Millis(0.5)),
        dispersion: Some(Millis(1.0)),
        ..PeerVariables::default()
    }
}

#[test]
fn peers_that_are_not_remote_servers_are_labelled_by_what_they_are() {
    let reading = Reading {
        peers: vec![
            // The pool placeholder: not a source.
            reading_of(0x8011, base([0, 0, 0, 0], "POOL")),
            // Refclocks: labelled by refid; two with one refid stay apart.
            reading_of(0x9614, base([127, 127, 28, 0], "SHM")),
            reading_of(0x9414, base([127, 127, 28, 1], "SHM")),
            // The undisciplined local clock.
            reading_of(0x9314, base([127, 127, 1, 0], "LOCL")),
            // A symmetric peer and a pool-spawned server (not configured).
            reading_of(
                0x9414,
                PeerVariables {
                    host_mode: Some(1),
                    ..base([192, 0, 2, 40], "192.0.2.99")
                },
            ),
            reading_of(0x1414, base([192, 0, 2, 41], "192.0.2.99")),
            // Unreachable: state, and no stale measurements.
            reading_of(
                0x8011,
                PeerVariables {
                    reach: Some(Reach(0)),
                    ..base([192, 0, 2, 42], "INIT")
                },
            ),
        ],
        ..Reading::default()
    };
    let peers = reading.report(None).peers;
    let got: Vec<(&str, PeerKind, PeerState)> = peers
        .iter()
        .map(|p| (p.address.as_str(), p.kind, p.state))
        .collect();
    assert_eq!(
        got,
        [
            ("SHM", PeerKind::Refclock, PeerState::Selected),
            ("127.127.28.1", PeerKind::Refclock, PeerState::Candidate),
            ("LOCL", PeerKind::Local, PeerState::Outlier),
            ("192.0.2.40", PeerKind::Peer, PeerState::Candidate),
            ("192.0.2.41", PeerKind::Pool, PeerState::Candidate),
            ("192.0.2.42", PeerKind::Server, PeerState::Unreachable),
        ]
    );
    let unreachable = &peers[5];
    assert_eq!(unreachable.offset_seconds, None);
    assert_eq!(unreachable.delay_seconds, None);
    assert_eq!(unreachable.jitter_seconds, None);
    assert_eq!(unreachable.error_bound_seconds, None);
    assert_eq!(unreachable.dispersion_seconds, Some(0.001));
    assert_eq!(unreachable.reachability_ratio, Some(0.0));
    assert_eq!(peers[0].offset_seconds, Some(-0.001));
    // min(hpoll 6, ppoll 10): 64 s, as ntpq's poll column.
    assert_eq!(peers[0].poll_interval_seconds, Some(64.0));
}

#[test]
fn authentication_comes_from_the_status_word_and_the_key_id() {
    use crate::model::{AuthMode, PeerAuth};
    let nts = |cookies: i32| PeerVariables {
        key_id: Some(0),
        nts_cookies: Some(cookies),
        ..base([192, 0, 2, 50], "192.0.2.99")
    };
    let keyed = |key: u32| PeerVariables {
        key_id: Some(key),
        ..base([192, 0, 2, 50], "192.0.2.99")
    };
    let reading = Reading {
        peers: vec![
            // conf, authenb, auth, reach: a keyed server whose last packet was authentic.
            reading_of(0xf414, keyed(1)),
            // conf, authenb, reach, no auth: its replies no longer authenticate.
            reading_of(0xd414, keyed(1)),
            // No key at all.
            reading_of(0x9414, keyed(0)),
            // Reference ntpd's Autokey: a session key id above 65535.
            reading_of(0xf414, keyed(70_000)),
            // An ntpd that sends no keyid: the authenb bit alone.
            reading_of(0xd414, base([192, 0, 2, 50], "192.0.2.99")),
            // A refclock is not authenticated by NTP: nothing is said.
            reading_of(0x9614, base([127, 127, 28, 0], "SHM")),
            // NTPsec's NTS: authenb and auth with keyid 0; one that ran out
            // of cookies, and one whose key establishment fails.
            reading_of(0xf61a, nts(8)),
            reading_of(0xf414, nts(0)),
            reading_of(0xc011, nts(-1)),
        ],
        ..Reading::default()
    };
    let got: Vec<Option<PeerAuth>> = reading.report(None).peers.iter().map(|p| p.auth).collect();
    let auth = |mode, authenticated| {
        Some(PeerAuth {
            mode,
            authenticated,
        })
    };
    assert_eq!(
        got,
        [
            auth(AuthMode::SymmetricKey, true),
            auth(AuthMode::SymmetricKey, false),
            auth(AuthMode::None, false),
            auth(AuthMode::Autokey, true),
            auth(AuthMode::SymmetricKey, false),
            None,
            auth(AuthMode::Nts, true),
            auth(AuthMode::Nts, false),
            auth(AuthMode::Nts, false),
        ]
    );
    let families = reading.families(None);
    assert_eq!(
        value(&families, &super::PEER_NTS_COOKIES, &["192.0.2.50#7"]),
        Some(0.0)
    );
    assert_eq!(
        value(&families, &super::PEER_NTS_COOKIES, &["192.0.2.50#8"]),
        Some(-1.0)
    );
    assert_eq!(
        find(&families, &super::PEER_NTS_COOKIES).map(|f| f.samples.len()),
        Some(3)
    );
}

/// A peer's variables as parsed from what ntpd sent for `srcadr`.
fn from_srcadr(srcadr: &str, refid: &str) -> PeerVariables {
    let parsed = PeerVariables::from_variables(&Variables::parse(
        format!("srcadr={srcadr},refid={refid}").as_bytes(),
    ));
    PeerVariables {
        address: parsed.address,
        scope: parsed.scope,
        ..base([0, 0, 0, 1], refid)
    }
}

#[test]
fn no_two_peers_share_a_label_so_no_series_repeats() {
    let reading = Reading {
        peers: vec![
            // One link-local address on two interfaces: the zone tells them apart.
            reading_of(0x9614, from_srcadr("fe80::1%2", "192.0.2.99")),
            reading_of(0x9414, from_srcadr("fe80::1%3", "192.0.2.99")),
            reading_of(0x9414, from_srcadr("fe80::1%eth0", "192.0.2.99")),
            // The same address twice (a server line and a peer line, say).
            reading_of(0x9414, from_srcadr("192.0.2.40", "192.0.2.99")),
            reading_of(0x9414, from_srcadr("192.0.2.40", "192.0.2.99")),
            // Three refclocks with one refid: the pseudo-address, then a number.
            reading_of(0x9414, base([127, 127, 28, 0], "SHM")),
            reading_of(0x9414, base([127, 127, 28, 1], "SHM")),
            reading_of(0x9414, base([127, 127, 28, 1], "SHM")),
        ],
        ..Reading::default()
    };
    let labels: Vec<String> = reading
        .report(None)
        .peers
        .into_iter()
        .map(|p| p.address)
        .collect();
    assert_eq!(
        labels,
        [
            "fe80::1%2",
            "fe80::1%3",
            "fe80::1%eth0",
            "192.0.2.40",
            "192.0.2.40#2",
            "SHM",
            "127.127.28.1",
            "127.127.28.1#2",
        ]
    );
    let families = reading.families(None);
    crate::metrics::assert_no_duplicate_series(&families);
    assert_eq!(
        value(&families, &PEER_REACH_REGISTER, &["192.0.2.40#2"]),
        Some(255.0)
    );
    // A zone that is not an interface is not part of a label.
    assert_eq!(from_srcadr("fe80::1%a b", "x").scope, None);
    assert_eq!(
        from_srcadr("192.0.2.1%2", "x").scope,
        None,
        "IPv4 has no zones"
    );
}

#[test]
fn flags_build_the_collector_and_guard_remote_addresses() {
    let build_with = |args: &[&str]| {
        let (_, m) = crate::cli::parse_from(
            super::super::REGISTRY,
            std::iter::once("x").chain(args.iter().copied()),
        );
        (REGISTRATION.build)(&m, &Context::default())
    };
    assert!(build_with(&[]).is_ok());
    assert!(build_with(&["--collector.ntpd.address=[::1]:123"]).is_ok());
    let remote = build_with(&["--collector.ntpd.address=192.0.2.1:123"])
        .expect_err("remote needs the opt-in");
    assert!(remote.contains("--collector.ntpd.allow-remote"), "{remote}");
    assert!(
        build_with(&[
            "--collector.ntpd.address=192.0.2.1:123",
            "--collector.ntpd.allow-remote"
        ])
        .is_ok()
    );
    assert!(build_with(&["--collector.ntpd.timeout=0s"]).is_err());
    let (_, m) = crate::cli::parse_from(
        super::super::REGISTRY,
        ["x", "--collector.ntpd.timeout=250ms"],
    );
    assert_eq!(
        m.get_one::<Duration>("collector.ntpd.timeout"),
        Some(&Duration::from_millis(250))
    );
    let (_, m) = crate::cli::parse_from(super::super::REGISTRY, ["x"]);
    assert_eq!(
        m.get_one::<SocketAddr>("collector.ntpd.address"),
        Some(&"127.0.0.1:123".parse().expect("addr"))
    );
}

/// How a fake ntpd answers one request.
/// Arguments: the request's header and data, and who sent it.
type Behaviour = Arc<dyn Fn(&Header, &[u8], SocketAddr) -> Vec<Vec<u8>> + Send + Sync>;

/// A fake ntpd on 127.0.0.1: answers each request as `behaviour` says,
/// after `delay`. Counts the requests it got.
struct Fake {
    address: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn fake(delay: Duration, behaviour: Behaviour) -> Fake {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let address = socket.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let socket = Arc::new(socket);
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let Ok(req) = Header::parse(&buf[..n]) else {
                continue;
            };
            let data = buf[mode6::HEADER_LEN..mode6::HEADER_LEN + usize::from(req.count)].to_vec();
            let answers = behaviour(&req, &data, from);
            let socket = socket.clone();
            // Answer concurrently, as ntpd's kernel queue does: each reply
            // `delay` after its request.
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                for a in answers {
                    let _ = socket.send_to(&a, from).await;
                }
            });
        }
    });
    Fake {
        address,
        requests,
        task,
    }
}

fn replay() -> Behaviour {
    Arc::new(|req, data, _| captured_answer(req, data))
}

async fn collect(ntpd: &Arc<DaemonCollector<Ntpd>>) -> (Collected, Duration) {
    let start = Instant::now();
    let c = ntpd.clone().collect().await;
    (c, start.elapsed())
}

fn up(c: &Collected) -> Option<f64> {
    value(&c.families, &model::DAEMON_UP, &["ntpd"])
}

#[tokio::test]
async fn replayed_ntpd_gives_what_the_fixtures_say() {
    let f = fake(Duration::ZERO, replay()).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(2), false));
    let (c, _) = collect(&ntpd).await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(up(&c), Some(1.0));
    let mut expected = captured_reading().families(None);
    expected.push(model::up_family(Daemon::Ntpd, true));
    assert_eq!(c.families, expected);
    // READSTAT, system variables, two statistics requests, three peers'
    // variables and counters.
    assert_eq!(f.requests.load(Ordering::Relaxed), 10);
}

#[tokio::test]
async fn mangled_delivery_is_reassembled_and_strangers_are_ignored() {
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let behaviour: Behaviour = Arc::new(move |req, data, from| {
        // A forged, conflicting answer from another port reaches the
        // collector first; its connected socket never delivers it.
        let mut forged = captured_answer(req, data)[0].clone();
        let end = forged.len();
        forged[mode6::HEADER_LEN..end].fill(b'X');
        let _ = stranger.send_to(&forged, from);
        let mut answers = captured_answer(req, data);
        // Fragments reversed and the first duplicated...
        answers.reverse();
        answers.push(answers[answers.len() - 1].clone());
        // ...after an answer to another sequence number, an NTP packet, a
        // truncated fragment and plain garbage.
        let mut other = *req;
        other.sequence = Sequence(req.sequence.0.wrapping_add(1000));
        let mut wrong_seq = captured_answer(&other, data);
        let mut truncated = answers[0].clone();
        truncated.truncate(20);
        let mut noise = vec![
            wrong_seq.remove(0),
            vec![0x24; 48],
            truncated,
            b"garbage!".to_vec(),
        ];
        noise.extend(answers);
        noise
    });
    let f = fake(Duration::ZERO, behaviour).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(2), false));
    let (c, _) = collect(&ntpd).await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let mut expected = captured_reading().families(None);
    expected.push(model::up_family(Daemon::Ntpd, true));
    assert_eq!(c.families, expected);
}

/// The association list answer for `ids`, in fragments of ntpd's size.
fn association_list(req: &Header, ids: &[u16]) -> Vec<Vec<u8>> {
    let list: Vec<u8> = ids
        .iter()
        .flat_map(|id| [id.to_be_bytes(), 0x9414u16.to_be_bytes()].concat())
        .collect();
    let chunks: Vec<&[u8]> = list.chunks(mode6::MAX_DATA_LEN).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let h = Header {
                response: true,
                more: i + 1 < chunks.len(),
                offset: (i * mode6::MAX_DATA_LEN) as u16,
                count: chunk.len() as u16,
                ..*req
            };
            encode_datagram(&h, chunk)
        })
        .collect()
}

/// Answers as the captured ntpd does, but with association ids `ids`, each
/// association's variables those of the captured 17767.
fn with_associations(ids: Vec<u16>) -> Behaviour {
    Arc::new(move |req, data, _| {
        if req.opcode == Opcode::READ_STATUS {
            return association_list(req, &ids);
        }
        if req.assoc_id.0 >= 1000 {
            let mut as_a = *req;
            as_a.assoc_id = AssocId(17767);
            return captured_answer(&as_a, data)
                .iter()
                .map(|d| rewrite(d, req))
                .collect();
        }
        captured_answer(req, data)
    })
}

#[tokio::test]
async fn an_ntpd_with_more_associations_than_the_bound_is_read_up_to_it() {
    let f = fake(Duration::ZERO, with_associations((1000..1300).collect())).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(5), false));
    let (c, _) = collect(&ntpd).await;
    let messages: Vec<String> = c.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        ["protocol: ntpd has 300 associations; the exporter reads the first 256 and skips 44"]
    );
    // The list, the system variables, two statistics, then two per association read.
    assert_eq!(f.requests.load(Ordering::Relaxed), 4 + 2 * MAX_PEERS);
    let reach = find(&c.families, &PEER_REACH_REGISTER).expect("reach");
    assert_eq!(reach.samples.len(), MAX_PEERS);
    crate::metrics::assert_no_duplicate_series(&c.families);
    assert_eq!(up(&c), Some(1.0));
}

#[tokio::test]
async fn associations_are_pipelined_one_round_trip_for_all() {
    // 24 associations, each answer 150 ms after its request: one request at
    // a time would take 52 × 150 ms ≈ 7.8 s; pipelined it is two round
    // trips (the list, then every association's two requests at once).
    let behaviour = with_associations((1000..1024).collect());
    let f = fake(Duration::from_millis(150), behaviour).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(5), false));
    let (c, elapsed) = collect(&ntpd).await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    assert_eq!(f.requests.load(Ordering::Relaxed), 4 + 2 * 24);
    assert!(
        elapsed < Duration::from_secs(1),
        "two round trips of 150 ms, not 26: {elapsed:?}"
    );
    let reach = find(&c.families, &PEER_REACH_REGISTER).expect("reach");
    assert_eq!(reach.samples.len(), 24);
}

#[tokio::test]
async fn garbage_answers_are_absence_within_the_timeout_then_skipped() {
    let behaviour: Behaviour = Arc::new(|req, _, _| {
        let mut truncated = Header {
            response: true,
            count: 100,
            ..*req
        }
        .encode()
        .to_vec();
        truncated.extend_from_slice(b"short");
        vec![b"\x00\x01garbage".to_vec(), truncated]
    });
    let f = fake(Duration::ZERO, behaviour).await;
    let timeout = Duration::from_millis(400);
    let ntpd = Arc::new(collector(f.address, timeout, true));
    let (c, elapsed) = collect(&ntpd).await;
    assert!(elapsed >= timeout, "{elapsed:?}");
    assert!(elapsed < timeout * 2, "{elapsed:?}");
    assert_eq!(up(&c), Some(0.0), "explicit address: published");
    let [CollectError::NoData(why)] = c.errors.as_slice() else {
        panic!("{:?}", c.errors)
    };
    assert!(why.contains("no mode-6 answer"), "{why}");
    // Two for each of the four requests.
    assert!(why.contains("ignored 8 datagram(s)"), "{why}");
    assert!(why.contains("truncated: 9 bytes"), "{why}");
    // Known absent: the next scrape does not wait, nor ask.
    let asked = f.requests.load(Ordering::Relaxed);
    let (c, elapsed) = collect(&ntpd).await;
    assert!(elapsed < Duration::from_millis(50), "{elapsed:?}");
    assert_eq!(up(&c), Some(0.0));
    assert_eq!(f.requests.load(Ordering::Relaxed), asked);
}

#[tokio::test]
async fn a_closed_port_is_refused_at_once_and_unpublished_unless_configured() {
    let port = {
        let s = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        s.local_addr().expect("addr")
    };
    for explicit in [false, true] {
        let ntpd = Arc::new(collector(port, Duration::from_secs(5), explicit));
        let (c, elapsed) = collect(&ntpd).await;
        assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
        assert_eq!(up(&c), explicit.then_some(0.0));
        let [CollectError::NoData(why)] = c.errors.as_slice() else {
            panic!("{:?}", c.errors)
        };
        assert!(why.contains("refused"), "{why}");
        assert!(!c.errors[0].is_failure());
    }
}

#[tokio::test]
async fn a_daemon_that_comes_back_is_found_by_the_background_probe() {
    tokio::time::pause();
    let f = fake(Duration::ZERO, replay()).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(1), false));
    // Pretend it was absent a moment ago.
    ntpd.presence().record(Instant::now(), Err("test: absent"));
    let (c, _) = collect(&ntpd).await;
    assert_eq!(up(&c), None, "never seen, not configured");
    tokio::time::advance(MIN_BACKOFF).await;
    // Due: reported down now, probed in the background.
    let (c, _) = collect(&ntpd).await;
    assert!(c.families.is_empty());
    tokio::time::resume();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let (c, _) = collect(&ntpd).await;
        if up(&c) == Some(1.0) {
            assert!(c.errors.is_empty(), "{:?}", c.errors);
            break;
        }
        assert!(Instant::now() < deadline, "probe did not find the daemon");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn broken_answers_are_protocol_errors_and_vanished_peers_are_skipped() {
    // The association list comes as two overlapping fragments.
    let behaviour: Behaviour = Arc::new(|req, data, _| {
        if req.opcode != Opcode::READ_STATUS {
            return captured_answer(req, data);
        }
        let whole = Fragment::parse(READSTAT).expect("fixture");
        let first = Header {
            more: true,
            count: 8,
            ..whole.header
        };
        let second = Header {
            offset: 4,
            count: 8,
            ..whole.header
        };
        vec![
            rewrite(&encode_datagram(&first, &whole.data[..8]), req),
            rewrite(&encode_datagram(&second, &[9; 8]), req),
        ]
    });
    let f = fake(Duration::ZERO, behaviour).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(2), false));
    let (c, _) = collect(&ntpd).await;
    assert_eq!(up(&c), Some(1.0), "it answered");
    let [CollectError::Protocol(why)] = c.errors.as_slice() else {
        panic!("{:?}", c.errors)
    };
    assert!(why.contains("overlaps"), "{why}");

    // A peer that vanished between the list and its variables (BADASSOC)
    // is left out without an error; other errors are reported.
    let behaviour: Behaviour = Arc::new(|req, data, _| match req.assoc_id.0 {
        17768 => vec![rewrite(BAD_ASSOCIATION, req)],
        17769 => {
            let mut e = Header::parse(BAD_ASSOCIATION).expect("fixture");
            e.status = 0x0100;
            vec![rewrite(&e.encode(), req)]
        }
        _ => captured_answer(req, data),
    });
    let f = fake(Duration::ZERO, behaviour).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(2), false));
    let (c, _) = collect(&ntpd).await;
    let state = find(&c.families, &model::PEER_STATE).expect("states");
    assert_eq!(state.samples.len(), 8, "only 192.0.2.11 is left");
    let [
        CollectError::Protocol(vars),
        CollectError::Protocol(counters),
    ] = c.errors.as_slice()
    else {
        panic!("{:?}", c.errors)
    };
    assert_eq!(
        vars,
        "association 17769: ntpd answered with an error: permission denied"
    );
    assert_eq!(
        counters,
        "association 17769 counters: ntpd answered with an error: permission denied"
    );
}

#[test]
fn captured_served_ntpd_counts_its_five_client_requests() {
    let reading = served_reading();
    let sample = reading.served_sample().expect("every counter answered");
    // ss_processed_r 82 − (ss_numctlreq 73 − 1) − received 5 = 5: the
    // five requests the lab's client sent.
    assert_eq!(
        sample,
        Sample {
            uptime: 10,
            system: SystemCounts::Ntpsec {
                processed: 82,
                control_requests: 73,
            },
            received: [(17767, 5)].into_iter().collect(),
        }
    );
    let mut state = Served::default();
    assert_eq!(state.update(sample), (5, served::Event::First));
    // NTPsec counts ss_thisver where ntpd classic does (after control
    // requests leave): ntpd classic's formula finds the same five in it.
    let classic = Reading {
        stats: SystemStats {
            processed_total: None,
            ..reading.stats
        },
        ..reading.clone()
    };
    let sample = classic.served_sample().expect("classic counters");
    assert!(matches!(sample.system, SystemCounts::Classic { .. }));
    assert_eq!(Served::default().update(sample).0, 5);
    let fams = reading.families(Some(5));
    assert_eq!(value(&fams, &model::SERVER_REQUESTS, &["ntpd"]), Some(5.0));
    assert_eq!(value(&fams, &CONTROL_REQUESTS, &[]), Some(73.0));
    assert_eq!(
        value(
            &fams,
            &model::PEER_STATE,
            &["ntpd", "192.0.2.11", "selected"]
        ),
        Some(1.0)
    );
}

#[test]
fn refclocks_and_missing_counters_are_not_summed() {
    let counters = |list: &[(u16, &str, Option<u64>)]| {
        Some(
            list.iter()
                .map(|&(id, a, received)| {
                    (
                        AssocId(id),
                        PeerCounters {
                            address: a.parse().ok(),
                            received,
                        },
                    )
                })
                .collect(),
        )
    };
    let mut reading = served_reading();
    // A refclock's samples count in its `received` without passing
    // receive(): left out. An address ntpd wrote otherwise still counts.
    reading.counters = counters(&[
        (1, "192.0.2.11", Some(5)),
        (2, "127.127.28.0", Some(1000)),
        (3, "not-an-address", Some(2)),
    ]);
    let sample = reading.served_sample().expect("sample");
    assert_eq!(
        sample.received,
        [(1, 5), (3, 2)]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>()
    );
    // A counter missing, or one association not answering: no sample.
    reading.counters = counters(&[(1, "192.0.2.11", None)]);
    assert_eq!(reading.served_sample(), None);
    reading.counters = None;
    assert_eq!(reading.served_sample(), None);
    // Statistics missing: none either.
    let mut reading = served_reading();
    reading.stats.uptime = None;
    assert_eq!(reading.served_sample(), None);
}

#[tokio::test]
async fn replayed_served_ntpd_publishes_its_clients_and_keeps_the_count() {
    let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let refusing = refuse.clone();
    let behaviour: Behaviour = Arc::new(move |req, data, _| {
        if refusing.load(Ordering::Relaxed) && data == PeerCounters::QUERY.as_bytes() {
            let mut e = Header::parse(BAD_ASSOCIATION).expect("fixture");
            e.status = 0x0100;
            return vec![rewrite(&e.encode(), req)];
        }
        served_answer(req, data)
    });
    let f = fake(Duration::ZERO, behaviour).await;
    let ntpd = Arc::new(collector(f.address, Duration::from_secs(2), false));
    let (c, _) = collect(&ntpd).await;
    assert!(c.errors.is_empty(), "{:?}", c.errors);
    let mut expected = served_reading().families(Some(5));
    expected.push(model::up_family(Daemon::Ntpd, true));
    assert_eq!(c.families, expected);
    // READSTAT, system variables, two statistics requests, the upstream
    // server's variables and counters.
    assert_eq!(f.requests.load(Ordering::Relaxed), 6);
    // The same counters again: nothing new.
    let (c, _) = collect(&ntpd).await;
    assert_eq!(
        value(&c.families, &model::SERVER_REQUESTS, &["ntpd"]),
        Some(5.0)
    );
    // A counter refused: said, and the last count kept.
    refuse.store(true, Ordering::Relaxed);
    let (c, _) = collect(&ntpd).await;
    assert_eq!(
        value(&c.families, &model::SERVER_REQUESTS, &["ntpd"]),
        Some(5.0)
    );
    let [CollectError::Protocol(why)] = c.errors.as_slice() else {
        panic!("{:?}", c.errors)
    };
    assert!(why.starts_with("association 17767 counters:"), "{why}");
}

#[test]
fn a_server_on_its_local_clock_names_it_as_its_reference() {
    // peer:clock_peer_free_running:bool knows a server serves its own clock
    // when clock_sync_info's reference is the `peer` label of its local
    // clock: ntpd's sys.peer is the LOCAL driver, labelled by its refid.
    let reading = Reading {
        system: Some(SystemVariables::from_variables(&Variables::parse(
            // A refid other than the peer's, so that the reference can
            // only come from the sys.peer association.
            b"leap=00, stratum=11, refid=X, peer=7",
        ))),
        peers: vec![
            PeerReading {
                assoc_id: AssocId(7),
                // sys.peer (selection 6), reachable.
                status: PeerStatus(0x9614),
                variables: base([127, 127, 1, 0], "LOCL"),
            },
            PeerReading {
                assoc_id: AssocId(8),
                status: PeerStatus(0x8011),
                variables: PeerVariables {
                    reach: Some(Reach(0)),
                    ..base([192, 0, 2, 42], "INIT")
                },
            },
        ],
        ..Reading::default()
    };
    let r = reading.report(None);
    let local = &r.peers[0];
    assert_eq!(
        (local.address.as_str(), local.kind, local.state),
        ("LOCL", PeerKind::Local, PeerState::Selected)
    );
    assert_eq!(r.sync.expect("system variables").reference, local.address);
}
