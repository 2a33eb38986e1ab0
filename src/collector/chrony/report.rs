//! chronyd's replies turned into the shared model and chrony's own series.
//! Pure: decoded replies in, families out; tested with captured datagrams.
//!
//! Signs (proven against chronyc in `tests/chrony_lab.rs`): TRACKING's
//! `current_correction` already is θ (positive when the system clock is
//! behind); `last_offset`, SOURCE_DATA's `orig_latest_meas` and `latest_meas`,
//! SOURCESTATS' `est_offset` are local minus source and are negated (NTP_DATA's
//! `offset` is θ already, and not used); chrony's frequencies (`freq_ppm`, `resid_freq_ppm`) are
//! the kernel's correction negated, and are negated too.

use std::collections::HashMap;
use std::net::IpAddr;

use super::counters::Counts;
use crate::metrics::{Desc, Family, labels, metrics};
use crate::model::{
    AuthMode, Daemon, DaemonReport, Peer, PeerAuth, PeerKind, PeerLabels, PeerState, SyncStatus,
    reachability,
};
use crate::proto::cmdmon::{
    self, Address, AuthData, NtpData, ServerStats, SourceData, SourceMode, SourceState,
    SourceStats, Tracking, refid_text,
};

/// chronyd's reference id when it is synchronised to its own `local` clock
/// (`LOCAL_REFERENCE_ID` in chrony's reference.c, shown as 7F7F0101).
pub const LOCAL_REFERENCE_ID: u32 = 0x7f7f_0101;
/// The `peer` label and refid the exporter gives chronyd's `local` clock,
/// RFC 5905's refid for an uncalibrated local clock.
pub const LOCAL_LABEL: &str = "LOCL";

const PPM: f64 = 1e-6;

metrics! {
    /// The families only chrony emits; the shared model's are listed beside
    /// them in the collector's registration.
    pub static METRICS = [
        TRACKING_INFO: Gauge(
            "clock_chrony_tracking_info",
            ["reference_id", "reference_name"],
            "The reference chronyd tracks, as chronyc tracking shows it: the reference id in hexadecimal and the address or reference clock name."
        ),
        TRACKING_LAST_OFFSET: Gauge(
            "clock_chrony_tracking_last_offset_seconds",
            [],
            "Offset of the reference from the local clock estimated at chronyd's last clock update, in seconds, positive when the local clock was behind."
        ),
        TRACKING_RESIDUAL_FREQUENCY: Gauge(
            "clock_chrony_tracking_residual_frequency_ratio",
            [],
            "Difference between the frequency the reference's measurements indicate and the one chronyd applies, as a ratio with the kernel's sign."
        ),
        TRACKING_REFERENCE_TIME: Gauge(
            "clock_chrony_tracking_reference_time_seconds",
            [],
            "Time of chronyd's last clock update, in seconds since the Unix epoch, 0 before the first."
        ),
        PEER_ADJUSTED_OFFSET: Gauge(
            "clock_chrony_peer_adjusted_offset_seconds",
            ["peer"],
            "The source's offset from chronyd's own timescale: its last measurement adjusted for the corrections chronyd made since (chronyc sources, before the brackets), in seconds, positive when the source is ahead."
        ),
        PEER_MEASURED_OFFSET: Gauge(
            "clock_chrony_peer_measured_offset_seconds",
            ["peer"],
            "The source's offset from chronyd's timescale as measured at its last sample (chronyc sources, in brackets), in seconds, positive when the source is ahead."
        ),
        PEER_LAST_SAMPLE_AGE: Gauge(
            "clock_chrony_peer_last_sample_age_seconds",
            ["peer"],
            "Time since chronyd's last sample of the source, in seconds."
        ),
        PEER_SAMPLES: Gauge(
            "clock_chrony_peer_samples",
            ["peer"],
            "Number of samples chronyd holds for the source."
        ),
        PEER_SAMPLE_SPAN: Gauge(
            "clock_chrony_peer_sample_span_seconds",
            ["peer"],
            "Time between the oldest and the newest sample chronyd holds for the source, in seconds."
        ),
        PEER_FREQUENCY: Gauge(
            "clock_chrony_peer_frequency_ratio",
            ["peer"],
            "Rate at which the source's clock gains on the local clock, estimated from the samples, as a ratio."
        ),
        PEER_FREQUENCY_SKEW: Gauge(
            "clock_chrony_peer_frequency_skew_ratio",
            ["peer"],
            "Error bound of the source's estimated frequency, as a ratio."
        ),
        PEER_ESTIMATED_OFFSET: Gauge(
            "clock_chrony_peer_estimated_offset_seconds",
            ["peer"],
            "Offset of the source from the local clock now, estimated from the samples by regression, in seconds, positive when the source is ahead."
        ),
        PEER_ESTIMATED_OFFSET_ERROR: Gauge(
            "clock_chrony_peer_estimated_offset_error_seconds",
            ["peer"],
            "Error of the source's estimated offset, in seconds."
        ),
        PEER_ROOT_DELAY: Gauge(
            "clock_chrony_peer_root_delay_seconds",
            ["peer"],
            "Root delay the NTP source announced in its last packet, in seconds (needs the unix socket)."
        ),
        PEER_ROOT_DISPERSION: Gauge(
            "clock_chrony_peer_root_dispersion_seconds",
            ["peer"],
            "Root dispersion the NTP source announced in its last packet, in seconds (needs the unix socket)."
        ),
        PEER_ROOT_DISTANCE: Gauge(
            "clock_chrony_peer_root_distance_seconds",
            ["peer"],
            "Root distance of the NTP source's last measurement, (root delay + delay) / 2 + root dispersion + dispersion, in seconds (needs the unix socket)."
        ),
        PEER_LEAP: Gauge(
            "clock_chrony_peer_leap",
            ["peer"],
            "Deprecated, removed in 0.3: the same value as clock_peer_leap{daemon=\"chronyd\"}. Leap indicator of the NTP source's last packet: 0 none, 1 insert second, 2 delete second, 3 unsynchronised (needs the unix socket)."
        ),
        PEER_AUTH_KEY_ID: Gauge(
            "clock_chrony_peer_auth_key_id",
            ["peer"],
            "Id of the key the source's packets are authenticated with: the symmetric key's, or for NTS the number of the key-establishment session the keys came from (chronyc authdata KeyID; needs the unix socket)."
        ),
        PEER_AUTH_KEY_TYPE: Gauge(
            "clock_chrony_peer_auth_key_type",
            ["peer"],
            "The code chronyd gives the key's hash or cipher (chronyc authdata Type; needs the unix socket)."
        ),
        PEER_AUTH_KEY_LENGTH: Gauge(
            "clock_chrony_peer_auth_key_length_bits",
            ["peer"],
            "Length of the key, in bits, 0 while an NTS source has none (chronyc authdata KLen; needs the unix socket)."
        ),
        PEER_NTS_KE_ATTEMPTS: Gauge(
            "clock_chrony_peer_nts_ke_attempts",
            ["peer"],
            "NTS key-establishment sessions chronyd started for the source since its last authentic NTS reply (chronyc authdata Atmp; needs the unix socket)."
        ),
        PEER_NTS_LAST_KE_AGE: Gauge(
            "clock_chrony_peer_nts_last_ke_age_seconds",
            ["peer"],
            "Time since the source's last successful NTS key establishment, in seconds; absent before the first (chronyc authdata Last; needs the unix socket)."
        ),
        PEER_NTS_COOKIES: Gauge(
            "clock_chrony_peer_nts_cookies",
            ["peer"],
            "NTS cookies chronyd holds for the source, at most 8; with none it cannot ask the source until a new key establishment succeeds (chronyc authdata Cook; needs the unix socket)."
        ),
        PEER_NTS_COOKIE_LENGTH: Gauge(
            "clock_chrony_peer_nts_cookie_length_bytes",
            ["peer"],
            "Length of the source's NTS cookies, in bytes (chronyc authdata CLen; needs the unix socket)."
        ),
        PEER_NTS_NAK: Gauge(
            "clock_chrony_peer_nts_nak",
            ["peer"],
            "1 when the source answered chronyd's last NTS request with a NAK (it could not use the cookie), else 0 (chronyc authdata NAK; needs the unix socket)."
        ),
        SERVER_NTP_DROPPED: Counter(
            "clock_chrony_server_ntp_packets_dropped",
            [],
            "NTP packets from clients that chronyd dropped by rate limiting."
        ),
        SERVER_COMMAND_RECEIVED: Counter(
            "clock_chrony_server_command_packets_received",
            [],
            "Command packets chronyd received."
        ),
        SERVER_COMMAND_DROPPED: Counter(
            "clock_chrony_server_command_packets_dropped",
            [],
            "Command packets chronyd dropped by rate limiting."
        ),
        SERVER_LOG_DROPPED: Counter(
            "clock_chrony_server_client_log_records_dropped",
            [],
            "Client records chronyd could not keep because its client log was full."
        ),
        SERVER_NTS_KE_ACCEPTED: Counter(
            "clock_chrony_server_nts_ke_connections_accepted",
            [],
            "NTS key-establishment connections chronyd accepted."
        ),
        SERVER_NTS_KE_DROPPED: Counter(
            "clock_chrony_server_nts_ke_connections_dropped",
            [],
            "NTS key-establishment connections chronyd dropped by rate limiting."
        ),
        SERVER_AUTHENTICATED: Counter(
            "clock_chrony_server_authenticated_ntp_packets",
            [],
            "Authenticated NTP packets from clients that chronyd received."
        ),
        SERVER_INTERLEAVED: Counter(
            "clock_chrony_server_interleaved_ntp_packets",
            [],
            "NTP packets from clients that chronyd answered in interleaved mode."
        ),
        SERVER_TIMESTAMPS: Counter(
            "clock_chrony_server_ntp_timestamps",
            ["source", "direction"],
            "Server timestamps chronyd took, by where (daemon, kernel, hardware) and direction (rx, tx); chrony 4.4 and later."
        ),
        SERVER_TIMESTAMPS_HELD: Gauge(
            "clock_chrony_server_ntp_timestamps_held",
            [],
            "Server timestamps chronyd holds for clients using interleaved mode."
        ),
        SERVER_TIMESTAMP_SPAN: Gauge(
            "clock_chrony_server_ntp_timestamp_span_seconds",
            [],
            "Time the server timestamps chronyd holds span, in seconds."
        ),
    ];
}

/// Everything one scrape read from chronyd.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// TRACKING, when it answered.
    pub tracking: Option<Tracking>,
    /// SOURCE_DATA of every source, in index order.
    pub sources: Vec<SourceData>,
    /// SOURCESTATS of every source (joined to `sources` by address).
    pub stats: Vec<SourceStats>,
    /// NTP_DATA of the NTP sources (unix socket only).
    pub ntp_data: Vec<NtpData>,
    /// AUTH_DATA of the NTP sources, by the address asked (unix socket
    /// only in chrony 4.3; over UDP with chrony 4.7's `opencommands`).
    pub auth: Vec<(IpAddr, AuthData)>,
    /// SERVER_STATS with its counters made monotonic (unix socket only).
    pub server: Option<(ServerStats, Counts)>,
}

/// How a source is found in both SOURCE_DATA and SOURCESTATS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SourceKey {
    Ip(IpAddr),
    RefId(u32),
}

/// SOURCE_DATA gives a reference clock an IPv4-shaped address holding its
/// refid; unresolved sources (`IPADDR_ID`) have no key and are skipped, as
/// `chronyc sources` skips them.
fn data_key(s: &SourceData) -> Option<SourceKey> {
    match (s.mode, s.address) {
        (SourceMode::Reference, Address::Inet4(a)) => Some(SourceKey::RefId(u32::from(a))),
        (_, a) => a.ip().map(SourceKey::Ip),
    }
}

/// SOURCESTATS gives a reference clock no address, and its refid.
fn stats_key(s: &SourceStats) -> Option<SourceKey> {
    match s.address {
        Address::Unspec => Some(SourceKey::RefId(s.ref_id)),
        a => a.ip().map(SourceKey::Ip),
    }
}

fn refid_label(ref_id: u32) -> String {
    let t = refid_text(ref_id);
    if t.is_empty() {
        format!("{ref_id:08X}")
    } else {
        t
    }
}

/// chrony's source states mapped by meaning onto the shared vocabulary.
pub fn peer_state(s: &SourceData) -> PeerState {
    match s.state {
        SourceState::Selected => PeerState::Selected,
        // `+`: selectable and combined with the selected source.
        SourceState::Unselected => PeerState::Candidate,
        // `-`: selectable but not combined.
        SourceState::Selectable => PeerState::Outlier,
        SourceState::Falseticker => PeerState::Falseticker,
        // `?` with an empty reach register: nothing answered lately.
        SourceState::Nonselectable if s.reachability as u8 == 0 => PeerState::Unreachable,
        // `?` otherwise (noselect, too far, no valid samples yet), `~` too variable.
        SourceState::Nonselectable | SourceState::Jittery | SourceState::Unknown(_) => {
            PeerState::Rejected
        }
    }
}

/// The name of the reference: its address, the refid of a reference clock,
/// [`LOCAL_LABEL`] for chronyd's `local` clock, empty when there is none.
pub fn reference_name(t: &Tracking) -> String {
    match t.address.ip() {
        Some(ip) => ip.to_string(),
        None if t.ref_id == LOCAL_REFERENCE_ID => LOCAL_LABEL.to_owned(),
        None => refid_text(t.ref_id),
    }
}

/// The shared report and chrony's own families.
pub fn report(s: &Snapshot) -> (DaemonReport, Vec<Family>) {
    let mut extras = Vec::new();
    let mut peers = Vec::new();
    let sync = s.tracking.as_ref().map(|t| {
        extras.extend(tracking_extras(t));
        peers.extend(local_clock(t));
        sync_status(t)
    });
    let correction = s.tracking.map_or(0.0, |t| t.current_correction);
    let mut labels = PeerLabels::default();
    for p in &mut peers {
        p.address = labels.unique(std::mem::take(&mut p.address));
    }
    let (mut p, peer_extras) = sources(s, correction, &mut labels);
    peers.append(&mut p);
    extras.extend(peer_extras);
    if let Some((raw, counts)) = &s.server {
        extras.extend(server_families(raw, counts));
    }
    let report = DaemonReport {
        daemon: Daemon::Chronyd,
        sync,
        peers,
        server_requests_total: s.server.as_ref().and_then(|(_, c)| c[0]),
    };
    (report, crate::metrics::merge(extras))
}

fn sync_status(t: &Tracking) -> SyncStatus {
    SyncStatus {
        offset_seconds: Some(t.current_correction),
        stratum: Some(t.stratum.min(255) as u8),
        leap: Some(t.leap_status.min(255) as u8),
        root_delay_seconds: Some(t.root_delay),
        root_dispersion_seconds: Some(t.root_dispersion),
        frequency_ratio: Some(-t.freq_ppm * PPM),
        frequency_wander_ratio: Some(t.skew_ppm * PPM),
        jitter_seconds: Some(t.rms_offset),
        poll_interval_seconds: Some(t.last_update_interval),
        reference: reference_name(t),
    }
}

fn tracking_extras(t: &Tracking) -> [Family; 4] {
    [
        TRACKING_INFO
            .family()
            .with(labels![format!("{:08X}", t.ref_id), reference_name(t)], 1.0),
        TRACKING_LAST_OFFSET.single(-t.last_offset),
        TRACKING_RESIDUAL_FREQUENCY.single(-t.resid_freq_ppm * PPM),
        TRACKING_REFERENCE_TIME.single(t.ref_time.to_unix_seconds()),
    ]
}

/// chronyd's `local` clock is no source, but TRACKING names it as the
/// reference when chronyd serves from it: a peer of kind `local`, selected.
fn local_clock(t: &Tracking) -> Option<Peer> {
    (t.ref_id == LOCAL_REFERENCE_ID && t.address == Address::Unspec && t.leap_status != 3).then(
        || Peer {
            address: LOCAL_LABEL.to_owned(),
            kind: PeerKind::Local,
            refid: LOCAL_LABEL.to_owned(),
            state: PeerState::Selected,
            stratum: Some(t.stratum.min(255) as u8),
            offset_seconds: None,
            delay_seconds: None,
            jitter_seconds: None,
            dispersion_seconds: None,
            error_bound_seconds: None,
            reachability_ratio: None,
            poll_interval_seconds: None,
            leap: None,
            auth: None,
        },
    )
}

/// Peers from SOURCE_DATA, joined by address (never by index: a pool's
/// replacement shifts indices) with SOURCESTATS and NTP_DATA; and chrony's
/// per-source families.
///
/// chronyd measures sources against its own timescale, which runs ahead of
/// the system clock by the correction it has yet to apply (TRACKING's
/// `current_correction`; under `-x`, everything it ever decided). A peer's
/// offset from the *system clock*, the contract of `clock_peer_offset_seconds`,
/// is therefore the adjusted measurement moved by that correction:
/// `current_correction − latest_meas`.
fn sources(s: &Snapshot, correction: f64, labels: &mut PeerLabels) -> (Vec<Peer>, Vec<Family>) {
    let stats: HashMap<SourceKey, &SourceStats> = s
        .stats
        .iter()
        .filter_map(|st| stats_key(st).map(|k| (k, st)))
        .collect();
    let ntp: HashMap<IpAddr, &NtpData> = s
        .ntp_data
        .iter()
        .filter_map(|n| n.remote_addr.ip().map(|ip| (ip, n)))
        .collect();
    let auth: HashMap<IpAddr, &AuthData> = s.auth.iter().map(|(ip, a)| (*ip, a)).collect();
    let mut peers = Vec::new();
    let mut extras = Vec::new();
    for sd in &s.sources {
        let Some(key) = data_key(sd) else { continue };
        let (label, kind) = match key {
            SourceKey::RefId(id) => (refid_label(id), PeerKind::Refclock),
            SourceKey::Ip(ip) if sd.mode == SourceMode::Peer => (ip.to_string(), PeerKind::Peer),
            SourceKey::Ip(ip) => (ip.to_string(), PeerKind::Server),
        };
        let refclock_refid = (kind == PeerKind::Refclock).then(|| label.clone());
        let label = labels.unique(label);
        let st = stats.get(&key).copied();
        let (nd, ad) = match key {
            SourceKey::Ip(ip) => (ntp.get(&ip).copied(), auth.get(&ip).copied()),
            SourceKey::RefId(_) => (None, None),
        };
        let sampled = sd.since_sample != u32::MAX;
        let mut extra = |d: &'static Desc, v: Option<f64>| {
            if let Some(v) = v {
                extras.push(d.family().with(labels![label.clone()], v));
            }
        };
        extra(&PEER_ADJUSTED_OFFSET, sampled.then_some(-sd.latest_meas));
        extra(
            &PEER_MEASURED_OFFSET,
            sampled.then_some(-sd.orig_latest_meas),
        );
        extra(
            &PEER_LAST_SAMPLE_AGE,
            sampled.then_some(f64::from(sd.since_sample)),
        );
        if let Some(st) = st {
            extra(&PEER_SAMPLES, Some(f64::from(st.n_samples)));
        }
        // Without samples chronyd fills the statistics with placeholders.
        if let Some(st) = st.filter(|st| st.n_samples > 0) {
            extra(&PEER_SAMPLE_SPAN, Some(f64::from(st.span_seconds)));
            extra(&PEER_FREQUENCY, Some(-st.resid_freq_ppm * PPM));
            extra(&PEER_FREQUENCY_SKEW, Some(st.skew_ppm * PPM));
            extra(&PEER_ESTIMATED_OFFSET, Some(-st.est_offset));
            extra(&PEER_ESTIMATED_OFFSET_ERROR, Some(st.est_offset_err));
        }
        if let Some(n) = nd {
            extra(&PEER_ROOT_DELAY, Some(n.root_delay));
            extra(&PEER_ROOT_DISPERSION, Some(n.root_dispersion));
            extra(
                &PEER_ROOT_DISTANCE,
                Some(
                    f64::midpoint(n.root_delay, n.peer_delay)
                        + n.root_dispersion
                        + n.peer_dispersion,
                ),
            );
            extra(&PEER_LEAP, n.answered().then_some(f64::from(n.leap)));
        }
        for (d, v) in ad.map(auth_extras).unwrap_or_default() {
            extra(d, v);
        }
        let refid = match (refclock_refid, nd) {
            (Some(refid), _) => refid,
            (_, Some(n)) => crate::proto::ntp::RefId(n.ref_id.to_be_bytes()).text(n.stratum),
            _ => String::new(),
        };
        peers.push(Peer {
            address: label,
            kind,
            refid,
            state: peer_state(sd),
            stratum: Some(sd.stratum.min(255) as u8),
            offset_seconds: sampled.then_some(correction - sd.latest_meas),
            delay_seconds: nd.map(|n| n.peer_delay),
            jitter_seconds: st.filter(|st| st.n_samples > 0).map(|st| st.sd),
            dispersion_seconds: nd.map(|n| n.peer_dispersion),
            error_bound_seconds: sampled.then_some(sd.latest_meas_err),
            reachability_ratio: Some(reachability(sd.reachability as u8)),
            poll_interval_seconds: Some(2f64.powi(i32::from(sd.poll.clamp(-30, 30)))),
            // NTP_DATA's, over the unix socket only, once the source answered.
            leap: nd
                .filter(|n| n.answered())
                .map(|n| n.leap)
                .filter(|l| *l <= 3),
            auth: peer_auth(ad, nd, sd),
        });
    }
    (peers, extras)
}

/// chrony's own authentication series of a source: its key's for a source
/// it authenticates, the NTS state for an NTS one.
fn auth_extras(a: &AuthData) -> Vec<(&'static Desc, Option<f64>)> {
    let mut out = Vec::new();
    if a.mode != cmdmon::AuthMode::None {
        out.extend([
            (&PEER_AUTH_KEY_ID, Some(f64::from(a.key_id))),
            (&PEER_AUTH_KEY_TYPE, Some(f64::from(a.key_type))),
            (&PEER_AUTH_KEY_LENGTH, Some(f64::from(a.key_length))),
        ]);
    }
    if a.mode == cmdmon::AuthMode::Nts {
        out.extend([
            (&PEER_NTS_KE_ATTEMPTS, Some(f64::from(a.ke_attempts))),
            (&PEER_NTS_LAST_KE_AGE, a.last_ke_ago.map(f64::from)),
            (&PEER_NTS_COOKIES, Some(f64::from(a.cookies))),
            (&PEER_NTS_COOKIE_LENGTH, Some(f64::from(a.cookie_length))),
            (&PEER_NTS_NAK, Some(f64::from(u8::from(a.nak)))),
        ]);
    }
    out
}

/// A source's authentication: the mode from AUTH_DATA (or, from a chronyd
/// without it, NTP_DATA's flag, which before chrony 4.0 can only mean a
/// symmetric key). chronyd takes no unauthentic packet from a source it
/// authenticates (they fail its test 5 and count as unanswered polls), so
/// its packets are authenticated while some of the last eight polls were
/// answered, no NAK came back and, with NTS, chronyd holds cookies to ask
/// with.
fn peer_auth(ad: Option<&AuthData>, nd: Option<&NtpData>, sd: &SourceData) -> Option<PeerAuth> {
    let mode = match (ad, nd) {
        (Some(a), _) => match a.mode {
            cmdmon::AuthMode::None => AuthMode::None,
            cmdmon::AuthMode::Symmetric => AuthMode::SymmetricKey,
            cmdmon::AuthMode::Nts => AuthMode::Nts,
            cmdmon::AuthMode::Other(_) => return None,
        },
        (None, Some(n)) if n.answered() => {
            if n.flags & NtpData::AUTHENTICATED != 0 {
                AuthMode::SymmetricKey
            } else {
                AuthMode::None
            }
        }
        _ => return None,
    };
    let usable = match (mode, ad) {
        (AuthMode::None, _) => false,
        (AuthMode::Nts, Some(a)) => !a.nak && a.cookies > 0,
        (_, a) => !a.is_some_and(|a| a.nak),
    };
    Some(PeerAuth {
        mode,
        authenticated: usable && sd.reachability & 0xff != 0,
    })
}

/// Server counters (already monotonic) and levels.
fn server_families(raw: &ServerStats, c: &Counts) -> Vec<Family> {
    let mut out = Vec::new();
    let counters: [(&'static Desc, Option<u64>); 8] = [
        (&SERVER_NTP_DROPPED, c[3]),
        (&SERVER_COMMAND_RECEIVED, c[2]),
        (&SERVER_COMMAND_DROPPED, c[5]),
        (&SERVER_LOG_DROPPED, c[6]),
        (&SERVER_NTS_KE_ACCEPTED, c[1]),
        (&SERVER_NTS_KE_DROPPED, c[4]),
        (&SERVER_AUTHENTICATED, c[7]),
        (&SERVER_INTERLEAVED, c[8]),
    ];
    for (d, v) in counters {
        if let Some(v) = v {
            out.push(d.single(v as f64));
        }
    }
    let mut ts = SERVER_TIMESTAMPS.family();
    let kinds = [
        ("daemon", "rx"),
        ("daemon", "tx"),
        ("kernel", "rx"),
        ("kernel", "tx"),
        ("hardware", "rx"),
        ("hardware", "tx"),
    ];
    for ((source, direction), v) in kinds.into_iter().zip(&c[9..]) {
        if let Some(v) = v {
            ts.push(labels![source, direction], *v as f64);
        }
    }
    if !ts.samples.is_empty() {
        out.push(ts);
    }
    if let Some(v) = raw.ntp_timestamps {
        out.push(SERVER_TIMESTAMPS_HELD.single(v as f64));
    }
    if let Some(v) = raw.ntp_span_seconds {
        out.push(SERVER_TIMESTAMP_SPAN.single(v as f64));
    }
    out
}
