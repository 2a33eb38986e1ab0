//! chronyd's server counters made into Prometheus counters: monotonic across
//! the wrap of chrony 4.3's 32-bit counters, reset only when chronyd restarts.
//!
//! chrony up to 4.3 answers SERVER_STATS with 32-bit counters (formats 1 to
//! 3), which a busy server wraps in days. A decrease between two scrapes is
//! either such a wrap or a restart of chronyd. They are told apart by:
//! - the identity of chronyd's unix socket (device, inode, change time):
//!   chronyd removes and re-creates it every time it starts, and serverstats
//!   is only ever read over that socket, so a new identity is a restart;
//! - the size of the decrease: a wrap by an increment `d` below 2³¹ leaves
//!   the counter lower by `2³² − d`, more than 2³¹; a counter lower by at most
//!   2³¹ cannot have wrapped within one scrape interval, so chronyd restarted
//!   (as it did when any 64-bit counter of format 4 decreases);
//! - a change of reply format (chronyd was upgraded, hence restarted).
//!
//! After a restart the published counters start again from chronyd's values.
//! The exporter's own restart also starts from chronyd's values, which after
//! a wrap are lower than what it published before: Prometheus sees a reset.

use crate::proto::cmdmon::ServerStats;
use crate::sys::cmdmon::SocketIdentity;

const WRAP: u64 = 1 << 32;

/// Number of counter fields in [`Counts`].
pub const N: usize = 15;

/// The counter fields of a SERVER_STATS reply, in a fixed order (absent in
/// older formats as `None`). Levels (timestamps held, their span) are not
/// counters and are not in it.
pub type Counts = [Option<u64>; N];

/// The counter fields of a reply.
pub fn counts(s: &ServerStats) -> Counts {
    let t = s.timestamps;
    [
        Some(s.ntp_hits),
        s.nke_hits,
        Some(s.cmd_hits),
        Some(s.ntp_drops),
        s.nke_drops,
        Some(s.cmd_drops),
        Some(s.log_drops),
        s.ntp_auth_hits,
        s.ntp_interleaved_hits,
        t.map(|t| t.daemon_rx),
        t.map(|t| t.daemon_tx),
        t.map(|t| t.kernel_rx),
        t.map(|t| t.kernel_tx),
        t.map(|t| t.hw_rx),
        t.map(|t| t.hw_tx),
    ]
}

/// What an update found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The first reading: published counters start at chronyd's values.
    First,
    /// Counters continued (possibly across wraps, counted).
    Continued {
        /// How many counters wrapped since the last reading.
        wraps: usize,
    },
    /// chronyd restarted: published counters start again.
    Restarted,
}

/// The state kept between scrapes.
#[derive(Debug, Default)]
pub struct Monotonic {
    last: Option<(u8, Counts, Option<SocketIdentity>)>,
    published: Counts,
}

impl Monotonic {
    /// Takes a new reading and returns the counters to publish.
    pub fn update(
        &mut self,
        stats: &ServerStats,
        identity: Option<SocketIdentity>,
    ) -> (Counts, Event) {
        let raw = counts(stats);
        let event = match &self.last {
            None => Event::First,
            Some((format, last, last_identity)) => {
                let new_socket = matches!((last_identity, identity), (Some(a), Some(b)) if *a != b);
                let went_back = raw.iter().zip(last).any(|(r, l)| match (r, l) {
                    (Some(r), Some(l)) if r < l => !stats.counters_wrap() || l - r <= WRAP / 2,
                    _ => false,
                });
                if new_socket || went_back || *format != stats.format {
                    Event::Restarted
                } else {
                    let mut wraps = 0;
                    for ((p, r), l) in self.published.iter_mut().zip(raw).zip(last) {
                        *p = match (r, l, *p) {
                            (Some(r), Some(l), Some(p)) => {
                                let delta = if r >= *l {
                                    r - l
                                } else {
                                    wraps += 1;
                                    r + WRAP - l
                                };
                                Some(p + delta)
                            }
                            (r, _, _) => r,
                        };
                    }
                    Event::Continued { wraps }
                }
            }
        };
        if matches!(event, Event::First | Event::Restarted) {
            self.published = raw;
        }
        self.last = Some((stats.format, raw, identity));
        (self.published, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(ntp_hits: u64, cmd_hits: u64) -> ServerStats {
        ServerStats {
            format: 3,
            ntp_hits,
            cmd_hits,
            nke_hits: Some(0),
            nke_drops: Some(0),
            ntp_auth_hits: Some(0),
            ntp_interleaved_hits: Some(0),
            ntp_timestamps: Some(0),
            ntp_span_seconds: Some(0),
            ..ServerStats::default()
        }
    }

    fn id(ino: u64) -> Option<SocketIdentity> {
        Some(SocketIdentity {
            dev: 1,
            ino,
            ctime_ns: 5,
        })
    }

    #[test]
    fn counters_stay_monotonic_across_a_32_bit_wrap() {
        let mut m = Monotonic::default();
        let (c, e) = m.update(&v3(4_294_967_000, 10), id(7));
        assert_eq!(e, Event::First);
        assert_eq!(c[0], Some(4_294_967_000));
        // ntp_hits wrapped: 296 more to 2^32, then 50.
        let (c, e) = m.update(&v3(50, 11), id(7));
        assert_eq!(e, Event::Continued { wraps: 1 });
        assert_eq!(c[0], Some(4_294_967_346));
        assert_eq!(c[2], Some(11));
        let (c, _) = m.update(&v3(60, 12), id(7));
        assert_eq!(c[0], Some(4_294_967_356));
        // A second wrap keeps counting.
        let (c, _) = m.update(&v3(4_294_967_200, 13), id(7));
        assert_eq!(c[0], Some(4_294_967_296 + 4_294_967_200));
        let (c, e) = m.update(&v3(5, 14), id(7));
        assert_eq!(e, Event::Continued { wraps: 1 });
        assert_eq!(c[0], Some(2 * 4_294_967_296 + 5));
    }

    #[test]
    fn a_new_socket_or_a_small_decrease_is_a_restart() {
        let mut m = Monotonic::default();
        m.update(&v3(1000, 100), id(7));
        m.update(&v3(2000, 101), id(7));
        // chronyd restarted: its socket is a new file.
        let (c, e) = m.update(&v3(2500, 3), id(8));
        assert_eq!(e, Event::Restarted);
        assert_eq!(c[0], Some(2500));
        // Without a socket identity, counters that fell by less than half
        // the range cannot have wrapped: a restart too.
        let mut m = Monotonic::default();
        m.update(&v3(1000, 100), None);
        let (c, e) = m.update(&v3(10, 1), None);
        assert_eq!(e, Event::Restarted);
        assert_eq!(c[0], Some(10));
    }

    #[test]
    fn sixty_four_bit_counters_never_wrap_and_a_format_change_is_a_restart() {
        let mut m = Monotonic::default();
        let v4 = |n| ServerStats {
            format: 4,
            ntp_hits: n,
            ..ServerStats::default()
        };
        m.update(&v4(1 << 40), id(1));
        let (c, e) = m.update(&v4(5), id(1));
        assert_eq!(e, Event::Restarted);
        assert_eq!(c[0], Some(5));
        let (_, e) = m.update(&v3(6, 0), id(1));
        assert_eq!(e, Event::Restarted);
    }
}
