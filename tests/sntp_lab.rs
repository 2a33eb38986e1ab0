//! The `sntp` collector and `/probe` in the lab, as a prober on the client
//! host sees the servers: two honest chronyd servers (checked against
//! NTPsec's `ntpdig` on the same targets), the seed's vB 11.5 s ahead, a
//! responder that sends a `RATE` kiss, one whose replies carry the wrong
//! origin timestamp, and one that never answers.
//!
//! All namespaces share this machine's clock, so the truth is known: the
//! honest servers' offset is 0, vB's +11.5 s.

mod common;

use std::time::{Duration, Instant};

use common::lab::{Lab, only_collectors, sample};

fn lab() -> Lab {
    Lab::builder()
        .honest("a")
        .honest("b")
        .skewed("vb", 11.5)
        .kissing("k", *b"RATE")
        .forging("f")
        .silent("s")
        .build()
}

fn labels(target: &str) -> String {
    format!("{{server=\"{target}\",address=\"{target}:123\"}}")
}

/// ntpdig's offset for `addr`, from its JSON output.
fn ntpdig_offset(lab: &Lab, addr: &str) -> f64 {
    let out = lab.ntpdig(&["-j", "-t", "2", addr]);
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("ntpdig printed no JSON: {out}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    v["offset"]
        .as_f64()
        .unwrap_or_else(|| panic!("no offset in {line}"))
}

#[test]
#[ignore = "lab: needs root and the unpacked daemons (scripts/test runs it)"]
fn the_collector_sees_each_server_as_it_is() {
    let lab = lab();
    let targets: Vec<String> = ["a", "b", "vb", "k", "f", "s"]
        .iter()
        .map(|h| lab.addr(h).to_string())
        .collect();
    let mut flags = only_collectors(&["sntp"]);
    for t in &targets {
        flags.push(format!("--collector.sntp.server={t}"));
    }
    flags.push("--collector.sntp.timeout=1s".into());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = lab.exporter(&flags);

    let start = Instant::now();
    let body = exporter.scrape();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(1800),
        "a scrape with a silent server took {took:?}, over the 1 s timeout"
    );
    let [ha, hb, vb, kiss, forge, mute] = &targets[..] else {
        unreachable!()
    };
    let offset = |t: &str| sample(&body, &format!("clock_sntp_offset_seconds{}", labels(t)));

    for t in [ha, hb] {
        let ours = offset(t).unwrap_or_else(|| panic!("no offset for {t}: {body}"));
        let theirs = ntpdig_offset(&lab, t);
        assert!(
            (ours - theirs).abs() < 0.005,
            "{t}: ours {ours}, ntpdig {theirs}"
        );
        assert!(ours.abs() < 0.005, "{t} shares this clock: {ours}");
        assert_eq!(
            sample(&body, &format!("clock_sntp_synchronized{}", labels(t))),
            Some(1.0)
        );
        // One above its reference, a stratum-2 responder.
        assert_eq!(
            sample(&body, &format!("clock_sntp_stratum{}", labels(t))),
            Some(3.0),
            "{body}"
        );
    }
    let ours = offset(vb).expect("vB's offset");
    assert!(
        (ours - 11.5).abs() < 0.005,
        "vB: {ours}, the θ sign: ahead is positive"
    );
    let theirs = ntpdig_offset(&lab, vb);
    assert!(
        (ours - theirs).abs() < 0.005,
        "vB: ours {ours}, ntpdig {theirs}"
    );

    let failure = |t: &str, reason: &str| {
        sample(
            &body,
            &format!(
                "clock_sntp_failure_info{{server=\"{t}\",address=\"{t}:123\",reason=\"{reason}\"}}"
            ),
        )
    };
    assert_eq!(failure(kiss, "kiss"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            &format!(
                "clock_sntp_kiss_info{{server=\"{kiss}\",address=\"{kiss}:123\",code=\"RATE\"}}"
            )
        ),
        Some(1.0)
    );
    assert_eq!(failure(forge, "no_reply"), Some(1.0), "{body}");
    assert_eq!(
        sample(
            &body,
            &format!("clock_sntp_discarded_replies_total{}", labels(forge))
        ),
        Some(1.0)
    );
    assert_eq!(failure(mute, "no_reply"), Some(1.0), "{body}");
    for t in [kiss, forge, mute] {
        assert_eq!(offset(t), None, "{t} published an offset: {body}");
        assert_eq!(
            sample(&body, &format!("clock_sntp_up{}", labels(t))),
            Some(0.0)
        );
    }
    assert_eq!(
        sample(&body, r#"clock_scrape_collector_success{collector="sntp"}"#),
        Some(1.0)
    );
    // The kissing responder got one request; a second scrape at once
    // sends nothing to anyone (the interval), and none to it for 8.
    let kissed = lab
        .responder("k")
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(kissed, 1);
    let again = exporter.scrape();
    assert_eq!(
        sample(&again, &format!("clock_sntp_requests_total{}", labels(vb))),
        Some(1.0)
    );
}

#[test]
#[ignore = "lab: needs root and the unpacked daemons (scripts/test runs it)"]
fn probe_answers_for_allowed_targets_within_the_scrape_timeout() {
    let lab = lab();
    let mut flags = only_collectors(&[]);
    flags.extend([
        "--probe.allow=192.0.2.0/24".to_owned(),
        "--probe.samples=2".to_owned(),
    ]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = lab.exporter(&flags);
    let vb = lab.addr("vb").to_string();
    let (status, body) = exporter.get(&format!("/probe?target={vb}"), None);
    assert_eq!(status, 200, "{body}");
    let off = sample(&body, &format!("clock_sntp_offset_seconds{}", labels(&vb))).expect(&body);
    assert!((off - 11.5).abs() < 0.005, "{off}");
    assert_eq!(sample(&body, "clock_probe_success"), Some(1.0));
    assert_eq!(
        sample(&body, &format!("clock_sntp_samples{}", labels(&vb))),
        Some(2.0)
    );

    // A silent server: the probe ends at the default deadline's first
    // sample timeout, and never past --probe.timeout.
    let s = lab.addr("s").to_string();
    let start = Instant::now();
    let (status, body) = exporter.get(&format!("/probe?target={s}&samples=1"), None);
    let took = start.elapsed();
    assert_eq!(status, 200, "{body}");
    assert_eq!(sample(&body, "clock_probe_success"), Some(0.0));
    assert!(took < Duration::from_millis(1800), "{took:?}");

    // Outside the allow-list: refused, nothing sent.
    let (status, body) = exporter.get("/probe?target=198.51.100.20", None);
    assert_eq!(status, 403, "{body}");
}
