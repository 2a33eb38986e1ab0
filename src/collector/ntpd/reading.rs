//! ntpd's decoded answers turned into the shared model and ntpd's own
//! series. Pure: a [`Reading`] in, families out; tested with datagrams
//! captured from a real NTPsec (`tests/fixtures/mode6`).

use std::collections::HashSet;
use std::net::IpAddr;

use super::served::{Sample, SystemCounts};
use super::{
    CONTROL_REQUESTS, INFO, PEER_HOST_MODE, PEER_NTS_COOKIES, PEER_REACH_REGISTER,
    PEER_SELECTION_CODE,
};
use crate::metrics::{Family, labels};
use crate::model::{
    AuthMode, Daemon, DaemonReport, Peer, PeerAuth, PeerKind, PeerLabels, PeerState, SyncStatus,
};
use crate::proto::mode6::{
    self, AssocId, PeerCounters, PeerReading, PeerVariables, Selection, SystemStats, SystemStatus,
    SystemVariables,
};

/// Everything one query read, decoded; the input of [`Reading::report`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reading {
    /// The system status word, from the system variables' response.
    pub system_status: Option<SystemStatus>,
    /// The system variables.
    pub system: Option<SystemVariables>,
    /// The system statistics.
    pub stats: SystemStats,
    /// Every association that answered.
    pub peers: Vec<PeerReading>,
    /// Every association's packet counter, or `None` when one that still
    /// exists did not answer for it (then no sum of them is right).
    pub counters: Option<Vec<(AssocId, PeerCounters)>>,
    /// Requests that failed while others succeeded, as log text.
    pub problems: Vec<String>,
}

/// The shared vocabulary's state for an ntpd selection code. `reject` splits
/// in two: a peer whose reach register is empty is `unreachable`, one that
/// answers but failed a sanity check (bad stratum, distance, loop) `rejected`.
pub fn peer_state(selection: Selection, reachable: bool) -> PeerState {
    match selection {
        Selection::Reject if !reachable => PeerState::Unreachable,
        Selection::Reject => PeerState::Rejected,
        Selection::Falsetick => PeerState::Falseticker,
        Selection::Excess => PeerState::Excess,
        Selection::Outlier => PeerState::Outlier,
        Selection::Candidate => PeerState::Candidate,
        Selection::Backup => PeerState::Backup,
        Selection::SysPeer | Selection::PpsPeer => PeerState::Selected,
    }
}

/// Whether an address is a refclock's pseudo-address `127.127.t.u`.
fn is_refclock_address(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V4(a) if a.octets()[..2] == [127, 127])
}

/// One peer in the shared model with ntpd's own facts, or `None` for the
/// pool placeholder (refid `POOL`, source 0.0.0.0), which is not a source.
fn convert_peer(p: &PeerReading) -> Option<(Peer, NtpdPeerFacts)> {
    let v: &PeerVariables = &p.variables;
    let refid = v.refid.clone().unwrap_or_default();
    if refid == "POOL" || v.address.is_none_or(|a| a.is_unspecified()) {
        return None;
    }
    let address = v.address?;
    let refclock = is_refclock_address(address);
    let kind = if refid == "LOCL" {
        PeerKind::Local
    } else if refclock {
        PeerKind::Refclock
    } else {
        match v.host_mode {
            Some(1 | 2) => PeerKind::Peer,
            // A client association ntpd was not configured with was spawned
            // by a `pool` line (ntpq -c associations: conf=no).
            Some(3) if !p.status.configured() => PeerKind::Pool,
            _ => PeerKind::Server,
        }
    };
    let label = if (refclock || kind == PeerKind::Local) && !refid.is_empty() {
        refid.clone()
    } else if let Some(scope) = &v.scope {
        // Link-local peers on two interfaces share the address; the zone
        // tells them apart, as ntpq prints it.
        format!("{address}%{scope}")
    } else {
        address.to_string()
    };
    let reachable = v.reach.map_or(p.status.reachable(), |r| r.0 != 0);
    // ntpd keeps showing the last sample, or zeros before the first one;
    // neither is a measurement once nothing answers.
    let measured = |m: Option<mode6::Millis>| m.filter(|_| reachable).map(mode6::Millis::seconds);
    let peer = Peer {
        address: label,
        kind,
        refid,
        state: peer_state(p.status.selection(), reachable),
        stratum: v.stratum,
        offset_seconds: measured(v.offset),
        delay_seconds: measured(v.delay),
        jitter_seconds: measured(v.jitter),
        dispersion_seconds: v.dispersion.map(mode6::Millis::seconds),
        error_bound_seconds: v.root_distance_seconds().filter(|_| reachable),
        reachability_ratio: v.reach.map(mode6::Reach::ratio),
        poll_interval_seconds: v.poll().map(mode6::Log2Seconds::seconds),
        // ntpd starts a peer at 3 before it answers: only a reachable
        // peer's is what it announced.
        leap: v.leap.filter(|_| reachable),
        auth: auth(p, kind),
    };
    let facts = NtpdPeerFacts {
        reach: v.reach.map(|r| r.0),
        host_mode: v.host_mode,
        selection: p.status.selection(),
        nts_cookies: v
            .nts_cookies
            .filter(|_| peer.auth.is_some_and(|a| a.mode == AuthMode::Nts)),
    };
    Some((peer, facts))
}

/// A peer's authentication from its status word (RFC 9327 section 2.2:
/// `authenb` is set when the association has a key or, in NTPsec, uses
/// NTS; `auth` when its last packet was authentic) and its `keyid`: a key
/// enabled without a key id is NTPsec's NTS (a symmetric key has an id
/// from 1), an id above 65535 reference ntpd's Autokey. None for a
/// reference clock or the local clock, which NTP does not authenticate. An
/// NTS association without cookies (`ntscookies` 0, or −1 before or
/// without key establishment) cannot ask its server: not authenticated,
/// whatever its last packet was.
fn auth(p: &PeerReading, kind: PeerKind) -> Option<PeerAuth> {
    if matches!(kind, PeerKind::Refclock | PeerKind::Local) {
        return None;
    }
    let key = p.variables.key_id;
    let mode = match (p.status.auth_enabled(), key) {
        (true, Some(0)) => AuthMode::Nts,
        (_, Some(k)) if k > 65535 => AuthMode::Autokey,
        (true, _) | (false, Some(1..)) => AuthMode::SymmetricKey,
        (false, _) => AuthMode::None,
    };
    let cookies_ok = mode != AuthMode::Nts || p.variables.nts_cookies.is_some_and(|c| c > 0);
    Some(PeerAuth {
        mode,
        authenticated: mode != AuthMode::None && p.status.authentic() && cookies_ok,
    })
}

/// What ntpd says about a peer beyond the shared model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NtpdPeerFacts {
    reach: Option<u8>,
    host_mode: Option<u8>,
    selection: Selection,
    nts_cookies: Option<i32>,
}

impl Reading {
    fn peers(&self) -> Vec<(Peer, NtpdPeerFacts, AssocId)> {
        let mut labels = PeerLabels::default();
        let mut refids = HashSet::new();
        let mut out = Vec::new();
        for p in &self.peers {
            let Some((mut peer, facts)) = convert_peer(p) else {
                continue;
            };
            // Two refclocks with the same refid: the second is labelled by
            // its pseudo-address instead, as ntpq -pn shows it.
            if peer.kind == PeerKind::Refclock
                && !refids.insert(peer.address.clone())
                && let Some(a) = p.variables.address
            {
                peer.address = a.to_string();
            }
            peer.address = labels.unique(peer.address);
            out.push((peer, facts, p.assoc_id));
        }
        out
    }

    /// The counters [`served`] needs, when ntpd gave them all.
    pub fn served_sample(&self) -> Option<Sample> {
        let counters = self.counters.as_ref()?;
        let mut received = std::collections::BTreeMap::new();
        for (id, c) in counters {
            // A refclock counts its samples in `received` without receive().
            if !c.address.is_some_and(is_refclock_address) {
                received.insert(id.0, c.received?);
            }
        }
        Some(Sample {
            uptime: self.stats.uptime?,
            system: SystemCounts::from_stats(&self.stats)?,
            received,
        })
    }

    /// The shared model of what ntpd said, with `server_requests` (what
    /// [`served`] made of this reading) as `clock_server_requests_total`.
    pub fn report(&self, server_requests: Option<u64>) -> DaemonReport {
        let peers = self.peers();
        let sync = self.system.as_ref().map(|s| {
            let sys_peer = s
                .peer
                .filter(|id| *id != AssocId::SYSTEM)
                .and_then(|id| peers.iter().find(|(_, _, a)| *a == id))
                .map(|(p, _, _)| p.address.clone());
            SyncStatus {
                offset_seconds: s.offset.map(mode6::Millis::seconds),
                stratum: s.stratum,
                leap: s
                    .leap
                    .or_else(|| self.system_status.map(SystemStatus::leap)),
                root_delay_seconds: s.root_delay.map(mode6::Millis::seconds),
                root_dispersion_seconds: s.root_dispersion.map(mode6::Millis::seconds),
                // ntpd's `frequency` is its drift_comp, which it hands to the
                // kernel unchanged (ntv.freq = drift_comp · 2^16 · 1e6 in
                // ntp_loopfilter.c): the kernel's sign already.
                frequency_ratio: s.frequency.map(mode6::Ppm::ratio),
                frequency_wander_ratio: s.clk_wander.map(mode6::Ppm::ratio),
                jitter_seconds: s.sys_jitter.map(mode6::Millis::seconds),
                poll_interval_seconds: s.poll.map(mode6::Log2Seconds::seconds),
                reference: sys_peer.or_else(|| s.refid.clone()).unwrap_or_default(),
            }
        });
        DaemonReport {
            daemon: Daemon::Ntpd,
            sync,
            peers: peers.into_iter().map(|(p, _, _)| p).collect(),
            server_requests_total: server_requests,
        }
    }

    /// The shared families and ntpd's own (without `clock_daemon_up`).
    pub fn families(&self, server_requests: Option<u64>) -> Vec<Family> {
        let mut out = self.report(server_requests).families();
        let mut reach = PEER_REACH_REGISTER.family();
        let mut mode = PEER_HOST_MODE.family();
        let mut selection = PEER_SELECTION_CODE.family();
        let mut cookies = PEER_NTS_COOKIES.family();
        for (p, facts, _) in self.peers() {
            if let Some(c) = facts.nts_cookies {
                cookies.push(labels![p.address.clone()], f64::from(c));
            }
            if let Some(r) = facts.reach {
                reach.push(labels![p.address.clone()], f64::from(r));
            }
            if let Some(m) = facts.host_mode {
                mode.push(labels![p.address.clone()], f64::from(m));
            }
            selection.push(labels![p.address], f64::from(facts.selection.code()));
        }
        out.extend([reach, mode, selection]);
        if !cookies.samples.is_empty() {
            out.push(cookies);
        }
        if let Some(n) = self.stats.control_requests {
            out.push(CONTROL_REQUESTS.single(n as f64));
        }
        if let Some(v) = self.system.as_ref().and_then(|s| s.version.clone()) {
            out.push(INFO.family().with(labels![v], 1.0));
        }
        out
    }
}
