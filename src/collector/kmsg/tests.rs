use super::*;
use crate::metrics::find;
use crate::sys::fs::TestDir;
use std::io::Write;

/// What a KVM guest's log says when the watchdog demotes the TSC after
/// boot, with a forged line from a process and one broken record.
const DEMOTION: &str = "\
6,100,318107,-;clocksource: Switched to clocksource kvm-clock
6,101,386484,-;clocksource: Switched to clocksource tsc
 SUBSYSTEM=clocksource
4,140,7200000000,-;clocksource: timekeeping watchdog on CPU1: Marking clocksource 'tsc' as unstable because the skew is too large:
4,141,7200000001,-;clocksource:                       'kvm-clock' wd_nsec: 512000000 wd_now: 1 wd_last: 2 mask: ffffffffffffffff
6,142,7200000002,-;tsc: Marking TSC unstable due to clocksource watchdog
6,143,7200000500,-;clocksource: Switched to clocksource kvm-clock
14,144,7300000000,-;clocksource: Switched to clocksource forged
garbage without a header
";

fn value(families: &[Family], desc: &'static crate::metrics::Desc, labels: &[&str]) -> Option<f64> {
    find(families, desc)?.value(labels)
}

#[test]
fn a_demotion_after_boot_is_counted_once_with_its_time() {
    let mut t = Tally::seeded(["tsc", "kvm-clock", "acpi_pm"]);
    for line in DEMOTION.split_inclusive('\n') {
        t.add(line.as_bytes());
    }
    // Records 102..=139 were overwritten between 101 and 140.
    assert_eq!((t.records, t.lost, t.malformed), (8, 38, 1));
    assert_eq!(t.first, Some((100, 318_107)));
    let boot = 1_700_000_000.0;
    let f = t.families(boot);
    crate::collector::assert_declared(&REGISTRATION, &f);
    assert_eq!(value(&f, &SWITCHES, &["kvm-clock"]), Some(2.0));
    assert_eq!(value(&f, &SWITCHES, &["tsc"]), Some(1.0));
    assert_eq!(value(&f, &SWITCHES, &["acpi_pm"]), Some(0.0));
    assert_eq!(value(&f, &SWITCHES, &["forged"]), None, "not the kernel's");
    assert_eq!(value(&f, &UNSTABLE, &["tsc"]), Some(1.0));
    assert_eq!(value(&f, &UNSTABLE, &["kvm-clock"]), Some(0.0));
    assert_eq!(
        value(&f, &LAST_UNSTABLE, &["tsc"]),
        Some(boot + 7_200.000_000)
    );
    assert_eq!(
        value(&f, &LAST_SWITCH, &["kvm-clock"]),
        Some(boot + 7_200.000_500)
    );
    assert_eq!(value(&f, &LAST_SWITCH, &["acpi_pm"]), None, "never");
    assert_eq!(value(&f, &FIRST_SEQUENCE, &[]), Some(100.0));
    assert_eq!(value(&f, &FIRST_TIME, &[]), Some(boot + 0.318_107));
    assert_eq!(value(&f, &RECORDS, &[]), Some(8.0));
    assert_eq!(value(&f, &LOST, &[]), Some(38.0));
    assert_eq!(value(&f, &MALFORMED, &[]), Some(1.0));
}

#[test]
fn seeded_names_are_checked_as_the_logs_are() {
    let t = Tally::seeded(["tsc", "bad name", "x\u{7f}", "", "kvm-clock"]);
    let names: Vec<&str> = t.sources.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["tsc", "kvm-clock"]);
}

#[test]
fn names_beyond_the_bound_are_counted_as_other() {
    let mut t = Tally::default();
    for i in 0..MAX_CLOCKSOURCES + 5 {
        t.add(format!("6,{i},{i},-;clocksource: Switched to clocksource cs{i}\n").as_bytes());
    }
    assert_eq!(t.sources.len(), MAX_CLOCKSOURCES + 1);
    let f = t.families(0.0);
    assert_eq!(value(&f, &SWITCHES, &["other"]), Some(5.0));
    assert_eq!(value(&f, &SWITCHES, &["cs0"]), Some(1.0));
    // A name already counted keeps its own series.
    t.add(b"6,99,99,-;clocksource: Switched to clocksource cs0\n");
    assert_eq!(value(&t.families(0.0), &SWITCHES, &["cs0"]), Some(2.0));
}

fn collector(dir: &TestDir, log: &std::path::Path) -> Arc<KmsgCollector> {
    dir.write(
        "sys/devices/system/clocksource/clocksource0/available_clocksource",
        b"tsc kvm-clock \n",
    );
    dir.write(
        "sys/devices/system/clocksource/clocksource0/current_clocksource",
        b"tsc\n",
    );
    let roots = Roots {
        procfs: dir.path().join("proc"),
        sysfs: dir.path().join("sys"),
    };
    Arc::new(KmsgCollector::new(log.to_owned(), &roots))
}

#[tokio::test]
async fn the_log_is_followed_without_reading_a_record_twice() {
    let dir = TestDir::new("kmsg-follow");
    let log = dir.write(
        "kmsg",
        b"6,0,318107,-;clocksource: Switched to clocksource kvm-clock\n",
    );
    let c = collector(&dir, &log);
    let out = c.clone().collect().await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    crate::collector::assert_declared(&REGISTRATION, &out.families);
    assert_eq!(value(&out.families, &READABLE, &[]), Some(1.0));
    assert_eq!(value(&out.families, &SWITCHES, &["kvm-clock"]), Some(1.0));
    assert_eq!(value(&out.families, &SWITCHES, &["tsc"]), Some(0.0));
    assert_eq!(value(&out.families, &FIRST_SEQUENCE, &[]), Some(0.0));

    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("append");
    f.write_all(b"6,1,386484,-;clocksource: Switched to clocksource tsc\n")
        .expect("write");
    let out = c.clone().collect().await;
    assert_eq!(value(&out.families, &SWITCHES, &["kvm-clock"]), Some(1.0));
    assert_eq!(value(&out.families, &SWITCHES, &["tsc"]), Some(1.0));
    assert_eq!(value(&out.families, &RECORDS, &[]), Some(2.0));
    // A quiet log changes nothing.
    let again = c.clone().collect().await;
    assert_eq!(value(&again.families, &RECORDS, &[]), Some(2.0));
}

#[tokio::test]
async fn an_absent_log_is_said_and_is_not_a_failure() {
    let dir = TestDir::new("kmsg-absent");
    let c = collector(&dir, &dir.path().join("no-such-kmsg"));
    let out = c.clone().collect().await;
    assert_eq!(value(&out.families, &READABLE, &[]), Some(0.0));
    assert!(
        out.errors.iter().all(|e| !e.is_failure()),
        "{:?}",
        out.errors
    );
    assert_eq!(out.errors.len(), 1);
    // The seeded counts are there, at 0.
    assert_eq!(value(&out.families, &UNSTABLE, &["tsc"]), Some(0.0));
}

/// The real log of this machine, as root: the boot-time switches that
/// `dmesg` shows are counted, and a record written through /dev/kmsg is
/// read and, being a process's and not the kernel's, not counted.
#[tokio::test]
#[ignore = "needs root (CAP_SYSLOG): run scripts/test"]
async fn this_machines_log_counts_what_dmesg_shows() {
    let c = Arc::new(KmsgCollector::new(
        PathBuf::from("/dev/kmsg"),
        &Roots::default(),
    ));
    let out = c.clone().collect().await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(value(&out.families, &READABLE, &[]), Some(1.0));
    let current =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .expect("current clocksource");
    let current = current.trim();
    let first = value(&out.families, &FIRST_SEQUENCE, &[]).expect("a first record");
    if first == 0.0 {
        // The whole log since boot is kept: the kernel switched to the
        // clocksource it uses at least once, as many times as dmesg says.
        let dmesg = std::process::Command::new("dmesg")
            .arg("--facility=kern")
            .output()
            .expect("dmesg runs");
        let text = String::from_utf8_lossy(&dmesg.stdout);
        let said = text
            .lines()
            .filter(|l| l.ends_with(&format!("Switched to clocksource {current}")))
            .count();
        assert!(said >= 1, "dmesg shows the switch to {current}");
        assert_eq!(
            value(&out.families, &SWITCHES, &[current]),
            Some(said as f64)
        );
    } else {
        // Boot is gone from the log; still, the current one has a series.
        assert!(value(&out.families, &SWITCHES, &[current]).is_some());
    }
    let read = value(&out.families, &RECORDS, &[]).expect("records");
    let switches = value(&out.families, &SWITCHES, &[current]);
    std::fs::write(
        "/dev/kmsg",
        "clock_exporter's tests: the kernel log is followed\n",
    )
    .expect("root may write the kernel log");
    let after = c.clone().collect().await;
    assert!(
        value(&after.families, &RECORDS, &[]).expect("records") > read,
        "the written record is read"
    );
    assert_eq!(value(&after.families, &SWITCHES, &[current]), switches);
}
