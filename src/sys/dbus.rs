//! The D-Bus system bus, through zbus: one connection, kept between
//! scrapes, on which a daemon's properties are read with one
//! `org.freedesktop.DBus.Properties.GetAll`.
//!
//! Every call carries D-Bus's `NO_AUTO_START` flag. On a host whose bus
//! can activate a service (systemd ships `dbus-org.freedesktop.timesync1`),
//! a plain call to a name nobody owns would *start* the daemon: a scrape
//! must never start a host's time daemon. With the flag the bus answers
//! `ServiceUnknown` instead, which is [`CallError::NotOwned`].
//!
//! The bus address is the one every D-Bus client uses: the caller passes
//! what the user configured, else [`system_bus_address`] (the
//! `DBUS_SYSTEM_BUS_ADDRESS` environment variable, else the well-known
//! socket).

use std::collections::HashMap;
use std::io;
use std::time::Duration;

use zbus::proxy::{CacheProperties, MethodFlags};

pub use zbus::zvariant::{OwnedValue, Value};

use super::TransportError;

/// The system bus when `DBUS_SYSTEM_BUS_ADDRESS` is not set (the D-Bus
/// specification's default).
pub const DEFAULT_SYSTEM_BUS: &str = "unix:path=/var/run/dbus/system_bus_socket";

/// The system bus address: `DBUS_SYSTEM_BUS_ADDRESS`, else the default.
pub fn system_bus_address() -> String {
    std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
        .ok()
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| DEFAULT_SYSTEM_BUS.to_owned())
}

/// A daemon's properties, by name, as the bus delivered them.
pub type Properties = HashMap<String, OwnedValue>;

/// Why a property read failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The bus or the connection failed: no socket, refused, permission,
    /// a broken connection. The connection is dropped.
    Transport(TransportError),
    /// Nobody owns the name: the daemon does not run.
    NotOwned(String),
    /// The bus refused the call (its policy).
    Denied(String),
    /// The name's owner answered with an error, or with something that is
    /// not a property dictionary: the message says which.
    Answered(String),
    /// No answer before the deadline.
    Timeout,
}

/// A connection to one bus.
#[derive(Debug)]
pub struct Bus {
    connection: zbus::Connection,
}

impl Bus {
    /// Connects to the bus at `address` (a D-Bus address such as
    /// `unix:path=/run/dbus/system_bus_socket`) and says Hello, within
    /// `timeout`.
    pub async fn connect(address: &str, timeout: Duration) -> Result<Bus, TransportError> {
        let builder = zbus::connection::Builder::address(address)
            .map_err(|e| TransportError::Io(format!("D-Bus address {address:?}: {e}")))?;
        let connection = tokio::time::timeout(timeout, builder.build())
            .await
            .map_err(|_| {
                TransportError::Absent(format!(
                    "the bus at {address} did not answer within {timeout:?}"
                ))
            })?
            .map_err(|e| connect_error(address, &e))?;
        Ok(Bus { connection })
    }

    /// `GetAll(interface)` of `path` at `destination`, without starting
    /// the destination, within `timeout`.
    pub async fn get_all(
        &self,
        destination: &str,
        path: &str,
        interface: &str,
        timeout: Duration,
    ) -> Result<Properties, CallError> {
        let call = async {
            let proxy = zbus::proxy::Builder::<zbus::Proxy<'_>>::new(&self.connection)
                .destination(destination.to_owned())?
                .path(path.to_owned())?
                .interface("org.freedesktop.DBus.Properties")?
                .cache_properties(CacheProperties::No)
                .build()
                .await?;
            proxy
                .call_with_flags::<_, _, Properties>(
                    "GetAll",
                    MethodFlags::NoAutoStart.into(),
                    &(interface,),
                )
                .await
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(CallError::Timeout),
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(CallError::Answered("GetAll returned no reply".into())),
            Ok(Err(e)) => Err(call_error(destination, &e)),
        }
    }
}

fn io_error(what: &str, e: &io::Error) -> TransportError {
    let text = format!("{what}: {e}");
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => TransportError::Absent(text),
        io::ErrorKind::PermissionDenied => TransportError::Permission(text),
        _ => TransportError::Io(text),
    }
}

fn connect_error(address: &str, e: &zbus::Error) -> TransportError {
    let what = format!("the bus at {address}");
    match e {
        zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => io_error(&what, io),
        zbus::Error::Handshake(s) => TransportError::Io(format!("{what} refused us: {s}")),
        other => TransportError::Io(format!("{what}: {other}")),
    }
}

fn call_error(destination: &str, e: &zbus::Error) -> CallError {
    match e {
        zbus::Error::MethodError(name, text, _) => {
            let text = format!("{name}: {}", text.as_deref().unwrap_or(""));
            match name.as_str() {
                "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner" => CallError::NotOwned(format!(
                    "no process owns {destination} on the bus ({text})"
                )),
                "org.freedesktop.DBus.Error.AccessDenied" => {
                    CallError::Denied(format!("the bus refused the call to {destination}: {text}"))
                }
                "org.freedesktop.DBus.Error.NoReply" | "org.freedesktop.DBus.Error.Timeout" => {
                    CallError::Timeout
                }
                _ => CallError::Answered(format!("{destination} answered with an error: {text}")),
            }
        }
        zbus::Error::InputOutput(io) | zbus::Error::Connection(io, _) => {
            CallError::Transport(io_error(destination, io))
        }
        // The reply could not be read as a{sv}.
        zbus::Error::Variant(v) => CallError::Answered(format!(
            "{destination}'s answer is not a property dictionary: {v}"
        )),
        other => CallError::Answered(format!("{destination}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_socket_is_absent_and_a_bad_address_is_refused() {
        let dir = std::env::temp_dir().join(format!("clock-dbus-test-{}", std::process::id()));
        let address = format!("unix:path={}/none.sock", dir.display());
        match Bus::connect(&address, Duration::from_secs(1)).await {
            Err(TransportError::Absent(s)) => assert!(s.contains("none.sock"), "{s}"),
            other => panic!("expected absent, got {other:?}"),
        }
        match Bus::connect("carrier-pigeon:coop=3", Duration::from_secs(1)).await {
            Err(TransportError::Io(s)) => assert!(s.contains("carrier-pigeon"), "{s}"),
            other => panic!("expected a refused address, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_socket_that_never_answers_times_out() {
        // A listener that accepts and says nothing: the handshake waits.
        let dir = std::env::temp_dir().join(format!(
            "clock-dbus-silent-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("silent.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let held = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                kept.push(s);
            }
        });
        let address = format!("unix:path={}", path.display());
        let r = Bus::connect(&address, Duration::from_millis(200)).await;
        assert!(matches!(r, Err(TransportError::Absent(_))), "{r:?}");
        held.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_environment_names_the_system_bus() {
        // Read only: tests run in parallel, so the variable is not set here.
        let a = system_bus_address();
        match std::env::var("DBUS_SYSTEM_BUS_ADDRESS") {
            Ok(v) if !v.is_empty() => assert_eq!(a, v),
            _ => assert_eq!(a, DEFAULT_SYSTEM_BUS),
        }
    }
}
