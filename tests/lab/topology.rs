//! One lab builder: hosts by role and name, addresses from [`super::plan`],
//! torn down in order.
//!
//! ```ignore
//! let lab = Lab::builder()
//!     .client(Daemon::Chronyd)
//!     .honest("a")
//!     .skewed("b", 11.5)
//!     .build();
//! let exporter = lab.exporter(&[]);
//! let b = lab.addr("b"); // 192.0.2.12, the first of the skewed pool
//! ```
//!
//! Every host is a namespace linked to the client's. The client polls
//! every server role, in the order added, with [`Daemon::poll_options`].
//! A new role is one more [`Role`] variant and its pool in the plan.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::auth::{Secrets, ServerAuth};
use super::daemons::{
    Chronyd, Daemon, DbusDaemon, Ntpd, SERVE_LOCAL_CLOCK, Timesyncd, honest_server_conf,
};
use super::exporter::Exporter;
use super::netns::{Netns, link};
use super::plan;
use super::process::wait_for;
use super::responder::{Answer, SkewedServer};

/// What a host of the lab is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    /// chronyd synchronised to a reference of its own (a responder with no
    /// offset on the host's loopback, [`plan::HONEST_REFERENCE`]).
    Honest,
    /// chronyd serving its local clock (`local stratum 8`), no upstream.
    FreeRunning,
    /// The responder, this many seconds ahead.
    Skewed(f64),
    /// The responder, its clock running fast by this many ppm.
    Drifting(f64),
    /// Nothing running: a host that may ask the client for time.
    Downstream,
    /// The responder, answering with a kiss-o'-death of this code.
    Kissing([u8; 4]),
    /// The responder, its replies failing the origin check.
    Forging,
    /// The responder, never answering.
    Silent,
    /// The responder, with the right time and a leap second announced.
    Leaping,
}

impl Role {
    fn pool(self) -> &'static [Ipv4Addr] {
        match self {
            Role::Honest => &plan::HONEST,
            Role::FreeRunning => &plan::FREE_RUNNING,
            Role::Skewed(_) => &plan::SKEWED,
            Role::Drifting(_) => &plan::DRIFTING,
            Role::Downstream => &plan::DOWNSTREAM,
            Role::Kissing(_) => &plan::KISSING,
            Role::Forging => &plan::FORGING,
            Role::Silent => &plan::SILENT,
            Role::Leaping => &plan::LEAPING,
        }
    }

    /// Roles of one kind share a pool, whatever their parameters.
    fn same_kind(self, other: Role) -> bool {
        std::mem::discriminant(&self) == std::mem::discriminant(&other)
    }
}

/// What runs on a host, stopped before its namespace goes.
#[derive(Debug)]
enum Running {
    Chronyd(Chronyd),
    /// An honest server and its reference (fields drop in order: chronyd
    /// first).
    Honest(Chronyd, SkewedServer),
    Responder(SkewedServer),
    Nothing,
}

#[derive(Debug)]
struct Host {
    name: String,
    addr: Ipv4Addr,
    role: Role,
    // Declaration order is drop order: the process before its namespace.
    running: Running,
    ns: Netns,
}

/// The client's time daemon.
#[derive(Debug)]
enum ClientDaemon {
    Chronyd(Chronyd),
    Ntpd(Ntpd),
    /// timesyncd and its bus (fields drop in order: timesyncd first).
    Timesyncd(Option<Timesyncd>, DbusDaemon),
}

/// Describes a lab; [`LabBuilder::build`] starts it.
#[derive(Debug, Default)]
#[must_use]
pub struct LabBuilder {
    daemon: Option<Daemon>,
    client_conf: String,
    roles: Vec<(String, Role)>,
    noselect: Vec<String>,
    auth: Vec<(String, ServerAuth)>,
}

impl LabBuilder {
    /// The client runs `daemon` (without one, it is a bare host).
    pub fn client(mut self, daemon: Daemon) -> Self {
        self.daemon = Some(daemon);
        self
    }

    /// More lines for the client daemon's configuration, after the
    /// `server` lines.
    pub fn client_conf(mut self, lines: &str) -> Self {
        self.client_conf.push_str(lines);
        self.client_conf.push('\n');
        self
    }

    /// An honest chronyd server on the next honest address, synchronised
    /// to its own reference (it answers as unsynchronised for its first
    /// seconds).
    pub fn honest(self, name: &str) -> Self {
        self.role(name, Role::Honest)
    }

    /// A chronyd server with no upstream that serves its own clock
    /// (`local stratum 8`): what a server that lost its upstream does.
    pub fn free_running(self, name: &str) -> Self {
        self.role(name, Role::FreeRunning)
    }

    /// The test responder, `offset` seconds ahead of this machine's clock.
    pub fn skewed(self, name: &str, offset: f64) -> Self {
        self.role(name, Role::Skewed(offset))
    }

    /// The test responder, its clock running `ppm` parts per million fast
    /// (slow when negative) from the moment it starts.
    pub fn drifting(self, name: &str, ppm: f64) -> Self {
        self.role(name, Role::Drifting(ppm))
    }

    /// A host with nothing running, linked to the client, from which a
    /// test may ask the client for time.
    pub fn downstream(self, name: &str) -> Self {
        self.role(name, Role::Downstream)
    }

    /// The test responder answering every request with a kiss-o'-death
    /// of `code` (`*b"RATE"`, say).
    pub fn kissing(self, name: &str, code: [u8; 4]) -> Self {
        self.role(name, Role::Kissing(code))
    }

    /// The test responder whose replies carry the wrong origin timestamp.
    pub fn forging(self, name: &str) -> Self {
        self.role(name, Role::Forging)
    }

    /// The test responder, bound but never answering.
    pub fn silent(self, name: &str) -> Self {
        self.role(name, Role::Silent)
    }

    /// The test responder, honest but announcing a leap second (LI 1).
    pub fn leaping(self, name: &str) -> Self {
        self.role(name, Role::Leaping)
    }

    /// The honest server `name` serves NTS with a certificate from the CA
    /// the client trusts, and the client polls it with `nts` (chronyd).
    pub fn nts(self, name: &str) -> Self {
        self.authenticated(name, ServerAuth::Nts { trusted: true })
    }

    /// As [`Self::nts`], but the certificate comes from a CA the client
    /// does not trust: NTS key establishment fails.
    pub fn nts_untrusted(self, name: &str) -> Self {
        self.authenticated(name, ServerAuth::Nts { trusted: false })
    }

    /// The honest server `name` holds a symmetric key, and the client polls
    /// it with that key (`right`) or with another value under its id.
    pub fn keyed(self, name: &str, right: bool) -> Self {
        self.authenticated(name, ServerAuth::Key { right })
    }

    fn authenticated(mut self, name: &str, auth: ServerAuth) -> Self {
        assert!(
            self.roles
                .iter()
                .any(|(n, r)| n == name && *r == Role::Honest),
            "{name:?} is no honest server (add it first)"
        );
        self.auth.push((name.to_owned(), auth));
        self
    }

    /// How `name` authenticates, and the key id the client polls it with
    /// (its place among the keyed servers, from 1).
    fn auth_of(&self, name: &str) -> Option<(ServerAuth, u32)> {
        let mut keyed = 0;
        for (n, a) in &self.auth {
            if matches!(a, ServerAuth::Key { .. }) {
                keyed += 1;
            }
            if n == name {
                return Some((*a, keyed));
            }
        }
        None
    }

    /// The client polls `name` but never selects it.
    pub fn noselect(mut self, name: &str) -> Self {
        self.noselect.push(name.to_owned());
        self
    }

    fn role(mut self, name: &str, role: Role) -> Self {
        assert!(
            name != "client" && self.roles.iter().all(|(n, _)| n != name),
            "lab host name {name:?} taken"
        );
        self.roles.push((name.to_owned(), role));
        self
    }

    /// Creates the namespaces, starts the servers, then the client's
    /// daemon. A panic on the way tears down what was started.
    pub fn build(self) -> Lab {
        super::require_root();
        let mut lab = Lab {
            root: super::root(),
            daemon: None,
            hosts: Vec::new(),
            client: Netns::new(),
            secrets: (!self.auth.is_empty()).then(Secrets::new),
        };
        for (i, (name, role)) in self.roles.iter().enumerate() {
            let addr = self.address(i);
            let extra = match (self.auth_of(name), &lab.secrets) {
                (Some((auth, id)), Some(secrets)) => secrets.server_conf(name, addr, auth, id),
                _ => String::new(),
            };
            lab.add_host(name, *role, addr, &extra);
        }
        lab.wait_for_honest_servers();
        if self.daemon == Some(Daemon::Timesyncd) {
            assert!(self.noselect.is_empty(), "timesyncd has no noselect");
            assert!(
                self.client_conf.is_empty(),
                "timesyncd takes no configuration lines"
            );
            let servers: Vec<String> = lab
                .hosts
                .iter()
                .filter(|h| h.role != Role::Downstream)
                .map(|h| h.addr.to_string())
                .collect();
            let bus = DbusDaemon::start(&lab.root);
            let t = Timesyncd::start(&lab.root, &lab.client, &bus, &servers);
            lab.daemon = Some(ClientDaemon::Timesyncd(Some(t), bus));
        } else if let Some(daemon) = self.daemon {
            let conf = self.client_config(daemon, &lab);
            let (root, ns) = (&lab.root, &lab.client);
            lab.daemon = Some(match daemon {
                Daemon::Chronyd => ClientDaemon::Chronyd(Chronyd::start(root, ns, "client", &conf)),
                Daemon::Ntpd => ClientDaemon::Ntpd(Ntpd::start(root, ns, "ntpd", &conf)),
                Daemon::Timesyncd => unreachable!("started above"),
            });
        }
        lab
    }

    /// The address of the `i`th role: the next one of its kind's pool.
    fn address(&self, i: usize) -> Ipv4Addr {
        let (name, role) = &self.roles[i];
        let taken = self.roles[..i]
            .iter()
            .filter(|(_, r)| r.same_kind(*role))
            .count();
        *role.pool().get(taken).unwrap_or_else(|| {
            panic!("the address plan has no address left for {name:?} ({role:?})")
        })
    }

    /// One `server` line per server role, then [`Self::client_conf`].
    fn client_config(&self, daemon: Daemon, lab: &Lab) -> String {
        let servers: Vec<&Host> = lab
            .hosts
            .iter()
            .filter(|h| h.role != Role::Downstream)
            .collect();
        for name in &self.noselect {
            assert!(
                servers.iter().any(|h| &h.name == name),
                "noselect {name:?}: no such server"
            );
        }
        let mut conf = String::new();
        for h in servers {
            let noselect = if self.noselect.contains(&h.name) {
                " noselect"
            } else {
                ""
            };
            let options = daemon.poll_options();
            let auth = match (self.auth_of(&h.name), &lab.secrets) {
                (Some((a, id)), Some(secrets)) => secrets.server_option(daemon, a, id),
                _ => String::new(),
            };
            writeln!(conf, "server {} {options}{auth}{noselect}", h.addr)
                .expect("write to a String");
        }
        if let Some(secrets) = &lab.secrets {
            let nts = self
                .auth
                .iter()
                .any(|(_, a)| matches!(a, ServerAuth::Nts { .. }));
            let keys: Vec<(u32, bool)> = self
                .auth
                .iter()
                .filter_map(|(n, a)| match (a, self.auth_of(n)) {
                    (ServerAuth::Key { right }, Some((_, id))) => Some((id, *right)),
                    _ => None,
                })
                .collect();
            conf.push_str(&secrets.client_conf(daemon, nts, &keys));
        }
        conf + &self.client_conf
    }
}

/// A running lab. Dropping it stops every process (the client's daemon,
/// then the servers), then deletes every namespace; on a panic too.
#[derive(Debug)]
pub struct Lab {
    root: PathBuf,
    daemon: Option<ClientDaemon>,
    hosts: Vec<Host>,
    client: Netns,
    /// Certificates and keys, when a server authenticates (dropped after
    /// every process).
    secrets: Option<Secrets>,
}

impl Lab {
    pub fn builder() -> LabBuilder {
        LabBuilder::default()
    }

    /// The unpacked daemons and tools.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The host under test, at [`plan::CLIENT`].
    pub fn client(&self) -> &Netns {
        &self.client
    }

    fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name:?}"))
    }

    /// Creates a host's namespace, links it to the client and starts
    /// what its role runs.
    /// `extra`: more configuration lines for an honest server.
    fn add_host(&mut self, name: &str, role: Role, addr: Ipv4Addr, extra: &str) {
        let ns = Netns::new();
        link(&self.client, plan::CLIENT, &ns, addr);
        let running = match role {
            Role::Honest => {
                let r = plan::HONEST_REFERENCE;
                ns.add_loopback_address(*r.ip());
                let reference = SkewedServer::start_on(&ns, r, 0.0, 0.0);
                let conf = honest_server_conf() + extra;
                let chronyd = Chronyd::start(&self.root, &ns, name, &conf);
                Running::Honest(chronyd, reference)
            }
            Role::FreeRunning => {
                Running::Chronyd(Chronyd::start(&self.root, &ns, name, SERVE_LOCAL_CLOCK))
            }
            Role::Skewed(offset) => Running::Responder(SkewedServer::start(&ns, addr, offset, 0.0)),
            Role::Drifting(ppm) => {
                Running::Responder(SkewedServer::start(&ns, addr, 0.0, ppm * 1e-6))
            }
            Role::Downstream => Running::Nothing,
            Role::Kissing(code) => {
                Running::Responder(Self::misbehaving(&ns, addr, Answer::Kiss(code)))
            }
            Role::Forging => Running::Responder(Self::misbehaving(&ns, addr, Answer::WrongOrigin)),
            Role::Silent => Running::Responder(Self::misbehaving(&ns, addr, Answer::Silent)),
            Role::Leaping => Running::Responder(Self::misbehaving(&ns, addr, Answer::Leap)),
        };
        self.hosts.push(Host {
            name: name.to_owned(),
            addr,
            role,
            running,
            ns,
        });
    }

    fn misbehaving(ns: &Netns, addr: Ipv4Addr, answer: Answer) -> SkewedServer {
        SkewedServer::answering(ns, std::net::SocketAddrV4::new(addr, 123), 0.0, 0.0, answer)
    }

    /// The addresses of every host but downstream ones, as the client's
    /// daemon would be told to poll them.
    pub fn server_addrs(&self) -> Vec<Ipv4Addr> {
        self.hosts
            .iter()
            .filter(|h| h.role != Role::Downstream)
            .map(|h| h.addr)
            .collect()
    }

    /// Waits until every honest server has synchronised to its reference.
    /// Until then it answers as unsynchronised, and a client started
    /// earlier could select a skewed responder alone (its samples are the
    /// only valid ones) and follow it: then the honest server's first
    /// measurements are taken against a clock 11.5 s off.
    fn wait_for_honest_servers(&self) {
        for h in self.hosts.iter().filter(|h| h.role == Role::Honest) {
            let Running::Honest(chronyd, _) = &h.running else {
                unreachable!("an honest host runs chronyd and its reference")
            };
            wait_for(
                &format!("honest server {} synchronised", h.name),
                Duration::from_secs(20),
                || {
                    let t = chronyd.chronyc(&self.root, &h.ns, &["-n", "tracking"]);
                    let synced = t.lines().any(|l| {
                        l.starts_with("Leap status") && l.trim_end().ends_with(": Normal")
                    });
                    synced.then_some(())
                },
            );
        }
    }

    /// The address of a host, from the plan.
    pub fn addr(&self, name: &str) -> Ipv4Addr {
        self.host(name).addr
    }

    /// The namespace of a host.
    pub fn ns(&self, name: &str) -> &Netns {
        &self.host(name).ns
    }

    /// An honest or free-running server's chronyd.
    pub fn server(&self, name: &str) -> &Chronyd {
        match &self.host(name).running {
            Running::Chronyd(c) | Running::Honest(c, _) => c,
            other => panic!("{name} runs no chronyd: {other:?}"),
        }
    }

    /// Restarts an honest or free-running server's chronyd with these
    /// extra configuration lines instead of its own (an honest server's
    /// are [`honest_server_conf`]: without its NTS or key lines, say).
    pub fn reconfigure_server(&mut self, name: &str, extra: &str) {
        let root = self.root.clone();
        let h = self
            .hosts
            .iter_mut()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no lab host {name:?}"));
        match &mut h.running {
            Running::Chronyd(c) | Running::Honest(c, _) => c.reconfigure(&root, &h.ns, extra),
            other => panic!("{name} runs no chronyd: {other:?}"),
        }
    }

    /// The CA an NTS server's certificate comes from (the one the client
    /// trusts), when the lab has one.
    pub fn nts_ca(&self) -> Option<PathBuf> {
        self.secrets.as_ref().map(Secrets::ca_path)
    }

    /// A skewed or drifting host's responder.
    pub fn responder(&self, name: &str) -> &SkewedServer {
        match &self.host(name).running {
            Running::Responder(r) => r,
            other => panic!("{name} runs no responder: {other:?}"),
        }
    }

    /// The client's chronyd.
    pub fn chronyd(&self) -> &Chronyd {
        match &self.daemon {
            Some(ClientDaemon::Chronyd(c)) => c,
            other => panic!("the client runs no chronyd: {other:?}"),
        }
    }

    pub fn chronyd_mut(&mut self) -> &mut Chronyd {
        match &mut self.daemon {
            Some(ClientDaemon::Chronyd(c)) => c,
            other => panic!("the client runs no chronyd: {other:?}"),
        }
    }

    /// The client's ntpd.
    pub fn ntpd_mut(&mut self) -> &mut Ntpd {
        match &mut self.daemon {
            Some(ClientDaemon::Ntpd(n)) => n,
            other => panic!("the client runs no ntpd: {other:?}"),
        }
    }

    /// The client's private bus, where its timesyncd is.
    pub fn bus(&self) -> &DbusDaemon {
        match &self.daemon {
            Some(ClientDaemon::Timesyncd(_, bus)) => bus,
            other => panic!("the client runs no timesyncd: {other:?}"),
        }
    }

    /// Stops the client's timesyncd (its bus stays).
    pub fn kill_timesyncd(&mut self) {
        match &mut self.daemon {
            Some(ClientDaemon::Timesyncd(t, _)) => {
                let mut t = t.take().expect("timesyncd runs");
                t.proc.kill();
            }
            other => panic!("the client runs no timesyncd: {other:?}"),
        }
    }

    /// The client's timesyncd's log so far.
    pub fn timesyncd_log(&self) -> String {
        match &self.daemon {
            Some(ClientDaemon::Timesyncd(Some(t), _)) => t.proc.log_text(),
            other => panic!("the client runs no timesyncd: {other:?}"),
        }
    }

    /// The flag that points an exporter at the client's timesyncd.
    pub fn timesyncd_flag(&self) -> String {
        self.bus().timesyncd_flag()
    }

    /// `chronyc` against the client's chronyd.
    pub fn chronyc(&self, args: &[&str]) -> String {
        self.chronyd().chronyc(&self.root, &self.client, args)
    }

    /// NTPsec's `ntpq` on the client.
    pub fn ntpq(&self, args: &[&str]) -> String {
        Ntpd::ntpq(&self.root, &self.client, args)
    }

    /// NTPsec's `ntpdig` on the client (reports only).
    pub fn ntpdig(&self, args: &[&str]) -> String {
        Ntpd::ntpdig(&self.root, &self.client, args)
    }

    /// Restarts the client's chronyd with the same configuration.
    pub fn restart_chronyd(&mut self) {
        let Some(ClientDaemon::Chronyd(c)) = &mut self.daemon else {
            panic!("the client runs no chronyd");
        };
        c.restart(&self.root, &self.client);
    }

    /// Our exporter on the client, beside its daemon, with these flags.
    /// Keep it in a variable declared after the lab, so it stops first.
    pub fn exporter(&self, flags: &[&str]) -> Exporter {
        Exporter::start(&self.client, flags)
    }

    /// Starts a chronyd on the named host (a downstream client, say),
    /// owned by the caller.
    pub fn start_chronyd(&self, name: &str, conf: &str) -> Chronyd {
        Chronyd::start(&self.root, self.ns(name), name, conf)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Every process first; the namespaces go with the fields.
        self.daemon = None;
        for h in &mut self.hosts {
            h.running = Running::Nothing;
        }
    }
}
