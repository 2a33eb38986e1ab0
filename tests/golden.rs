//! Golden end-to-end output: the real binary against each fixture host,
//! `/metrics` compared with `tests/golden/<host>.prom`.
//!
//! Live values (adjtimex, the wall clock, scrape durations, the revision and
//! the host's addresses) describe the machine running the test, not the
//! fixture; they are masked: values become 0, the revision `REVISION`, and
//! only the loopback address is kept. `UPDATE_GOLDEN=1` rewrites the files.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::lab::{Exporter, only_collectors, sample};

const HOSTS: [&str; 5] = [
    "bare-metal-tsc",
    "kvm-guest-kvmclock",
    "kvm-guest-no-kvmclock-tsc",
    "kvm-guest-acpi-pm",
    "firecracker-guest-tsc",
];

/// Collectors whose output depends only on the fixture roots and this host.
const COLLECTORS: [&str; 3] = ["timex", "time", "clocksource"];

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(host: &str) -> PathBuf {
    manifest().join("tests/fixtures/hosts").join(host)
}

fn golden_path(host: &str) -> PathBuf {
    manifest().join("tests/golden").join(format!("{host}.prom"))
}

fn args_for(host: &str) -> Vec<String> {
    let root = fixture(host);
    let mut args = vec![
        "--path.procfs".to_owned(),
        root.join("proc").display().to_string(),
        "--path.sysfs".to_owned(),
        root.join("sys").display().to_string(),
        "--no-collector.clocksource.cpuid".to_owned(),
    ];
    args.extend(only_collectors(&COLLECTORS));
    args
}

fn start(host: &str) -> Exporter {
    let args = args_for(host);
    Exporter::local(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn is_live(name: &str) -> bool {
    name.starts_with("clock_timex_")
        || name == "clock_time_seconds"
        || name == "clock_scrape_collector_duration_seconds"
}

/// Masks what describes the test machine rather than the fixture.
fn mask(body: &str) -> String {
    let mut out = String::new();
    for line in body.lines() {
        if line.starts_with('#') {
            out.push_str(line);
        } else if line.starts_with("clock_host_address_info{") {
            if !line.contains("address=\"127.0.0.1\"") {
                continue;
            }
            out.push_str(line);
        } else if line.starts_with("clock_exporter_build_info{") {
            let start = line.find("revision=\"").expect("revision label") + "revision=\"".len();
            let end = start + line[start..].find('"').expect("closing quote");
            out.push_str(&line[..start]);
            out.push_str("REVISION");
            out.push_str(&line[end..]);
        } else {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (series, _) = line.rsplit_once(' ').expect("sample line has a value");
            if is_live(&line[..name_end]) {
                out.push_str(series);
                out.push_str(" 0");
            } else {
                out.push_str(line);
            }
        }
        out.push('\n');
    }
    out
}

#[test]
fn golden_outputs_match() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for host in HOSTS {
        let exporter = start(host);
        let got = mask(&exporter.scrape());
        let path = golden_path(host);
        if update {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        if got != want {
            mismatches.push(format!(
                "--- {host}: got ---\n{got}\n--- want ({}) ---\n{want}",
                path.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "golden output differs (UPDATE_GOLDEN=1 cargo test --test golden rewrites):\n{}",
        mismatches.join("\n")
    );
}

/// Parses `# HELP` and `# TYPE` lines of a text exposition into
/// (sample family name → (help, type)).
fn metadata(body: &str) -> Vec<(String, String, String)> {
    let mut helps = std::collections::HashMap::new();
    let mut out = Vec::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("help text");
            helps.insert(name.to_owned(), help.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("type");
            out.push((
                name.to_owned(),
                helps.get(name).cloned().unwrap_or_default(),
                kind.to_owned(),
            ));
        }
    }
    out
}

#[test]
fn every_emitted_family_is_catalogued_and_the_fixture_collectors_cover_their_catalogue() {
    let catalogue = clock_exporter::testing::catalogue();
    let mut seen = BTreeSet::new();
    for host in HOSTS {
        let body = start(host).scrape();
        for (name, help, kind) in metadata(&body) {
            let (desc, _) = catalogue
                .iter()
                .find(|(d, _)| d.sample_name() == name)
                .unwrap_or_else(|| panic!("{host}: {name} is emitted but not catalogued"));
            assert_eq!(help, desc.help, "{name}");
            let want = match desc.kind {
                clock_exporter::testing::metrics::Kind::Gauge => "gauge",
                clock_exporter::testing::metrics::Kind::Counter => "counter",
            };
            assert_eq!(kind, want, "{name}");
            if body
                .lines()
                .any(|l| !l.starts_with('#') && l.starts_with(&name))
            {
                seen.insert(name);
            }
        }
        assert_eq!(
            sample(
                &body,
                "clock_scrape_collector_success{collector=\"clocksource\"}"
            ),
            Some(1.0),
            "{host}:\n{body}"
        );
    }
    for (desc, sources) in &catalogue {
        if sources
            .iter()
            .any(|s| COLLECTORS.contains(s) || *s == "exporter")
        {
            assert!(
                seen.contains(&desc.sample_name()),
                "{} is never emitted by any fixture host",
                desc.sample_name()
            );
        }
    }
}

#[test]
fn fixture_facts_are_read_as_expected() {
    let kvm = start("kvm-guest-kvmclock").scrape();
    for (selector, value) in [
        (
            "clock_source_current_info{device=\"clocksource0\",clocksource=\"kvm-clock\"}",
            1.0,
        ),
        (
            "clock_source_available_info{device=\"clocksource0\",clocksource=\"acpi_pm\"}",
            1.0,
        ),
        (
            "clock_virtualization_info{hypervisor=\"kvm\",method=\"clocksource\"}",
            1.0,
        ),
        ("clock_tsc_invariant", 0.0),
        ("clock_ptp_kvm_available", 1.0),
        (
            "clock_kernel_info{release=\"3.10.0-1160.el7.x86_64\",no_kvmclock=\"false\",no_kvmclock_vsyscall=\"false\",clocksource=\"\",tsc=\"\",notsc=\"false\"}",
            1.0,
        ),
    ] {
        assert_eq!(sample(&kvm, selector), Some(value), "{selector}\n{kvm}");
    }
    let fixed = start("kvm-guest-no-kvmclock-tsc").scrape();
    assert_eq!(
        sample(
            &fixed,
            "clock_kernel_info{release=\"3.10.0-1160.el7.x86_64\",no_kvmclock=\"true\",no_kvmclock_vsyscall=\"true\",clocksource=\"\",tsc=\"\",notsc=\"false\"}"
        ),
        Some(1.0),
        "{fixed}"
    );
    assert_eq!(sample(&fixed, "clock_tsc_invariant"), Some(1.0));
    assert_eq!(sample(&fixed, "clock_ptp_kvm_available"), Some(0.0));
    let acpi = start("kvm-guest-acpi-pm").scrape();
    assert_eq!(
        sample(
            &acpi,
            "clock_virtualization_info{hypervisor=\"kvm\",method=\"dmi\"}"
        ),
        Some(1.0),
        "{acpi}"
    );
    let bare = start("bare-metal-tsc").scrape();
    assert_eq!(
        sample(
            &bare,
            "clock_virtualization_info{hypervisor=\"none\",method=\"cpuinfo\"}"
        ),
        Some(1.0),
        "{bare}"
    );
    assert_eq!(
        sample(
            &bare,
            "clock_ptp_clock_info{device=\"ptp0\",clock_name=\"ice-0000:3b:00.0-clk\"}"
        ),
        Some(1.0)
    );
    let fc = start("firecracker-guest-tsc").scrape();
    assert_eq!(
        sample(
            &fc,
            "clock_virtualization_info{hypervisor=\"kvm\",method=\"clocksource\"}"
        ),
        Some(1.0),
        "{fc}"
    );
}

#[test]
fn openmetrics_is_served_to_prometheus_and_text_to_everyone_else() {
    let e = start("bare-metal-tsc");
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, om) = e.get("/metrics", Some(prom));
    assert_eq!(status, 200);
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE clock_timex_offset_repairs counter\n"),
        "{om}"
    );
    let (_, text) = e.get("/metrics", Some("text/plain"));
    assert!(!text.contains("# EOF"));
    assert!(
        text.contains("# TYPE clock_timex_offset_repairs_total counter\n"),
        "{text}"
    );
}

#[test]
#[ignore = "needs the lab (promtool): run scripts/test"]
fn golden_outputs_pass_promtool_check_metrics() {
    let promtool = common::lab_root().join("usr/bin/promtool");
    for host in HOSTS {
        let golden = std::fs::read(golden_path(host)).expect("golden exists");
        let mut child = std::process::Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run promtool");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), &golden)
            .expect("feed promtool");
        let out = child.wait_with_output().expect("promtool output");
        assert!(
            out.status.success(),
            "{host}: promtool check metrics:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
