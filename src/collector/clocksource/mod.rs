//! The clocksource, and the facts around it that decide whether it can be
//! trusted: kernel boot parameters ([`boot`]), hypervisor and CPU flags
//! ([`virt`]), the clocksource devices and PTP clocks ([`sysfs`]).
//!
//! CPUID, DMI, the kernel command line and the CPU flags cannot change while
//! the host runs, so they are read once at start; the clocksource is read on
//! every scrape, since it is writable in sysfs and the watchdog can demote
//! `tsc` at any time.

pub(crate) mod boot;
pub(crate) mod sysfs;
pub(crate) mod virt;

use std::sync::{Arc, Mutex, PoisonError};

use super::flags::bool_flag;
use super::{
    BoxFuture, CollectError, Collected, Collector, Context, Registration, blocking, nonblocking,
};
use crate::metrics::{Kept, labels, metrics};
use crate::sys::cpuid;
use crate::sys::fs::{self, Roots};

use sysfs::{SysfsState, device_families, read_clocksources, read_ptp};
use virt::{MAX_CPU_BLOCK, VirtEvidence, classify, cpu_families, cpu_flags, first_cpu_block};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "clocksource",
    help: "clocksource, kernel clock parameters, hypervisor, TSC and ptp_kvm",
    default_enabled: true,
    metrics: &[METRICS],
    args,
    build,
};

metrics! {
    /// Every family this collector emits.
    pub static METRICS = [
        CURRENT: Gauge(
            "clock_source_current_info",
            ["device", "clocksource"],
            "The clocksource the kernel currently uses, per clocksource device."
        ),
        AVAILABLE: Gauge(
            "clock_source_available_info",
            ["device", "clocksource"],
            "A clocksource the kernel could use, per clocksource device."
        ),
        KERNEL: Gauge(
            "clock_kernel_info",
            ["release", "no_kvmclock", "no_kvmclock_vsyscall", "clocksource", "tsc", "notsc"],
            "Kernel release and the clock-related boot parameters on its command line."
        ),
        VIRTUALIZATION: Gauge(
            "clock_virtualization_info",
            ["hypervisor", "method"],
            "The hypervisor this host runs under (none on bare metal) and how it was identified."
        ),
        TSC_INVARIANT: Gauge(
            "clock_tsc_invariant",
            [],
            "1 when the CPU flags show an invariant TSC (constant_tsc and nonstop_tsc), 0 otherwise."
        ),
        CPU_FLAG: Gauge(
            "clock_cpu_flag",
            ["flag"],
            "Clock-related CPU flags from /proc/cpuinfo, 1 when the first CPU has the flag."
        ),
        PTP_CLOCK: Gauge(
            "clock_ptp_clock_info",
            ["device", "clock_name"],
            "A PTP hardware clock device and the name its driver gives it."
        ),
        PTP_KVM: Gauge(
            "clock_ptp_kvm_available",
            [],
            "1 when a KVM virtual PTP clock (ptp_kvm) exists, which lets a guest measure its offset from the host."
        ),
    ];
}

/// The CPU flags published by `clock_cpu_flag`.
pub const CLOCK_CPU_FLAGS: [&str; 7] = [
    "tsc",
    "constant_tsc",
    "nonstop_tsc",
    "tsc_reliable",
    "tsc_known_freq",
    "rdtscp",
    "hypervisor",
];

/// The name `ptp_kvm` gives its clock (drivers/ptp/ptp_kvm_common.c).
pub const PTP_KVM_NAME: &str = "KVM virtual PTP";

fn args() -> Vec<clap::Arg> {
    bool_flag(
        "collector.clocksource.cpuid",
        true,
        "Identify the hypervisor with CPUID. Turn off when the file roots describe another machine (fixtures).",
    )
    .into()
}

/// Facts read once at start.
#[derive(Debug)]
struct StaticFacts {
    /// The kernel, virtualization and CPU families.
    families: Kept,
    /// What could not be read at start, reported (and failing) on every scrape.
    problems: Vec<String>,
}

fn read_optional(path: &std::path::Path) -> Result<Option<String>, fs::FileError> {
    match fs::read_attr(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.is_missing() => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_static(roots: &Roots, use_cpuid: bool) -> StaticFacts {
    let mut problems = Vec::new();

    let release = fs::read_attr(&roots.proc("sys/kernel/osrelease"))
        .map_err(|e| problems.push(e.to_string()))
        .ok();
    let params = fs::read_text(&roots.proc("cmdline"), 1 << 20)
        .map_err(|e| problems.push(e.to_string()))
        .ok()
        .and_then(|text| boot::from_cmdline(&text));
    let kernel = match (release, params) {
        (Some(release), Some(p)) => {
            let b = |v: bool| if v { "true" } else { "false" };
            Some(KERNEL.family().with(
                labels![
                    release,
                    b(p.no_kvmclock),
                    b(p.no_kvmclock_vsyscall),
                    p.clocksource,
                    p.tsc,
                    b(p.notsc),
                ],
                1.0,
            ))
        }
        _ => None,
    };

    let flags = match fs::read_text(&roots.proc("cpuinfo"), fs::DEFAULT_LIMIT) {
        Ok(text) => {
            let flags = cpu_flags(&text);
            if first_cpu_block(&text).is_none() {
                problems.push(format!(
                    "{}: the block of the first CPU is longer than {MAX_CPU_BLOCK} bytes, which no CPU has; not parsed",
                    roots.proc("cpuinfo").display()
                ));
            } else if flags.is_none() && cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
                problems.push(format!(
                    "{}: no CPU flags found",
                    roots.proc("cpuinfo").display()
                ));
            }
            flags
        }
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let cpu = flags.as_deref().map(cpu_families).unwrap_or_default();

    let mut evidence = VirtEvidence {
        cpuid: if use_cpuid { cpuid::query() } else { None },
        cpuinfo_flag: flags.as_ref().map(|f| f.iter().any(|x| x == "hypervisor")),
        ..VirtEvidence::default()
    };
    match read_optional(&roots.sys("hypervisor/type")) {
        Ok(t) => evidence.sysfs_type = t,
        Err(e) => problems.push(e.to_string()),
    }
    match (
        read_optional(&roots.sys("class/dmi/id/sys_vendor")),
        read_optional(&roots.sys("class/dmi/id/product_name")),
    ) {
        (Ok(None), Ok(None)) => {}
        (Ok(v), Ok(p)) => evidence.dmi = Some((v.unwrap_or_default(), p.unwrap_or_default())),
        (Err(e), _) | (_, Err(e)) => problems.push(e.to_string()),
    }
    // The available clocksources at start are evidence too: kvm-clock is only
    // registered when the hypervisor offers KVM's paravirtual clock.
    if let Ok(sources) = read_clocksources(roots) {
        evidence.clocksources = sources.into_iter().flat_map(|s| s.available).collect();
    }
    let v = classify(&evidence);
    let virtualization = VIRTUALIZATION
        .family()
        .with(labels![v.hypervisor, v.method], 1.0);
    StaticFacts {
        families: Kept::new(kernel.into_iter().chain([virtualization]).chain(cpu)),
        problems,
    }
}

#[derive(Debug)]
struct Clocksource {
    roots: Roots,
    facts: StaticFacts,
    /// Whether `--path.sysfs` is a real sysfs (statfs magic `SYSFS_MAGIC`).
    /// Its clocksource and PTP attributes are generated in the kernel under a
    /// mutex held for microseconds and never wait on a disk or a network, so
    /// they are read in the scrape's own task: the hand-off to the blocking
    /// pool and back cost a third of a scrape's CPU (docs/performance.md,
    /// "A real sysfs is read in the scrape's task").
    /// Any other root (a copy, a network or FUSE mount that may stall) is
    /// read on the blocking pool, where the scrape timeout can abandon it.
    /// `Some` for a real sysfs, whose attribute files are also kept open.
    sysfs: Option<Mutex<SysfsState>>,
}

/// Whether `path` is on a sysfs mount.
fn is_sysfs(path: &std::path::Path) -> bool {
    nix::sys::statfs::statfs(path)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::SYSFS_MAGIC)
}

fn build(m: &clap::ArgMatches, ctx: &Context) -> Result<Arc<dyn Collector>, String> {
    let use_cpuid = super::flags::flag(m, "collector.clocksource.cpuid");
    let facts = read_static(&ctx.roots, use_cpuid);
    for p in &facts.problems {
        tracing::warn!(collector = "clocksource", problem = %p, "could not read a host fact at start");
    }
    Ok(Arc::new(Clocksource::new(
        &ctx.roots,
        facts,
        is_sysfs(&ctx.roots.sysfs),
    )))
}

impl Clocksource {
    /// The collector over `roots`; `held` reads them through a
    /// [`SysfsState`], as for a real sysfs.
    fn new(roots: &Roots, facts: StaticFacts, held: bool) -> Clocksource {
        Clocksource {
            sysfs: held.then(|| Mutex::new(SysfsState::new())),
            roots: roots.clone(),
            facts,
        }
    }

    fn read(&self) -> Collected {
        let mut out = Collected::default();
        let mut state = self
            .sysfs
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner));
        let clocksources = match state.as_deref_mut() {
            Some(state) => state.clocksource_families(&self.roots),
            None => read_clocksources(&self.roots)
                .map_err(CollectError::from)
                .and_then(|d| device_families(&self.roots, &d)),
        };
        match clocksources {
            Ok(f) => out.families.extend(f),
            Err(e) => out.errors.push(e),
        }
        out.families.extend(self.facts.families.families());
        let ptp = match state.as_deref_mut() {
            Some(state) => state.ptp_families(&self.roots),
            None => read_ptp(&self.roots),
        };
        match ptp {
            Ok(f) => out.families.extend(f),
            Err(e) => out.errors.push(e.into()),
        }
        out.errors.extend(
            self.facts
                .problems
                .iter()
                .map(|p| CollectError::Io(p.clone())),
        );
        out
    }
}

impl Collector for Clocksource {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        if self.sysfs.is_some() {
            nonblocking(move || self.read())
        } else {
            blocking(move || self.read())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Family;

    /// Every fixture host, as `(name, roots)`.
    fn fixture_hosts() -> Vec<(String, Roots)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
        let mut hosts: Vec<(String, Roots)> = std::fs::read_dir(&dir)
            .expect("fixture hosts")
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let roots = Roots {
                    procfs: e.path().join("proc"),
                    sysfs: e.path().join("sys"),
                };
                (name, roots)
            })
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        hosts
    }

    fn scrape(c: &Clocksource) -> Vec<Family> {
        let out = c.read();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out.families
    }

    /// The goldens read fixture roots the plain way; production reads a
    /// real sysfs through held files and kept families. Over every fixture
    /// host the two give the same families, scrape after scrape.
    #[test]
    fn the_held_sysfs_path_gives_what_the_goldens_check() {
        let hosts = fixture_hosts();
        assert_eq!(
            hosts.len(),
            5,
            "{:?}",
            hosts.iter().map(|h| &h.0).collect::<Vec<_>>()
        );
        for (name, roots) in hosts {
            let plain = Clocksource::new(&roots, read_static(&roots, false), false);
            let held = Clocksource::new(&roots, read_static(&roots, false), true);
            assert!(held.sysfs.is_some() && plain.sysfs.is_none());
            let want = scrape(&plain);
            crate::metrics::assert_no_duplicate_series(&want);
            assert!(
                crate::metrics::find(&want, &CURRENT).is_some_and(|f| f.samples.len() == 1),
                "{name}: {want:?}"
            );
            for round in 0..3 {
                assert_eq!(scrape(&held), want, "{name}, held scrape {round}");
            }
            assert_eq!(scrape(&plain), want, "{name}");
        }
    }

    #[test]
    fn only_a_real_sysfs_is_read_in_the_scrape_task() {
        assert!(is_sysfs(std::path::Path::new("/sys")));
        assert!(!is_sysfs(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))));
        assert!(!is_sysfs(std::path::Path::new("/nonexistent")));
    }
}
