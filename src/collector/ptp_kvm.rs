//! The guest's offset from its host, measured through `ptp_kvm`: the KVM
//! virtual PTP clock is the host's CLOCK_REALTIME read by hypercall, and
//! `PTP_SYS_OFFSET` sandwiches it between two readings of the guest's own.
//! The tightest sandwich of `--collector.ptp_kvm.samples` gives the
//! host-minus-guest offset (θ: positive when the host is ahead) and the
//! delay.
//!
//! When there is no such clock the collector says why, where it can be
//! known, in `clock_ptp_kvm_unavailable_info{reason}`:
//! `not_kvm` (CPUID names no KVM), `no_kvmclock` (booted with it: on x86
//! `kvm_arch_ptp_init` fails without kvmclock's page), `module_not_loaded`
//! (no `/sys/module/ptp_kvm`), `no_device` (the module is there, its clock
//! is not), `host_not_tsc` (the hypercall answers `EOPNOTSUPP`: the host is
//! not on a TSC clocksource), `permission` (`/dev/ptpN` is root's, mode
//! 0600), `error` (anything else, logged).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::clocksource::PTP_KVM_NAME;
use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration, nonblocking};
use crate::metrics::{Family, labels, metrics};
use crate::sys::fs::{self, Roots};
use crate::sys::ptp::{self, MAX_SAMPLES, PtpError, Sandwich, SysOffset};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "ptp_kvm",
    help: "the guest's offset from its KVM host through the ptp_kvm clock",
    default_enabled: true,
    metrics: &[METRICS],
    args,
    build,
};

metrics! {
    /// Every family this collector emits.
    pub static METRICS = [
        OFFSET: Gauge(
            "clock_ptp_kvm_offset_seconds",
            ["device"],
            "The KVM host's CLOCK_REALTIME minus this guest's, through the ptp_kvm clock (the tightest of PTP_SYS_OFFSET's samples), in seconds: positive when the host is ahead."
        ),
        DELAY: Gauge(
            "clock_ptp_kvm_delay_seconds",
            ["device"],
            "The width of the tightest PTP_SYS_OFFSET sample on the ptp_kvm clock (guest clock read before and after the host's), in seconds: the offset's uncertainty is half of it."
        ),
        UNAVAILABLE: Gauge(
            "clock_ptp_kvm_unavailable_info",
            ["reason"],
            "1 when the guest-vs-host offset cannot be measured, with why: not_kvm, no_kvmclock, module_not_loaded, no_device, host_not_tsc, permission or error."
        ),
    ];
}

fn args() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new("collector.ptp_kvm.samples")
            .long("collector.ptp_kvm.samples")
            .value_name("N")
            .value_parser(clap::value_parser!(u32).range(1..=i64::from(MAX_SAMPLES)))
            .default_value("25")
            .help("PTP_SYS_OFFSET samples per scrape, 1 to 25; the tightest is kept"),
    ]
}

/// How long a host without a ptp_kvm clock waits before it is looked for
/// again (the module may be loaded later).
const LOOK_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// The offset and delay of the tightest sandwich, in seconds: the one with
/// the smallest delay. Sandwiches whose system clock went back (delay < 0)
/// are not samples.
pub fn tightest(samples: &[Sandwich]) -> Option<(f64, f64)> {
    let s = samples
        .iter()
        .filter(|s| s.after >= s.before)
        .min_by_key(|s| s.after - s.before)?;
    let delay = s.after - s.before;
    // 2·ptp − before − after is exact in i128 for any i64 seconds.
    let offset = (2 * s.ptp - s.before - s.after) as f64 / 2e9;
    Some((offset, delay as f64 / 1e9))
}

/// What the host says about ptp_kvm before any device is opened.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    /// CPUID names KVM.
    pub kvm: bool,
    /// `no-kvmclock` is on the command line.
    pub no_kvmclock: bool,
    /// `/sys/module/ptp_kvm` exists.
    pub module: bool,
}

/// Why there is no device to read, from the host's facts.
pub fn absent_reason(h: &HostFacts) -> &'static str {
    if h.module {
        "no_device"
    } else if !h.kvm {
        "not_kvm"
    } else if h.no_kvmclock {
        "no_kvmclock"
    } else {
        "module_not_loaded"
    }
}

type Opener = Box<dyn Fn(&Path) -> Result<Box<dyn SysOffset>, PtpError> + Send + Sync>;

#[derive(Debug)]
enum Found {
    /// The device, its name (`ptp0`).
    Open(Box<dyn SysOffset>, Arc<str>),
    /// None found, and when it was looked for.
    Absent(&'static str, Instant),
}

struct PtpKvm {
    roots: Roots,
    /// Where device nodes are (`/dev`).
    dev: PathBuf,
    samples: u32,
    facts: Box<dyn Fn() -> HostFacts + Send + Sync>,
    open: Opener,
    state: Mutex<Option<Found>>,
}

impl std::fmt::Debug for PtpKvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PtpKvm")
            .field("dev", &self.dev)
            .finish_non_exhaustive()
    }
}

fn build(m: &clap::ArgMatches, ctx: &Context) -> Result<Arc<dyn Collector>, String> {
    let samples = *m
        .get_one::<u32>("collector.ptp_kvm.samples")
        .ok_or("--collector.ptp_kvm.samples is missing")?;
    let roots = ctx.roots.clone();
    let facts_roots = roots.clone();
    Ok(Arc::new(PtpKvm {
        roots,
        dev: PathBuf::from("/dev"),
        samples,
        facts: Box::new(move || host_facts(&facts_roots)),
        open: Box::new(|p| ptp::Device::open(p).map(|d| Box::new(d) as Box<dyn SysOffset>)),
        state: Mutex::new(None),
    }))
}

fn host_facts(roots: &Roots) -> HostFacts {
    let kvm = matches!(
        crate::sys::cpuid::query(),
        Some(crate::sys::cpuid::CpuidHypervisor::Signatures(s))
            if super::clocksource::virt::hypervisor_from_signatures(&s) == "kvm"
    );
    let no_kvmclock = fs::read_text(&roots.proc("cmdline"), 1 << 20)
        .ok()
        .and_then(|t| super::clocksource::boot::from_cmdline(&t))
        .is_some_and(|p| p.no_kvmclock);
    let module = roots.sys("module/ptp_kvm").exists();
    HostFacts {
        kvm,
        no_kvmclock,
        module,
    }
}

/// The first PTP clock named as ptp_kvm names its clock.
fn find_device(roots: &Roots) -> Option<String> {
    super::clocksource::sysfs::ptp_clocks(roots)
        .ok()?
        .into_iter()
        .find(|(_, name)| name == PTP_KVM_NAME)
        .map(|(device, _)| device)
}

fn reason_of(e: &PtpError) -> &'static str {
    match e {
        PtpError::Denied(_) => "permission",
        PtpError::Missing(_) => "no_device",
        PtpError::Unsupported(_) => "host_not_tsc",
        PtpError::Io(_) => "error",
    }
}

fn unavailable(reason: &'static str) -> Family {
    UNAVAILABLE.family().with(labels![reason], 1.0)
}

impl PtpKvm {
    fn read(&self) -> Collected {
        let mut out = Collected::default();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let look = match &*state {
            None => true,
            Some(Found::Absent(_, at)) => at.elapsed() >= LOOK_AGAIN_AFTER,
            Some(Found::Open(..)) => false,
        };
        if look {
            *state = Some(match find_device(&self.roots) {
                Some(name) => match (self.open)(&self.dev.join(&name)) {
                    Ok(d) => Found::Open(d, name.into()),
                    Err(e) => {
                        tracing::info!(collector = "ptp_kvm", error = %e, "cannot open the ptp_kvm clock");
                        Found::Absent(reason_of(&e), Instant::now())
                    }
                },
                None => Found::Absent(absent_reason(&(self.facts)()), Instant::now()),
            });
        }
        match state.as_mut() {
            Some(Found::Open(dev, name)) => match dev.sys_offset(self.samples) {
                Ok(samples) => {
                    if let Some((offset, delay)) = tightest(&samples) {
                        out.families
                            .push(OFFSET.family().with(labels![name.clone()], offset));
                        out.families
                            .push(DELAY.family().with(labels![name.clone()], delay));
                    } else {
                        out.families.push(unavailable("error"));
                        out.errors.push(CollectError::Protocol(
                            "PTP_SYS_OFFSET returned no sample whose clock went forward".into(),
                        ));
                    }
                }
                Err(e) => {
                    let reason = reason_of(&e);
                    out.families.push(unavailable(reason));
                    if reason == "error" {
                        out.errors.push(CollectError::Io(e.to_string()));
                    } else {
                        out.errors.push(CollectError::NoData(e.to_string()));
                    }
                    // Opened again at the next look: a device removed with
                    // its module, or a host that moved to a TSC clocksource.
                    *state = Some(Found::Absent(reason, Instant::now()));
                }
            },
            Some(Found::Absent(reason, _)) => out.families.push(unavailable(reason)),
            None => unreachable!("looked for above"),
        }
        out
    }
}

impl Collector for PtpKvm {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        // A PTP_SYS_OFFSET of 25 samples on ptp_kvm is 25 hypercalls, tens
        // of microseconds; the sysfs look is rare and local.
        nonblocking(move || self.read())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::TestDir;

    fn sw(before: i128, ptp: i128, after: i128) -> Sandwich {
        Sandwich { before, ptp, after }
    }

    #[test]
    fn the_tightest_sandwich_gives_offset_and_delay() {
        // Recorded shape: the host 1.5 ms ahead, delays 3–9 µs.
        let base = 1_764_600_000_000_000_000i128;
        let samples = [
            sw(base, base + 1_504_000, base + 8_000),
            sw(base + 10_000, base + 1_511_500, base + 13_000),
            sw(base + 20_000, base + 1_526_000, base + 29_000),
        ];
        let (offset, delay) = tightest(&samples).expect("samples");
        assert!((offset - 1.5e-3).abs() < 1e-12, "{offset}");
        assert!((delay - 3e-6).abs() < 1e-15, "{delay}");
        // The guest ahead: negative.
        let (offset, _) = tightest(&[sw(base, base - 2_000_000, base + 2)]).expect("one");
        assert!((offset + 2.000_001e-3).abs() < 1e-12, "{offset}");
    }

    #[test]
    fn backwards_and_extreme_sandwiches() {
        assert_eq!(tightest(&[]), None);
        assert_eq!(tightest(&[sw(10, 5, 9)]), None, "the clock went back");
        let ext = i128::from(i64::MAX) * 1_000_000_000;
        let (o, d) = tightest(&[sw(-ext, ext, ext)]).expect("one");
        assert!(o.is_finite() && d.is_finite());
    }

    #[test]
    fn the_reason_for_no_device() {
        let h = |kvm, no_kvmclock, module| HostFacts {
            kvm,
            no_kvmclock,
            module,
        };
        assert_eq!(absent_reason(&h(false, false, false)), "not_kvm");
        assert_eq!(absent_reason(&h(true, true, false)), "no_kvmclock");
        assert_eq!(absent_reason(&h(true, false, false)), "module_not_loaded");
        assert_eq!(absent_reason(&h(true, false, true)), "no_device");
    }

    /// Recorded answers of a device, in order; the last one repeats.
    #[derive(Debug)]
    struct Recorded(Vec<Result<Vec<Sandwich>, PtpError>>);

    impl SysOffset for Recorded {
        fn sys_offset(&mut self, n: u32) -> Result<Vec<Sandwich>, PtpError> {
            assert_eq!(n, 25);
            if self.0.len() > 1 {
                self.0.remove(0)
            } else {
                self.0[0].clone()
            }
        }
    }

    fn collector(
        dir: &TestDir,
        answers: Vec<Result<Vec<Sandwich>, PtpError>>,
        facts: HostFacts,
    ) -> Arc<PtpKvm> {
        let answers = Mutex::new(Some(answers));
        Arc::new(PtpKvm {
            roots: Roots {
                procfs: dir.path().join("proc"),
                sysfs: dir.path().join("sys"),
            },
            dev: dir.path().join("dev"),
            samples: 25,
            facts: Box::new(move || facts.clone()),
            open: Box::new(move |p| {
                assert!(p.ends_with("ptp1"), "{p:?}");
                let a = answers.lock().expect("lock").take().expect("opened once");
                Ok(Box::new(Recorded(a)) as Box<dyn SysOffset>)
            }),
            state: Mutex::new(None),
        })
    }

    #[tokio::test]
    async fn a_kvm_ptp_clock_is_found_by_name_and_read() {
        let dir = TestDir::new("ptp-kvm");
        dir.write("sys/class/ptp/ptp0/clock_name", b"e1000e\n");
        dir.write("sys/class/ptp/ptp1/clock_name", b"KVM virtual PTP\n");
        let s = sw(100_000_000_000, 100_000_750_000, 100_000_004_000);
        let c = collector(&dir, vec![Ok(vec![s])], HostFacts::default());
        let out = c.clone().collect().await;
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        crate::collector::assert_declared(&REGISTRATION, &out.families);
        let v = |d, l: &[&str]| crate::metrics::find(&out.families, d).and_then(|f| f.value(l));
        assert_eq!(v(&OFFSET, &["ptp1"]), Some(0.000_748));
        assert_eq!(v(&DELAY, &["ptp1"]), Some(0.000_004));
        assert_eq!(v(&UNAVAILABLE, &["no_device"]), None);
    }

    #[tokio::test]
    async fn a_host_off_tsc_is_said_and_not_a_failure() {
        let dir = TestDir::new("ptp-kvm-eopnotsupp");
        dir.write("sys/class/ptp/ptp1/clock_name", b"KVM virtual PTP\n");
        let c = collector(
            &dir,
            vec![Err(PtpError::Unsupported("EOPNOTSUPP".into()))],
            HostFacts::default(),
        );
        let out = c.clone().collect().await;
        let v = |d, l: &[&str]| crate::metrics::find(&out.families, d).and_then(|f| f.value(l));
        assert_eq!(v(&UNAVAILABLE, &["host_not_tsc"]), Some(1.0));
        assert!(
            out.errors.iter().all(|e| !e.is_failure()),
            "{:?}",
            out.errors
        );
        // Not asked again on every scrape.
        let again = c.clone().collect().await;
        let v = |d, l: &[&str]| crate::metrics::find(&again.families, d).and_then(|f| f.value(l));
        assert_eq!(v(&UNAVAILABLE, &["host_not_tsc"]), Some(1.0));
    }

    #[tokio::test]
    async fn no_device_says_why_from_the_host() {
        let dir = TestDir::new("ptp-kvm-none");
        dir.write("sys/class/ptp/ptp0/clock_name", b"e1000e\n");
        let c = collector(
            &dir,
            vec![],
            HostFacts {
                kvm: true,
                no_kvmclock: true,
                module: false,
            },
        );
        let out = c.clone().collect().await;
        assert!(out.errors.is_empty());
        let f = crate::metrics::find(&out.families, &UNAVAILABLE).expect("said");
        assert_eq!(f.value(&["no_kvmclock"]), Some(1.0));
        assert_eq!(f.samples.len(), 1);
    }
}
