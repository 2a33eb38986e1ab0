//! A listing kept between scrapes until the kernel notices a change
//! ([`crate::sys::net::NetlinkWatch`]): the host's addresses, the PTP clocks.

use std::io;

use crate::sys::net::NetlinkWatch;

/// The last listing, kept until the watch notices a change. A listing made
/// while another change came in is not kept, since it may predate that
/// change. Without a watch (the kernel refused the subscription) nothing is
/// kept and every scrape lists.
#[derive(Debug)]
pub struct ListingCache<T> {
    watch: Option<NetlinkWatch>,
    /// Counts the changes seen.
    generation: u64,
    kept: Option<T>,
}

impl<T> Default for ListingCache<T> {
    /// A cache without a watch: nothing is kept.
    fn default() -> Self {
        ListingCache {
            watch: None,
            generation: 0,
            kept: None,
        }
    }
}

impl<T: Clone> ListingCache<T> {
    /// A cache kept by `watch`; `what` names the listing in the one log line
    /// written when the kernel refused the subscription. Subscribe before the
    /// first listing, so that no change is missed between the two.
    pub fn watched(watch: io::Result<NetlinkWatch>, what: &str) -> Self {
        let watch = watch
            .inspect_err(|e| {
                tracing::debug!(error = %e, "no kernel notices of changes; listing {what} on every scrape");
            })
            .ok();
        ListingCache {
            watch,
            ..ListingCache::default()
        }
    }

    /// Whether a watch keeps the listing.
    #[cfg(test)]
    pub fn is_watched(&self) -> bool {
        self.watch.is_some()
    }

    /// The kept listing, or what a new listing is made for: `Some`
    /// generation to pass to [`ListingCache::store`], `None` when there is no
    /// watch and the listing is not to be kept.
    pub fn lookup(&mut self) -> Result<T, Option<u64>> {
        let Some(watch) = &self.watch else {
            return Err(None);
        };
        let changed = watch.changed();
        self.lookup_after(changed).map_err(Some)
    }

    fn lookup_after(&mut self, changed: bool) -> Result<T, u64> {
        if changed {
            self.generation += 1;
            self.kept = None;
        }
        self.kept.clone().ok_or(self.generation)
    }

    /// Keeps a listing made for `generation` (from [`ListingCache::lookup`]),
    /// unless a change came since.
    pub fn store(&mut self, generation: Option<u64>, listing: &T) {
        if generation == Some(self.generation) {
            self.kept = Some(listing.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_is_kept_until_a_change_and_one_raced_by_a_change_is_not() {
        let f = vec!["lo 127.0.0.1"];
        let mut c = ListingCache::default();
        let first = c.lookup_after(false).expect_err("nothing kept at first");
        c.store(Some(first), &f);
        assert_eq!(c.lookup_after(false), Ok(f.clone()));
        let after_change = c
            .lookup_after(true)
            .expect_err("a change drops the listing");
        // Another change comes in while that listing runs: the listing may
        // predate it, so it is not kept.
        let after_second = c.lookup_after(true).expect_err("changed again");
        c.store(Some(after_change), &f);
        assert_eq!(c.lookup_after(false), Err(after_second));
        c.store(Some(after_second), &f);
        assert_eq!(c.lookup_after(false), Ok(f));
    }

    #[test]
    fn without_a_watch_nothing_is_kept() {
        let mut c = ListingCache::default();
        assert!(!c.is_watched());
        assert_eq!(c.lookup(), Err(None));
        c.store(None, &vec!["lo 127.0.0.1"]);
        assert_eq!(
            c.lookup(),
            Err(None),
            "a listing without a watch is not kept"
        );
    }
}
