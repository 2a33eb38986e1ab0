//! With neither ntpd, chronyd nor timesyncd answering, the three daemon
//! collectors behave the same: the same landing-page detail once they are skipped, the
//! same log lines, and none claiming that a daemon which never answered
//! "recovered". Runs the real binary on loopback, no root needed; the
//! daemons are pointed at ports where nothing listens and at a bus socket
//! that does not exist, so a time daemon on this machine cannot change the
//! outcome.

mod common;

use std::time::Duration;

use common::lab::{Exporter, only_collectors, sample};

/// A UDP port nothing listens on (bound, then released).
fn closed_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("bind")
        .port()
}

/// The landing page's detail cell for a collector.
fn detail(page: &str, collector: &str) -> String {
    let row = page
        .lines()
        .find(|l| l.starts_with(&format!("<tr><td>{collector}</td>")))
        .unwrap_or_else(|| panic!("no row for {collector}:\n{page}"));
    let cells: Vec<&str> = row
        .split("<td>")
        .skip(1)
        .map(|c| c.split("</td>").next().unwrap_or_default())
        .collect();
    assert_eq!(cells.len(), 3, "{row}");
    // An absent daemon is no failure, and not "ok" either.
    assert!(cells[1].starts_with("no data ("), "{row}");
    cells[2].to_owned()
}

fn count(log: &str, daemon: &str, message: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(message) && l.contains(&format!("daemon={daemon}")))
        .count()
}

#[test]
fn absent_daemons_are_skipped_alike_and_never_recover() {
    let (ntpd, chrony) = (closed_udp_port(), closed_udp_port());
    let bus = format!(
        "unix:path={}/clock-no-bus-{}/bus.sock",
        std::env::temp_dir().display(),
        std::process::id()
    );
    let mut args = only_collectors(&["ntpd", "chrony", "timesyncd"]);
    args.extend(
        [
            "--log.level",
            "debug",
            "--collector.ntpd.address",
            &format!("127.0.0.1:{ntpd}"),
            "--collector.chrony.address",
            &format!("127.0.0.1:{chrony}"),
            "--collector.timesyncd.bus-address",
            &bus,
        ]
        .map(str::to_owned),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let exporter = Exporter::local(&args);

    // The first scrape finds both absent: up 0 (configured explicitly), and
    // no collector failure.
    let body = exporter.scrape();
    for (daemon, collector) in [
        ("ntpd", "ntpd"),
        ("chronyd", "chrony"),
        ("timesyncd", "timesyncd"),
    ] {
        let up = format!("clock_daemon_up{{daemon=\"{daemon}\"}}");
        assert_eq!(sample(&body, &up), Some(0.0), "{body}");
        let success = format!("clock_scrape_collector_success{{collector=\"{collector}\"}}");
        assert_eq!(sample(&body, &success), Some(1.0), "{body}");
    }
    // Why: in the log, once each (the landing page scrapes too, so it
    // already shows the later scrapes' words, below).
    let log = exporter.proc.log_text();
    assert!(
        log.contains(&format!(
            "connection to 127.0.0.1:{ntpd} refused: nothing listens"
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!("nothing listens on udp 127.0.0.1:{chrony}")),
        "{log}"
    );
    assert!(
        log.contains(&format!("the bus at {bus}: No such file or directory")),
        "{log}"
    );

    // Later scrapes skip both, and say so in the same words: the landing
    // page's own scrape is one.
    let (_, page) = exporter.get("/", None);
    assert_eq!(
        detail(&page, "ntpd"),
        format!(
            "no data: ntpd at 127.0.0.1:{ntpd} did not answer; skipped until a background probe finds it"
        )
    );
    assert_eq!(
        detail(&page, "chrony"),
        format!(
            "no data: chronyd at udp 127.0.0.1:{chrony} did not answer; skipped until a background probe finds it"
        )
    );
    assert_eq!(
        detail(&page, "timesyncd"),
        format!(
            "no data: timesyncd at D-Bus {bus} did not answer; skipped until a background probe finds it"
        )
    );

    // Past the first backoff a scrape starts a background probe of each;
    // both still find nothing.
    std::thread::sleep(Duration::from_secs(6));
    exporter.scrape();
    std::thread::sleep(Duration::from_millis(500));
    let body = exporter.scrape();
    assert_eq!(
        sample(&body, "clock_daemon_up{daemon=\"chronyd\"}"),
        Some(0.0)
    );
    let log = exporter.proc.log_text();
    for daemon in ["ntpd", "chronyd", "timesyncd"] {
        assert_eq!(
            count(
                &log,
                daemon,
                "time daemon not answering; will retry with backoff"
            ),
            1,
            "{log}"
        );
        assert_eq!(count(&log, daemon, "time daemon is answering"), 0, "{log}");
    }
    assert!(!log.contains("collector recovered"), "{log}");
    assert!(!log.contains("collector failed"), "{log}");
}
