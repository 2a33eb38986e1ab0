//! The `--web.config.file` format of Prometheus' exporter-toolkit (v0.17.1,
//! `docs/web-configuration.md`), parsed strictly and checked whole: every
//! key that file documents is either supported or refused here with a
//! sentence naming it. Pure: [`parse`] takes the file's text and its
//! directory (relative paths are relative to it, as exporter-toolkit does),
//! and reads no file itself; [`WebConfigFile`] names the files to read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The largest configuration file accepted (inline certificates included).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Response headers `http_server_config.headers` may set, as
/// exporter-toolkit allows them (names exact, case-sensitive), with the
/// values allowed where it restricts them.
pub const ALLOWED_HEADERS: [(&str, Option<&[&str]>); 5] = [
    ("Strict-Transport-Security", None),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-XSS-Protection", None),
    ("Content-Security-Policy", None),
];

/// Why a configuration is refused: the key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key's path, like `tls_server_config.min_version`; empty for the
    /// file as a whole.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_owned(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Where PEM text comes from: a file (read on every reload) or the
/// configuration itself.
#[derive(Clone, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Inline(String),
}

impl fmt::Debug for Pem {
    // Inline keys are secrets: never in a log or a panic message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pem::File(p) => write!(f, "File({})", p.display()),
            Pem::Inline(_) => f.write_str("Inline(..)"),
        }
    }
}

/// `client_auth_type`, Go's `tls.ClientAuthType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `NoClientCert` (the default): no certificate asked for.
    None,
    /// `RequestClientCert`: asked for, never required, never verified.
    Request,
    /// `RequireAnyClientCert` (or `RequireClientCert`): required, not
    /// verified.
    RequireAny,
    /// `VerifyClientCertIfGiven`: verified against the client CAs when sent.
    VerifyIfGiven,
    /// `RequireAndVerifyClientCert`: required and verified.
    RequireAndVerify,
}

impl ClientAuth {
    fn parse(s: &str) -> Result<ClientAuth, ConfigError> {
        Ok(match s {
            "" | "NoClientCert" => ClientAuth::None,
            "RequestClientCert" => ClientAuth::Request,
            "RequireAnyClientCert" | "RequireClientCert" => ClientAuth::RequireAny,
            "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
            "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerify,
            other => {
                return Err(ConfigError::new(
                    "tls_server_config.client_auth_type",
                    format!(
                        "{other:?} is not one of NoClientCert, RequestClientCert, \
                         RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
                    ),
                ));
            }
        })
    }

    /// Whether a certificate the client sends is checked against the CAs.
    pub fn verifies(self) -> bool {
        matches!(
            self,
            ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify
        )
    }

    /// Whether a client without a certificate is refused.
    pub fn requires(self) -> bool {
        matches!(self, ClientAuth::RequireAny | ClientAuth::RequireAndVerify)
    }
}

/// A TLS protocol version rustls implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    fn parse(key: &str, s: &str) -> Result<TlsVersion, ConfigError> {
        match s {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            "TLS10" | "TLS11" => Err(ConfigError::new(
                key,
                format!(
                    "{s} is refused: the exporter's TLS (rustls) implements TLS 1.2 and 1.3 only, \
                     and TLS 1.0 and 1.1 are deprecated (RFC 8996); use TLS12 or TLS13"
                ),
            )),
            other => Err(ConfigError::new(
                key,
                format!("unknown TLS version {other:?} (TLS12 or TLS13)"),
            )),
        }
    }
}

/// A cipher suite by its Go name, as `cipher_suites` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    EcdheEcdsaAes128Gcm,
    EcdheEcdsaAes256Gcm,
    EcdheRsaAes128Gcm,
    EcdheRsaAes256Gcm,
    EcdheEcdsaChacha20,
    EcdheRsaChacha20,
    /// The TLS 1.3 suites: accepted, and (as in Go) always enabled.
    Tls13Aes128Gcm,
    Tls13Aes256Gcm,
    Tls13Chacha20,
}

impl Cipher {
    /// Go's names of the suites rustls implements.
    pub const NAMES: [(&'static str, Cipher); 9] = [
        (
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            Cipher::EcdheEcdsaAes128Gcm,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            Cipher::EcdheEcdsaAes256Gcm,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            Cipher::EcdheRsaAes128Gcm,
        ),
        (
            "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            Cipher::EcdheRsaAes256Gcm,
        ),
        (
            "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            Cipher::EcdheEcdsaChacha20,
        ),
        (
            "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            Cipher::EcdheRsaChacha20,
        ),
        ("TLS_AES_128_GCM_SHA256", Cipher::Tls13Aes128Gcm),
        ("TLS_AES_256_GCM_SHA384", Cipher::Tls13Aes256Gcm),
        ("TLS_CHACHA20_POLY1305_SHA256", Cipher::Tls13Chacha20),
    ];

    fn parse(s: &str) -> Result<Cipher, ConfigError> {
        const KEY: &str = "tls_server_config.cipher_suites";
        if let Some((_, c)) = Self::NAMES.iter().find(|(n, _)| *n == s) {
            return Ok(*c);
        }
        if s.starts_with("TLS_ECDHE_") && s.ends_with("_CBC_SHA") {
            return Err(ConfigError::new(
                KEY,
                format!(
                    "{s} is refused: rustls implements no CBC suites (only AES-GCM and \
                     ChaCha20-Poly1305); leave it out"
                ),
            ));
        }
        Err(ConfigError::new(
            KEY,
            format!(
                "unknown or insecure cipher suite {s:?} (one of {})",
                Self::NAMES.map(|(n, _)| n).join(", ")
            ),
        ))
    }

    /// Whether the suite is a TLS 1.3 one (always enabled, as in Go).
    pub fn is_tls13(self) -> bool {
        matches!(
            self,
            Cipher::Tls13Aes128Gcm | Cipher::Tls13Aes256Gcm | Cipher::Tls13Chacha20
        )
    }
}

/// An elliptic curve (key-exchange group) by its Go name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    X25519,
}

impl Curve {
    fn parse(s: &str) -> Result<Curve, ConfigError> {
        const KEY: &str = "tls_server_config.curve_preferences";
        match s {
            "CurveP256" => Ok(Curve::P256),
            "CurveP384" => Ok(Curve::P384),
            "X25519" => Ok(Curve::X25519),
            "CurveP521" => Err(ConfigError::new(
                KEY,
                "CurveP521 is refused: the exporter's TLS provider (ring) has no P-521; \
                 use CurveP384, CurveP256 or X25519",
            )),
            other => Err(ConfigError::new(
                KEY,
                format!("unknown curve {other:?} (CurveP256, CurveP384 or X25519)"),
            )),
        }
    }
}

/// `tls_server_config`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: Pem,
    pub key: Pem,
    pub client_auth: ClientAuth,
    pub client_ca: Option<Pem>,
    /// `client_allowed_sans`: the client certificate must carry one of
    /// these as a DNS, e-mail, IP or URI subject alternative name.
    pub allowed_sans: Option<Vec<String>>,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    /// Empty: rustls' defaults. TLS 1.3 suites are always enabled.
    pub cipher_suites: Vec<Cipher>,
    /// Empty: rustls' defaults (X25519, P-256, P-384).
    pub curves: Vec<Curve>,
}

/// `rate_limit`: one token bucket for the whole server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Time between two tokens.
    pub interval: Duration,
    /// Bucket size; 0 refuses every request, as exporter-toolkit does.
    pub burst: u32,
}

/// A web configuration file, checked: what the server does with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebConfigFile {
    /// None: plain HTTP.
    pub tls: Option<TlsSettings>,
    /// `http_server_config.http2`: whether HTTP/2 is offered over TLS.
    pub http2: bool,
    /// Response headers, in the order of [`ALLOWED_HEADERS`].
    pub headers: Vec<(String, String)>,
    /// `basic_auth_users`: user name → bcrypt hash. Empty: no auth.
    pub users: BTreeMap<String, String>,
    pub rate_limit: Option<RateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawFile {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, Option<Scalar>>>,
    rate_limit: Option<RawRateLimit>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<String>,
    key_file: Option<String>,
    client_ca_file: Option<String>,
    client_auth_type: Option<String>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    headers: Option<BTreeMap<String, Option<Scalar>>>,
    http2: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    interval: Option<Scalar>,
    burst: Option<u32>,
}

/// A YAML scalar taken as its text, as Go's YAML decoder gives a string
/// field any scalar (`X-XSS-Protection: 1` is the header value `1`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar {
    Int(i64),
    Float(f64),
    Bool(bool),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Text(s) => s.clone(),
        }
    }
}

/// Parses and checks a web configuration file's `text`; relative paths
/// are taken from `dir`, the file's directory.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfigFile, ConfigError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigError::new(
            "",
            format!("the file is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    // An empty file (or only comments) is a valid configuration: plain
    // HTTP, no authentication.
    let raw: RawFile = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        RawFile::default()
    } else {
        let raw: Option<RawFile> = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::new("", format!("not a web configuration: {e}")))?;
        raw.unwrap_or_default()
    };
    let tls = match raw.tls_server_config {
        Some(t) => tls_settings(t, dir)?,
        None => None,
    };
    let http = raw.http_server_config.unwrap_or_default();
    let headers = headers(&http.headers.unwrap_or_default())?;
    let users = users(raw.basic_auth_users.unwrap_or_default())?;
    let rate_limit = match raw.rate_limit {
        Some(r) => rate_limit(&r)?,
        None => None,
    };
    Ok(WebConfigFile {
        tls,
        http2: http.http2.unwrap_or(true),
        headers,
        users,
        rate_limit,
    })
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// One of a file key and an inline key, never both.
fn source(
    file_key: &str,
    file: Option<String>,
    inline_key: &str,
    inline: Option<String>,
    dir: &Path,
) -> Result<Option<Pem>, ConfigError> {
    match (nonempty(file), nonempty(inline)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            &format!("tls_server_config.{file_key}"),
            format!("give {file_key} or {inline_key}, not both"),
        )),
        (Some(f), None) => Ok(Some(Pem::File(dir.join(f)))),
        (None, Some(i)) => Ok(Some(Pem::Inline(i))),
        (None, None) => Ok(None),
    }
}

fn tls_settings(t: RawTls, dir: &Path) -> Result<Option<TlsSettings>, ConfigError> {
    let auth_type = nonempty(t.client_auth_type);
    let cert = source("cert_file", t.cert_file, "cert", t.cert, dir)?;
    let key = source("key_file", t.key_file, "key", t.key, dir)?;
    let client_ca = source(
        "client_ca_file",
        t.client_ca_file,
        "client_ca",
        t.client_ca,
        dir,
    )?;
    // TLS is on when any of these is set, as in exporter-toolkit; the
    // version, cipher and curve keys alone leave plain HTTP.
    if cert.is_none() && key.is_none() && client_ca.is_none() && auth_type.is_none() {
        return Ok(None);
    }
    let cert = cert
        .ok_or_else(|| ConfigError::new("tls_server_config", "missing one of cert or cert_file"))?;
    let key =
        key.ok_or_else(|| ConfigError::new("tls_server_config", "missing one of key or key_file"))?;
    let client_auth = ClientAuth::parse(auth_type.as_deref().unwrap_or(""))?;
    if client_ca.is_some() && client_auth == ClientAuth::None {
        return Err(ConfigError::new(
            "tls_server_config.client_auth_type",
            "client CAs are configured without a client auth policy (set client_auth_type)",
        ));
    }
    if client_auth.verifies() && client_ca.is_none() {
        return Err(ConfigError::new(
            "tls_server_config.client_ca_file",
            "client_auth_type verifies client certificates, but no client_ca_file or client_ca \
             says against which CAs (the exporter does not fall back to the system's roots)",
        ));
    }
    let min_version = match nonempty(t.min_version) {
        Some(v) => TlsVersion::parse("tls_server_config.min_version", &v)?,
        None => TlsVersion::Tls12,
    };
    let max_version = match nonempty(t.max_version) {
        Some(v) => TlsVersion::parse("tls_server_config.max_version", &v)?,
        None => TlsVersion::Tls13,
    };
    if min_version > max_version {
        return Err(ConfigError::new(
            "tls_server_config.min_version",
            "min_version is above max_version",
        ));
    }
    let cipher_suites = t
        .cipher_suites
        .unwrap_or_default()
        .iter()
        .map(|s| Cipher::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    if max_version == TlsVersion::Tls12
        && !cipher_suites.is_empty()
        && cipher_suites.iter().all(|c| c.is_tls13())
    {
        return Err(ConfigError::new(
            "tls_server_config.cipher_suites",
            "only TLS 1.3 suites are listed, but max_version is TLS12: no TLS 1.2 suite is left",
        ));
    }
    let curves = t
        .curve_preferences
        .unwrap_or_default()
        .iter()
        .map(|s| Curve::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    // prefer_server_cipher_suites: accepted; the server's order always
    // wins in rustls, as in Go since 1.18 (which ignores the key).
    let _ = t.prefer_server_cipher_suites;
    Ok(Some(TlsSettings {
        cert,
        key,
        client_auth,
        client_ca,
        allowed_sans: t.client_allowed_sans,
        min_version,
        max_version,
        cipher_suites,
        curves,
    }))
}

fn headers(raw: &BTreeMap<String, Option<Scalar>>) -> Result<Vec<(String, String)>, ConfigError> {
    for name in raw.keys() {
        if !ALLOWED_HEADERS.iter().any(|(n, _)| n == name) {
            return Err(ConfigError::new(
                "http_server_config.headers",
                format!(
                    "header {name:?} can not be configured (only {})",
                    ALLOWED_HEADERS.map(|(n, _)| n).join(", ")
                ),
            ));
        }
    }
    let mut out = Vec::new();
    for (name, allowed) in ALLOWED_HEADERS {
        let Some(value) = raw.get(name) else {
            continue;
        };
        let value = value.as_ref().map(Scalar::text).unwrap_or_default();
        if let Some(allowed) = allowed
            && !allowed.contains(&value.as_str())
        {
            return Err(ConfigError::new(
                &format!("http_server_config.headers.{name}"),
                format!("{value:?} is not one of {}", allowed.join(", ")),
            ));
        }
        if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(ConfigError::new(
                &format!("http_server_config.headers.{name}"),
                "a header value cannot hold control characters",
            ));
        }
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn users(raw: BTreeMap<String, Option<Scalar>>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out = BTreeMap::new();
    for (user, hash) in raw {
        let key = format!("basic_auth_users.{user}");
        if user.contains(':') {
            return Err(ConfigError::new(
                &key,
                "a user name cannot contain ':' (basic auth splits user and password there)",
            ));
        }
        let hash = hash.as_ref().map(Scalar::text).unwrap_or_default();
        let parts = hash.parse::<bcrypt::HashParts>().map_err(|e| {
            ConfigError::new(&key, format!("not a bcrypt hash ($2a$, $2b$ or $2y$): {e}"))
        })?;
        if !(4..=31).contains(&parts.get_cost()) {
            return Err(ConfigError::new(
                &key,
                format!("bcrypt cost {} is outside 4 to 31", parts.get_cost()),
            ));
        }
        out.insert(user, hash);
    }
    Ok(out)
}

fn rate_limit(r: &RawRateLimit) -> Result<Option<RateLimit>, ConfigError> {
    let interval = match &r.interval {
        None => Duration::ZERO,
        // A bare integer is nanoseconds, as Go's YAML decoder reads one.
        Some(Scalar::Int(n)) => match u64::try_from(*n) {
            Ok(n) => Duration::from_nanos(n),
            // Negative: an infinite rate in Go, so no limit.
            Err(_) => return Ok(None),
        },
        Some(Scalar::Text(s)) => go_duration(s).map_err(|e| {
            ConfigError::new(
                "rate_limit.interval",
                format!("{s:?} is not a duration: {e}"),
            )
        })?,
        Some(other) => {
            return Err(ConfigError::new(
                "rate_limit.interval",
                format!("{:?} is not a duration like 1s or 500ms", other.text()),
            ));
        }
    };
    if interval.is_zero() {
        return Ok(None);
    }
    Ok(Some(RateLimit {
        interval,
        burst: r.burst.unwrap_or(0),
    }))
}

/// Go's `time.ParseDuration`: a sequence of decimal numbers with units
/// (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`), like `1h30m` or `1.5s`; `0`
/// alone. Negative durations (an unlimited rate in Go) come back as zero.
pub fn go_duration(s: &str) -> Result<Duration, String> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err("empty".into());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number without a unit")?;
        let (number, after) = rest.split_at(number_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(format!("bad number {number:?}"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| format!("bad number {number:?}"))?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} (ns, us, ms, s, m, h)")),
        };
        total += value * scale;
        rest = next;
    }
    if negative {
        return Ok(Duration::ZERO);
    }
    Duration::try_from_secs_f64(total).map_err(|_| "out of range".into())
}
