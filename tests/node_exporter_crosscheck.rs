//! Cross-check with a peer nobody here wrote: Debian's node_exporter (timex
//! and time collectors only), unpacked by scripts/lab-fetch, on this live
//! machine beside ours. Both read the same kernel, so the values must agree;
//! maxerror grows 500 µs/s while nothing disciplines the clock, so it must
//! lie between our readings taken before and after node_exporter's.

mod common;

use std::process::Command;
use std::time::Duration;

use common::lab::{
    Exporter, Proc, TempDir, free_port, http_get, only_collectors, sample, wait_for,
};

fn node_exporter() -> (TempDir, Proc, String) {
    let root = common::lab_root();
    let dir = TempDir::new("node-exporter");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new(root.join("usr/bin/prometheus-node-exporter"));
    cmd.args([
        "--collector.disable-defaults",
        "--collector.timex",
        "--collector.time",
        &format!("--web.listen-address={addr}"),
    ]);
    let mut proc = Proc::spawn(cmd, dir.path().join("node.log"), "node_exporter");
    wait_for("node_exporter to answer", Duration::from_secs(10), || {
        proc.assert_running();
        http_get(&addr, "/metrics", None).ok().map(|_| ())
    });
    (dir, proc, addr)
}

fn num(body: &str, selector: &str) -> f64 {
    sample(body, selector).unwrap_or_else(|| panic!("{selector} missing:\n{body}"))
}

/// The clocksource names of `*_clocksource_*_info` lines with a given prefix.
fn clocksources(body: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = body
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| {
            let start = l.find("clocksource=\"")? + "clocksource=\"".len();
            Some(l[start..start + l[start..].find('"')?].to_owned())
        })
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs the lab (node_exporter): run scripts/test"]
fn timex_and_clocksource_agree_with_node_exporter() {
    let (_dir, _node, node_addr) = node_exporter();
    let args = only_collectors(&["timex", "time", "clocksource"]);
    let ours = Exporter::local(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let before = ours.scrape();
    let (status, node) = http_get(&node_addr, "/metrics", None).expect("scrape node_exporter");
    assert_eq!(status, 200);
    let after = ours.scrape();

    for (theirs, mine) in [
        ("node_timex_offset_seconds", "clock_timex_offset_seconds"),
        ("node_timex_tick_seconds", "clock_timex_tick_seconds"),
        (
            "node_timex_loop_time_constant",
            "clock_timex_loop_time_constant",
        ),
        (
            "node_timex_tai_offset_seconds",
            "clock_timex_tai_offset_seconds",
        ),
        ("node_timex_sync_status", "clock_timex_sync_status"),
        (
            "node_timex_pps_frequency_hertz",
            "clock_timex_pps_frequency_ratio",
        ),
    ] {
        let t = num(&node, theirs);
        let m = num(&after, mine);
        assert!(
            (t - m).abs() <= 1e-12 + 1e-9 * t.abs(),
            "{theirs}={t} vs {mine}={m}"
        );
    }

    // node_exporter publishes 1 + freq (1.0 is nominal); we publish the
    // correction itself (0 is nominal), like every frequency we export.
    let t = num(&node, "node_timex_frequency_adjustment_ratio") - 1.0;
    let m = num(&after, "clock_timex_frequency_adjustment_ratio");
    assert!((t - m).abs() < 1e-12, "frequency {t} vs {m}");

    // Status: node_exporter publishes the raw word; we publish one series per bit.
    let status = num(&node, "node_timex_status") as i64;
    let mut rebuilt = 0i64;
    for (name, bit) in clock_exporter::testing::collector::timex::STATUS_FLAGS {
        let v = num(
            &after,
            &format!("clock_timex_status_flag{{flag=\"{name}\"}}"),
        );
        if v == 1.0 {
            rebuilt |= i64::from(bit);
        }
    }
    assert_eq!(rebuilt, status, "status bits");

    // maxerror and esterror: node_exporter's reading lies between ours.
    for (theirs, mine) in [
        (
            "node_timex_maxerror_seconds",
            "clock_timex_maxerror_seconds",
        ),
        (
            "node_timex_estimated_error_seconds",
            "clock_timex_estimated_error_seconds",
        ),
    ] {
        let t = num(&node, theirs);
        let (lo, hi) = (num(&before, mine), num(&after, mine));
        assert!(
            lo - 1e-6 <= t && t <= hi + 1e-6,
            "{theirs}={t} not within [{lo}, {hi}]"
        );
    }

    // The wall clock, read within the same second or so.
    let t = num(&node, "node_time_seconds");
    assert!(
        (num(&before, "clock_time_seconds") - 1.0..=num(&after, "clock_time_seconds") + 1.0)
            .contains(&t)
    );

    // Clocksource names: node_exporter 1.5's time collector reads the same sysfs files.
    assert_eq!(
        clocksources(&node, "node_time_clocksource_current_info"),
        clocksources(&after, "clock_source_current_info")
    );
    assert_eq!(
        clocksources(&node, "node_time_clocksource_available_info"),
        clocksources(&after, "clock_source_available_info")
    );
    assert!(!clocksources(&after, "clock_source_current_info").is_empty());
}
