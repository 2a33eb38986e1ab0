//! The clocksource devices and PTP clocks, read from sysfs on every scrape:
//! the clocksource is writable there and the watchdog can demote `tsc` at
//! any time. A real sysfs is read through [`SysfsState`], which keeps the
//! attribute files open and the families of unchanged texts; any other root
//! (fixtures, a copy) is read afresh, to the same families.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{AVAILABLE, CURRENT, PTP_CLOCK, PTP_KVM, PTP_KVM_NAME};
use crate::collector::CollectError;
use crate::collector::listing::ListingCache;
use crate::metrics::{Family, Kept, Memo, labels};
use crate::sys::fs::{self, Roots};
use crate::sys::net::NetlinkWatch;

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
pub(crate) fn read_clocksources(roots: &Roots) -> Result<Vec<ClocksourceDevice>, fs::FileError> {
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
pub(crate) struct DevicePaths {
    device: String,
    current: PathBuf,
    available: PathBuf,
}

impl DevicePaths {
    pub(crate) fn new(dir: &Path, device: String) -> DevicePaths {
        let base = dir.join(&device);
        DevicePaths {
            current: base.join("current_clocksource"),
            available: base.join("available_clocksource"),
            device,
        }
    }

    /// Checks the two attributes' text and makes the device of them.
    pub(crate) fn parse(
        &self,
        current: &str,
        available_text: &str,
    ) -> Result<ClocksourceDevice, fs::FileError> {
        // A name listed twice is one clocksource: one series for it.
        let mut available: Vec<String> = Vec::new();
        for name in available_text.split_whitespace() {
            if !available.iter().any(|a| a == name) {
                available.push(name.to_owned());
            }
        }
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
pub(super) struct SysfsState {
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
    pub(super) fn new() -> SysfsState {
        // Subscribed before the first listing, so no device added between the
        // two goes unseen.
        SysfsState {
            ptp: ListingCache::watched(NetlinkWatch::devices(), "PTP clocks"),
            ..SysfsState::default()
        }
    }

    pub(super) fn clocksource_families(
        &mut self,
        roots: &Roots,
    ) -> Result<Vec<Family>, CollectError> {
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

    pub(super) fn ptp_families(&mut self, roots: &Roots) -> Result<Vec<Family>, fs::FileError> {
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
pub(crate) fn device_families(
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
pub(crate) fn sanitize(s: &str) -> String {
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

/// The PTP clocks under `/sys/class/ptp`: each device (`ptp0`) with the
/// name its driver gives it, sanitised; none when the class is absent.
pub(crate) fn ptp_clocks(roots: &Roots) -> Result<Vec<(String, String)>, fs::FileError> {
    let dir = roots.sys("class/ptp");
    let devices = match fs::list_dir(&dir, "ptp") {
        Ok(d) => d,
        Err(e) if e.is_missing() => Vec::new(),
        Err(e) => return Err(e),
    };
    devices
        .into_iter()
        .map(|device| {
            let name = sanitize(&fs::read_attr(&dir.join(&device).join("clock_name"))?);
            Ok((device, name))
        })
        .collect()
}

pub(super) fn read_ptp(roots: &Roots) -> Result<Vec<Family>, fs::FileError> {
    let mut clocks = PTP_CLOCK.family();
    let mut kvm = false;
    for (device, name) in ptp_clocks(roots)? {
        kvm |= name == PTP_KVM_NAME;
        clocks.push(labels![device, name], 1.0);
    }
    Ok(vec![clocks, PTP_KVM.single(f64::from(u8::from(kvm)))])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sysfs root in a temporary directory, removed on drop.
    struct FakeSys(fs::TestDir);

    impl FakeSys {
        fn new(name: &str) -> FakeSys {
            FakeSys(fs::TestDir::new(&format!("clocksource-{name}")))
        }

        fn write(&self, rel: &str, text: &str) {
            self.0.write(rel, text.as_bytes());
        }

        fn roots(&self) -> Roots {
            Roots {
                procfs: self.0.path().join("proc"),
                sysfs: self.0.path().to_path_buf(),
            }
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
        // A name listed twice is one clocksource, one series.
        sys.write(AVAILABLE_PATH, "tsc acpi_pm tsc hpet acpi_pm\n");
        let repeated = state.clocksource_families(&roots).expect("repeated");
        let available = crate::metrics::find(&repeated, &AVAILABLE).expect("available");
        let names: Vec<&str> = available
            .samples
            .iter()
            .map(|s| s.label_values[1].as_str())
            .collect();
        assert_eq!(names, ["tsc", "acpi_pm", "hpet"]);
        crate::metrics::assert_no_duplicate_series(&repeated);
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
        std::fs::remove_dir_all(sys.0.path().join("class/ptp/ptp0")).expect("remove");
        let families = state.ptp_families(&sys.roots()).expect("ptp");
        let kvm = crate::metrics::find(&families, &PTP_KVM).expect("kvm");
        assert_eq!(kvm.samples[0].value, 0.0);
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
}
