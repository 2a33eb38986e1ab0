//! The daemon-agnostic view of time synchronisation: the local daemon's own
//! status and its peers. The ntpd (mode 6) and chronyd (cmdmon) adapters both
//! fill these types, so dashboards and alerts work whichever daemon runs.
//!
//! Signs follow RFC 5905's θ everywhere (what `ntpq -p` prints): an offset is
//! *the other clock minus the local clock*. A peer's offset is positive when
//! the peer is ahead; the sync offset is positive when the local clock is
//! behind its reference. Frequencies follow the kernel's adjtimex sign.

use std::sync::Arc;

use crate::metrics::{Desc, Family, LabelValue, labels, metrics};

/// Which daemon a series comes from (the `daemon` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// ntpd (reference implementation or NTPsec), over mode 6.
    Ntpd,
    /// chronyd, over cmdmon.
    Chronyd,
    /// systemd-timesyncd, over D-Bus.
    Timesyncd,
}

impl Daemon {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Daemon::Ntpd => "ntpd",
            Daemon::Chronyd => "chronyd",
            Daemon::Timesyncd => "timesyncd",
        }
    }
}

/// A peer's selection state, one shared vocabulary for both daemons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// The daemon synchronises to it (ntpd `*`/`o`, chrony `*`).
    Selected,
    /// Survived selection and is combined (ntpd `+`, chrony `+`).
    Candidate,
    /// Survived selection, kept in reserve (ntpd `#`).
    Backup,
    /// Survived selection but not combined (ntpd `-`, chrony `-`).
    Outlier,
    /// Rejected by the intersection algorithm (ntpd `x`, chrony `x`).
    Falseticker,
    /// Beyond the number of survivors the daemon keeps (ntpd `.`).
    Excess,
    /// Not reachable, or no usable samples yet.
    Unreachable,
    /// Rejected for another reason (ntpd ` `, chrony `?` and `~`).
    Rejected,
}

impl PeerState {
    /// Every state, in the order the one-hot series lists them.
    pub const ALL: [PeerState; 8] = [
        PeerState::Selected,
        PeerState::Candidate,
        PeerState::Backup,
        PeerState::Outlier,
        PeerState::Falseticker,
        PeerState::Excess,
        PeerState::Unreachable,
        PeerState::Rejected,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            PeerState::Selected => "selected",
            PeerState::Candidate => "candidate",
            PeerState::Backup => "backup",
            PeerState::Outlier => "outlier",
            PeerState::Falseticker => "falseticker",
            PeerState::Excess => "excess",
            PeerState::Unreachable => "unreachable",
            PeerState::Rejected => "rejected",
        }
    }

    /// The state as one number (`clock_peer_state_code`): its place in
    /// [`Self::ALL`], from 1. Survivors of selection are 1 to 4.
    pub fn code(self) -> u8 {
        match self {
            PeerState::Selected => 1,
            PeerState::Candidate => 2,
            PeerState::Backup => 3,
            PeerState::Outlier => 4,
            PeerState::Falseticker => 5,
            PeerState::Excess => 6,
            PeerState::Unreachable => 7,
            PeerState::Rejected => 8,
        }
    }
}

/// What a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerKind {
    /// A remote server (client mode association).
    Server,
    /// A symmetric peer.
    Peer,
    /// A server found through a pool.
    Pool,
    /// A reference clock (GPS, PPS, PHC, SHM, …).
    Refclock,
    /// The undisciplined local clock (ntpd `.LOCL.`, chrony `local`).
    Local,
}

impl PeerKind {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            PeerKind::Server => "server",
            PeerKind::Peer => "peer",
            PeerKind::Pool => "pool",
            PeerKind::Refclock => "refclock",
            PeerKind::Local => "local",
        }
    }
}

/// How a source's packets are authenticated (`clock_peer_authentication_info`'s
/// `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Not at all.
    None,
    /// A symmetric key both sides hold (ntpd `key`, chrony `key`).
    SymmetricKey,
    /// ntpd's Autokey (reference ntpd only; a key id above 65535).
    Autokey,
    /// Network Time Security (RFC 8915).
    Nts,
}

impl AuthMode {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            AuthMode::None => "none",
            AuthMode::SymmetricKey => "symmetric_key",
            AuthMode::Autokey => "autokey",
            AuthMode::Nts => "nts",
        }
    }
}

/// A source's authentication as its daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAuth {
    /// How the daemon is configured to authenticate it.
    pub mode: AuthMode,
    /// Whether its packets are authenticated now: the daemon authenticates
    /// the source and its last replies were authentic (what each daemon's
    /// report allows to say: `docs/metrics.md`). Always false for
    /// [`AuthMode::None`].
    pub authenticated: bool,
}

/// The local daemon's view of its own synchronisation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncStatus {
    /// Offset of the reference from the local clock (θ), seconds.
    pub offset_seconds: Option<f64>,
    /// Stratum.
    pub stratum: Option<u8>,
    /// Leap indicator: 0 none, 1 insert, 2 delete, 3 unsynchronised.
    pub leap: Option<u8>,
    /// Root delay, seconds.
    pub root_delay_seconds: Option<f64>,
    /// Root dispersion, seconds.
    pub root_dispersion_seconds: Option<f64>,
    /// Frequency correction, kernel sign, ratio.
    pub frequency_ratio: Option<f64>,
    /// Frequency wander (ntpd `clk_wander`) or skew (chrony), ratio.
    pub frequency_wander_ratio: Option<f64>,
    /// System jitter (ntpd `sys_jitter`, chrony RMS offset, timesyncd jitter), seconds.
    pub jitter_seconds: Option<f64>,
    /// Polling or update interval, seconds.
    pub poll_interval_seconds: Option<f64>,
    /// The system peer: canonical address, or refid for a refclock or the local clock.
    pub reference: String,
}

/// One peer (source) of the daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// The `peer` label: canonical IP text, or the refid for refclocks and the local clock.
    pub address: String,
    /// What it is.
    pub kind: PeerKind,
    /// Its reference id as text (an IPv4 address, or `.GPS.`-style ASCII).
    pub refid: String,
    /// Selection state.
    pub state: PeerState,
    /// Stratum.
    pub stratum: Option<u8>,
    /// Peer clock minus local clock, seconds.
    pub offset_seconds: Option<f64>,
    /// Round-trip delay, seconds.
    pub delay_seconds: Option<f64>,
    /// Jitter, seconds.
    pub jitter_seconds: Option<f64>,
    /// Dispersion, seconds.
    pub dispersion_seconds: Option<f64>,
    /// Half-width of the interval the daemon trusts for the offset, seconds.
    pub error_bound_seconds: Option<f64>,
    /// Share of the last 8 polls answered (reach register bits set / 8).
    pub reachability_ratio: Option<f64>,
    /// Polling interval, seconds.
    pub poll_interval_seconds: Option<f64>,
    /// Leap indicator of its last packet (0 none, 1 insert, 2 delete, 3
    /// unsynchronised); `None` before it answered, or where the daemon
    /// does not say.
    pub leap: Option<u8>,
    /// Its authentication; `None` where the daemon does not say (chronyd
    /// over UDP).
    pub auth: Option<PeerAuth>,
}

/// Everything one daemon query produced.
#[derive(Debug, Clone, PartialEq)]
pub struct DaemonReport {
    /// Which daemon.
    pub daemon: Daemon,
    /// Its own status, if it answered the system query.
    pub sync: Option<SyncStatus>,
    /// Its peers.
    pub peers: Vec<Peer>,
    /// NTP requests it answered for clients, if it says.
    pub server_requests_total: Option<u64>,
}

metrics! {
    /// Every family the shared model emits.
    pub static METRICS = [
        DAEMON_UP: Gauge(
            "clock_daemon_up",
            ["daemon"],
            "1 when the time daemon answered this scrape, 0 when it did not."
        ),
        SYNC_OFFSET: Gauge(
            "clock_sync_offset_seconds",
            ["daemon"],
            "Offset of the daemon's reference from the local clock, in seconds, positive when the local clock is behind."
        ),
        SYNC_STRATUM: Gauge(
            "clock_sync_stratum",
            ["daemon"],
            "Stratum of the local clock as the daemon reports it."
        ),
        SYNC_LEAP: Gauge(
            "clock_sync_leap",
            ["daemon"],
            "Leap indicator of the daemon: 0 none, 1 insert second, 2 delete second, 3 unsynchronised."
        ),
        SYNC_ROOT_DELAY: Gauge(
            "clock_sync_root_delay_seconds",
            ["daemon"],
            "Round-trip delay to the primary reference, in seconds."
        ),
        SYNC_ROOT_DISPERSION: Gauge(
            "clock_sync_root_dispersion_seconds",
            ["daemon"],
            "Dispersion accumulated up to the primary reference, in seconds."
        ),
        SYNC_FREQUENCY: Gauge(
            "clock_sync_frequency_ratio",
            ["daemon"],
            "Frequency correction the daemon applies, as a ratio with the kernel's sign (positive speeds the clock up)."
        ),
        SYNC_WANDER: Gauge(
            "clock_sync_frequency_wander_ratio",
            ["daemon"],
            "The daemon's estimate of its frequency error (ntpd clk_wander, chrony skew), as a ratio."
        ),
        SYNC_JITTER: Gauge(
            "clock_sync_jitter_seconds",
            ["daemon"],
            "System jitter (ntpd sys_jitter, chrony RMS offset, timesyncd jitter), in seconds."
        ),
        SYNC_POLL: Gauge(
            "clock_sync_poll_interval_seconds",
            ["daemon"],
            "The daemon's polling or clock update interval, in seconds."
        ),
        SYNC_INFO: Gauge(
            "clock_sync_info",
            ["daemon", "reference"],
            "The daemon's system peer: canonical address, or refid for a reference clock."
        ),
        PEER_OFFSET: Gauge(
            "clock_peer_offset_seconds",
            ["daemon", "peer"],
            "Peer clock minus local clock, in seconds (positive when the peer is ahead)."
        ),
        PEER_DELAY: Gauge(
            "clock_peer_delay_seconds",
            ["daemon", "peer"],
            "Round-trip delay to the peer, in seconds."
        ),
        PEER_JITTER: Gauge(
            "clock_peer_jitter_seconds",
            ["daemon", "peer"],
            "Jitter of the peer's offset samples, in seconds."
        ),
        PEER_DISPERSION: Gauge(
            "clock_peer_dispersion_seconds",
            ["daemon", "peer"],
            "Dispersion of the peer, in seconds."
        ),
        PEER_ERROR_BOUND: Gauge(
            "clock_peer_error_bound_seconds",
            ["daemon", "peer"],
            "Half-width of the interval the daemon trusts for the peer's offset (ntpd root distance, chrony latest_meas_err, timesyncd the reply's root distance), in seconds."
        ),
        PEER_STRATUM: Gauge(
            "clock_peer_stratum",
            ["daemon", "peer"],
            "Stratum of the peer."
        ),
        PEER_REACH: Gauge(
            "clock_peer_reachability_ratio",
            ["daemon", "peer"],
            "Share of the last eight polls of the peer that were answered."
        ),
        PEER_POLL: Gauge(
            "clock_peer_poll_interval_seconds",
            ["daemon", "peer"],
            "Interval between polls of the peer, in seconds."
        ),
        PEER_LEAP: Gauge(
            "clock_peer_leap",
            ["daemon", "peer"],
            "Leap indicator of the peer's last packet: 0 none, 1 a second to be inserted, 2 deleted, 3 unsynchronised."
        ),
        PEER_AUTHENTICATED: Gauge(
            "clock_peer_authenticated",
            ["daemon", "peer"],
            "1 when the daemon authenticates the peer's packets and its last replies were authentic, 0 when they were not or the peer is not configured for authentication."
        ),
        PEER_AUTH_INFO: Gauge(
            "clock_peer_authentication_info",
            ["daemon", "peer", "mode"],
            "How the daemon is configured to authenticate the peer: none, symmetric_key, autokey or nts."
        ),
        PEER_STATE: Gauge(
            "clock_peer_state",
            ["daemon", "peer", "state"],
            "Selection state of the peer, 1 for the current state."
        ),
        PEER_STATE_CODE: Gauge(
            "clock_peer_state_code",
            ["daemon", "peer"],
            "Selection state of the peer as one number: 1 selected, 2 candidate, 3 backup, 4 outlier (1-4 survived selection), 5 falseticker, 6 excess, 7 unreachable, 8 rejected."
        ),
        PEER_INFO: Gauge(
            "clock_peer_info",
            ["daemon", "peer", "kind", "refid"],
            "What the peer is (server, peer, pool, refclock, local) and its reference id."
        ),
        USABLE_SOURCES: Gauge(
            "clock_sync_usable_sources",
            ["daemon"],
            "Sources that survived the daemon's selection (selected, candidate, backup, outlier), the local clock not counted; 0 when none did."
        ),
        WORST_CASE_ERROR: Gauge(
            "clock_sync_worst_case_error_seconds",
            ["daemon"],
            "Worst-case error of the local clock as the daemon knows it (the absolute offset plus root dispersion plus half the root delay), in seconds; absent while the daemon is unsynchronised or has no usable source."
        ),
        SOURCE_INTERVAL_GAP: Gauge(
            "clock_sync_source_interval_gap_seconds",
            ["daemon"],
            "Largest lower bound minus smallest upper bound of the reachable sources' intervals (offset ± error bound), in seconds: positive when they have no point in common."
        ),
        SOURCE_OFFSET_SPREAD: Gauge(
            "clock_sync_source_offset_spread_seconds",
            ["daemon"],
            "Largest minus smallest offset of the reachable sources, in seconds."
        ),
        OUTLIER_SOURCE_OFFSET: Gauge(
            "clock_sync_outlier_source_offset_seconds",
            ["daemon", "peer"],
            "Offset of the reachable source whose interval (offset ± error bound) lies farthest from the local clock, named by peer, in seconds (positive when it is ahead)."
        ),
        SERVER_REQUESTS: Counter(
            "clock_server_requests",
            ["daemon"],
            "NTP requests from clients that this host's daemon received as a server."
        ),
    ];
}

/// What one daemon's report says about its sources as a whole: the
/// judgements the alerts and `diagnose` make per host, computed here once
/// instead of by every Prometheus rule evaluation over every peer series
/// (docs/performance.md, "The rules at fleet scale").
///
/// The sources compared are the *reachable* ones (some of the last eight
/// polls answered) that have an offset and an error bound, the local clock
/// excluded: each one's true offset lies in offset ± error bound, as the
/// daemon itself trusts it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceFacts {
    /// Sources that survived selection (state codes 1 to 4), the local clock
    /// not counted.
    pub usable: usize,
    /// |offset| + root dispersion + root delay / 2 of the local clock, while
    /// the daemon is synchronised (leap not 3) and has a usable source:
    /// otherwise its offset is a stale estimate and chronyd's root delay and
    /// dispersion are placeholders, so the error is unknown, not large.
    pub worst_case_error_seconds: Option<f64>,
    /// Marzullo in one number: the largest lower bound minus the smallest
    /// upper bound. Positive: the sources cannot all be right.
    pub interval_gap_seconds: Option<f64>,
    /// Largest minus smallest offset, whatever the bounds.
    pub offset_spread_seconds: Option<f64>,
    /// The source whose interval lies farthest from the local clock (0 when
    /// it contains it), ties broken by the larger |offset| and then by the
    /// daemon's own order: its index in the report's peers, and its offset.
    pub outlier: Option<(usize, f64)>,
}

impl SourceFacts {
    /// The facts of one report.
    pub fn of(report: &DaemonReport) -> SourceFacts {
        let usable = report
            .peers
            .iter()
            .filter(|p| p.kind != PeerKind::Local && p.state.code() <= 4)
            .count();
        let worst_case_error_seconds = report.sync.as_ref().and_then(|s| {
            if s.leap == Some(3) || s.leap.is_none() || usable == 0 {
                return None;
            }
            Some(s.offset_seconds?.abs() + s.root_dispersion_seconds? + s.root_delay_seconds? / 2.0)
        });
        // (index, offset, error bound) of every source compared.
        let compared: Vec<(usize, f64, f64)> = report
            .peers
            .iter()
            .enumerate()
            .filter(|(_, p)| p.kind != PeerKind::Local)
            .filter(|(_, p)| p.reachability_ratio.is_some_and(|r| r > 0.0))
            .filter_map(|(i, p)| Some((i, p.offset_seconds?, p.error_bound_seconds?)))
            .filter(|(_, o, b)| o.is_finite() && b.is_finite())
            .collect();
        let max_lower = compared.iter().map(|&(_, o, b)| o - b).reduce(f64::max);
        let min_upper = compared.iter().map(|&(_, o, b)| o + b).reduce(f64::min);
        let max_offset = compared.iter().map(|&(_, o, _)| o).reduce(f64::max);
        let min_offset = compared.iter().map(|&(_, o, _)| o).reduce(f64::min);
        let distance = |o: f64, b: f64| (o.abs() - b).max(0.0);
        let mut outlier: Option<(usize, f64, f64)> = None;
        for &(i, o, b) in &compared {
            let d = distance(o, b);
            let farther = match outlier {
                None => true,
                Some((_, oo, od)) => d > od || (d == od && o.abs() > oo.abs()),
            };
            if farther {
                outlier = Some((i, o, d));
            }
        }
        SourceFacts {
            usable,
            worst_case_error_seconds,
            interval_gap_seconds: max_lower.zip(min_upper).map(|(l, u)| l - u),
            offset_spread_seconds: max_offset.zip(min_offset).map(|(h, l)| h - l),
            outlier: outlier.map(|(i, o, _)| (i, o)),
        }
    }
}

/// `clock_daemon_up` for one daemon.
pub fn up_family(daemon: Daemon, up: bool) -> Family {
    DAEMON_UP
        .family()
        .with(labels![daemon.label()], f64::from(u8::from(up)))
}

/// Pushes an optional value.
fn push_opt(fams: &mut Vec<Family>, desc: &'static Desc, labels: &[LabelValue], v: Option<f64>) {
    if let Some(v) = v {
        fams.push(desc.family().with(labels.iter().cloned().collect(), v));
    }
}

impl DaemonReport {
    /// The shared families of this report (without `clock_daemon_up`, which
    /// the collector adds since it also knows about failed queries).
    pub fn families(&self) -> Vec<Family> {
        let d = self.daemon.label();
        let mut out = Vec::new();
        let l = [LabelValue::from(d)];
        if let Some(s) = &self.sync {
            push_opt(&mut out, &SYNC_OFFSET, &l, s.offset_seconds);
            push_opt(&mut out, &SYNC_STRATUM, &l, s.stratum.map(f64::from));
            push_opt(&mut out, &SYNC_LEAP, &l, s.leap.map(f64::from));
            push_opt(&mut out, &SYNC_ROOT_DELAY, &l, s.root_delay_seconds);
            push_opt(
                &mut out,
                &SYNC_ROOT_DISPERSION,
                &l,
                s.root_dispersion_seconds,
            );
            push_opt(&mut out, &SYNC_FREQUENCY, &l, s.frequency_ratio);
            push_opt(&mut out, &SYNC_WANDER, &l, s.frequency_wander_ratio);
            push_opt(&mut out, &SYNC_JITTER, &l, s.jitter_seconds);
            push_opt(&mut out, &SYNC_POLL, &l, s.poll_interval_seconds);
            out.push(
                SYNC_INFO
                    .family()
                    .with(labels![d, s.reference.clone()], 1.0),
            );
        }
        for p in &self.peers {
            // One allocation per peer, shared by its dozen families.
            let address: Arc<str> = Arc::from(p.address.as_str());
            let l = labels![d, &address];
            push_opt(&mut out, &PEER_OFFSET, &l, p.offset_seconds);
            push_opt(&mut out, &PEER_DELAY, &l, p.delay_seconds);
            push_opt(&mut out, &PEER_JITTER, &l, p.jitter_seconds);
            push_opt(&mut out, &PEER_DISPERSION, &l, p.dispersion_seconds);
            push_opt(&mut out, &PEER_ERROR_BOUND, &l, p.error_bound_seconds);
            push_opt(&mut out, &PEER_STRATUM, &l, p.stratum.map(f64::from));
            push_opt(&mut out, &PEER_REACH, &l, p.reachability_ratio);
            push_opt(&mut out, &PEER_POLL, &l, p.poll_interval_seconds);
            push_opt(&mut out, &PEER_LEAP, &l, p.leap.map(f64::from));
            if let Some(a) = p.auth {
                out.push(
                    PEER_AUTHENTICATED
                        .family()
                        .with(l.clone(), f64::from(u8::from(a.authenticated))),
                );
                out.push(
                    PEER_AUTH_INFO
                        .family()
                        .with(labels![d, &address, a.mode.label()], 1.0),
                );
            }
            let mut state = PEER_STATE.family();
            for s in PeerState::ALL {
                state.push(
                    labels![d, &address, s.label()],
                    f64::from(u8::from(s == p.state)),
                );
            }
            out.push(state);
            out.push(
                PEER_STATE_CODE
                    .family()
                    .with(l.clone(), f64::from(p.state.code())),
            );
            out.push(
                PEER_INFO
                    .family()
                    .with(labels![d, &address, p.kind.label(), p.refid.clone()], 1.0),
            );
        }
        let facts = SourceFacts::of(self);
        push_opt(&mut out, &USABLE_SOURCES, &l, Some(facts.usable as f64));
        push_opt(
            &mut out,
            &WORST_CASE_ERROR,
            &l,
            facts.worst_case_error_seconds,
        );
        push_opt(
            &mut out,
            &SOURCE_INTERVAL_GAP,
            &l,
            facts.interval_gap_seconds,
        );
        push_opt(
            &mut out,
            &SOURCE_OFFSET_SPREAD,
            &l,
            facts.offset_spread_seconds,
        );
        if let Some((i, offset)) = facts.outlier {
            out.push(
                OUTLIER_SOURCE_OFFSET
                    .family()
                    .with(labels![d, self.peers[i].address.clone()], offset),
            );
        }
        if let Some(n) = self.server_requests_total {
            out.push(SERVER_REQUESTS.family().with(labels![d], n as f64));
        }
        crate::metrics::merge(out)
    }
}

/// The most peers (associations, sources) a daemon collector reads and
/// publishes. A daemon's own configuration rarely names more than a dozen;
/// a daemon that reports thousands (symmetric peers by the hundred, a bug)
/// would make each scrape cost memory in proportion: 3,744 ntpd associations
/// took 70 MB for a 5 MB body. Beyond this, the first ones in the daemon's
/// own order are read, which keeps the series the same from scrape to
/// scrape, and the collector fails, saying how many it skipped.
pub const MAX_PEERS: usize = 256;

/// The `peer` labels of one daemon's report, made unique: the first peer
/// with a label keeps it, and a later one with the same label gets `#2`,
/// `#3`, … (as chronyc names unresolved sources `ID#…`). Labels can repeat:
/// two chrony sources on one address at different ports (cmdmon does not
/// say the port), a refclock and the local clock both named `LOCL`, two
/// ntpd refclocks with one refid. Without this, each of their series would
/// appear twice, and Prometheus drops the second silently.
#[derive(Debug, Default)]
pub struct PeerLabels {
    taken: std::collections::HashSet<String>,
    /// The next number to try for a label already taken.
    next: std::collections::HashMap<String, usize>,
}

impl PeerLabels {
    /// `label`, or the first of `label#2`, `label#3`, … not taken yet.
    pub fn unique(&mut self, label: String) -> String {
        if self.taken.insert(label.clone()) {
            return label;
        }
        let n = self.next.entry(label.clone()).or_insert(2);
        loop {
            let candidate = format!("{label}#{n}");
            *n += 1;
            if self.taken.insert(candidate.clone()) {
                return candidate;
            }
        }
    }
}

/// The share of the last eight polls answered, from an 8-bit reach register.
pub fn reachability(reach: u8) -> f64 {
    f64::from(reach.count_ones()) / 8.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::find;

    fn peer(addr: &str, state: PeerState) -> Peer {
        Peer {
            address: addr.into(),
            kind: PeerKind::Server,
            refid: "198.51.100.7".into(),
            state,
            stratum: Some(2),
            offset_seconds: Some(11.4876),
            delay_seconds: Some(0.000_673),
            jitter_seconds: Some(9.868_84),
            dispersion_seconds: None,
            error_bound_seconds: Some(10.0),
            reachability_ratio: Some(reachability(0o377)),
            poll_interval_seconds: Some(512.0),
            leap: Some(1),
            auth: None,
        }
    }

    #[test]
    fn report_families_are_one_hot_and_skip_missing_values() {
        let r = DaemonReport {
            daemon: Daemon::Ntpd,
            sync: Some(SyncStatus {
                offset_seconds: Some(-0.087),
                leap: Some(0),
                reference: "192.0.2.1".into(),
                ..SyncStatus::default()
            }),
            peers: vec![
                peer("192.0.2.1", PeerState::Selected),
                Peer {
                    auth: Some(PeerAuth {
                        mode: AuthMode::Nts,
                        authenticated: false,
                    }),
                    ..peer("192.0.2.2", PeerState::Falseticker)
                },
            ],
            server_requests_total: Some(12),
        };
        let f = r.families();
        // Authentication only where the daemon said; its mode as a label.
        let authenticated = find(&f, &PEER_AUTHENTICATED).expect("authenticated");
        assert_eq!(authenticated.samples.len(), 1);
        assert_eq!(authenticated.value(&["ntpd", "192.0.2.2"]), Some(0.0));
        let info = find(&f, &PEER_AUTH_INFO).expect("auth info");
        assert_eq!(info.samples.len(), 1);
        assert_eq!(info.value(&["ntpd", "192.0.2.2", "nts"]), Some(1.0));
        assert_eq!(
            find(&f, &SYNC_OFFSET).and_then(|f| f.value(&["ntpd"])),
            Some(-0.087)
        );
        assert!(find(&f, &SYNC_STRATUM).is_none());
        let states = find(&f, &PEER_STATE).expect("states");
        assert_eq!(states.samples.len(), 16);
        assert_eq!(
            states.value(&["ntpd", "192.0.2.2", "falseticker"]),
            Some(1.0)
        );
        assert_eq!(states.value(&["ntpd", "192.0.2.2", "selected"]), Some(0.0));
        assert_eq!(states.value(&["ntpd", "192.0.2.1", "selected"]), Some(1.0));
        let codes = find(&f, &PEER_STATE_CODE).expect("state codes");
        assert_eq!(codes.value(&["ntpd", "192.0.2.1"]), Some(1.0));
        assert_eq!(codes.value(&["ntpd", "192.0.2.2"]), Some(5.0));
        assert_eq!(
            find(&f, &PEER_REACH).and_then(|f| f.value(&["ntpd", "192.0.2.1"])),
            Some(1.0)
        );
        assert!(find(&f, &PEER_DISPERSION).is_none());
        assert_eq!(
            find(&f, &PEER_LEAP).and_then(|f| f.value(&["ntpd", "192.0.2.1"])),
            Some(1.0)
        );
        assert_eq!(
            find(&f, &SERVER_REQUESTS).and_then(|f| f.value(&["ntpd"])),
            Some(12.0)
        );
        // Merged: one family per descriptor.
        assert_eq!(
            f.iter()
                .filter(|x| std::ptr::eq(x.desc, &PEER_OFFSET))
                .count(),
            1
        );
    }

    #[test]
    fn state_codes_follow_the_one_hot_order_and_survivors_come_first() {
        let codes: Vec<u8> = PeerState::ALL.iter().map(|s| s.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7, 8]);
        // The rules count `clock_peer_state_code <= 4` as usable sources.
        let survivors: Vec<&str> = PeerState::ALL
            .iter()
            .filter(|s| s.code() <= 4)
            .map(|s| s.label())
            .collect();
        assert_eq!(survivors, ["selected", "candidate", "backup", "outlier"]);
    }

    /// A reachable server with an offset and an error bound.
    fn source(addr: &str, state: PeerState, offset: f64, bound: f64) -> Peer {
        Peer {
            offset_seconds: Some(offset),
            error_bound_seconds: Some(bound),
            ..peer(addr, state)
        }
    }

    fn report(sync: Option<SyncStatus>, peers: Vec<Peer>) -> DaemonReport {
        DaemonReport {
            daemon: Daemon::Chronyd,
            sync,
            peers,
            server_requests_total: None,
        }
    }

    fn synced(offset: f64, root_delay: f64, root_dispersion: f64) -> SyncStatus {
        SyncStatus {
            offset_seconds: Some(offset),
            leap: Some(0),
            root_delay_seconds: Some(root_delay),
            root_dispersion_seconds: Some(root_dispersion),
            reference: "192.0.2.1".into(),
            ..SyncStatus::default()
        }
    }

    #[test]
    fn source_facts_of_three_honest_servers_and_one_skewed() {
        // The seed: three servers within a millisecond, one 11.5 s ahead
        // and rejected; an unreachable one, one without a bound yet, and the
        // local clock, none of which is compared.
        let mut unreachable = source("192.0.2.5", PeerState::Unreachable, 40.0, 0.1);
        unreachable.reachability_ratio = Some(0.0);
        let mut unbounded = source("192.0.2.6", PeerState::Rejected, -30.0, 0.1);
        unbounded.error_bound_seconds = None;
        let mut local = source("LOCL", PeerState::Outlier, 50.0, 0.0);
        local.kind = PeerKind::Local;
        let r = report(
            Some(synced(-0.000_2, 0.010, 0.003)),
            vec![
                source("192.0.2.1", PeerState::Selected, 0.000_4, 0.002),
                source("192.0.2.2", PeerState::Candidate, -0.000_6, 0.003),
                source("192.0.2.3", PeerState::Outlier, 0.001_0, 0.001),
                source("192.0.2.4", PeerState::Falseticker, 11.5, 0.25),
                unreachable,
                unbounded,
                local,
            ],
        );
        let f = SourceFacts::of(&r);
        assert_eq!(f.usable, 3, "the local clock is no source");
        let wce = f
            .worst_case_error_seconds
            .expect("synchronised, with sources");
        assert!((wce - (0.000_2 + 0.003 + 0.005)).abs() < 1e-12, "{wce}");
        // Largest lower bound 11.5 - 0.25 (the skewed one), smallest upper
        // bound 0.001 + 0.001 (the outlier).
        let gap = f.interval_gap_seconds.expect("gap");
        assert!((gap - (11.25 - 0.002)).abs() < 1e-12, "{gap}");
        let spread = f.offset_spread_seconds.expect("spread");
        assert!((spread - (11.5 + 0.000_6)).abs() < 1e-12, "{spread}");
        assert_eq!(f.outlier, Some((3, 11.5)));

        let fams = r.families();
        let one = |d: &'static Desc| find(&fams, d).and_then(|f| f.value(&["chronyd"]));
        assert_eq!(one(&USABLE_SOURCES), Some(3.0));
        assert_eq!(one(&WORST_CASE_ERROR), Some(wce));
        assert_eq!(one(&SOURCE_INTERVAL_GAP), Some(gap));
        assert_eq!(one(&SOURCE_OFFSET_SPREAD), Some(spread));
        let outlier = find(&fams, &OUTLIER_SOURCE_OFFSET).expect("outlier");
        assert_eq!(outlier.samples.len(), 1);
        assert_eq!(outlier.value(&["chronyd", "192.0.2.4"]), Some(11.5));
    }

    #[test]
    fn source_facts_leave_unknowns_absent() {
        // Unsynchronised: the error is unknown, not large.
        let peers = vec![source("192.0.2.1", PeerState::Selected, 0.1, 0.01)];
        let mut s = synced(0.1, 0.01, 0.01);
        s.leap = Some(3);
        let f = SourceFacts::of(&report(Some(s), peers.clone()));
        assert_eq!(f.worst_case_error_seconds, None);
        assert_eq!(f.usable, 1);
        // No leap reported, or no root delay: no bound either.
        let mut s = synced(0.1, 0.01, 0.01);
        s.leap = None;
        assert_eq!(
            SourceFacts::of(&report(Some(s), peers.clone())).worst_case_error_seconds,
            None
        );
        let mut s = synced(0.1, 0.01, 0.01);
        s.root_delay_seconds = None;
        assert_eq!(
            SourceFacts::of(&report(Some(s), peers)).worst_case_error_seconds,
            None
        );
        // Synchronised but no survivor (two that disagree): unknown, and 0
        // usable, which is what ClockNoUsableSource reads.
        let r = report(
            Some(synced(0.1, 0.01, 0.01)),
            vec![
                source("192.0.2.1", PeerState::Falseticker, 0.5, 0.01),
                source("192.0.2.2", PeerState::Falseticker, -0.5, 0.01),
            ],
        );
        let f = SourceFacts::of(&r);
        assert_eq!((f.usable, f.worst_case_error_seconds), (0, None));
        assert_eq!(
            find(&r.families(), &USABLE_SOURCES).and_then(|f| f.value(&["chronyd"])),
            Some(0.0),
            "0, not absent, while the daemon answers"
        );
        // Nothing to compare: no gap, spread or outlier, and no series.
        let mut silent = source("192.0.2.1", PeerState::Unreachable, 0.0, 1.0);
        silent.reachability_ratio = None;
        let mut nan = source("192.0.2.2", PeerState::Candidate, f64::NAN, 0.1);
        nan.kind = PeerKind::Pool;
        let inf = source("192.0.2.3", PeerState::Candidate, 0.1, f64::INFINITY);
        let r = report(None, vec![silent, nan, inf]);
        let f = SourceFacts::of(&r);
        assert_eq!(
            (
                f.usable,
                f.interval_gap_seconds,
                f.offset_spread_seconds,
                f.outlier
            ),
            (2, None, None, None)
        );
        let fams = r.families();
        for d in [
            &WORST_CASE_ERROR,
            &SOURCE_INTERVAL_GAP,
            &SOURCE_OFFSET_SPREAD,
            &OUTLIER_SOURCE_OFFSET,
        ] {
            assert!(find(&fams, d).is_none(), "{}", d.name);
        }
    }

    #[test]
    fn the_outlier_is_the_farthest_interval_then_the_larger_offset() {
        // Every interval contains the local clock: the larger |offset| wins,
        // whichever its sign.
        let r = report(
            None,
            vec![
                source("192.0.2.1", PeerState::Selected, 0.05, 0.1),
                source("192.0.2.2", PeerState::Candidate, -0.08, 0.1),
                source("192.0.2.3", PeerState::Candidate, 0.02, 0.1),
            ],
        );
        assert_eq!(SourceFacts::of(&r).outlier, Some((1, -0.08)));
        // A tight interval 0.1 away beats a loose one 0.3 away that still
        // contains the local clock.
        let r = report(
            None,
            vec![
                source("192.0.2.1", PeerState::Selected, 0.3, 0.5),
                source("192.0.2.2", PeerState::Candidate, -0.1, 0.001),
            ],
        );
        assert_eq!(SourceFacts::of(&r).outlier, Some((1, -0.1)));
        // One source: its own interval, gap -2 × bound.
        let r = report(
            None,
            vec![source("192.0.2.1", PeerState::Selected, 0.3, 0.5)],
        );
        let f = SourceFacts::of(&r);
        assert_eq!(f.interval_gap_seconds, Some(-1.0));
        assert_eq!(f.offset_spread_seconds, Some(0.0));
    }

    proptest::proptest! {
        #[test]
        fn source_facts_hold_for_any_peers(
            peers in proptest::collection::vec(
                (0u8..8, proptest::option::of(proptest::num::f64::ANY),
                 proptest::option::of(proptest::num::f64::ANY),
                 proptest::option::of(0.0f64..=1.0), proptest::bool::ANY),
                0..12,
            )
        ) {
            let peers: Vec<Peer> = peers
                .into_iter()
                .enumerate()
                .map(|(i, (state, offset, bound, reach, local))| Peer {
                    kind: if local { PeerKind::Local } else { PeerKind::Server },
                    state: PeerState::ALL[usize::from(state)],
                    offset_seconds: offset,
                    error_bound_seconds: bound,
                    reachability_ratio: reach,
                    ..peer(&format!("192.0.2.{i}"), PeerState::Selected)
                })
                .collect();
            let r = report(Some(synced(0.0, 0.0, 0.0)), peers);
            let f = SourceFacts::of(&r);
            proptest::prop_assert!(f.usable <= r.peers.len());
            if let Some(s) = f.offset_spread_seconds {
                proptest::prop_assert!(s >= 0.0 || s.is_nan());
            }
            if let Some((i, o)) = f.outlier {
                proptest::prop_assert!(r.peers[i].kind != PeerKind::Local);
                proptest::prop_assert_eq!(r.peers[i].offset_seconds, Some(o));
            }
            // Encoding never panics either.
            let _ = r.families();
        }
    }

    #[test]
    fn repeated_peer_labels_are_numbered() {
        let mut l = PeerLabels::default();
        assert_eq!(l.unique("192.0.2.1".into()), "192.0.2.1");
        assert_eq!(l.unique("LOCL".into()), "LOCL");
        assert_eq!(l.unique("192.0.2.1".into()), "192.0.2.1#2");
        assert_eq!(l.unique("192.0.2.1".into()), "192.0.2.1#3");
        // A label that already looks numbered is not taken twice either.
        assert_eq!(l.unique("LOCL#2".into()), "LOCL#2");
        assert_eq!(l.unique("LOCL".into()), "LOCL#3");
    }

    #[test]
    fn reachability_counts_bits() {
        assert_eq!(reachability(0), 0.0);
        assert_eq!(reachability(0o1), 0.125);
        assert_eq!(reachability(0o17), 0.5);
        assert_eq!(reachability(0o377), 1.0);
    }
}
