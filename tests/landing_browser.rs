//! The landing page in a real browser: Debian's headless Chromium loads it
//! from the exporter beside a real chronyd, on an honest lab and on one
//! with a skewed server, and the rendered DOM (`--dump-dom`) carries the
//! verdict. With `UPDATE_SCREENSHOTS=1` it also writes the screenshots
//! docs/ shows (`docs/landing-trusted.png`, `docs/landing-not-trusted.png`);
//! otherwise it writes only into its own temporary directory.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::lab::{Daemon, Exporter, Lab, TempDir, only_collectors};

fn chromium() -> PathBuf {
    PathBuf::from("/usr/bin/chromium")
}

/// Chromium in the exporter's namespace, with a profile of its own in `dir`.
fn browse(lab: &Lab, dir: &Path, args: &[&str]) -> Output {
    let profile = dir.join("profile");
    let mut cmd = lab.client().command(chromium());
    cmd.env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("config"))
        .env("XDG_CACHE_HOME", dir.join("cache"))
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-crash-reporter",
            "--disable-breakpad",
            "--disable-extensions",
            "--window-size=1000,1500",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args);
    cmd.output().expect("chromium runs")
}

/// Scrapes until the page (as the exporter serves it) says `class`, so the
/// history holds a few points; then the browser's view of it.
fn rendered(lab: &Lab, exporter: &Exporter, class: &str, screenshot: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        exporter.scrape();
        let (_, page) = exporter.get("/", None);
        if page.contains(&format!("class=\"verdict {class}\"")) && page.contains("<svg") {
            break;
        }
        assert!(Instant::now() < deadline, "no {class} verdict:\n{page}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let dir = TempDir::new("chromium");
    let url = format!("http://{}/", exporter.addr);
    let out = browse(lab, &dir.0, &["--dump-dom", &url]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let png = dir.0.join("page.png");
    let shot = browse(
        lab,
        &dir.0,
        &[&format!("--screenshot={}", png.display()), &url],
    );
    assert!(
        shot.status.success() && png.exists(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let to = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join(screenshot);
        std::fs::copy(&png, &to).expect("copy the screenshot");
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn flags() -> Vec<String> {
    only_collectors(&["chrony", "clocksource"])
}

#[test]
#[ignore = "needs root, the lab and chromium: run scripts/test"]
fn an_honest_lab_is_trusted_in_the_browser() {
    let lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .honest("c")
        .honest("d")
        .build();
    let flags = flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = lab.exporter(&flags);
    let dom = rendered(&lab, &exporter, "trusted", "landing-trusted.png");
    assert!(dom.contains("class=\"verdict trusted\""), "{dom}");
    assert!(
        dom.contains("This host's clock is <strong>trusted</strong>"),
        "{dom}"
    );
    // The browser built the chart and the sources table.
    assert!(dom.contains("<svg") && dom.contains("<polyline"), "{dom}");
    assert_eq!(dom.matches("<td class=\"selected\">").count(), 1, "{dom}");
}

#[test]
#[ignore = "needs root, the lab and chromium: run scripts/test"]
fn a_skewed_server_is_named_in_the_browser() {
    let lab = Lab::builder()
        .client(Daemon::Chronyd)
        .honest("a")
        .skewed("b", 11.5)
        .honest("c")
        .build();
    let skewed = lab.addr("b").to_string();
    let flags = flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let exporter = lab.exporter(&flags);
    let dom = rendered(&lab, &exporter, "not-trusted", "landing-not-trusted.png");
    assert!(
        dom.contains("This host's clock is <strong>not trusted</strong>"),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("chronyd marks {skewed} a falseticker")),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<tr><td>{skewed}</td><td class=\"falseticker\">")),
        "{dom}"
    );
}
