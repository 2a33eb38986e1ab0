//! One kernel log record as `/dev/kmsg` writes it, and the clocksource
//! events the kernel logs, in the wording of the releases we support.
//!
//! A record is `PRI,SEQ,USEC,FLAGS[,…];MESSAGE\n`, then dictionary lines
//! that begin with a space (Documentation/ABI/testing/dev-kmsg). PRI is
//! `facility << 3 | level`; the kernel's own messages have facility 0, and
//! a process writing to `/dev/kmsg` cannot give that facility (devkmsg_write
//! keeps LOG_USER unless the prefix names another non-zero one), so only
//! facility 0 counts as the kernel speaking. USEC is `local_clock()` at the
//! time of the message. The message has its non-printable bytes escaped as
//! `\xNN`, so it is one line.
//!
//! The clocksource messages, from kernel/time/clocksource.c and
//! arch/x86/kernel/tsc.c (`clocksource: ` and `tsc: ` are the files'
//! `pr_fmt` prefixes, absent before 4.x):
//! - `clocksource: Switched to clocksource X` (3.x: `Switching to clocksource X`);
//! - `clocksource: timekeeping watchdog on CPU1: Marking clocksource 'X' as
//!   unstable because the skew is too large:` (4.x without `on CPUn`);
//! - `Clocksource X unstable (delta = N ns)` (2.6 to 4.3);
//! - `tsc: Marking TSC unstable due to REASON`: counted for `tsc` unless
//!   the reason is `clocksource watchdog`, whose own message above already
//!   counted it; `TSC found unstable after boot, most likely due to broken
//!   BIOS…` likewise.

use std::fmt;

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// Syslog facility; 0 is the kernel.
    pub facility: u32,
    /// Syslog level.
    pub level: u32,
    /// The record's sequence number, one more for each record the kernel logs.
    pub sequence: u64,
    /// When it was logged: the kernel's scheduler clock, in µs since boot.
    pub usec: u64,
    /// The message, without its header and newline.
    pub message: &'a [u8],
}

/// Why a record could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// No `;` ends the header.
    NoHeader,
    /// A header field is missing or not a number.
    Field(&'static str),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NoHeader => f.write_str("no ';' after the record's header"),
            RecordError::Field(name) => write!(f, "the record's {name} is not a number"),
        }
    }
}

/// Parses one record; `None` for a dictionary line handed in alone (a
/// source read line by line).
pub fn parse(raw: &[u8]) -> Result<Option<Record<'_>>, RecordError> {
    if raw.first() == Some(&b' ') {
        return Ok(None);
    }
    let line = raw.split(|&b| b == b'\n').next().unwrap_or(raw);
    let semi = line
        .iter()
        .position(|&b| b == b';')
        .ok_or(RecordError::NoHeader)?;
    let (header, message) = (&line[..semi], &line[semi + 1..]);
    let mut fields = header.split(|&b| b == b',');
    let mut number = |name: &'static str| -> Result<u64, RecordError> {
        let f = fields.next().ok_or(RecordError::Field(name))?;
        std::str::from_utf8(f)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .ok_or(RecordError::Field(name))
    };
    let pri = number("priority")?;
    let sequence = number("sequence number")?;
    let usec = number("timestamp")?;
    let pri = u32::try_from(pri).map_err(|_| RecordError::Field("priority"))?;
    Ok(Some(Record {
        facility: pri >> 3,
        level: pri & 7,
        sequence,
        usec,
        message,
    }))
}

/// A clocksource event the kernel logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// The kernel now uses this clocksource.
    Switched(&'a str),
    /// The kernel marked this clocksource unstable.
    Unstable(&'a str),
}

/// The longest clocksource name we accept; the kernel's are short
/// identifiers (`tsc`, `kvm-clock`, `hyperv_clocksource_tsc_page`).
pub const NAME_MAX: usize = 32;

/// The clocksource event in a kernel record, if it is one.
pub fn event<'a>(record: &Record<'a>) -> Option<Event<'a>> {
    if record.facility != 0 {
        return None;
    }
    let text = std::str::from_utf8(record.message).ok()?;
    let body = text.strip_prefix("clocksource: ").unwrap_or(text);
    if let Some(rest) = body
        .strip_prefix("Switched to clocksource ")
        .or_else(|| body.strip_prefix("Switching to clocksource "))
    {
        return name(rest.trim_end()).map(Event::Switched);
    }
    if let Some(at) = body.find("Marking clocksource '") {
        let rest = &body[at + "Marking clocksource '".len()..];
        let end = rest.find("' as unstable")?;
        return name(&rest[..end]).map(Event::Unstable);
    }
    if let Some(rest) = body.strip_prefix("Clocksource ") {
        let (n, tail) = rest.split_once(' ')?;
        return tail
            .starts_with("unstable")
            .then(|| name(n))
            .flatten()
            .map(Event::Unstable);
    }
    let tsc = text.strip_prefix("tsc: ").unwrap_or(text);
    if let Some(reason) = tsc.strip_prefix("Marking TSC unstable due to ") {
        return (!reason.starts_with("clocksource watchdog")).then_some(Event::Unstable("tsc"));
    }
    if tsc.starts_with("TSC found unstable after boot") {
        return Some(Event::Unstable("tsc"));
    }
    None
}

/// A clocksource name, if it looks like one: the clocksource collector's
/// check, within the tighter [`NAME_MAX`] of a label a log can bring.
pub(crate) fn name(s: &str) -> Option<&str> {
    (s.len() <= NAME_MAX && crate::collector::clocksource::sysfs::is_clocksource_name(s))
        .then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kernel(message: &str) -> Record<'_> {
        Record {
            facility: 0,
            level: 6,
            sequence: 1,
            usec: 1,
            message: message.as_bytes(),
        }
    }

    #[test]
    fn a_record_with_dictionary_and_caller() {
        let r = parse(b"6,339,5140900,-,caller=T1;clocksource: Switched to clocksource tsc\n SUBSYSTEM=cpu\n DEVICE=+cpu:cpu0\n")
            .expect("parses")
            .expect("a record");
        assert_eq!(
            (r.facility, r.level, r.sequence, r.usec),
            (0, 6, 339, 5_140_900)
        );
        assert_eq!(r.message, b"clocksource: Switched to clocksource tsc");
        assert_eq!(event(&r), Some(Event::Switched("tsc")));
        // facility 1 (user) is 8 + level.
        let u = parse(b"14,340,5140901,-;clocksource: Switched to clocksource tsc\n")
            .expect("parses")
            .expect("a record");
        assert_eq!((u.facility, u.level), (1, 6));
        assert_eq!(event(&u), None, "a process cannot speak for the kernel");
    }

    #[test]
    fn dictionary_lines_alone_and_broken_headers() {
        assert_eq!(parse(b" SUBSYSTEM=cpu\n"), Ok(None));
        assert_eq!(parse(b"6,1,2,-no semicolon\n"), Err(RecordError::NoHeader));
        assert_eq!(parse(b""), Err(RecordError::NoHeader));
        assert_eq!(parse(b";msg"), Err(RecordError::Field("priority")));
        assert_eq!(parse(b"6;msg"), Err(RecordError::Field("sequence number")));
        assert_eq!(parse(b"6,1;msg"), Err(RecordError::Field("timestamp")));
        assert_eq!(
            parse(b"6,-1,2,-;msg"),
            Err(RecordError::Field("sequence number"))
        );
        assert_eq!(parse(b"6,1,+2,-;msg"), Err(RecordError::Field("timestamp")));
        assert_eq!(
            parse(b"6,99999999999999999999999,2,-;m"),
            Err(RecordError::Field("sequence number"))
        );
        assert_eq!(
            parse(b"99999999999,1,2,-;m"),
            Err(RecordError::Field("priority"))
        );
        // The flags field is optional to us, the message may be empty.
        let r = parse(b"0,7,8;").expect("parses").expect("record");
        assert_eq!((r.sequence, r.usec, r.message), (7, 8, &b""[..]));
    }

    #[test]
    fn every_wording_of_a_switch() {
        for m in [
            "clocksource: Switched to clocksource kvm-clock",
            "Switched to clocksource kvm-clock",
            "Switching to clocksource kvm-clock",
            "clocksource: Switching to clocksource kvm-clock",
        ] {
            assert_eq!(event(&kernel(m)), Some(Event::Switched("kvm-clock")), "{m}");
        }
    }

    #[test]
    fn every_wording_of_a_demotion() {
        for (m, cs) in [
            (
                "clocksource: timekeeping watchdog on CPU1: Marking clocksource 'tsc' as unstable because the skew is too large:",
                "tsc",
            ),
            (
                "clocksource: timekeeping watchdog: Marking clocksource 'tsc' as unstable because the skew is too large:",
                "tsc",
            ),
            (
                "timekeeping watchdog on CPU0: Marking clocksource 'hpet' as unstable because the skew is too large:",
                "hpet",
            ),
            ("Clocksource tsc unstable (delta = -95170507948 ns)", "tsc"),
            (
                "Clocksource tsc unstable (delta = 4398036447 ns). Enable clocksource failover by adding clocksource_failover kernel parameter.",
                "tsc",
            ),
            (
                "tsc: Marking TSC unstable due to check_tsc_sync_source failed",
                "tsc",
            ),
            ("Marking TSC unstable due to TSC halts in idle", "tsc"),
            (
                "tsc: TSC found unstable after boot, most likely due to broken BIOS. Use 'tsc=unstable'.",
                "tsc",
            ),
        ] {
            assert_eq!(event(&kernel(m)), Some(Event::Unstable(cs)), "{m}");
        }
        // The watchdog's own line counted it already.
        assert_eq!(
            event(&kernel(
                "tsc: Marking TSC unstable due to clocksource watchdog"
            )),
            None
        );
    }

    #[test]
    fn look_alikes_and_hostile_names_are_not_events() {
        for m in [
            "clocksource: tsc: mask: 0xffffffffffffffff max_cycles: 0x256bd5f640a",
            "clocksource: Switched to clocksource ",
            "clocksource: Switched to clocksource a\\x0ab",
            "clocksource: Switched to clocksource tsc; rm -rf",
            "Marking clocksource 'tsc' unstable",
            "Clocksource tsc is fine",
            "Clocksource",
            "clocksource: Long readout interval, skipping watchdog check",
            "tsc: Detected 2596.098 MHz processor",
        ] {
            assert_eq!(event(&kernel(m)), None, "{m}");
        }
        let long = format!("Switched to clocksource {}", "x".repeat(NAME_MAX + 1));
        assert_eq!(event(&kernel(&long)), None);
        let max = "x".repeat(NAME_MAX);
        assert_eq!(
            event(&kernel(&format!("Switched to clocksource {max}"))),
            Some(Event::Switched(max.as_str()))
        );
        let bad = Record {
            message: b"Switched to clocksource \xff\xfe",
            ..kernel("")
        };
        assert_eq!(event(&bad), None);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some(r)) = parse(&raw) {
                let _ = event(&r);
            }
        }

        #[test]
        fn a_well_formed_header_round_trips(pri in 0u32..1024, seq: u64, usec: u64, msg in "[ -~]{0,80}") {
            let raw = format!("{pri},{seq},{usec},-;{msg}\n");
            let r = parse(raw.as_bytes()).expect("parses").expect("record");
            prop_assert_eq!((r.facility, r.level, r.sequence, r.usec), (pri >> 3, pri & 7, seq, usec));
            prop_assert_eq!(r.message, msg.as_bytes());
        }
    }
}
