//! The host's own IP addresses.

use std::net::IpAddr;

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
