//! Datagrams captured from NTPsec 1.2.2, shared by the tests of the decoder
//! and of the ntpd collector (tests/fixtures/mode6/README.md says how).

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/mode6/",
            $name
        ))
        .as_slice()
    };
}

/// The association list: 17769 falsetick, 17768 candidate, 17767 sys.peer.
pub const READSTAT: &[u8] = fixture!("readstat.0.bin");
/// The default system variables.
pub const SYSTEM: &[u8] = fixture!("readvar-system.0.bin");
/// `ss_received`.
pub const SYSSTATS: &[u8] = fixture!("readvar-sysstats.0.bin");
/// `ss_received_r,ss_numctlreq`.
pub const SYSSTATS_NTPSEC: &[u8] = fixture!("readvar-sysstats-ntpsec.0.bin");
/// Association 17767, 192.0.2.11, the system peer: two fragments.
pub const HONEST_A: [&[u8]; 2] = [
    fixture!("readvar-peer-honest-a.0.bin"),
    fixture!("readvar-peer-honest-a.1.bin"),
];
/// Association 17768, 192.0.2.12, a candidate: two fragments.
pub const HONEST_B: [&[u8]; 2] = [
    fixture!("readvar-peer-honest-b.0.bin"),
    fixture!("readvar-peer-honest-b.1.bin"),
];
/// Association 17769, 192.0.2.13, 11.5 s ahead, a falseticker: two fragments.
pub const SKEWED: [&[u8]; 2] = [
    fixture!("readvar-peer-skewed.0.bin"),
    fixture!("readvar-peer-skewed.1.bin"),
];
/// Error response: unknown association.
pub const BAD_ASSOCIATION: &[u8] = fixture!("error-bad-association.0.bin");
/// Error response: unknown variable.
pub const UNKNOWN_VARIABLE: &[u8] = fixture!("error-unknown-variable.0.bin");
/// ntpq's request for `associations`.
pub const NTPQ_READSTAT: &[u8] = fixture!("ntpq-request-readstat.bin");
/// ntpq's request for `rv 0 ss_received`.
pub const NTPQ_READVAR: &[u8] = fixture!("ntpq-request-readvar.bin");

/// Datagrams captured from the served lab (tests/fixtures/mode6/README.md,
/// "served"): ntpd polling one chronyd, after a client's five requests.
pub mod served_lab {
    /// The association list: 17767, the upstream server, sys.peer.
    pub const READSTAT: &[u8] = fixture!("served/readstat.0.bin");
    /// The default system variables.
    pub const SYSTEM: &[u8] = fixture!("served/readvar-system.0.bin");
    /// `SystemStats::QUERY`.
    pub const SYSSTATS: &[u8] = fixture!("served/readvar-sysstats.0.bin");
    /// `SystemStats::QUERY_NTPSEC`.
    pub const SYSSTATS_NTPSEC: &[u8] = fixture!("served/readvar-sysstats-ntpsec.0.bin");
    /// Association 17767's default variables: two fragments.
    pub const UPSTREAM: [&[u8]; 2] = [
        fixture!("served/readvar-peer-upstream.0.bin"),
        fixture!("served/readvar-peer-upstream.1.bin"),
    ];
    /// Association 17767's `PeerCounters::QUERY`.
    pub const UPSTREAM_COUNTERS: &[u8] = fixture!("served/readvar-counters-upstream.0.bin");
}
