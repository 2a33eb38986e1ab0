//! clock_exporter: a Prometheus exporter that tells whether a host's clock
//! can be trusted, and why not.
//!
//! The public surface is what the binary (`main.rs`) needs: [`parse_args`],
//! [`init_logging`] and [`run`]. Integration tests, benchmarks, examples and
//! fuzz targets reach the decoders and pure report functions through
//! [`testing`]; everything else is private, so the compiler sees dead code.
//! `docs/architecture.md` says which module may import which.

mod cli;
mod collector;
mod diagnose;
mod http;
mod metrics;
mod model;
mod proto;
mod scrape;
mod sys;
pub mod testing;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::prelude::*;

pub use crate::cli::{Cli, LogFormat, LogLevel};
use crate::collector::Context;
use crate::scrape::Scraper;
use crate::sys::fs::Roots;

/// Parses the process's arguments against the global flags and every
/// collector's (exits with usage on error, as clap does).
///
/// `clock_exporter diagnose [flags]` takes the same flags plus the
/// verdict's (`diagnose::args`); its log level defaults to `warn`, so a
/// terminal or Nagios sees the verdict and not the start-up lines.
pub fn parse_args() -> (Cli, clap::ArgMatches) {
    parse_args_from(std::env::args_os().collect())
}

/// `clock_exporter diagnose`'s flags: the server's, and the verdict's.
fn diagnose_command() -> clap::Command {
    diagnose::args(cli::command(collector::REGISTRY))
        .after_help("Exit codes in every format: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.")
        .about("One collection, then the verdict: can this host's clock be trusted, and why not.")
}

/// Every flag, with `diagnose` as a subcommand: what the man page and the
/// shell completions are generated from (`examples/dist_assets.rs`). The
/// parser itself takes `diagnose` by hand, as the first argument, followed
/// by every server flag and the verdict's own.
pub fn documented_command() -> clap::Command {
    cli::command(collector::REGISTRY)
        .name("clock_exporter")
        .subcommand(diagnose_command().name("diagnose"))
}

fn parse_args_from(mut args: Vec<std::ffi::OsString>) -> (Cli, clap::ArgMatches) {
    if args.get(1).is_some_and(|a| a == "diagnose") {
        args.remove(1);
        let cmd = diagnose_command()
            .name("clock_exporter diagnose")
            .bin_name("clock_exporter diagnose");
        let m = cmd.get_matches_from(args);
        let mut cli =
            <Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
        if m.value_source("log_level") != Some(clap::parser::ValueSource::CommandLine) {
            cli.log_level = LogLevel::Warn;
        }
        return (cli, m);
    }
    cli::parse_from(collector::REGISTRY, args)
}

/// Installs the global logger on stderr.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Error => LevelFilter::ERROR,
        LogLevel::Warn => LevelFilter::WARN,
        LogLevel::Info => LevelFilter::INFO,
        LogLevel::Debug => LevelFilter::DEBUG,
    };
    // hyper's and h2's own debug lines are noise to an operator. A target
    // filter, not an EnvFilter: that one compiles regular expressions at
    // start, which costs memory and a larger binary for nothing here.
    let filter = Targets::new()
        .with_default(level)
        .with_target("hyper", LevelFilter::WARN)
        .with_target("h2", LevelFilter::WARN);
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let registry = tracing_subscriber::registry();
    let result = match format {
        LogFormat::Json => registry
            .with(layer.json().flatten_event(true).with_filter(filter))
            .try_init(),
        LogFormat::Logfmt => registry
            .with(
                layer
                    .event_format(tracing_logfmt::EventsFormatter::default())
                    .fmt_fields(tracing_logfmt::FieldsFormatter::default())
                    .with_filter(filter),
            )
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("clock_exporter: logging already initialised: {e}");
    }
}

/// Every catalogued family with the collectors that emit it (`exporter`
/// for the exporter's own series), in table order.
pub fn catalogue() -> Vec<(&'static metrics::Desc, Vec<&'static str>)> {
    let mut out: Vec<(&'static metrics::Desc, Vec<&'static str>)> = Vec::new();
    let sources = collector::REGISTRY
        .iter()
        .flat_map(|reg| {
            reg.metrics
                .iter()
                .flat_map(|m| m.iter())
                .map(move |d| (*d, reg.name))
        })
        .chain(scrape::METRICS.iter().map(|d| (*d, "exporter")))
        .chain(
            collector::sntp::probe::METRICS
                .iter()
                .chain(http::probe::METRICS.iter())
                .map(|d| (*d, "/probe")),
        );
    for (d, source) in sources {
        match out.iter_mut().find(|(o, _)| std::ptr::eq(*o, d)) {
            Some((_, s)) => s.push(source),
            None => out.push((d, vec![source])),
        }
    }
    out
}

/// The generated table of `docs/metrics.md`: every series with its type,
/// unit (from its name's suffix), labels, sources and help text.
pub fn metrics_table() -> String {
    let mut t = String::from(
        "| series | type | unit | labels | collector | meaning |\n|---|---|---|---|---|---|\n",
    );
    for (d, sources) in catalogue() {
        let unit = ["seconds", "ratio", "info"]
            .into_iter()
            .find(|u| d.name.ends_with(&format!("_{u}")))
            .map_or("—", |u| match u {
                "info" => "— (info, value 1)",
                u => u,
            });
        let kind = match d.kind {
            metrics::Kind::Gauge => "gauge",
            metrics::Kind::Counter => "counter",
        };
        let labels = if d.labels.is_empty() {
            "—".to_owned()
        } else {
            d.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            t,
            "| `{}` | {kind} | {unit} | {labels} | {} | {} |",
            d.sample_name(),
            sources.join(", "),
            d.help
        );
    }
    t
}

/// Runs the exporter until SIGTERM or SIGINT, or `diagnose` once; returns
/// the process's exit code.
pub async fn run(cli: Cli, matches: clap::ArgMatches) -> Result<u8, String> {
    let ctx = Context {
        roots: Roots {
            procfs: cli.procfs.clone(),
            sysfs: cli.sysfs.clone(),
        },
    };
    if matches!(
        matches.try_get_one::<diagnose::Format>("format"),
        Ok(Some(_))
    ) {
        return diagnose::run(&matches, &ctx, cli.scrape_timeout).await;
    }
    if cli.probe_timeout.is_zero() || cli.probe_exchange_timeout.is_zero() {
        return Err("--probe.timeout and --probe.exchange-timeout must be longer than 0".into());
    }
    let security = match &cli.web_config_file {
        None => http::web_config::live::Security::off(),
        Some(path) => http::web_config::live::Security::load(path)?,
    };
    let security = Arc::new(security);
    http::raise_nofile_limit();
    let scraper = Arc::new(Scraper::from_matches(&matches, &ctx, cli.scrape_timeout)?);
    let addrs = cli
        .listen_addresses
        .iter()
        .map(|a| cli::parse_listen_address(a))
        .collect::<Result<Vec<_>, _>>()?;
    let listeners = http::bind(&addrs).await.map_err(|e| e.to_string())?;
    let bound: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    tracing::info!(
        version = scrape::VERSION,
        revision = scrape::REVISION,
        listen = %bound.join(","),
        collectors = %scraper.names().join(","),
        tls = security.tls(),
        "clock_exporter started"
    );
    if cli.probe_allow.is_empty() {
        tracing::debug!("/probe is off (no --probe.allow)");
    } else {
        let allow: Vec<String> = cli.probe_allow.iter().map(ToString::to_string).collect();
        tracing::info!(allow = %allow.join(","), ports = ?cli.probe_allow_ports, "/probe may send SNTP requests to these servers");
    }
    let app = http::App::new(
        scraper,
        http::WebConfig {
            telemetry_path: cli.telemetry_path.clone(),
            max_requests: cli.max_requests as usize,
            max_requests_wait: cli.max_requests_wait,
            max_connections: cli.max_connections as usize,
            read_header_timeout: cli.read_header_timeout,
            shutdown_grace: Duration::from_secs(5),
            probe: http::probe::ProbeConfig {
                allow: cli.probe_allow.clone(),
                ports: cli.probe_allow_ports.clone(),
                max_concurrent: cli.probe_max_concurrent as usize,
                timeout: cli.probe_timeout,
                samples: usize::from(cli.probe_samples),
                exchange_timeout: cli.probe_exchange_timeout,
            },
            security,
        },
    );
    http::serve(listeners, app, shutdown_signal()).await;
    Ok(0)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("received SIGTERM"),
        _ = int.recv() => tracing::info!("received SIGINT"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<std::ffi::OsString> {
        a.iter().map(Into::into).collect()
    }

    #[test]
    fn diagnose_takes_the_servers_flags_and_its_own() {
        let (cli, m) = parse_args_from(args(&[
            "clock_exporter",
            "diagnose",
            "--format",
            "nagios",
            "--no-collector.ntpd",
            "--warning-offset",
            "0.01",
        ]));
        assert_eq!(cli.log_level, LogLevel::Warn, "quiet by default");
        assert_eq!(
            m.get_one::<diagnose::Format>("format"),
            Some(&diagnose::Format::Nagios)
        );
        assert!(!collector::flags::flag(&m, "collector.ntpd"));
        assert_eq!(diagnose::limits(&m).offset, (0.01, 0.128));
        let (cli, _) = parse_args_from(args(&[
            "clock_exporter",
            "diagnose",
            "--log.level",
            "debug",
        ]));
        assert_eq!(cli.log_level, LogLevel::Debug);
        // The server's help points at diagnose; the server has no --format.
        let help = cli::command(collector::REGISTRY).render_help().to_string();
        assert!(help.contains("clock_exporter diagnose"), "{help}");
        let (cli, m) = parse_args_from(args(&["clock_exporter"]));
        assert_eq!(cli.log_level, LogLevel::Info);
        assert!(m.try_get_one::<diagnose::Format>("format").is_err());
    }
}
