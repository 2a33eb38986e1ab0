//! The lab's one address plan: an address means the same role in every
//! test. Documentation ranges only, and only inside namespaces the lab
//! creates.
//!
//! | address | role |
//! |---|---|
//! | 192.0.2.1 | `client`: the host under test (its daemon, our exporter) |
//! | 192.0.2.11, .13–.29 | `honest`: chronyd synchronised to its own reference, in the order a lab adds them |
//! | 192.0.2.12 | the first `skewed` responder: the seed's vB |
//! | 192.0.2.31–.34 | `downstream`: hosts that ask the client for time |
//! | 192.0.2.41–.43 | further `skewed` responders |
//! | 192.0.2.51–.54 | `drifting` responders |
//! | 192.0.2.61–.64 | `free_running`: chronyd serving its own clock (`local stratum 8`), no upstream |
//! | 192.0.2.71–.72 | `kissing`: responders that answer with a kiss-o'-death |
//! | 192.0.2.73–.74 | `forging`: responders whose replies carry the wrong origin timestamp |
//! | 192.0.2.75–.76 | `silent`: responders that never answer |
//! | 192.0.2.77 | an address a test adds and removes itself, in a lone namespace |
//! | 192.0.2.78–.79 | `leaping`: responders with the right time that announce a leap second |
//! | 198.51.100.7 | the reference ID the responders announce; no host has it |
//! | 198.51.100.8 | each honest server's reference: a responder with no offset on the server's own loopback, port 1123 (the server announces this address as its reference ID) |
//! | 198.51.100.20–.24 | sources a client is told to poll that no host has (no route: nothing leaves the namespace) |
//!
//! The seed's pair keeps the numbers the alert rules' tests, the docs and the
//! captured chrony fixtures use: vA (honest) 192.0.2.11, vB (11.5 s ahead)
//! 192.0.2.12.

use std::net::Ipv4Addr;

const fn doc(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

/// The host under test.
pub const CLIENT: Ipv4Addr = doc(1);
/// Honest chronyd servers, in the order a lab adds them: vA first.
pub const HONEST: [Ipv4Addr; 18] = [
    doc(11),
    doc(13),
    doc(14),
    doc(15),
    doc(16),
    doc(17),
    doc(18),
    doc(19),
    doc(20),
    doc(21),
    doc(22),
    doc(23),
    doc(24),
    doc(25),
    doc(26),
    doc(27),
    doc(28),
    doc(29),
];
/// Responders with a fixed offset: the seed's vB first.
pub const SKEWED: [Ipv4Addr; 4] = [doc(12), doc(41), doc(42), doc(43)];
/// Responders whose clock runs at a rate.
pub const DRIFTING: [Ipv4Addr; 4] = [doc(51), doc(52), doc(53), doc(54)];
/// chronyd servers with no upstream, serving their local clock.
pub const FREE_RUNNING: [Ipv4Addr; 4] = [doc(61), doc(62), doc(63), doc(64)];
/// Where each honest server's reference answers, on that server's own
/// loopback: nothing of it leaves the server's namespace.
pub const HONEST_REFERENCE: std::net::SocketAddrV4 =
    std::net::SocketAddrV4::new(Ipv4Addr::new(198, 51, 100, 8), 1123);
/// Hosts that ask the client for time.
pub const DOWNSTREAM: [Ipv4Addr; 4] = [doc(31), doc(32), doc(33), doc(34)];
/// Responders that send a kiss-o'-death.
pub const KISSING: [Ipv4Addr; 2] = [doc(71), doc(72)];
/// Responders whose replies fail the origin check.
pub const FORGING: [Ipv4Addr; 2] = [doc(73), doc(74)];
/// Responders that never answer.
pub const SILENT: [Ipv4Addr; 2] = [doc(75), doc(76)];
/// Responders that announce a leap second (LI 1) with the right time.
pub const LEAPING: [Ipv4Addr; 2] = [doc(78), doc(79)];
/// An address a test adds to and removes from a lone namespace.
pub const ADDED: Ipv4Addr = doc(77);
/// The reference ID every responder announces (its "upstream"): no host.
pub const RESPONDER_REFID: [u8; 4] = [198, 51, 100, 7];
/// Sources a client may be configured to poll that no host has: the
/// namespace has no route to them, so nothing is sent anywhere.
pub const UNROUTED: [Ipv4Addr; 5] = [
    Ipv4Addr::new(198, 51, 100, 20),
    Ipv4Addr::new(198, 51, 100, 21),
    Ipv4Addr::new(198, 51, 100, 22),
    Ipv4Addr::new(198, 51, 100, 23),
    Ipv4Addr::new(198, 51, 100, 24),
];
