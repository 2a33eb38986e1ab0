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

/// `LD_LIBRARY_PATH` for the unpacked systemd programs: their own
/// `libsystemd-shared` (of exactly their version, which the machine's
/// systemd may not be) first.
pub fn systemd_lib_path(root: &Path) -> String {
    format!(
        "{}:{}",
        lib_path(root).join("systemd").display(),
        lib_path(root).display()
    )
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
    /// systemd-timesyncd, on a private bus.
    Timesyncd,
}

impl Daemon {
    /// The label the exporter gives it (`daemon="..."`).
    pub fn label(self) -> &'static str {
        match self {
            Daemon::Chronyd => "chronyd",
            Daemon::Ntpd => "ntpd",
            Daemon::Timesyncd => "timesyncd",
        }
    }

    /// The options of a lab client's `server` line: poll as fast as the
    /// daemon allows, so sources are selected within seconds.
    pub fn poll_options(self) -> &'static str {
        match self {
            Daemon::Chronyd => "iburst minpoll -2 maxpoll 0",
            Daemon::Ntpd => "iburst minpoll 3 maxpoll 4",
            // timesyncd takes no options per server (its timesyncd.conf
            // says how fast it polls).
            Daemon::Timesyncd => "",
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
        let (dir, _) = configured_dir(tag, "chrony.conf", |d| Self::conf(d, extra));
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

    /// chrony.conf for a chronyd whose private directory is `d`.
    fn conf(d: &str, extra: &str) -> String {
        format!(
            "pidfile {d}/chronyd.pid\ndriftfile {d}/drift\nbindcmdaddress 127.0.0.1\nbindcmdaddress {d}/chronyd.sock\ncmdallow 127.0.0.1\n{extra}\n"
        )
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

    /// Kills chronyd and starts it again with other extra configuration
    /// lines, as [`Self::restart`] does.
    pub fn reconfigure(&mut self, root: &Path, ns: &Netns, extra: &str) {
        let d = self.dir.path().display().to_string();
        let path = self.dir.path().join("chrony.conf");
        self.proc.kill();
        std::fs::write(&path, Self::conf(&d, extra))
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        let what = format!("{} (reconfigured)", self.proc.what);
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

    /// Runs NTPsec's SNTP client `ntpdig` in the namespace (never with
    /// `-S` or `-s`: it only reports).
    pub fn ntpdig(root: &Path, ns: &Netns, args: &[&str]) -> String {
        assert!(
            !args
                .iter()
                .any(|a| matches!(*a, "-S" | "-s" | "--step" | "--slew")),
            "ntpdig must not set the clock"
        );
        let mut cmd = ns.command("python3");
        cmd.env("PYTHONPATH", root.join("usr/lib/python3/dist-packages"))
            .env("LD_LIBRARY_PATH", lib_path(root))
            .arg(root.join("usr/bin/ntpdig"));
        tool_output("ntpdig", cmd, args)
    }
}

/// A private D-Bus "system" bus: `dbus-daemon` (unpacked) with a
/// configuration of its own, listening on a socket in its private
/// directory. No service can be activated on it (no service directories).
#[derive(Debug)]
pub struct DbusDaemon {
    pub proc: Proc,
    pub dir: TempDir,
    root: PathBuf,
}

impl DbusDaemon {
    pub fn start(root: &Path) -> DbusDaemon {
        let (dir, conf) = configured_dir("dbus", "bus.conf", |d| {
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={d}/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#
            )
        });
        // The socket is reached by timesyncd's unprivileged user.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod bus dir");
        let mut cmd = Command::new(root.join("usr/bin/dbus-daemon"));
        cmd.env("LD_LIBRARY_PATH", lib_path(root))
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile"]);
        let mut proc = Proc::spawn(cmd, dir.path().join("dbus.log"), "dbus-daemon");
        let sock = dir.path().join("bus.sock");
        wait_for("dbus-daemon socket", Duration::from_secs(10), || {
            proc.assert_running();
            sock.exists().then_some(())
        });
        DbusDaemon {
            proc,
            dir,
            root: root.to_owned(),
        }
    }

    /// The bus's D-Bus address.
    pub fn address(&self) -> String {
        format!("unix:path={}", self.dir.path().join("bus.sock").display())
    }

    /// The exporter's flag that points its timesyncd collector here.
    pub fn timesyncd_flag(&self) -> String {
        format!("--collector.timesyncd.bus-address={}", self.address())
    }

    /// systemd's `busctl` (unpacked) against this bus.
    pub fn busctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(self.root.join("usr/bin/busctl"));
        cmd.env("LD_LIBRARY_PATH", systemd_lib_path(&self.root))
            .arg(format!("--address={}", self.address()));
        tool_output("busctl", cmd, args)
    }
}

/// systemd-timesyncd (unpacked) on a [`DbusDaemon`], in the client's
/// namespace, never able to set the clock: it runs as `nobody` with
/// `CAP_SYS_TIME` out of its bounding set (it logs that `clock_adjtime`
/// failed and carries on). It reads only fixed paths, so it runs in a
/// private mount namespace where `/etc` is an overlay holding the test's
/// `timesyncd.conf` (written to the overlay's upper directory, in the
/// test's own directory), and `/run`, `/var/lib` and every drop-in
/// directory are empty: the machine's own configuration cannot add a
/// server, and nothing timesyncd writes reaches the machine.
#[derive(Debug)]
pub struct Timesyncd {
    pub proc: Proc,
    pub dir: TempDir,
}

impl Timesyncd {
    /// The shell run in the private mount namespace before timesyncd.
    const SETUP: &str = r#"set -eu
d=$1; shift
mkdir -p "$d/etc.upper" "$d/etc.work"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/etc.upper,workdir=$d/etc.work" /etc
mkdir -p /etc/systemd
rm -rf /etc/systemd/timesyncd.conf.d
cp "$d/timesyncd.conf" /etc/systemd/timesyncd.conf
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib
mkdir -p /var/lib/systemd/timesync
chown 65534:65534 /var/lib/systemd/timesync
chmod 0755 /var/lib/systemd/timesync
for x in /usr/lib/systemd/timesyncd.conf.d /lib/systemd/timesyncd.conf.d /usr/local/lib/systemd/timesyncd.conf.d; do
  if [ -d "$x" ]; then mount -t tmpfs tmpfs "$x"; fi
done
exec setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-sys_time "$@"
"#;

    /// Starts timesyncd in `ns` on `bus`, polling `servers` (one at a time,
    /// the first that answers) every 16 s at first, the least it allows.
    pub fn start(root: &Path, ns: &Netns, bus: &DbusDaemon, servers: &[String]) -> Timesyncd {
        let (dir, _) = configured_dir("timesyncd", "timesyncd.conf", |_| {
            format!(
                "[Time]\nNTP={}\nFallbackNTP=\nPollIntervalMinSec=16\nPollIntervalMaxSec=32\n",
                servers.join(" ")
            )
        });
        let mut cmd = ns.command("unshare");
        cmd.args([
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            Self::SETUP,
            "sh",
        ])
        .arg(dir.path())
        .arg(root.join("lib/systemd/systemd-timesyncd"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", bus.address())
        .env("SYSTEMD_LOG_LEVEL", "debug")
        .env("LD_LIBRARY_PATH", systemd_lib_path(root));
        let mut proc = Proc::spawn(cmd, dir.path().join("timesyncd.log"), "systemd-timesyncd");
        wait_for("timesyncd on the bus", Duration::from_secs(10), || {
            proc.assert_running();
            let owners = bus.busctl(&["list", "--acquired", "--no-legend"]);
            owners.contains("org.freedesktop.timesync1").then_some(())
        });
        Timesyncd { proc, dir }
    }
}
