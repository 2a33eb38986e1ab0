//! The landing page's memory: the daemon's offset and worst-case error at
//! each of the last [`CAPACITY`] scrapes, for its chart. Bounded: 512
//! points of three numbers, 12 KiB, whatever the scrape rate; the oldest
//! point goes first.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

use super::findings::{View, first_daemon};
use crate::metrics::Family;
use crate::model;

/// Points kept.
pub const CAPACITY: usize = 512;

/// One scrape's offset and worst-case error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Unix time of the scrape, s.
    pub at: f64,
    /// The daemon's offset, s (`NaN` when unknown).
    pub offset: f64,
    /// Its worst-case error, s (`NaN` when unknown).
    pub bound: f64,
}

/// The last scrapes' points.
#[derive(Debug, Default)]
pub struct History(Mutex<VecDeque<Point>>);

impl History {
    /// Records a scrape's families at Unix time `at`; a scrape without a
    /// daemon that answers adds a point with unknown values, so the chart
    /// shows the gap.
    pub fn record(&self, families: &[Family], at: f64) {
        let v = View(families);
        let (offset, bound) = first_daemon(&v).map_or((f64::NAN, f64::NAN), |d| {
            let by = [("daemon", d)];
            (
                v.value(&model::SYNC_OFFSET, &by).unwrap_or(f64::NAN),
                v.value(&model::WORST_CASE_ERROR, &by).unwrap_or(f64::NAN),
            )
        });
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() == CAPACITY {
            q.pop_front();
        }
        q.push_back(Point { at, offset, bound });
    }

    /// The points, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Daemon, up_family};

    #[test]
    fn bounded_and_records_what_the_daemon_says() {
        let h = History::default();
        let mut f = vec![up_family(Daemon::Chronyd, true)];
        f.push(
            model::SYNC_OFFSET
                .family()
                .with(crate::metrics::labels!["chronyd"], 0.25),
        );
        f.push(
            model::WORST_CASE_ERROR
                .family()
                .with(crate::metrics::labels!["chronyd"], 0.5),
        );
        for i in 0..CAPACITY + 10 {
            h.record(&f, i as f64);
        }
        let p = h.points();
        assert_eq!(p.len(), CAPACITY);
        assert_eq!(p[0].at, 10.0, "the oldest went first");
        assert_eq!((p[0].offset, p[0].bound), (0.25, 0.5));
        h.record(&[up_family(Daemon::Chronyd, false)], 9999.0);
        let last = *h.points().last().expect("a point");
        assert!(last.offset.is_nan() && last.bound.is_nan());
    }
}
