//! The test lab: real daemons in network namespaces, never touching this
//! machine's clock, its network beyond loopback, or its own time daemon.
//!
//! - Binaries come from the cache `scripts/lab-fetch` unpacks (`dpkg -x`,
//!   never installed); `CLOCK_LAB_ROOT` points at it, or the lab runs the
//!   script itself.
//! - Every host (client, server A, server B, ...) is a network namespace the
//!   test creates, linked by veth pairs on documentation addresses
//!   (192.0.2.0/24), and deleted on drop.
//! - Every process is killed on drop, also when the test panics.
//! - chronyd always runs with `-x` (never adjust the clock); ntpd with
//!   `disable ntp`.
//!
//! Lab tests need root (namespaces) and are `#[ignore]`d so that a plain
//! `cargo test` stays green without root; `scripts/test` runs them with
//! `--include-ignored`, so CI runs them.
#![allow(dead_code, clippy::missing_panics_doc)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use clock_exporter::testing::proto::ntp::{Header, NtpShort, NtpTimestamp, RefId};

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

/// `LD_LIBRARY_PATH` for the unpacked daemons.
pub fn lib_path(root: &Path) -> PathBuf {
    root.join("usr/lib/x86_64-linux-gnu")
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A private directory, removed on drop. Mode 0700 so chronyd accepts its
/// socket directory.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "clock-lab-{}-{}-{tag}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .expect("chmod temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CLOCK_LAB_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

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
        let name = format!(
            "ce{}n{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// A command that runs inside the namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
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

fn enter_netns(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|e| panic!("setns {path}: {e}"));
}

/// Links two namespaces with a veth pair and gives each end an address in a
/// /24 (`a_addr`, `b_addr`, both in 192.0.2.0/24 or 198.51.100.0/24).
pub fn link(a: &Netns, a_addr: Ipv4Addr, b: &Netns, b_addr: Ipv4Addr) {
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
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
    ip(&[
        "-n",
        &a.name,
        "route",
        "add",
        &format!("{b_addr}/32"),
        "dev",
        &ia,
    ]);
    ip(&[
        "-n",
        &b.name,
        "route",
        "add",
        &format!("{a_addr}/32"),
        "dev",
        &ib,
    ]);
}

/// A process killed (SIGKILL) and reaped on drop, its output in a log file.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub what: String,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf, what: &str) -> Proc {
        let f = File::create(&log).expect("create log");
        let f2 = f.try_clone().expect("clone log");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        Proc {
            child,
            log,
            what: what.to_owned(),
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.what, self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.what, self.log_text());
        }
    }
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A chronyd instance: its private directory (config, pid, drift, socket) and process.
#[derive(Debug)]
pub struct Chronyd {
    // Fields drop in order: the process dies before its directory goes.
    pub proc: Proc,
    pub dir: TempDir,
}

impl Chronyd {
    /// Starts chronyd in `ns` with `-x` (never touches the clock) and the
    /// given extra configuration lines. The command socket is private
    /// (`bindcmdaddress DIR/chronyd.sock`), so a workstation's own chronyd
    /// socket is never touched.
    pub fn start(root: &Path, ns: &Netns, tag: &str, extra: &str) -> Chronyd {
        let dir = TempDir::new(tag);
        let d = dir.path().display();
        let conf = format!(
            "pidfile {d}/chronyd.pid\ndriftfile {d}/drift\nbindcmdaddress 127.0.0.1\nbindcmdaddress {d}/chronyd.sock\ncmdallow 127.0.0.1\n{extra}\n"
        );
        let conf_path = dir.path().join("chrony.conf");
        std::fs::write(&conf_path, conf).expect("write chrony.conf");
        let mut cmd = ns.command(root.join("usr/sbin/chronyd"));
        cmd.env("LD_LIBRARY_PATH", lib_path(root))
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(&conf_path);
        let log = dir.path().join("chronyd.log");
        let mut proc = Proc::spawn(cmd, log, &format!("chronyd {tag}"));
        let sock = dir.path().join("chronyd.sock");
        wait_for(
            &format!("chronyd {tag} socket"),
            Duration::from_secs(10),
            || {
                proc.assert_running();
                sock.exists().then_some(())
            },
        );
        Chronyd { proc, dir }
    }

    /// The command socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("chronyd.sock")
    }

    /// Runs chronyc against this instance over its unix socket.
    pub fn chronyc(&self, root: &Path, ns: &Netns, args: &[&str]) -> String {
        let sock = self.socket();
        let out = ns
            .command(root.join("usr/bin/chronyc"))
            .env("LD_LIBRARY_PATH", lib_path(root))
            .arg("-h")
            .arg(&sock)
            .args(args)
            .output()
            .expect("run chronyc");
        assert!(
            out.status.success(),
            "chronyc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// An honest chronyd time server on `addr` in `ns`: `local stratum 8`, no
/// upstream, serving anyone.
pub fn chrony_server(root: &Path, ns: &Netns, tag: &str) -> Chronyd {
    Chronyd::start(root, ns, tag, "local stratum 8\nallow all\n")
}

/// A deliberately wrong NTP server: answers mode-3 requests on UDP 123 of
/// its namespace with the local time shifted by `offset` seconds, plus
/// `drift_ratio · elapsed` (a clock running fast or slow). It is the seed's
/// vB, whose clock was 11.5 s off.
#[derive(Debug)]
pub struct SkewedServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub requests: Arc<AtomicUsize>,
}

impl SkewedServer {
    pub fn start(ns: &Netns, bind: Ipv4Addr, offset: f64, drift_ratio: f64) -> SkewedServer {
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicUsize::new(0));
        let path = format!("/var/run/netns/{}", ns.name);
        let (stop2, req2) = (stop.clone(), requests.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            enter_netns(&path);
            let sock = UdpSocket::bind(SocketAddrV4::new(bind, 123)).expect("bind skewed server");
            sock.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let _ = ready_tx.send(());
            let start = SystemTime::now();
            let mut buf = [0u8; 1024];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let now = SystemTime::now();
                let Ok(req) = Header::parse(&buf[..n]) else {
                    continue;
                };
                if req.mode != 3 {
                    continue;
                }
                let elapsed = now.duration_since(start).unwrap_or_default().as_secs_f64();
                let shift = offset + drift_ratio * elapsed;
                let t = NtpTimestamp::from_system_time(now).shifted(shift);
                let resp = Header {
                    leap: 0,
                    version: req.version,
                    mode: 4,
                    stratum: 2,
                    poll: req.poll,
                    precision: -20,
                    root_delay: NtpShort::from_seconds(0.0005),
                    root_dispersion: NtpShort::from_seconds(0.0005),
                    reference_id: RefId([198, 51, 100, 7]),
                    reference: t.shifted(-1.0),
                    origin: req.transmit,
                    receive: t,
                    transmit: t,
                };
                let _ = sock.send_to(&resp.encode(), from);
                req2.fetch_add(1, Ordering::Relaxed);
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("skewed server started");
        SkewedServer {
            stop,
            thread: Some(thread),
            requests,
        }
    }
}

impl Drop for SkewedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The built exporter binary.
pub fn exporter_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_clock_exporter"))
}

/// A plain HTTP/1.0 GET (no client crate needed), returning status and body.
pub fn http_get(addr: &str, path: &str, accept: Option<&str>) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{accept}\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of a sample line `name{labels} value` in text exposition output,
/// where `selector` is the part before the value, e.g.
/// `clock_peer_state{daemon="ntpd",peer="192.0.2.2",state="falseticker"}`.
pub fn sample(body: &str, selector: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        l.strip_prefix(selector)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A running exporter in a namespace, killed on drop.
#[derive(Debug)]
pub struct Exporter {
    pub proc: Proc,
    pub dir: TempDir,
    pub addr: String,
}

impl Exporter {
    /// Starts the exporter in `ns` on 127.0.0.1:9857 with extra flags, and
    /// waits until it answers.
    pub fn start(ns: &Netns, args: &[&str]) -> Exporter {
        let dir = TempDir::new("exporter");
        let mut cmd = ns.command(exporter_bin());
        cmd.args([
            "--web.listen-address",
            "127.0.0.1:9857",
            "--log.level",
            "debug",
        ])
        .args(args);
        let mut proc = Proc::spawn(cmd, dir.path().join("exporter.log"), "clock_exporter");
        let addr = "127.0.0.1:9857".to_owned();
        let a = addr.clone();
        let name = ns.name.clone();
        wait_for("exporter to answer", Duration::from_secs(10), || {
            proc.assert_running();
            let a = a.clone();
            in_netns(&name, move || http_get(&a, "/", None).is_ok()).then_some(())
        });
        Exporter { proc, dir, addr }
    }

    /// Scrapes `/metrics` in the classic text format from inside `ns`.
    pub fn scrape(&self, ns: &Netns) -> String {
        let a = self.addr.clone();
        let (status, body) = ns
            .enter(move || http_get(&a, "/metrics", None))
            .expect("scrape exporter");
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// An ntpd (NTPsec) instance in its own namespace (ntpd binds port 123 on
/// every address), with `disable ntp` so it never disciplines the clock.
#[derive(Debug)]
pub struct Ntpd {
    pub proc: Proc,
    pub dir: TempDir,
}

impl Ntpd {
    /// Starts ntpd with `-n` (foreground) and the given server lines.
    /// Mode-6 queries are allowed from loopback only (`restrict 127.0.0.1`,
    /// `restrict ::1`), which ntpsec 1.2.2 needs to answer them at all.
    pub fn start(root: &Path, ns: &Netns, tag: &str, servers: &str) -> Ntpd {
        let dir = TempDir::new(tag);
        let d = dir.path().display();
        let conf = format!(
            "disable ntp\ndriftfile {d}/drift\nstatsdir {d}/\nrestrict default kod nomodify nopeer noquery limited\nrestrict 127.0.0.1\nrestrict ::1\n{servers}\n"
        );
        let conf_path = dir.path().join("ntp.conf");
        std::fs::write(&conf_path, conf).expect("write ntp.conf");
        let mut cmd = ns.command(root.join("usr/sbin/ntpd"));
        cmd.env("LD_LIBRARY_PATH", lib_path(root))
            .args(["-n", "-g", "-c"])
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.path().join("ntpd.pid"));
        let log = dir.path().join("ntpd.log");
        let mut proc = Proc::spawn(cmd, log, &format!("ntpd {tag}"));
        std::thread::sleep(Duration::from_millis(300));
        proc.assert_running();
        Ntpd { proc, dir }
    }

    /// Runs NTPsec's own `ntpq` in the namespace (the Python tool, with the
    /// unpacked `ntp` module).
    pub fn ntpq(root: &Path, ns: &Netns, args: &[&str]) -> String {
        let out = ns
            .command("python3")
            .env("PYTHONPATH", root.join("usr/lib/python3/dist-packages"))
            .env("LD_LIBRARY_PATH", lib_path(root))
            .arg(root.join("usr/bin/ntpq"))
            .args(args)
            .output()
            .expect("run ntpq");
        assert!(
            out.status.success(),
            "ntpq {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A free loopback port (bound then released; a tiny race, fine in tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The exporter binary started on this host's loopback (no namespace, no
/// root needed), killed on drop.
#[derive(Debug)]
pub struct LocalExporter {
    pub proc: Proc,
    pub dir: TempDir,
    pub addr: String,
}

impl LocalExporter {
    pub fn start(args: &[&str]) -> LocalExporter {
        let dir = TempDir::new("local-exporter");
        let addr = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new(exporter_bin());
        cmd.args(["--web.listen-address", &addr]).args(args);
        let mut proc = Proc::spawn(cmd, dir.path().join("exporter.log"), "clock_exporter");
        wait_for("exporter to answer", Duration::from_secs(10), || {
            proc.assert_running();
            http_get(&addr, "/", None).ok().map(|_| ())
        });
        LocalExporter { proc, dir, addr }
    }

    /// GET a path; panics on connection errors.
    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        http_get(&self.addr, path, accept).expect("GET from exporter")
    }

    /// `/metrics` in the classic text format, asserting 200.
    pub fn scrape(&self) -> String {
        let (status, body) = self.get("/metrics", None);
        assert_eq!(status, 200, "{body}");
        body
    }
}

/// Flags that disable every collector but the named ones, from the
/// exporter's own table, so a test is not affected by daemons on this host.
pub fn only_collectors(keep: &[&str]) -> Vec<String> {
    clock_exporter::testing::collector::REGISTRY
        .iter()
        .filter(|r| !keep.contains(&r.name))
        .map(|r| format!("--no-collector.{}", r.name))
        .collect()
}
