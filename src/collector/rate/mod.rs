//! The clock-rate probe: the kernel's clocks against the CPU's time-stamp
//! counter, measured in the guest itself, so a hypervisor's pull on the
//! clocksource shows directly instead of through NTP offsets.
//!
//! A background thread (`clock-rate`, pinned to one CPU) takes a reading
//! every `--collector.rate.interval` (the tightest of several `rdtscp` /
//! CLOCK_MONOTONIC_RAW / CLOCK_MONOTONIC / `rdtscp` sandwiches) and keeps a
//! window of `--collector.rate.window` RAW seconds ([`window`] has the
//! arithmetic and the discard rules). A scrape only reads the window's
//! summary. The probe runs where the TSC can be trusted as a reference:
//! x86_64 with `rdtscp` and `constant_tsc` (not `nonstop_tsc`, which a guest
//! still on kvm-clock usually lacks); elsewhere it says why once and
//! publishes only `clock_rate_tsc_usable 0`.

pub(crate) mod window;

use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::flags::{parse_duration, timeout};
use super::{BoxFuture, Collected, Collector, Context, Registration, nonblocking};
use crate::metrics::{Family, labels, metrics};
use crate::sys::fs::{self, Roots};
use crate::sys::tsc;
use window::{Discard, Sample, Summary, Window};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "rate",
    help: "clock-rate probe: CLOCK_MONOTONIC_RAW and CLOCK_MONOTONIC against the TSC",
    default_enabled: true,
    metrics: &[METRICS],
    args,
    build,
};

metrics! {
    /// Every family this collector emits.
    pub static METRICS = [
        TSC_USABLE: Gauge(
            "clock_rate_tsc_usable",
            [],
            "1 when the clock-rate probe can use the TSC as its reference (x86_64 with rdtscp and constant_tsc), 0 when it cannot; the exporter logs why at start."
        ),
        SAMPLES: Counter(
            "clock_rate_samples",
            [],
            "Readings of the TSC and the kernel's clocks the probe took."
        ),
        DISCARDED: Counter(
            "clock_rate_discarded_intervals",
            ["reason"],
            "Intervals between readings the probe discarded: clocksource_change and backwards (a migration, a TSC reset) start the window again; pause is RAW and the TSC disagreeing beyond any host discipline (0.2 s plus 500 ppm), a VM paused or migrated."
        ),
        WINDOW: Gauge(
            "clock_rate_window_seconds",
            ["clocksource"],
            "CLOCK_MONOTONIC_RAW seconds the probe's window covers, on the clocksource it was measured on."
        ),
        TSC_FREQUENCY: Gauge(
            "clock_rate_tsc_frequency_hertz",
            ["clocksource"],
            "The TSC's frequency as CLOCK_MONOTONIC_RAW sees it over the window (the median of the intervals' rates); on acpi_pm under QEMU it moves with the host's slewing."
        ),
        RESIDUAL: Gauge(
            "clock_rate_raw_residual_seconds",
            ["clocksource"],
            "How far CLOCK_MONOTONIC_RAW ran ahead of the TSC's prediction over the window, in seconds (negative: behind); on an affected kvm-clock guest the host's corrections add up here."
        ),
        LARGEST_STEP: Gauge(
            "clock_rate_raw_largest_step_seconds",
            ["clocksource"],
            "The largest residual of one interval in the window, signed, in seconds: a kvm-clock step at a pvclock update shows here."
        ),
        STEPS: Gauge(
            "clock_rate_raw_steps",
            ["clocksource"],
            "Intervals in the window whose residual exceeds --collector.rate.step-threshold."
        ),
        MONOTONIC_RATIO: Gauge(
            "clock_rate_monotonic_frequency_ratio",
            ["clocksource"],
            "CLOCK_MONOTONIC's rate against CLOCK_MONOTONIC_RAW over the window, minus one: the local discipline's effective frequency, with adjtimex's sign."
        ),
    ];
}

fn args() -> Vec<clap::Arg> {
    let dur = |id: &'static str, default: &'static str, help: &'static str| {
        clap::Arg::new(id)
            .long(id)
            .value_name("DURATION")
            .value_parser(parse_duration)
            .default_value(default)
            .help(help)
    };
    vec![
        dur(
            "collector.rate.interval",
            "10s",
            "How often the clock-rate probe reads the TSC and the clocks",
        ),
        dur(
            "collector.rate.window",
            "15m",
            "How much time the probe's window covers (at least 5m: kvm-clock syncs every 300 s)",
        ),
        dur(
            "collector.rate.step-threshold",
            "20us",
            "The residual of one interval counted as a step of the clocksource against the TSC",
        ),
    ]
}

/// Readings per sample: the tightest is kept.
const READS_PER_SAMPLE: usize = 8;

#[derive(Debug)]
struct Rate {
    /// `None` when the TSC cannot be used; the reason was logged.
    window: Option<Arc<Mutex<Window>>>,
}

/// Whether the TSC may serve as the reference, from the CPU's flags.
fn usable(flags: Option<&[String]>) -> Result<(), String> {
    tsc::check().map_err(|e| e.to_string())?;
    match flags {
        Some(f) if f.iter().any(|x| x == "constant_tsc") => Ok(()),
        Some(_) => Err("the CPU lacks constant_tsc: its TSC rate may change".into()),
        None => Err("no x86 CPU flags in cpuinfo".into()),
    }
}

fn build(m: &clap::ArgMatches, ctx: &Context) -> Result<Arc<dyn Collector>, String> {
    let interval = timeout(m, "collector.rate.interval")?;
    let length = timeout(m, "collector.rate.window")?;
    if length < Duration::from_secs(300) {
        return Err(
            "--collector.rate.window must be at least 5m: kvm-clock's steps come every 300 s"
                .into(),
        );
    }
    if interval * 2 > length {
        return Err(
            "--collector.rate.interval must be at most half of --collector.rate.window".into(),
        );
    }
    let step = timeout(m, "collector.rate.step-threshold")?;
    let flags = cpu_flags(&ctx.roots);
    if let Err(why) = usable(flags.as_deref()) {
        tracing::warn!(collector = "rate", reason = %why, "the clock-rate probe is off: the TSC cannot be its reference");
        return Ok(Arc::new(Rate { window: None }));
    }
    let window = Arc::new(Mutex::new(Window::new(
        length.as_secs_f64(),
        step.as_secs_f64(),
    )));
    spawn_sampler(Arc::downgrade(&window), &ctx.roots, interval)
        .map_err(|e| format!("cannot start the clock-rate sampler: {e}"))?;
    Ok(Arc::new(Rate {
        window: Some(window),
    }))
}

fn cpu_flags(roots: &Roots) -> Option<Vec<String>> {
    let text = fs::read_text(&roots.proc("cpuinfo"), fs::DEFAULT_LIMIT).ok()?;
    super::clocksource::virt::cpu_flags(&text)
}

/// Starts the sampler; it ends when the collector (the window's one strong
/// owner) is gone.
fn spawn_sampler(
    window: Weak<Mutex<Window>>,
    roots: &Roots,
    interval: Duration,
) -> std::io::Result<()> {
    let current = roots.sys("devices/system/clocksource/clocksource0/current_clocksource");
    std::thread::Builder::new()
        .name("clock-rate".into())
        .spawn(move || {
            if tsc::pin_to_current_cpu().is_none() {
                tracing::debug!(collector = "rate", "could not pin the sampler to one CPU");
            }
            let mut clocksource: Arc<str> = "".into();
            loop {
                let Some(window) = window.upgrade() else {
                    return;
                };
                match fs::read_attr(&current) {
                    Ok(cs) if *clocksource != *cs => clocksource = cs.into(),
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(collector = "rate", error = %e, "clocksource unreadable");
                    }
                }
                if let Some(r) = tsc::tightest(READS_PER_SAMPLE) {
                    let s = Sample {
                        tsc: r.tsc,
                        raw_ns: r.raw_ns,
                        mono_ns: r.mono_ns,
                        clocksource: clocksource.clone(),
                    };
                    let mut w = window.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(why) = w.push(&s) {
                        tracing::info!(
                            collector = "rate",
                            reason = why.label(),
                            "an interval of the clock-rate probe was discarded"
                        );
                    }
                }
                drop(window);
                std::thread::sleep(interval);
            }
        })?;
    Ok(())
}

/// The families of a window: the counts always, the measurements once it
/// has an interval.
pub fn families(samples: u64, discarded: &[u64; 3], summary: Option<&Summary>) -> Vec<Family> {
    let mut out = vec![TSC_USABLE.single(1.0), SAMPLES.single(samples as f64)];
    let mut d = DISCARDED.family_of(Discard::ALL.len());
    for (why, n) in Discard::ALL.iter().zip(discarded) {
        d.push(labels![why.label()], *n as f64);
    }
    out.push(d);
    if let Some(s) = summary {
        let cs = || labels![s.clocksource.clone()];
        out.extend([
            WINDOW.family().with(cs(), s.span),
            TSC_FREQUENCY.family().with(cs(), s.tsc_hz),
            RESIDUAL.family().with(cs(), s.residual),
            LARGEST_STEP.family().with(cs(), s.largest_step),
            STEPS.family().with(cs(), s.steps as f64),
            MONOTONIC_RATIO.family().with(cs(), s.mono_ratio),
        ]);
    }
    out
}

impl Collector for Rate {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        nonblocking(move || {
            let families = match &self.window {
                None => vec![TSC_USABLE.single(0.0)],
                Some(w) => {
                    let w = w.lock().unwrap_or_else(PoisonError::into_inner);
                    families(w.samples, &w.discarded, w.summary().as_ref())
                }
            };
            Collected {
                families,
                errors: Vec::new(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsc_is_judged_by_its_flags() {
        let f = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();
        assert!(usable(Some(&f("fpu tsc constant_tsc rdtscp"))).is_ok());
        let e = usable(Some(&f("fpu tsc nonstop_tsc"))).expect_err("no constant_tsc");
        assert!(e.contains("constant_tsc"), "{e}");
        assert!(usable(None).is_err());
    }

    #[test]
    fn a_window_becomes_families() {
        let mut w = Window::new(900.0, 20e-6);
        let empty = families(w.samples, &w.discarded, w.summary().as_ref());
        crate::collector::assert_declared(&REGISTRATION, &empty);
        assert_eq!(empty.len(), 3, "no measurement before an interval");
        for k in 0..3u64 {
            w.push(&Sample {
                tsc: k * 2_000_000_000,
                raw_ns: 1 + k as i64 * 1_000_000_000,
                mono_ns: 1 + k as i64 * 1_000_000_000,
                clocksource: "tsc".into(),
            });
        }
        let f = families(w.samples, &w.discarded, w.summary().as_ref());
        crate::collector::assert_declared(&REGISTRATION, &f);
        let v = |d| crate::metrics::find(&f, d).and_then(|f| f.value(&[]));
        let by_cs = |d| crate::metrics::find(&f, d).and_then(|f| f.value(&["tsc"]));
        assert_eq!(v(&SAMPLES), Some(3.0));
        assert_eq!(by_cs(&TSC_FREQUENCY), Some(2e9));
        assert_eq!(by_cs(&WINDOW), Some(2.0));
        assert_eq!(by_cs(&STEPS), Some(0.0));
        assert_eq!(
            crate::metrics::find(&f, &DISCARDED).and_then(|f| f.value(&["pause"])),
            Some(0.0)
        );
    }

    /// On this machine (x86_64 with constant_tsc): the sampler runs, and
    /// two summaries a few readings apart agree on the TSC's frequency.
    #[test]
    fn the_sampler_measures_this_machines_tsc() {
        let flags = cpu_flags(&Roots::default());
        usable(flags.as_deref()).expect("the test machine's TSC is usable");
        let window = Arc::new(Mutex::new(Window::new(900.0, 20e-6)));
        spawn_sampler(
            Arc::downgrade(&window),
            &Roots::default(),
            Duration::from_millis(100),
        )
        .expect("spawn");
        let summary = |n: u64| loop {
            std::thread::sleep(Duration::from_millis(50));
            let w = window.lock().expect("lock");
            if w.samples >= n {
                return w.summary().expect("intervals");
            }
        };
        let a = summary(5);
        let b = summary(10);
        assert!((1e8..1e10).contains(&a.tsc_hz), "{a:?}");
        let ppm = (b.tsc_hz / a.tsc_hz - 1.0).abs() * 1e6;
        assert!(ppm < 50.0, "{a:?} {b:?}");
        // The sampler ends with its window.
        drop(window);
    }
}
