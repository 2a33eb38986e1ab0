//! `PTP_SYS_OFFSET` on a PTP clock device (include/uapi/linux/ptp_clock.h):
//! up to 25 readings of the PTP clock, each sandwiched between two readings
//! of the system clock (CLOCK_REALTIME). On `ptp_kvm` the PTP clock is the
//! host's CLOCK_REALTIME, read through a hypercall.
//!
//! The kernel fills `ts[0..=2n]`: system, PTP, system, PTP, …, system; the
//! i-th sample is `(ts[2i], ts[2i+1], ts[2i+2])`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The most samples one call takes (`PTP_MAX_SAMPLES`).
pub const MAX_SAMPLES: u32 = 25;

/// One sandwich: system clock, PTP clock, system clock, in ns since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sandwich {
    /// CLOCK_REALTIME before.
    pub before: i128,
    /// The PTP clock.
    pub ptp: i128,
    /// CLOCK_REALTIME after.
    pub after: i128,
}

/// Why a device could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PtpError {
    /// The device node is not readable by this process.
    Denied(String),
    /// No device node at the path.
    Missing(String),
    /// The clock refuses the request: `EOPNOTSUPP` from ptp_kvm is the host
    /// not on a TSC clocksource (its hypercall needs one).
    Unsupported(String),
    /// Any other failure.
    Io(String),
}

impl std::fmt::Display for PtpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PtpError::Denied(s)
            | PtpError::Missing(s)
            | PtpError::Unsupported(s)
            | PtpError::Io(s) => f.write_str(s),
        }
    }
}

/// A source of sandwiches: the device, or recorded ones in tests.
pub trait SysOffset: Send + std::fmt::Debug {
    /// Takes `n` sandwiches (1 to [`MAX_SAMPLES`]).
    fn sys_offset(&mut self, n: u32) -> Result<Vec<Sandwich>, PtpError>;
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PtpClockTime {
    sec: i64,
    nsec: u32,
    reserved: u32,
}

#[repr(C)]
struct PtpSysOffset {
    n_samples: u32,
    rsv: [u32; 3],
    ts: [PtpClockTime; 2 * MAX_SAMPLES as usize + 1],
}

#[allow(unsafe_code)]
mod ioctl {
    // The macro makes an `unsafe fn` wrapping ioctl(2) with this request.
    nix::ioctl_write_ptr_bad!(
        ptp_sys_offset,
        nix::request_code_write!(b'=', 5, std::mem::size_of::<super::PtpSysOffset>()),
        super::PtpSysOffset
    );
}

/// An open PTP clock device.
#[derive(Debug)]
pub struct Device {
    file: File,
    path: String,
}

impl Device {
    /// Opens the device read-only (the ioctl needs no more).
    pub fn open(path: &Path) -> Result<Device, PtpError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|e| classify(&shown, &e))?;
        Ok(Device { file, path: shown })
    }
}

impl SysOffset for Device {
    fn sys_offset(&mut self, n: u32) -> Result<Vec<Sandwich>, PtpError> {
        let n = n.clamp(1, MAX_SAMPLES);
        let mut req = PtpSysOffset {
            n_samples: n,
            rsv: [0; 3],
            ts: [PtpClockTime::default(); 2 * MAX_SAMPLES as usize + 1],
        };
        // SAFETY: `req` is the kernel's `struct ptp_sys_offset`, laid out
        // with repr(C) as ptp_clock.h declares it (832 bytes, which the
        // request code encodes); the kernel reads n_samples and writes at
        // most 2·25+1 times into `ts`, all inside `req`, which lives across
        // the call. The fd is ours and open. The header declares the
        // request _IOW although the kernel also writes the struct back,
        // hence the `_bad` form with the kernel's own request code.
        #[allow(unsafe_code)]
        let rc = unsafe { ioctl::ptp_sys_offset(self.file.as_raw_fd(), &raw mut req) };
        rc.map_err(|e| {
            let io = std::io::Error::from_raw_os_error(e as i32);
            classify(&self.path, &io)
        })?;
        Ok(sandwiches(&req.ts, n))
    }
}

fn sandwiches(ts: &[PtpClockTime], n: u32) -> Vec<Sandwich> {
    let ns = |t: &PtpClockTime| i128::from(t.sec) * 1_000_000_000 + i128::from(t.nsec);
    (0..n as usize)
        .filter_map(|i| {
            Some(Sandwich {
                before: ns(ts.get(2 * i)?),
                ptp: ns(ts.get(2 * i + 1)?),
                after: ns(ts.get(2 * i + 2)?),
            })
        })
        .collect()
}

fn classify(path: &str, e: &std::io::Error) -> PtpError {
    match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => PtpError::Denied(format!(
            "{path}: {e} (PTP devices are root's, mode 0600: a udev rule can give the exporter's group read access)"
        )),
        Some(libc::ENOENT | libc::ENODEV) => PtpError::Missing(format!("{path}: {e}")),
        Some(libc::EOPNOTSUPP) => PtpError::Unsupported(format!(
            "{path}: {e} (ptp_kvm needs the host on a TSC clocksource)"
        )),
        _ => PtpError::Io(format!("{path}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_kernels() {
        // _IOW('=', 5, struct ptp_sys_offset): 832 bytes.
        assert_eq!(std::mem::size_of::<PtpSysOffset>(), 832);
        assert_eq!(
            nix::request_code_write!(b'=', 5, std::mem::size_of::<PtpSysOffset>()) as u64,
            0x4340_3d05
        );
    }

    #[test]
    fn sandwiches_are_read_from_the_interleaved_times() {
        let t = |sec, nsec| PtpClockTime {
            sec,
            nsec,
            reserved: 0,
        };
        let ts = [t(10, 0), t(10, 500), t(10, 1000), t(10, 1700), t(10, 2000)];
        assert_eq!(
            sandwiches(&ts, 2),
            [
                Sandwich {
                    before: 10_000_000_000,
                    ptp: 10_000_000_500,
                    after: 10_000_001_000
                },
                Sandwich {
                    before: 10_000_001_000,
                    ptp: 10_000_001_700,
                    after: 10_000_002_000
                },
            ]
        );
        // More asked than there are times: only whole sandwiches.
        assert_eq!(sandwiches(&ts, 5).len(), 2);
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = |errno| classify("/dev/ptp0", &std::io::Error::from_raw_os_error(errno));
        assert!(matches!(e(libc::EACCES), PtpError::Denied(s) if s.contains("udev")));
        assert!(matches!(e(libc::EOPNOTSUPP), PtpError::Unsupported(s) if s.contains("TSC")));
        assert!(matches!(e(libc::ENOENT), PtpError::Missing(_)));
        assert!(matches!(e(libc::EIO), PtpError::Io(_)));
        assert!(matches!(
            Device::open(Path::new("/nonexistent/ptp0")),
            Err(PtpError::Missing(_))
        ));
    }

    #[test]
    fn a_file_that_is_no_ptp_clock_is_refused() {
        // /dev/null opens, and refuses the ioctl (ENOTTY).
        let mut d = Device::open(Path::new("/dev/null")).expect("open");
        assert!(matches!(d.sys_offset(5), Err(PtpError::Io(_))));
    }
}
