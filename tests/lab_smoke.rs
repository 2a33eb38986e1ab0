//! Proves the lab itself: namespaces, honest chronyd servers and the skewed
//! responder, as chronyd's own `chronyc` sees them.

mod lab;

use std::net::Ipv4Addr;
use std::time::Duration;

use lab::{Chronyd, Netns, SkewedServer, chrony_server, link, wait_for};

const CLIENT: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVER_A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 11);
const SERVER_B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 12);

/// The original measured offset of `chronyc -n sources` for one address (the
/// value in brackets), in seconds. The value before the brackets is adjusted
/// for chronyd's own corrections since, which under `-x` are virtual: once
/// chronyd follows the skewed server, honest ones show its 11.5 s there.
fn chronyc_offset(sources: &str, addr: &str) -> Option<f64> {
    let line = sources
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(addr))?;
    // No sample yet while the reach register is 0.
    if line.split_whitespace().nth(4)? == "0" {
        return None;
    }
    let field = line.split('[').nth(1)?.split(']').next()?.trim();
    let (num, unit) = field.split_at(field.find(|c: char| c.is_ascii_alphabetic())?);
    let scale = match unit {
        "ns" => 1e-9,
        "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    Some(num.parse::<f64>().ok()? * scale)
}

/// A client host linked to an honest chronyd server (A) and to the skewed
/// responder (B, 11.5 s ahead). Fields drop in order: servers before the
/// namespaces they run in.
struct Hosts {
    root: std::path::PathBuf,
    _server_a: lab::Chronyd,
    skewed: SkewedServer,
    client: Netns,
    _a: Netns,
    _b: Netns,
}

fn hosts() -> Hosts {
    lab::require_root();
    let root = lab::root();
    let client = Netns::new();
    let a = Netns::new();
    let b = Netns::new();
    link(&client, CLIENT, &a, SERVER_A);
    link(&client, CLIENT, &b, SERVER_B);
    Hosts {
        _server_a: chrony_server(&root, &a, "server-a"),
        skewed: SkewedServer::start(&b, SERVER_B, 11.5, 0.0),
        root,
        client,
        _a: a,
        _b: b,
    }
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn skewed_server_is_seen_by_chronyd_with_its_offset() {
    // Bound whole: destructuring with `..` would drop the servers at once.
    let hosts = hosts();
    let (root, client, skewed) = (&hosts.root, &hosts.client, &hosts.skewed);
    let chronyd = Chronyd::start(
        root,
        client,
        "client",
        &format!(
            "server {SERVER_A} iburst minpoll -2 maxpoll 0\nserver {SERVER_B} iburst minpoll -2 maxpoll 0\n"
        ),
    );
    let sources = wait_for("both sources measured", Duration::from_secs(30), || {
        let s = chronyd.chronyc(root, client, &["-n", "sources"]);
        (chronyc_offset(&s, &SERVER_A.to_string()).is_some()
            && chronyc_offset(&s, &SERVER_B.to_string()).is_some())
        .then_some(s)
    });
    let off_a = chronyc_offset(&sources, &SERVER_A.to_string()).expect("A offset");
    let off_b = chronyc_offset(&sources, &SERVER_B.to_string()).expect("B offset");
    assert!(
        off_a.abs() < 0.01,
        "honest server offset {off_a}\n{sources}"
    );
    // chronyc prints local-minus-source: a server 11.5 s ahead shows as -11.5 s.
    assert!(
        (off_b + 11.5).abs() < 0.01,
        "skewed server offset {off_b}\n{sources}"
    );
    assert!(skewed.requests.load(std::sync::atomic::Ordering::Relaxed) > 0);
}

#[test]
#[ignore = "needs root and the lab: run scripts/test"]
fn ntpd_answers_ntpq_and_sees_the_skewed_server() {
    let hosts = hosts();
    let (root, client) = (&hosts.root, &hosts.client);
    let _ntpd = lab::Ntpd::start(
        root,
        client,
        "ntpd",
        &format!(
            "server {SERVER_A} iburst minpoll 3 maxpoll 4\nserver {SERVER_B} iburst minpoll 3 maxpoll 4\n"
        ),
    );
    let peers = wait_for(
        "ntpq to show both peers reached",
        Duration::from_secs(40),
        || {
            let p = lab::Ntpd::ntpq(root, client, &["-n", "-p"]);
            let reached = |addr: Ipv4Addr| {
                p.lines()
                    .find(|l| l.contains(&addr.to_string()))
                    .and_then(|l| l.split_whitespace().nth(6))
                    .is_some_and(|reach| reach != "0")
            };
            (reached(SERVER_A) && reached(SERVER_B)).then_some(p)
        },
    );
    // ntpq -p: remote refid st t when poll reach delay offset jitter (ms).
    let offset_ms = |addr: Ipv4Addr| -> f64 {
        let line = peers
            .lines()
            .find(|l| l.contains(&addr.to_string()))
            .expect("peer line");
        line.split_whitespace()
            .nth(8)
            .and_then(|v| v.parse().ok())
            .expect("offset")
    };
    assert!(offset_ms(SERVER_A).abs() < 10.0, "{peers}");
    // ntpq prints θ (peer minus local): the skewed server is +11500 ms.
    assert!((offset_ms(SERVER_B) - 11_500.0).abs() < 10.0, "{peers}");
}
