//! The landing page: the verdict first (trusted, not trusted, unknown, in
//! words and colour), the worst-case error and what bounds it, the daemon
//! and its sources, the clocksource and the advice, a chart of the recent
//! offset and error bound, then the collectors. Server-rendered HTML with
//! an inline SVG: no JavaScript, no network, every outside text escaped.

use std::fmt::Write as _;

use super::findings::{Severity, Verdict, opt_secs as secs};
use super::history::Point;
use super::render;

/// What the page shows of one collector: name, state, detail.
pub type CollectorRow = (String, String, String);

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:60em;color:#222}\
.verdict{padding:1em;border-radius:6px;color:#fff;font-size:1.4em}\
.trusted{background:#2e7d32}.not-trusted{background:#c62828}.unknown{background:#757575}\
table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}\
.CRITICAL{color:#c62828}.WARNING{color:#e65100}.INFO{color:#1565c0}\
.selected{color:#2e7d32;font-weight:bold}.falseticker{color:#c62828;font-weight:bold}\
.advice{color:#555}";

/// The chart: offset as a line, the worst-case error as a band around
/// zero, over the points' times. `None` with fewer than two known points.
pub fn chart(points: &[Point]) -> Option<String> {
    let known: Vec<&Point> = points
        .iter()
        .filter(|p| p.at.is_finite() && p.offset.is_finite())
        .collect();
    if known.len() < 2 {
        return None;
    }
    let (w, h) = (600.0, 160.0);
    let t0 = known[0].at;
    let t1 = known[known.len() - 1].at.max(t0 + 1e-9);
    let ymax = known
        .iter()
        .map(|p| {
            p.offset
                .abs()
                .max(if p.bound.is_finite() { p.bound } else { 0.0 })
        })
        .fold(1e-9, f64::max);
    let x = |t: f64| (t - t0) / (t1 - t0) * w;
    let y = |v: f64| h / 2.0 - v / ymax * (h / 2.0 - 4.0);
    let line: Vec<String> = known
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.at), y(p.offset)))
        .collect();
    let bounded: Vec<&&Point> = known.iter().filter(|p| p.bound.is_finite()).collect();
    let mut band = String::new();
    if bounded.len() >= 2 {
        let upper = bounded
            .iter()
            .map(|p| format!("{:.1},{:.1}", x(p.at), y(p.bound)));
        let lower = bounded
            .iter()
            .rev()
            .map(|p| format!("{:.1},{:.1}", x(p.at), y(-p.bound)));
        let pts: Vec<String> = upper.chain(lower).collect();
        band = format!(
            "<polygon points=\"{}\" fill=\"#90caf9\" fill-opacity=\"0.5\"/>",
            pts.join(" ")
        );
    }
    Some(format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"offset and worst-case error over the last {n} scrapes\">\
<rect width=\"{w}\" height=\"{h}\" fill=\"#fafafa\" stroke=\"#ddd\"/>{band}\
<line x1=\"0\" y1=\"{mid}\" x2=\"{w}\" y2=\"{mid}\" stroke=\"#999\" stroke-dasharray=\"4 4\"/>\
<polyline points=\"{line}\" fill=\"none\" stroke=\"#0d47a1\" stroke-width=\"1.5\"/>\
<text x=\"4\" y=\"12\" font-size=\"11\">+{top}</text><text x=\"4\" y=\"{bottom}\" font-size=\"11\">−{top}</text></svg>",
        n = known.len(),
        mid = h / 2.0,
        line = line.join(" "),
        top = escape(&secs(Some(ymax))),
        bottom = h - 4.0,
    ))
}

/// The error bound and the sources.
fn daemon_section(s: &mut String, v: &Verdict) {
    match &v.daemon {
        Some(d) => {
            let _ = writeln!(
                s,
                "<h2>Error bound</h2><p>Up to <strong>{}</strong> from true time: |offset| {} plus the root distance of {} ({}, {} usable source(s)).</p>",
                secs(d.worst_case_error),
                secs(d.offset.map(f64::abs)),
                if d.reference.is_empty() {
                    "no selected source".to_owned()
                } else {
                    escape(&d.reference)
                },
                escape(&d.daemon),
                d.usable_sources.map_or("unknown".into(), |n| n.to_string()),
            );
            s.push_str("<h2>Sources</h2><table><tr><th>source</th><th>state</th><th>offset</th><th>error bound</th></tr>\n");
            for p in &d.peers {
                let _ = writeln!(
                    s,
                    "<tr><td>{}</td><td class=\"{}\">{}</td><td>{}</td><td>{}</td></tr>",
                    escape(&p.peer),
                    escape(&p.state),
                    escape(&p.state),
                    secs(p.offset),
                    secs(p.error_bound)
                );
            }
            s.push_str("</table>\n");
        }
        None => s.push_str("<h2>Error bound</h2><p>Unknown: no time daemon answers.</p>\n"),
    }
}

/// The page.
pub fn landing(
    v: &Verdict,
    history: &[Point],
    collectors: &[CollectorRow],
    telemetry_path: &str,
    version: &str,
) -> String {
    let trust = render::trust(v);
    let class = trust.replace(' ', "-");
    let mut s = String::with_capacity(8 * 1024);
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>clock_exporter: {trust}</title><style>{STYLE}</style></head><body>\n"
    );
    let headline = v
        .findings
        .iter()
        .find(|f| f.severity >= Severity::Warning)
        .map_or_else(
            || "Nothing found that makes this clock suspect.".to_owned(),
            |f| f.summary.clone(),
        );
    let _ = write!(
        s,
        "<div class=\"verdict {class}\" id=\"verdict\" data-status=\"{}\">This host's clock is <strong>{trust}</strong>.<br><small>{}</small></div>",
        render::exit_code(v),
        escape(&headline)
    );
    daemon_section(&mut s, v);
    s.push_str("<h2>Recent scrapes</h2>");
    match chart(history) {
        Some(svg) => {
            let _ = writeln!(
                s,
                "<p>The daemon's offset (line) and worst-case error (band), over the last {} scrapes.</p>{svg}",
                history.len()
            );
        }
        None => s.push_str("<p>Not enough scrapes yet for a chart.</p>\n"),
    }
    let _ = writeln!(
        s,
        "<h2>Clocksource</h2><p>{} on {}.</p>",
        escape(v.clocksource.as_deref().unwrap_or("unknown")),
        escape(
            v.hypervisor
                .as_deref()
                .map_or("an unknown platform", |h| if h == "none" {
                    "bare metal"
                } else {
                    h
                })
        ),
    );
    if let Some(r) = &v.rate {
        let _ = writeln!(
            s,
            "<p>Clock-rate probe over {:.0} s on {}: the TSC at {} as CLOCK_MONOTONIC_RAW sees it; CLOCK_MONOTONIC runs {} against RAW; RAW moved {} against the TSC.</p>",
            r.window,
            escape(&r.clocksource),
            r.tsc_hz
                .map_or("unknown".into(), |hz| format!("{:.6} MHz", hz / 1e6)),
            r.monotonic_ratio
                .map_or("unknown".into(), |x| format!("{:+.3} ppm", x * 1e6)),
            secs(r.residual),
        );
    }
    s.push_str("<h2>Findings</h2>");
    if v.findings.is_empty() {
        s.push_str("<p>None.</p>\n");
    } else {
        s.push_str("<ul>\n");
        for f in &v.findings {
            let _ = writeln!(
                s,
                "<li><span class=\"{w}\">{w}</span> <code>{}</code>: {}<br><span class=\"advice\">{}</span></li>",
                escape(f.code),
                escape(&f.summary),
                escape(&f.advice),
                w = f.severity.word(),
            );
        }
        s.push_str("</ul>\n");
    }
    s.push_str("<h2>Collectors</h2><table><tr><th>collector</th><th>last scrape</th><th>detail</th></tr>\n");
    for (name, state, detail) in collectors {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(name),
            escape(state),
            escape(detail)
        );
    }
    let _ = writeln!(
        s,
        "</table>\n<p><a href=\"{}\">Metrics</a> · clock_exporter {}</p>\n</body></html>",
        escape(telemetry_path),
        escape(version)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::findings::{DaemonView, Finding, PeerView};

    fn verdict(status: Severity, peer: &str) -> Verdict {
        Verdict {
            status,
            judged: true,
            daemon: Some(DaemonView {
                daemon: "chronyd".into(),
                offset: Some(0.000_02),
                worst_case_error: Some(0.001),
                usable_sources: Some(2.0),
                reference: "192.0.2.11".into(),
                peers: vec![PeerView {
                    peer: peer.into(),
                    state: "falseticker".into(),
                    kind: "server".into(),
                    offset: Some(11.5),
                    error_bound: Some(0.001),
                }],
                ..DaemonView::default()
            }),
            clocksource: Some("kvm-clock".into()),
            hypervisor: Some("kvm".into()),
            rate: None,
            findings: vec![Finding {
                severity: Severity::Warning,
                code: "ClockPeerFalseticker",
                summary: format!("chronyd marks {peer} a falseticker"),
                evidence: vec![],
                advice: "Look at it.".into(),
            }],
        }
    }

    #[test]
    fn the_verdict_comes_first_and_outside_text_is_escaped() {
        let hostile = "<script>alert(1)</script>\"'&";
        let page = landing(
            &verdict(Severity::Warning, hostile),
            &[],
            &[("chrony".into(), "ok (0.001 s)".into(), "<b>x</b>".into())],
            "/metrics",
            "0.1.0",
        );
        let verdict_at = page.find("id=\"verdict\"").expect("verdict");
        assert!(verdict_at < page.find("<h2>").expect("sections"));
        assert!(page.contains("class=\"verdict not-trusted\""), "{page}");
        assert!(page.contains("data-status=\"1\""));
        assert!(page.contains("<strong>not trusted</strong>"));
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;"));
        assert!(!page.contains("<b>x</b>"));
        assert!(page.contains("Up to <strong>1.000 ms</strong>"));
        assert!(page.contains("Not enough scrapes yet"));
        // No JavaScript, nothing fetched: no script, no source, no outside link.
        assert!(!page.contains("src=") && !page.contains("href=\"http"));
    }

    #[test]
    fn a_chart_of_offset_and_bound() {
        let points: Vec<Point> = (0..10)
            .map(|i| Point {
                at: f64::from(i) * 15.0,
                offset: f64::from(i) * 1e-4,
                bound: 2e-3,
            })
            .collect();
        let svg = chart(&points).expect("a chart");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains("<polyline") && svg.contains("<polygon"));
        // The first point at x 0, the last at the right edge.
        assert!(svg.contains("points=\"0.0,"), "{svg}");
        assert!(svg.contains(" 600.0,"), "{svg}");
        assert!(svg.contains("+2.000 ms"), "{svg}");
        // Unknown points are left out; fewer than two known: no chart.
        let mut gaps = points.clone();
        for p in &mut gaps[1..] {
            p.offset = f64::NAN;
        }
        assert_eq!(chart(&gaps), None);
        assert_eq!(chart(&[]), None);
        // All zero: still a chart, no division by zero.
        let flat: Vec<Point> = (0..3)
            .map(|i| Point {
                at: f64::from(i),
                offset: 0.0,
                bound: f64::NAN,
            })
            .collect();
        let svg = chart(&flat).expect("a chart");
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn unknown_and_trusted_pages() {
        let mut v = verdict(Severity::Ok, "192.0.2.11");
        v.findings.clear();
        let page = landing(&v, &[], &[], "/metrics", "0.1.0");
        assert!(page.contains("class=\"verdict trusted\""));
        assert!(page.contains("Nothing found"));
        v.daemon = None;
        v.judged = false;
        let page = landing(&v, &[], &[], "/metrics", "0.1.0");
        assert!(page.contains("class=\"verdict unknown\""));
        assert!(page.contains("no time daemon answers"));
    }
}
