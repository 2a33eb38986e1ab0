//! The Debian package (`scripts/deb`), built from the tests' own binary:
//! what it holds, its unit checked by the lab's `systemd-analyze` (verify,
//! and the offline security score), `lintian` clean of errors, and the
//! packaged binary serving with the unit's arguments (run directly: this
//! machine has no systemd as PID 1).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::lab::{Proc, TempDir, free_port, http_get, systemd_lib_path, wait_for};

/// The exposure `systemd-analyze security` may give the unit at most.
const MAX_EXPOSURE: f64 = 2.5;

/// Builds the package into `dir`; its path.
fn build(dir: &Path) -> PathBuf {
    // The test binary is target/<profile>/deps/package-…; cargo test built
    // the examples beside it.
    let exe = std::env::current_exe().expect("test binary");
    let profile = exe.parent().and_then(Path::parent).expect("profile dir");
    let assets = profile.join("examples/dist_assets");
    assert!(assets.is_file(), "{} missing", assets.display());
    let out = Command::new(common::repo().join("scripts/deb"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_clock_exporter"))
        .arg("--out")
        .arg(dir)
        .arg("--assets-tool")
        .arg(&assets)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run scripts/deb");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/deb failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It prints the package's path, and only that, on stdout.
    let deb = PathBuf::from(stdout.trim());
    assert!(deb.is_file(), "{stdout}");
    deb
}

fn tool(cmd: &mut Command) -> String {
    let (ok, out) = common::run(cmd);
    assert!(ok, "{cmd:?}:\n{out}");
    out
}

/// The lab's `systemd-analyze` (of its own systemd, whatever this machine runs).
fn systemd_analyze() -> Command {
    let root = common::lab_root();
    let mut c = Command::new(root.join("usr/bin/systemd-analyze"));
    c.env("LD_LIBRARY_PATH", systemd_lib_path(root));
    c
}

fn gunzip(path: &Path) -> String {
    let out = tool(Command::new("gzip").arg("-dc").arg(path));
    assert!(!out.is_empty(), "{}", path.display());
    out
}

#[test]
#[ignore = "needs the lab (systemd-analyze) and lintian: run scripts/test"]
fn the_package_holds_what_it_should_and_its_unit_is_hardened_and_serves() {
    let dir = TempDir::new("package");
    let deb = build(dir.path());
    let name = deb.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(
        name.starts_with(&format!("clock-exporter_{}-1_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );
    check_contents(&deb, dir.path());
    let root = dir.path().join("root");
    tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    check_generated(&root);
    check_unit(&root);
    // lintian: no errors. It exits 1 on errors and 2 when it fails itself,
    // so a lintian that could not check the package does not pass as clean.
    let (status, lint) = common::run_status(
        Command::new("lintian")
            .arg("--no-tag-display-limit")
            .arg(&deb),
    );
    let errors: Vec<&str> = lint.lines().filter(|l| l.starts_with("E: ")).collect();
    assert!(errors.is_empty(), "lintian:\n{lint}");
    assert_eq!(status.code(), Some(0), "lintian:\n{lint}");
    check_serves(&root, dir.path());
}

/// The files, the control fields, the conffile and the maintainer scripts.
fn check_contents(deb: &Path, dir: &Path) {
    // What it holds.
    let listing = tool(Command::new("dpkg-deb").arg("-c").arg(deb));
    let files: BTreeSet<String> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect();
    for wanted in [
        "/usr/bin/clock_exporter",
        "/lib/systemd/system/clock-exporter.service",
        "/etc/default/clock-exporter",
        "/usr/share/man/man1/clock_exporter.1.gz",
        "/usr/share/bash-completion/completions/clock_exporter",
        "/usr/share/zsh/vendor-completions/_clock_exporter",
        "/usr/share/fish/vendor_completions.d/clock_exporter.fish",
        "/usr/share/doc/clock-exporter/copyright",
        "/usr/share/doc/clock-exporter/changelog.Debian.gz",
        "/usr/share/doc/clock-exporter/examples/chrony-socket.conf",
        "/usr/share/clock-exporter/alerts/clock-alerts.rules.yml",
        "/usr/share/clock-exporter/dashboards/clock-host.json",
    ] {
        assert!(
            files.contains(wanted),
            "{wanted} not in the package:\n{listing}"
        );
    }
    let control = tool(Command::new("dpkg-deb").arg("-f").arg(deb));
    assert!(control.contains("Depends: libc6 (>= 2."), "{control}");
    let meta = dir.join("DEBIAN");
    tool(Command::new("dpkg-deb").arg("-e").arg(deb).arg(&meta));
    assert_eq!(
        std::fs::read_to_string(meta.join("conffiles")).expect("conffiles"),
        "/etc/default/clock-exporter\n"
    );
    for script in ["postinst", "prerm", "postrm"] {
        let mode = std::fs::metadata(meta.join(script)).expect(script);
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o755,
            "{script}"
        );
    }
}

/// The copyright file, the man page and the completions.
fn check_generated(root: &Path) {
    let copyright =
        std::fs::read_to_string(root.join("usr/share/doc/clock-exporter/copyright")).expect("read");
    assert!(
        copyright.contains("License: Apache-2.0 or MIT") && copyright.contains("License: MIT"),
        "{copyright}"
    );
    // The man page and completions know every flag, the newest too.
    let man = gunzip(&root.join("usr/share/man/man1/clock_exporter.1.gz"));
    assert!(man.contains("web.config.file") && man.contains("collector.chrony.socket"));
    for c in [
        "usr/share/bash-completion/completions/clock_exporter",
        "usr/share/zsh/vendor-completions/_clock_exporter",
        "usr/share/fish/vendor_completions.d/clock_exporter.fish",
    ] {
        let text = std::fs::read_to_string(root.join(c)).expect("read");
        assert!(text.contains("web.config.file"), "{c}");
    }
}

/// `systemd-analyze verify` of the unit in the package's root (so
/// ExecStart's binary is the packaged one), with whatever drop-ins are there.
fn verify_unit(root: &Path) -> String {
    tool(
        systemd_analyze()
            .args(["verify", "--man=no"])
            .arg(format!("--root={}", root.display()))
            .arg("/lib/systemd/system/clock-exporter.service"),
    )
}

/// `systemd-analyze verify` and `security --offline`.
fn check_unit(root: &Path) {
    // The unit: verified against the lab's systemd units, in the package's
    // root (so ExecStart's binary is the packaged one).
    let lab_units = common::lab_root().join("lib/systemd/system");
    let units = root.join("lib/systemd/system");
    for e in std::fs::read_dir(&lab_units).expect("lab units") {
        let e = e.expect("entry");
        let to = units.join(e.file_name());
        if !to.exists() && e.file_type().is_ok_and(|t| t.is_file()) {
            std::fs::copy(e.path(), to).expect("copy unit");
        }
    }
    let verify = verify_unit(root);
    assert!(!verify.contains("clock-exporter"), "{verify}");
    // The chrony socket drop-in, installed where the docs say, verifies too.
    let dropins = root.join("etc/systemd/system/clock-exporter.service.d");
    std::fs::create_dir_all(&dropins).expect("mkdir");
    std::fs::copy(
        root.join("usr/share/doc/clock-exporter/examples/chrony-socket.conf"),
        dropins.join("chrony-socket.conf"),
    )
    .expect("copy drop-in");
    let verify = verify_unit(root);
    assert!(
        !verify.contains("clock-exporter") && !verify.contains("chrony-socket"),
        "{verify}"
    );
    std::fs::remove_dir_all(&dropins).expect("rm drop-in");

    // The settings that would break a collector are not there (each one's
    // reason is in docs/packaging.md and the unit's comments).
    let unit = std::fs::read_to_string(units.join("clock-exporter.service")).expect("read");
    let settings: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for broken in [
        "ProtectClock=",
        "ProtectKernelLogs=",
        "PrivateDevices=",
        "ProcSubset=",
        "PrivateUsers=",
    ] {
        assert!(
            !settings.iter().any(|l| l.starts_with(broken)),
            "the unit sets {broken}, which breaks a collector"
        );
    }

    let security = tool(
        systemd_analyze()
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.display()))
            .arg("clock-exporter.service"),
    );
    let exposure: f64 = security
        .lines()
        .find_map(|l| l.split_once("Overall exposure level for clock-exporter.service: "))
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level:\n{security}"));
    assert!(exposure <= MAX_EXPOSURE, "exposure {exposure}:\n{security}");
    // The score the docs and the README give is this one.
    let doc = std::fs::read_to_string(common::repo().join("docs/packaging.md")).expect("read");
    let readme = std::fs::read_to_string(common::repo().join("README.md")).expect("read");
    assert!(
        doc.contains(&format!("scores it **{exposure:.1}**")),
        "docs/packaging.md does not give the score {exposure:.1}"
    );
    assert!(
        readme.contains(&format!(
            "`systemd-analyze security` exposure {exposure:.1}"
        )),
        "README.md does not give the score {exposure:.1}"
    );
    // Every setting still marked ✗ is justified in docs/packaging.md.
    for line in security.lines().filter(|l| l.trim_start().starts_with('✗')) {
        let setting = line
            .trim_start()
            .trim_start_matches('✗')
            .split_whitespace()
            .next()
            .expect("setting");
        assert!(
            doc.contains(&format!("`{setting}`")),
            "docs/packaging.md does not justify {setting}:\n{line}"
        );
    }
}

/// The packaged binary, with the unit's `ExecStart` and the defaults' `ARGS`,
/// run under `strace`: every system call it makes while starting and
/// serving must be one the unit's `SystemCallFilter=` lets through (this
/// machine has no systemd as PID 1 to apply the filter itself).
fn check_serves(root: &Path, dir: &Path) {
    let units = root.join("lib/systemd/system");
    let version = env!("CARGO_PKG_VERSION");
    let unit = std::fs::read_to_string(units.join("clock-exporter.service")).expect("read");
    let allowed = allowed_syscalls(&unit);
    assert!(
        allowed.contains("clock_adjtime")
            && allowed.contains("read")
            && !allowed.contains("setuid")
            && !allowed.contains("clock_settime"),
        "the filter as read: {allowed:?}"
    );
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/bin/clock_exporter"));
    let defaults = root.join("etc/default/clock-exporter");
    let args = tool(
        Command::new("sh")
            .arg("-c")
            .arg(r#". "$0" && printf '%s' "$ARGS""#)
            .arg(&defaults),
    );
    let port = free_port();
    let trace = dir.join("strace.out");
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(root.join("usr/bin/clock_exporter"));
    for w in words {
        if w == "$ARGS" {
            cmd.args(args.split_whitespace());
        } else {
            cmd.arg(w);
        }
    }
    cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/nonexistent");
    let mut traced = Traced {
        strace: Proc::spawn(
            cmd,
            dir.join("exporter.log"),
            "packaged clock_exporter under strace",
        ),
    };
    let addr = format!("127.0.0.1:{port}");
    let body = wait_for(
        "the packaged exporter serving",
        Duration::from_secs(30),
        || {
            traced.strace.assert_running();
            match http_get(&addr, "/metrics", None) {
                Ok((200, body)) => Some(body),
                _ => None,
            }
        },
    );
    // A second scrape, and the landing page (a scrape and the verdict).
    assert_eq!(
        http_get(&addr, "/metrics", None).map(|r| r.0).ok(),
        Some(200)
    );
    assert_eq!(http_get(&addr, "/", None).map(|r| r.0).ok(), Some(200));
    assert!(body.contains("clock_time_seconds "), "{body}");
    // adjtimex answered (under the unit it must be allowed, checked below).
    assert!(body.contains("clock_timex_sync_status "), "{body}");
    assert!(
        body.contains(&format!("version=\"{version}\"")),
        "{}",
        body.lines()
            .find(|l| l.contains("build_info"))
            .unwrap_or("")
    );
    let log = traced.strace.log_text();
    assert!(log.contains("clock_exporter started"), "{log}");
    drop(traced);

    let trace = std::fs::read_to_string(&trace).expect("strace output");
    let made = syscalls_made(&trace);
    // glibc's adjtimex() is clock_adjtime(CLOCK_REALTIME) on x86_64.
    assert!(
        (made.contains("clock_adjtime") || made.contains("adjtimex")) && made.contains("accept4"),
        "{made:?}"
    );
    let refused: Vec<&String> = made.iter().filter(|c| !allowed.contains(*c)).collect();
    assert!(
        refused.is_empty(),
        "the unit's SystemCallFilter= would refuse {refused:?} (EPERM) to the exporter"
    );
}

/// The exporter under strace, stopped on drop: the exporter first (a
/// tracer killed first would leave its tracee running, detached), then
/// strace, which ends when its tracee does.
struct Traced {
    strace: Proc,
}

impl Drop for Traced {
    fn drop(&mut self) {
        let children = format!("/proc/{0}/task/{0}/children", self.strace.child.id());
        for pid in std::fs::read_to_string(children)
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = wait_for_exit(&mut self.strace);
    }
}

/// Waits up to 10 s for strace to end by itself once its tracee is gone.
fn wait_for_exit(p: &mut Proc) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if matches!(p.child.try_wait(), Ok(Some(_))) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// The system calls named in `strace -f` output.
fn syscalls_made(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|l| {
            // "PID name(args…", or "PID <... name resumed>…".
            let rest = l.split_once(' ')?.1.trim_start();
            let rest = rest.strip_prefix("<... ").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let after = &rest[name.len()..];
            (!name.is_empty() && (after.starts_with('(') || after.starts_with(" resumed")))
                .then_some(name)
        })
        .collect()
}

/// The system calls the unit's `SystemCallFilter=` lines let through, as
/// systemd reads them: the first line an allow list, each later one adding
/// its calls or, with `~`, taking them away, in order; groups expanded
/// from the lab's `systemd-analyze syscall-filter`.
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let listing = tool(systemd_analyze().args(["syscall-filter", "--no-pager"]));
    let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in listing.lines() {
        if line.starts_with('@') {
            let name = line.trim().to_owned();
            groups.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if let Some(g) = &current {
            groups.get_mut(g).expect("group").push(entry.to_owned());
        }
    }
    assert!(
        groups
            .get("@clock")
            .is_some_and(|c| c.iter().any(|e| e == "adjtimex")),
        "systemd-analyze syscall-filter as read: {groups:?}"
    );
    let mut allowed = BTreeSet::new();
    let lines: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="))
        .collect();
    assert!(
        lines.first().is_some_and(|l| !l.starts_with('~')),
        "the unit's filter is not an allow list: {lines:?}"
    );
    for line in lines {
        let (deny, list) = match line.strip_prefix('~') {
            Some(l) => (true, l),
            None => (false, line),
        };
        let mut calls = BTreeSet::new();
        for word in list.split_whitespace() {
            expand(word, &groups, &mut calls);
        }
        if deny {
            allowed.retain(|c| !calls.contains(c));
        } else {
            allowed.extend(calls);
        }
    }
    allowed
}

/// The system calls of a filter word: a group's, recursively, or itself.
fn expand(name: &str, groups: &BTreeMap<String, Vec<String>>, out: &mut BTreeSet<String>) {
    if let Some(members) = groups.get(name) {
        for m in members {
            expand(m, groups, out);
        }
    } else {
        assert!(!name.starts_with('@'), "unknown group {name}");
        out.insert(name.to_owned());
    }
}
