//! Missing, empty, garbage, binary, enormous and FIFO files under the roots,
//! and roots that do not exist: the affected series are omitted, the
//! collector reports failure, one clear log line says why, and the exporter
//! keeps serving.

mod common;

use std::path::{Path, PathBuf};

use common::lab::{Exporter, TempDir, only_collectors, sample};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read fixture dir") {
        let e = e.expect("entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).expect("copy");
        }
    }
}

/// A writable copy of the bare-metal fixture host.
fn host_copy() -> (TempDir, PathBuf, PathBuf) {
    let dir = TempDir::new("hostile-root");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hosts/bare-metal-tsc");
    copy_dir(&src, dir.path());
    let (proc, sys) = (dir.path().join("proc"), dir.path().join("sys"));
    (dir, proc, sys)
}

const CURRENT: &str = "devices/system/clocksource/clocksource0/current_clocksource";

fn start(proc: &Path, sys: &Path) -> Exporter {
    let mut args = vec![
        "--path.procfs".to_owned(),
        proc.display().to_string(),
        "--path.sysfs".to_owned(),
        sys.display().to_string(),
        "--no-collector.clocksource.cpuid".to_owned(),
    ];
    args.extend(only_collectors(&["timex", "time", "clocksource"]));
    Exporter::local(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Scrapes three times (the exporter keeps serving), checks the collector
/// failed while the others did not, and that the failure was logged once,
/// naming `needle`. Returns the last body.
fn assert_contained_failure(e: &mut Exporter, needle: &str) -> String {
    let mut body = String::new();
    for _ in 0..3 {
        body = e.scrape();
        assert_eq!(
            sample(
                &body,
                "clock_scrape_collector_success{collector=\"clocksource\"}"
            ),
            Some(0.0),
            "{body}"
        );
        assert_eq!(
            sample(&body, "clock_scrape_collector_success{collector=\"timex\"}"),
            Some(1.0)
        );
        assert!(sample(&body, "clock_time_seconds").is_some());
    }
    e.proc.assert_running();
    let log = e.proc.log_text();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("collector failed"))
        .collect();
    assert_eq!(
        failures.len(),
        1,
        "one log line per persistent failure:\n{log}"
    );
    assert!(log.contains(needle), "log names {needle:?}:\n{log}");
    body
}

#[test]
fn roots_that_do_not_exist() {
    let mut e = start(
        Path::new("/nonexistent/proc"),
        Path::new("/nonexistent/sys"),
    );
    let body = assert_contained_failure(&mut e, "/nonexistent/sys/devices/system/clocksource");
    assert!(!body.contains("clock_source_current_info{"), "{body}");
    assert!(!body.contains("clock_kernel_info{"), "{body}");
    assert!(
        e.proc
            .log_text()
            .contains("/nonexistent/proc/cmdline: no such file")
    );
}

#[test]
fn missing_cmdline_costs_only_kernel_info() {
    let (_dir, proc, sys) = host_copy();
    std::fs::remove_file(proc.join("cmdline")).expect("rm");
    let mut e = start(&proc, &sys);
    let body = assert_contained_failure(&mut e, "cmdline: no such file");
    assert!(!body.contains("clock_kernel_info{"), "{body}");
    assert_eq!(
        sample(
            &body,
            "clock_source_current_info{device=\"clocksource0\",clocksource=\"tsc\"}"
        ),
        Some(1.0)
    );
}

#[test]
fn empty_and_garbage_clocksource_files() {
    for (content, label) in [
        (&b""[..], "empty"),
        (&b"tsc kvm-clock\n"[..], "two names"),
        (&b"\x1b[31mtsc\"}\n"[..], "escape codes"),
    ] {
        let (_dir, proc, sys) = host_copy();
        std::fs::write(sys.join(CURRENT), content).expect("write");
        let mut e = start(&proc, &sys);
        let body = assert_contained_failure(&mut e, "current_clocksource: unexpected content");
        assert!(
            !body.contains("clock_source_current_info{"),
            "{label}: {body}"
        );
        // Facts read at start are unaffected.
        assert!(body.contains("clock_kernel_info{"), "{label}");
    }
}

#[test]
fn binary_and_enormous_files() {
    let (_dir, proc, sys) = host_copy();
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(proc.join("cpuinfo"), &noise).expect("write");
    let mut e = start(&proc, &sys);
    let body = assert_contained_failure(&mut e, "cpuinfo: not a text file");
    assert!(!body.contains("clock_tsc_invariant "), "{body}");

    let (_dir2, proc2, sys2) = host_copy();
    std::fs::write(proc2.join("cpuinfo"), vec![b'a'; 9 << 20]).expect("write");
    std::fs::write(sys2.join(CURRENT), vec![b't'; 100 * 1024]).expect("write");
    let mut e2 = start(&proc2, &sys2);
    let body2 = assert_contained_failure(&mut e2, "cpuinfo: larger than 8388608 bytes");
    assert!(
        e2.proc
            .log_text()
            .contains("current_clocksource: larger than 65536 bytes")
    );
    assert!(!body2.contains("clock_source_current_info{"));
}

#[test]
fn a_cpuinfo_of_a_hundred_thousand_keys_does_not_delay_the_start() {
    use std::fmt::Write as _;
    let (_dir, proc, sys) = host_copy();
    // One block of 1.4 MiB of keys: procfs-core's parser is quadratic in
    // them, and took 45 s over this before the exporter listened. The
    // exporter must answer within the harness's 10 s start wait.
    let keys = (0..140_000).fold(String::new(), |mut t, i| {
        let _ = writeln!(t, "key{i}\t: v");
        t
    });
    assert!(keys.len() > 1_400_000);
    std::fs::write(proc.join("cpuinfo"), keys).expect("write");
    let mut e = start(&proc, &sys);
    let body = assert_contained_failure(
        &mut e,
        "the block of the first CPU is longer than 32768 bytes",
    );
    assert!(!body.contains("clock_tsc_invariant "), "{body}");
    // The rest of what was read at start is there.
    assert!(body.contains("clock_kernel_info{"), "{body}");
}

#[test]
fn a_fifo_does_not_hang_the_scrape() {
    let (_dir, proc, sys) = host_copy();
    let path = sys.join(CURRENT);
    std::fs::remove_file(&path).expect("rm");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut e = start(&proc, &sys);
    let started = std::time::Instant::now();
    assert_contained_failure(&mut e, "current_clocksource: unexpected content");
    // Three scrapes, far below one default scrape timeout (5 s) each.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
