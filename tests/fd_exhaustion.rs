//! Out of file descriptors: accept(2) fails with EMFILE. The exporter backs
//! off instead of spinning, says so once per episode, and serves again as
//! soon as descriptors are free.

mod common;

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::lab::{Proc, TempDir, exporter_bin, free_port, http_get, only_collectors, wait_for};

#[test]
fn emfile_backs_off_and_recovers() {
    let dir = TempDir::new("emfile");
    let addr = format!("127.0.0.1:{}", free_port());
    // `ulimit -n` sets the soft and the hard limit, so the exporter cannot
    // raise its way out: 64 descriptors, far below --web.max-connections.
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(format!(
        "ulimit -n 64 && exec {} --web.listen-address {addr} {}",
        exporter_bin().display(),
        only_collectors(&["time"]).join(" ")
    ));
    let mut proc = Proc::spawn(cmd, dir.path().join("exporter.log"), "clock_exporter");
    wait_for("exporter to answer", Duration::from_secs(10), || {
        proc.assert_running();
        http_get(&addr, "/", None).ok().map(|_| ())
    });

    let idle: Vec<TcpStream> = (0..100)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    wait_for("an EMFILE warning", Duration::from_secs(10), || {
        proc.log_text().contains("out of resources").then_some(())
    });
    proc.assert_running();
    drop(idle);

    let (status, body) = wait_for(
        "service after descriptors are freed",
        Duration::from_secs(40),
        || {
            http_get(&addr, "/metrics", None)
                .ok()
                .filter(|(s, _)| *s == 200)
        },
    );
    assert_eq!(status, 200);
    assert!(body.contains("clock_time_seconds "), "{body}");
    // Backing off: a handful of warnings, not one per spin of the loop.
    let warnings = proc.log_text().matches("out of resources").count();
    assert!(warnings < 50, "{warnings} warnings:\n{}", proc.log_text());
}
