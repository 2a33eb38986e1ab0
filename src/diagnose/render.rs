//! The verdict written out: for a person (text), for a program (JSON, the
//! schema in docs/diagnose.md), and for Nagios (one status line with
//! perfdata; the exit code is [`exit_code`]).

use std::fmt::Write as _;

use super::findings::{DaemonView, Limits, Severity, Verdict};

/// The JSON schema's version; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The Nagios plugin's UNKNOWN.
pub const UNKNOWN: u8 = 3;

/// The Nagios plugin's exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN
/// (no daemon answered and nothing critical was found).
pub fn exit_code(v: &Verdict) -> u8 {
    match nagios_status(v) {
        "OK" => 0,
        "WARNING" => 1,
        "CRITICAL" => 2,
        _ => UNKNOWN,
    }
}

fn nagios_status(v: &Verdict) -> &'static str {
    match v.status {
        Severity::Critical => "CRITICAL",
        _ if !v.judged => "UNKNOWN",
        Severity::Warning => "WARNING",
        Severity::Ok | Severity::Info => "OK",
    }
}

/// Whether the clock can be trusted, in words.
pub fn trust(v: &Verdict) -> &'static str {
    match nagios_status(v) {
        "OK" => "trusted",
        "UNKNOWN" => "unknown",
        _ => "not trusted",
    }
}

fn secs(v: Option<f64>) -> String {
    v.map_or_else(|| "unknown".into(), |x| format!("{x:.6} s"))
}

/// The verdict for a person.
pub fn text(v: &Verdict) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Clock: {} ({})", trust(v), nagios_status(v));
    if let Some(d) = &v.daemon {
        let _ = writeln!(
            s,
            "Daemon: {}, reference {}, offset {}, worst-case error {}, {} usable source(s)",
            d.daemon,
            if d.reference.is_empty() {
                "none"
            } else {
                &d.reference
            },
            secs(d.offset),
            secs(d.worst_case_error),
            d.usable_sources.map_or("unknown".into(), |n| n.to_string())
        );
        for p in &d.peers {
            let _ = writeln!(
                s,
                "  {:<40} {:<12} offset {:>14}  bound {}",
                p.peer,
                p.state,
                secs(p.offset),
                secs(p.error_bound)
            );
        }
    } else {
        let _ = writeln!(s, "Daemon: none answers");
    }
    let _ = writeln!(
        s,
        "Clocksource: {}, hypervisor: {}",
        v.clocksource.as_deref().unwrap_or("unknown"),
        v.hypervisor.as_deref().unwrap_or("unknown")
    );
    if let Some(r) = &v.rate {
        let _ = writeln!(
            s,
            "Rate probe ({:.0} s on {}): TSC at {} as CLOCK_MONOTONIC_RAW sees it; CLOCK_MONOTONIC runs {} against RAW",
            r.window,
            if r.clocksource.is_empty() {
                "an unknown clocksource"
            } else {
                &r.clocksource
            },
            r.tsc_hz
                .map_or("unknown".into(), |hz| format!("{:.6} MHz", hz / 1e6)),
            r.monotonic_ratio
                .map_or("unknown".into(), |x| format!("{:+.3} ppm", x * 1e6)),
        );
    }
    if v.findings.is_empty() {
        let _ = writeln!(s, "\nNo findings.");
    }
    for f in &v.findings {
        let _ = writeln!(s, "\n[{}] {}: {}", f.severity.word(), f.code, f.summary);
        for e in &f.evidence {
            let _ = writeln!(s, "    - {e}");
        }
        let _ = writeln!(s, "    Advice: {}", f.advice);
    }
    s
}

/// The verdict for a program (docs/diagnose.md has the schema).
pub fn json(v: &Verdict) -> String {
    let daemon = v.daemon.as_ref().map(|d: &DaemonView| {
        serde_json::json!({
            "daemon": d.daemon,
            "reference": d.reference,
            "offset_seconds": d.offset,
            "worst_case_error_seconds": d.worst_case_error,
            "usable_sources": d.usable_sources,
            "stratum": d.stratum,
            "jitter_seconds": d.jitter,
            "peers": d.peers.iter().map(|p| serde_json::json!({
                "peer": p.peer,
                "state": p.state,
                "offset_seconds": p.offset,
                "error_bound_seconds": p.error_bound,
            })).collect::<Vec<_>>(),
        })
    });
    let doc = serde_json::json!({
        "schema_version": SCHEMA_VERSION,
        "status": nagios_status(v),
        "trust": trust(v),
        "daemon": daemon,
        "clocksource": v.clocksource,
        "hypervisor": v.hypervisor,
        "rate": v.rate.as_ref().map(|r| serde_json::json!({
            "clocksource": r.clocksource,
            "window_seconds": r.window,
            "tsc_frequency_hertz": r.tsc_hz,
            "monotonic_frequency_ratio": r.monotonic_ratio,
            "raw_residual_seconds": r.residual,
        })),
        "findings": v.findings.iter().map(|f| serde_json::json!({
            "severity": f.severity.word(),
            "code": f.code,
            "summary": f.summary,
            "evidence": f.evidence,
            "advice": f.advice,
        })).collect::<Vec<_>>(),
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// One perfdata item: `label=value[unit];warn;crit` (Nagios ranges: a
/// number alerts above it, `N:` below N).
fn perf(label: &str, value: Option<f64>, unit: &str, warn: &str, crit: &str) -> Option<String> {
    let value = value?;
    Some(format!("{label}={value}{unit};{warn};{crit}"))
}

fn limit(x: Option<f64>) -> String {
    x.map_or(String::new(), |x| format!("{x}"))
}

/// The Nagios plugin's output: the status line with perfdata, then the
/// findings one a line (Nagios' long output).
pub fn nagios(v: &Verdict, limits: &Limits) -> String {
    let status = nagios_status(v);
    let headline = v
        .findings
        .iter()
        .find(|f| f.severity >= Severity::Warning)
        .map_or_else(
            || match &v.daemon {
                Some(d) => format!(
                    "{} synchronised to {}, offset {}, worst-case error {}",
                    d.daemon,
                    if d.reference.is_empty() {
                        "its sources"
                    } else {
                        &d.reference
                    },
                    secs(d.offset),
                    secs(d.worst_case_error)
                ),
                None => "no time daemon answers".into(),
            },
            |f| f.summary.clone(),
        );
    let d = v.daemon.as_ref();
    let perfdata: Vec<String> = [
        perf("offset", d.and_then(|d| d.offset), "s", "", ""),
        perf(
            "worst_case_error",
            d.and_then(|d| d.worst_case_error),
            "s",
            &limit(Some(limits.offset.0)),
            &limit(Some(limits.offset.1)),
        ),
        perf(
            "jitter",
            d.and_then(|d| d.jitter),
            "s",
            &limit(limits.jitter.0),
            &limit(limits.jitter.1),
        ),
        perf(
            "stratum",
            d.and_then(|d| d.stratum),
            "",
            &limit(limits.stratum.0),
            &limit(limits.stratum.1),
        ),
        perf(
            "sources",
            d.and_then(|d| d.usable_sources),
            "",
            &format!("{}:", limits.sources.0),
            &format!("{}:", limits.sources.1),
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut s = format!("CLOCK {status} - {}", headline.replace('|', "/"));
    if !perfdata.is_empty() {
        let _ = write!(s, " | {}", perfdata.join(" "));
    }
    s.push('\n');
    for f in &v.findings {
        let _ = writeln!(s, "{}: {}", f.severity.word(), f.summary.replace('|', "/"));
    }
    s
}
