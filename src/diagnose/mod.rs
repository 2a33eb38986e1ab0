//! `clock_exporter diagnose`: one run of every enabled collector (the
//! server's flags), then a verdict ([`findings`]) judged with the alerts'
//! thresholds ([`thresholds`]), written as text, JSON or a Nagios plugin's
//! output ([`render`]). docs/diagnose.md has the findings, the JSON schema
//! and the Nagios flags.

pub mod findings;
pub mod history;
pub mod page;
pub mod render;
pub mod thresholds;

use std::sync::Arc;

use clap::{Arg, ArgMatches, Command};

use crate::collector::Context;
use crate::scrape::Scraper;
use findings::{Limits, verdict};

/// The wall clock as Unix seconds, for the verdict's "how long ago" and
/// the history's points: the collectors' own.
pub use crate::collector::unix_now;

/// How the verdict is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For a person.
    Text,
    /// For a program (docs/diagnose.md has the schema).
    Json,
    /// A Nagios plugin's status line with perfdata.
    Nagios,
}

fn seconds_flag(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id)
        .long(id)
        .value_name("SECONDS")
        .value_parser(clap::value_parser!(f64))
        .help(help)
}

/// The flags `diagnose` adds to the server's. The clock-rate probe reads
/// every second instead of every ten, so that a short sample has a few
/// intervals.
pub fn args(cmd: Command) -> Command {
    cmd.mut_arg("collector.rate.interval", |a| a.default_value("1s"))
        .arg(
            Arg::new("rate-sample")
                .long("rate-sample")
                .value_name("DURATION")
                .value_parser(crate::collector::flags::parse_duration)
                .default_value("3s")
                .help("How long the clock-rate probe samples before the verdict (0s: not at all); a window this short shows the TSC's frequency and the discipline's rate, not kvm-clock's steps, which need 300 s"),
        )
        .arg(
        Arg::new("format")
            .long("format")
            .value_parser(clap::value_parser!(Format))
            .default_value("text")
            .help("How the verdict is written: text, json or nagios (exit codes 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)"),
    )
    .arg(seconds_flag("warning-offset", "Worst-case error (|offset| + root distance) above which the verdict warns (default: ClockOffsetTooLarge's, 0.05)"))
    .arg(seconds_flag("critical-offset", "Worst-case error above which it is critical (default: 0.128)"))
    .arg(seconds_flag("warning-jitter", "The daemon's jitter above which it warns (default: not judged)"))
    .arg(seconds_flag("critical-jitter", "The daemon's jitter above which it is critical"))
    .arg(
        Arg::new("warning-stratum")
            .long("warning-stratum")
            .value_parser(clap::value_parser!(f64))
            .help("Stratum above which it warns (default: not judged)"),
    )
    .arg(
        Arg::new("critical-stratum")
            .long("critical-stratum")
            .value_parser(clap::value_parser!(f64))
            .help("Stratum above which it is critical"),
    )
    .arg(
        Arg::new("warning-sources")
            .long("warning-sources")
            .value_parser(clap::value_parser!(f64))
            .help("Usable sources below which it warns (default: ClockTooFewSources', 3)"),
    )
    .arg(
        Arg::new("critical-sources")
            .long("critical-sources")
            .value_parser(clap::value_parser!(f64))
            .help("Usable sources below which it is critical (default: 1, i.e. none usable)"),
    )
}

/// The limits the flags give.
pub fn limits(m: &ArgMatches) -> Limits {
    let d = Limits::default();
    let f = |id: &str| m.get_one::<f64>(id).copied();
    Limits {
        offset: (
            f("warning-offset").unwrap_or(d.offset.0),
            f("critical-offset").unwrap_or(d.offset.1),
        ),
        jitter: (f("warning-jitter"), f("critical-jitter")),
        stratum: (f("warning-stratum"), f("critical-stratum")),
        sources: (
            f("warning-sources").unwrap_or(d.sources.0),
            f("critical-sources").unwrap_or(d.sources.1),
        ),
    }
}

/// Runs one collection and writes the verdict to stdout; returns the
/// Nagios exit code (also for text and JSON, so scripts can branch on it).
/// A collector that cannot be built (a bad flag) is UNKNOWN, 3, as the
/// plugin convention wants, with the reason on the status line.
pub async fn run(
    m: &ArgMatches,
    ctx: &Context,
    timeout: std::time::Duration,
) -> Result<u8, String> {
    let format = m
        .get_one::<Format>("format")
        .copied()
        .unwrap_or(Format::Text);
    let scraper = match Scraper::from_matches(m, ctx, timeout) {
        Ok(s) => Arc::new(s),
        Err(e) => {
            if format == Format::Nagios {
                println!(
                    "CLOCK UNKNOWN - cannot run the collectors: {}",
                    e.replace('|', "/")
                );
            } else {
                eprintln!("clock_exporter diagnose: cannot run the collectors: {e}");
            }
            return Ok(render::UNKNOWN);
        }
    };
    let sample = m
        .get_one::<std::time::Duration>("rate-sample")
        .copied()
        .unwrap_or_default();
    if crate::collector::flags::flag(m, "collector.rate") && !sample.is_zero() {
        // The probe's sampler started with the collector; give it a few
        // readings.
        tokio::time::sleep(sample).await;
    }
    let families = scraper.scrape().await;
    let limits = limits(m);
    let v = verdict(&families, unix_now(), &limits);
    let out = match format {
        Format::Text => render::text(&v),
        Format::Json => render::json(&v),
        Format::Nagios => render::nagios(&v, &limits),
    };
    print!("{out}");
    Ok(render::exit_code(&v))
}

#[cfg(test)]
mod tests;
