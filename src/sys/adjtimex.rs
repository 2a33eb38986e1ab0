//! The read-only `adjtimex(2)` call (`modes = 0`), which any user may make.

use nix::errno::Errno;

/// The fields of the kernel's `struct timex`, copied out of libc's type so
/// that conversions can be tested with literal values. Units are the
/// kernel's (see adjtimex(2)): `offset` ns with `STA_NANO` else µs; `freq`,
/// `ppsfreq`, `stabil` and `tolerance` ppm with a 16-bit fraction;
/// `maxerror`, `esterror`, `precision` and `tick` µs; `jitter` like `offset`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct RawTimex {
    pub offset: i64,
    pub freq: i64,
    pub maxerror: i64,
    pub esterror: i64,
    pub status: i32,
    pub constant: i64,
    pub precision: i64,
    pub tolerance: i64,
    pub tick: i64,
    pub ppsfreq: i64,
    pub jitter: i64,
    pub shift: i32,
    pub stabil: i64,
    pub jitcnt: i64,
    pub calcnt: i64,
    pub errcnt: i64,
    pub stbcnt: i64,
    pub tai: i32,
}

/// Reads the kernel clock's state: the `struct timex` and the call's return
/// value (the clock state, `TIME_OK` … `TIME_ERROR`).
pub fn read() -> Result<(RawTimex, i32), Errno> {
    // SAFETY: `timex` is a plain C struct for which all-zero bytes are a valid
    // value (modes = 0 asks the kernel to change nothing), and `adjtimex` only
    // writes into the struct we own for the duration of the call. This is the
    // crate's single unsafe block: libc's type has no safe constructor and
    // `nix` does not wrap adjtimex.
    #[allow(unsafe_code)]
    let (tx, rc) = unsafe {
        let mut tx: libc::timex = std::mem::zeroed();
        let rc = libc::adjtimex(&raw mut tx);
        (tx, rc)
    };
    if rc < 0 {
        return Err(Errno::last());
    }
    Ok((
        RawTimex {
            offset: tx.offset,
            freq: tx.freq,
            maxerror: tx.maxerror,
            esterror: tx.esterror,
            status: tx.status,
            constant: tx.constant,
            precision: tx.precision,
            tolerance: tx.tolerance,
            tick: tx.tick,
            ppsfreq: tx.ppsfreq,
            jitter: tx.jitter,
            shift: tx.shift,
            stabil: tx.stabil,
            jitcnt: tx.jitcnt,
            calcnt: tx.calcnt,
            errcnt: tx.errcnt,
            stbcnt: tx.stbcnt,
            tai: tx.tai,
        },
        rc,
    ))
}
