//! The clock-related kernel boot parameters, from `/proc/cmdline`:
//! `no-kvmclock`, `no-kvmclock-vsyscall`, `clocksource=`, `tsc=`, `notsc`.

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

/// The clock parameters of `/proc/cmdline`'s text, split as procfs-core
/// splits it (quoted values stay whole); `None` when it does not parse.
pub fn from_cmdline(text: &str) -> Option<BootParams> {
    use procfs_core::{FromRead, KernelCmdline};
    KernelCmdline::from_read(text.as_bytes())
        .ok()
        .map(|c| boot_params(&c.0))
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

    proptest::proptest! {
        #[test]
        fn cmdline_parser_never_panics(s in "\\PC{0,400}") {
            let _ = boot_params(&words(&s));
        }
    }
}
