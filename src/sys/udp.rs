//! A connected UDP socket, the channel of ntpd's mode-6 control protocol
//! and of SNTP probes: bound to an ephemeral port (which Linux picks at
//! random, RFC 6056, as RFC 9109 asks of NTP clients) and connected, so
//! that the kernel drops datagrams from any other address or port and
//! reports ICMP port-unreachable as a refusal.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::net::UdpSocket;

use super::TransportError;

/// A connected UDP channel.
#[derive(Debug)]
pub struct Connection {
    socket: UdpSocket,
    address: SocketAddr,
}

impl Connection {
    /// Opens a channel to `address`.
    pub async fn open(address: SocketAddr) -> Result<Connection, TransportError> {
        let local = match address {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let socket = UdpSocket::bind(local)
            .await
            .map_err(|e| TransportError::Io(format!("cannot open a UDP socket: {e}")))?;
        socket
            .connect(address)
            .await
            .map_err(|e| classify(address, "connect to", &e))?;
        Ok(Connection { socket, address })
    }

    /// Where it goes.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Sends one datagram.
    pub async fn send(&self, datagram: &[u8]) -> Result<(), TransportError> {
        self.socket
            .send(datagram)
            .await
            .map(|_| ())
            .map_err(|e| classify(self.address, "send to", &e))
    }

    /// Receives one datagram into `buf`, returning its length; a datagram
    /// longer than `buf` is cut to it.
    pub async fn recv(&self, buf: &mut [u8]) -> Result<usize, TransportError> {
        self.socket
            .recv(buf)
            .await
            .map_err(|e| classify(self.address, "receive from", &e))
    }
}

/// Sorts an IO error into absent daemon, missing permission, or other.
fn classify(address: SocketAddr, what: &str, e: &io::Error) -> TransportError {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            TransportError::Absent(format!("connection to {address} refused: nothing listens"))
        }
        io::ErrorKind::PermissionDenied => {
            TransportError::Permission(format!("cannot {what} {address}: {e}"))
        }
        _ => TransportError::Io(format!("cannot {what} {address}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::test_support::{closed_udp_port, refusal};

    #[tokio::test]
    async fn a_closed_port_is_absent_at_once() {
        let port = closed_udp_port();
        let c = Connection::open(([127, 0, 0, 1], port).into())
            .await
            .expect("open");
        c.send(b"x").await.expect("send");
        let mut buf = [0u8; 8];
        assert_eq!(
            refusal(c.recv(&mut buf)).await,
            TransportError::Absent(format!(
                "connection to 127.0.0.1:{port} refused: nothing listens"
            ))
        );
    }
}
