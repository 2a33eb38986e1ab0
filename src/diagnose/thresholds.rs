//! The thresholds the verdict and the shipped alerts share, defined once.
//! `alerts/clock-alerts.rules.yml` spells each as a literal in the alert
//! named beside it; a test reads the rule file and holds the two equal, so
//! `diagnose` and Alertmanager never judge the same fact differently.

/// `ClockOffsetTooLarge` (warning): the worst-case error, |offset| plus the
/// selected source's root distance, in seconds.
pub const WORST_CASE_WARNING: f64 = 0.05;
/// `ClockOffsetTooLarge` (critical): ntpd's step threshold, 128 ms.
pub const WORST_CASE_CRITICAL: f64 = 0.128;
/// `ClockKernelNotSynchronising`: the kernel's maxerror, seconds.
pub const KERNEL_MAXERROR: f64 = 2.0;
/// `ClockKernelFreeRunning`: the kernel's cap of maxerror, seconds.
pub const KERNEL_MAXERROR_CAP: f64 = 16.0;
/// `ClockTooFewSources`: usable sources below which a falseticker cannot
/// be outvoted.
pub const MIN_SOURCES: f64 = 3.0;
/// `ClockPeersDisagree`: the spread of the reachable sources' offsets, s.
pub const OFFSET_SPREAD: f64 = 0.1;
/// `ClockSourceSteppedAgainstTsc`: RAW against the TSC over the window, s.
pub const RAW_RESIDUAL: f64 = 0.001;
/// `ClockSourceSteppedAgainstTsc`: the shortest window that means anything, s.
pub const RAW_WINDOW: f64 = 300.0;
/// `ClockSourceMarkedUnstable`: how recent a demotion counts, s.
pub const DEMOTION_RECENT: f64 = 21600.0;

/// Each threshold with the alert whose expression spells it, for the test
/// that holds them to `alerts/clock-alerts.rules.yml`.
#[cfg(test)]
pub const IN_ALERTS: &[(&str, f64)] = &[
    ("ClockOffsetTooLarge", WORST_CASE_WARNING),
    ("ClockOffsetTooLarge", WORST_CASE_CRITICAL),
    ("ClockKernelNotSynchronising", KERNEL_MAXERROR),
    ("ClockKernelFreeRunning", KERNEL_MAXERROR_CAP),
    ("ClockTooFewSources", MIN_SOURCES),
    ("ClockPeersDisagree", OFFSET_SPREAD),
    ("ClockSourceSteppedAgainstTsc", RAW_RESIDUAL),
    ("ClockSourceSteppedAgainstTsc", RAW_WINDOW),
    ("ClockSourceMarkedUnstable", DEMOTION_RECENT),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Each alert's expressions, from the rule file (every rule of that name).
    fn expressions(rules: &str, alert: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut lines = rules.lines().peekable();
        while let Some(l) = lines.next() {
            if l.trim() != format!("- alert: {alert}") {
                continue;
            }
            let mut expr = String::new();
            for l in lines.by_ref() {
                if l.trim_start().starts_with("labels:") {
                    break;
                }
                if !l.trim_start().starts_with('#') {
                    expr.push_str(l);
                    expr.push('\n');
                }
            }
            out.push(expr);
        }
        out
    }

    /// The numbers an expression compares with.
    fn numbers(expr: &str) -> Vec<f64> {
        expr.split(|c: char| !(c.is_ascii_digit() || c == '.' || c == 'e' || c == '-'))
            .filter_map(|w| w.trim_matches('-').parse().ok())
            .collect()
    }

    #[test]
    fn every_threshold_is_the_one_its_alert_spells() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/alerts/clock-alerts.rules.yml");
        let rules = std::fs::read_to_string(path).expect("the rule file");
        for (alert, value) in IN_ALERTS {
            let exprs = expressions(&rules, alert);
            assert!(!exprs.is_empty(), "no alert {alert}");
            assert!(
                exprs.iter().any(|e| numbers(e).contains(value)),
                "{alert} does not compare with {value}: {exprs:?}"
            );
        }
    }

    #[test]
    fn the_check_would_see_a_changed_threshold() {
        assert_eq!(numbers("x > 0.05\n"), [0.05]);
        assert_eq!(numbers("a < 3 > 0"), [3.0, 0.0]);
        assert!(!numbers("instance:x > 0.051").contains(&0.05));
    }
}
