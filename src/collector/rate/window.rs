//! The arithmetic of the clock-rate probe: intervals between consecutive
//! readings, the rules that discard the ones that say nothing about the
//! clocksource, and what a window of intervals shows. Pure: readings in,
//! numbers out.
//!
//! What it measures (docs/metrics.md, "The clock-rate probe"):
//! - the TSC's frequency as CLOCK_MONOTONIC_RAW sees it: the median of the
//!   intervals' rates, so that a few steps do not move it;
//! - each interval's residual: how far RAW advanced beyond what the TSC and
//!   that frequency predict. On `tsc` it is the reading noise; on an
//!   affected kvm-clock host the host's corrections show as steps at pvclock
//!   updates (the periodic sync every 300 s); on `acpi_pm` under QEMU the
//!   host's slewing shows as a change of the frequency itself;
//! - CLOCK_MONOTONIC against RAW: the local discipline's effective frequency.
//!
//! An interval is discarded, and counted, when the clocksource changed
//! (the window starts again), when a counter went back (a migration to
//! another host, a TSC reset: the window starts again), and when RAW and
//! the TSC disagree by more than any host's discipline can cause (a pause
//! or a migration: kvm-clock stood still while the TSC ran on). Such a
//! bound, [`pause_bound`], is 0.2 s plus 500 ppm of the interval: the
//! kernel limits a clock's frequency correction to 500 ppm, and kvm-clock's
//! periodic sync lets at most 300 s of it accumulate into one step.

use std::collections::VecDeque;
use std::sync::Arc;

/// One reading of the TSC and the clocks, with the clocksource in use.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The counter.
    pub tsc: u64,
    /// CLOCK_MONOTONIC_RAW, ns.
    pub raw_ns: i64,
    /// CLOCK_MONOTONIC, ns.
    pub mono_ns: i64,
    /// The kernel's clocksource when the reading was taken.
    pub clocksource: Arc<str>,
}

/// Between two consecutive kept samples.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Interval {
    tsc: f64,
    raw: f64,
    mono: f64,
    /// RAW at its end, s.
    end: f64,
}

/// Why an interval was discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discard {
    /// The clocksource changed; the window starts again.
    ClocksourceChange,
    /// The TSC or a clock went back; the window starts again.
    Backwards,
    /// RAW and the TSC disagree beyond any discipline: a pause or migration.
    Pause,
}

impl Discard {
    /// Every reason, in the order published.
    pub const ALL: [Discard; 3] = [
        Discard::ClocksourceChange,
        Discard::Backwards,
        Discard::Pause,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Discard::ClocksourceChange => "clocksource_change",
            Discard::Backwards => "backwards",
            Discard::Pause => "pause",
        }
    }
}

/// The largest difference, in seconds, between RAW and the TSC's prediction
/// over `raw` seconds that a host's clock discipline can cause.
pub fn pause_bound(raw: f64) -> f64 {
    0.2 + 500e-6 * raw
}

/// What a window shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The clocksource the window was measured on.
    pub clocksource: Arc<str>,
    /// RAW seconds the kept intervals cover.
    pub span: f64,
    /// The TSC's frequency as RAW sees it, Hz (the intervals' median).
    pub tsc_hz: f64,
    /// The sum of the intervals' residuals, s: how far RAW ran ahead of the
    /// TSC's prediction over the window (negative: behind).
    pub residual: f64,
    /// The residual of the interval where it was largest in size, s (signed).
    pub largest_step: f64,
    /// Intervals whose residual exceeds the step threshold in size.
    pub steps: u64,
    /// CLOCK_MONOTONIC's rate against RAW, minus one.
    pub mono_ratio: f64,
}

/// A bounded window of intervals.
#[derive(Debug)]
pub struct Window {
    /// How much RAW time the window covers, s.
    length: f64,
    /// The size of a residual counted as a step, s.
    step: f64,
    last: Option<Sample>,
    intervals: VecDeque<Interval>,
    /// Intervals discarded so far, per reason (in [`Discard::ALL`]'s order).
    pub discarded: [u64; 3],
    /// Samples taken so far.
    pub samples: u64,
}

impl Window {
    /// A window of `length` seconds of RAW time, counting residuals above
    /// `step` seconds as steps.
    pub fn new(length: f64, step: f64) -> Window {
        Window {
            length,
            step,
            last: None,
            intervals: VecDeque::new(),
            discarded: [0; 3],
            samples: 0,
        }
    }

    fn discard(&mut self, why: Discard) {
        self.discarded[Discard::ALL.iter().position(|d| *d == why).expect("listed")] += 1;
        if why != Discard::Pause {
            self.intervals.clear();
        }
    }

    /// Adds a sample; returns why the interval it ends was discarded, if it was.
    pub fn push(&mut self, s: &Sample) -> Option<Discard> {
        self.samples += 1;
        let p = self.last.replace(s.clone())?;
        let why = if p.clocksource != s.clocksource {
            Some(Discard::ClocksourceChange)
        } else if s.tsc <= p.tsc || s.raw_ns <= p.raw_ns || s.mono_ns < p.mono_ns {
            Some(Discard::Backwards)
        } else {
            let iv = Interval {
                tsc: (s.tsc - p.tsc) as f64,
                raw: (i128::from(s.raw_ns) - i128::from(p.raw_ns)) as f64 * 1e-9,
                mono: (i128::from(s.mono_ns) - i128::from(p.mono_ns)) as f64 * 1e-9,
                end: s.raw_ns as f64 * 1e-9,
            };
            match self.median_hz() {
                Some(hz) if (iv.raw - iv.tsc / hz).abs() > pause_bound(iv.raw) => {
                    Some(Discard::Pause)
                }
                _ => {
                    self.intervals.push_back(iv);
                    let start = iv.end - self.length;
                    while self
                        .intervals
                        .front()
                        .is_some_and(|f| f.end - f.raw < start)
                    {
                        self.intervals.pop_front();
                    }
                    None
                }
            }
        };
        if let Some(w) = why {
            self.discard(w);
        }
        why
    }

    fn median_hz(&self) -> Option<f64> {
        let mut rates: Vec<f64> = self.intervals.iter().map(|i| i.tsc / i.raw).collect();
        if rates.is_empty() {
            return None;
        }
        // Selection, not a sort: the window is pushed to on every sample.
        let n = rates.len();
        let (below, upper, _) = rates.select_nth_unstable_by(n / 2, f64::total_cmp);
        let upper = *upper;
        Some(if n % 2 == 1 {
            upper
        } else {
            let lower = below
                .iter()
                .copied()
                .max_by(f64::total_cmp)
                .expect("n >= 2");
            f64::midpoint(lower, upper)
        })
    }

    /// What the window shows; `None` before its first interval.
    pub fn summary(&self) -> Option<Summary> {
        let hz = self.median_hz()?;
        let clocksource = self.last.as_ref()?.clocksource.clone();
        let (mut span, mut mono, mut residual, mut largest, mut steps) = (0.0, 0.0, 0.0, 0.0f64, 0);
        for i in &self.intervals {
            let r = i.raw - i.tsc / hz;
            span += i.raw;
            mono += i.mono;
            residual += r;
            if r.abs() > largest.abs() {
                largest = r;
            }
            if r.abs() > self.step {
                steps += 1;
            }
        }
        Some(Summary {
            clocksource,
            span,
            tsc_hz: hz,
            residual,
            largest_step: largest,
            steps,
            mono_ratio: mono / span - 1.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HZ: f64 = 2_596_098_000.0;

    /// A guest whose RAW follows the TSC exactly but for `step(t)`: the
    /// seconds RAW has gained by TSC time `t`.
    fn samples(
        n: usize,
        every: f64,
        cs: &str,
        step: impl Fn(f64) -> f64,
        mono_ppm: f64,
    ) -> Vec<Sample> {
        let cs: Arc<str> = cs.into();
        (0..n)
            .map(|k| {
                let t = 100.0 + k as f64 * every;
                let raw = t + step(t);
                Sample {
                    tsc: (t * HZ) as u64,
                    raw_ns: (raw * 1e9) as i64,
                    mono_ns: (raw * (1.0 + mono_ppm * 1e-6) * 1e9) as i64,
                    clocksource: cs.clone(),
                }
            })
            .collect()
    }

    fn run(w: &mut Window, s: &[Sample]) -> Vec<Option<Discard>> {
        s.iter().map(|s| w.push(s)).collect()
    }

    #[test]
    fn a_tsc_clocksource_shows_its_frequency_and_no_residual() {
        let mut w = Window::new(900.0, 20e-6);
        assert!(w.summary().is_none());
        run(&mut w, &samples(200, 10.0, "tsc", |_| 0.0, 0.0));
        let s = w.summary().expect("summary");
        assert!((s.tsc_hz - HZ).abs() < 1.0, "{}", s.tsc_hz);
        assert!(s.residual.abs() < 1e-6, "{}", s.residual);
        assert_eq!(s.steps, 0);
        // 900 s of RAW: the window keeps 90 intervals, not 199.
        assert!((s.span - 900.0).abs() <= 10.0, "{}", s.span);
        assert_eq!(&*s.clocksource, "tsc");
        assert_eq!(w.samples, 200);
        assert_eq!(w.discarded, [0, 0, 0]);
    }

    #[test]
    fn the_frequency_is_the_median_of_the_intervals() {
        let at = |tsc: u64, s: i64| Sample {
            tsc,
            raw_ns: s * 1_000_000_000,
            mono_ns: s * 1_000_000_000,
            clocksource: "tsc".into(),
        };
        let mut w = Window::new(900.0, 20e-6);
        // Intervals of 1 s at 1.0, then 1.2 GHz: an even count, the midpoint.
        for s in [at(0, 1), at(1_000_000_000, 2), at(2_200_000_000, 3)] {
            assert_eq!(w.push(&s), None);
        }
        assert_eq!(w.summary().expect("summary").tsc_hz, 1.1e9);
        // A third interval at 1.1 GHz: odd, the middle one.
        w.push(&at(3_300_000_000, 4));
        assert_eq!(w.summary().expect("summary").tsc_hz, 1.1e9);
        w.push(&at(4_450_000_000, 5));
        assert_eq!(w.summary().expect("summary").tsc_hz, 1.125e9);
    }

    #[test]
    fn an_affected_kvm_clock_steps_every_300_s() {
        // The host's discipline leaks +3 ms into RAW at each periodic
        // kvmclock sync (every 300 s); 20 minutes of samples every 10 s.
        let mut w = Window::new(900.0, 20e-6);
        let step = |t: f64| ((t - 100.0) / 300.0).floor() * 3e-3;
        let discards = run(&mut w, &samples(121, 10.0, "kvm-clock", step, 0.0));
        assert!(discards.iter().all(Option::is_none), "{discards:?}");
        let s = w.summary().expect("summary");
        // The steps do not move the median's frequency.
        assert!((s.tsc_hz - HZ).abs() < 1.0, "{}", s.tsc_hz);
        assert_eq!(s.steps, 3, "{s:?}");
        assert!((s.residual - 9e-3).abs() < 1e-6, "{}", s.residual);
        assert!((s.largest_step - 3e-3).abs() < 1e-6, "{}", s.largest_step);
    }

    #[test]
    fn a_slewed_acpi_pm_shows_as_a_frequency() {
        // acpi_pm reads the host's slewed CLOCK_MONOTONIC: +50 ppm against
        // the TSC, smoothly: no steps, and a frequency 50 ppm lower.
        let mut w = Window::new(900.0, 20e-6);
        run(&mut w, &samples(100, 10.0, "acpi_pm", |t| t * 50e-6, 0.0));
        let s = w.summary().expect("summary");
        assert_eq!(s.steps, 0);
        let ppm = (s.tsc_hz / HZ - 1.0) * 1e6;
        assert!((ppm + 50.0).abs() < 0.01, "{ppm}");
    }

    #[test]
    fn a_pause_is_discarded_not_reported() {
        // RAW stood still for 5 s while the TSC ran on.
        let mut w = Window::new(900.0, 20e-6);
        let paused = |t: f64| if t > 400.0 { -5.0 } else { 0.0 };
        let discards = run(&mut w, &samples(60, 10.0, "kvm-clock", paused, 0.0));
        assert_eq!(
            discards
                .iter()
                .filter(|d| **d == Some(Discard::Pause))
                .count(),
            1
        );
        assert_eq!(w.discarded, [0, 0, 1]);
        let s = w.summary().expect("summary");
        assert!(s.residual.abs() < 1e-6, "{s:?}");
        assert_eq!(s.steps, 0);
        // A pvclock step of 0.15 s (500 ppm over 300 s) is still a step.
        let mut w = Window::new(900.0, 20e-6);
        let big = |t: f64| if t > 400.0 { 0.15 } else { 0.0 };
        run(&mut w, &samples(60, 10.0, "kvm-clock", big, 0.0));
        assert_eq!(w.discarded, [0, 0, 0]);
        assert_eq!(w.summary().expect("summary").steps, 1);
    }

    #[test]
    fn a_migration_and_a_clocksource_change_start_again() {
        let mut w = Window::new(900.0, 20e-6);
        let mut s = samples(30, 10.0, "kvm-clock", |_| 0.0, 0.0);
        // The new host's TSC is lower: the counter went back.
        for x in &mut s[20..] {
            x.tsc -= (200.0 * HZ) as u64;
        }
        let d = run(&mut w, &s);
        assert_eq!(d[20], Some(Discard::Backwards));
        let kept = w.summary().expect("summary");
        assert!((kept.span - 90.0).abs() < 1e-6, "{kept:?}");
        let mut more = samples(40, 10.0, "tsc", |_| 0.0, 0.0);
        let last = w.last.clone().expect("a sample");
        for x in &mut more {
            x.tsc += last.tsc;
            x.raw_ns += last.raw_ns;
            x.mono_ns += last.mono_ns;
        }
        let d = run(&mut w, &more);
        assert_eq!(d[0], Some(Discard::ClocksourceChange));
        assert_eq!(w.discarded, [1, 1, 0]);
        let s = w.summary().expect("summary");
        assert_eq!(&*s.clocksource, "tsc");
        assert!((s.span - 390.0).abs() < 1e-6, "{s:?}");
    }

    #[test]
    fn monotonic_against_raw_is_the_disciplines_frequency() {
        // chronyd or ntpd runs the clock 12.5 ppm fast.
        let mut w = Window::new(900.0, 20e-6);
        run(&mut w, &samples(50, 10.0, "tsc", |_| 0.0, 12.5));
        let s = w.summary().expect("summary");
        assert!((s.mono_ratio - 12.5e-6).abs() < 1e-9, "{}", s.mono_ratio);
        // adjtimex would say so: freq 12.5 ppm (16-bit fraction), nominal
        // tick, no offset left to slew, so no phase-correction term.
        let t = crate::sys::adjtimex::RawTimex {
            freq: (12.5 * 65536.0) as i64,
            tick: 10_000,
            ..Default::default()
        };
        let reading = crate::collector::timex::Reading::from_raw(&t, 0, 100);
        assert!(
            (s.mono_ratio - reading.effective_frequency_ratio).abs() <= phase_correction(&t) + 1e-9
        );
        // With an offset being slewed (kernel PLL: offset / 2^(SHIFT_PLL +
        // time constant) per second), the rate differs by at most that term.
        let slewing = crate::sys::adjtimex::RawTimex {
            offset: 8_000,
            constant: 2,
            ..t
        };
        let term = phase_correction(&slewing);
        assert!((term - 8e-3 / 2f64.powi(2 + 2 + 4)).abs() < 1e-12, "{term}");
        let mut w = Window::new(900.0, 20e-6);
        run(
            &mut w,
            &samples(50, 10.0, "tsc", |_| 0.0, 12.5 + term * 1e6),
        );
        let s = w.summary().expect("summary");
        let reading = crate::collector::timex::Reading::from_raw(&slewing, 0, 100);
        assert!((s.mono_ratio - reading.effective_frequency_ratio).abs() <= term + 1e-9);
    }

    /// The kernel PLL's phase correction, as a rate: `offset >> (SHIFT_PLL
    /// + time_constant)` per second (kernel/time/ntp.c), where the time
    /// constant is `constant + 4` unless STA_NANO.
    fn phase_correction(t: &crate::sys::adjtimex::RawTimex) -> f64 {
        const STA_NANO: i32 = 0x2000;
        let (offset, tc) = if t.status & STA_NANO != 0 {
            (t.offset as f64 * 1e-9, t.constant)
        } else {
            (t.offset as f64 * 1e-6, t.constant + 4)
        };
        offset.abs() / 2f64.powi(2 + tc as i32)
    }

    proptest! {
        #[test]
        fn any_samples_never_panic(
            raw in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>(), any::<bool>()), 0..64)
        ) {
            let mut w = Window::new(900.0, 20e-6);
            for (tsc, r, m, other) in raw {
                w.push(&Sample { tsc, raw_ns: r, mono_ns: m, clocksource: if other { "a".into() } else { "b".into() } });
                let _ = w.summary();
            }
        }
    }
}
