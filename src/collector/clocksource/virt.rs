//! Which hypervisor this host runs under, and the CPU flags that decide
//! whether its TSC can be trusted: pure functions of CPUID signatures, DMI,
//! `/sys/hypervisor/type`, the clocksources offered and `/proc/cpuinfo`.

use procfs_core::{CpuInfo, FromBufRead};

use super::{CLOCK_CPU_FLAGS, CPU_FLAG, TSC_INVARIANT};
use crate::metrics::{Family, labels};
use crate::sys::cpuid::CpuidHypervisor;

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

/// The longest first-CPU block of `/proc/cpuinfo` handed to the parser. A
/// real one is about 1.5 KiB (x86, with its flags and bugs lines); a host
/// with 1,024 CPUs repeats it 1,024 times, and only the first is read.
pub const MAX_CPU_BLOCK: usize = 32 * 1024;

/// The first CPU's block of a cpuinfo text, up to the first blank line;
/// `None` when it is longer than [`MAX_CPU_BLOCK`]. procfs-core's parser does
/// work quadratic in the number of keys it is given (a 1.4 MiB file took 45 s,
/// before the exporter listened), so it gets one bounded block, never the file.
pub fn first_cpu_block(cpuinfo: &str) -> Option<&str> {
    let end = cpuinfo.find("\n\n").map_or(cpuinfo.len(), |i| i + 1);
    (end <= MAX_CPU_BLOCK).then(|| &cpuinfo[..end])
}

/// The flags of the first CPU, from a cpuinfo text. `None` when the text has
/// no x86 `flags` line (other architectures, or garbage), or when its first
/// block is too long to be a CPU's.
pub fn cpu_flags(cpuinfo: &str) -> Option<Vec<String>> {
    let block = first_cpu_block(cpuinfo)?;
    let info = CpuInfo::from_buf_read(block.as_bytes()).ok()?;
    let flags = info.flags(0)?;
    Some(flags.into_iter().map(str::to_owned).collect())
}

pub(crate) fn cpu_families(flags: &[String]) -> Vec<Family> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn only_a_bounded_first_cpu_block_reaches_the_parser() {
        use std::fmt::Write as _;
        let two = "processor\t: 0\nflags\t\t: fpu tsc\n\nprocessor\t: 1\nflags\t\t: fpu\n";
        assert_eq!(
            first_cpu_block(two),
            Some("processor\t: 0\nflags\t\t: fpu tsc\n")
        );
        assert_eq!(
            first_cpu_block("processor\t: 0\n"),
            Some("processor\t: 0\n")
        );
        // The reported attack: one block of 1.4 MiB of keys.
        let keys = (0..140_000).fold(String::new(), |mut t, i| {
            let _ = writeln!(t, "k{i}: v");
            t
        });
        assert!(keys.len() > 1 << 20);
        assert_eq!(first_cpu_block(&keys), None);
        assert_eq!(cpu_flags(&format!("{keys}flags\t: tsc\n")), None);
        // The same keys after a real first block are never read.
        let real = format!("processor\t: 0\nflags\t\t: tsc constant_tsc\n\n{keys}");
        assert_eq!(
            cpu_flags(&real),
            Some(vec!["tsc".to_owned(), "constant_tsc".to_owned()])
        );
        // A block just within the bound is parsed.
        let padding = "x".repeat(MAX_CPU_BLOCK - 40);
        let edge = format!("processor\t: 0\nmodel name\t: {padding}\nflags\t: tsc\n");
        assert!(edge.len() <= MAX_CPU_BLOCK, "{}", edge.len());
        assert_eq!(cpu_flags(&edge), Some(vec!["tsc".to_owned()]));
    }

    #[test]
    fn every_fixture_host_has_its_flags_within_the_bound() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts");
        for host in std::fs::read_dir(dir)
            .expect("hosts")
            .filter_map(Result::ok)
        {
            let Ok(text) = std::fs::read_to_string(host.path().join("proc/cpuinfo")) else {
                continue;
            };
            let block = first_cpu_block(&text).expect("a real first block is short");
            assert!(
                block.len() < 8 * 1024,
                "{}: {}",
                host.path().display(),
                block.len()
            );
            assert!(cpu_flags(&text).is_some(), "{}", host.path().display());
        }
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
        fn cpuinfo_parser_never_panics(s in "\\PC{0,400}") {
            let _ = cpu_flags(&s);
        }
    }
}
