//! The host's own IP addresses (`clock_host_address_info`), listed with
//! getifaddrs(3) and kept until rtnetlink announces a change of a link or
//! an address ([`crate::sys::net::NetlinkWatch`]).

use std::sync::{Arc, Mutex, PoisonError};

use super::HOST_ADDRESS;
use crate::collector::listing::ListingCache;
use crate::collector::{CollectError, Collected, blocking};
use crate::metrics::{Family, Kept, labels};
use crate::sys::net::{self, HostAddress, NetlinkWatch};

/// The address family, from a listing of the host's interfaces.
pub fn address_family(addrs: &[HostAddress]) -> Family {
    let mut f = HOST_ADDRESS.family();
    for a in addrs {
        // IpAddr's Display is the canonical form: RFC 5952 for IPv6.
        f.push(labels![a.address.to_string(), a.interface.clone()], 1.0);
    }
    f
}

/// The address listing, kept until rtnetlink notices a change.
#[derive(Debug)]
pub struct Addresses(Mutex<ListingCache<Kept>>);

impl Addresses {
    /// Subscribes to the kernel's notices first, so that no change between
    /// the subscription and the first listing goes unseen.
    pub fn new() -> Addresses {
        Addresses(Mutex::new(ListingCache::watched(
            NetlinkWatch::addresses(),
            "addresses",
        )))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ListingCache<Kept>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the kernel's notices keep the listing.
    #[cfg(test)]
    pub fn is_watched(&self) -> bool {
        self.cache().is_watched()
    }

    /// The kept listing, or a new one.
    pub async fn collect(self: Arc<Self>) -> Collected {
        let kept = self.cache().lookup();
        match kept {
            Ok(kept) => Collected {
                families: kept.families().collect(),
                errors: Vec::new(),
            },
            // getifaddrs(3) may wait for the kernel's rtnl lock, which a slow
            // driver can hold for seconds: on the blocking pool, so that the
            // timeout can abandon it.
            Err(generation) => blocking(move || self.list(generation)).await,
        }
    }

    /// Lists the addresses, and keeps the listing for `generation`.
    fn list(&self, generation: Option<u64>) -> Collected {
        match net::host_addresses() {
            Ok(addrs) => {
                let kept = Kept::new([address_family(&addrs)]);
                self.cache().store(generation, &kept);
                Collected {
                    families: kept.families().collect(),
                    errors: Vec::new(),
                }
            }
            Err(e) => Collected::error(CollectError::Io(format!("getifaddrs: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_canonical_text() {
        let addrs = vec![
            HostAddress {
                interface: "eth0".into(),
                address: "2001:0db8:0000:0000:0000:0000:0000:0001"
                    .parse()
                    .expect("v6"),
            },
            HostAddress {
                interface: "eth0".into(),
                address: "192.0.2.10".parse().expect("v4"),
            },
        ];
        let f = address_family(&addrs);
        let got: Vec<&str> = f
            .samples
            .iter()
            .map(|s| s.label_values[0].as_str())
            .collect();
        assert_eq!(got, vec!["2001:db8::1", "192.0.2.10"]);
    }
}
