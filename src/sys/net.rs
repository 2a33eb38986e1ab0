//! The host's own IP addresses, and notice of when they change.

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll, Waker};

use netlink_sys::{AsyncSocket, TokioSocket, protocols};
use nix::errno::Errno;
use nix::sys::socket::{
    self, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};

/// One address of one interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct HostAddress {
    /// Interface name.
    pub interface: String,
    /// The address.
    pub address: IpAddr,
}

/// Lists the IPv4 and IPv6 addresses of every interface (getifaddrs(3)).
pub fn host_addresses() -> Result<Vec<HostAddress>, nix::Error> {
    let mut out: Vec<HostAddress> = nix::ifaddrs::getifaddrs()?
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                return None;
            };
            Some(HostAddress {
                interface: ifa.interface_name,
                address: ip,
            })
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A subscription to a netlink multicast group whose only use is "something
/// changed": every pending notice is read and dropped unparsed.
///
/// Made inside a tokio runtime, the socket is watched by the runtime's
/// reactor (netlink-sys's `TokioSocket`), which already waits in epoll for
/// the HTTP sockets: asking costs no system call while nothing came, and one
/// `recv` per notice when one did. Made outside a runtime (tests that
/// subscribe from a thread inside a network namespace), each call makes one
/// non-blocking `recv`.
pub struct NetlinkWatch {
    socket: Socket,
}

enum Socket {
    Plain(OwnedFd),
    Registered(TokioSocket),
}

impl fmt::Debug for NetlinkWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, fd) = match &self.socket {
            Socket::Plain(fd) => ("plain", fd.as_raw_fd()),
            Socket::Registered(s) => ("registered", s.as_raw_fd()),
        };
        f.debug_struct("NetlinkWatch")
            .field("socket", &kind)
            .field("fd", &fd)
            .finish()
    }
}

/// Notices read in one call at most; more left in the queue are read by the
/// next call, which then also says "changed".
const MAX_NOTICES_PER_CALL: usize = 1024;

impl NetlinkWatch {
    /// Subscribes to the kernel's notices of link and address changes, in the
    /// caller's network namespace, so that the addresses need listing again
    /// only after one. Subscribe before the first listing, so that no change
    /// is missed between the two.
    ///
    /// getifaddrs(3) dumps every link with its statistics and every address over
    /// netlink: tens of microseconds, the largest part of a scrape. The kernel
    /// sends a notice to the rtnetlink groups `RTMGRP_LINK`, `RTMGRP_IPV4_IFADDR`
    /// and `RTMGRP_IPV6_IFADDR` after every change of a link or an address
    /// (rtnetlink(7)), as `ip monitor` shows; any process may listen to them.
    pub fn addresses() -> io::Result<NetlinkWatch> {
        let groups = libc::RTMGRP_LINK | libc::RTMGRP_IPV4_IFADDR | libc::RTMGRP_IPV6_IFADDR;
        Self::subscribe(protocols::NETLINK_ROUTE, groups as u32)
    }

    /// Subscribes to the kernel's device events (uevents: the group `udevadm
    /// monitor --kernel` listens to, open to any process), sent after a device
    /// is added to or removed from sysfs, such as a PTP clock when `ptp_kvm`
    /// is loaded. Subscribe before the first listing.
    pub fn devices() -> io::Result<NetlinkWatch> {
        Self::subscribe(protocols::NETLINK_KOBJECT_UEVENT, 1)
    }

    fn subscribe(protocol: isize, groups: u32) -> io::Result<NetlinkWatch> {
        if tokio::runtime::Handle::try_current().is_ok() {
            let mut socket = TokioSocket::new(protocol)?;
            socket
                .socket_mut()
                .bind(&netlink_sys::SocketAddr::new(0, groups))?;
            return Ok(NetlinkWatch {
                socket: Socket::Registered(socket),
            });
        }
        let protocol = match protocol {
            protocols::NETLINK_ROUTE => SockProtocol::NetlinkRoute,
            _ => SockProtocol::NetlinkKObjectUEvent,
        };
        let socket = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            protocol,
        )?;
        socket::bind(socket.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
        Ok(NetlinkWatch {
            socket: Socket::Plain(socket),
        })
    }

    /// Whether the socket is watched by a runtime's reactor.
    pub fn is_registered(&self) -> bool {
        matches!(self.socket, Socket::Registered(_))
    }

    /// Whether something may have changed since the last call (or since the
    /// subscription). Every pending notice is read and dropped unparsed: any
    /// notice means "list again". A full queue (`ENOBUFS`: the kernel dropped
    /// notices) and any other error also say "changed", so a fault can cost a
    /// needless listing, never a stale one.
    ///
    /// Registered, a notice is seen once the reactor has polled epoll after
    /// it came, which it does before it runs the request that asks; a scrape
    /// racing a change may miss it, and the next one sees it.
    pub fn changed(&self) -> bool {
        match &self.socket {
            Socket::Plain(fd) => drain_plain(fd.as_raw_fd()),
            Socket::Registered(socket) => drain_registered(socket),
        }
    }
}

/// Reads pending notices with non-blocking `recv`s until `EAGAIN`.
fn drain_plain(fd: RawFd) -> bool {
    // A datagram larger than the buffer is still consumed whole.
    let mut buf = [0u8; 64];
    let mut changed = false;
    for _ in 0..MAX_NOTICES_PER_CALL {
        match socket::recv(fd, &mut buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC) {
            Ok(_) => changed = true,
            Err(Errno::EAGAIN) => return changed,
            Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
    true
}

/// Reads pending notices while the reactor says the socket is readable. Its
/// readiness is only looked at, never waited for: nobody is woken.
fn drain_registered(socket: &TokioSocket) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let mut changed = false;
    for _ in 0..MAX_NOTICES_PER_CALL {
        // A datagram larger than the buffer is still consumed whole.
        let mut buf = [0u8; 64];
        match socket.poll_recv(&mut cx, &mut &mut buf[..]) {
            Poll::Pending => return changed,
            Poll::Ready(Ok(())) => changed = true,
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
            Poll::Ready(Err(_)) => return true,
        }
    }
    true
}
