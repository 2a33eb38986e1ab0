//! Proves the lab itself: namespaces, honest chronyd servers and the
//! skewed and drifting responders, as chronyd's own `chronyc` and NTPsec's
//! `ntpq` see them.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::lab::{Daemon, Lab, wait_for};

/// The original measured offset of `chronyc -n sources` for one address (the
/// value in brackets), in seconds. The value before the brackets is adjusted
/// for chronyd's own corrections since, which under `-x` are virtual: once
/// chronyd follows the skewed server, honest ones show its 11.5 s there.
fn chronyc_offset(sources: &str, addr: &str) -> Option<f64> {
    let line = sources
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(addr))?;
    // No sample yet while the reach register is 0.
    if line.split_whitespace().nth(4)? == "0" {
        return None;
    }
    let field = line.split('[').nth(1)?.split(']').next()?.trim();
    let (num, unit) = field.split_at(field.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// A client of an honest chronyd server (a) and of the skewed responder
/// (b, 11.5 s ahead).
///
/// chronyd selects a source alone once it has three samples of it and the
/// others lag by more than one (its initial polls are spread at random), and
/// under `-x` then corrects its virtual clock by that source's 11.5 s: the
/// other's measurements would be taken against a clock 11.5 s off.
/// `minsources 2` keeps it from synchronising to one of two disagreeing
/// sources, so what it measures is against the real clock. ntpd with
/// `disable ntp` never corrects its clock.
fn lab(daemon: Daemon) -> Lab {
    let builder = Lab::builder().client(daemon);
    let builder = match daemon {
        Daemon::Chronyd => builder.client_conf("minsources 2"),
        Daemon::Ntpd | Daemon::Timesyncd => builder,
    };
    builder.honest("a").skewed("b", 11.5).build()
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn skewed_server_is_seen_by_chronyd_with_its_offset() {
    let lab = lab(Daemon::Chronyd);
    let (a, b) = (lab.addr("a").to_string(), lab.addr("b").to_string());
    let sources = wait_for("both sources measured", Duration::from_secs(30), || {
        let s = lab.chronyc(&["-n", "sources"]);
        (chronyc_offset(&s, &a).is_some() && chronyc_offset(&s, &b).is_some()).then_some(s)
    });
    let off_a = chronyc_offset(&sources, &a).expect("A offset");
    let off_b = chronyc_offset(&sources, &b).expect("B offset");
    assert!(
        off_a.abs() < 0.01,
        "honest server offset {off_a}\n{sources}"
    );
    // chronyc prints local-minus-source: a server 11.5 s ahead shows as -11.5 s.
    assert!(
        (off_b + 11.5).abs() < 0.01,
        "skewed server offset {off_b}\n{sources}"
    );
    let skewed = lab.responder("b");
    assert!(skewed.requests.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn ntpd_answers_ntpq_and_sees_the_skewed_server() {
    let lab = lab(Daemon::Ntpd);
    let (a, b) = (lab.addr("a"), lab.addr("b"));
    let peers = wait_for(
        "ntpq to show both peers reached",
        Duration::from_secs(40),
        || {
            let p = lab.ntpq(&["-n", "-p"]);
            let reached = |addr: Ipv4Addr| {
                p.lines()
                    .find(|l| l.contains(&addr.to_string()))
                    .and_then(|l| l.split_whitespace().nth(6))
                    .is_some_and(|reach| reach != "0")
            };
            (reached(a) && reached(b)).then_some(p)
        },
    );
    // ntpq -p: remote refid st t when poll reach delay offset jitter (ms).
    let offset_ms = |addr: Ipv4Addr| -> f64 {
        let line = peers
            .lines()
            .find(|l| l.contains(&addr.to_string()))
            .expect("peer line");
        line.split_whitespace()
            .nth(8)
            .and_then(|v| v.parse().ok())
            .expect("offset")
    };
    assert!(offset_ms(a).abs() < 10.0, "{peers}");
    // ntpq prints θ (peer minus local): the skewed server is +11500 ms.
    assert!((offset_ms(b) - 11_500.0).abs() < 10.0, "{peers}");
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn drifting_server_is_seen_by_chronyd_with_its_rate() {
    // chronyd follows the honest server; the drifting one, never selected,
    // shows its rate against that timescale in `chronyc sourcestats`.
    let ppm = 500.0;
    let lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .drifting("d", ppm)
        .noselect("d")
        .build();
    let d = lab.addr("d").to_string();
    // Name, NP, NR, span, frequency (ppm), skew, offset, std dev.
    let (freq, stats) = wait_for("a rate from 20 samples", Duration::from_secs(60), || {
        let stats = lab.chronyc(&["-n", "sourcestats"]);
        let fields: Vec<&str> = stats
            .lines()
            .find(|l| l.split_whitespace().next() == Some(d.as_str()))?
            .split_whitespace()
            .collect();
        let samples: u32 = fields.get(1)?.parse().ok()?;
        let freq: f64 = fields.get(4)?.parse().ok()?;
        (samples >= 20).then_some((freq, stats))
    });
    eprintln!("{stats}");
    // Its Frequency is the client's clock against the source: a source
    // running fast makes the client's clock slow, negative.
    assert!(
        (freq + ppm).abs() < 0.05 * ppm,
        "drifting server at {freq} ppm\n{stats}"
    );
}
