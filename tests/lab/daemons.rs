//! The real time daemons, unpacked and never installed: chronyd always with
//! `-x` (never adjusts the clock), ntpd always with `disable ntp`; every
//! path they write is in a private directory.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::netns::Netns;
use super::plan;
use super::process::{Proc, TempDir, wait_for};

/// `LD_LIBRARY_PATH` for the unpacked daemons.
pub fn lib_path(root: &Path) -> PathBuf {
    root.join("usr/lib/x86_64-linux-gnu")
}

/// Runs one of the unpacked tools to completion; its stdout, or a panic
/// with its stderr.
fn tool_output(what: &str, mut cmd: Command, args: &[&str]) -> String {
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A daemon's private directory, with its configuration file `file`
/// written there by `conf`, which is given the directory's path.
fn configured_dir(tag: &str, file: &str, conf: impl FnOnce(&str) -> String) -> (TempDir, PathBuf) {
    let dir = TempDir::new(tag);
    let path = dir.path().join(file);
    let text = conf(&dir.path().display().to_string());
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    (dir, path)
}

/// Which daemon a lab client runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    Chronyd,
    Ntpd,
}

impl Daemon {
    /// The label the exporter gives it (`daemon="..."`).
    pub fn label(self) -> &'static str {
        match self {
            Daemon::Chronyd => "chronyd",
            Daemon::Ntpd => "ntpd",
        }
    }

    /// The options of a lab client's `server` line: poll as fast as the
    /// daemon allows, so sources are selected within seconds.
    pub fn poll_options(self) -> &'static str {
        match self {
            Daemon::Chronyd => "iburst minpoll -2 maxpoll 0",
            Daemon::Ntpd => "iburst minpoll 3 maxpoll 4",
        }
    }
}

/// A chronyd instance: its private directory (config, pid, drift, socket) and process.
#[derive(Debug)]
pub struct Chronyd {
    // Fields drop in order: the process dies before its directory goes.
    pub proc: Proc,
    pub dir: TempDir,
}

/// The configuration of a chronyd serving its own clock: `local stratum 8`,
/// no upstream, serving anyone (a free-running server, or a client that also
/// serves).
pub const SERVE_LOCAL_CLOCK: &str = "local stratum 8\nallow all\n";

/// The configuration of an honest chronyd server: synchronised to its own
/// reference ([`plan::HONEST_REFERENCE`]), serving anyone. Until it has
/// synchronised it answers as unsynchronised.
pub fn honest_server_conf() -> String {
    let r = plan::HONEST_REFERENCE;
    format!(
        "server {} port {} {}\nallow all\n",
        r.ip(),
        r.port(),
        Daemon::Chronyd.poll_options()
    )
}

impl Chronyd {
    /// Starts chronyd in `ns` with `-x` (never touches the clock) and the
    /// given extra configuration lines. The command socket is private
    /// (`bindcmdaddress DIR/chronyd.sock`), so a workstation's own chronyd
    /// socket is never touched.
    pub fn start(root: &Path, ns: &Netns, tag: &str, extra: &str) -> Chronyd {
        let (dir, _) = configured_dir(tag, "chrony.conf", |d| {
            format!(
                "pidfile {d}/chronyd.pid\ndriftfile {d}/drift\nbindcmdaddress 127.0.0.1\nbindcmdaddress {d}/chronyd.sock\ncmdallow 127.0.0.1\n{extra}\n"
            )
        });
        let mut proc = Self::spawn(root, ns, &dir, "chronyd.log", &format!("chronyd {tag}"));
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

    fn spawn(root: &Path, ns: &Netns, dir: &TempDir, log: &str, what: &str) -> Proc {
        let mut cmd = ns.command(root.join("usr/sbin/chronyd"));
        cmd.env("LD_LIBRARY_PATH", lib_path(root))
            .args(["-x", "-d", "-u", "root", "-f"])
            .arg(dir.path().join("chrony.conf"));
        Proc::spawn(cmd, dir.path().join(log), what)
    }

    /// Kills chronyd and starts it again with the same configuration (same
    /// socket path, a new socket file), logging to `chronyd2.log`. Does not
    /// wait for the new socket: the old file may still be there.
    pub fn restart(&mut self, root: &Path, ns: &Netns) {
        self.proc.kill();
        let what = format!("{} (restarted)", self.proc.what);
        self.proc = Self::spawn(root, ns, &self.dir, "chronyd2.log", &what);
    }

    /// The command socket path.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("chronyd.sock")
    }

    /// Runs chronyc against this instance over its unix socket.
    pub fn chronyc(&self, root: &Path, ns: &Netns, args: &[&str]) -> String {
        let mut cmd = ns.command(root.join("usr/bin/chronyc"));
        cmd.env("LD_LIBRARY_PATH", lib_path(root))
            .arg("-h")
            .arg(self.socket());
        tool_output("chronyc", cmd, args)
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
        let (dir, conf_path) = configured_dir(tag, "ntp.conf", |d| {
            format!(
                "disable ntp\ndriftfile {d}/drift\nstatsdir {d}/\nrestrict default kod nomodify nopeer noquery limited\nrestrict 127.0.0.1\nrestrict ::1\n{servers}\n"
            )
        });
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

    /// NTPsec's own `ntpq` in the namespace (the Python tool, with the
    /// unpacked `ntp` module), not yet run.
    pub fn ntpq_command(root: &Path, ns: &Netns) -> Command {
        let mut cmd = ns.command("python3");
        cmd.env("PYTHONPATH", root.join("usr/lib/python3/dist-packages"))
            .env("LD_LIBRARY_PATH", lib_path(root))
            .arg(root.join("usr/bin/ntpq"));
        cmd
    }

    /// Runs `ntpq` in the namespace.
    pub fn ntpq(root: &Path, ns: &Netns, args: &[&str]) -> String {
        tool_output("ntpq", Self::ntpq_command(root, ns), args)
    }
}
