//! The sockets chrony's command protocol travels on: UDP to chronyd's command
//! port, or chronyd's unix datagram socket.
//!
//! On the unix socket chronyd answers a datagram by sending to the address it
//! came from, so the client must bind a socket file of its own. chronyc binds
//! `chronyc.<pid>.sock` in the directory of chronyd's socket, and so does the
//! exporter (`clock_exporter.<pid>.<n>.sock`): chronyd's AppArmor profile on
//! Debian and Ubuntu lets it write only there. The file is made writable for
//! everyone (0666, as chronyc does) because chronyd runs as another user
//! (`_chrony`), and a [`SocketFile`] guard removes it whenever the connection
//! is dropped: after the query, on an error, on a panic, and when the scrape's
//! timeout abandons the query.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{UdpSocket, UnixDatagram};

use super::TransportError;

/// Where chronyd listens for commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// chronyd's command port (`cmdport`, UDP 323 by default).
    Udp(SocketAddr),
    /// chronyd's unix socket (`bindcmdaddress /path`, `/run/chrony/chronyd.sock` by default).
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Udp(a) => write!(f, "udp {a}"),
            Endpoint::Unix(p) => write!(f, "unix {}", p.display()),
        }
    }
}

/// Identifies one incarnation of chronyd's unix socket: chronyd removes and
/// re-creates the file every time it starts, so a change means a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketIdentity {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Change time of the file, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

/// Removes the client's socket file when dropped.
#[derive(Debug)]
pub struct SocketFile(PathBuf);

impl SocketFile {
    /// The path of the file.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "cannot remove the exporter's chrony client socket");
        }
    }
}

/// A connected command channel.
#[derive(Debug)]
pub struct Connection {
    inner: Inner,
    endpoint: Endpoint,
}

#[derive(Debug)]
enum Inner {
    Udp(UdpSocket),
    Unix {
        socket: UnixDatagram,
        // Declared after the socket, so the socket closes before the file
        // goes. Held for its Drop, which removes the file; read by tests.
        #[cfg_attr(not(test), allow(dead_code))]
        file: SocketFile,
        identity: Option<SocketIdentity>,
    },
}

static CLIENT_SOCKETS: AtomicU64 = AtomicU64::new(0);

impl Connection {
    /// Opens a channel to chronyd.
    pub async fn open(endpoint: &Endpoint) -> Result<Connection, TransportError> {
        let inner = match endpoint {
            Endpoint::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() {
                    (Ipv4Addr::UNSPECIFIED, 0).into()
                } else {
                    (Ipv6Addr::UNSPECIFIED, 0).into()
                };
                let socket = UdpSocket::bind(local)
                    .await
                    .map_err(|e| TransportError::Io(format!("cannot open a UDP socket: {e}")))?;
                socket
                    .connect(addr)
                    .await
                    .map_err(|e| classify(endpoint, "connect to", &e))?;
                Inner::Udp(socket)
            }
            Endpoint::Unix(server) => open_unix(endpoint, server)?,
        };
        Ok(Connection {
            inner,
            endpoint: endpoint.clone(),
        })
    }

    /// Where it goes.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The identity of chronyd's socket file at the time of connecting.
    pub fn socket_identity(&self) -> Option<SocketIdentity> {
        match &self.inner {
            Inner::Unix { identity, .. } => *identity,
            Inner::Udp(_) => None,
        }
    }

    /// The client's own socket file, for the unix channel.
    #[cfg(test)]
    pub fn client_file(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Unix { file, .. } => Some(file.path()),
            Inner::Udp(_) => None,
        }
    }

    /// Sends one datagram.
    pub async fn send(&self, b: &[u8]) -> Result<(), TransportError> {
        let r = match &self.inner {
            Inner::Udp(s) => s.send(b).await,
            Inner::Unix { socket, .. } => socket.send(b).await,
        };
        r.map(|_| ())
            .map_err(|e| classify(&self.endpoint, "send to", &e))
    }

    /// Receives one datagram into `buf`, returning its length.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, TransportError> {
        let r = match &self.inner {
            Inner::Udp(s) => s.recv(buf).await,
            Inner::Unix { socket, .. } => socket.recv(buf).await,
        };
        r.map_err(|e| classify(&self.endpoint, "receive from", &e))
    }
}

fn open_unix(endpoint: &Endpoint, server: &Path) -> Result<Inner, TransportError> {
    let identity = match std::fs::metadata(server) {
        Ok(m) => Some(SocketIdentity {
            dev: m.dev(),
            ino: m.ino(),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }),
        Err(e) => return Err(classify(endpoint, "reach", &e)),
    };
    let dir = server
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let n = CLIENT_SOCKETS.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("clock_exporter.{}.{n}.sock", std::process::id()));
    // A file of this name can only be left by an earlier process with our
    // pid that was killed mid-query, as chronyc also assumes.
    let _ = std::fs::remove_file(&path);
    let socket = UnixDatagram::bind(&path).map_err(|e| {
        if is_permission(&e) {
            TransportError::Permission(format!(
                "cannot create the exporter's reply socket {}: {e}. chronyd answers only to a \
                 socket in its own directory, so the exporter needs write access to {}: run it \
                 as chronyd's user, or make the directory group-writable (0770, the most chronyd \
                 accepts){}",
                path.display(),
                dir.display(),
                group_hint(dir)
            ))
        } else {
            TransportError::Io(format!("cannot bind {}: {e}", path.display()))
        }
    })?;
    let file = SocketFile(path);
    std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o666))
        .map_err(|e| TransportError::Io(format!("cannot chmod {}: {e}", file.path().display())))?;
    socket
        .connect(server)
        .map_err(|e| classify(endpoint, "connect to", &e))?;
    Ok(Inner::Unix {
        socket,
        file,
        identity,
    })
}

fn is_permission(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::PermissionDenied
}

/// Sorts an IO error into absent daemon, missing permission, or other.
fn classify(endpoint: &Endpoint, what: &str, e: &io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => TransportError::Absent(format!(
            "nothing listens on {endpoint} (is chronyd running? its cmdport or bindcmdaddress may differ)"
        )),
        io::ErrorKind::NotFound => TransportError::Absent(format!(
            "no chronyd socket at {endpoint} (is chronyd running? its bindcmdaddress may differ)"
        )),
        io::ErrorKind::PermissionDenied => {
            let hint = match endpoint {
                Endpoint::Unix(p) => format!(
                    ": the exporter needs search access to {} and write access to chronyd's \
                     socket, i.e. membership of the group that owns them{}",
                    p.parent().unwrap_or(Path::new("/")).display(),
                    group_hint(p.parent().unwrap_or(Path::new("/")))
                ),
                Endpoint::Udp(_) => String::new(),
            };
            TransportError::Permission(format!("cannot {what} {endpoint}: {e}{hint}"))
        }
        _ => TransportError::Io(format!("cannot {what} {endpoint}: {e}")),
    }
}

/// Names the group owning `dir` and the user the exporter runs as.
fn group_hint(dir: &Path) -> String {
    let user = nix::unistd::geteuid();
    let owner = std::fs::metadata(dir).ok().map(|m| {
        let gid = nix::unistd::Gid::from_raw(m.gid());
        nix::unistd::Group::from_gid(gid)
            .ok()
            .flatten()
            .map_or_else(|| gid.to_string(), |g| g.name)
    });
    match owner {
        Some(g) => format!(" (the directory's group is {g}; the exporter runs as uid {user})"),
        None => format!(" (the exporter runs as uid {user})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::test_support::{closed_udp_port, refusal};

    #[tokio::test]
    async fn client_socket_file_is_removed_on_drop_and_absent_daemons_are_named() {
        let test_dir = crate::sys::fs::TestDir::new("cmdmon");
        let dir = test_dir.path().to_path_buf();
        let server_path = dir.join("chronyd.sock");
        // No server socket: absent.
        let absent = Connection::open(&Endpoint::Unix(server_path.clone()))
            .await
            .expect_err("absent");
        assert!(matches!(absent, TransportError::Absent(_)), "{absent}");
        // A server socket: the client binds its own file beside it, 0666.
        let server = UnixDatagram::bind(&server_path).expect("bind server");
        let conn = Connection::open(&Endpoint::Unix(server_path.clone()))
            .await
            .expect("open");
        let client_file = conn.client_file().expect("file").to_path_buf();
        assert_eq!(client_file.parent(), Some(dir.as_path()));
        let mode = std::fs::metadata(&client_file)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o666);
        conn.send(b"ping").await.expect("send");
        let mut buf = [0u8; 8];
        let (len, from) = server.recv_from(&mut buf).await.expect("recv");
        assert_eq!(&buf[..len], b"ping");
        server
            .send_to(b"pong", from.as_pathname().expect("path"))
            .await
            .expect("reply");
        assert_eq!(conn.recv(&mut buf).await.expect("recv"), 4);
        assert!(conn.socket_identity().is_some());
        drop(conn);
        assert!(!client_file.exists(), "client socket file left behind");
        // A panic while connected also removes it.
        let p = server_path.clone();
        let h = tokio::spawn(async move {
            let c = Connection::open(&Endpoint::Unix(p)).await.expect("open");
            let f = c.client_file().expect("file").to_path_buf();
            assert!(f.exists());
            panic!("deliberate panic holding {}", f.display());
        });
        assert!(h.await.is_err());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("read dir")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().starts_with("clock_exporter."))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        drop(server);
    }

    #[tokio::test]
    async fn udp_with_nothing_listening_is_absent_at_once() {
        let port = closed_udp_port();
        let c = Connection::open(&Endpoint::Udp(([127, 0, 0, 1], port).into()))
            .await
            .expect("open");
        c.send(b"x").await.expect("send");
        let mut buf = [0u8; 8];
        let e = refusal(c.recv(&mut buf)).await;
        assert!(matches!(e, TransportError::Absent(_)), "{e}");
    }
}
