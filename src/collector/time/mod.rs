//! The wall clock at scrape time, and the host's own addresses
//! ([`addresses`]): the two facts a rule needs to place this host among
//! others, whatever daemon it runs.
//!
//! `clock_time_seconds` lets a rule compare every host with Prometheus' own
//! clock (`clock_time_seconds - timestamp(clock_time_seconds)`);
//! `clock_host_address_info` lets rules join what clients say about a peer
//! address with what that host says about itself. The collector keeps its
//! name, `time`, from before the addresses joined it: `--no-collector.time`
//! turns both off, as it always has.

mod addresses;

use std::sync::Arc;

use nix::time::{ClockId, clock_gettime};

use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration};
use crate::metrics::metrics;
use addresses::Addresses;

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

/// The time collector.
#[derive(Debug)]
struct Time {
    addresses: Arc<Addresses>,
}

fn build(_: &clap::ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    Ok(Arc::new(Time {
        addresses: Arc::new(Addresses::new()),
    }))
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
            let listed = self.addresses.clone().collect().await;
            out.families.extend(listed.families);
            out.errors.extend(listed.errors);
            out
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn live_collection_has_time_and_loopback() {
        let time = Arc::new(Time {
            addresses: Arc::new(Addresses::new()),
        });
        assert!(
            time.addresses.is_watched(),
            "netlink notices are open to anyone"
        );
        let out = time.clone().collect().await;
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        crate::collector::assert_declared(&REGISTRATION, &out.families);
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
