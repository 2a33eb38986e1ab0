//! The test lab: real daemons in network namespaces, never touching this
//! machine's clock, its network beyond loopback, or its own time daemon.
//!
//! - A test describes its hosts by role and name with [`Lab::builder`]
//!   (`topology.rs`); every address comes from the one plan (`plan.rs`).
//! - Binaries come from the cache `scripts/lab-fetch` unpacks (`dpkg -x`,
//!   never installed); `CLOCK_LAB_ROOT` points at it, or the lab runs the
//!   script itself.
//! - Every host is a network namespace the test creates, linked to the
//!   client by a veth pair on documentation addresses, and deleted on drop
//!   (`netns.rs`).
//! - Every process is killed on drop, before the namespace it runs in,
//!   also when the test panics (`process.rs`).
//! - chronyd always runs with `-x` (never adjust the clock); ntpd with
//!   `disable ntp` (`daemons.rs`). A server that is wrong on purpose is the
//!   test responder (`responder.rs`).
//!
//! Lab tests need root (namespaces) and are `#[ignore]`d so that a plain
//! `cargo test` stays green without root; `scripts/test` runs them with
//! `--include-ignored`, so CI runs them. Test crates reach this module one
//! way, as `common::lab` (`tests/common/mod.rs`); the benchmarks include it
//! directly.
#![allow(dead_code, clippy::missing_panics_doc)]

mod auth;
// A CA made on the spot: the lab's NTS certificates, and the web
// configuration's tests (through `common::ca`).
#[path = "../common/ca.rs"]
pub mod ca;
mod daemons;
mod exporter;
mod netns;
pub mod plan;
mod process;
mod responder;
mod topology;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

// Each crate uses its own part of the lab.
#[allow(unused_imports)]
pub use auth::ServerAuth;
#[allow(unused_imports)]
pub use daemons::{
    Chronyd, Daemon, DbusDaemon, Ntpd, SERVE_LOCAL_CLOCK, Timesyncd, honest_server_conf, lib_path,
    systemd_lib_path,
};
#[allow(unused_imports)]
pub use exporter::{Exporter, exporter_bin, http_get, only_collectors, sample};
#[allow(unused_imports)]
pub use netns::{Netns, in_netns, link};
#[allow(unused_imports)]
pub use process::{Proc, TempDir, free_port, wait_for};
#[allow(unused_imports)]
pub use responder::{Answer, SkewedServer};
#[allow(unused_imports)]
pub use topology::{Lab, LabBuilder};

/// The unpacked lab root (the `dpkg -x` target).
pub fn root() -> PathBuf {
    if let Some(r) = std::env::var_os("CLOCK_LAB_ROOT").filter(|r| !r.is_empty()) {
        return PathBuf::from(r);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lab-fetch");
    let out = Command::new(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed; the lab needs the unpacked daemons",
        script.display()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Fails the test (never skips it) when not root.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "lab tests need root for network namespaces: run scripts/test as root (CI does)"
    );
}
