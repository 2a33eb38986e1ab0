//! Network namespaces, each a host of the lab, linked by veth pairs.

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};

use super::process::next_id;
use super::require_root;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deletes namespaces left by earlier test processes that died without
/// cleaning up (named `ce<pid>n<k>`, and that pid is gone).
fn remove_stale_namespaces() {
    let Ok(rd) = std::fs::read_dir("/var/run/netns") else {
        return;
    };
    for e in rd.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("ce") else {
            continue;
        };
        let Some((pid, _)) = rest.split_once('n') else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// A network namespace with loopback up; deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Netns {
        require_root();
        remove_stale_namespaces();
        let name = format!("ce{}n{}", std::process::id(), next_id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Gives the namespace's loopback one more address, gone with it.
    pub fn add_loopback_address(&self, addr: Ipv4Addr) {
        ip(&[
            "-n",
            &self.name,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            "lo",
        ]);
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        netns_command(Some(&self.name), program)
    }

    /// Runs a command in the namespace to completion.
    pub fn run(&self, program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
        self.command(program)
            .args(args)
            .output()
            .expect("run command in namespace")
    }

    /// Runs `f` on a thread that has entered this namespace: sockets it
    /// opens live in the namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        in_netns(&self.name, f)
    }
}

impl Default for Netns {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A command that runs in the named namespace, or on this host for `None`.
pub fn netns_command(netns: Option<&str>, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let Some(name) = netns else {
        return Command::new(program);
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", name]).arg(program);
    c
}

/// Runs `f` on a thread inside the named namespace.
pub fn in_netns<T: Send + 'static>(name: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/var/run/netns/{name}");
    std::thread::spawn(move || {
        enter_netns(&path);
        f()
    })
    .join()
    .expect("thread in namespace panicked")
}

/// Moves the calling thread into the namespace at `path`.
pub(crate) fn enter_netns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

/// Links two namespaces with a veth pair and gives each end an address
/// (both in 192.0.2.0/24 or 198.51.100.0/24, see [`super::plan`]).
pub fn link(a: &Netns, a_addr: Ipv4Addr, b: &Netns, b_addr: Ipv4Addr) {
    let k = next_id();
    let (ia, ib) = (format!("va{k}"), format!("vb{k}"));
    ip(&[
        "link", "add", &ia, "netns", &a.name, "type", "veth", "peer", "name", &ib, "netns", &b.name,
    ]);
    for (ns, ifname, addr) in [(a, &ia, a_addr), (b, &ib, b_addr)] {
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            ifname,
        ]);
        ip(&["-n", &ns.name, "link", "set", ifname, "up"]);
    }
    // Point-to-point routes, so several links can share one /24 plan.
    for (ns, ifname, to) in [(a, &ia, b_addr), (b, &ib, a_addr)] {
        ip(&[
            "-n",
            &ns.name,
            "route",
            "add",
            &format!("{to}/32"),
            "dev",
            ifname,
        ]);
    }
}
