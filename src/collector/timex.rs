//! The kernel clock discipline as `adjtimex(2)` (`modes = 0`) reports it.
//!
//! Reading the call is [`crate::sys::adjtimex::read`]; everything here is a
//! pure function of the returned `struct timex`, tested with literal values.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;

use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration, nonblocking};
use crate::metrics::{Family, Kept, Memo, labels, metrics};
use crate::sys::adjtimex::{self, RawTimex};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "timex",
    help: "kernel clock discipline (adjtimex)",
    default_enabled: true,
    metrics: &[METRICS],
    args: super::no_args,
    build,
};

/// `STA_*` status bits of `include/uapi/linux/timex.h`, in bit order.
pub const STATUS_FLAGS: [(&str, i32); 16] = [
    ("STA_PLL", 0x0001),
    ("STA_PPSFREQ", 0x0002),
    ("STA_PPSTIME", 0x0004),
    ("STA_FLL", 0x0008),
    ("STA_INS", 0x0010),
    ("STA_DEL", 0x0020),
    ("STA_UNSYNC", 0x0040),
    ("STA_FREQHOLD", 0x0080),
    ("STA_PPSSIGNAL", 0x0100),
    ("STA_PPSJITTER", 0x0200),
    ("STA_PPSWANDER", 0x0400),
    ("STA_PPSERROR", 0x0800),
    ("STA_CLOCKERR", 0x1000),
    ("STA_NANO", 0x2000),
    ("STA_MODE", 0x4000),
    ("STA_CLK", 0x8000),
];

const STA_NANO: i32 = 0x2000;

/// adjtimex return values (clock states), indexed by value.
pub const STATES: [&str; 6] = [
    "TIME_OK",
    "TIME_INS",
    "TIME_DEL",
    "TIME_OOP",
    "TIME_WAIT",
    "TIME_ERROR",
];
const TIME_ERROR: i32 = 5;

/// Largest offset the kernel's PLL holds, in µs (`MAXPHASE`, 0.5 s, in
/// kernel/time/ntp.c), doubled for margin. A microsecond-mode `offset`
/// above `i32::MAX / 1000` cannot be a real reading: it is the
/// `(u32)offset_ns / 1000` artifact of kernels without the `div_s64` fix
/// (node_exporter #3764), which turns a small negative offset into ~4.29 s.
pub const ARTIFACT_THRESHOLD_US: i64 = 2_147_483;

/// Scaled-ppm fields carry a 16-bit binary fraction.
const PPM_SCALE: f64 = 65_536.0;

metrics! {
    /// Every family this collector emits.
    pub static METRICS = [
        OFFSET: Gauge(
            "clock_timex_offset_seconds",
            [],
            "Time offset the kernel PLL is still correcting, in seconds, repaired where the kernel returns the 4.29 s artifact."
        ),
        FREQ: Gauge(
            "clock_timex_frequency_adjustment_ratio",
            [],
            "Kernel frequency correction from the timex freq field, as a ratio (1e-6 is 1 ppm)."
        ),
        FREQ_EFFECTIVE: Gauge(
            "clock_timex_effective_frequency_adjustment_ratio",
            [],
            "Total kernel frequency correction including the tick length that chronyd also steers, as a ratio."
        ),
        MAXERROR: Gauge(
            "clock_timex_maxerror_seconds",
            [],
            "Kernel maximum error estimate, in seconds."
        ),
        ESTERROR: Gauge(
            "clock_timex_estimated_error_seconds",
            [],
            "Kernel estimated error, in seconds."
        ),
        CONSTANT: Gauge(
            "clock_timex_loop_time_constant",
            [],
            "Kernel PLL time constant."
        ),
        TICK: Gauge(
            "clock_timex_tick_seconds",
            [],
            "Length of a kernel clock tick, in seconds."
        ),
        PRECISION: Gauge(
            "clock_timex_precision_seconds",
            [],
            "Kernel clock precision, in seconds."
        ),
        TOLERANCE: Gauge(
            "clock_timex_tolerance_ratio",
            [],
            "Largest frequency correction the kernel accepts, as a ratio."
        ),
        TAI: Gauge(
            "clock_timex_tai_offset_seconds",
            [],
            "International Atomic Time minus UTC known to the kernel, in seconds."
        ),
        STATUS_FLAG: Gauge(
            "clock_timex_status_flag",
            ["flag"],
            "Kernel clock status bits, one series per STA_* flag, 1 when set."
        ),
        STATE: Gauge(
            "clock_timex_state",
            ["state"],
            "Kernel clock state returned by adjtimex, 1 for the current state."
        ),
        SYNC_STATUS: Gauge(
            "clock_timex_sync_status",
            [],
            "1 unless the kernel reports the clock state TIME_ERROR (unsynchronised)."
        ),
        PPS_FREQ: Gauge(
            "clock_timex_pps_frequency_ratio",
            [],
            "Frequency of the PPS signal relative to the system clock, as a ratio."
        ),
        PPS_JITTER: Gauge(
            "clock_timex_pps_jitter_seconds",
            [],
            "PPS signal jitter, in seconds."
        ),
        PPS_SHIFT: Gauge(
            "clock_timex_pps_calibration_interval_seconds",
            [],
            "PPS calibration interval, in seconds."
        ),
        PPS_STABIL: Gauge(
            "clock_timex_pps_stability_ratio",
            [],
            "PPS signal stability, as a ratio."
        ),
        PPS_JITCNT: Counter(
            "clock_timex_pps_jitter_limit_exceeded",
            [],
            "PPS signals whose jitter exceeded the limit, as counted by the kernel."
        ),
        PPS_CALCNT: Counter(
            "clock_timex_pps_calibrations",
            [],
            "PPS calibration intervals, as counted by the kernel."
        ),
        PPS_ERRCNT: Counter(
            "clock_timex_pps_calibration_errors",
            [],
            "PPS calibration errors, as counted by the kernel."
        ),
        PPS_STBCNT: Counter(
            "clock_timex_pps_stability_limit_exceeded",
            [],
            "PPS signals whose stability exceeded the limit, as counted by the kernel."
        ),
        REPAIRS: Counter(
            "clock_timex_offset_repairs",
            [],
            "Offset readings this exporter repaired from the kernel's 4.29 s artifact (node_exporter issue 3764)."
        ),
    ];
}

/// A timex reading in base units.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Offset in seconds, repaired if needed.
    pub offset_seconds: f64,
    /// Whether `offset_seconds` was rebuilt from the 4.29 s artifact.
    pub offset_repaired: bool,
    /// `freq` as a ratio.
    pub frequency_ratio: f64,
    /// `freq` plus the tick's deviation from nominal, as a ratio.
    pub effective_frequency_ratio: f64,
    /// Seconds.
    pub maxerror_seconds: f64,
    /// Seconds.
    pub esterror_seconds: f64,
    /// Raw status bits.
    pub status: i32,
    /// The call's return value.
    pub state: i32,
    /// PLL time constant.
    pub constant: i64,
    /// Seconds.
    pub tick_seconds: f64,
    /// Seconds.
    pub precision_seconds: f64,
    /// Ratio.
    pub tolerance_ratio: f64,
    /// Seconds.
    pub tai_seconds: f64,
    /// Ratio.
    pub pps_frequency_ratio: f64,
    /// Seconds.
    pub pps_jitter_seconds: f64,
    /// Seconds (2^shift).
    pub pps_interval_seconds: f64,
    /// Ratio.
    pub pps_stability_ratio: f64,
    /// Counts.
    pub pps_counts: [i64; 4],
}

/// A field that follows `STA_NANO` (ns when set, µs otherwise), in seconds.
fn nano_or_micro(v: i64, status: i32) -> f64 {
    if status & STA_NANO != 0 {
        v as f64 / 1e9
    } else {
        v as f64 / 1e6
    }
}

/// The offset in seconds, and whether it had to be rebuilt from the artifact
/// described at [`ARTIFACT_THRESHOLD_US`]: `offset_us · 1000 − 2^32` ns.
pub fn offset_seconds(offset: i64, status: i32) -> (f64, bool) {
    if status & STA_NANO == 0
        && offset > ARTIFACT_THRESHOLD_US
        && offset <= i64::from(u32::MAX) / 1000
    {
        let ns = offset * 1000 - (1i64 << 32);
        return (ns as f64 / 1e9, true);
    }
    (nano_or_micro(offset, status), false)
}

impl Reading {
    /// Converts a raw `struct timex` and the call's return value. `user_hz` is
    /// `sysconf(_SC_CLK_TCK)`, the unit of `tick` (µs per USER_HZ tick).
    pub fn from_raw(t: &RawTimex, state: i32, user_hz: i64) -> Reading {
        let (offset_seconds, offset_repaired) = offset_seconds(t.offset, t.status);
        let freq_ppm = t.freq as f64 / PPM_SCALE;
        // chronyd splits its correction between freq and tick (sys_linux.c):
        // each µs of tick above nominal (1e6 / USER_HZ) speeds the clock by
        // USER_HZ µs per second, i.e. USER_HZ ppm.
        let tick_ppm = if user_hz > 0 {
            (t.tick as f64 - 1e6 / user_hz as f64) * user_hz as f64
        } else {
            0.0
        };
        Reading {
            offset_seconds,
            offset_repaired,
            frequency_ratio: freq_ppm * 1e-6,
            effective_frequency_ratio: (freq_ppm + tick_ppm) * 1e-6,
            maxerror_seconds: t.maxerror as f64 / 1e6,
            esterror_seconds: t.esterror as f64 / 1e6,
            status: t.status,
            state,
            constant: t.constant,
            tick_seconds: t.tick as f64 / 1e6,
            precision_seconds: t.precision as f64 / 1e6,
            tolerance_ratio: t.tolerance as f64 / PPM_SCALE * 1e-6,
            tai_seconds: f64::from(t.tai),
            pps_frequency_ratio: t.ppsfreq as f64 / PPM_SCALE * 1e-6,
            pps_jitter_seconds: nano_or_micro(t.jitter, t.status),
            pps_interval_seconds: 2f64.powi(t.shift.clamp(0, 62)),
            pps_stability_ratio: t.stabil as f64 / PPM_SCALE * 1e-6,
            pps_counts: [t.jitcnt, t.calcnt, t.errcnt, t.stbcnt],
        }
    }

    /// The reading's families; `repairs_total` is the running repair count.
    pub fn families(&self, repairs_total: u64) -> Vec<Family> {
        self.families_with(repairs_total, status_families(self.status, self.state))
    }

    /// The families, with the status-bit and state families given.
    fn families_with(
        &self,
        repairs_total: u64,
        status: impl IntoIterator<Item = Family>,
    ) -> Vec<Family> {
        let [jit, cal, err, stb] = self.pps_counts;
        let mut out = vec![
            OFFSET.single(self.offset_seconds),
            FREQ.single(self.frequency_ratio),
            FREQ_EFFECTIVE.single(self.effective_frequency_ratio),
            MAXERROR.single(self.maxerror_seconds),
            ESTERROR.single(self.esterror_seconds),
            CONSTANT.single(self.constant as f64),
            TICK.single(self.tick_seconds),
            PRECISION.single(self.precision_seconds),
            TOLERANCE.single(self.tolerance_ratio),
            TAI.single(self.tai_seconds),
        ];
        out.extend(status);
        out.extend([
            SYNC_STATUS.single(f64::from(u8::from(self.state != TIME_ERROR))),
            PPS_FREQ.single(self.pps_frequency_ratio),
            PPS_JITTER.single(self.pps_jitter_seconds),
            PPS_SHIFT.single(self.pps_interval_seconds),
            PPS_STABIL.single(self.pps_stability_ratio),
            PPS_JITCNT.single(jit.max(0) as f64),
            PPS_CALCNT.single(cal.max(0) as f64),
            PPS_ERRCNT.single(err.max(0) as f64),
            PPS_STBCNT.single(stb.max(0) as f64),
            REPAIRS.single(repairs_total as f64),
        ]);
        out
    }
}

/// `clock_timex_status_flag` (one sample per bit) and `clock_timex_state`
/// (one-hot) for a status word and a return value.
fn status_families(status: i32, state: i32) -> [Family; 2] {
    let mut flags = STATUS_FLAG.family_of(STATUS_FLAGS.len());
    for (name, bit) in STATUS_FLAGS {
        flags.push(labels![name], f64::from(u8::from(status & bit != 0)));
    }
    let mut states = STATE.family_of(STATES.len());
    for (i, name) in STATES.iter().enumerate() {
        states.push(labels![*name], f64::from(u8::from(state == i as i32)));
    }
    [flags, states]
}

/// The timex collector.
#[derive(Debug)]
struct Timex {
    user_hz: i64,
    repairs: AtomicU64,
    refused_logged: AtomicBool,
    /// The families of the last status word and state: they change only
    /// when the NTP daemon changes them, and their 22 samples are then
    /// neither rebuilt nor compared again.
    last_status: Mutex<Memo<(i32, i32), Kept>>,
}

impl Timex {
    fn new(user_hz: i64) -> Timex {
        Timex {
            user_hz,
            repairs: AtomicU64::new(0),
            refused_logged: AtomicBool::new(false),
            last_status: Mutex::new(Memo::default()),
        }
    }

    /// The status families of a reading, the kept ones while they are the same.
    fn status_families(&self, status: i32, state: i32) -> Kept {
        let mut last = self
            .last_status
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        last.get_or_make((status, state), |&(status, state)| {
            Kept::new(status_families(status, state))
        })
    }
}

fn build(_: &clap::ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    let user_hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100);
    Ok(Arc::new(Timex::new(user_hz)))
}

impl Timex {
    /// Turns one adjtimex outcome into this scrape's result.
    fn outcome(&self, read: Result<(RawTimex, i32), Errno>) -> Collected {
        match read {
            Ok((raw, state)) => {
                let reading = Reading::from_raw(&raw, state, self.user_hz);
                let repairs = if reading.offset_repaired {
                    self.repairs.fetch_add(1, Ordering::Relaxed) + 1
                } else {
                    self.repairs.load(Ordering::Relaxed)
                };
                let status = self.status_families(reading.status, reading.state);
                Collected {
                    families: reading.families_with(repairs, status.families()),
                    errors: Vec::new(),
                }
            }
            Err(e @ (Errno::EPERM | Errno::ENOSYS)) => {
                // A seccomp profile or a kernel without the call: nothing to
                // report, and nothing that changes on the next scrape.
                if !self.refused_logged.swap(true, Ordering::Relaxed) {
                    tracing::info!(error = %e, "adjtimex is not available here; timex metrics are disabled");
                }
                Collected::error(CollectError::NoData(format!("adjtimex: {e}")))
            }
            Err(e) => Collected::error(CollectError::Io(format!("adjtimex: {e}"))),
        }
    }
}

impl Collector for Timex {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        // adjtimex(2) with modes = 0 only copies the kernel's NTP state under
        // the timekeeping spinlock (kernel/time/timekeeping.c, do_adjtimex):
        // it never sleeps, so it needs no blocking thread.
        nonblocking(move || self.outcome(adjtimex::read()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Desc;

    const STA_PLL: i32 = 0x0001;
    const STA_UNSYNC: i32 = 0x0040;

    fn value(fams: &[Family], desc: &Desc, label: Option<&str>) -> f64 {
        crate::metrics::find(fams, desc)
            .and_then(|f| f.value(label.as_slice()))
            .expect("sample present")
    }

    fn approx(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} != {b}");
    }

    #[test]
    fn offset_honours_sta_nano() {
        assert_eq!(offset_seconds(-1_500, STA_NANO), (-1.5e-6, false));
        assert_eq!(offset_seconds(-1_500, 0), (-1.5e-3, false));
        assert_eq!(offset_seconds(250_000, STA_PLL), (0.25, false));
    }

    #[test]
    fn glitch_value_is_repaired() {
        // A true offset of -1.5 ms read by a kernel without the div_s64 fix:
        // (u32)(-1_500_000 ns) / 1000 = 4_293_467 µs, which reads as 4.29 s.
        let glitch = i64::from((-1_500_000i64) as u32) / 1000;
        assert_eq!(glitch, 4_293_467);
        let (s, repaired) = offset_seconds(glitch, 0);
        assert!(repaired);
        // The µs truncation loses at most 1 µs of the true value.
        assert!((s - -0.0015).abs() < 1e-6, "{s}");
        // The same magnitude with STA_NANO set is a plain nanosecond value.
        assert_eq!(offset_seconds(glitch, STA_NANO), (0.004_293_467, false));
        // At and below the threshold nothing is touched.
        assert_eq!(offset_seconds(ARTIFACT_THRESHOLD_US, 0), (2.147_483, false));
    }

    #[test]
    fn frequency_sign_and_tick_split() {
        // chronyd on a 100 Hz USER_HZ kernel: tick 10001 µs is +100 ppm, and
        // freq -3276800 is -50 ppm, so the clock runs 50 ppm fast in total.
        let raw = RawTimex {
            freq: -3_276_800,
            tick: 10_001,
            status: STA_UNSYNC,
            ..RawTimex::default()
        };
        let r = Reading::from_raw(&raw, 5, 100);
        approx(r.frequency_ratio, -50e-6);
        approx(r.effective_frequency_ratio, 50e-6);
        approx(r.tick_seconds, 0.010_001);
        // USER_HZ 250: nominal tick 4000 µs, one µs is 250 ppm.
        let raw250 = RawTimex {
            freq: 655_360,
            tick: 3_999,
            ..RawTimex::default()
        };
        let r = Reading::from_raw(&raw250, 0, 250);
        approx(r.frequency_ratio, 10e-6);
        approx(r.effective_frequency_ratio, -240e-6);
    }

    #[test]
    fn every_field_converts_to_base_units() {
        let raw = RawTimex {
            offset: 12_345,
            freq: 1_234_567,
            maxerror: 16_000_000,
            esterror: 1_500,
            status: STA_UNSYNC | STA_NANO,
            constant: 7,
            precision: 1,
            tolerance: 32_768_000,
            tick: 10_000,
            ppsfreq: -65_536,
            jitter: 2_000,
            shift: 4,
            stabil: 131_072,
            jitcnt: 1,
            calcnt: 2,
            errcnt: 3,
            stbcnt: 4,
            tai: 37,
        };
        let r = Reading::from_raw(&raw, 5, 100);
        let fams = r.families(3);
        approx(value(&fams, &OFFSET, None), 12.345e-6);
        approx(value(&fams, &FREQ, None), 1_234_567.0 / 65_536.0 * 1e-6);
        approx(value(&fams, &MAXERROR, None), 16.0);
        approx(value(&fams, &ESTERROR, None), 0.0015);
        approx(value(&fams, &CONSTANT, None), 7.0);
        approx(value(&fams, &PRECISION, None), 1e-6);
        approx(value(&fams, &TOLERANCE, None), 500e-6);
        approx(value(&fams, &TAI, None), 37.0);
        approx(value(&fams, &PPS_FREQ, None), -1e-6);
        approx(value(&fams, &PPS_JITTER, None), 2e-6);
        approx(value(&fams, &PPS_SHIFT, None), 16.0);
        approx(value(&fams, &PPS_STABIL, None), 2e-6);
        approx(value(&fams, &PPS_JITCNT, None), 1.0);
        approx(value(&fams, &PPS_STBCNT, None), 4.0);
        approx(value(&fams, &REPAIRS, None), 3.0);
        approx(value(&fams, &SYNC_STATUS, None), 0.0);
        approx(value(&fams, &STATE, Some("TIME_ERROR")), 1.0);
        approx(value(&fams, &STATE, Some("TIME_OK")), 0.0);
        approx(value(&fams, &STATUS_FLAG, Some("STA_UNSYNC")), 1.0);
        approx(value(&fams, &STATUS_FLAG, Some("STA_NANO")), 1.0);
        approx(value(&fams, &STATUS_FLAG, Some("STA_PLL")), 0.0);
        let flags = fams
            .iter()
            .find(|f| std::ptr::eq(f.desc, &STATUS_FLAG))
            .expect("flags");
        assert_eq!(flags.samples.len(), 16);
        let states = fams
            .iter()
            .find(|f| std::ptr::eq(f.desc, &STATE))
            .expect("states");
        assert_eq!(states.samples.iter().map(|s| s.value).sum::<f64>(), 1.0);
        // The families are exactly the declared catalogue, in order.
        let names: Vec<&str> = fams.iter().map(|f| f.desc.name).collect();
        let declared: Vec<&str> = METRICS.iter().map(|d| d.name).collect();
        assert_eq!(names, declared);
    }

    #[test]
    fn ok_state_is_synchronised_and_out_of_range_state_is_all_zero() {
        let fams = Reading::from_raw(&RawTimex::default(), 0, 100).families(0);
        approx(value(&fams, &SYNC_STATUS, None), 1.0);
        approx(value(&fams, &STATE, Some("TIME_OK")), 1.0);
        let fams = Reading::from_raw(&RawTimex::default(), 42, 100).families(0);
        let states = fams
            .iter()
            .find(|f| std::ptr::eq(f.desc, &STATE))
            .expect("states");
        assert_eq!(states.samples.iter().map(|s| s.value).sum::<f64>(), 0.0);
    }

    fn collector() -> Timex {
        Timex::new(100)
    }

    #[test]
    fn refused_call_is_no_data_not_failure() {
        let t = collector();
        for e in [Errno::EPERM, Errno::ENOSYS] {
            let c = t.outcome(Err(e));
            assert!(c.families.is_empty());
            assert_eq!(c.errors.len(), 1);
            assert!(!c.errors[0].is_failure(), "{}", c.errors[0]);
        }
        assert!(t.refused_logged.load(Ordering::Relaxed));
        let c = t.outcome(Err(Errno::EFAULT));
        assert!(c.errors[0].is_failure());
    }

    #[test]
    fn repairs_are_counted_across_scrapes() {
        let t = collector();
        let glitch = RawTimex {
            offset: 4_293_467,
            ..RawTimex::default()
        };
        let value_of = |c: &Collected| value(&c.families, &REPAIRS, None);
        assert_eq!(value_of(&t.outcome(Ok((RawTimex::default(), 0)))), 0.0);
        assert_eq!(value_of(&t.outcome(Ok((glitch, 0)))), 1.0);
        assert_eq!(value_of(&t.outcome(Ok((RawTimex::default(), 0)))), 1.0);
        let c = t.outcome(Ok((glitch, 0)));
        assert_eq!(value_of(&c), 2.0);
        assert!((value(&c.families, &OFFSET, None) + 0.0015).abs() < 1e-6);
    }

    #[test]
    fn status_families_are_kept_while_status_and_state_stay() {
        let t = collector();
        let synced = RawTimex {
            status: STA_PLL,
            ..RawTimex::default()
        };
        let unsynced = RawTimex {
            status: STA_PLL | STA_UNSYNC,
            ..RawTimex::default()
        };
        let status_of = |c: &Collected| {
            let flags = crate::metrics::find(&c.families, &STATUS_FLAG)
                .expect("flags")
                .clone();
            let state = crate::metrics::find(&c.families, &STATE)
                .expect("state")
                .clone();
            (flags, state)
        };
        let (f1, s1) = status_of(&t.outcome(Ok((synced, 0))));
        let (f2, s2) = status_of(&t.outcome(Ok((synced, 0))));
        assert!(f1.samples.is_same_shared(&f2.samples) && s1.samples.is_same_shared(&s2.samples));
        assert_eq!(f2.value(&["STA_UNSYNC"]), Some(0.0));
        // A changed status word or state is read, not taken from the last one.
        let c = t.outcome(Ok((unsynced, 0)));
        let (f3, s3) = status_of(&c);
        assert!(!f3.samples.is_same_shared(&f2.samples));
        assert_eq!(f3.value(&["STA_UNSYNC"]), Some(1.0));
        assert_eq!(f3.value(&["STA_PLL"]), Some(1.0));
        assert_eq!(s3.value(&["TIME_OK"]), Some(1.0));
        let c = t.outcome(Ok((unsynced, 5)));
        let (f4, s4) = status_of(&c);
        assert!(
            !s4.samples.is_same_shared(&s3.samples),
            "a changed state is rebuilt"
        );
        assert_eq!(f4.value(&["STA_UNSYNC"]), Some(1.0));
        assert_eq!(s4.value(&["TIME_OK"]), Some(0.0));
        assert_eq!(s4.value(&["TIME_ERROR"]), Some(1.0));
        assert_eq!(value(&c.families, &SYNC_STATUS, None), 0.0);
        // Same output as building every family afresh.
        let fresh = Reading::from_raw(&unsynced, 5, 100).families(0);
        assert_eq!(c.families, fresh);
    }

    #[test]
    fn live_adjtimex_reads_without_privilege() {
        let (raw, state) = adjtimex::read().expect("adjtimex(modes=0) works unprivileged");
        assert!((0..=5).contains(&state), "state {state}");
        // The kernel caps maxerror at 16 s (NTP_PHASE_LIMIT).
        assert!(
            (0..=16_000_000).contains(&raw.maxerror),
            "maxerror {}",
            raw.maxerror
        );
        assert!(raw.tick > 0);
    }

    proptest::proptest! {
        #[test]
        fn conversion_never_panics(offset: i64, freq: i64, tick: i64, status: i32, shift: i32, state: i32, hz in -5i64..2000) {
            let raw = RawTimex { offset, freq, status, tick, shift, ..RawTimex::default() };
            let r = Reading::from_raw(&raw, state, hz);
            let fams = r.families(0);
            proptest::prop_assert_eq!(fams.len(), METRICS.len());
        }
    }
}
