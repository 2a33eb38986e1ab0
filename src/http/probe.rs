//! `/probe?target=HOST[:PORT]`: one SNTP probe per scrape, in the style of
//! blackbox_exporter, so that one Prometheus can watch a fleet's NTP
//! servers without an exporter on each client.
//!
//! A probe endpoint makes the exporter send UDP to whoever a request
//! names, so it is off unless `--probe.allow` names the address blocks it
//! may send to; every address a target resolves to must be in one of them
//! and its port in `--probe.allow-port` (123 by default), or the request
//! gets 403 and nothing is sent. `--probe.max-concurrent` probes run at
//! once; a request beyond them waits for a turn within its own deadline,
//! then gets 503.
//!
//! The deadline is Prometheus' `X-Prometheus-Scrape-Timeout-Seconds` less
//! half a second (as blackbox_exporter's `timeout_offset`), at most
//! `--probe.timeout`, which also applies when the header is absent.
//! Within it, each address gets up to `samples` requests (the query's
//! `samples`, else `--probe.samples`) 2 s apart, each waiting at most
//! `--probe.exchange-timeout`, and only those whose answer fits before the
//! deadline are sent; the sample of least delay is published.
//! `resolve=all` probes every address of a name, the default the first.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::collector::sntp::probe::{self, MIN_SPACING, Net, Plan, Probed};
use crate::metrics::{self, Family, Format, metrics};

metrics! {
    /// The families `/probe` adds to the probe's own.
    pub static METRICS = [
        SUCCESS: Gauge(
            "clock_probe_success",
            [],
            "1 when at least one address of the target answered with a time, else 0."
        ),
        DURATION: Gauge(
            "clock_probe_duration_seconds",
            [],
            "How long the probe took, resolution included, in seconds."
        ),
        DISCARDED: Gauge(
            "clock_probe_discarded_replies",
            [],
            "Datagrams dropped during the probe because they did not answer its requests (wrong origin timestamp, bad length)."
        ),
    ];
}

/// What `/probe` may do.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    /// Address blocks a probe may send to; empty: `/probe` is off.
    pub allow: Vec<Net>,
    /// Ports a probe may send to.
    pub ports: Vec<u16>,
    /// Probes at once.
    pub max_concurrent: usize,
    /// The deadline without Prometheus' header, and the longest ever.
    pub timeout: Duration,
    /// Samples per address unless the query asks for fewer or more.
    pub samples: usize,
    /// How long one request waits for its answer.
    pub exchange_timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        ProbeConfig {
            allow: Vec::new(),
            ports: vec![probe::NTP_PORT],
            max_concurrent: 8,
            timeout: Duration::from_secs(10),
            samples: 3,
            exchange_timeout: Duration::from_secs(1),
        }
    }
}

/// The most samples a query may ask for.
pub const MAX_SAMPLES: usize = 16;

/// What Prometheus' scrape timeout is shortened by, for the answer to
/// travel back (blackbox_exporter's default `timeout_offset`).
pub const TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// `/probe`'s settings and its turns.
#[derive(Debug)]
pub struct Prober {
    cfg: ProbeConfig,
    turns: Arc<Semaphore>,
}

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A parsed query.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    /// `target`.
    pub target: String,
    /// `samples`, if given.
    pub samples: Option<usize>,
    /// `resolve=all`.
    pub all: bool,
}

/// Parses the query string: `target` (required), `samples` (1 to 16),
/// `resolve` (`first` or `all`). Unknown parameters are refused, so a
/// typo is not silently ignored.
pub fn parse_query(q: &str) -> Result<Query, String> {
    if q.len() > 2048 {
        return Err("query string longer than 2048 bytes".into());
    }
    let mut target = None;
    let mut samples = None;
    let mut all = false;
    for (k, v) in form_urlencoded::parse(q.as_bytes()) {
        match &*k {
            "target" if target.is_none() => target = Some(v.into_owned()),
            "samples" if samples.is_none() => {
                samples = Some(
                    v.parse::<usize>()
                        .ok()
                        .filter(|n| (1..=MAX_SAMPLES).contains(n))
                        .ok_or_else(|| format!("samples={v:?}: must be 1 to {MAX_SAMPLES}"))?,
                );
            }
            "resolve" => {
                all = match &*v {
                    "all" => true,
                    "first" => false,
                    _ => return Err(format!("resolve={v:?}: must be first or all")),
                }
            }
            "target" | "samples" => return Err(format!("{k} given twice")),
            _ => {
                return Err(format!(
                    "unknown parameter {k:?} (target, samples, resolve)"
                ));
            }
        }
    }
    let target = target.ok_or("the target parameter is missing (/probe?target=HOST[:PORT])")?;
    probe::split_target(&target)?;
    Ok(Query {
        target,
        samples,
        all,
    })
}

/// The probe's deadline from Prometheus' header, `now` being when the
/// request arrived.
pub fn deadline(headers: &HeaderMap, cfg: &ProbeConfig, now: Instant) -> Instant {
    let scrape = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(86_400.0)).saturating_sub(TIMEOUT_OFFSET));
    let t = match scrape {
        Some(s) if !s.is_zero() => s.min(cfg.timeout),
        // A scrape timeout at or under the offset: what is left of it.
        Some(_) => Duration::from_millis(100),
        None => cfg.timeout,
    };
    now + t
}

impl Prober {
    /// A prober with these settings.
    pub fn new(cfg: ProbeConfig) -> Prober {
        let turns = Arc::new(Semaphore::new(cfg.max_concurrent.max(1)));
        Prober { cfg, turns }
    }

    /// Whether `a` may be sent to.
    fn allowed(&self, a: SocketAddr) -> bool {
        self.cfg.ports.contains(&a.port()) && self.cfg.allow.iter().any(|n| n.contains(a.ip()))
    }

    /// Answers `/probe?…`: families in `format`, or an error status with a
    /// sentence saying why.
    pub async fn handle(&self, query: &str, headers: &HeaderMap, format: Format) -> Resp {
        let start = Instant::now();
        if self.cfg.allow.is_empty() {
            return text(
                StatusCode::FORBIDDEN,
                "403 /probe is off: start the exporter with --probe.allow ADDRESS/PREFIX for the servers it may probe\n".into(),
            );
        }
        let q = match parse_query(query) {
            Ok(q) => q,
            Err(e) => return text(StatusCode::BAD_REQUEST, format!("400 {e}\n")),
        };
        let deadline = deadline(headers, &self.cfg, start);
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, self.turns.acquire()).await else {
            tracing::debug!(target = %q.target, "probe refused: --probe.max-concurrent busy until its deadline");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 too many probes at once (--probe.max-concurrent)\n".into(),
            );
        };
        let addresses = match probe::resolve(&q.target, q.all, deadline).await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(target = %q.target, error = %e, "probe target not resolved");
                let failed = Probed {
                    server: q.target.clone(),
                    address: None,
                    last: None,
                    best: None,
                    samples: 0,
                };
                return answer(probe::families(&[failed]), false, 0, start, format);
            }
        };
        if let Some(a) = addresses.iter().find(|a| !self.allowed(**a)) {
            return text(
                StatusCode::FORBIDDEN,
                format!(
                    "403 {} resolves to {a}, which --probe.allow and --probe.allow-port do not allow\n",
                    q.target
                ),
            );
        }
        let plan = Plan {
            samples: q.samples.unwrap_or(self.cfg.samples),
            spacing: MIN_SPACING,
            timeout: self.cfg.exchange_timeout,
        };
        let results = futures_util::future::join_all(
            addresses
                .iter()
                .map(|&a| probe::probe_address(&q.target, a, plan, deadline)),
        )
        .await;
        let discarded = results.iter().map(|(_, d)| *d).sum();
        let success = results.iter().any(|(p, _)| p.up());
        let probed: Vec<Probed> = results.into_iter().map(|(p, _)| p).collect();
        answer(probe::families(&probed), success, discarded, start, format)
    }
}

fn answer(
    mut families: Vec<Family>,
    success: bool,
    discarded: u32,
    start: Instant,
    format: Format,
) -> Resp {
    families.push(SUCCESS.single(f64::from(u8::from(success))));
    families.push(DURATION.single(start.elapsed().as_secs_f64()));
    families.push(DISCARDED.single(f64::from(discarded)));
    let mut r = Response::new(Full::new(Bytes::from(metrics::encode(families, format))));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_hostile_ones_are_refused() {
        assert_eq!(
            parse_query("target=192.0.2.1"),
            Ok(Query {
                target: "192.0.2.1".into(),
                samples: None,
                all: false
            })
        );
        assert_eq!(
            parse_query("target=%5B2001%3Adb8%3A%3A1%5D%3A123&samples=5&resolve=all"),
            Ok(Query {
                target: "[2001:db8::1]:123".into(),
                samples: Some(5),
                all: true
            })
        );
        for bad in [
            "",
            "samples=3",
            "target=",
            "target=a&target=b",
            "target=a&samples=0",
            "target=a&samples=17",
            "target=a&samples=x",
            "target=a&resolve=some",
            "target=a&module=ntp",
            "target=a%20b",
            "target=a%00",
            "target=a%2Fb",
        ] {
            assert!(parse_query(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_query(&format!("target={}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn the_deadline_follows_prometheus_header_within_the_flag() {
        let cfg = ProbeConfig::default();
        let now = Instant::now();
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                "x-prometheus-scrape-timeout-seconds",
                v.parse().expect("value"),
            );
            m
        };
        assert_eq!(
            deadline(&HeaderMap::new(), &cfg, now),
            now + Duration::from_secs(10)
        );
        assert_eq!(
            deadline(&h("5"), &cfg, now),
            now + Duration::from_millis(4500)
        );
        assert_eq!(
            deadline(&h("9.75"), &cfg, now),
            now + Duration::from_millis(9250)
        );
        assert_eq!(deadline(&h("60"), &cfg, now), now + Duration::from_secs(10));
        assert_eq!(
            deadline(&h("0.2"), &cfg, now),
            now + Duration::from_millis(100)
        );
        for junk in ["-1", "x", "NaN", "inf", "0", ""] {
            assert_eq!(
                deadline(&h(junk), &cfg, now),
                now + Duration::from_secs(10),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn allow_lists() {
        let p = Prober::new(ProbeConfig {
            allow: vec![
                Net::parse("192.0.2.0/24").expect("net"),
                Net::parse("2001:db8::/32").expect("net"),
            ],
            ..ProbeConfig::default()
        });
        assert!(p.allowed("192.0.2.9:123".parse().expect("a")));
        assert!(!p.allowed("192.0.2.9:53".parse().expect("a")), "port");
        assert!(!p.allowed("192.0.3.1:123".parse().expect("a")));
        assert!(p.allowed("[2001:db8::5]:123".parse().expect("a")));
        assert!(
            p.allowed("[::ffff:192.0.2.9]:123".parse().expect("a")),
            "mapped"
        );
        assert!(!p.allowed("[2001:db9::5]:123".parse().expect("a")));
        assert!(
            Net::parse("0.0.0.0/0")
                .expect("all")
                .contains("203.0.113.1".parse().expect("a"))
        );
        assert!(
            !Net::parse("0.0.0.0/0")
                .expect("all")
                .contains("::1".parse().expect("a"))
        );
        assert!(
            Net::parse("::/0")
                .expect("all")
                .contains("::1".parse().expect("a"))
        );
        assert_eq!(
            Net::parse("10.1.2.3").expect("one").to_string(),
            "10.1.2.3/32"
        );
        for bad in [
            "10.0.0.1/24",
            "10.0.0.0/33",
            "::/129",
            "host/8",
            "10.0.0.0/",
            "",
            "/8",
            "10.0.0.0/-1",
        ] {
            assert!(Net::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
