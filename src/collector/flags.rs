//! Flag helpers shared by the command line and the collectors' options:
//! kingpin-style boolean pairs, Prometheus-style durations, and the rule for
//! "configured explicitly".

use clap::parser::ValueSource;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches};

/// A boolean flag pair in kingpin's style: `--name` and `--no-name`, the last
/// one given winning, `default` when neither is. Read it with [`flag`].
pub fn bool_flag(name: &str, default: bool, help: &str) -> [Arg; 2] {
    let no = format!("no-{name}");
    [
        Arg::new(name.to_owned())
            .long(name.to_owned())
            .action(ArgAction::SetTrue)
            .default_value(if default { "true" } else { "false" })
            .overrides_with(no.clone())
            .help(format!(
                "{help} (default: {}; --{no} to disable)",
                if default { "enabled" } else { "disabled" }
            )),
        Arg::new(no.clone())
            .long(no)
            .action(ArgAction::SetTrue)
            .overrides_with(name.to_owned())
            .hide(true),
    ]
}

/// Reads a flag pair declared with [`bool_flag`].
pub fn flag(m: &ArgMatches, name: &str) -> bool {
    !m.get_flag(&format!("no-{name}")) && m.get_flag(name)
}

/// Whether the user gave any of the flags `ids`, on the command line or
/// through the environment: the one rule by which a daemon counts as
/// configured explicitly (its `clock_daemon_up` is then published before it
/// was ever seen).
pub fn given(m: &ArgMatches, ids: &[&str]) -> bool {
    ids.iter().any(|id| {
        matches!(
            m.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    })
}

/// A collector's timeout flag: a duration longer than zero.
pub fn timeout(m: &ArgMatches, id: &str) -> Result<Duration, String> {
    let t = *m
        .get_one::<Duration>(id)
        .ok_or_else(|| format!("--{id} is missing"))?;
    if t.is_zero() {
        return Err(format!("--{id} must be longer than 0"));
    }
    Ok(t)
}

/// Parses a duration the way Prometheus writes them: a number and a unit
/// (`ms`, `s`, `m`, `h`, and `us` for the few flags finer than Prometheus
/// goes), e.g. `500ms`, `5s`, `1m`; decimals allowed.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{s:?}: missing unit (ms, s, m or h)"))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: not a number followed by a unit"))?;
    let secs = match unit {
        "us" | "µs" => n / 1e6,
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (use us, ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("20us"), Ok(Duration::from_micros(20)));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("1e999s").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
