//! The timesyncd collector against a real systemd-timesyncd (unpacked, on a
//! private bus, unable to set the clock) in the lab, cross-checked with
//! systemd's own busctl; and against a process that owns timesyncd's name
//! on a private bus but answers with the wrong types.
//!
//! All namespaces share this machine's clock, so the truth is known: the
//! honest server's clock minus the client's is 0, the skewed one's +11.5 s.

mod common;

use std::time::Duration;

use common::lab::{self, Daemon, DbusDaemon, Exporter, Lab, only_collectors, sample, wait_for};

const UP: &str = r#"clock_daemon_up{daemon="timesyncd"}"#;
const SYNCED: &str = "clock_timesyncd_synchronized";
const SUCCESS: &str = r#"clock_scrape_collector_success{collector="timesyncd"}"#;

/// The flags of an exporter with timesyncd's and timex's collectors only,
/// on `bus`.
fn flags(bus: &DbusDaemon) -> Vec<String> {
    let mut flags = only_collectors(&["timesyncd", "timex"]);
    flags.push(bus.timesyncd_flag());
    flags
}

/// That exporter beside the lab's timesyncd.
fn exporter(lab: &Lab) -> Exporter {
    let flags = flags(lab.bus());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    lab.exporter(&flags)
}

/// NTPMessage as busctl prints it: `(uuuuittayttttbtt) leap version mode
/// stratum precision root-delay root-dispersion 4 r e f id T1 T2 T3 T4
/// spike packets jitter`.
#[derive(Debug, PartialEq)]
struct Message {
    stratum: u64,
    root_delay_us: u64,
    root_dispersion_us: u64,
    t: [u64; 4],
    packets: u64,
}

fn busctl_message(lab: &Lab) -> Message {
    let out = lab.bus().busctl(&[
        "get-property",
        "org.freedesktop.timesync1",
        "/org/freedesktop/timesync1",
        "org.freedesktop.timesync1.Manager",
        "NTPMessage",
    ]);
    let w: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(w.len(), 20, "{out}");
    assert_eq!(w[0], "(uuuuittayttttbtt)", "{out}");
    let n = |i: usize| -> u64 { w[i].parse().unwrap_or_else(|e| panic!("{out}: {e}")) };
    Message {
        stratum: n(4),
        root_delay_us: n(6),
        root_dispersion_us: n(7),
        t: [n(13), n(14), n(15), n(16)],
        packets: n(18),
    }
}

/// The body of timesyncd's GetAll answer, as the bus delivered it.
fn get_all_body(address: &str) -> Vec<u8> {
    tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async {
            let c = zbus::connection::Builder::address(address)
                .expect("address")
                .build()
                .await
                .expect("connect");
            let reply = c
                .call_method(
                    Some("org.freedesktop.timesync1"),
                    "/org/freedesktop/timesync1",
                    Some("org.freedesktop.DBus.Properties"),
                    "GetAll",
                    &("org.freedesktop.timesync1.Manager",),
                )
                .await
                .expect("GetAll");
            assert!(
                matches!(
                    reply.header().primary().endian_sig(),
                    zbus::message::EndianSig::Little
                ),
                "the fixture is little-endian"
            );
            reply.body().data().to_vec()
        })
}

/// Scrapes until timesyncd has a reply and the exporter calls it
/// synchronised; then the reply busctl sees and the scrape, of one message.
fn synchronised(lab: &Lab, exporter: &Exporter) -> (Message, String) {
    wait_for("timesyncd synchronised", Duration::from_secs(40), || {
        let before = busctl_message(lab);
        let body = exporter.scrape();
        let after = busctl_message(lab);
        (before == after && before.packets > 0 && sample(&body, SYNCED) == Some(1.0))
            .then_some((after, body))
    })
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn honest_server_is_synchronised_and_agrees_with_busctl() {
    let lab = Lab::builder().client(Daemon::Timesyncd).honest("a").build();
    let exporter = exporter(&lab);
    let (m, body) = synchronised(&lab, &exporter);
    let a = lab.addr("a").to_string();
    let peer = |name: &str| {
        sample(
            &body,
            &format!(r#"{name}{{daemon="timesyncd",peer="{a}"}}"#),
        )
    };

    // θ and δ from busctl's own four timestamps.
    let [t1, t2, t3, t4] = m.t.map(i128::from);
    let theta = ((t2 - t1) + (t3 - t4)) as f64 / 2e6;
    let delta = ((t4 - t1) - (t3 - t2)) as f64 * 1e-6;
    let offset = peer("clock_peer_offset_seconds").expect("offset");
    assert!(
        (offset - theta).abs() < 1e-6,
        "{offset} vs busctl's {theta}"
    );
    assert!(
        offset.abs() < 0.01,
        "the honest server shares this clock: {offset}"
    );
    let delay = peer("clock_peer_delay_seconds").expect("delay");
    assert!((delay - delta).abs() < 1e-6, "{delay} vs {delta}");
    assert_eq!(peer("clock_peer_stratum"), Some(m.stratum as f64), "{body}");
    assert_eq!(peer("clock_peer_state_code"), Some(1.0), "selected: {body}");
    let d = r#"{daemon="timesyncd"}"#;
    assert_eq!(
        sample(&body, &format!("clock_sync_stratum{d}")),
        Some(m.stratum as f64 + 1.0)
    );
    assert_eq!(sample(&body, &format!("clock_sync_leap{d}")), Some(0.0));
    assert_eq!(
        sample(&body, &format!("clock_sync_usable_sources{d}")),
        Some(1.0)
    );
    // The server's own root delay and dispersion (a chronyd that has just
    // synchronised announces a dispersion near a second), grown by 15 ppm
    // of the reply's age, and the path's delay: the daemon's bound.
    let sync = |name: &str| {
        sample(&body, &format!("{name}{d}")).unwrap_or_else(|| panic!("{name}:\n{body}"))
    };
    let age = sample(&body, "clock_timesyncd_last_message_age_seconds").expect("age");
    let root_delay = sync("clock_sync_root_delay_seconds");
    assert!((root_delay - (m.root_delay_us as f64 * 1e-6 + delta)).abs() < 1e-6);
    let root_dispersion = sync("clock_sync_root_dispersion_seconds");
    let grown = root_dispersion - m.root_dispersion_us as f64 * 1e-6;
    assert!((grown - 15e-6 * age).abs() < 1e-6, "{grown} after {age} s");
    let wce = sync("clock_sync_worst_case_error_seconds");
    let expected = offset.abs() + root_dispersion + root_delay / 2.0;
    assert!((wce - expected).abs() < 1e-9, "{wce} vs {expected}");
    assert_eq!(sample(&body, UP), Some(1.0));
    assert_eq!(
        sample(&body, "clock_timesyncd_packets_total"),
        Some(m.packets as f64)
    );
    assert_eq!(
        sample(
            &body,
            &format!(r#"clock_timesyncd_server_info{{name="{a}",address="{a}"}}"#)
        ),
        Some(1.0),
        "{body}"
    );
    // The same answer as raw D-Bus bytes: what the fuzz target feeds (and,
    // with UPDATE_FIXTURES=1, the fixture its corpus starts from).
    let raw = get_all_body(&lab.bus().address());
    clock_exporter::testing::fuzz::timesyncd(&raw);
    if std::env::var_os("UPDATE_FIXTURES").is_some() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dbus");
        std::fs::create_dir_all(&dir).expect("fixtures dir");
        std::fs::write(dir.join("timesyncd-getall.bin"), &raw).expect("write fixture");
    }
    // PollIntervalMinSec=16 in the lab.
    assert!(
        sample(&body, &format!("clock_sync_poll_interval_seconds{d}")).is_some_and(|p| p >= 16.0),
        "{body}"
    );
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn skewed_server_gives_its_offset_and_a_stopped_timesyncd_is_down() {
    let mut lab = Lab::builder()
        .client(Daemon::Timesyncd)
        .skewed("b", 11.5)
        .build();
    let exporter = exporter(&lab);
    let (_, body) = synchronised(&lab, &exporter);
    let b = lab.addr("b");
    let offset = sample(
        &body,
        &format!(r#"clock_peer_offset_seconds{{daemon="timesyncd",peer="{b}"}}"#),
    )
    .expect("offset");
    assert!(
        (offset - 11.5).abs() < 0.01,
        "θ: the server is ahead: {offset}"
    );
    let sync = sample(&body, r#"clock_sync_offset_seconds{daemon="timesyncd"}"#).expect("sync");
    assert!((sync - 11.5).abs() < 0.01, "{sync}");
    let log = lab.timesyncd_log();
    assert!(
        log.contains("Operation not permitted"),
        "timesyncd could not touch the clock:\n{log}"
    );

    lab.kill_timesyncd();
    let body = wait_for("timesyncd down", Duration::from_secs(10), || {
        let body = exporter.scrape();
        (sample(&body, UP) == Some(0.0)).then_some(body)
    });
    assert!(
        sample(&body, r#"clock_sync_offset_seconds{daemon="timesyncd"}"#).is_none(),
        "{body}"
    );
    assert_eq!(
        sample(
            &body,
            r#"clock_scrape_collector_success{collector="timex"}"#
        ),
        Some(1.0),
        "the other collectors are unaffected"
    );
    assert_eq!(sample(&body, SUCCESS), Some(1.0), "absent is not a failure");
}

/// A process that owns org.freedesktop.timesync1 but is not timesyncd.
struct Impostor;

#[zbus::interface(name = "org.freedesktop.timesync1.Manager")]
#[allow(clippy::unused_self)]
impl Impostor {
    #[zbus(property, name = "NTPMessage")]
    fn ntp_message(&self) -> String {
        "(uuuuittayttttbtt) as a string".into()
    }

    #[zbus(property, name = "ServerAddress")]
    fn server_address(&self) -> (i32, Vec<u8>) {
        (2, vec![127, 0, 0, 1])
    }

    #[zbus(property, name = "PollIntervalUSec")]
    fn poll_interval(&self) -> u64 {
        32_000_000
    }
}

#[test]
#[ignore = "needs the lab: run scripts/test"]
fn a_name_nobody_owns_is_absent_and_an_impostor_is_a_clear_error() {
    let bus = DbusDaemon::start(&lab::root());
    let flags = flags(&bus);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();

    // First nobody owns the name: absent, not a failure (and never started:
    // this bus can activate nothing, and the call says NO_AUTO_START).
    let exporter = Exporter::local(&flags);
    let body = exporter.scrape();
    assert_eq!(sample(&body, UP), Some(0.0), "{body}");
    assert_eq!(sample(&body, SUCCESS), Some(1.0), "{body}");
    let log = exporter.proc.log_text();
    assert!(
        log.contains("no process owns org.freedesktop.timesync1 on the bus"),
        "{log}"
    );
    drop(exporter);

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let _impostor = rt.block_on(async {
        zbus::connection::Builder::address(bus.address().as_str())
            .expect("address")
            .name("org.freedesktop.timesync1")
            .expect("name")
            .serve_at("/org/freedesktop/timesync1", Impostor)
            .expect("object")
            .build()
            .await
            .expect("impostor on the bus")
    });
    let mut exporter = Exporter::local(&flags);
    let body = exporter.scrape();
    assert_eq!(sample(&body, SUCCESS), Some(0.0), "{body}");
    assert_eq!(sample(&body, UP), Some(0.0), "not timesyncd: {body}");
    assert!(
        !body.contains(r#"daemon="timesyncd",peer"#),
        "nothing of it published: {body}"
    );
    let log = wait_for("the error in the log", Duration::from_secs(5), || {
        let log = exporter.proc.log_text();
        log.contains("NTPMessage has signature s, expected (uuuuittayttttbtt)")
            .then_some(log)
    });
    assert!(!log.contains("panicked"), "{log}");
    // Still serving, the other collectors too.
    let body = exporter.scrape();
    assert_eq!(
        sample(
            &body,
            r#"clock_scrape_collector_success{collector="timex"}"#
        ),
        Some(1.0)
    );
    exporter.proc.assert_running();
}
