//! systemd-timesyncd over D-Bus, on the shared model: an adapter of the
//! daemon collector template ([`super::daemon`]), which owns presence,
//! backoff and `clock_daemon_up`.
//!
//! One query is one `GetAll` of `org.freedesktop.timesync1.Manager` at
//! `/org/freedesktop/timesync1` on the system bus, on a connection of
//! [`crate::sys::dbus`] kept between scrapes (made again after any failure
//! of the bus). The call never starts timesyncd (`NO_AUTO_START`). The
//! properties become the shared model in [`reading`], a pure function
//! tested with literal properties: one peer, the server in use, and a
//! status whose "synchronised" the exporter derives
//! ([`Reading::synchronized`]), since timesyncd publishes none.

pub mod reading;

use std::sync::Arc;
use std::time::Duration;

use super::daemon::{Adapter, DaemonCollector, Depth, QueryError, Sequences};
use super::flags::{given, parse_duration, timeout};
use super::{CollectError, Collected, Collector, Context, Registration, unix_now};
use crate::model::{self, Daemon};
use crate::sys::TransportError;
use crate::sys::dbus::{Bus, CallError, system_bus_address};

pub use reading::Reading;

/// The collector's table entry.
pub const REGISTRATION: Registration = Registration {
    name: "timesyncd",
    help: "systemd-timesyncd's server, last NTP reply and poll interval over D-Bus",
    default_enabled: true,
    metrics: &[model::METRICS, reading::METRICS],
    args,
    build,
};

/// The bus name timesyncd owns.
pub const BUS_NAME: &str = "org.freedesktop.timesync1";
/// Its object.
pub const OBJECT_PATH: &str = "/org/freedesktop/timesync1";
/// Its interface.
pub const INTERFACE: &str = "org.freedesktop.timesync1.Manager";

const ADDRESS: &str = "collector.timesyncd.bus-address";
const TIMEOUT: &str = "collector.timesyncd.timeout";

fn args() -> Vec<clap::Arg> {
    vec![
        clap::Arg::new(ADDRESS)
            .long(ADDRESS)
            .value_name("ADDRESS")
            .help("D-Bus address of the system bus timesyncd is on (default: $DBUS_SYSTEM_BUS_ADDRESS, else unix:path=/var/run/dbus/system_bus_socket). Setting it also publishes clock_daemon_up{daemon=\"timesyncd\"} before timesyncd was ever seen."),
        clap::Arg::new(TIMEOUT)
            .long(TIMEOUT)
            .value_name("DURATION")
            .default_value("1s")
            .value_parser(parse_duration)
            .help("Longest a scrape waits for the bus and timesyncd's answer."),
    ]
}

fn build(m: &clap::ArgMatches, _: &Context) -> Result<Arc<dyn Collector>, String> {
    let address = m
        .get_one::<String>(ADDRESS)
        .cloned()
        .unwrap_or_else(system_bus_address);
    let timeout = timeout(m, TIMEOUT)?;
    let explicit = given(m, &[ADDRESS]);
    Ok(Arc::new(collector(address, timeout, explicit)))
}

/// The timesyncd collector on the bus at `address` (a D-Bus address);
/// `explicit` when the user configured it, so that `clock_daemon_up` is
/// published before timesyncd was seen.
pub fn collector(address: String, timeout: Duration, explicit: bool) -> DaemonCollector<Timesyncd> {
    DaemonCollector::new(Timesyncd { address, timeout }, explicit)
}

/// The timesyncd adapter: which bus, and how long a query may take.
#[derive(Debug)]
pub struct Timesyncd {
    address: String,
    timeout: Duration,
}

/// What the adapter keeps between scrapes: the bus connection.
#[derive(Debug, Default)]
pub struct Memory {
    bus: Option<Bus>,
}

fn transport(e: TransportError) -> QueryError {
    match e {
        TransportError::Absent(s) => QueryError::Absent(s),
        TransportError::Permission(s) | TransportError::Io(s) => QueryError::Io(s),
    }
}

impl Adapter for Timesyncd {
    type Reading = Reading;
    type Memory = Memory;
    const DAEMON: Daemon = Daemon::Timesyncd;

    fn endpoint(&self) -> String {
        format!("D-Bus {}", self.address)
    }

    async fn query(
        &self,
        _: Depth,
        _: &Sequences,
        memory: &mut Memory,
    ) -> Result<Reading, QueryError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let bus = match memory.bus.take() {
            Some(bus) => bus,
            None => Bus::connect(&self.address, self.timeout)
                .await
                .map_err(transport)?,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = bus.get_all(BUS_NAME, OBJECT_PATH, INTERFACE, left).await;
        let answered = match result {
            Ok(p) => Ok(p),
            Err(CallError::Transport(e)) => return Err(transport(e)),
            Err(CallError::Timeout) => {
                return Err(QueryError::Absent(format!(
                    "{BUS_NAME} did not answer within {:?}",
                    self.timeout
                )));
            }
            Err(CallError::NotOwned(s)) => Err(QueryError::Absent(s)),
            Err(CallError::Denied(s)) => Err(QueryError::Io(s)),
            Err(CallError::Answered(s)) => Err(QueryError::Foreign(s)),
        };
        // The connection is sound: keep it for the next scrape.
        memory.bus = Some(bus);
        let properties = answered?;
        Reading::decode(&properties, unix_now()).map_err(|e| QueryError::Foreign(e.0))
    }

    fn report(&self, reading: Reading, _: &mut Memory) -> Collected {
        let mut errors = Vec::new();
        if reading.server_address.is_none() {
            errors.push(CollectError::NoData(
                "timesyncd uses no server (none configured, or none answered)".into(),
            ));
        }
        Collected {
            families: reading.families(),
            errors,
        }
    }
}

#[cfg(test)]
mod tests;
