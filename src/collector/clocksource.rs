//! The clocksource, and the facts around it that decide whether it can be
//! trusted: kernel boot parameters, hypervisor, invariant TSC, `ptp_kvm`.
//!
//! CPUID, DMI, the kernel command line and the CPU flags cannot change while
//! the host runs, so they are read once at start; the clocksource is read on
//! every scrape, since it is writable in sysfs and the watchdog can demote
//! `tsc` at any time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use procfs_core::{CpuInfo, FromBufRead, FromRead, KernelCmdline};

use super::flags::bool_flag;
use super::listing::ListingCache;
use super::{
    BoxFuture, CollectError, Collected, Collector, Context, Registration, blocking, nonblocking,
};
use crate::metrics::{Family, Kept, Memo, labels, metrics};
use crate::sys::cpuid::{self, CpuidHypervisor};
use crate::sys::fs::{self, Roots};
use crate::sys::net::NetlinkWatch;

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

/// The clock-related kernel boot parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BootParams {
    /// `no-kvmclock`.
    pub no_kvmclock: bool,
    /// `no-kvmclock-vsyscall`.
    pub no_kvmclock_vsyscall: bool,
    /// `clocksource=`.
    pub clocksource: String,
    /// `tsc=`.
    pub tsc: String,
    /// `notsc`.
    pub notsc: bool,
}

/// Extracts the clock parameters from a kernel command line. The kernel
/// treats `-` and `_` alike in parameter names (kernel/params.c, `parameq`),
/// and everything after a lone `--` belongs to init, not the kernel; the last
/// occurrence of a parameter wins, as in the kernel.
pub fn boot_params(words: &[String]) -> BootParams {
    let mut p = BootParams::default();
    for w in words.iter().map(|w| w.trim()) {
        if w == "--" {
            break;
        }
        let (name, value) = match w.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (w, None),
        };
        let name = name.replace('_', "-");
        match (name.as_str(), value) {
            ("no-kvmclock", None) => p.no_kvmclock = true,
            ("no-kvmclock-vsyscall", None) => p.no_kvmclock_vsyscall = true,
            ("notsc", None) => p.notsc = true,
            ("clocksource", Some(v)) => v.clone_into(&mut p.clocksource),
            ("tsc", Some(v)) => v.clone_into(&mut p.tsc),
            _ => {}
        }
    }
    p
}

/// How a hypervisor was identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Virtualization {
    /// `none`, `kvm`, `microsoft`, `vmware`, `xen`, `qemu`, …, or `unknown`.
    pub hypervisor: String,
    /// `cpuid`, `sysfs`, `dmi`, `clocksource`, `cpuinfo`, or `none`.
    pub method: String,
}

impl Virtualization {
    fn new(hypervisor: &str, method: &str) -> Self {
        Virtualization {
            hypervisor: hypervisor.to_owned(),
            method: method.to_owned(),
        }
    }
}

/// Hypervisor vendor signatures at CPUID 0x4000_0000 (each vendor's documentation;
/// the Linux kernel's `arch/x86/kernel/cpu/hypervisor.c` lists the same).
const CPUID_SIGNATURES: [(&str, &str); 9] = [
    ("KVMKVMKVM", "kvm"),
    ("Microsoft Hv", "microsoft"),
    ("VMwareVMware", "vmware"),
    ("XenVMMXenVMM", "xen"),
    ("TCGTCGTCGTCG", "qemu"),
    ("bhyve bhyve", "bhyve"),
    ("ACRNACRNACRN", "acrn"),
    ("VBoxVBoxVBox", "oracle"),
    ("lrpepyh  vr", "parallels"),
];

/// Names a hypervisor from its CPUID signatures. KVM wins when present
/// anywhere: KVM with Hyper-V enlightenments shows "Microsoft Hv" first.
pub fn hypervisor_from_signatures(sigs: &[String]) -> String {
    let known = |s: &String| {
        CPUID_SIGNATURES
            .iter()
            .find(|(sig, _)| s.trim() == *sig)
            .map(|(_, name)| *name)
    };
    if sigs.iter().any(|s| known(s) == Some("kvm")) {
        return "kvm".into();
    }
    sigs.iter().find_map(known).unwrap_or("unknown").to_owned()
}

/// Names a hypervisor from DMI (`/sys/class/dmi/id/{sys_vendor,product_name}`),
/// as systemd-detect-virt's DMI table does. `None` when DMI names no hypervisor.
pub fn hypervisor_from_dmi(vendor: &str, product: &str) -> Option<&'static str> {
    let v = vendor.trim();
    let p = product.trim();
    if p.contains("KVM") || p == "Google Compute Engine" {
        return Some("kvm");
    }
    let by_vendor: [(&str, &str); 7] = [
        ("QEMU", "qemu"),
        ("VMware", "vmware"),
        ("Xen", "xen"),
        ("innotek GmbH", "oracle"),
        ("Parallels", "parallels"),
        ("BHYVE", "bhyve"),
        ("Microsoft Corporation", "microsoft"),
    ];
    for (prefix, name) in by_vendor {
        if v.starts_with(prefix) {
            // Microsoft also makes physical machines (Surface); only its
            // "Virtual Machine" product is Hyper-V.
            if name == "microsoft" && !p.contains("Virtual Machine") {
                return None;
            }
            return Some(name);
        }
    }
    None
}

/// Paravirtual clocksources that only a given hypervisor provides.
fn hypervisor_from_clocksources(available: &[String]) -> Option<&'static str> {
    available.iter().find_map(|c| match c.as_str() {
        "kvm-clock" => Some("kvm"),
        "hyperv_clocksource_tsc_page" | "hyperv_clocksource_msr" => Some("microsoft"),
        "xen" => Some("xen"),
        "vmware-tsc" => Some("vmware"),
        _ => None,
    })
}

/// Everything [`classify`] weighs.
#[derive(Debug, Default)]
pub struct VirtEvidence {
    /// CPUID's answer, if CPUID was consulted.
    pub cpuid: Option<CpuidHypervisor>,
    /// `/sys/hypervisor/type`.
    pub sysfs_type: Option<String>,
    /// DMI vendor and product.
    pub dmi: Option<(String, String)>,
    /// The cpuinfo `hypervisor` flag; `None` when cpuinfo has no x86 flags.
    pub cpuinfo_flag: Option<bool>,
    /// Every available clocksource.
    pub clocksources: Vec<String>,
}

/// Decides the hypervisor: CPUID first, then `/sys/hypervisor/type`, DMI, a
/// paravirtual clocksource, and the cpuinfo flag.
pub fn classify(e: &VirtEvidence) -> Virtualization {
    match &e.cpuid {
        Some(CpuidHypervisor::BareMetal) => return Virtualization::new("none", "cpuid"),
        Some(CpuidHypervisor::Signatures(sigs)) => {
            let h = hypervisor_from_signatures(sigs);
            if h != "unknown" {
                return Virtualization::new(&h, "cpuid");
            }
        }
        None => {}
    }
    if let Some(t) = e
        .sysfs_type
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        let name = if t == "xen" { "xen" } else { "unknown" };
        return Virtualization::new(name, "sysfs");
    }
    let paravirt = hypervisor_from_clocksources(&e.clocksources);
    if let Some(name) = e.dmi.as_ref().and_then(|(v, p)| hypervisor_from_dmi(v, p)) {
        // DMI says QEMU but not whether KVM accelerates it; kvm-clock proves it.
        if name == "qemu" && paravirt == Some("kvm") {
            return Virtualization::new("kvm", "clocksource");
        }
        return Virtualization::new(name, "dmi");
    }
    if let Some(name) = paravirt {
        return Virtualization::new(name, "clocksource");
    }
    match (e.cpuinfo_flag, &e.cpuid) {
        (Some(true), _) | (_, Some(CpuidHypervisor::Signatures(_))) => {
            Virtualization::new("unknown", "cpuinfo")
        }
        (Some(false), _) => Virtualization::new("none", "cpuinfo"),
        (None, _) => Virtualization::new("unknown", "none"),
    }
}

/// Facts read once at start.
#[derive(Debug)]
struct StaticFacts {
    /// The kernel, virtualization and CPU families.
    families: Kept,
    /// What could not be read at start, reported (and failing) on every scrape.
    problems: Vec<String>,
}

/// The flags of the first CPU, from a cpuinfo text. `None` when the text has
/// no x86 `flags` line (other architectures, or garbage).
pub fn cpu_flags(cpuinfo: &str) -> Option<Vec<String>> {
    let info = CpuInfo::from_buf_read(cpuinfo.as_bytes()).ok()?;
    let flags = info.flags(0)?;
    Some(flags.into_iter().map(str::to_owned).collect())
}

fn cpu_families(flags: &[String]) -> Vec<Family> {
    let has = |f: &str| flags.iter().any(|x| x == f);
    let mut per_flag = CPU_FLAG.family_of(CLOCK_CPU_FLAGS.len());
    for f in CLOCK_CPU_FLAGS {
        per_flag.push(labels![f], f64::from(u8::from(has(f))));
    }
    vec![
        TSC_INVARIANT.single(f64::from(u8::from(
            has("constant_tsc") && has("nonstop_tsc"),
        ))),
        per_flag,
    ]
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
    let cmdline = fs::read_text(&roots.proc("cmdline"), 1 << 20)
        .map_err(|e| problems.push(e.to_string()))
        .ok()
        .and_then(|text| KernelCmdline::from_read(text.as_bytes()).ok());
    let kernel = match (release, cmdline) {
        (Some(release), Some(cmdline)) => {
            let p = boot_params(&cmdline.0);
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
            if flags.is_none() && cfg!(any(target_arch = "x86_64", target_arch = "x86")) {
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

/// One `clocksourceN` device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClocksourceDevice {
    /// `clocksource0`, …
    pub device: String,
    /// `current_clocksource`.
    pub current: String,
    /// `available_clocksource`, split.
    pub available: Vec<String>,
}

const CLOCKSOURCE_DIR: &str = "devices/system/clocksource";

/// Lists the clocksource devices and reads each one's attributes.
fn read_clocksources(roots: &Roots) -> Result<Vec<ClocksourceDevice>, fs::FileError> {
    let dir = roots.sys(CLOCKSOURCE_DIR);
    let mut out = Vec::new();
    for device in fs::list_dir(&dir, "clocksource")? {
        let paths = DevicePaths::new(&dir, device);
        let current = fs::read_attr(&paths.current)?;
        let available = fs::read_attr(&paths.available)?;
        out.push(paths.parse(&current, &available)?);
    }
    Ok(out)
}

/// One clocksource device's attribute paths.
#[derive(Debug)]
struct DevicePaths {
    device: String,
    current: PathBuf,
    available: PathBuf,
}

impl DevicePaths {
    fn new(dir: &Path, device: String) -> DevicePaths {
        let base = dir.join(&device);
        DevicePaths {
            current: base.join("current_clocksource"),
            available: base.join("available_clocksource"),
            device,
        }
    }

    /// Checks the two attributes' text and makes the device of them.
    fn parse(&self, current: &str, available: &str) -> Result<ClocksourceDevice, fs::FileError> {
        let available: Vec<String> = available.split_whitespace().map(str::to_owned).collect();
        if !is_clocksource_name(current) {
            return Err(garbage(&self.current));
        }
        if available.is_empty()
            || available.len() > 64
            || !available.iter().all(|a| is_clocksource_name(a))
        {
            return Err(garbage(&self.available));
        }
        Ok(ClocksourceDevice {
            device: self.device.clone(),
            current: current.to_owned(),
            available,
        })
    }
}

/// What the collector keeps between scrapes of a real sysfs: the attribute
/// files, held open; the device listing; the families made of the texts last
/// read, reused while every attribute reads the same; and the PTP clocks,
/// listed again only after the kernel announces a device added or removed.
///
/// The kernel registers one clocksource device, `clocksource0`, at boot
/// (kernel/time/clocksource.c, `device_clocksource`), so its listing is made
/// again only after a failed read.
#[derive(Debug, Default)]
struct SysfsState {
    held: fs::HeldAttrs,
    devices: Option<Vec<DevicePaths>>,
    /// The families made of the texts last read, in device order (current,
    /// available). The texts compare by address first: [`fs::HeldAttrs`]
    /// hands out the same text while an attribute reads the same.
    last: Memo<Vec<Arc<str>>, Kept>,
    /// The PTP clocks, kept until a kernel device event.
    ptp: ListingCache<Kept>,
}

impl SysfsState {
    fn new() -> SysfsState {
        // Subscribed before the first listing, so no device added between the
        // two goes unseen.
        SysfsState {
            ptp: ListingCache::watched(NetlinkWatch::devices(), "PTP clocks"),
            ..SysfsState::default()
        }
    }

    fn clocksource_families(&mut self, roots: &Roots) -> Result<Vec<Family>, CollectError> {
        let devices = if let Some(d) = self.devices.take() {
            d
        } else {
            let dir = roots.sys(CLOCKSOURCE_DIR);
            fs::list_dir(&dir, "clocksource")?
                .into_iter()
                .map(|d| DevicePaths::new(&dir, d))
                .collect()
        };
        let mut texts = Vec::with_capacity(2 * devices.len());
        for d in &devices {
            texts.push(self.held.read(&d.current)?);
            texts.push(self.held.read(&d.available)?);
        }
        let kept = self.last.get_or_try(texts, |texts| {
            let parsed = devices
                .iter()
                .zip(texts.chunks_exact(2))
                .map(|(d, t)| d.parse(&t[0], &t[1]))
                .collect::<Result<Vec<_>, _>>()?;
            device_families(roots, &parsed).map(Kept::new)
        })?;
        // Listed again only after a failed read.
        self.devices = Some(devices);
        Ok(kept.families().collect())
    }

    fn ptp_families(&mut self, roots: &Roots) -> Result<Vec<Family>, fs::FileError> {
        match self.ptp.lookup() {
            Ok(kept) => Ok(kept.families().collect()),
            Err(generation) => {
                let kept = Kept::new(read_ptp(roots)?);
                self.ptp.store(generation, &kept);
                Ok(kept.families().collect())
            }
        }
    }
}

/// The families of the devices read; none is an error.
fn device_families(
    roots: &Roots,
    devices: &[ClocksourceDevice],
) -> Result<Vec<Family>, CollectError> {
    if devices.is_empty() {
        return Err(CollectError::Io(format!(
            "{}: no clocksource devices",
            roots.sys(CLOCKSOURCE_DIR).display()
        )));
    }
    Ok(clocksource_families(devices))
}

/// Clocksource names are short identifiers (`tsc`, `kvm-clock`, `acpi_pm`,
/// `hyperv_clocksource_tsc_page`, `arch_sys_counter`); anything else is a
/// corrupt file, not a label value.
pub fn is_clocksource_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn garbage(path: &std::path::Path) -> fs::FileError {
    fs::FileError::new(path, fs::FileErrorKind::Garbage)
}

/// Driver-chosen names (PTP clocks): printable, bounded.
fn sanitize(s: &str) -> String {
    s.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect()
}

fn clocksource_families(devices: &[ClocksourceDevice]) -> Vec<Family> {
    let mut current = CURRENT.family();
    let mut available = AVAILABLE.family();
    for d in devices {
        current.push(labels![d.device.clone(), d.current.clone()], 1.0);
        for a in &d.available {
            available.push(labels![d.device.clone(), a.clone()], 1.0);
        }
    }
    vec![current, available]
}

fn read_ptp(roots: &Roots) -> Result<Vec<Family>, fs::FileError> {
    let dir = roots.sys("class/ptp");
    let devices = match fs::list_dir(&dir, "ptp") {
        Ok(d) => d,
        Err(e) if e.is_missing() => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut clocks = PTP_CLOCK.family();
    let mut kvm = false;
    for device in devices {
        let name = sanitize(&fs::read_attr(&dir.join(&device).join("clock_name"))?);
        kvm |= name == PTP_KVM_NAME;
        clocks.push(labels![device, name], 1.0);
    }
    Ok(vec![clocks, PTP_KVM.single(f64::from(u8::from(kvm)))])
}

#[derive(Debug)]
struct Clocksource {
    roots: Roots,
    facts: StaticFacts,
    /// Whether `--path.sysfs` is a real sysfs (statfs magic `SYSFS_MAGIC`).
    /// Its clocksource and PTP attributes are generated in the kernel under a
    /// mutex held for microseconds and never wait on a disk or a network, so
    /// they are read in the scrape's own task: the hand-off to the blocking
    /// pool and back cost a third of a scrape's CPU (docs/performance.md).
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
    Ok(Arc::new(Clocksource {
        sysfs: is_sysfs(&ctx.roots.sysfs).then(|| Mutex::new(SysfsState::new())),
        roots: ctx.roots.clone(),
        facts,
    }))
}

impl Clocksource {
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

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn boot_params_follow_kernel_rules() {
        let p = boot_params(&words(
            "BOOT_IMAGE=/vmlinuz ro no-kvmclock no_kvmclock_vsyscall clocksource=acpi_pm tsc=reliable quiet",
        ));
        // /proc/cmdline ends with a newline, which procfs-core leaves on the last word.
        let last = boot_params(&["ro".to_owned(), "no-kvmclock-vsyscall\n".to_owned()]);
        assert!(last.no_kvmclock_vsyscall);
        assert_eq!(
            p,
            BootParams {
                no_kvmclock: true,
                no_kvmclock_vsyscall: true,
                clocksource: "acpi_pm".into(),
                tsc: "reliable".into(),
                notsc: false,
            }
        );
        // After "--" the words belong to init.
        let p = boot_params(&words("quiet -- no-kvmclock notsc clocksource=jiffies"));
        assert_eq!(p, BootParams::default());
        // The last occurrence wins; a bare `clocksource` has no value.
        let p = boot_params(&words("clocksource=hpet clocksource=tsc clocksource notsc"));
        assert_eq!(p.clocksource, "tsc");
        assert!(p.notsc);
        // Look-alikes are not the parameters.
        let p = boot_params(&words("no-kvmclock=1 xno-kvmclock no-kvmclockx"));
        assert_eq!(p, BootParams::default());
    }

    /// A sysfs root in a temporary directory, removed on drop.
    struct FakeSys(std::path::PathBuf);

    impl FakeSys {
        fn new(name: &str) -> FakeSys {
            let dir = std::env::temp_dir().join(format!(
                "clock-exporter-clocksource-{name}-{}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            FakeSys(dir)
        }

        fn write(&self, rel: &str, text: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, text).expect("write");
        }

        fn roots(&self) -> Roots {
            Roots {
                procfs: self.0.join("proc"),
                sysfs: self.0.clone(),
            }
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const CURRENT_PATH: &str = "devices/system/clocksource/clocksource0/current_clocksource";
    const AVAILABLE_PATH: &str = "devices/system/clocksource/clocksource0/available_clocksource";

    fn current_of(families: &[Family]) -> Vec<String> {
        crate::metrics::find(families, &CURRENT)
            .expect("current family")
            .samples
            .iter()
            .map(|s| s.label_values[1].to_string())
            .collect()
    }

    #[test]
    fn held_state_follows_every_change_of_the_clocksource() {
        let sys = FakeSys::new("held");
        sys.write(CURRENT_PATH, "kvm-clock\n");
        sys.write(AVAILABLE_PATH, "kvm-clock tsc acpi_pm \n");
        let roots = sys.roots();
        let mut state = SysfsState::default();
        let first = state.clocksource_families(&roots).expect("first read");
        assert_eq!(current_of(&first), ["kvm-clock"]);
        let again = state.clocksource_families(&roots).expect("second read");
        assert_eq!(again, first, "unchanged attributes, same families");
        // The watchdog demotes tsc, or an operator writes the attribute.
        sys.write(CURRENT_PATH, "tsc\n");
        let changed = state.clocksource_families(&roots).expect("changed");
        assert_eq!(current_of(&changed), ["tsc"]);
        let available = crate::metrics::find(&changed, &AVAILABLE).expect("available");
        assert_eq!(available.samples.len(), 3);
        // Garbage is an error, and the next good read recovers.
        sys.write(CURRENT_PATH, "tsc kvm-clock\n");
        assert!(state.clocksource_families(&roots).is_err());
        sys.write(CURRENT_PATH, "acpi_pm\n");
        let recovered = state.clocksource_families(&roots).expect("recovered");
        assert_eq!(current_of(&recovered), ["acpi_pm"]);
        // The files are held open: a regular file's text is read anew too.
        sys.write(AVAILABLE_PATH, "acpi_pm\n");
        let fewer = state.clocksource_families(&roots).expect("fewer");
        let available = crate::metrics::find(&fewer, &AVAILABLE).expect("available");
        assert_eq!(available.samples.len(), 1);
    }

    #[test]
    fn held_state_lists_ptp_clocks_and_reports_kvm() {
        let sys = FakeSys::new("ptp");
        sys.write("class/ptp/ptp0/clock_name", "KVM virtual PTP\n");
        sys.write("class/ptp/ptp1/clock_name", "igb\n");
        let mut state = SysfsState::default();
        let families = state.ptp_families(&sys.roots()).expect("ptp");
        let clocks = crate::metrics::find(&families, &PTP_CLOCK).expect("clocks");
        let names: Vec<String> = clocks
            .samples
            .iter()
            .map(|s| format!("{}={}", s.label_values[0], s.label_values[1]))
            .collect();
        assert_eq!(names, ["ptp0=KVM virtual PTP", "ptp1=igb"]);
        let kvm = crate::metrics::find(&families, &PTP_KVM).expect("kvm");
        assert_eq!(kvm.samples[0].value, 1.0);
        // Without device events every scrape lists anew.
        std::fs::remove_dir_all(sys.0.join("class/ptp/ptp0")).expect("remove");
        let families = state.ptp_families(&sys.roots()).expect("ptp");
        let kvm = crate::metrics::find(&families, &PTP_KVM).expect("kvm");
        assert_eq!(kvm.samples[0].value, 0.0);
    }

    #[test]
    fn only_a_real_sysfs_is_read_in_the_scrape_task() {
        assert!(is_sysfs(std::path::Path::new("/sys")));
        assert!(!is_sysfs(std::path::Path::new(env!("CARGO_MANIFEST_DIR"))));
        assert!(!is_sysfs(std::path::Path::new("/nonexistent")));
    }

    #[test]
    fn clocksource_names() {
        for ok in [
            "tsc",
            "kvm-clock",
            "acpi_pm",
            "hyperv_clocksource_tsc_page",
            "arch_sys_counter",
        ] {
            assert!(is_clocksource_name(ok), "{ok}");
        }
        for bad in [
            "",
            "tsc kvm-clock",
            "tsc\u{0}",
            "\u{1b}[31m",
            &"x".repeat(65),
            "tsc\"}",
        ] {
            assert!(!is_clocksource_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn cpuid_signatures_name_hypervisors() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
        assert_eq!(hypervisor_from_signatures(&s(&["KVMKVMKVM"])), "kvm");
        assert_eq!(
            hypervisor_from_signatures(&s(&["Microsoft Hv", "KVMKVMKVM"])),
            "kvm"
        );
        assert_eq!(
            hypervisor_from_signatures(&s(&["Microsoft Hv"])),
            "microsoft"
        );
        assert_eq!(hypervisor_from_signatures(&s(&["VMwareVMware"])), "vmware");
        assert_eq!(hypervisor_from_signatures(&s(&["TCGTCGTCGTCG"])), "qemu");
        assert_eq!(hypervisor_from_signatures(&s(&["SomethingNew"])), "unknown");
        assert_eq!(hypervisor_from_signatures(&[]), "unknown");
    }

    #[test]
    fn dmi_names_hypervisors_but_not_physical_microsoft() {
        assert_eq!(
            hypervisor_from_dmi("QEMU", "Standard PC (Q35 + ICH9, 2009)"),
            Some("qemu")
        );
        assert_eq!(hypervisor_from_dmi("Red Hat", "KVM"), Some("kvm"));
        assert_eq!(
            hypervisor_from_dmi("VMware, Inc.", "VMware Virtual Platform"),
            Some("vmware")
        );
        assert_eq!(
            hypervisor_from_dmi("Microsoft Corporation", "Virtual Machine"),
            Some("microsoft")
        );
        assert_eq!(
            hypervisor_from_dmi("Microsoft Corporation", "Surface Laptop 4"),
            None
        );
        assert_eq!(hypervisor_from_dmi("Dell Inc.", "PowerEdge R740"), None);
        assert_eq!(
            hypervisor_from_dmi("Google", "Google Compute Engine"),
            Some("kvm")
        );
    }

    #[test]
    fn classification_order() {
        let bare = VirtEvidence {
            cpuid: Some(CpuidHypervisor::BareMetal),
            cpuinfo_flag: Some(false),
            ..VirtEvidence::default()
        };
        assert_eq!(classify(&bare), Virtualization::new("none", "cpuid"));
        let firecracker_no_cpuid = VirtEvidence {
            cpuinfo_flag: Some(true),
            clocksources: vec!["tsc".into(), "kvm-clock".into()],
            ..VirtEvidence::default()
        };
        assert_eq!(
            classify(&firecracker_no_cpuid),
            Virtualization::new("kvm", "clocksource")
        );
        let unknown_guest = VirtEvidence {
            cpuinfo_flag: Some(true),
            clocksources: vec!["tsc".into(), "acpi_pm".into()],
            ..VirtEvidence::default()
        };
        assert_eq!(
            classify(&unknown_guest),
            Virtualization::new("unknown", "cpuinfo")
        );
        let dmi = VirtEvidence {
            dmi: Some(("Red Hat".into(), "KVM".into())),
            cpuinfo_flag: Some(true),
            ..VirtEvidence::default()
        };
        assert_eq!(classify(&dmi), Virtualization::new("kvm", "dmi"));
        let qemu = VirtEvidence {
            dmi: Some(("QEMU".into(), "Standard PC (Q35 + ICH9, 2009)".into())),
            ..VirtEvidence::default()
        };
        assert_eq!(classify(&qemu), Virtualization::new("qemu", "dmi"));
        let qemu_kvm = VirtEvidence {
            clocksources: vec!["kvm-clock".into()],
            ..qemu
        };
        assert_eq!(
            classify(&qemu_kvm),
            Virtualization::new("kvm", "clocksource")
        );
        let xen = VirtEvidence {
            sysfs_type: Some("xen\n".into()),
            ..VirtEvidence::default()
        };
        assert_eq!(classify(&xen), Virtualization::new("xen", "sysfs"));
        let bare_no_cpuid = VirtEvidence {
            cpuinfo_flag: Some(false),
            ..VirtEvidence::default()
        };
        assert_eq!(
            classify(&bare_no_cpuid),
            Virtualization::new("none", "cpuinfo")
        );
        assert_eq!(
            classify(&VirtEvidence::default()),
            Virtualization::new("unknown", "none")
        );
    }

    #[test]
    fn cpu_flags_from_cpuinfo_text() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu tsc constant_tsc nonstop_tsc hypervisor\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        let flags = cpu_flags(text).expect("flags");
        assert!(flags.contains(&"nonstop_tsc".to_owned()));
        let fams = cpu_families(&flags);
        assert_eq!(fams[0].samples[0].value, 1.0);
        let hv = fams[1]
            .samples
            .iter()
            .find(|s| s.label_values[0] == "hypervisor")
            .expect("flag");
        assert_eq!(hv.value, 1.0);
        let only_constant = cpu_families(&["constant_tsc".to_owned()]);
        assert_eq!(only_constant[0].samples[0].value, 0.0);
        assert_eq!(cpu_flags("garbage\0\u{1}"), None);
        assert_eq!(cpu_flags(""), None);
    }

    proptest::proptest! {
        #[test]
        fn cmdline_and_cpuinfo_parsers_never_panic(s in "\\PC{0,400}") {
            let _ = boot_params(&words(&s));
            let _ = cpu_flags(&s);
        }
    }
}
