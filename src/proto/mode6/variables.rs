//! The `name=value,...` text of READVAR responses, and typed views of it with
//! units converted at this boundary: ntpd reports offsets, delays, jitters
//! and dispersions in milliseconds and frequencies in ppm (`ctl_putsys()`,
//! `ctl_putpeer()` in ntpd's `ntp_control.c`); the rest of the exporter sees
//! seconds and ratios only.
//!
//! ntpd writes `name=value` pairs separated by `, ` and breaks lines with
//! `\r\n` after a comma; strings are quoted (`version="ntpd ntpsec-1.2.2"`)
//! and may contain commas. The parser follows ntpq's `__parse_varlist`: NULs
//! and bytes outside printable ASCII are dropped, commas inside quotes do not
//! split, a name without `=` has an empty value. Unlike ntpq it honours a
//! quote only where a value starts. It never fails: what is not a pair with
//! a plausible name is skipped.

use std::net::IpAddr;

use super::{AssocId, PeerStatus};

/// A duration in milliseconds, as ntpd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Millis(pub f64);

impl Millis {
    /// In seconds.
    pub fn seconds(self) -> f64 {
        self.0 / 1e3
    }
}

/// A frequency in parts per million, as ntpd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Ppm(pub f64);

impl Ppm {
    /// As a ratio (1 ppm is 1e-6).
    pub fn ratio(self) -> f64 {
        self.0 * 1e-6
    }
}

/// An interval as a power of two seconds (`tc`, `hpoll`, `ppoll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Log2Seconds(pub i8);

impl Log2Seconds {
    /// In seconds; the exponent is clamped to ntpd's range of polls
    /// (`NTP_MINPOLL` 0 for unset values shown as negative, up to 2^17 s).
    pub fn seconds(self) -> f64 {
        2f64.powi(i32::from(self.0.clamp(-10, 17)))
    }
}

/// The 8-bit reach register: bit 0 is the latest poll, set if it was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reach(pub u8);

impl Reach {
    /// The share of the last eight polls answered.
    pub fn ratio(self) -> f64 {
        f64::from(self.0.count_ones()) / 8.0
    }
}

/// Parsed `name=value` pairs, in the order received.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Variables(pub Vec<(String, String)>);

/// Whether `name` can be a variable name: printable, no quote or `=`.
fn plausible_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=' && b != b',')
}

impl Variables {
    /// Parses READVAR data. Never fails; see the module documentation.
    pub fn parse(data: &[u8]) -> Variables {
        let mut pairs = Vec::new();
        let mut current = String::new();
        // Where the scanner is in the current pair: a quote opens a string
        // only as the first character of a value, so a stray quote in an
        // unquoted value (NTPsec 1.2.2 sends uninitialised bytes in
        // `filtdelay` and friends) cannot swallow the pairs after it.
        let (mut seen_eq, mut value_started, mut in_string, mut quoted) =
            (false, false, false, false);
        for &b in data {
            match b {
                b'"' if in_string => in_string = false,
                b'"' if seen_eq && !value_started => {
                    (in_string, quoted, value_started) = (true, true, true);
                }
                b',' if !in_string => {
                    push_pair(&mut pairs, &current, quoted);
                    current.clear();
                    (seen_eq, value_started, quoted) = (false, false, false);
                    continue;
                }
                // Line breaks and tabs are only layout.
                b'\r' | b'\n' | b'\t' | b' ' => {
                    current.push(' ');
                    continue;
                }
                b'=' if !seen_eq => {
                    seen_eq = true;
                    current.push('=');
                    continue;
                }
                0x21..=0x7e => value_started |= seen_eq,
                // Dropped, but a value that begins with garbage has begun.
                _ => {
                    value_started |= seen_eq;
                    continue;
                }
            }
            current.push(char::from(b));
        }
        push_pair(&mut pairs, &current, quoted);
        Variables(pairs)
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A finite decimal number.
    pub fn float(&self, name: &str) -> Option<f64> {
        self.get(name)?
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
    }

    /// An unsigned integer, decimal or `0x` hexadecimal (ntpd writes `reach`
    /// and `flash` in hex).
    pub fn uint(&self, name: &str) -> Option<u64> {
        let v = self.get(name)?;
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(hex) => u64::from_str_radix(hex, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// A signed decimal integer.
    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name)?.parse().ok()
    }

    /// Milliseconds.
    pub fn millis(&self, name: &str) -> Option<Millis> {
        self.float(name).map(Millis)
    }

    /// Parts per million.
    pub fn ppm(&self, name: &str) -> Option<Ppm> {
        self.float(name).map(Ppm)
    }

    /// A power-of-two interval.
    pub fn log2(&self, name: &str) -> Option<Log2Seconds> {
        self.int(name)
            .and_then(|v| i8::try_from(v).ok())
            .map(Log2Seconds)
    }

    /// A small integer that must fit in a byte (stratum, leap, modes).
    pub fn byte(&self, name: &str) -> Option<u8> {
        self.uint(name).and_then(|v| u8::try_from(v).ok())
    }
}

fn push_pair(pairs: &mut Vec<(String, String)>, raw: &str, quoted: bool) {
    let (name, value) = match raw.split_once('=') {
        Some((n, v)) => (n.trim(), v.trim()),
        None => (raw.trim(), ""),
    };
    if !plausible_name(name) {
        return;
    }
    // A quoted value loses its quotes; one cut off by the end of the data
    // keeps what it has.
    let value = match value.strip_prefix('"') {
        Some(v) if quoted => v.strip_suffix('"').unwrap_or(v),
        _ => value,
    };
    pairs.push((name.to_owned(), value.to_owned()));
}

/// The zone of a scoped IPv6 address as ntpd writes it (`fe80::1%2`,
/// `fe80::1%eth0`, RFC 4007 section 11): an interface index or name, which
/// tells two link-local peers of the same address apart. `None` without a
/// zone, or when the zone is not a plausible interface (at most 15
/// characters of `[A-Za-z0-9._-]`, as Linux's IFNAMSIZ allows).
pub fn ip_scope(text: &str) -> Option<&str> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.split_once(']').map(|(a, _)| a))
        .unwrap_or(t);
    let (_, zone) = t.split_once('%')?;
    (!zone.is_empty()
        && zone.len() <= 15
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    .then_some(zone)
}

/// An address as ntpd writes it (`socktoa()`: IPv6 possibly with `%scope`,
/// possibly bracketed), in canonical text form: IPv6 compressed (RFC 5952).
/// The scope is dropped here; [`ip_scope`] reads it.
pub fn canonical_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim();
    let t = t
        .strip_prefix('[')
        .and_then(|t| t.split_once(']').map(|(a, _)| a))
        .unwrap_or(t);
    let t = t.split_once('%').map_or(t, |(a, _)| a);
    t.parse().ok()
}

/// The system variables the exporter uses (READVAR, association 0, no names:
/// ntpd's default list).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SystemVariables {
    /// Leap indicator: 0 none, 1 insert, 2 delete, 3 unsynchronised.
    pub leap: Option<u8>,
    /// Stratum (16: unsynchronised).
    pub stratum: Option<u8>,
    /// Root delay.
    pub root_delay: Option<Millis>,
    /// Root dispersion.
    pub root_dispersion: Option<Millis>,
    /// Reference id: an IPv4 address for stratum 2–15, else ASCII (`INIT`, `LOCL`, `GPS`).
    pub refid: Option<String>,
    /// The system peer's association, 0 when there is none.
    pub peer: Option<AssocId>,
    /// Clock discipline time constant (`tc`), the system poll interval.
    pub poll: Option<Log2Seconds>,
    /// Combined offset of the last clock update (θ: reference minus local).
    pub offset: Option<Millis>,
    /// Frequency correction (`frequency`, ntpd's `drift_comp`), kernel sign.
    pub frequency: Option<Ppm>,
    /// System jitter.
    pub sys_jitter: Option<Millis>,
    /// Clock jitter.
    pub clk_jitter: Option<Millis>,
    /// Frequency wander (`clk_wander`).
    pub clk_wander: Option<Ppm>,
    /// The daemon's version string.
    pub version: Option<String>,
}

impl SystemVariables {
    /// Picks the known variables out of a parsed response.
    pub fn from_variables(v: &Variables) -> SystemVariables {
        SystemVariables {
            leap: v.byte("leap").filter(|l| *l <= 3),
            stratum: v.byte("stratum"),
            root_delay: v.millis("rootdelay"),
            root_dispersion: v.millis("rootdisp"),
            refid: v.get("refid").map(str::to_owned),
            peer: v
                .uint("peer")
                .and_then(|p| u16::try_from(p).ok())
                .map(AssocId),
            poll: v.log2("tc"),
            offset: v.millis("offset"),
            frequency: v.ppm("frequency"),
            sys_jitter: v.millis("sys_jitter"),
            clk_jitter: v.millis("clk_jitter"),
            clk_wander: v.ppm("clk_wander"),
            version: v.get("version").map(str::to_owned),
        }
    }
}

/// The system statistics `ntpq -c sysstats` shows, as far as the exporter
/// uses them: enough to count the client requests ntpd answered (see
/// `collector::ntpd::served`).
///
/// What each counts, from `receive()` in `ntpd/ntp_proto.c`:
/// - every packet handed to `receive()` counts in `ss_received`, first;
/// - NTPsec: a mode-6 request that passes the restrictions and rate limits
///   counts in `ss_numctlreq` when `process_control()` starts and in
///   `ss_processed` after it returns; a client (mode 3) or symmetric active
///   (mode 1) request counts in `ss_processed` once `fast_xmit()` answered it
///   (with time, or with a RATE kiss-o'-death); a reply to ntpd's own poll
///   counts in its association's `received` and then in `ss_processed`;
/// - ntpd classic 4.2.8: `ss_processed` counts only replies to its own polls
///   (`process_packet()`), control requests are not counted by any system
///   variable, and every mode 1–5 packet that passes the early restrictions
///   counts in `ss_thisver` or `ss_oldver` before it is matched to an
///   association or answered.
///
/// NTPsec restarts the plain counters every hour (`ss_reset`); its `_r`
/// variants count since start. ntpd classic counts since start or since a
/// `reset` (mode 7, off by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SystemStats {
    /// Seconds since ntpd started (`ss_uptime`): a restart makes it smaller.
    pub uptime: Option<u64>,
    /// Packets processed since start (`ss_processed_r`, NTPsec only).
    pub processed_total: Option<u64>,
    /// Control (mode-6) requests received since start (`ss_numctlreq`, NTPsec only).
    pub control_requests: Option<u64>,
    /// Packets of the current NTP version (`ss_thisver`).
    pub this_version: Option<u64>,
    /// Packets of an older NTP version (`ss_oldver`).
    pub old_version: Option<u64>,
    /// Packets declined: no association matched, or a mode ntpd does not serve (`ss_declined`).
    pub declined: Option<u64>,
    /// Packets that failed authentication (`ss_badauth`).
    pub bad_auth: Option<u64>,
    /// Packets over the rate limit of a `limited` restriction (`ss_limited`).
    pub limited: Option<u64>,
    /// Kiss-o'-death (RATE) answers sent to rate-limited clients (`ss_kodsent`).
    pub kod_sent: Option<u64>,
}

impl SystemStats {
    /// The variables to ask for, understood by ntpd classic and NTPsec.
    pub const QUERY: &'static str =
        "ss_uptime,ss_thisver,ss_oldver,ss_declined,ss_badauth,ss_limited,ss_kodsent";
    /// The variables to ask for that only NTPsec has (others answer the whole
    /// request with an "unknown variable" error). One request, so that
    /// `ss_processed_r` and `ss_numctlreq` are read at the same moment: the
    /// request itself then counts in `ss_numctlreq` but not yet in
    /// `ss_processed_r`.
    pub const QUERY_NTPSEC: &'static str = "ss_uptime,ss_processed_r,ss_numctlreq";

    /// Picks the statistics out of parsed responses (either query, or both
    /// merged).
    pub fn from_variables(v: &Variables) -> SystemStats {
        SystemStats {
            uptime: v.uint("ss_uptime"),
            processed_total: v.uint("ss_processed_r"),
            control_requests: v.uint("ss_numctlreq"),
            this_version: v.uint("ss_thisver"),
            old_version: v.uint("ss_oldver"),
            declined: v.uint("ss_declined"),
            bad_auth: v.uint("ss_badauth"),
            limited: v.uint("ss_limited"),
            kod_sent: v.uint("ss_kodsent"),
        }
    }
}

/// An association's packet counter (`ntpq -c "pstats ID"`), which is not in
/// the default peer variables and must be asked for by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCounters {
    /// Source address (`srcadr`): tells a refclock (`127.127.t.u`), whose
    /// samples count in `received` without ever passing `receive()`.
    pub address: Option<IpAddr>,
    /// Packets from this association's server or peer that passed
    /// authentication (`received`): the replies to ntpd's own polls.
    pub received: Option<u64>,
}

impl PeerCounters {
    /// The variables to ask for (READVAR of the association, these names).
    pub const QUERY: &'static str = "srcadr,received";

    /// Picks the counters out of a parsed response.
    pub fn from_variables(v: &Variables) -> PeerCounters {
        PeerCounters {
            address: v.get("srcadr").and_then(canonical_ip),
            received: v.uint("received"),
        }
    }
}

/// The peer variables the exporter uses (READVAR, the association's id, no
/// names: ntpd's default list).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerVariables {
    /// Source address (`srcadr`); `0.0.0.0` for a pool placeholder, `127.127.t.u` for a refclock.
    pub address: Option<IpAddr>,
    /// Source address as ntpd wrote it, when it is not an address.
    pub address_text: Option<String>,
    /// The zone of a scoped IPv6 source address (`%2`, `%eth0`).
    pub scope: Option<String>,
    /// Reference id as ntpd wrote it.
    pub refid: Option<String>,
    /// Association mode (`hmode`): 1 symmetric active, 2 symmetric passive, 3 client, ...
    pub host_mode: Option<u8>,
    /// Stratum.
    pub stratum: Option<u8>,
    /// Leap indicator.
    pub leap: Option<u8>,
    /// The peer's poll interval (`ppoll`).
    pub peer_poll: Option<Log2Seconds>,
    /// Our poll interval (`hpoll`).
    pub host_poll: Option<Log2Seconds>,
    /// Reach register.
    pub reach: Option<Reach>,
    /// Root delay.
    pub root_delay: Option<Millis>,
    /// Root dispersion.
    pub root_dispersion: Option<Millis>,
    /// Round-trip delay.
    pub delay: Option<Millis>,
    /// Offset θ: peer clock minus local clock.
    pub offset: Option<Millis>,
    /// Jitter.
    pub jitter: Option<Millis>,
    /// Dispersion.
    pub dispersion: Option<Millis>,
    /// The key the association authenticates with (`keyid`): 0 for none,
    /// above 65535 an Autokey session key (reference ntpd).
    pub key_id: Option<u32>,
    /// NTS cookies held (`ntscookies`, NTPsec, which sends it for every
    /// association: −1 without any, as before or without key establishment).
    pub nts_cookies: Option<i32>,
}

impl PeerVariables {
    /// Picks the known variables out of a parsed response.
    pub fn from_variables(v: &Variables) -> PeerVariables {
        let srcadr = v.get("srcadr");
        let address = srcadr.and_then(canonical_ip);
        PeerVariables {
            address,
            address_text: srcadr.filter(|_| address.is_none()).map(str::to_owned),
            scope: srcadr
                .filter(|_| address.is_some_and(|a| a.is_ipv6()))
                .and_then(ip_scope)
                .map(str::to_owned),
            refid: v.get("refid").map(str::to_owned),
            host_mode: v.byte("hmode"),
            stratum: v.byte("stratum"),
            leap: v.byte("leap").filter(|l| *l <= 3),
            peer_poll: v.log2("ppoll"),
            host_poll: v.log2("hpoll"),
            reach: v.byte("reach").map(Reach),
            root_delay: v.millis("rootdelay"),
            root_dispersion: v.millis("rootdisp"),
            delay: v.millis("delay"),
            offset: v.millis("offset"),
            jitter: v.millis("jitter"),
            dispersion: v.millis("dispersion"),
            key_id: v.uint("keyid").and_then(|k| u32::try_from(k).ok()),
            nts_cookies: v.int("ntscookies").and_then(|k| i32::try_from(k).ok()),
        }
    }

    /// The poll interval ntpq shows: the smaller of ours and the peer's.
    pub fn poll(&self) -> Option<Log2Seconds> {
        match (self.host_poll, self.peer_poll) {
            (Some(h), Some(p)) => Some(h.min(p)),
            (h, p) => h.or(p),
        }
    }

    /// The root distance of the peer, in seconds: rootdelay/2 + rootdisp +
    /// delay/2 + dispersion + jitter, RFC 5905's λ (section 11.2.1) without
    /// the aging term φ·(t − t₀), which adds at most 15 µs per second since
    /// the last sample.
    pub fn root_distance_seconds(&self) -> Option<f64> {
        Some(
            self.root_delay?.seconds() / 2.0
                + self.root_dispersion?.seconds()
                + self.delay?.seconds() / 2.0
                + self.dispersion?.seconds()
                + self.jitter?.seconds(),
        )
    }
}

/// A peer's status word and variables: one association's READVAR response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PeerReading {
    /// The association.
    pub assoc_id: AssocId,
    /// The status word the response carried.
    pub status: PeerStatus,
    /// Its variables.
    pub variables: PeerVariables,
}
