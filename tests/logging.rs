//! `--log.level` and `--log.format` as an operator sees them: every line of
//! the real binary's stderr in the chosen format, the chosen level and
//! nothing below it. Loopback only, no root needed.

mod common;

use common::lab::{Exporter, only_collectors};

/// The exporter's log after it started and served two scrapes.
fn log_after_scrapes(flags: &[&str]) -> String {
    let mut args = only_collectors(&["time", "timex"]);
    args.extend(flags.iter().map(|f| (*f).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut exporter = Exporter::local(&args);
    exporter.scrape();
    exporter.scrape();
    exporter.proc.kill();
    exporter.proc.log_text()
}

#[test]
fn logfmt_lines_at_debug_show_debug_and_info() {
    let log = log_after_scrapes(&["--log.level", "debug"]);
    let lines: Vec<&str> = log.lines().collect();
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l.starts_with("ts=") && l.contains(" level="), "{l}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("level=info") && l.contains("clock_exporter started")),
        "{log}"
    );
    // The probe endpoint's note is the exporter's own debug line at start.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("level=debug") && l.contains("/probe is off")),
        "{log}"
    );
}

#[test]
fn json_lines_at_warn_leave_info_and_debug_out() {
    let log = log_after_scrapes(&["--log.level", "warn", "--log.format", "json"]);
    for l in log.lines() {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        let level = v["level"].as_str().unwrap_or_else(|| panic!("{l}"));
        assert!(matches!(level, "WARN" | "ERROR"), "{l}");
        assert!(v["message"].is_string() && v["target"].is_string(), "{l}");
    }
    // At info the start line is there, as JSON.
    let log = log_after_scrapes(&["--log.format", "json"]);
    let started = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "clock_exporter started")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(started["level"], "INFO");
    assert_eq!(
        started["collectors"], "timex,time",
        "in the collectors' order"
    );
    assert!(!log.contains("\"DEBUG\""), "{log}");
}
