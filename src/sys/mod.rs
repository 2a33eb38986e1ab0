//! The only place that touches the operating system: files under the
//! configured roots, the adjtimex system call, CPUID, clocks, the kernel log, interfaces,
//! and the channels the time daemons are asked on (UDP for mode 6 and SNTP,
//! cmdmon, D-Bus).

pub mod adjtimex;
pub mod cmdmon;
pub mod cpuid;
pub mod dbus;
pub mod fs;
pub mod kmsg;
pub mod net;
pub mod ptp;
pub mod tsc;
pub mod udp;

/// 64 random bits from the kernel (`getrandom(2)`): the SNTP requests'
/// transmit timestamps.
pub fn random_u64() -> Result<u64, String> {
    getrandom::u64().map_err(|e| format!("no random bytes from the kernel: {e}"))
}

/// Why a daemon's channel (mode 6, cmdmon) could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// Nothing listens there: the daemon is not running (or listens elsewhere).
    Absent(String),
    /// The operating system refused access; the message says what is missing.
    Permission(String),
    /// Any other failure.
    Io(String),
}

impl std::fmt::Display for TransportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportError::Absent(s) | TransportError::Permission(s) | TransportError::Io(s) => {
                f.write_str(s)
            }
        }
    }
}

impl std::error::Error for TransportError {}

/// What the socket tests of this module share.
#[cfg(test)]
mod test_support {
    use super::TransportError;

    /// A loopback UDP port nothing listens on (bound, then released).
    pub fn closed_udp_port() -> u16 {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("bind")
            .port()
    }

    /// The error a receive on a channel to a closed port ends with: the
    /// ICMP port-unreachable arrives at once.
    pub async fn refusal<T: std::fmt::Debug>(
        recv: impl Future<Output = Result<T, TransportError>>,
    ) -> TransportError {
        tokio::time::timeout(std::time::Duration::from_secs(2), recv)
            .await
            .expect("ICMP port unreachable arrives at once")
            .expect_err("refused")
    }
}
