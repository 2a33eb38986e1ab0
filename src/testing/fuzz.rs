//! Fuzz harnesses (`fuzz/`, run by `scripts/fuzz`; docs/fuzzing.md): one
//! function per target, each taking the fuzzer's bytes, feeding them to the
//! decoders the way the exporter does, and panicking on any property that
//! does not hold. Pure: no files, no sockets, no clock.
//!
//! Inputs made of several pieces (datagrams, files) separate them with
//! [`PART`]; a daemon harness runs one scrape per run of pieces
//! separated by [`SCRAPE`], keeping the collector's memory between
//! them.

use std::path::Path;

use crate::collector::chrony::{Monotonic, Snapshot, report};
use crate::collector::clocksource::sysfs::{DevicePaths, device_families, sanitize};
use crate::collector::clocksource::virt::{
    VirtEvidence, classify, cpu_families, cpu_flags, first_cpu_block,
};
use crate::collector::clocksource::{
    KERNEL, PTP_CLOCK, PTP_KVM, PTP_KVM_NAME, VIRTUALIZATION, boot, sysfs::is_clocksource_name,
};
use crate::collector::kmsg::{self, Tally};
use crate::collector::ntpd::Reading;
use crate::collector::ntpd::served::{Event, Served};
use crate::collector::sntp::probe as sntp_probe;
use crate::collector::timesyncd;
use crate::collector::timex;
use crate::metrics::{Family, Format, Kind, LabelValue, encode, labels, merge};
use crate::model::{self, Daemon, MAX_PEERS};
use crate::proto::cmdmon::{self, Float, Reply, ReplyError, ReplyHeader, Request, Status};
use crate::proto::mode6::{
    self, AssocId, DEFAULT_RESPONSE_LIMIT, ErrorCode, Fragment, Header, Opcode, PeerCounters,
    PeerReading, PeerStatus, PeerVariables, Progress, Reassembler, ReassemblyError, Response,
    Selection, Sequence, SystemStats, SystemStatus, SystemVariables, Variables,
};
use crate::proto::{ntp, sntp};
use crate::sys::adjtimex::RawTimex;
use crate::sys::cmdmon::SocketIdentity;
use crate::sys::cpuid::CpuidHypervisor;
use crate::sys::fs::{self, Roots};

/// Separates the pieces (datagrams, files) of one input.
pub const PART: &[u8] = b"\n--8<--\n";
/// Separates the scrapes of a daemon harness's input.
pub const SCRAPE: &[u8] = b"\n==8<==\n";
/// Scrapes one input may run.
const MAX_SCRAPES: usize = 4;
/// Datagrams one scrape may read: enough for [`MAX_PEERS`] associations.
const MAX_DATAGRAMS: usize = 4 * MAX_PEERS;

/// The pieces of `data` between separators `sep`.
pub fn split<'a>(data: &'a [u8], sep: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let r = rest?;
        match find(r, sep) {
            Some(at) => {
                rest = Some(&r[at + sep.len()..]);
                Some(&r[..at])
            }
            None => rest.take(),
        }
    })
}

/// Where `sep` first occurs in `hay`: looked for at each occurrence of
/// its first byte only, which keeps the harnesses fast.
fn find(hay: &[u8], sep: &[u8]) -> Option<usize> {
    let first = *sep.first()?;
    let mut from = 0;
    while let Some(i) = hay[from..].iter().position(|&b| b == first) {
        if hay[from + i..].starts_with(sep) {
            return Some(from + i);
        }
        from += i + 1;
    }
    None
}

/// Fixed-size fields read from the front of the input, zeros past its end.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }
}

/// Checks that families make a valid exposition, and returns it in the
/// classic text format: after merging (as the scrape does) no family
/// repeats a series ([`Family::has_duplicates`]) and every sample has
/// its descriptor's labels; both formats then decode back, line by
/// line, to exactly these families: one `# TYPE` per family, every
/// sample under its own family's `# TYPE` with that family's name, its
/// label names and values (unescaped) and its value, no series twice,
/// and OpenMetrics ends with `# EOF`.
pub fn assert_valid_exposition(families: Vec<Family>) -> String {
    let families = merge(families);
    for f in &families {
        assert!(!f.has_duplicates(), "{} repeats a series", f.desc.name);
        for s in &f.samples {
            assert_eq!(s.label_values.len(), f.desc.labels.len(), "{}", f.desc.name);
        }
    }
    let text = encode(families.clone(), Format::Text);
    check_exposition(&families, &text, Format::Text);
    let om = encode(families.clone(), Format::OpenMetrics);
    let body = om
        .strip_suffix("# EOF\n")
        .expect("OpenMetrics ends with # EOF");
    check_exposition(&families, body, Format::OpenMetrics);
    text
}

/// Decodes an exposition line by line against the families it encodes.
fn check_exposition(families: &[Family], text: &str, format: Format) {
    let mut series = Vec::new();
    let mut declared = 0;
    let mut samples = 0;
    let lines = text.strip_suffix('\n').map(|t| t.split('\n'));
    for line in lines.into_iter().flatten() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            all_samples(families, declared, samples);
            let f = families.get(declared).expect("a # TYPE for each family");
            let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
            let total = f.desc.kind == Kind::Counter && format == Format::Text;
            assert!(sample_name(f, name, total), "{format:?}: {line}");
            assert_eq!(
                kind,
                if f.desc.kind == Kind::Counter {
                    "counter"
                } else {
                    "gauge"
                }
            );
            (declared, samples) = (declared + 1, 0);
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let f = declared
            .checked_sub(1)
            .and_then(|i| families.get(i))
            .unwrap_or_else(|| panic!("{format:?}: sample before any # TYPE: {line:?}"));
        let want = f
            .samples
            .get(samples)
            .unwrap_or_else(|| panic!("extra {line:?}"));
        let (key, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
        let (name, mut labels) = key.split_once('{').unwrap_or((key, ""));
        assert!(
            sample_name(f, name, f.desc.kind == Kind::Counter),
            "{line:?}"
        );
        if !labels.is_empty() {
            labels = labels
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("{line:?}"));
        }
        let mut wanted = f.desc.labels.iter().zip(&want.label_values);
        while !labels.is_empty() {
            let (label, rest) = labels
                .split_once("=\"")
                .unwrap_or_else(|| panic!("{line:?}"));
            let (value, rest) = escaped_value(rest).unwrap_or_else(|| panic!("{line:?}"));
            let (want_label, want_value) = wanted.next().unwrap_or_else(|| panic!("{line:?}"));
            assert_eq!(label, *want_label, "{line:?}");
            assert!(unescaped(value).eq(want_value.chars()), "{line:?}");
            labels = match rest.strip_prefix(',') {
                Some(more) => more,
                None if rest.is_empty() => rest,
                None => panic!("no comma after a label in {line:?}"),
            };
        }
        assert!(wanted.next().is_none(), "labels missing from {line:?}");
        let v: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value of {line:?}"));
        let expected = match f.desc.kind {
            Kind::Gauge => want.value,
            Kind::Counter => (want.value.max(0.0) as u64) as f64,
        };
        assert!(
            v == expected || (v.is_nan() && expected.is_nan()),
            "{line:?}"
        );
        series.push(key);
        samples += 1;
    }
    assert_eq!(declared, families.len(), "{format:?}: families declared");
    all_samples(families, declared, samples);
    series.sort_unstable();
    if let Some(twice) = series
        .windows(2)
        .find_map(|w| (w[0] == w[1]).then_some(w[0]))
    {
        panic!("{format:?}: series twice: {twice}");
    }
}

/// Checks that the family declared last had all its samples encoded.
fn all_samples(families: &[Family], declared: usize, samples: usize) {
    if let Some(f) = declared.checked_sub(1).and_then(|i| families.get(i)) {
        assert_eq!(samples, f.samples.len(), "samples of {}", f.desc.name);
    }
}

/// Whether `name` is the family's name, with `_total` when `total`.
fn sample_name(f: &Family, name: &str, total: bool) -> bool {
    match name.strip_suffix("_total") {
        Some(base) if total => base == f.desc.name,
        _ => !total && name == f.desc.name,
    }
}

/// A label value's escaped text up to its closing quote, and the rest.
fn escaped_value(s: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, b) in s.bytes().enumerate() {
        match b {
            b'"' if !escaped => return Some((&s[..i], &s[i + 1..])),
            b'\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    None
}

/// The characters of an escaped label value (`\\`, `\"`, `\n`).
fn unescaped(s: &str) -> impl Iterator<Item = char> + '_ {
    let mut chars = s.chars();
    std::iter::from_fn(move || match chars.next()? {
        '\\' => match chars.next() {
            Some('\\') => Some('\\'),
            Some('"') => Some('"'),
            Some('n') => Some('\n'),
            other => panic!("escape {other:?} in a label value"),
        },
        c => Some(c),
    })
}

/// `mode6_header`: any bytes as a mode-6 header and fragment. Decoding
/// then encoding gives the 12 bytes back; a fragment's data is its
/// `count` bytes within the datagram; a datagram made of a decoded
/// header and its data decodes to them again.
pub fn mode6_header(data: &[u8]) {
    let Ok(h) = Header::parse(data) else {
        assert!(data.len() < mode6::HEADER_LEN);
        return;
    };
    assert_eq!(&h.encode()[..], &data[..mode6::HEADER_LEN]);
    assert_eq!(h.error_code().is_some(), h.error);
    let (peer, system) = (PeerStatus(h.status), SystemStatus(h.status));
    let selection = peer.selection();
    assert_eq!(Selection::from_code(selection.code()), selection);
    assert!(b" x.-+#*o".contains(&(selection.tally() as u8)));
    assert!(system.leap() <= 3 && system.source() < 64 && peer.event_count() < 16);
    if let Ok(f) = Fragment::parse(data) {
        assert_eq!(f.data.len(), usize::from(h.count));
        assert_eq!(f.data, &data[mode6::HEADER_LEN..][..f.data.len()]);
        let again = mode6::encode_datagram(&h, f.data);
        assert_eq!(again.len() % 4, 0);
        assert_eq!(Fragment::parse(&again), Ok(f));
    }
}

/// `mode6_reassembly`: pieces as the fragments of one response, for
/// the request the first one answers. A fragment of another request
/// leaves the reassembly as it was; a complete response has every
/// byte of the fragments accepted at their offsets, within the size
/// cap; the same fragments in reverse order give the same response.
pub fn mode6_reassembly(data: &[u8]) {
    let fragments: Vec<Fragment<'_>> = split(data, PART)
        .filter_map(|d| Fragment::parse(d).ok())
        .collect();
    let Some(first) = fragments.first().map(|f| f.header) else {
        return;
    };
    let new = || {
        Reassembler::new(
            first.opcode,
            first.sequence,
            first.assoc_id,
            DEFAULT_RESPONSE_LIMIT,
        )
    };
    let mut r = new();
    let mut accepted = Vec::new();
    let mut bytes: Vec<Option<u8>> = Vec::new();
    for f in &fragments {
        let before = format!("{r:?}");
        match r.push(f) {
            Err(e) if e.is_mismatch() => assert_eq!(format!("{r:?}"), before, "{e}"),
            Err(_) => return,
            Ok(progress) => {
                accepted.push(*f);
                let at = usize::from(f.header.offset);
                if bytes.len() < at + f.data.len() {
                    bytes.resize(at + f.data.len(), None);
                }
                for (i, &b) in f.data.iter().enumerate() {
                    assert!(bytes[at + i].is_none_or(|old| old == b), "overwritten");
                    bytes[at + i] = Some(b);
                }
                if let Progress::Complete(response) = progress {
                    assert!(response.data.len() <= DEFAULT_RESPONSE_LIMIT);
                    assert_eq!(response.assoc_id, first.assoc_id);
                    for (i, b) in response.data.iter().enumerate() {
                        assert_eq!(bytes[i], Some(*b), "byte {i}");
                    }
                    let mut reverse = new();
                    let mut last = Progress::Incomplete;
                    for f in accepted.iter().rev() {
                        last = reverse.push(f).expect("accepted in any order");
                    }
                    match last {
                        Progress::Complete(again) => assert_eq!(again.data, response.data),
                        Progress::Incomplete => panic!("incomplete in reverse order"),
                    }
                    return;
                }
            }
        }
    }
    let ReassemblyError::Incomplete { received, .. } = r.incomplete() else {
        panic!("incomplete() is Incomplete");
    };
    assert_eq!(received, bytes.iter().flatten().count());
}

/// `mode6_variables`: any bytes as READVAR data and as a READSTAT
/// list. Names are plausible (printable, no quote, `=` or comma),
/// values printable ASCII; the typed views of every kind accept
/// whatever the parser gives; the association list is whole 4-byte
/// entries.
pub fn mode6_variables(data: &[u8]) {
    let v = Variables::parse(data);
    for (name, value) in &v.0 {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
            "{name:?}"
        );
        assert!(!name.contains(['"', '=', ',']), "{name:?}");
        assert!(
            value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()),
            "{value:?}"
        );
        let _ = (mode6::canonical_ip(value), mode6::ip_scope(value));
    }
    let system = SystemVariables::from_variables(&v);
    assert!(system.leap.is_none_or(|l| l <= 3));
    let peer = PeerVariables::from_variables(&v);
    assert!(peer.poll().is_none_or(|p| p.seconds().is_finite()));
    assert!(peer.reach.is_none_or(|r| (0.0..=1.0).contains(&r.ratio())));
    let _ = (
        peer.root_distance_seconds(),
        SystemStats::from_variables(&v),
    );
    let _ = PeerCounters::from_variables(&v);
    match mode6::parse_status_list(data) {
        Ok(list) => assert_eq!(list.len() * 4, data.len()),
        Err(_) => assert_ne!(data.len() % 4, 0),
    }
}

/// `cmdmon_reply`: any bytes as the reply to every request the
/// exporter sends, with the sequence number the bytes carry. A reply
/// is accepted only with its header right (version 6, success, the
/// request's command and one of its reply formats), and a wrong
/// sequence number makes any reply another request's; every reply
/// format decodes any data of its length; chrony's `Float` converts
/// to a finite number that converts back within its resolution.
pub fn cmdmon_reply(data: &[u8]) {
    let header = ReplyHeader::parse(data);
    if let Ok(h) = &header {
        assert!(data.len() >= cmdmon::REPLY_HEADER_LEN && data[1] == 2);
        assert_eq!(u16::from_be_bytes([data[4], data[5]]), h.command);
    }
    let requests = [
        Request::Tracking,
        Request::NSources,
        Request::SourceData(0),
        Request::SourceStats(1),
        Request::ServerStats,
        Request::NtpData(std::net::Ipv6Addr::LOCALHOST.into()),
        Request::AuthData(std::net::Ipv6Addr::LOCALHOST.into()),
    ];
    for request in requests {
        let sequence = header.as_ref().map_or(0, |h| h.sequence);
        let reply = cmdmon::decode_reply(request, sequence, data);
        if let Ok(reply) = &reply {
            let h = header.as_ref().expect("a decoded reply has a header");
            assert_eq!((h.version, h.status, h.command), (6, 0, request.command()));
            let kind = matches!(
                (request, reply),
                (Request::Tracking, Reply::Tracking(_))
                    | (Request::NSources, Reply::NSources(_))
                    | (Request::SourceData(_), Reply::SourceData(_))
                    | (Request::SourceStats(_), Reply::SourceStats(_))
                    | (Request::ServerStats, Reply::ServerStats(_))
                    | (Request::NtpData(_), Reply::NtpData(_))
                    | (Request::AuthData(_), Reply::AuthData(_))
            );
            assert!(kind, "{request:?} answered by {reply:?}");
            let other = cmdmon::decode_reply(request, sequence.wrapping_add(1), data);
            assert!(
                matches!(other, Err(ReplyError::NotOurs { .. })),
                "{other:?}"
            );
        }
        if let Err(ReplyError::Refused(s)) = reply {
            assert_eq!(Status::from_code(s.code()), Some(s));
        }
        assert_eq!(request.encode(sequence).len(), request.encoded_len());
    }
    let body = data.get(cmdmon::REPLY_HEADER_LEN..).unwrap_or_default();
    for format in 0..32 {
        let _ = cmdmon::decode_data(format, body);
    }
    for word in data.chunks_exact(4) {
        let x = Float(u32::from_be_bytes([word[0], word[1], word[2], word[3]])).to_f64();
        assert!(x.is_finite());
        let back = Float::from_f64(x).to_f64();
        assert!(
            (back - x).abs() <= x.abs() * 2f64.powi(-23),
            "{x} became {back}"
        );
        let _ = cmdmon::refid_text(u32::from_be_bytes([word[0], word[1], word[2], word[3]]));
    }
}

/// `ntp_packet`: any bytes as an NTP packet. Decoding then encoding
/// gives the 48 bytes back; the timestamps, the reference id and the
/// poll interval convert without panicking, to finite numbers.
pub fn ntp_packet(data: &[u8]) {
    let Ok(h) = ntp::Header::parse(data) else {
        assert!(data.len() < ntp::HEADER_LEN);
        return;
    };
    assert_eq!(&h.encode()[..], &data[..ntp::HEADER_LEN]);
    let _ = (h.reference_id.text(h.stratum), h.reference_id.text(1));
    let times =
        [h.reference, h.origin, h.receive, h.transmit].map(ntp::NtpTimestamp::to_unix_seconds);
    assert!(times.iter().all(|t| t.is_finite()));
    let (offset, delay) = ntp::offset_delay(times[1], times[2], times[3], times[0]);
    assert!(offset.is_finite() && delay.is_finite());
    let _ = h
        .transmit
        .shifted(h.root_delay.seconds() - h.root_dispersion.seconds());
    let _ = (ntp::poll_seconds(h.poll), ntp::poll_seconds(h.precision));
    let short = ntp::NtpShort::from_seconds(h.root_delay.seconds());
    assert_eq!(short, h.root_delay);
}

/// `timex`: any bytes as the fields of `struct timex`, the call's
/// return value and USER_HZ. The reading's families are a valid
/// exposition of finite values, with one state set at most.
pub fn timex(data: &[u8]) {
    let mut f = Fields(data);
    let raw = RawTimex {
        offset: f.i64(),
        freq: f.i64(),
        maxerror: f.i64(),
        esterror: f.i64(),
        status: f.i32(),
        constant: f.i64(),
        precision: f.i64(),
        tolerance: f.i64(),
        tick: f.i64(),
        ppsfreq: f.i64(),
        jitter: f.i64(),
        shift: f.i32(),
        stabil: f.i64(),
        jitcnt: f.i64(),
        calcnt: f.i64(),
        errcnt: f.i64(),
        stbcnt: f.i64(),
        tai: f.i32(),
    };
    let (state, user_hz) = (f.i32(), f.i64());
    let reading = timex::Reading::from_raw(&raw, state, user_hz);
    let families = reading.families(u64::from(reading.offset_repaired));
    for fam in &families {
        assert!(
            fam.samples.iter().all(|s| s.value.is_finite()),
            "{}",
            fam.desc.name
        );
    }
    let states = crate::metrics::find(&families, &timex::STATE).expect("state family");
    assert!(states.samples.iter().filter(|s| s.value == 1.0).count() <= 1);
    assert_valid_exposition(families);
}

/// A file as [`fs::read_text`] takes it: `None` when missing, an error
/// when too large, not UTF-8 or holding NUL bytes.
fn file(part: Option<&[u8]>, limit: u64) -> Option<Result<String, fs::FileError>> {
    part.map(|bytes| fs::text(Path::new("fuzz"), bytes.to_vec(), limit))
}

/// A sysfs attribute as [`fs::read_attr`] takes it: trimmed.
fn attr(part: Option<&[u8]>) -> Option<Result<String, fs::FileError>> {
    file(part, 64 * 1024).map(|r| r.map(|s| s.trim().to_owned()))
}

/// `clocksource`: pieces as the files the clocksource collector reads,
/// in this order: `/proc/cmdline`, `/proc/sys/kernel/osrelease`,
/// `/proc/cpuinfo`, `current_clocksource`, `available_clocksource`,
/// `/sys/hypervisor/type`, DMI `sys_vendor` and `product_name`, what
/// CPUID says (empty: not asked, as in the goldens; `bare metal`; or
/// the signatures, one a line), then each PTP clock's `clock_name`. A
/// missing piece is a missing file.
/// Files pass the text checks of `sys::fs`, then the parsers and the
/// families of `collector::clocksource`; the families are a valid
/// exposition whose clocksource labels are clocksource names and whose
/// PTP names have no control characters.
pub fn clocksource(data: &[u8]) -> String {
    let parts: Vec<&[u8]> = split(data, PART).take(16).collect();
    let part = |i: usize| parts.get(i).copied();
    let ok = |r: Option<Result<String, fs::FileError>>| r.and_then(Result::ok);
    let mut families = Vec::new();

    let params = ok(file(part(0), 1 << 20)).and_then(|text| boot::from_cmdline(&text));
    if let (Some(release), Some(p)) = (ok(attr(part(1))), params) {
        // The labels of `clock_kernel_info`, in its descriptor's order.
        let yes = |v: bool| LabelValue::from(if v { "true" } else { "false" });
        let (no_kvmclock, vsyscall) = (yes(p.no_kvmclock), yes(p.no_kvmclock_vsyscall));
        let values = [release, p.clocksource, p.tsc].map(LabelValue::from);
        let [release, clocksource, tsc] = values;
        let values = [
            release,
            no_kvmclock,
            vsyscall,
            clocksource,
            tsc,
            yes(p.notsc),
        ];
        families.push(KERNEL.family().with(values.into_iter().collect(), 1.0));
    }
    let flags = ok(file(part(2), fs::DEFAULT_LIMIT)).and_then(|text| {
        let flags = cpu_flags(&text);
        assert!(first_cpu_block(&text).is_some() || flags.is_none());
        flags
    });
    families.extend(flags.as_deref().map(cpu_families).unwrap_or_default());

    let roots = Roots::default();
    let device = match (ok(attr(part(3))), ok(attr(part(4)))) {
        (Some(current), Some(available)) => {
            DevicePaths::new(Path::new("/sys"), "clocksource0".into())
                .parse(&current, &available)
                .ok()
        }
        _ => None,
    };
    if let Some(d) = &device {
        assert!(is_clocksource_name(&d.current));
        assert!(d.available.iter().all(|a| is_clocksource_name(a)));
        families.extend(device_families(&roots, std::slice::from_ref(d)).expect("families"));
    }
    let dmi = match (ok(attr(part(6))), ok(attr(part(7)))) {
        (None, None) => None,
        (v, p) => Some((v.unwrap_or_default(), p.unwrap_or_default())),
    };
    let evidence = VirtEvidence {
        cpuid: match String::from_utf8_lossy(part(8).unwrap_or_default()) {
            s if s.is_empty() => None,
            s if s == "bare metal" => Some(CpuidHypervisor::BareMetal),
            s => Some(CpuidHypervisor::Signatures(
                s.lines().map(str::to_owned).collect(),
            )),
        },
        sysfs_type: ok(attr(part(5))),
        dmi,
        cpuinfo_flag: flags.as_ref().map(|f| f.iter().any(|x| x == "hypervisor")),
        clocksources: device.map(|d| d.available).unwrap_or_default(),
    };
    let v = classify(&evidence);
    families.push(
        VIRTUALIZATION
            .family()
            .with(labels![v.hypervisor, v.method], 1.0),
    );

    let mut clocks = PTP_CLOCK.family();
    let mut kvm = false;
    for (i, name) in parts.iter().skip(9).enumerate() {
        let Some(Ok(name)) = attr(Some(name)) else {
            continue;
        };
        let name = sanitize(&name);
        assert!(name.chars().count() <= 64 && !name.chars().any(char::is_control));
        kvm |= name == PTP_KVM_NAME;
        clocks.push(labels![format!("ptp{i}"), name], 1.0);
    }
    families.extend([clocks, PTP_KVM.single(f64::from(u8::from(kvm)))]);
    assert_valid_exposition(families)
}

/// The requests of one round of an ntpd query, by opcode and
/// association, and the responses the datagrams give them. Each
/// datagram goes to the first request still waiting whose response it
/// can be part of (the opcode and association match), as if its
/// sequence number were that request's; the rest time out.
fn ntpd_round<'a>(
    datagrams: &mut impl Iterator<Item = &'a [u8]>,
    asks: &[(Opcode, AssocId)],
    answered: &mut bool,
) -> Vec<Result<Response, ReassemblyError>> {
    let limit = DEFAULT_RESPONSE_LIMIT;
    let mut pending: Vec<Option<Reassembler>> = asks
        .iter()
        .map(|&(op, id)| Some(Reassembler::new(op, Sequence(0), id, limit)))
        .collect();
    let mut done: Vec<Option<Result<Response, ReassemblyError>>> = vec![None; asks.len()];
    let mut waiting = asks.len();
    while waiting > 0 {
        let Some(d) = datagrams.next() else { break };
        let Ok(mut f) = Fragment::parse(d) else {
            continue;
        };
        f.header.sequence = Sequence(0);
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            let Some(r) = slot else { continue };
            let result = match r.push(&f) {
                Err(e) if e.is_mismatch() => continue,
                Ok(Progress::Incomplete) => None,
                Ok(Progress::Complete(response)) => Some(Ok(response)),
                Err(e) => Some(Err(e)),
            };
            *answered = true;
            if result.is_some() {
                *out = result;
                *slot = None;
                waiting -= 1;
            }
            break;
        }
    }
    done.into_iter()
        .zip(pending)
        .map(|(d, p)| d.unwrap_or_else(|| Err(p.expect("pending").incomplete())))
        .collect()
}

/// One ntpd query over the datagrams, decoded as `collector::ntpd`'s
/// query decodes its answers; `Err` holds `clock_daemon_up` when the
/// query fails (`None`: ntpd is absent).
fn ntpd_query<'a>(datagrams: &mut impl Iterator<Item = &'a [u8]>) -> Result<Reading, Option<bool>> {
    let (status, vars) = (Opcode::READ_STATUS, Opcode::READ_VARIABLES);
    let system = AssocId::SYSTEM;
    let mut answered = false;
    let round = [
        (status, system),
        (vars, system),
        (vars, system),
        (vars, system),
    ];
    let mut first = ntpd_round(datagrams, &round, &mut answered).into_iter();
    if !answered {
        return Err(None);
    }
    let mut next = || first.next().expect("four answers");
    let mut associations = next()
        .ok()
        .and_then(|r| mode6::parse_status_list(&r.data).ok())
        .ok_or(Some(true))?;
    let mut reading = Reading::default();
    associations.truncate(MAX_PEERS);
    match next() {
        Ok(r) => {
            reading.system_status = Some(SystemStatus(r.status));
            reading.system = Some(SystemVariables::from_variables(&Variables::parse(&r.data)));
        }
        Err(e) => reading.problems.push(e.to_string()),
    }
    let mut stats = Variables::default();
    for r in [next(), next()] {
        match r {
            Ok(r) => stats.0.extend(Variables::parse(&r.data).0),
            Err(ReassemblyError::Server(ErrorCode::UnknownVariable)) => {}
            Err(e) => reading.problems.push(e.to_string()),
        }
    }
    reading.stats = SystemStats::from_variables(&stats);
    let asks: Vec<(Opcode, AssocId)> = associations
        .iter()
        .flat_map(|&(id, _)| [(vars, id), (vars, id)])
        .collect();
    let mut second = ntpd_round(datagrams, &asks, &mut answered).into_iter();
    let mut counters = Some(Vec::new());
    for (id, _) in associations {
        match second.next().expect("peer answer") {
            Ok(r) => reading.peers.push(PeerReading {
                assoc_id: id,
                status: PeerStatus(r.status),
                variables: PeerVariables::from_variables(&Variables::parse(&r.data)),
            }),
            Err(ReassemblyError::Server(ErrorCode::BadAssociation)) => {}
            Err(e) => reading.problems.push(e.to_string()),
        }
        match second.next().expect("counters answer") {
            Ok(r) => {
                let c = PeerCounters::from_variables(&Variables::parse(&r.data));
                if let Some(list) = counters.as_mut() {
                    list.push((id, c));
                }
            }
            Err(ReassemblyError::Server(ErrorCode::BadAssociation)) => {}
            Err(_) => counters = None,
        }
    }
    reading.counters = counters;
    Ok(reading)
}

/// `ntpd`: each scrape's pieces as the datagrams ntpd answers one
/// query with (association list, system variables, the two statistics
/// requests, then each association's variables and counters), decoded
/// as the ntpd collector does, up to its report with the previous
/// scrapes' memory. Every scrape's families are a valid exposition, and
/// `clock_server_requests_total` never goes down unless ntpd restarted.
pub fn ntpd(data: &[u8]) -> String {
    let mut served = Served::default();
    let (mut seen, mut published, mut text) = (false, None, String::new());
    for scrape in split(data, SCRAPE).take(MAX_SCRAPES) {
        let mut datagrams = split(scrape, PART).take(MAX_DATAGRAMS);
        let query = ntpd_query(&mut datagrams);
        seen |= !matches!(query, Err(None));
        let families = match query {
            Ok(reading) => {
                let requests = match reading.served_sample() {
                    None => served.current(),
                    Some(sample) => {
                        let (value, event) = served.update(sample);
                        if matches!(event, Event::Continued | Event::Rebaselined) {
                            assert!(published.is_none_or(|p| value >= p), "went down");
                        }
                        Some(value)
                    }
                };
                published = requests;
                let mut families = reading.families(requests);
                families.push(model::up_family(Daemon::Ntpd, true));
                families
            }
            Err(up) => up
                .or(seen.then_some(false))
                .map(|up| model::up_family(Daemon::Ntpd, up))
                .into_iter()
                .collect(),
        };
        text = assert_valid_exposition(families);
    }
    text
}

/// How a chrony request failed, as far as the collector tells failures
/// apart.
#[derive(Debug)]
enum Failed {
    /// No reply before the datagrams ran out: a timeout.
    Silent,
    /// Bytes that are not a command reply: not chronyd.
    Foreign,
    /// chronyd refused the request.
    Refused(Status),
    /// A reply that does not decode.
    Protocol,
}

/// The next reply to `request` among the datagrams, taken as chrony's
/// client takes a datagram: a reply to another command is skipped
/// (its sequence number is taken as the request's).
fn chrony_ask<'a>(
    datagrams: &mut impl Iterator<Item = &'a [u8]>,
    request: Request,
) -> Result<Reply, Failed> {
    for d in datagrams.by_ref() {
        let Ok(h) = ReplyHeader::parse(d) else {
            return Err(Failed::Foreign);
        };
        if d.len() >= cmdmon::MAX_DATAGRAM {
            return Err(Failed::Foreign);
        }
        return match cmdmon::decode_reply(request, h.sequence, d) {
            Ok(reply) => Ok(reply),
            Err(ReplyError::NotOurs { .. }) => continue,
            Err(ReplyError::Refused(status)) => Err(Failed::Refused(status)),
            Err(ReplyError::Parse(_)) => Err(Failed::Protocol),
        };
    }
    Err(Failed::Silent)
}

/// Every source's SOURCE_DATA and SOURCESTATS and, on the socket, the
/// NTP sources' NTP_DATA, as the chrony collector reads them; a
/// failure ends the list there (the collector reports it).
fn chrony_sources<'a>(
    datagrams: &mut impl Iterator<Item = &'a [u8]>,
    snapshot: &mut Snapshot,
    via_socket: bool,
) -> Result<(), Failed> {
    let n = match chrony_ask(datagrams, Request::NSources)? {
        Reply::NSources(n) => n.min(MAX_PEERS as u32),
        _ => return Err(Failed::Protocol),
    };
    let skip = |r: Result<Reply, Failed>| match r {
        Err(Failed::Refused(Status::NoSuchSource)) => Ok(None),
        r => r.map(Some),
    };
    for i in 0..n {
        for request in [Request::SourceData(i), Request::SourceStats(i)] {
            match skip(chrony_ask(datagrams, request))? {
                Some(Reply::SourceData(d)) => snapshot.sources.push(d),
                Some(Reply::SourceStats(s)) => snapshot.stats.push(s),
                Some(_) => return Err(Failed::Protocol),
                None => {}
            }
        }
    }
    if via_socket {
        // NTP_DATA for each source that is not a reference clock.
        let ntp = |s: &cmdmon::SourceData| {
            (s.mode != cmdmon::SourceMode::Reference).then(|| s.address.ip())?
        };
        let ips: Vec<_> = snapshot.sources.iter().filter_map(ntp).collect();
        for ip in ips {
            match skip(chrony_ask(datagrams, Request::NtpData(ip)))? {
                Some(Reply::NtpData(d)) => snapshot.ntp_data.push(d),
                Some(_) => return Err(Failed::Protocol),
                None => {}
            }
        }
    }
    Ok(())
}

/// `chrony`: the first byte is options (bit 0: chronyd's unix socket,
/// which answers NTP_DATA and SERVER_STATS; bit 1: a new socket, that
/// is a restarted chronyd, on every scrape), then each scrape's pieces
/// as the replies chronyd sends to one query (TRACKING, N_SOURCES,
/// SOURCE_DATA and SOURCESTATS of each source, NTP_DATA, SERVER_STATS),
/// decoded and reported as the chrony collector does, with the previous
/// scrapes' memory. Every scrape's families are a valid exposition, and
/// the server counters never go down unless chronyd restarted (they
/// then start again from chronyd's values).
pub fn chrony(data: &[u8]) -> String {
    let Some((&options, data)) = data.split_first() else {
        return String::new();
    };
    let via_socket = options & 1 != 0;
    let (mut counters, mut over_udp) = (Monotonic::default(), None);
    let (mut seen, mut published, mut text) = (false, None, String::new());
    for (n, scrape) in split(data, SCRAPE).take(MAX_SCRAPES).enumerate() {
        let mut datagrams = split(scrape, PART).take(MAX_DATAGRAMS);
        let up = |up: bool| model::up_family(Daemon::Chronyd, up);
        let asked = chrony_ask(&mut datagrams, Request::Tracking);
        seen |= !matches!(asked, Err(Failed::Silent | Failed::Foreign));
        let families = match asked {
            Err(Failed::Silent | Failed::Foreign) => seen.then(|| up(false)).into_iter().collect(),
            Ok(Reply::Tracking(tracking)) => {
                let mut snapshot = Snapshot {
                    tracking: Some(tracking),
                    ..Snapshot::default()
                };
                let _ = chrony_sources(&mut datagrams, &mut snapshot, via_socket);
                let stats = if via_socket || over_udp != Some(false) {
                    match chrony_ask(&mut datagrams, Request::ServerStats) {
                        Ok(Reply::ServerStats(s)) => {
                            over_udp.get_or_insert(true);
                            Some(s)
                        }
                        Err(Failed::Refused(Status::Unauthorised)) if !via_socket => {
                            over_udp = Some(false);
                            None
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                if let Some(stats) = stats {
                    let identity = via_socket.then_some(SocketIdentity {
                        dev: 1,
                        ino: if options & 2 != 0 { n as u64 } else { 0 },
                        ctime_ns: 0,
                    });
                    let (now, _) = counters.update(&stats, identity);
                    let (fresh, _) = Monotonic::default().update(&stats, identity);
                    if let Some(before) = published.replace(now)
                        && now != fresh
                    {
                        for (now, before) in now.iter().zip(before) {
                            assert!(now >= &before, "a server counter went down");
                        }
                    }
                    snapshot.server = Some((stats, now));
                }
                let (report, extras) = report(&snapshot);
                let mut families = report.families();
                families.extend(extras);
                families.push(up(true));
                families
            }
            Ok(_) | Err(_) => vec![up(true)],
        };
        text = assert_valid_exposition(families);
    }
    text
}

/// `kmsg`: the first piece as `available_clocksource` (the names the
/// counts are seeded with), then each piece as one record the kernel log
/// hands out (`collector::kmsg::Tally::add`: the header's parse, the
/// clocksource messages, the sequence gaps).
/// The counts stay consistent (no more malformed than read, at most
/// [`kmsg::MAX_CLOCKSOURCES`] names plus `other`, every name one the
/// kernel could give), and the families are a valid exposition.
pub fn kmsg(data: &[u8]) {
    let mut pieces = split(data, PART);
    let seed = String::from_utf8_lossy(pieces.next().unwrap_or_default()).into_owned();
    let mut t = Tally::seeded(seed.split_whitespace().take(64));
    let mut handed = 0u64;
    for record in pieces.take(4096) {
        let before = t.records;
        t.add(record);
        assert!(t.records - before <= 1);
        handed += 1;
    }
    assert!(t.records <= handed && t.malformed <= t.records);
    assert!(t.sources.len() <= kmsg::MAX_CLOCKSOURCES + 1);
    for c in &t.sources {
        assert!(
            c.name == "other" || kmsg::record::name(&c.name).is_some(),
            "{:?}",
            c.name
        );
        assert!(c.last_switch.is_some() || c.switches == 0);
        assert!(c.last_unstable.is_some() || c.unstable == 0);
    }
    assert_valid_exposition(t.families(1.7e9));
}

/// The body of timesyncd's `GetAll` answer (an `a{sv}` in D-Bus's
/// little-endian encoding, as `tests/fixtures/dbus/` holds one captured
/// from a real timesyncd), through zvariant into the timesyncd collector's
/// decoder. Bytes that are no dictionary, or properties of the wrong types,
/// are errors; what decodes keeps its promises (synchronised only with a
/// server and a reply) and is a valid exposition.
pub fn timesyncd(data: &[u8]) {
    use zbus::zvariant::serialized::{Context, Data};
    let bytes = Data::new(data, Context::new_dbus(zbus::zvariant::LE, 0));
    let Ok((properties, _)) = bytes.deserialize::<crate::sys::dbus::Properties>() else {
        return;
    };
    let Ok(r) = timesyncd::Reading::decode(&properties, 1.796e9) else {
        return;
    };
    if r.synchronized() {
        assert!(r.server_address.is_some() && r.message.received());
    }
    assert!(r.server_name.len() <= timesyncd::reading::MAX_NAME_BYTES);
    assert_valid_exposition(r.families());
}

/// `sntp_reply`: the first 8 bytes as the request's random transmit
/// timestamp, the rest as the datagram that came back, judged as the SNTP
/// client does. An answer always echoes the request (the origin check
/// comes first); a time is finite with a delay of at least zero; the
/// families of what it published are a valid exposition.
pub fn sntp_reply(data: &[u8]) {
    let Some((nonce, reply)) = data.split_first_chunk::<8>() else {
        return;
    };
    let nonce = ntp::NtpTimestamp(u64::from_be_bytes(*nonce));
    let t1 = 1.796e9;
    let verdict = sntp::judge(reply, nonce, t1, t1 + 0.002);
    if verdict.is_answer() {
        assert_eq!(reply.get(24..32), Some(&nonce.0.to_be_bytes()[..]));
    }
    let (last, best) = match verdict {
        sntp::Verdict::Time(s) => {
            assert!(s.offset.is_finite() && s.delay >= 0.0 && s.root_distance().is_finite());
            (Some(sntp_probe::Outcome::Time(s)), Some(s))
        }
        sntp::Verdict::Kiss(k) => {
            assert!(
                k.code()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'?')
            );
            (Some(sntp_probe::Outcome::Kiss(k)), None)
        }
        sntp::Verdict::Rejected(r) => (Some(sntp_probe::Outcome::Rejected(r)), None),
        sntp::Verdict::Discard(_) => (Some(sntp_probe::Outcome::NoReply), None),
    };
    assert_valid_exposition(sntp_probe::families(&[sntp_probe::Probed {
        server: "ntp.example:123".into(),
        address: Some(std::net::SocketAddr::from(([192, 0, 2, 1], 123))),
        last,
        best,
        samples: usize::from(best.is_some()),
    }]));
}

/// `probe_query`: any bytes as `/probe`'s query string, and as a target
/// and an allow-list entry. Parsing never panics; what parses is a target
/// the resolver may be given (no byte outside a host name and port).
pub fn probe_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(q) = crate::http::probe::parse_query(&text) {
        assert!(sntp_probe::split_target(&q.target).is_ok());
        assert!(
            q.samples
                .is_none_or(|n| (1..=crate::http::probe::MAX_SAMPLES).contains(&n))
        );
    }
    if let Ok((host, port)) = sntp_probe::split_target(&text) {
        assert!(port != 0 && !host.is_empty());
        assert!(
            host.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b))
        );
    }
    if let Ok(net) = sntp_probe::Net::parse(&text) {
        assert_eq!(sntp_probe::Net::parse(&net.to_string()), Ok(net));
    }
}

/// `web_config`: any bytes as a `--web.config.file`, parsed and checked
/// (`http::web_config::file::parse`). Never a panic; what is accepted is
/// consistent: TLS versions in order, headers only those allowed, every
/// user with a bcrypt hash of a cost in 4 to 31, a rate limit with an
/// interval.
pub fn web_config(data: &[u8]) {
    use crate::http::web_config::file::{ALLOWED_HEADERS, parse};
    let text = String::from_utf8_lossy(data);
    let Ok(c) = parse(&text, Path::new("/etc/clock_exporter")) else {
        return;
    };
    if let Some(t) = &c.tls {
        assert!(t.min_version <= t.max_version);
        assert!(t.client_auth.verifies() <= t.client_ca.is_some());
    }
    for (name, value) in &c.headers {
        let (_, allowed) = ALLOWED_HEADERS
            .iter()
            .find(|(n, _)| n == name)
            .expect("an allowed header");
        assert!(allowed.is_none_or(|a| a.contains(&value.as_str())));
    }
    for (user, hash) in &c.users {
        assert!(!user.contains(':'));
        let cost = hash
            .parse::<bcrypt::HashParts>()
            .expect("a bcrypt hash")
            .get_cost();
        assert!((4..=31).contains(&cost));
    }
    assert!(c.rate_limit.is_none_or(|r| !r.interval.is_zero()));
}

/// The harnesses on the captured fixtures, and every input kept in
/// `fuzz/regressions/<target>/`: `cargo test` runs what once broke a
/// target without the fuzzer.
#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(path: &str) -> Vec<u8> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        std::fs::read(root.join(path)).expect(path)
    }

    /// The fixtures as one input's pieces; `=` starts the next scrape.
    fn pieces(paths: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut sep: &[u8] = b"";
        for p in paths {
            if *p == "=" {
                sep = SCRAPE;
                continue;
            }
            out.extend_from_slice(sep);
            out.extend(fixture(p));
            sep = PART;
        }
        out
    }

    fn run(target: &str, data: &[u8]) {
        match target {
            "mode6_header" => mode6_header(data),
            "mode6_reassembly" => mode6_reassembly(data),
            "mode6_variables" => mode6_variables(data),
            "cmdmon_reply" => cmdmon_reply(data),
            "ntp_packet" => ntp_packet(data),
            "timex" => timex(data),
            "clocksource" => drop(clocksource(data)),
            "ntpd" => drop(ntpd(data)),
            "chrony" => drop(chrony(data)),
            "kmsg" => kmsg(data),
            "timesyncd" => timesyncd(data),
            "sntp_reply" => sntp_reply(data),
            "probe_query" => probe_query(data),
            "web_config" => web_config(data),
            other => panic!("no fuzz target {other}"),
        }
    }

    /// Every input kept from a finding passes its target; a target
    /// whose folder holds an `OPEN` note (a finding not fixed yet) is
    /// checked to still fail on one of them, so that the note goes
    /// with the fix.
    #[test]
    fn every_input_kept_from_a_finding_passes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
        for target in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = target.file_name().to_string_lossy().into_owned();
            let open = target.path().join("OPEN").exists();
            let mut failed = false;
            for input in std::fs::read_dir(target.path()).expect("inputs").flatten() {
                if input.file_name() == "OPEN" {
                    continue;
                }
                let data = std::fs::read(input.path()).expect("input");
                if open {
                    failed |= std::panic::catch_unwind(|| run(&name, &data)).is_err();
                } else {
                    run(&name, &data);
                }
            }
            assert!(
                failed || !open,
                "fuzz/regressions/{name}: every input passes now; delete its OPEN note"
            );
        }
    }

    #[test]
    fn the_kmsg_harness_takes_a_log_and_its_hostile_variants() {
        let log: &[&[u8]] = &[
            b"tsc kvm-clock bad\x01name",
            b"6,100,318107,-;clocksource: Switched to clocksource kvm-clock\n",
            b"4,140,7200000000,-;clocksource: timekeeping watchdog on CPU1: Marking clocksource 'tsc' as unstable because the skew is too large:\n",
            b"14,141,7300000000,-;clocksource: Switched to clocksource forged\n",
            b"no header",
            b"",
            b"6,99999999999999999999,1,-;x",
        ];
        kmsg(&log.join(PART));
        kmsg(b"");
        kmsg(PART);
        // More names than the bound: the rest are `other`.
        let mut many = vec![b"".to_vec()];
        for i in 0..40 {
            many.push(format!("6,{i},{i},-;Switched to clocksource cs{i}").into_bytes());
        }
        kmsg(&many.join(PART));
    }

    #[test]
    fn the_captured_timesyncd_answer_decodes_and_its_damage_does_not_panic() {
        use zbus::zvariant::serialized::{Context, Data};
        let raw = fixture("dbus/timesyncd-getall.bin");
        let bytes = Data::new(&raw[..], Context::new_dbus(zbus::zvariant::LE, 0));
        let (properties, used) = bytes
            .deserialize::<crate::sys::dbus::Properties>()
            .expect("a property dictionary");
        assert_eq!(used, raw.len());
        let r = timesyncd::Reading::decode(&properties, 0.0).expect("timesyncd's");
        assert_eq!(r.server_address, Some("192.0.2.11".parse().expect("ip")));
        assert_eq!(r.server_name, "192.0.2.11");
        assert_eq!((r.message.version, r.message.mode), (4, 4));
        assert_eq!(r.message.stratum, 3);
        assert!(r.message.received());
        assert_eq!(r.poll_interval_seconds, 32.0);
        // Read within its poll interval: synchronised, as the lab saw it.
        let at = r.message.destination_us as f64 * 1e-6 + 1.0;
        assert!(
            timesyncd::Reading {
                read_at_unix_seconds: at,
                ..r
            }
            .synchronized()
        );
        timesyncd(&raw);
        for n in 0..raw.len() {
            timesyncd(&raw[..n]);
            let mut flipped = raw.clone();
            flipped[n] ^= 0xff;
            timesyncd(&flipped);
        }
    }

    #[test]
    fn the_captured_ntpd_query_reports_its_falseticker() {
        let query = [
            "mode6/readstat.0.bin",
            "mode6/readvar-system.0.bin",
            "mode6/readvar-sysstats.0.bin",
            "mode6/readvar-sysstats-ntpsec.0.bin",
            "mode6/readvar-peer-skewed.0.bin",
            "mode6/readvar-peer-skewed.1.bin",
            "mode6/readvar-peer-honest-a.0.bin",
            "mode6/readvar-peer-honest-a.1.bin",
        ];
        let text = ntpd(&pieces(&query));
        let peer = "daemon=\"ntpd\",peer=\"192.0.2.13\"";
        assert!(text.contains(&format!(
            "clock_peer_state{{{peer},state=\"falseticker\"}} 1"
        )));
        assert!(
            text.contains("clock_daemon_up{daemon=\"ntpd\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_captured_chrony_query_reports_its_server_counters() {
        let sources: Vec<String> = (0..4)
            .flat_map(|i| {
                ["source_data", "sourcestats"].map(|r| format!("cmdmon/{r}.{i}.reply.bin"))
            })
            .collect();
        let mut query = vec!["cmdmon/tracking.reply.bin", "cmdmon/n_sources.reply.bin"];
        query.extend(sources.iter().map(String::as_str));
        // NTP_DATA of the three servers: the third refused, which ends
        // the sources; then SERVER_STATS.
        query.extend([
            "cmdmon/ntp_data.honest.reply.bin",
            "cmdmon/ntp_data.skewed.reply.bin",
        ]);
        query.extend([
            "cmdmon/ntp_data.udp.reply.bin",
            "cmdmon/server_stats.unix.reply.bin",
        ]);
        let mut data = vec![1];
        data.extend(pieces(&query));
        let text = chrony(&data);
        let peer = "daemon=\"chronyd\",peer=\"192.0.2.12\"";
        assert!(text.contains(&format!(
            "clock_peer_state{{{peer},state=\"falseticker\"}} 1"
        )));
        assert!(text.contains(&format!("clock_peer_delay_seconds{{{peer}}} ")));
        assert!(
            text.contains("clock_server_requests_total{daemon=\"chronyd\"} 19"),
            "{text}"
        );
    }

    #[test]
    fn a_captured_host_reports_its_clocksource() {
        let (h, d) = (
            "hosts/kvm-guest-kvmclock",
            "sys/devices/system/clocksource/clocksource0",
        );
        let files = [
            format!("{h}/proc/cmdline"),
            format!("{h}/proc/sys/kernel/osrelease"),
            format!("{h}/proc/cpuinfo"),
            format!("{h}/{d}/current_clocksource"),
            format!("{h}/{d}/available_clocksource"),
        ];
        let text = clocksource(&pieces(&files.each_ref().map(String::as_str)));
        let current = "{device=\"clocksource0\",clocksource=\"kvm-clock\"} 1";
        assert!(
            text.contains(&format!("clock_source_current_info{current}")),
            "{text}"
        );
    }

    #[test]
    fn every_captured_datagram_passes_the_decoder_targets() {
        for dir in ["mode6", "mode6/served", "cmdmon"] {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(dir);
            for f in std::fs::read_dir(root).expect(dir).flatten() {
                if f.path().extension().is_none_or(|e| e != "bin") {
                    continue;
                }
                let data = std::fs::read(f.path()).expect("fixture");
                for target in ["mode6_header", "mode6_reassembly", "mode6_variables"] {
                    run(target, &data);
                }
                for target in ["cmdmon_reply", "ntp_packet", "timex"] {
                    run(target, &data);
                }
            }
        }
    }
}
