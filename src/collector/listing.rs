//! A listing kept between scrapes until the kernel notices a change
//! ([`crate::sys::net::NetlinkWatch`]): the host's addresses, the PTP clocks.

/// The last listing, kept until a change is noticed. A listing made while
/// another change came in is not kept, since it may predate that change.
#[derive(Debug)]
pub struct ListingCache<T> {
    /// Counts the changes seen.
    generation: u64,
    kept: Option<T>,
}

impl<T> Default for ListingCache<T> {
    fn default() -> Self {
        ListingCache {
            generation: 0,
            kept: None,
        }
    }
}

impl<T: Clone> ListingCache<T> {
    /// The kept listing, or, when there is none or `changed` says it is out
    /// of date, the generation a new listing is made for.
    pub fn lookup(&mut self, changed: bool) -> Result<T, u64> {
        if changed {
            self.generation += 1;
            self.kept = None;
        }
        self.kept.clone().ok_or(self.generation)
    }

    /// Keeps a listing made for `generation`, unless a change came since.
    pub fn store(&mut self, generation: u64, listing: &T) {
        if generation == self.generation {
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
        let first = c.lookup(false).expect_err("nothing kept at first");
        c.store(first, &f);
        assert_eq!(c.lookup(false), Ok(f.clone()));
        let after_change = c.lookup(true).expect_err("a change drops the listing");
        // Another change comes in while that listing runs: the listing may
        // predate it, so it is not kept.
        let after_second = c.lookup(true).expect_err("changed again");
        c.store(after_change, &f);
        assert_eq!(c.lookup(false), Err(after_second));
        c.store(after_second, &f);
        assert_eq!(c.lookup(false), Ok(f));
    }
}
