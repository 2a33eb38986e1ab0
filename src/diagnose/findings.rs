//! The verdict: findings from one scrape's families, judged with the
//! alerts' thresholds ([`super::thresholds`]). Pure: families and the time
//! in, findings out.

use std::fmt::Write as _;

use super::thresholds as th;
use crate::collector::{clocksource, kmsg, rate, timex};
use crate::metrics::{Desc, Family, LabelValue, Sample, find};
use crate::model;
use crate::scrape;

/// How bad a finding is; also the Nagios status of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing wrong.
    Ok,
    /// Worth knowing; not a problem by itself.
    Info,
    /// The clock cannot be fully trusted.
    Warning,
    /// The clock's time is wrong, or unknown where it must be known.
    Critical,
}

impl Severity {
    /// The word, as Nagios and the JSON schema spell it.
    pub fn word(self) -> &'static str {
        match self {
            Severity::Ok => "OK",
            Severity::Info => "INFO",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One thing the verdict found.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// A stable identifier (the JSON schema's `code`), and the alert that
    /// judges the same thing where there is one.
    pub code: &'static str,
    /// One sentence.
    pub summary: String,
    /// The values, peers and sources it rests on.
    pub evidence: Vec<String>,
    /// What to do, with its caveats.
    pub advice: String,
}

/// The limits a verdict judges with: the alerts' by default; the Nagios
/// flags may change them, as `check_ntp_peer`'s do.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Worst-case error, warning and critical, seconds.
    pub offset: (f64, f64),
    /// The daemon's jitter, warning and critical, seconds; none by default.
    pub jitter: (Option<f64>, Option<f64>),
    /// The daemon's stratum, warning and critical; none by default.
    pub stratum: (Option<f64>, Option<f64>),
    /// Usable sources below which it is a warning, and a critical.
    pub sources: (f64, f64),
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            offset: (th::WORST_CASE_WARNING, th::WORST_CASE_CRITICAL),
            jitter: (None, None),
            stratum: (None, None),
            sources: (th::MIN_SOURCES, 1.0),
        }
    }
}

/// One peer as the verdict shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerView {
    /// Its address or name.
    pub peer: String,
    /// Its selection state.
    pub state: String,
    /// What it is: server, peer, pool, refclock or local.
    pub kind: String,
    /// Its offset, s (positive: the peer is ahead).
    pub offset: Option<f64>,
    /// Its error bound, s.
    pub error_bound: Option<f64>,
}

/// The daemon the verdict is about, with what bounds its error.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonView {
    /// `ntpd` or `chronyd`.
    pub daemon: String,
    /// Its offset, s (positive: the reference is ahead of this clock).
    pub offset: Option<f64>,
    /// Its worst-case error, s.
    pub worst_case_error: Option<f64>,
    /// Usable sources.
    pub usable_sources: Option<f64>,
    /// Stratum.
    pub stratum: Option<f64>,
    /// Jitter, s.
    pub jitter: Option<f64>,
    /// Its reference (selected source).
    pub reference: String,
    /// Its peers.
    pub peers: Vec<PeerView>,
}

/// What the clock-rate probe measured, when it has a window.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RateView {
    /// The clocksource it was measured on.
    pub clocksource: String,
    /// RAW seconds its window covers.
    pub window: f64,
    /// The TSC's frequency as RAW sees it, Hz.
    pub tsc_hz: Option<f64>,
    /// CLOCK_MONOTONIC against RAW, minus one.
    pub monotonic_ratio: Option<f64>,
    /// RAW's residual against the TSC over the window, s.
    pub residual: Option<f64>,
}

/// The whole verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The worst severity found (`Ok` when nothing is).
    pub status: Severity,
    /// Whether the verdict could judge the time at all: false when no
    /// daemon answers (the Nagios status is then UNKNOWN unless something
    /// critical was found).
    pub judged: bool,
    /// The daemon, if one answers.
    pub daemon: Option<DaemonView>,
    /// The clocksource in use.
    pub clocksource: Option<String>,
    /// The hypervisor, as the clocksource collector names it.
    pub hypervisor: Option<String>,
    /// The clock-rate probe's window, if it has one.
    pub rate: Option<RateView>,
    /// Every finding, the worst first.
    pub findings: Vec<Finding>,
}

/// Reads one scrape's families.
pub(super) struct View<'a>(pub(super) &'a [Family]);

impl<'a> View<'a> {
    fn samples(&self, d: &'static Desc) -> impl Iterator<Item = &'a Sample> + use<'a> {
        find(self.0, d).into_iter().flat_map(|f| f.samples.iter())
    }

    /// The value of `d` whose labels named in `want` have those values.
    pub(super) fn value(&self, d: &'static Desc, want: &[(&str, &str)]) -> Option<f64> {
        self.samples(d)
            .find(|s| want.iter().all(|(k, v)| label(d, s, k) == Some(*v)))
            .map(|s| s.value)
    }
}

fn label<'s>(d: &Desc, s: &'s Sample, name: &str) -> Option<&'s str> {
    let i = d.labels.iter().position(|l| *l == name)?;
    s.label_values.get(i).map(LabelValue::as_str)
}

/// A duration for a person: µs, ms, s or hours.
pub(super) fn secs(v: f64) -> String {
    let a = v.abs();
    if a >= 7200.0 {
        format!("{:.1} h", v / 3600.0)
    } else if a >= 1.0 {
        format!("{v:.3} s")
    } else if a >= 1e-3 {
        format!("{:.3} ms", v * 1e3)
    } else {
        format!("{:.1} µs", v * 1e6)
    }
}

/// [`secs`], or `unknown` for a value that is missing or not a number.
pub(super) fn opt_secs(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or_else(|| "unknown".to_owned(), secs)
}

/// The daemon that answers: the first with `clock_daemon_up` 1.
pub(super) fn first_daemon<'a>(v: &View<'a>) -> Option<&'a str> {
    let up = v.samples(&model::DAEMON_UP).find(|s| s.value == 1.0)?;
    label(&model::DAEMON_UP, up, "daemon")
}

/// What the verdict shows of the daemon that answers.
fn daemon_view(v: &View<'_>) -> Option<DaemonView> {
    let daemon = first_daemon(v)?.to_owned();
    let d = daemon.as_str();
    let by = [("daemon", d)];
    let reference = v
        .samples(&model::SYNC_INFO)
        .find(|s| label(&model::SYNC_INFO, s, "daemon") == Some(d))
        .and_then(|s| label(&model::SYNC_INFO, s, "reference"))
        .unwrap_or("")
        .to_owned();
    let mut peers: Vec<PeerView> = v
        .samples(&model::PEER_STATE)
        .filter(|s| s.value == 1.0 && label(&model::PEER_STATE, s, "daemon") == Some(d))
        .filter_map(|s| {
            let peer = label(&model::PEER_STATE, s, "peer")?;
            let state = label(&model::PEER_STATE, s, "state")?;
            let key = [("daemon", d), ("peer", peer)];
            let kind = v
                .samples(&model::PEER_INFO)
                .find(|i| {
                    label(&model::PEER_INFO, i, "daemon") == Some(d)
                        && label(&model::PEER_INFO, i, "peer") == Some(peer)
                })
                .and_then(|i| label(&model::PEER_INFO, i, "kind"))
                .unwrap_or("");
            Some(PeerView {
                peer: peer.to_owned(),
                state: state.to_owned(),
                kind: kind.to_owned(),
                offset: v.value(&model::PEER_OFFSET, &key),
                error_bound: v.value(&model::PEER_ERROR_BOUND, &key),
            })
        })
        .collect();
    peers.sort_by(|a, b| a.peer.cmp(&b.peer));
    Some(DaemonView {
        offset: v.value(&model::SYNC_OFFSET, &by),
        worst_case_error: v.value(&model::WORST_CASE_ERROR, &by),
        usable_sources: v.value(&model::USABLE_SOURCES, &by),
        stratum: v.value(&model::SYNC_STRATUM, &by),
        jitter: v.value(&model::SYNC_JITTER, &by),
        reference,
        peers,
        daemon,
    })
}

fn peer_line(p: &PeerView) -> String {
    let mut s = format!("{} {}", p.peer, p.state);
    if let Some(o) = p.offset {
        let _ = write!(s, ", offset {}", secs(o));
    }
    if let Some(b) = p.error_bound {
        let _ = write!(s, " ± {}", secs(b));
    }
    s
}

const KVM_ADVICE: &str = "Modern hosts (Linux 5.5 and later, on a TSC clocksource with the master clock) feed kvm-clock from their raw clock and are not affected. On an older host, where the guest's TSC is invariant (constant_tsc and nonstop_tsc), boot the guest with no-kvmclock no-kvmclock-vsyscall (or clocksource=tsc); without an invariant TSC that falls back to acpi_pm, which re-couples the guest to the host's slewing; no-kvmclock also loses ptp_kvm, the guest's direct view of its host. An NTP server needs 3 or 4 sources either way, so its clients can outvote it.";

/// The verdict on one scrape, at Unix time `now`, with `limits`.
pub fn verdict(families: &[Family], now: f64, limits: &Limits) -> Verdict {
    let v = View(families);
    let mut out = Vec::new();
    let daemon = daemon_view(&v);
    let clocksource = v
        .samples(&clocksource::CURRENT)
        .next()
        .and_then(|s| label(&clocksource::CURRENT, s, "clocksource"))
        .map(str::to_owned);
    let hypervisor = v
        .samples(&clocksource::VIRTUALIZATION)
        .next()
        .and_then(|s| label(&clocksource::VIRTUALIZATION, s, "hypervisor"))
        .map(str::to_owned);
    match &daemon {
        None => {
            let seen: Vec<String> = v
                .samples(&model::DAEMON_UP)
                .filter_map(|s| label(&model::DAEMON_UP, s, "daemon"))
                .map(|d| format!("{d} does not answer"))
                .collect();
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockNoDaemon",
                summary: "No time daemon answers: neither ntpd, chronyd nor systemd-timesyncd, so nothing says how far this clock is from true time.".into(),
                evidence: seen,
                advice: "Start the host's NTP daemon, or point the exporter at it (--collector.ntpd.address, --collector.chrony.address or .socket, --collector.timesyncd.bus-address).".into(),
            });
        }
        Some(d) => daemon_findings(&v, d, limits, &mut out),
    }
    kernel_findings(&v, &mut out);
    clocksource_findings(
        &v,
        daemon.as_ref(),
        clocksource.as_deref(),
        hypervisor.as_deref(),
        now,
        &mut out,
    );
    for s in v.samples(&scrape::SUCCESS).filter(|s| s.value == 0.0) {
        let c = label(&scrape::SUCCESS, s, "collector").unwrap_or("?");
        out.push(Finding {
            severity: Severity::Warning,
            code: "ClockCollectorFailing",
            summary: format!("The {c} collector failed: its facts are missing from this verdict."),
            evidence: vec![format!(
                "clock_scrape_collector_success{{collector=\"{c}\"}} 0"
            )],
            advice: "Run with --log.level=debug to see why.".into(),
        });
    }
    out.sort_by_key(|f| std::cmp::Reverse(f.severity));
    let status = out.first().map_or(Severity::Ok, |f| f.severity);
    let rate = v.samples(&rate::WINDOW).next().map(|s| {
        let cs = label(&rate::WINDOW, s, "clocksource").unwrap_or("");
        let by = [("clocksource", cs)];
        RateView {
            clocksource: cs.to_owned(),
            window: s.value,
            tsc_hz: v.value(&rate::TSC_FREQUENCY, &by),
            monotonic_ratio: v.value(&rate::MONOTONIC_RATIO, &by),
            residual: v.value(&rate::RESIDUAL, &by),
        }
    });
    Verdict {
        rate,
        status: if status == Severity::Info {
            Severity::Ok
        } else {
            status
        },
        judged: daemon.is_some(),
        daemon,
        clocksource,
        hypervisor,
        findings: out,
    }
}

fn daemon_findings(v: &View<'_>, d: &DaemonView, limits: &Limits, out: &mut Vec<Finding>) {
    let by = [("daemon", d.daemon.as_str())];
    let peers: Vec<String> = d.peers.iter().map(peer_line).collect();
    if let Some(p) = d
        .peers
        .iter()
        .find(|p| p.state == "selected" && p.kind == "local")
    {
        out.push(Finding {
            severity: Severity::Warning,
            code: "ClockSourceFreeRunning",
            summary: format!(
                "{} follows its own local clock ({}): nothing disciplines the time it keeps, or serves to its clients.",
                d.daemon, p.peer
            ),
            evidence: peers.clone(),
            advice: "Give it real sources; keep a local clock only as a last resort, at a stratum its clients will not prefer.".into(),
        });
    }
    selection_findings(v, d, limits, &peers, out);
    peer_signal_findings(v, d, out);
    // After the selection's findings: among warnings, the more specific
    // one (a named falseticker) heads the Nagios line.
    if v.value(&model::SYNC_LEAP, &by) == Some(3.0) {
        out.push(Finding {
            severity: Severity::Warning,
            code: "ClockNotSynchronising",
            summary: format!(
                "{} says it is not synchronised (leap indicator 3).",
                d.daemon
            ),
            evidence: peers.clone(),
            advice: "See why its sources are not usable: unreachable, rejected, or disagreeing."
                .into(),
        });
    }
    limit_findings(d, limits, peers, out);
}

/// What single sources announce that their daemon may not act on yet: a
/// leap second the majority does not announce (ClockPeerRogueLeap), and
/// packets no longer authentic from a source configured for
/// authentication (ClockPeerAuthenticationFailing). One scrape, so no
/// alert's `for:`: the finding says what is true now.
fn peer_signal_findings(v: &View<'_>, d: &DaemonView, out: &mut Vec<Finding>) {
    let daemon = d.daemon.as_str();
    let leaps: Vec<(&str, f64)> = v
        .samples(&model::PEER_LEAP)
        .filter(|s| label(&model::PEER_LEAP, s, "daemon") == Some(daemon))
        .filter_map(|s| Some((label(&model::PEER_LEAP, s, "peer")?, s.value)))
        .collect();
    let synchronised = leaps.iter().filter(|(_, l)| *l < 3.0).count();
    let announcing: Vec<&(&str, f64)> = leaps
        .iter()
        .filter(|(_, l)| *l == 1.0 || *l == 2.0)
        .collect();
    if !announcing.is_empty() && announcing.len() * 2 < synchronised {
        for (peer, leap) in announcing {
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockPeerRogueLeap",
                summary: format!(
                    "{peer}, a source of {daemon}, announces a leap second ({}) that most of its other synchronised sources do not.",
                    if *leap == 1.0 { "insert" } else { "delete" }
                ),
                evidence: leaps.iter().map(|(p, l)| format!("{p} leap {l}")).collect(),
                advice: format!("No leap second is scheduled: {peer}'s flag is rogue. Remove or noselect it until its operator fixes it, and give the daemon a current leap-seconds file."),
            });
        }
    }
    for s in v.samples(&model::PEER_AUTH_INFO) {
        let (Some(peer), Some(mode)) = (
            label(&model::PEER_AUTH_INFO, s, "peer"),
            label(&model::PEER_AUTH_INFO, s, "mode"),
        ) else {
            continue;
        };
        if label(&model::PEER_AUTH_INFO, s, "daemon") != Some(daemon) || mode == "none" {
            continue;
        }
        let key = [("daemon", daemon), ("peer", peer)];
        if v.value(&model::PEER_AUTHENTICATED, &key) == Some(0.0) {
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockPeerAuthenticationFailing",
                summary: format!(
                    "{daemon} is configured to authenticate {peer} ({mode}), but its packets are not authentic: it does not use the source."
                ),
                evidence: vec![format!(
                    "clock_peer_authenticated{{daemon=\"{daemon}\",peer=\"{peer}\"}} 0"
                )],
                advice: "Check the key on both sides, or for NTS the server's key-establishment port (4460) and certificate; see the runbook's ClockPeerAuthenticationFailing.".into(),
            });
        }
    }
}

/// No usable source: the offset is unknown, and why (Nagios' "Offset
/// unknown", explained).
fn no_source(v: &View<'_>, d: &DaemonView, peers: &[String]) -> Finding {
    let by = [("daemon", d.daemon.as_str())];
    let spread = v.value(&model::SOURCE_OFFSET_SPREAD, &by);
    let states = d
        .peers
        .iter()
        .map(|p| format!("{} {}", p.peer, p.state))
        .collect::<Vec<_>>()
        .join(", ");
    // How far they disagree goes in the one sentence Nagios shows.
    let disagree = spread.filter(|s| *s > 0.0).map_or(String::new(), |s| {
        format!("; the reachable ones' offsets spread over {}", secs(s))
    });
    Finding {
        severity: Severity::Critical,
        code: "ClockNoUsableSource",
        summary: format!(
            "{} has no usable source, so its offset is unknown: {}.",
            d.daemon,
            if d.peers.is_empty() {
                "it has no sources at all".to_owned()
            } else {
                format!("none of its sources can bound its error ({states}){disagree}")
            }
        ),
        evidence: peers.to_vec(),
        advice: "With two sources that disagree there is no majority and both are dropped: give the daemon 3 or 4 independent sources, and find the one that is wrong (the one farthest from the others).".into(),
    }
}

/// What the daemon's selection says: no usable source, the error,
/// falsetickers, disagreement, too few sources.
fn selection_findings(
    v: &View<'_>,
    d: &DaemonView,
    limits: &Limits,
    peers: &[String],
    out: &mut Vec<Finding>,
) {
    let by = [("daemon", d.daemon.as_str())];
    let usable = d.usable_sources.unwrap_or(0.0);
    if usable < limits.sources.1 {
        out.push(no_source(v, d, peers));
    } else {
        if let Some(w) = d.worst_case_error {
            let (warn, crit) = limits.offset;
            let sev = if w > crit {
                Some(Severity::Critical)
            } else if w > warn {
                Some(Severity::Warning)
            } else {
                None
            };
            if let Some(severity) = sev {
                out.push(Finding {
                    severity,
                    code: "ClockOffsetTooLarge",
                    summary: format!(
                        "This clock may be up to {} from true time (|offset| {} plus the root distance of {}), beyond the {} limit.",
                        secs(w),
                        opt_secs(d.offset.map(f64::abs)),
                        if d.reference.is_empty() { "its reference" } else { d.reference.as_str() },
                        secs(if severity == Severity::Critical { crit } else { warn })
                    ),
                    evidence: peers.to_vec(),
                    advice: "Check the daemon's sources and whether something else steers the clock (a hypervisor, a second daemon).".into(),
                });
            }
        }
        for p in d.peers.iter().filter(|p| p.state == "falseticker") {
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockPeerFalseticker",
                summary: format!(
                    "{} marks {} a falseticker: it disagrees with the majority of its sources{}.",
                    d.daemon,
                    p.peer,
                    p.offset.map_or(String::new(), |o| format!(" by {}", secs(o)))
                ),
                evidence: vec![peer_line(p)],
                advice: format!("Look at {} itself: its clock, its sources, and whether it is a KVM guest on kvm-clock dragged by its host.", p.peer),
            });
        }
        let gap = v.value(&model::SOURCE_INTERVAL_GAP, &by).unwrap_or(0.0);
        let spread = v.value(&model::SOURCE_OFFSET_SPREAD, &by).unwrap_or(0.0);
        if gap > 0.0 || spread > th::OFFSET_SPREAD {
            let outlier = v
                .samples(&model::OUTLIER_SOURCE_OFFSET)
                .find(|s| {
                    label(&model::OUTLIER_SOURCE_OFFSET, s, "daemon") == Some(d.daemon.as_str())
                })
                .map(|s| {
                    (
                        label(&model::OUTLIER_SOURCE_OFFSET, s, "peer")
                            .unwrap_or("?")
                            .to_owned(),
                        s.value,
                    )
                });
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockPeersDisagree",
                summary: format!(
                    "The sources disagree (their intervals are {} apart, their offsets spread over {}){}.",
                    secs(gap),
                    secs(spread),
                    outlier.as_ref().map_or(String::new(), |(p, o)| format!("; the farthest is {p}, at {}", secs(*o)))
                ),
                evidence: peers.to_vec(),
                advice: "One of them is wrong; the majority decides only with 3 or more sources.".into(),
            });
        }
        if d.daemon == model::Daemon::Timesyncd.label() {
            // One server at a time, no selection: not a fault of this
            // host's configuration, and not what ClockTooFewSources pages.
            out.push(Finding {
                severity: Severity::Info,
                code: "ClockSingleSourceDaemon",
                summary: "timesyncd uses one server at a time and has no selection: it follows that server, right or wrong.".into(),
                evidence: peers.to_vec(),
                advice: "Where a wrong server must be outvoted, run chrony or ntpd with 3 or 4 sources.".into(),
            });
        } else if usable < limits.sources.0 {
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockTooFewSources",
                summary: format!(
                    "{} has {usable} usable source(s): fewer than {} cannot outvote a falseticker.",
                    d.daemon, limits.sources.0
                ),
                evidence: peers.to_vec(),
                advice: "Configure 3 or 4 independent sources (4 survive the loss of one).".into(),
            });
        }
    }
}

/// The limits only the flags set (jitter, stratum), as check_ntp_peer
/// judges them.
fn limit_findings(d: &DaemonView, limits: &Limits, peers: Vec<String>, out: &mut Vec<Finding>) {
    let judge =
        |value: Option<f64>, (warn, crit): (Option<f64>, Option<f64>)| -> Option<Severity> {
            let x = value?;
            if crit.is_some_and(|c| x > c) {
                Some(Severity::Critical)
            } else if warn.is_some_and(|w| x > w) {
                Some(Severity::Warning)
            } else {
                None
            }
        };
    if let Some(severity) = judge(d.jitter, limits.jitter) {
        out.push(Finding {
            severity,
            code: "jitter",
            summary: format!(
                "{}'s jitter is {}, beyond the limit given.",
                d.daemon,
                opt_secs(d.jitter)
            ),
            evidence: peers.clone(),
            advice: "A noisy network path or an overloaded host; prefer closer sources.".into(),
        });
    }
    if let Some(severity) = judge(d.stratum, limits.stratum) {
        out.push(Finding {
            severity,
            code: "stratum",
            summary: format!(
                "{}'s stratum is {}, beyond the limit given.",
                d.daemon,
                d.stratum.unwrap_or(0.0)
            ),
            evidence: peers,
            advice: "Use sources closer to a reference clock.".into(),
        });
    }
}

fn kernel_findings(v: &View<'_>, out: &mut Vec<Finding>) {
    let Some(maxerror) = v.value(&timex::MAXERROR, &[]) else {
        return;
    };
    let unsync = v.value(&timex::STATUS_FLAG, &[("flag", "STA_UNSYNC")]) == Some(1.0);
    if maxerror >= th::KERNEL_MAXERROR_CAP && unsync {
        out.push(Finding {
            severity: Severity::Warning,
            code: "ClockKernelFreeRunning",
            summary: format!("Nothing has disciplined the kernel clock for hours: maxerror is at its cap ({}) and STA_UNSYNC is set.", secs(maxerror)),
            evidence: vec![format!("clock_timex_maxerror_seconds {maxerror}")],
            advice: "Start or repair the time daemon; check that it may set the clock (chronyd without -x, ntpd without 'disable ntp').".into(),
        });
    } else if maxerror > th::KERNEL_MAXERROR {
        out.push(Finding {
            severity: Severity::Warning,
            code: "ClockKernelNotSynchronising",
            summary: format!("The kernel's maximum error is {}: nothing has updated the kernel clock for a while.", secs(maxerror)),
            evidence: vec![format!("clock_timex_maxerror_seconds {maxerror}")],
            advice: "The kernel adds 500 µs/s while nobody updates it; see whether the daemon runs and may discipline the clock.".into(),
        });
    }
}

fn clocksource_findings(
    v: &View<'_>,
    daemon: Option<&DaemonView>,
    clocksource: Option<&str>,
    hypervisor: Option<&str>,
    now: f64,
    out: &mut Vec<Finding>,
) {
    let kvm = hypervisor == Some("kvm");
    let serving = v.samples(&model::SERVER_REQUESTS).any(|s| s.value > 0.0);
    if kvm && clocksource == Some("kvm-clock") {
        let suspect = daemon.is_some_and(|d| d.peers.iter().any(|p| p.state == "falseticker"));
        out.push(Finding {
            severity: Severity::Info,
            code: if serving { "ClockNtpServerOnKvmClock" } else { "kvm_clock" },
            summary: format!(
                "This is a KVM guest on kvm-clock{}: on an older host its clock can be pulled by the host's own discipline.",
                if serving { " that serves NTP clients" } else { "" }
            ),
            evidence: {
                let mut e = vec!["clocksource kvm-clock, hypervisor kvm".to_owned()];
                if suspect {
                    e.push("its daemon also marks a source falseticker".into());
                }
                e
            },
            advice: KVM_ADVICE.into(),
        });
    }
    if kvm && clocksource == Some("acpi_pm") {
        out.push(Finding {
            severity: Severity::Warning,
            code: "ClockSourceAcpiPmOnKvm",
            summary: "This KVM guest runs on acpi_pm, which reads the host's NTP-slewed clock: the host's discipline leaks into this one.".into(),
            evidence: vec!["clocksource acpi_pm, hypervisor kvm".into()],
            advice: "If the TSC is invariant, boot with clocksource=tsc (tsc=reliable if the watchdog demotes it); otherwise go back to kvm-clock on a modern host.".into(),
        });
    }
    for s in v.samples(&rate::RESIDUAL) {
        let cs = label(&rate::RESIDUAL, s, "clocksource").unwrap_or("");
        let window = v
            .value(&rate::WINDOW, &[("clocksource", cs)])
            .unwrap_or(0.0);
        let tsc_demoted = v
            .value(&kmsg::UNSTABLE, &[("clocksource", "tsc")])
            .is_some_and(|n| n > 0.0);
        if matches!(cs, "kvm-clock" | "acpi_pm")
            && s.value.abs() > th::RAW_RESIDUAL
            && window >= th::RAW_WINDOW
            && !tsc_demoted
        {
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockSourceSteppedAgainstTsc",
                summary: format!(
                    "CLOCK_MONOTONIC_RAW on {cs} moved {} against the TSC over {}: the host's discipline leaks into this guest.",
                    secs(s.value),
                    secs(window)
                ),
                evidence: vec![format!(
                    "{} step(s), the largest {}",
                    v.value(&rate::STEPS, &[("clocksource", cs)]).unwrap_or(0.0),
                    opt_secs(v.value(&rate::LARGEST_STEP, &[("clocksource", cs)]))
                )],
                advice: KVM_ADVICE.into(),
            });
        }
    }
    for s in v.samples(&kmsg::LAST_UNSTABLE) {
        let ago = now - s.value;
        if ago < th::DEMOTION_RECENT {
            let cs = label(&kmsg::LAST_UNSTABLE, s, "clocksource").unwrap_or("?");
            out.push(Finding {
                severity: Severity::Warning,
                code: "ClockSourceMarkedUnstable",
                summary: format!("The kernel marked clocksource {cs} unstable {} ago and switched away from it.", secs(ago)),
                evidence: vec![format!("the kernel log's record, about {} ago", secs(ago))],
                advice: "In a VM an overcommitted host or a migration makes the watchdog see skew; tsc=reliable only where the TSC is known to be invariant.".into(),
            });
        }
    }
}
