//! ntpd (classic or NTPsec) over its mode-6 control protocol: what `ntpq -p`,
//! `ntpq -c associations`, `ntpq -c rv` and `ntpq -c sysstats` show, read
//! natively (nothing is executed). An adapter of the daemon collector
//! template ([`super::daemon`]), which owns presence, backoff and
//! `clock_daemon_up`.
//!
//! One query costs two round trips however many peers ntpd has: the
//! association list, the system variables and the system statistics are
//! requested together, then every association's variables and its packet
//! counter, all on one socket of [`crate::sys::udp`], each request with its
//! own sequence number ([`query`]). The decoded answers become the shared
//! model (`clock_sync_*`, `clock_peer_*`) in [`Reading::report`], a pure
//! function tested with datagrams captured from a real ntpd ([`reading`]).
//! The client requests ntpd answered (`clock_server_requests_total`) need the
//! previous scrape's counters too: [`served`] keeps them.

mod query;
mod reading;
pub mod served;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Arg, ArgMatches};

use super::daemon::{Adapter, DaemonCollector, Depth, QueryError, Sequences};
use super::flags::{bool_flag, flag, given, parse_duration, timeout};
use super::{CollectError, Collected, Collector, Context, Registration};
use crate::metrics::metrics;
use crate::model::{self, Daemon};

pub use query::query;
pub use reading::Reading;
use served::Served;

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "ntpd",
    help: "ntpd (classic or NTPsec) over its mode-6 control protocol, what ntpq shows",
    default_enabled: true,
    metrics: &[model::METRICS, METRICS],
    args,
    build,
};

/// Where ntpd listens by default.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:123";

/// How long one query may take by default. ntpd answers on loopback within a
/// millisecond; a host whose :123 drops mode 6 (chronyd) costs this once per
/// backoff.
pub const DEFAULT_TIMEOUT: &str = "1s";

metrics! {
    /// The families only ntpd emits; the shared model's are listed beside
    /// them in the collector's registration.
    pub static METRICS = [
        PEER_REACH_REGISTER: Gauge(
            "clock_ntpd_peer_reach_register",
            ["peer"],
            "The peer's 8-bit reach register as a number (ntpq prints it in octal); bit 0 is the latest poll, set when it was answered."
        ),
        PEER_HOST_MODE: Gauge(
            "clock_ntpd_peer_host_mode",
            ["peer"],
            "The association mode ntpd uses with the peer (hmode): 1 symmetric active, 2 symmetric passive, 3 client, 5 broadcast server, 6 broadcast client."
        ),
        PEER_SELECTION_CODE: Gauge(
            "clock_ntpd_peer_selection_code",
            ["peer"],
            "The raw selection code ntpd gives the peer, (status >> 8) & 7: 0 reject, 1 falsetick, 2 excess, 3 outlier, 4 candidate, 5 backup, 6 sys.peer, 7 pps.peer."
        ),
        PEER_NTS_COOKIES: Gauge(
            "clock_ntpd_peer_nts_cookies",
            ["peer"],
            "NTS cookies NTPsec holds for the peer (ntscookies), -1 while its key establishment fails; with none it cannot ask the peer until a new key establishment succeeds. NTS associations only."
        ),
        CONTROL_REQUESTS: Counter(
            "clock_ntpd_control_requests",
            [],
            "Mode-6 control requests ntpd received since it started (ss_numctlreq, NTPsec only), including this exporter's."
        ),
        INFO: Gauge(
            "clock_ntpd_info",
            ["version"],
            "The version string of the ntpd that answered."
        ),
    ];
}

fn args() -> Vec<Arg> {
    let mut a = vec![
        Arg::new("collector.ntpd.address")
            .long("collector.ntpd.address")
            .value_name("IP:PORT")
            .default_value(DEFAULT_ADDRESS)
            .value_parser(parse_address)
            .help("Address of ntpd's mode-6 control port, a literal IP and port. Setting it also publishes clock_daemon_up{daemon=\"ntpd\"} before ntpd was ever seen."),
        Arg::new("collector.ntpd.timeout")
            .long("collector.ntpd.timeout")
            .value_name("DURATION")
            .default_value(DEFAULT_TIMEOUT)
            .value_parser(parse_duration)
            .help("Longest wait for ntpd's answers in one scrape; a daemon that does not answer is then skipped and retried with backoff."),
    ];
    a.extend(bool_flag(
        "collector.ntpd.allow-remote",
        false,
        "Allow a non-loopback --collector.ntpd.address (mode 6 travels unauthenticated)",
    ));
    a
}

fn parse_address(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?}: expected a literal IP and port, e.g. 127.0.0.1:123 or [::1]:123")
    })
}

fn build(m: &ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    let address = *m
        .get_one::<SocketAddr>("collector.ntpd.address")
        .ok_or("--collector.ntpd.address is missing")?;
    let timeout = timeout(m, "collector.ntpd.timeout")?;
    if !address.ip().to_canonical().is_loopback() && !flag(m, "collector.ntpd.allow-remote") {
        return Err(format!(
            "--collector.ntpd.address {address} is not a loopback address; mode 6 is unauthenticated, so querying another host needs --collector.ntpd.allow-remote"
        ));
    }
    let explicit = given(m, &["collector.ntpd.address"]);
    Ok(Arc::new(collector(address, timeout, explicit)))
}

/// The ntpd collector for ntpd at `address`; `explicit` when the user
/// configured the address, so that `clock_daemon_up` is published before
/// ntpd was seen.
pub fn collector(address: SocketAddr, timeout: Duration, explicit: bool) -> DaemonCollector<Ntpd> {
    DaemonCollector::new(Ntpd { address, timeout }, explicit)
}

/// The ntpd adapter: where ntpd is, and how long a query may take.
#[derive(Debug)]
pub struct Ntpd {
    address: SocketAddr,
    timeout: Duration,
}

impl Adapter for Ntpd {
    type Reading = Reading;
    type Memory = Served;
    const DAEMON: Daemon = Daemon::Ntpd;

    fn endpoint(&self) -> String {
        self.address.to_string()
    }

    async fn query(
        &self,
        depth: Depth,
        sequences: &Sequences,
        _: &mut Served,
    ) -> Result<Reading, QueryError> {
        query(self.address, self.timeout, sequences, depth).await
    }

    fn report(&self, reading: Reading, served: &mut Served) -> Collected {
        let requests = served_requests(served, &reading);
        Collected {
            families: reading.families(requests),
            errors: reading
                .problems
                .iter()
                .map(|p| CollectError::Protocol(p.clone()))
                .collect(),
        }
    }
}

/// Updates the served-requests state with a reading and returns the value
/// to publish: the last one when this reading lacks a counter.
fn served_requests(state: &mut Served, reading: &Reading) -> Option<u64> {
    let Some(sample) = reading.served_sample() else {
        return state.current();
    };
    let (value, event) = state.update(sample);
    if event == served::Event::Restarted {
        tracing::info!(
            collector = "ntpd",
            "ntpd restarted: clock_server_requests_total starts again"
        );
    }
    Some(value)
}

#[cfg(test)]
mod tests;
