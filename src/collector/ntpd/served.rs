//! `clock_server_requests_total{daemon="ntpd"}`: the NTP requests from
//! clients that ntpd answered, which no single ntpd counter holds.
//!
//! ntpd's `ss_received` counts every packet it receives: the replies of its
//! own servers, mode-6 queries (this exporter's included) and client
//! requests, so every ntpd would look like a time server. What is left once
//! the other two are taken away (see [`SystemStats`] for what each counter
//! counts, from `receive()` in `ntpd/ntp_proto.c`):
//!
//! - NTPsec: `ss_processed_r − (ss_numctlreq − 1) − Σ received`. The
//!   statistics request itself counts in `ss_numctlreq` but not yet in
//!   `ss_processed_r` (incremented after `process_control()` returns), hence
//!   the 1. What remains are the client (mode 3) and symmetric active (mode 1)
//!   requests `fast_xmit()` answered, with time or a RATE kiss-o'-death;
//!   requests dropped by a restriction or a rate limit are not answered and
//!   not counted.
//! - ntpd classic 4.2.8 has neither counter: `ss_thisver + ss_oldver −
//!   ss_declined − ss_badauth − (ss_limited − ss_kodsent) − Σ received`.
//!   Malformed or unauthenticated packets refused after the version check
//!   still count there (as answered requests), and ntpd classic is not in the
//!   lab: this is reasoned from its source only.
//!
//! Σ received is the per-association `received` (`ntpq -c "pstats ID"`) of
//! every association except refclocks, whose samples count there without
//! passing `receive()`.
//!
//! **Between scrapes.** The statistics are read in the first round trip and
//! the associations' counters in the second, so a reply arriving in between
//! counts in Σ received but not yet in the statistics: the estimate can fall
//! short by a packet for one scrape, never exceed. An association ntpd drops
//! (a pool server replaced) takes its `received` with it, so Σ received
//! falls. Both are absorbed by working on differences: each scrape adds the
//! growth of the system counters minus the growth of every association's
//! `received` (a new association's whole count, one that went down counted
//! from 0 again), and the published counter is the running sum's highest
//! value. It never goes down while ntpd runs. Replies an association
//! received between the last scrape and its removal are lost and count as
//! client requests (a few packets per replaced server).
//!
//! **Restarts.** ntpd restarted when `ss_uptime` went down, or its kind
//! changed (ntpd classic replaced by NTPsec): the counter then starts again
//! from ntpd's own counts, as the chrony collector does. The first reading
//! also starts there; it can include the replies of associations ntpd had
//! already dropped before the exporter started. System counters that went
//! down without a restart (ntpd classic's `reset`, or a 32-bit `u_long`
//! wrapping) start a new baseline, the published value unchanged.

use std::collections::BTreeMap;

use crate::proto::mode6::SystemStats;

/// The system counters one way of counting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemCounts {
    /// NTPsec's lifetime counters.
    Ntpsec {
        /// `ss_processed_r`.
        processed: u64,
        /// `ss_numctlreq`, read in the same request.
        control_requests: u64,
    },
    /// ntpd classic's counters.
    Classic {
        /// `ss_thisver`.
        this_version: u64,
        /// `ss_oldver`.
        old_version: u64,
        /// `ss_declined`.
        declined: u64,
        /// `ss_badauth`.
        bad_auth: u64,
        /// `ss_limited`.
        limited: u64,
        /// `ss_kodsent`.
        kod_sent: u64,
    },
}

impl SystemCounts {
    /// The counters ntpd reported: NTPsec's when it has them, else ntpd
    /// classic's, else `None`.
    pub fn from_stats(s: &SystemStats) -> Option<SystemCounts> {
        if let (Some(processed), Some(control_requests)) = (s.processed_total, s.control_requests) {
            return Some(SystemCounts::Ntpsec {
                processed,
                control_requests,
            });
        }
        Some(SystemCounts::Classic {
            this_version: s.this_version?,
            old_version: s.old_version?,
            declined: s.declined?,
            bad_auth: s.bad_auth?,
            limited: s.limited?,
            kod_sent: s.kod_sent?,
        })
    }

    /// The counters, each with the sign it takes in the sum, in a fixed
    /// order for each kind; and the constant term.
    fn terms(self) -> (Vec<(u64, i8)>, i128) {
        match self {
            // The statistics request counts in ss_numctlreq, not yet in
            // ss_processed_r: one control request fewer to take away.
            SystemCounts::Ntpsec {
                processed,
                control_requests,
            } => (vec![(processed, 1), (control_requests, -1)], 1),
            SystemCounts::Classic {
                this_version,
                old_version,
                declined,
                bad_auth,
                limited,
                kod_sent,
            } => (
                vec![
                    (this_version, 1),
                    (old_version, 1),
                    (declined, -1),
                    (bad_auth, -1),
                    (limited, -1),
                    (kod_sent, 1),
                ],
                0,
            ),
        }
    }

    /// Client requests answered plus replies to ntpd's own polls (before
    /// Σ received is taken away).
    fn requests_and_replies(self) -> i128 {
        let (terms, constant) = self.terms();
        terms
            .into_iter()
            .map(|(v, sign)| i128::from(sign) * i128::from(v))
            .sum::<i128>()
            + constant
    }

    /// Whether any counter is lower than in `earlier` (of the same kind).
    fn went_down_since(self, earlier: SystemCounts) -> bool {
        self.terms()
            .0
            .iter()
            .zip(earlier.terms().0)
            .any(|((now, _), (before, _))| *now < before)
    }

    fn same_kind(self, other: SystemCounts) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// One scrape's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// `ss_uptime`, seconds.
    pub uptime: u64,
    /// The system counters.
    pub system: SystemCounts,
    /// `received` of every association that is not a refclock, by
    /// association id.
    pub received: BTreeMap<u16, u64>,
}

impl Sample {
    /// ntpd's own count since its start (or since the counters' reset).
    fn absolute(&self) -> i128 {
        self.system.requests_and_replies()
            - self.received.values().map(|&r| i128::from(r)).sum::<i128>()
    }

    /// The growth since `last`: system counters minus every association's
    /// received packets since then.
    fn growth_since(&self, last: &Sample) -> i128 {
        let replies: i128 = self
            .received
            .iter()
            .map(|(id, &now)| match last.received.get(id) {
                Some(&before) if now >= before => i128::from(now - before),
                // New, or reset: everything it counts is new.
                _ => i128::from(now),
            })
            .sum();
        self.system.requests_and_replies() - last.system.requests_and_replies() - replies
    }
}

/// What an update found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first reading: the counter starts at ntpd's own count.
    First,
    /// The counters continued.
    Continued,
    /// ntpd restarted: the counter starts again.
    Restarted,
    /// System counters went down without a restart: a new baseline.
    Rebaselined,
}

/// The state kept between scrapes.
#[derive(Debug, Default)]
pub struct Served {
    last: Option<Sample>,
    /// The running sum of growths since the first reading (may dip below
    /// what was published, for one scrape).
    running: i128,
    published: u64,
}

fn clamp(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

impl Served {
    /// Takes a new reading and returns the value to publish.
    pub fn update(&mut self, sample: Sample) -> (u64, Event) {
        let event = match &self.last {
            None => Event::First,
            Some(last) if sample.uptime < last.uptime || !sample.system.same_kind(last.system) => {
                Event::Restarted
            }
            Some(last) if sample.system.went_down_since(last.system) => Event::Rebaselined,
            Some(_) => Event::Continued,
        };
        match (event, &self.last) {
            (Event::Continued, Some(last)) => {
                self.running += sample.growth_since(last);
                self.published = self.published.max(clamp(self.running));
            }
            (Event::Rebaselined, _) => {}
            _ => {
                self.running = sample.absolute();
                self.published = clamp(self.running);
            }
        }
        self.last = Some(sample);
        (self.published, event)
    }

    /// The value published last, if any: for a scrape whose reading was
    /// incomplete.
    pub fn current(&self) -> Option<u64> {
        self.last.as_ref().map(|_| self.published)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntpsec(uptime: u64, processed: u64, control: u64, received: &[(u16, u64)]) -> Sample {
        Sample {
            uptime,
            system: SystemCounts::Ntpsec {
                processed,
                control_requests: control,
            },
            received: received.iter().copied().collect(),
        }
    }

    #[test]
    fn ntpsec_counts_what_is_neither_control_nor_a_reply() {
        // The lab's idle ntpd: processed 21 = 8 earlier control requests + 13
        // replies; this request is the 9th.
        let mut s = Served::default();
        assert_eq!(
            s.update(ntpsec(76, 21, 9, &[(17767, 13)])),
            (0, Event::First)
        );
        // Five client requests answered, two more replies, four queries.
        assert_eq!(
            s.update(ntpsec(90, 21 + 4 + 2 + 5, 13, &[(17767, 15)])),
            (5, Event::Continued)
        );
    }

    #[test]
    fn a_reply_seen_only_by_its_association_does_not_count_later() {
        let mut s = Served::default();
        s.update(ntpsec(10, 100, 51, &[(1, 50)]));
        // A reply arrived between the statistics and the association's
        // counter: Σ received is one ahead. Nothing is published lower, and
        // nothing is added when the statistics catch up.
        assert_eq!(s.update(ntpsec(20, 102, 53, &[(1, 51)])).0, 0);
        assert_eq!(s.update(ntpsec(30, 105, 55, &[(1, 51)])).0, 0);
        assert_eq!(s.update(ntpsec(40, 110, 57, &[(1, 52)])).0, 2);
    }

    #[test]
    fn dropped_and_new_associations_do_not_count_as_clients() {
        let mut s = Served::default();
        s.update(ntpsec(10, 1000, 401, &[(1, 300), (2, 300)]));
        // Association 2 is gone with its 300 replies (plus 2 since the last
        // scrape); association 3 replaced it and received 4.
        let (v, e) = s.update(ntpsec(
            20,
            1000 + 1 + 5 + 2 + 4 + 7,
            402,
            &[(1, 305), (3, 4)],
        ));
        assert_eq!(e, Event::Continued);
        assert_eq!(v, 7 + 2, "seven clients, and the two lost replies");
        // An association whose counter went back to 0 counts from there.
        let (v, _) = s.update(ntpsec(30, 1019 + 1 + 3 + 3, 403, &[(1, 3), (3, 7)]));
        assert_eq!(v, 9);
    }

    #[test]
    fn a_restart_starts_again_and_the_counter_never_goes_down_otherwise() {
        let mut s = Served::default();
        s.update(ntpsec(100, 500, 101, &[(1, 100)]));
        assert_eq!(s.update(ntpsec(110, 520, 102, &[(1, 100)])).0, 319);
        // ntpd restarted: uptime went down.
        let (v, e) = s.update(ntpsec(5, 12, 3, &[(7, 4)]));
        assert_eq!((v, e), (6, Event::Restarted));
        // Counters that went down without a restart: a new baseline, the
        // published value kept.
        let (v, e) = s.update(ntpsec(15, 11, 4, &[(7, 5)]));
        assert_eq!((v, e), (6, Event::Rebaselined));
        assert_eq!(s.update(ntpsec(25, 14, 5, &[(7, 6)])).0, 7);
        assert_eq!(s.current(), Some(7));
        assert_eq!(Served::default().current(), None);
    }

    #[test]
    fn ntpd_classic_counts_versioned_packets_less_what_was_refused() {
        let classic = |this_version, limited, kod_sent, received: u64| Sample {
            uptime: 1,
            system: SystemCounts::Classic {
                this_version,
                old_version: 2,
                declined: 3,
                bad_auth: 1,
                limited,
                kod_sent,
            },
            received: [(1, received)].into_iter().collect(),
        };
        let mut s = Served::default();
        // 40 + 2 − 3 − 1 − (4 − 1) − 30 = 5.
        assert_eq!(s.update(classic(40, 4, 1, 30)).0, 5);
        // NTPsec replaced it: a restart, whatever the uptime says.
        let (_, e) = s.update(ntpsec(2, 10, 10, &[]));
        assert_eq!(e, Event::Restarted);
    }

    #[test]
    fn the_kind_of_counters_follows_what_ntpd_answered() {
        let mut stats = SystemStats {
            uptime: Some(9),
            this_version: Some(40),
            old_version: Some(0),
            declined: Some(0),
            bad_auth: Some(0),
            limited: Some(0),
            kod_sent: Some(0),
            ..SystemStats::default()
        };
        assert!(matches!(
            SystemCounts::from_stats(&stats),
            Some(SystemCounts::Classic { .. })
        ));
        stats.processed_total = Some(5);
        // NTPsec's formula needs both of its counters.
        assert!(matches!(
            SystemCounts::from_stats(&stats),
            Some(SystemCounts::Classic { .. })
        ));
        stats.control_requests = Some(3);
        assert_eq!(
            SystemCounts::from_stats(&stats),
            Some(SystemCounts::Ntpsec {
                processed: 5,
                control_requests: 3
            })
        );
        stats.this_version = None;
        stats.processed_total = None;
        assert_eq!(SystemCounts::from_stats(&stats), None);
    }
}
