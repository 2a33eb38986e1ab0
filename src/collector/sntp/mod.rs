//! `sntp`: NTP servers as a client sees them, probed over SNTP (RFC 5905
//! section 14) from this host: `--collector.sntp.server HOST[:PORT]`,
//! repeatable. The exchange and its checks are [`crate::proto::sntp`]'s;
//! [`probe`] holds the IO and the families `/probe` shares.
//!
//! A scrape sends at most one request to each address of each server, and
//! only when the last was at least `--collector.sntp.interval` ago (8 s by
//! default: ntpd's and chrony's default rate limits allow one request per
//! 8 s on average), so a fast Prometheus or an HA pair costs the servers no
//! more than one. Between requests, scrapes publish what the last one
//! found. The last `--collector.sntp.samples` samples of an address are
//! kept and the one of least delay is published, as NTP's clock filter
//! does; an address whose last request got no time publishes no offset at
//! all (a dead server does not keep a stale offset). A kiss-o'-death that
//! asks for less traffic (`RATE`, `DENY`, `RSTR`) holds that server's next
//! request back by 8 intervals.
//!
//! All servers are probed at once, in a task of their own that finishes
//! and stores its results even when the scrape's deadline abandons it;
//! each server's resolution and exchanges end within
//! `--collector.sntp.timeout`.

pub mod probe;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::flags::{parse_duration, timeout};
use super::{BoxFuture, CollectError, Collected, Collector, Context, Registration};
use crate::metrics::{Family, labels, metrics};
use crate::proto::sntp::Sample;
use probe::{Outcome, Probed};

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "sntp",
    help: "NTP servers probed over SNTP from this host (--collector.sntp.server)",
    default_enabled: true,
    metrics: &[probe::METRICS, METRICS],
    args,
    build,
};

metrics! {
    /// The families only the collector emits (not `/probe`).
    pub static METRICS = [
        REQUESTS: Counter(
            "clock_sntp_requests",
            ["server", "address"],
            "Requests sent to the server since the exporter started."
        ),
        DISCARDED: Counter(
            "clock_sntp_discarded_replies",
            ["server", "address"],
            "Datagrams from the server's address dropped because they did not answer a request of this exporter (wrong origin timestamp, bad length): late replies or forgeries."
        ),
        SAMPLE_AGE: Gauge(
            "clock_sntp_sample_age_seconds",
            ["server", "address"],
            "Age of the published sample, in seconds."
        ),
    ];
}

const SERVER: &str = "collector.sntp.server";
const TIMEOUT: &str = "collector.sntp.timeout";
const INTERVAL: &str = "collector.sntp.interval";
const SAMPLES: &str = "collector.sntp.samples";
const ALL: &str = "collector.sntp.all-addresses";

/// The most samples kept per address.
pub const MAX_SAMPLES: usize = 16;
/// The most servers.
pub const MAX_SERVERS: usize = 256;

fn args() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new(SERVER)
            .long(SERVER)
            .value_name("HOST[:PORT]")
            .action(clap::ArgAction::Append)
            .help("An NTP server to probe over SNTP (repeatable; port 123 unless given; IPv6 as [ADDRESS]:PORT). None: the collector does nothing."),
        clap::Arg::new(TIMEOUT)
            .long(TIMEOUT)
            .value_name("DURATION")
            .default_value("1s")
            .value_parser(parse_duration)
            .help("Longest one server's name resolution and exchange may take."),
        clap::Arg::new(INTERVAL)
            .long(INTERVAL)
            .value_name("DURATION")
            .default_value("8s")
            .value_parser(parse_duration)
            .help("Shortest time between two requests to one server, whatever the scrape rate (at least 2s); scrapes in between publish the last result."),
        clap::Arg::new(SAMPLES)
            .long(SAMPLES)
            .value_name("N")
            .default_value("4")
            .value_parser(clap::value_parser!(u8).range(1..=MAX_SAMPLES as i64))
            .help("Samples kept per server address; the one of least delay is published (1-16)."),
        clap::Arg::new(ALL)
            .long(ALL)
            .action(clap::ArgAction::SetTrue)
            .help("Probe every address a server's name resolves to, not only the first."),
    ]
}

fn build(m: &clap::ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    let servers: Vec<String> = m
        .get_many::<String>(SERVER)
        .map(|v| v.cloned().collect())
        .unwrap_or_default();
    let config = Config {
        servers,
        timeout: timeout(m, TIMEOUT)?,
        interval: *m.get_one::<Duration>(INTERVAL).expect("default"),
        samples: usize::from(*m.get_one::<u8>(SAMPLES).expect("default")),
        all_addresses: m.get_flag(ALL),
    };
    Ok(Arc::new(SntpCollector::new(config)?))
}

/// The collector's settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Targets, `HOST[:PORT]`.
    pub servers: Vec<String>,
    /// Per server, resolution and exchange.
    pub timeout: Duration,
    /// Between two requests to one server.
    pub interval: Duration,
    /// Kept per address.
    pub samples: usize,
    /// Every address of a name, or the first.
    pub all_addresses: bool,
}

/// What is kept of one address between scrapes.
#[derive(Debug, Default)]
struct AddressState {
    window: VecDeque<(Instant, Sample)>,
    last: Option<Outcome>,
    requests: u64,
    discarded: u64,
}

/// What is kept of one server.
#[derive(Debug, Default)]
struct ServerState {
    /// When the next request may go.
    due: Option<Instant>,
    /// Resolution failed at the last attempt.
    unresolved: bool,
    addresses: Vec<(SocketAddr, AddressState)>,
}

/// The `sntp` collector.
#[derive(Debug)]
pub struct SntpCollector {
    config: Config,
    state: Arc<Mutex<HashMap<String, ServerState>>>,
}

impl SntpCollector {
    /// Checks the settings (every target well formed, limits) and makes the
    /// collector.
    pub fn new(config: Config) -> Result<SntpCollector, String> {
        if config.servers.len() > MAX_SERVERS {
            return Err(format!("--{SERVER}: at most {MAX_SERVERS} servers"));
        }
        for s in &config.servers {
            probe::split_target(s).map_err(|e| format!("--{SERVER}: {e}"))?;
        }
        if config.interval < probe::MIN_SPACING {
            return Err(format!(
                "--{INTERVAL} must be at least {:?}: servers rate-limit faster clients",
                probe::MIN_SPACING
            ));
        }
        Ok(SntpCollector {
            config,
            state: Arc::default(),
        })
    }

    /// Sends the requests that are due and stores what they found.
    async fn probe_due(config: Config, state: Arc<Mutex<HashMap<String, ServerState>>>) {
        let now = Instant::now();
        let due: Vec<String> = {
            let mut st = state.lock().expect("sntp state");
            config
                .servers
                .iter()
                .filter_map(|s| {
                    let e = st.entry(s.clone()).or_default();
                    if e.due.is_some_and(|d| d > now) {
                        return None;
                    }
                    e.due = Some(now + config.interval);
                    Some(s.clone())
                })
                .collect()
        };
        let probes = due.into_iter().map(|server| {
            let config = config.clone();
            async move {
                let deadline = Instant::now() + config.timeout;
                let addresses = match probe::resolve(&server, config.all_addresses, deadline).await
                {
                    Ok(a) => Ok(a),
                    Err(e) => {
                        tracing::debug!(%server, error = %e, "SNTP server not resolved");
                        Err(())
                    }
                };
                let results = match &addresses {
                    Ok(a) => {
                        futures_util::future::join_all(a.iter().map(|&addr| async move {
                            (addr, probe::exchange(addr, deadline).await)
                        }))
                        .await
                    }
                    Err(()) => Vec::new(),
                };
                (server, addresses.is_err(), results)
            }
        });
        let done = futures_util::future::join_all(probes).await;
        let now = Instant::now();
        let mut st = state.lock().expect("sntp state");
        for (server, unresolved, results) in done {
            let e = st.entry(server.clone()).or_default();
            e.unresolved = unresolved;
            if unresolved {
                // Its addresses are reported no more, until it resolves again.
                e.addresses.clear();
                continue;
            }
            // Addresses the name no longer has are forgotten.
            e.addresses
                .retain(|(a, _)| results.iter().any(|(r, _)| r == a));
            for (addr, ex) in results {
                let i = if let Some(i) = e.addresses.iter().position(|(a, _)| *a == addr) {
                    i
                } else {
                    e.addresses.push((addr, AddressState::default()));
                    e.addresses.len() - 1
                };
                let a = &mut e.addresses[i].1;
                a.requests += 1;
                a.discarded += u64::from(ex.discarded);
                match &ex.outcome {
                    Outcome::Time(s) => {
                        a.window.push_back((now, *s));
                        while a.window.len() > config.samples {
                            a.window.pop_front();
                        }
                    }
                    Outcome::Kiss(k) if k.must_back_off() => {
                        tracing::info!(%server, %addr, code = %k, "SNTP server sent a kiss-o'-death: holding requests back");
                        e.due = Some(now + config.interval * 8);
                    }
                    o => tracing::debug!(%server, %addr, outcome = %o, "SNTP request got no time"),
                }
                a.last = Some(ex.outcome);
            }
        }
    }

    /// What the state says now.
    fn report(&self) -> Collected {
        let now = Instant::now();
        let st = self.state.lock().expect("sntp state");
        let mut probed = Vec::new();
        let mut requests = REQUESTS.family();
        let mut discarded = DISCARDED.family();
        let mut age = SAMPLE_AGE.family();
        for server in &self.config.servers {
            let Some(e) = st.get(server) else { continue };
            if e.unresolved {
                probed.push(Probed {
                    server: server.clone(),
                    address: None,
                    last: None,
                    best: None,
                    samples: 0,
                });
            }
            for (addr, a) in &e.addresses {
                let l = || labels![server.clone(), addr.to_string()];
                requests.push(l(), a.requests as f64);
                discarded.push(l(), a.discarded as f64);
                let best = match &a.last {
                    Some(Outcome::Time(_)) => a
                        .window
                        .iter()
                        .min_by(|x, y| x.1.delay.total_cmp(&y.1.delay)),
                    _ => None,
                };
                if let Some((at, _)) = best {
                    age.push(l(), now.saturating_duration_since(*at).as_secs_f64());
                }
                probed.push(Probed {
                    server: server.clone(),
                    address: Some(*addr),
                    last: a.last.clone(),
                    best: best.map(|(_, s)| *s),
                    samples: if best.is_some() { a.window.len() } else { 0 },
                });
            }
        }
        let mut families: Vec<Family> = probe::families(&probed);
        families.extend(
            [requests, discarded, age]
                .into_iter()
                .filter(|f| !f.samples.is_empty()),
        );
        Collected {
            families,
            errors: Vec::new(),
        }
    }
}

impl Collector for SntpCollector {
    fn collect(self: Arc<Self>) -> BoxFuture<Collected> {
        Box::pin(async move {
            if self.config.servers.is_empty() {
                return Collected::error(CollectError::NoData(format!("no --{SERVER} given")));
            }
            let task = tokio::spawn(Self::probe_due(self.config.clone(), self.state.clone()));
            if let Err(e) = task.await {
                return Collected::error(CollectError::Io(format!("SNTP probe task failed: {e}")));
            }
            self.report()
        })
    }
}

#[cfg(test)]
mod tests;
