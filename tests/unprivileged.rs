//! The exporter as `nobody`, with no capability: it serves every collector
//! that needs none, holds no capability, and writes no file anywhere.
//! Without capabilities `nobody` can create files only in directories it may
//! write to: the world-writable ones and a working directory made so for
//! the test; none of them holds a file owned by `nobody` afterwards. Needs
//! root to drop to `nobody` (`setpriv`), so it runs with the lab tests.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::lab::{self, Proc, TempDir, exporter_bin, free_port, http_get, sample, wait_for};

/// Every path under `dirs` owned by `uid`, recursively (not following
/// symbolic links).
fn owned_by(uid: u32, dirs: &[&Path]) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo: Vec<std::path::PathBuf> = dirs.iter().map(|d| d.to_path_buf()).collect();
    while let Some(dir) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.filter_map(Result::ok) {
            let Ok(meta) = e.path().symlink_metadata() else {
                continue;
            };
            if meta.uid() == uid {
                out.push(e.path().display().to_string());
            }
            if meta.is_dir() {
                todo.push(e.path());
            }
        }
    }
    out
}

/// A capability set of `/proc/<pid>/status` (`CapEff`, `CapPrm`, ...).
fn capabilities(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .expect("capability line")
        .trim();
    u64::from_str_radix(hex, 16).expect("hex")
}

#[test]
#[ignore = "needs root to drop to nobody: run scripts/test"]
fn as_nobody_it_serves_with_no_capability_and_writes_no_file() {
    lab::require_root();
    // A working directory nobody may write to is the strictest check; one
    // it may write to (0777) shows it does not even try.
    let cwd = TempDir::new("nobody-cwd");
    std::fs::set_permissions(
        cwd.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let logs = TempDir::new("nobody-log");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("a nobody user")
        .uid
        .as_raw();
    let writable: Vec<&Path> = ["/tmp", "/var/tmp", "/dev/shm", "/run/lock"]
        .iter()
        .map(Path::new)
        .chain([cwd.path()])
        .collect();
    let before = owned_by(nobody, &writable);
    let addr = format!("127.0.0.1:{}", free_port());
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
    ])
    .arg(exporter_bin())
    .args(["--web.listen-address", &addr])
    .current_dir(cwd.path())
    .env("HOME", cwd.path());
    let mut proc = Proc::spawn(
        cmd,
        logs.path().join("exporter.log"),
        "clock_exporter as nobody",
    );
    let body = wait_for("the exporter answers", Duration::from_secs(10), || {
        proc.assert_running();
        http_get(&addr, "/metrics", None)
            .ok()
            .filter(|(code, _)| *code == 200)
            .map(|(_, b)| b)
    });
    for collector in ["timex", "time", "clocksource"] {
        let line = format!("clock_scrape_collector_success{{collector=\"{collector}\"}}");
        assert_eq!(sample(&body, &line), Some(1.0), "{collector}:\n{body}");
    }
    for _ in 0..5 {
        let (code, _) = http_get(&addr, "/metrics", None).expect("scrape");
        assert_eq!(code, 200);
    }
    let pid = proc.child.id();
    for set in ["CapEff:", "CapPrm:", "CapInh:", "CapAmb:"] {
        assert_eq!(capabilities(pid, set), 0, "{set}");
    }
    drop(proc);
    // What nobody owned there before (another program's, say) is not ours.
    let new: Vec<String> = owned_by(nobody, &writable)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(new.is_empty(), "files written as nobody: {new:?}");
}
