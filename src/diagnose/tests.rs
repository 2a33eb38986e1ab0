//! Every finding from literal model values, and the three renderings.
#![allow(clippy::many_single_char_names)]

use super::findings::{Limits, Severity, Verdict, verdict};
use super::render;
use crate::collector::{clocksource, kmsg, rate, timex};
use crate::metrics::{Family, labels};
use crate::model::{Daemon, DaemonReport, Peer, PeerKind, PeerState, SyncStatus, up_family};

const NOW: f64 = 1_764_633_600.0;

fn peer(address: &str, state: PeerState, offset: f64) -> Peer {
    Peer {
        address: address.into(),
        kind: PeerKind::Server,
        refid: "192.0.2.1".into(),
        state,
        stratum: Some(2),
        offset_seconds: Some(offset),
        delay_seconds: Some(0.000_2),
        jitter_seconds: Some(0.000_05),
        dispersion_seconds: Some(0.000_1),
        error_bound_seconds: Some(0.001),
        reachability_ratio: Some(1.0),
        poll_interval_seconds: Some(64.0),
        leap: Some(0),
        auth: None,
    }
}

fn sync(reference: &str, offset: f64) -> SyncStatus {
    SyncStatus {
        offset_seconds: Some(offset),
        stratum: Some(3),
        leap: Some(0),
        root_delay_seconds: Some(0.000_4),
        root_dispersion_seconds: Some(0.000_6),
        frequency_ratio: Some(-1.2e-5),
        frequency_wander_ratio: Some(2e-9),
        jitter_seconds: Some(0.000_03),
        poll_interval_seconds: Some(64.0),
        reference: reference.into(),
    }
}

fn daemon(daemon: Daemon, sync: SyncStatus, peers: Vec<Peer>) -> Vec<Family> {
    let report = DaemonReport {
        daemon,
        sync: Some(sync),
        peers,
        server_requests_total: None,
    };
    let mut f = report.families();
    f.push(up_family(daemon, true));
    f
}

/// A KVM guest on tsc with a kernel the daemon disciplines.
fn host(clocksource_name: &'static str) -> Vec<Family> {
    vec![
        clocksource::CURRENT
            .family()
            .with(labels!["clocksource0", clocksource_name], 1.0),
        clocksource::VIRTUALIZATION
            .family()
            .with(labels!["kvm", "cpuid"], 1.0),
        timex::MAXERROR.single(0.002),
        timex::STATUS_FLAG
            .family()
            .with(labels!["STA_PLL"], 1.0)
            .with(labels!["STA_UNSYNC"], 0.0),
    ]
}

fn judged(families: &[Family]) -> Verdict {
    verdict(families, NOW, &Limits::default())
}

fn codes(v: &Verdict) -> Vec<&'static str> {
    v.findings.iter().map(|f| f.code).collect()
}

fn healthy() -> Vec<Family> {
    let mut f = host("tsc");
    f.extend(daemon(
        Daemon::Chronyd,
        sync("192.0.2.11", 0.000_02),
        vec![
            peer("192.0.2.11", PeerState::Selected, 0.000_02),
            peer("192.0.2.12", PeerState::Candidate, -0.000_05),
            peer("192.0.2.13", PeerState::Candidate, 0.000_1),
        ],
    ));
    f
}

#[test]
fn a_healthy_host_is_trusted() {
    let v = judged(&healthy());
    assert_eq!(codes(&v), Vec::<&str>::new());
    assert_eq!(v.status, Severity::Ok);
    assert_eq!(render::exit_code(&v), 0);
    assert_eq!(render::trust(&v), "trusted");
    let d = v.daemon.as_ref().expect("chronyd");
    assert_eq!(
        (d.daemon.as_str(), d.reference.as_str()),
        ("chronyd", "192.0.2.11")
    );
    assert_eq!(d.usable_sources, Some(3.0));
    assert_eq!(d.peers.len(), 3);
    let n = render::nagios(&v, &Limits::default());
    assert!(
        n.starts_with("CLOCK OK - chronyd synchronised to 192.0.2.11"),
        "{n}"
    );
    assert!(n.contains("| offset=0.00002s;; "), "{n}");
    assert!(n.contains("sources=3;3:;1:"), "{n}");
    assert_eq!(n.lines().count(), 1, "no findings, no long output: {n}");
}

#[test]
fn a_falseticker_is_named_with_its_offset() {
    let mut f = host("tsc");
    f.extend(daemon(
        Daemon::Ntpd,
        sync("192.0.2.11", 0.000_02),
        vec![
            peer("192.0.2.11", PeerState::Selected, 0.000_02),
            peer("192.0.2.12", PeerState::Falseticker, 11.5),
            peer("192.0.2.13", PeerState::Candidate, 0.000_1),
        ],
    ));
    let v = judged(&f);
    assert_eq!(v.status, Severity::Warning);
    assert!(
        codes(&v).contains(&"ClockPeerFalseticker"),
        "{:?}",
        codes(&v)
    );
    assert!(codes(&v).contains(&"ClockPeersDisagree"), "{:?}", codes(&v));
    let ft = v
        .findings
        .iter()
        .find(|f| f.code == "ClockPeerFalseticker")
        .expect("found");
    assert!(
        ft.summary.contains("192.0.2.12") && ft.summary.contains("11.500 s"),
        "{}",
        ft.summary
    );
    assert_eq!(render::exit_code(&v), 1);
    let n = render::nagios(&v, &Limits::default());
    assert!(n.starts_with("CLOCK WARNING - "), "{n}");
    assert!(
        n.lines().next().expect("line").contains("192.0.2.12"),
        "{n}"
    );
}

#[test]
fn no_majority_says_why_the_offset_is_unknown() {
    // Two servers 11.5 s apart: chronyd keeps neither.
    let mut f = host("tsc");
    let mut s = sync("", 0.0);
    s.leap = Some(3);
    f.extend(daemon(
        Daemon::Chronyd,
        s,
        vec![
            peer("192.0.2.12", PeerState::Falseticker, 11.5),
            peer("192.0.2.13", PeerState::Falseticker, 0.000_1),
        ],
    ));
    let v = judged(&f);
    assert_eq!(v.status, Severity::Critical);
    assert_eq!(codes(&v)[0], "ClockNoUsableSource");
    let c = &v.findings[0];
    assert!(c.summary.contains("offset is unknown"), "{}", c.summary);
    assert!(
        c.summary.contains("192.0.2.12 falseticker")
            && c.summary.contains("192.0.2.13 falseticker"),
        "{}",
        c.summary
    );
    assert!(c.summary.contains("spread over 11.500 s"), "{}", c.summary);
    assert!(codes(&v).contains(&"ClockNotSynchronising"));
    // No falseticker finding per peer without a majority: the one finding says it.
    assert!(!codes(&v).contains(&"ClockPeerFalseticker"));
    assert_eq!(render::exit_code(&v), 2);
    let n = render::nagios(&v, &Limits::default());
    assert!(
        n.starts_with("CLOCK CRITICAL - chronyd has no usable source, so its offset is unknown"),
        "{n}"
    );
}

#[test]
fn a_host_following_its_own_free_running_clock() {
    let mut f = host("tsc");
    let mut local = peer("LOCAL", PeerState::Selected, 0.0);
    local.kind = PeerKind::Local;
    f.extend(daemon(Daemon::Chronyd, sync("LOCAL", 0.0), vec![local]));
    let v = judged(&f);
    assert!(
        codes(&v).contains(&"ClockSourceFreeRunning"),
        "{:?}",
        codes(&v)
    );
    // A local clock bounds no error: as ClockNoUsableSource judges it
    // (hosts meant to run so set the target label clock_min_sources="0").
    assert_eq!(codes(&v)[0], "ClockNoUsableSource");
    assert_eq!(v.status, Severity::Critical);
}

#[test]
fn a_kvm_clock_ntp_server_gets_the_advice_with_its_caveats() {
    let mut f = host("kvm-clock");
    let mut report = DaemonReport {
        daemon: Daemon::Ntpd,
        sync: Some(sync("192.0.2.11", 0.000_02)),
        peers: vec![
            peer("192.0.2.11", PeerState::Selected, 0.000_02),
            peer("192.0.2.12", PeerState::Candidate, 0.000_03),
            peer("192.0.2.13", PeerState::Candidate, 0.000_1),
        ],
        server_requests_total: Some(1200),
    };
    f.extend(report.families());
    f.push(up_family(Daemon::Ntpd, true));
    let v = judged(&f);
    let k = v
        .findings
        .iter()
        .find(|f| f.code == "ClockNtpServerOnKvmClock")
        .expect("found");
    assert_eq!(k.severity, Severity::Info);
    for caveat in [
        "no-kvmclock no-kvmclock-vsyscall",
        "acpi_pm",
        "ptp_kvm",
        "3 or 4 sources",
        "5.5",
    ] {
        assert!(k.advice.contains(caveat), "{caveat}: {}", k.advice);
    }
    assert_eq!(
        v.status,
        Severity::Ok,
        "information alone leaves it trusted"
    );
    // Not serving: the same fact under another code.
    report.server_requests_total = None;
    let mut g = host("kvm-clock");
    g.extend(report.families());
    g.push(up_family(Daemon::Ntpd, true));
    assert!(codes(&judged(&g)).contains(&"kvm_clock"));
    // The rate probe measured the coupling, and the kernel log holds a demotion.
    f.push(rate::RESIDUAL.family().with(labels!["kvm-clock"], 0.009));
    f.push(rate::WINDOW.family().with(labels!["kvm-clock"], 900.0));
    f.push(rate::STEPS.family().with(labels!["kvm-clock"], 3.0));
    f.push(
        kmsg::LAST_UNSTABLE
            .family()
            .with(labels!["tsc"], NOW - 3600.0),
    );
    f.push(kmsg::UNSTABLE.family().with(labels!["hpet"], 0.0));
    let v = judged(&f);
    assert!(
        codes(&v).contains(&"ClockSourceSteppedAgainstTsc"),
        "{:?}",
        codes(&v)
    );
    assert!(
        codes(&v).contains(&"ClockSourceMarkedUnstable"),
        "{:?}",
        codes(&v)
    );
    assert_eq!(v.status, Severity::Warning);
}

#[test]
fn an_undisciplined_kernel() {
    let mut f = healthy();
    f.retain(|f| {
        !std::ptr::eq(f.desc, &timex::MAXERROR) && !std::ptr::eq(f.desc, &timex::STATUS_FLAG)
    });
    f.push(timex::MAXERROR.single(16.0));
    f.push(timex::STATUS_FLAG.family().with(labels!["STA_UNSYNC"], 1.0));
    let v = judged(&f);
    assert_eq!(codes(&v), ["ClockKernelFreeRunning"]);
    f.retain(|f| !std::ptr::eq(f.desc, &timex::MAXERROR));
    f.push(timex::MAXERROR.single(3.0));
    assert_eq!(codes(&judged(&f)), ["ClockKernelNotSynchronising"]);
}

#[test]
fn no_daemon_is_unknown_not_ok() {
    let mut f = host("tsc");
    f.push(up_family(Daemon::Ntpd, false));
    let v = judged(&f);
    assert_eq!(codes(&v), ["ClockNoDaemon"]);
    assert!(!v.judged);
    assert_eq!(render::exit_code(&v), 3);
    assert_eq!(render::trust(&v), "unknown");
    let n = render::nagios(&v, &Limits::default());
    assert!(
        n.starts_with("CLOCK UNKNOWN - No time daemon answers"),
        "{n}"
    );
    assert!(!n.contains(" | "), "no perfdata without a daemon: {n}");
}

#[test]
fn limits_as_check_ntp_peer_takes_them() {
    let mut f = healthy();
    let v = verdict(
        &f,
        NOW,
        &Limits {
            stratum: (Some(2.0), Some(5.0)),
            jitter: (Some(0.000_01), None),
            ..Limits::default()
        },
    );
    assert!(
        codes(&v).contains(&"stratum") && codes(&v).contains(&"jitter"),
        "{:?}",
        codes(&v)
    );
    // The worst-case error beyond the critical limit.
    f = daemon(
        Daemon::Chronyd,
        sync("192.0.2.11", 0.2),
        vec![
            peer("192.0.2.11", PeerState::Selected, 0.2),
            peer("192.0.2.12", PeerState::Candidate, 0.2),
            peer("192.0.2.13", PeerState::Candidate, 0.2),
        ],
    );
    let v = judged(&f);
    assert_eq!(v.status, Severity::Critical);
    assert_eq!(codes(&v), ["ClockOffsetTooLarge"]);
}

#[test]
fn the_json_schema_holds_its_fields() {
    let v = judged(&healthy());
    let doc: serde_json::Value = serde_json::from_str(&render::json(&v)).expect("json");
    assert_eq!(doc["schema_version"], 1);
    assert_eq!(doc["status"], "OK");
    assert_eq!(doc["trust"], "trusted");
    assert_eq!(doc["daemon"]["daemon"], "chronyd");
    assert_eq!(doc["daemon"]["peers"][0]["peer"], "192.0.2.11");
    assert_eq!(doc["daemon"]["peers"][0]["state"], "selected");
    assert_eq!(doc["clocksource"], "tsc");
    assert!(doc["findings"].as_array().expect("array").is_empty());
}

#[test]
fn a_failing_collector_is_a_finding() {
    let mut f = healthy();
    f.push(
        crate::scrape::SUCCESS
            .family()
            .with(labels!["chrony"], 1.0)
            .with(labels!["ntpd"], 0.0),
    );
    assert_eq!(codes(&judged(&f)), ["ClockCollectorFailing"]);
}

#[test]
fn the_rate_probe_is_shown_where_it_has_a_window() {
    let mut f = healthy();
    assert_eq!(judged(&f).rate, None);
    for (d, value) in [
        (&rate::WINDOW, 12.0),
        (&rate::TSC_FREQUENCY, 2_596_098_123.0),
        (&rate::MONOTONIC_RATIO, 12.5e-6),
        (&rate::RESIDUAL, 2e-7),
    ] {
        f.push(d.family().with(labels!["tsc"], value));
    }
    let v = judged(&f);
    let r = v.rate.as_ref().expect("a window");
    assert_eq!((r.clocksource.as_str(), r.window), ("tsc", 12.0));
    assert_eq!(r.tsc_hz, Some(2_596_098_123.0));
    let text = render::text(&v);
    assert!(
        text.contains("Rate probe (12 s on tsc): TSC at 2596.098123 MHz as CLOCK_MONOTONIC_RAW sees it; CLOCK_MONOTONIC runs +12.500 ppm against RAW"),
        "{text}"
    );
    let doc: serde_json::Value = serde_json::from_str(&render::json(&v)).expect("json");
    assert_eq!(doc["rate"]["tsc_frequency_hertz"], 2_596_098_123.0);
    assert_eq!(doc["rate"]["window_seconds"], 12.0);
    // A short window judges no steps: the finding needs 300 s.
    assert!(!codes(&v).contains(&"ClockSourceSteppedAgainstTsc"));
}

#[test]
fn a_timesyncd_host_is_trusted_with_a_note_on_its_one_server() {
    let mut f = host("tsc");
    f.extend(daemon(
        Daemon::Timesyncd,
        sync("192.0.2.11", 0.000_02),
        vec![peer("192.0.2.11", PeerState::Selected, 0.000_02)],
    ));
    let v = judged(&f);
    assert_eq!(codes(&v), ["ClockSingleSourceDaemon"], "{:?}", v.findings);
    assert_eq!(v.status, Severity::Ok, "a note, not a problem");
    assert_eq!(render::exit_code(&v), 0);
    // A chronyd with one source is warned instead.
    let mut f = host("tsc");
    f.extend(daemon(
        Daemon::Chronyd,
        sync("192.0.2.11", 0.000_02),
        vec![peer("192.0.2.11", PeerState::Selected, 0.000_02)],
    ));
    assert_eq!(codes(&judged(&f)), ["ClockTooFewSources"]);
}

#[test]
fn a_source_whose_authentication_fails_is_named() {
    use crate::model::{AuthMode, PeerAuth};
    let auth = |mode, authenticated| {
        Some(PeerAuth {
            mode,
            authenticated,
        })
    };
    let mut f = host("tsc");
    f.extend(daemon(
        Daemon::Chronyd,
        sync("192.0.2.11", 0.000_02),
        vec![
            Peer {
                auth: auth(AuthMode::Nts, true),
                ..peer("192.0.2.11", PeerState::Selected, 0.000_02)
            },
            Peer {
                auth: auth(AuthMode::None, false),
                ..peer("192.0.2.12", PeerState::Candidate, -0.000_05)
            },
            Peer {
                auth: auth(AuthMode::Nts, false),
                ..peer("192.0.2.13", PeerState::Candidate, 0.000_1)
            },
        ],
    ));
    let v = judged(&f);
    assert_eq!(codes(&v), ["ClockPeerAuthenticationFailing"]);
    assert!(
        v.findings[0].summary.contains("192.0.2.13 (nts)"),
        "{:?}",
        v.findings[0]
    );
    assert_eq!(v.status, Severity::Warning);
}

#[test]
fn a_rogue_leap_flag_is_named_only_against_a_majority() {
    let leaping = |addr: &str, state, leap| Peer {
        leap: Some(leap),
        ..peer(addr, state, 0.0)
    };
    let mut three = host("tsc");
    three.extend(daemon(
        Daemon::Ntpd,
        sync("192.0.2.11", 0.000_02),
        vec![
            leaping("192.0.2.11", PeerState::Selected, 0),
            leaping("192.0.2.12", PeerState::Candidate, 0),
            leaping("192.0.2.78", PeerState::Candidate, 1),
        ],
    ));
    let v = judged(&three);
    assert_eq!(codes(&v), ["ClockPeerRogueLeap"]);
    assert!(
        v.findings[0]
            .summary
            .starts_with("192.0.2.78, a source of ntpd, announces a leap second (insert)"),
        "{:?}",
        v.findings[0]
    );
    // One of two: no majority to judge by (left to ClockLeapAnnounced).
    let mut two = host("tsc");
    two.extend(daemon(
        Daemon::Ntpd,
        sync("192.0.2.11", 0.000_02),
        vec![
            leaping("192.0.2.11", PeerState::Selected, 0),
            leaping("192.0.2.78", PeerState::Candidate, 2),
        ],
    ));
    assert!(!codes(&judged(&two)).contains(&"ClockPeerRogueLeap"));
}
