//! The CPU's time-stamp counter read between two readings of the kernel's
//! clocks, for the clock-rate probe (x86_64 only).
//!
//! `rdtscp` waits until every earlier instruction has executed and returns
//! the CPU's id (IA32_TSC_AUX, which Linux sets to the CPU number) with the
//! counter; an `lfence` after it keeps later instructions from starting
//! before it. A reading is `rdtscp`, CLOCK_MONOTONIC_RAW, CLOCK_MONOTONIC,
//! `rdtscp`: the clocks were read between the two counter values, so the
//! midpoint stands for them within half the width. Both `rdtscp` must name
//! the same CPU: without `PVCLOCK_TSC_STABLE_BIT` kvm-clock is per vCPU,
//! and TSCs of different CPUs need not agree.

use nix::time::{ClockId, clock_gettime};

/// One reading of the counter and the clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The counter at the midpoint of the two `rdtscp`.
    pub tsc: u64,
    /// Cycles between the two `rdtscp`: the reading's uncertainty.
    pub width: u64,
    /// The CPU both `rdtscp` ran on.
    pub cpu: u32,
    /// CLOCK_MONOTONIC_RAW, in nanoseconds.
    pub raw_ns: i64,
    /// CLOCK_MONOTONIC, in nanoseconds.
    pub mono_ns: i64,
}

/// Why the counter cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// Not an x86_64 CPU.
    #[cfg_attr(target_arch = "x86_64", allow(dead_code))]
    NotX86,
    /// The CPU has no `rdtscp` (CPUID 0x8000_0001 EDX bit 27).
    NoRdtscp,
    /// The process may not read the counter (`prctl(PR_SET_TSC, PR_TSC_SIGSEGV)`).
    Forbidden,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Unreadable::NotX86 => "not an x86_64 CPU",
            Unreadable::NoRdtscp => "the CPU has no rdtscp instruction",
            Unreadable::Forbidden => "reading the TSC is forbidden to this process (PR_SET_TSC)",
        })
    }
}

/// Whether this process can read the counter with `rdtscp`.
#[cfg(target_arch = "x86_64")]
pub fn check() -> Result<(), Unreadable> {
    use std::arch::x86_64::__cpuid;
    if __cpuid(0x8000_0000).eax < 0x8000_0001 || __cpuid(0x8000_0001).edx & (1 << 27) == 0 {
        return Err(Unreadable::NoRdtscp);
    }
    let mut mode: libc::c_int = 0;
    // SAFETY: PR_GET_TSC writes one int through the pointer, which points to
    // `mode`, live for the call. libc's prctl is variadic, hence unsafe.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::prctl(libc::PR_GET_TSC, &raw mut mode) };
    if rc == 0 && mode == libc::PR_TSC_SIGSEGV {
        return Err(Unreadable::Forbidden);
    }
    Ok(())
}

/// Whether this process can read the counter with `rdtscp`.
#[cfg(not(target_arch = "x86_64"))]
pub fn check() -> Result<(), Unreadable> {
    Err(Unreadable::NotX86)
}

#[cfg(target_arch = "x86_64")]
fn rdtscp() -> (u64, u32) {
    use std::arch::x86_64::{__rdtscp, _mm_lfence};
    let mut aux = 0u32;
    // SAFETY: callers reach this only after `check` found `rdtscp` in CPUID
    // and the process allowed to read the TSC; the instruction writes the
    // 32-bit IA32_TSC_AUX through the pointer, which points to `aux`.
    // `lfence` is SSE2, part of every x86_64 CPU, and touches no memory.
    #[allow(unsafe_code)]
    let tsc = unsafe {
        let tsc = __rdtscp(&raw mut aux);
        _mm_lfence();
        tsc
    };
    (tsc, aux)
}

fn nanos(id: ClockId) -> Option<i64> {
    let t = clock_gettime(id).ok()?;
    Some(t.tv_sec() * 1_000_000_000 + t.tv_nsec())
}

/// One reading; `None` when the two `rdtscp` ran on different CPUs or a
/// clock could not be read. Only after [`check`] succeeded.
#[cfg(target_arch = "x86_64")]
pub fn read() -> Option<Reading> {
    let (t1, c1) = rdtscp();
    let raw_ns = nanos(ClockId::CLOCK_MONOTONIC_RAW)?;
    let mono_ns = nanos(ClockId::CLOCK_MONOTONIC)?;
    let (t2, c2) = rdtscp();
    (c1 == c2 && t2 >= t1).then(|| Reading {
        tsc: t1 + (t2 - t1) / 2,
        width: t2 - t1,
        cpu: c1,
        raw_ns,
        mono_ns,
    })
}

/// One reading; `None` when the two `rdtscp` ran on different CPUs or a
/// clock could not be read. Only after [`check`] succeeded.
#[cfg(not(target_arch = "x86_64"))]
pub fn read() -> Option<Reading> {
    None
}

/// The tightest of `n` readings on one CPU: the one with the fewest cycles
/// between its two counter values (an interrupt or a preemption in between
/// widens a reading; the narrowest is the one least disturbed).
pub fn tightest(n: usize) -> Option<Reading> {
    (0..n).filter_map(|_| read()).min_by_key(|r| r.width)
}

/// Pins the calling thread to the CPU it runs on now, so that its readings
/// share one TSC and one kvm-clock page; returns that CPU.
pub fn pin_to_current_cpu() -> Option<usize> {
    use nix::sched::{CpuSet, sched_getcpu, sched_setaffinity};
    use nix::unistd::Pid;
    let cpu = sched_getcpu().ok()?;
    let mut set = CpuSet::new();
    set.set(cpu).ok()?;
    sched_setaffinity(Pid::from_raw(0), &set).ok()?;
    Some(cpu)
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn readings_advance_with_both_clocks() {
        check().expect("an x86_64 test machine has rdtscp");
        let a = tightest(8).expect("a reading");
        std::thread::sleep(std::time::Duration::from_millis(50));
        let b = tightest(8).expect("a reading");
        assert!(b.raw_ns - a.raw_ns >= 50_000_000, "{a:?} {b:?}");
        if a.cpu == b.cpu {
            let hz = (b.tsc - a.tsc) as f64 / ((b.raw_ns - a.raw_ns) as f64 * 1e-9);
            // Any CPU of this century: between 100 MHz and 10 GHz.
            assert!((1e8..1e10).contains(&hz), "{hz}");
        }
        // CLOCK_MONOTONIC and _RAW advance at most 0.05 % apart.
        let (dr, dm) = (b.raw_ns - a.raw_ns, b.mono_ns - a.mono_ns);
        assert!((dm - dr).abs() < dr / 2000 + 1000, "{dr} {dm}");
    }
}
