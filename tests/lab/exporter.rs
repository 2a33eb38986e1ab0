//! Our exporter, the built binary, started beside a lab client or on this
//! host's loopback, and read the way Prometheus reads it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use super::netns::{Netns, in_netns, netns_command};
use super::process::{Proc, TempDir, free_port, wait_for};

/// The built exporter binary.
pub fn exporter_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clock_exporter"))
}

/// A plain HTTP/1.0 GET (no client crate needed), returning status and body.
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of a sample line `name{labels} value` in text exposition output,
/// where `selector` is the part before the value, e.g.
/// `clock_peer_state{daemon="ntpd",peer="192.0.2.12",state="falseticker"}`.
pub fn sample(body: &str, selector: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(selector)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Flags that disable every collector but the named ones, from the
/// exporter's own table, so a test is not affected by daemons on this host.
pub fn only_collectors(keep: &[&str]) -> Vec<String> {
    clock_exporter::testing::collector::REGISTRY
        .iter()
        .filter(|r| !keep.contains(&r.name))
        .map(|r| format!("--no-collector.{}", r.name))
        .collect()
}

/// A running exporter, killed on drop: in a lab namespace on
/// 127.0.0.1:9857 (logging at debug level), or on a free port of this
/// host's loopback (no namespace, no root needed).
#[derive(Debug)]
pub struct Exporter {
    pub proc: Proc,
    pub dir: TempDir,
    pub addr: String,
    netns: Option<String>,
}

impl Exporter {
    /// Starts the exporter in `ns` with extra flags, and waits until it answers.
    pub fn start(ns: &Netns, args: &[&str]) -> Exporter {
        let flags = ["--log.level", "debug"]
            .into_iter()
            .chain(args.iter().copied());
        Self::spawn(Some(ns.name.clone()), "127.0.0.1:9857".to_owned(), flags)
    }

    /// Starts the exporter in `ns` listening on `addr` (a lab address, so
    /// that another namespace scrapes it), and waits until it answers.
    pub fn start_on(ns: &Netns, addr: SocketAddr, args: &[&str]) -> Exporter {
        Self::spawn(
            Some(ns.name.clone()),
            addr.to_string(),
            args.iter().copied(),
        )
    }

    /// Starts the exporter on this host's loopback with these flags.
    pub fn local(args: &[&str]) -> Exporter {
        let addr = format!("127.0.0.1:{}", free_port());
        Self::spawn(None, addr, args.iter().copied())
    }

    fn spawn<'a>(
        netns: Option<String>,
        addr: String,
        args: impl IntoIterator<Item = &'a str>,
    ) -> Exporter {
        let dir = TempDir::new("exporter");
        let mut cmd = netns_command(netns.as_deref(), exporter_bin());
        // Never this machine's system bus: a test that wants timesyncd
        // gives its lab bus (--collector.timesyncd.bus-address).
        let no_bus = format!("unix:path={}/no-system-bus", dir.path().display());
        cmd.env("DBUS_SYSTEM_BUS_ADDRESS", no_bus)
            .args(["--web.listen-address", &addr])
            .args(args);
        let proc = Proc::spawn(cmd, dir.path().join("exporter.log"), "clock_exporter");
        let mut exporter = Exporter {
            proc,
            dir,
            addr,
            netns,
        };
        // Any answer says it listens; not `/`, whose landing page scrapes,
        // which would make a test's first scrape the exporter's second.
        wait_for("exporter to answer", Duration::from_secs(10), || {
            exporter.proc.assert_running();
            exporter.try_get("/-/not-a-page", None).ok().map(|_| ())
        });
        exporter
    }

    fn try_get(&self, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
        let Some(netns) = &self.netns else {
            return http_get(&self.addr, path, accept);
        };
        let (addr, path, accept) = (
            self.addr.clone(),
            path.to_owned(),
            accept.map(str::to_owned),
        );
        in_netns(netns, move || http_get(&addr, &path, accept.as_deref()))
    }

    /// GET a path (from inside the exporter's namespace, if any); panics
    /// on connection errors.
    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        self.try_get(path, accept).expect("GET from exporter")
    }

    /// `/metrics` in the classic text format, asserting 200.
    pub fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200, "{body}");
        body
    }
}
