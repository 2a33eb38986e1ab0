//! The host's addresses follow changes: the `time` collector keeps its
//! listing between scrapes and lists again after the kernel's notice of a
//! link or address change (`sys::net::NetlinkWatch`). Proved in a network
//! namespace of the test's own, where it adds and removes a documentation
//! address without touching this machine's network. The device events that
//! make the `clocksource` collector list PTP clocks again are proved the same
//! way, with a veth pair added and removed inside the namespace (the kernel
//! sends a network device's events only to its own namespace).

mod common;

use clock_exporter::testing::sys::NetlinkWatch;
use common::lab::plan::ADDED;
use common::lab::{Lab, Netns, only_collectors};

fn ip(ns: &Netns, args: &[&str]) {
    ip_succeeded(&ns.run("ip", args), args);
}

/// Runs `ip` from the calling thread, hence in its network namespace.
fn ip_here(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip");
    ip_succeeded(&out, args);
}

fn ip_succeeded(out: &std::process::Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A watch subscribed in `ns` outside any runtime, with whatever notices
/// came at the start read, checked to report nothing while the namespace
/// is idle.
fn idle_plain_watch(ns: &Netns, subscribe: fn() -> std::io::Result<NetlinkWatch>) -> NetlinkWatch {
    let watch = ns.enter(subscribe).expect("subscribe");
    assert!(!watch.is_registered(), "no runtime: one recv per call");
    let _ = watch.changed();
    assert!(!watch.changed(), "nothing changes in an idle namespace");
    watch
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn watch_reports_an_address_change_once() {
    let lab = Lab::builder().build();
    let ns = lab.client();
    let watch = idle_plain_watch(ns, NetlinkWatch::addresses);
    ip(ns, &["addr", "add", &format!("{ADDED}/32"), "dev", "lo"]);
    assert!(watch.changed(), "adding an address is noticed");
    assert!(!watch.changed(), "one call reads every pending notice");
    ip(ns, &["addr", "del", &format!("{ADDED}/32"), "dev", "lo"]);
    assert!(watch.changed(), "removing an address is noticed");
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn device_watch_reports_a_device_added_and_removed() {
    let lab = Lab::builder().build();
    let ns = lab.client();
    let watch = idle_plain_watch(ns, NetlinkWatch::devices);
    ip(
        ns,
        &["link", "add", "cw0", "type", "veth", "peer", "name", "cw1"],
    );
    assert!(watch.changed(), "adding a device is noticed");
    assert!(!watch.changed(), "one call reads every pending event");
    ip(ns, &["link", "del", "cw0"]);
    assert!(watch.changed(), "removing a device is noticed");
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn watches_made_in_a_runtime_are_told_by_its_reactor() {
    let lab = Lab::builder().build();
    let ns = lab.client();
    ns.enter(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            // The reactor polls epoll while this task sleeps.
            let settle = || tokio::time::sleep(std::time::Duration::from_millis(50));
            let addresses = NetlinkWatch::addresses().expect("subscribe to addresses");
            let devices = NetlinkWatch::devices().expect("subscribe to devices");
            assert!(addresses.is_registered() && devices.is_registered());
            settle().await;
            let _ = (addresses.changed(), devices.changed());
            assert!(
                !addresses.changed(),
                "no address changes in an idle namespace"
            );
            assert!(!devices.changed(), "no device events in an idle namespace");
            ip_here(&["addr", "add", &format!("{ADDED}/32"), "dev", "lo"]);
            settle().await;
            assert!(addresses.changed(), "adding an address is noticed");
            assert!(!addresses.changed(), "one call reads every pending notice");
            ip_here(&["link", "add", "cw0", "type", "veth", "peer", "name", "cw1"]);
            settle().await;
            assert!(devices.changed(), "adding a device is noticed");
            assert!(!devices.changed(), "one call reads every pending event");
            ip_here(&["link", "del", "cw0"]);
            settle().await;
            assert!(devices.changed(), "removing a device is noticed");
            assert!(addresses.changed(), "removing a link is noticed too");
        });
    });
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn scrapes_show_an_added_address_and_forget_a_removed_one() {
    let lab = Lab::builder().build();
    let ns = lab.client();
    let flags = only_collectors(&["time"]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = lab.exporter(&flags);
    let listed = |body: &str| body.contains(&format!("address=\"{ADDED}\""));
    // The second scrape is served from the kept listing.
    for _ in 0..2 {
        let body = exporter.scrape();
        assert!(body.contains("address=\"127.0.0.1\""), "{body}");
        assert!(!listed(&body), "{body}");
    }
    ip(ns, &["addr", "add", &format!("{ADDED}/32"), "dev", "lo"]);
    let body = exporter.scrape();
    assert!(listed(&body), "{body}");
    ip(ns, &["addr", "del", &format!("{ADDED}/32"), "dev", "lo"]);
    let body = exporter.scrape();
    assert!(!listed(&body), "{body}");
    assert!(body.contains("address=\"127.0.0.1\""), "{body}");
}
