//! Command-line flags, following node_exporter's conventions: `--web.*`,
//! `--path.*`, `--log.*`, and `--[no-]collector.<name>` generated from the
//! collector table, with options as `--collector.<name>.<option>`.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgMatches, Command, FromArgMatches, Parser, ValueEnum};

use crate::collector::Registration;
use crate::collector::flags::{bool_flag, parse_duration};
use crate::collector::sntp::probe::Net;

/// The default listen port: in the exporter range 9100–9999 and not used by
/// node_exporter (9100), chrony_exporter (9123), blackbox (9115) or
/// sapcc/ntp_exporter (9559).
pub const DEFAULT_PORT: u16 = 9857;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// `key=value` pairs.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Start, stop and state changes.
    Info,
    /// Everything.
    Debug,
}

/// The global flags; collector flags are added by [`command`].
#[derive(Debug, Clone, Parser)]
#[command(
    name = "clock_exporter",
    version = concat!(env!("CARGO_PKG_VERSION"), " (revision ", env!("CLOCK_EXPORTER_REVISION"), ")"),
    about = "Prometheus exporter that tells whether this host's clock can be trusted, and why not."
)]
pub struct Cli {
    /// Address to listen on, `host:port` or `:port` for every address; repeat for several.
    #[arg(long = "web.listen-address", default_values_t = vec![format!(":{DEFAULT_PORT}")], action = clap::ArgAction::Append, value_parser = parse_listen_address_text)]
    pub listen_addresses: Vec<String>,

    /// Path under which to expose metrics.
    #[arg(long = "web.telemetry-path", default_value = "/metrics", value_parser = parse_path)]
    pub telemetry_path: String,

    /// Scrapes served at once; more wait their turn, in order of arrival, for up to --web.max-requests-wait, then get 503.
    #[arg(long = "web.max-requests", default_value_t = 40, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_requests: u32,

    /// How long a scrape beyond --web.max-requests waits for its turn before it gets 503; 0s answers 503 at once.
    #[arg(long = "web.max-requests-wait", default_value = "1s", value_parser = parse_duration)]
    pub max_requests_wait: Duration,

    /// Open connections at once; at the limit the oldest connection without a request in flight (idle, or still sending its headers) is closed to make room for a new one.
    #[arg(long = "web.max-connections", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Time a client has to send a request's headers, counted from connection or from the previous response, so it also bounds idle keep-alive connections.
    #[arg(long = "web.read-header-timeout", default_value = "30s", value_parser = parse_duration)]
    pub read_header_timeout: Duration,

    /// exporter-toolkit's web configuration (TLS, client certificates, basic auth, response headers, rate limit); see docs/web-config.md. Checked at start (an error names the key and the exporter exits). Changed certificates, keys, CAs, users and headers take effect within about a second; turning TLS on or off, http2 and rate_limit need a restart.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Upper bound on each collector's time in one scrape; a collector that takes longer costs only its own series.
    #[arg(long = "scrape.timeout", default_value = "5s", value_parser = parse_duration)]
    pub scrape_timeout: Duration,

    /// Address block (ADDRESS/PREFIX, or one address) /probe may send SNTP requests to; repeatable. None: /probe answers 403 and sends nothing. 0.0.0.0/0 and ::/0 allow every server.
    #[arg(long = "probe.allow", value_name = "ADDRESS/PREFIX", action = clap::ArgAction::Append, value_parser = Net::parse)]
    pub probe_allow: Vec<Net>,

    /// Port /probe may send to; repeatable.
    #[arg(long = "probe.allow-port", value_name = "PORT", default_values_t = vec![123u16], action = clap::ArgAction::Append, value_parser = clap::value_parser!(u16).range(1..))]
    pub probe_allow_ports: Vec<u16>,

    /// Probes served at once; more wait for a turn within their own deadline, then get 503.
    #[arg(long = "probe.max-concurrent", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub probe_max_concurrent: u32,

    /// Longest a probe takes: its deadline when Prometheus sends no X-Prometheus-Scrape-Timeout-Seconds, and the most it may ask for.
    #[arg(long = "probe.timeout", default_value = "10s", value_parser = parse_duration)]
    pub probe_timeout: Duration,

    /// SNTP requests per address in one probe, 2 s apart, the one of least delay published; a query's samples= overrides it (1-16).
    #[arg(long = "probe.samples", default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=16))]
    pub probe_samples: u8,

    /// Longest one SNTP request of a probe waits for its answer.
    #[arg(long = "probe.exchange-timeout", default_value = "1s", value_parser = parse_duration)]
    pub probe_exchange_timeout: Duration,

    /// procfs mount point.
    #[arg(long = "path.procfs", default_value = "/proc")]
    pub procfs: PathBuf,

    /// sysfs mount point.
    #[arg(long = "path.sysfs", default_value = "/sys")]
    pub sysfs: PathBuf,

    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Logfmt)]
    pub log_format: LogFormat,
}

/// The full command: global flags, then the enable flag and options of each
/// collector in `registry`.
pub fn command(registry: &[Registration]) -> Command {
    let mut cmd = <Cli as clap::CommandFactory>::command().after_help(
        "clock_exporter diagnose [these flags] [--format text|json|nagios]: one collection, \
         then the verdict, as a person, a program or Nagios reads it \
         (clock_exporter diagnose --help; docs/diagnose.md).",
    );
    for reg in registry {
        cmd = cmd.args(bool_flag(
            &format!("collector.{}", reg.name),
            reg.default_enabled,
            &format!("Enable the {} collector: {}.", reg.name, reg.help),
        ));
        cmd = cmd.args((reg.args)());
    }
    cmd
}

/// Parses the given arguments against the global flags and those of the
/// collectors in `registry` (exits with usage on error, as clap does).
pub fn parse_from<I, T>(registry: &[Registration], args: I) -> (Cli, ArgMatches)
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let m = command(registry).get_matches_from(args);
    let cli = Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit());
    (cli, m)
}

fn parse_path(s: &str) -> Result<String, String> {
    if s.starts_with('/') && s.len() > 1 {
        Ok(s.to_owned())
    } else {
        Err(format!("{s:?}: must start with / and not be the root"))
    }
}

fn parse_listen_address_text(s: &str) -> Result<String, String> {
    parse_listen_address(s).map(|_| s.to_owned())
}

/// Resolves a listen address: `:port` means every address (`[::]`, which on
/// Linux also accepts IPv4 unless `net.ipv6.bindv6only` is set).
pub fn parse_listen_address(s: &str) -> Result<SocketAddr, String> {
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port.parse().map_err(|_| format!("{s:?}: bad port"))?;
        return Ok(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("{s:?}: expected host:port with a literal IP, or :port"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::REGISTRY;
    use crate::collector::flags::flag;

    fn parse(args: &[&str]) -> (Cli, ArgMatches) {
        parse_from(REGISTRY, std::iter::once("x").chain(args.iter().copied()))
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen_address(":9857"),
            Ok("[::]:9857".parse().expect("addr"))
        );
        assert_eq!(
            parse_listen_address("127.0.0.1:1"),
            Ok("127.0.0.1:1".parse().expect("addr"))
        );
        assert!(parse_listen_address("localhost:1").is_err());
        assert!(parse_listen_address(":99999").is_err());
    }

    #[test]
    fn collector_flags_come_from_the_table_and_the_last_one_wins() {
        let (_, m) = parse(&[]);
        assert!(flag(&m, "collector.timex"));
        let (_, m) = parse(&["--no-collector.timex"]);
        assert!(!flag(&m, "collector.timex"));
        let (_, m) = parse(&["--no-collector.timex", "--collector.timex"]);
        assert!(flag(&m, "collector.timex"));
        let (_, m) = parse(&["--collector.timex", "--no-collector.timex"]);
        assert!(!flag(&m, "collector.timex"));
        for reg in REGISTRY {
            let (_, m) = parse(&[&format!("--no-collector.{}", reg.name)]);
            assert!(!flag(&m, &format!("collector.{}", reg.name)));
        }
    }

    #[test]
    fn defaults() {
        let (cli, _) = parse(&[]);
        assert_eq!(cli.listen_addresses, vec![":9857".to_owned()]);
        assert_eq!(cli.telemetry_path, "/metrics");
        assert_eq!(cli.max_requests, 40);
        assert_eq!(cli.max_requests_wait, Duration::from_secs(1));
        assert_eq!(cli.procfs, PathBuf::from("/proc"));
        assert_eq!(cli.log_format, LogFormat::Logfmt);
    }

    #[test]
    fn command_is_consistent() {
        command(REGISTRY).debug_assert();
    }
}
