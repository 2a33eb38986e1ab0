//! The wall clock at scrape time, and the host's own addresses.
//!
//! `clock_time_seconds` lets a rule compare every host with Prometheus' own
//! clock (`clock_time_seconds - timestamp(clock_time_seconds)`), whatever
//! daemon runs; `clock_host_address_info` lets rules join what clients say
//! about a peer address with what that host says about itself.

use std::sync::{Arc, Mutex, PoisonError};

use nix::time::{ClockId, clock_gettime};

use super::listing::ListingCache;
use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration, blocking};
use crate::metrics::{Family, Kept, labels, metrics};
use crate::sys::net::{self, HostAddress, NetlinkWatch};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "time",
    help: "wall clock at scrape time and the host's own IP addresses",
    default_enabled: true,
    metrics: &[METRICS],
    args: super::no_args,
    build,
};

metrics! {
    /// Every family this collector emits.
    pub static METRICS = [
        TIME: Gauge(
            "clock_time_seconds",
            [],
            "System time (CLOCK_REALTIME) when the exporter was scraped, in seconds since the Unix epoch."
        ),
        HOST_ADDRESS: Gauge(
            "clock_host_address_info",
            ["address", "interface"],
            "An IP address of this host, in canonical text, with the interface that holds it."
        ),
    ];
}

/// The address family, from a listing of the host's interfaces.
pub fn address_family(addrs: &[HostAddress]) -> Family {
    let mut f = HOST_ADDRESS.family();
    for a in addrs {
        // IpAddr's Display is the canonical form: RFC 5952 for IPv6.
        f.push(labels![a.address.to_string(), a.interface.clone()], 1.0);
    }
    f
}

#[derive(Debug)]
struct Time {
    /// The address listing, kept until rtnetlink notices a change.
    addresses: Mutex<ListingCache<Kept>>,
}

impl Time {
    fn new() -> Time {
        Time {
            addresses: Mutex::new(ListingCache::watched(
                NetlinkWatch::addresses(),
                "addresses",
            )),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, ListingCache<Kept>> {
        self.addresses
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Lists the addresses, and keeps the listing for `generation`.
    fn list_addresses(&self, generation: Option<u64>) -> Collected {
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

fn build(_: &clap::ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    Ok(Arc::new(Time::new()))
}

impl Collector for Time {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(async move {
            let mut out = Collected::default();
            // The vDSO reads the clock without entering the kernel.
            match clock_gettime(ClockId::CLOCK_REALTIME) {
                Ok(ts) => out
                    .families
                    .push(TIME.single(ts.tv_sec() as f64 + ts.tv_nsec() as f64 * 1e-9)),
                Err(e) => out
                    .errors
                    .push(CollectError::Io(format!("clock_gettime: {e}"))),
            }
            let kept = self.cache().lookup();
            match kept {
                Ok(kept) => out.families.extend(kept.families()),
                Err(generation) => {
                    // getifaddrs(3) may wait for the kernel's rtnl lock, which
                    // a slow driver can hold for seconds: on the blocking pool,
                    // so that the timeout can abandon it.
                    let listed = blocking(move || self.list_addresses(generation)).await;
                    out.families.extend(listed.families);
                    out.errors.extend(listed.errors);
                }
            }
            out
        })
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

    #[tokio::test]
    async fn live_collection_has_time_and_loopback() {
        let time = Arc::new(Time::new());
        assert!(
            time.cache().is_watched(),
            "netlink notices are open to anyone"
        );
        let out = time.clone().collect().await;
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after epoch")
            .as_secs_f64();
        let t = out.families[0].samples[0].value;
        assert!((t - now).abs() < 5.0, "{t} vs {now}");
        let addrs: Vec<&str> = out.families[1]
            .samples
            .iter()
            .map(|s| s.label_values[0].as_str())
            .collect();
        assert!(addrs.contains(&"127.0.0.1"), "{addrs:?}");
    }
}
