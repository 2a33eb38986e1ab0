//! The web configuration as the server applies it. Loaded and checked at
//! start; then the file and every file it names are stat'ed once a second
//! ([`Security::watch`]) and read again when one of them changed. A rotated
//! certificate or key, a new client CA or allowed names take effect for the
//! connections that follow; changed users or headers for the next request;
//! both within about a second. A version that fails to load is logged and
//! the last good one stays. Whether TLS is on, `http2` and `rate_limit` are
//! fixed at start, as exporter-toolkit builds its server and limiter once;
//! a change to them is logged as waiting for a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hyper::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use tokio_rustls::TlsAcceptor;

use super::auth::{Authenticator, parse_basic};
use super::file::{self, ClientAuth, ConfigError, MAX_FILE_BYTES, Pem, RateLimit, WebConfigFile};
use super::tls::{self, Pems};
use crate::sys::fs::{self, FileVersion};

/// How often the files are checked for a change.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The bound on one PEM file (a certificate chain or a CA bundle).
const PEM_LIMIT: u64 = 1 << 20;

/// One loaded version of the configuration.
pub struct Active {
    /// TLS, when the file has `tls_server_config`.
    pub acceptor: Option<TlsAcceptor>,
    /// `client_allowed_sans` under a policy that lets a client send no
    /// certificate: exporter-toolkit checks the names of every client, so
    /// one without a certificate is refused once the handshake is done.
    pub require_cert: bool,
    /// `http_server_config.headers`, set on every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `basic_auth_users`; without users every request is let in.
    pub auth: Arc<Authenticator>,
    file: WebConfigFile,
}

impl fmt::Debug for Active {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Active")
            .field("tls", &self.acceptor.is_some())
            .field("require_cert", &self.require_cert)
            .field("headers", &self.headers)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// The files one version was read from, with their versions then.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(PathBuf, Option<FileVersion>)>);

impl Stamp {
    fn changed(&self) -> bool {
        self.0.iter().any(|(p, v)| fs::version(p) != *v)
    }
}

/// Reads one file, its version taken first: a change after the read is
/// seen at the next check.
fn read(
    path: &Path,
    key: &str,
    limit: u64,
    stamp: &mut Vec<(PathBuf, Option<FileVersion>)>,
) -> Result<String, ConfigError> {
    stamp.push((path.to_owned(), fs::version(path)));
    fs::read_text(path, limit).map_err(|e| ConfigError::new(key, e.to_string()))
}

fn pem(
    p: &Pem,
    key: &str,
    stamp: &mut Vec<(PathBuf, Option<FileVersion>)>,
) -> Result<Vec<u8>, ConfigError> {
    match p {
        Pem::Inline(s) => Ok(s.clone().into_bytes()),
        Pem::File(path) => read(path, key, PEM_LIMIT, stamp).map(String::into_bytes),
    }
}

/// Reads and checks the file at `path` and what it names, and the
/// versions of those files. The users' authenticator (and so its cache of
/// checked passwords) is kept from `previous` when the users did not change.
/// On a reload, `previous` is the version in force and `http2` the setting
/// fixed at start, which the TLS configuration's ALPN keeps offering
/// whatever the file now says.
fn load(
    path: &Path,
    previous: Option<&Active>,
    http2: Option<bool>,
) -> (Stamp, Result<Active, ConfigError>) {
    let mut stamp = Vec::new();
    let active = load_into(path, previous, http2, &mut stamp);
    (Stamp(stamp), active)
}

fn load_into(
    path: &Path,
    previous: Option<&Active>,
    http2: Option<bool>,
    stamp: &mut Vec<(PathBuf, Option<FileVersion>)>,
) -> Result<Active, ConfigError> {
    let text = read(path, "", MAX_FILE_BYTES as u64, stamp)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let parsed = file::parse(&text, dir)?;
    let (acceptor, require_cert) = match &parsed.tls {
        None => (None, false),
        Some(t) => {
            let pems = Pems {
                cert: pem(&t.cert, "tls_server_config.cert_file", stamp)?,
                key: pem(&t.key, "tls_server_config.key_file", stamp)?,
                client_ca: t
                    .client_ca
                    .as_ref()
                    .map(|c| pem(c, "tls_server_config.client_ca_file", stamp))
                    .transpose()?,
            };
            let config = tls::server_config(t, &pems, http2.unwrap_or(parsed.http2))?;
            let require_cert = t.allowed_sans.is_some()
                && matches!(
                    t.client_auth,
                    ClientAuth::Request | ClientAuth::VerifyIfGiven
                );
            (Some(TlsAcceptor::from(Arc::new(config))), require_cert)
        }
    };
    let headers = parsed
        .headers
        .iter()
        .map(|(name, value)| {
            let key = format!("http_server_config.headers.{name}");
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ConfigError::new(&key, e.to_string()))?;
            let v = HeaderValue::from_str(value)
                .map_err(|_| ConfigError::new(&key, "not a valid header value"))?;
            Ok((n, v))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let auth = match previous {
        Some(p) if p.file.users == parsed.users => Arc::clone(&p.auth),
        _ => Arc::new(Authenticator::new(parsed.users.clone())),
    };
    Ok(Active {
        acceptor,
        require_cert,
        headers,
        auth,
        file: parsed,
    })
}

/// Go's `rate.Limiter` as exporter-toolkit uses it: one bucket for the
/// whole server, `burst` tokens, one more every `interval`, full at start.
/// A dozen lines, so not worth a crate.
#[derive(Debug)]
struct Bucket {
    every: Duration,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(r: &RateLimit) -> Bucket {
        Bucket {
            every: r.interval,
            burst: f64::from(r.burst),
            tokens: f64::from(r.burst),
            at: Instant::now(),
        }
    }

    fn allow(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at);
        self.at = self.at.max(now);
        self.tokens =
            (self.tokens + elapsed.as_secs_f64() / self.every.as_secs_f64()).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// At most one log line a second about failed TLS handshakes, with the
/// number left out since the last.
#[derive(Debug, Default)]
struct LogGate {
    last: Option<Instant>,
    skipped: u64,
}

/// The web configuration of a running server.
#[derive(Debug)]
pub struct Security {
    path: Option<PathBuf>,
    /// TLS on, fixed at start.
    tls: bool,
    /// `http2`, fixed at start.
    http2: bool,
    /// `rate_limit`, fixed at start.
    rate_limit: Option<RateLimit>,
    bucket: Option<Mutex<Bucket>>,
    active: RwLock<Arc<Active>>,
    stamp: Mutex<Stamp>,
    handshakes: Mutex<LogGate>,
}

/// What a request may do, by [`Security::admit`].
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Served.
    In,
    /// `rate_limit` exceeded: 429.
    Limited,
    /// No or wrong credentials: 401 with `WWW-Authenticate: Basic`.
    Unauthorized,
}

impl Security {
    /// No `--web.config.file`: plain HTTP, no authentication, no limit.
    pub fn off() -> Security {
        let file = WebConfigFile {
            tls: None,
            http2: true,
            headers: Vec::new(),
            users: BTreeMap::new(),
            rate_limit: None,
        };
        Security {
            path: None,
            tls: false,
            http2: true,
            rate_limit: None,
            bucket: None,
            active: RwLock::new(Arc::new(Active {
                acceptor: None,
                require_cert: false,
                headers: Vec::new(),
                auth: Arc::new(Authenticator::new(BTreeMap::new())),
                file,
            })),
            stamp: Mutex::new(Stamp(Vec::new())),
            handshakes: Mutex::default(),
        }
    }

    /// Loads and checks `path` (blocking: files are read, and bcrypt
    /// hashes the decoy password once). The error names the key at fault.
    pub fn load(path: &Path) -> Result<Security, String> {
        let (stamp, active) = load(path, None, None);
        let active = active.map_err(|e| format!("--web.config.file {}: {e}", path.display()))?;
        let rate_limit = active.file.rate_limit;
        Ok(Security {
            path: Some(path.to_owned()),
            tls: active.acceptor.is_some(),
            http2: active.file.http2,
            bucket: rate_limit.as_ref().map(|r| Mutex::new(Bucket::new(r))),
            rate_limit,
            active: RwLock::new(Arc::new(active)),
            stamp: Mutex::new(stamp),
            handshakes: Mutex::default(),
        })
    }

    /// Whether connections are TLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Whether HTTP/2 is offered over TLS.
    pub fn http2(&self) -> bool {
        self.http2
    }

    /// The version in force.
    pub fn current(&self) -> Arc<Active> {
        Arc::clone(&self.active.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Checks the files and, when one changed, loads them again (blocking).
    /// Returns whether a new version is in force.
    pub fn reload_if_changed(&self) -> bool {
        let Some(path) = &self.path else {
            return false;
        };
        if !self
            .stamp
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .changed()
        {
            return false;
        }
        let previous = self.current();
        let (stamp, loaded) = load(path, Some(&previous), Some(self.http2));
        // Remembered even when the load failed: the error is logged once,
        // and the next change is tried again.
        *self.stamp.lock().unwrap_or_else(PoisonError::into_inner) = stamp;
        let active = match loaded {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "web configuration not reloaded; the last good one stays in force");
                return false;
            }
        };
        if active.acceptor.is_some() != self.tls {
            tracing::error!(file = %path.display(), "web configuration not reloaded: turning TLS on or off needs a restart");
            return false;
        }
        if active.file.http2 != self.http2 || active.file.rate_limit != self.rate_limit {
            tracing::warn!(file = %path.display(), "http2 and rate_limit changes take effect at the next restart");
        }
        tracing::info!(file = %path.display(), "web configuration reloaded");
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(active);
        true
    }

    /// Checks for changes every [`CHECK_EVERY`] until dropped.
    pub async fn watch(self: Arc<Self>) {
        if self.path.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let me = Arc::clone(&self);
            if tokio::task::spawn_blocking(move || me.reload_if_changed())
                .await
                .is_err()
            {
                tracing::error!("web configuration check panicked");
            }
        }
    }

    /// Whether a request with these headers is served: the rate limit
    /// first, then basic auth, as exporter-toolkit orders them.
    pub async fn admit(&self, active: &Active, headers: &HeaderMap) -> Verdict {
        if let Some(b) = &self.bucket
            && !b
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .allow(Instant::now())
        {
            return Verdict::Limited;
        }
        if !active.auth.enabled() {
            return Verdict::In;
        }
        let Some((user, password)) = headers
            .get(AUTHORIZATION)
            .and_then(|h| parse_basic(h.as_bytes()))
        else {
            return Verdict::Unauthorized;
        };
        if active.auth.check(&user, &password).await {
            Verdict::In
        } else {
            Verdict::Unauthorized
        }
    }

    /// Logs a failed TLS handshake at debug, at most once a second.
    pub fn handshake_failed(&self, error: &dyn fmt::Display) {
        let now = Instant::now();
        let mut g = self
            .handshakes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if g.last
            .is_some_and(|l| now.duration_since(l) < Duration::from_secs(1))
        {
            g.skipped += 1;
            return;
        }
        let skipped = std::mem::take(&mut g.skipped);
        g.last = Some(now);
        drop(g);
        tracing::debug!(error = %error, more_since_last = skipped, "TLS handshake failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fs::TestDir;

    fn hash(pw: &str) -> String {
        bcrypt::hash(pw, 4).expect("hash")
    }

    fn basic(user: &str, pw: &str) -> HeaderMap {
        use base64::Engine as _;
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
        );
        h
    }

    /// A self-signed certificate for localhost and its key, written to
    /// `s.crt` and `s.key` in `dir`; the certificate's PEM.
    fn self_signed(dir: &Path) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        std::fs::write(dir.join("s.crt"), cert.pem()).expect("write");
        std::fs::write(dir.join("s.key"), key.serialize_pem()).expect("write");
        cert.pem()
    }

    /// Replaces a file by a rename, as editors and config managers do.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }

    #[test]
    fn the_bucket_starts_full_refills_at_its_rate_and_caps_at_burst() {
        let mut b = Bucket::new(&RateLimit {
            interval: Duration::from_secs(1),
            burst: 3,
        });
        let t0 = b.at;
        assert_eq!(
            (0..4).map(|_| b.allow(t0)).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        assert!(!b.allow(t0 + Duration::from_millis(500)));
        assert!(b.allow(t0 + Duration::from_secs(1)));
        assert!(!b.allow(t0 + Duration::from_millis(1100)));
        // Idle for a minute: three tokens, not sixty.
        let later = t0 + Duration::from_secs(61);
        assert_eq!(
            (0..4).map(|_| b.allow(later)).collect::<Vec<_>>(),
            [true, true, true, false]
        );
        // A clock read out of order takes nothing back.
        assert!(!b.allow(t0));
        let mut none = Bucket::new(&RateLimit {
            interval: Duration::from_secs(1),
            burst: 0,
        });
        assert!(
            !none.allow(none.at + Duration::from_secs(100)),
            "burst 0 refuses all"
        );
    }

    #[tokio::test]
    async fn admit_limits_first_then_checks_the_users() {
        let dir = TestDir::new("live-admit");
        let path = dir.write(
            "web.yml",
            format!(
                "basic_auth_users:\n  alice: {}\nrate_limit:\n  interval: 1h\n  burst: 3\n",
                hash("pw")
            )
            .as_bytes(),
        );
        let s = Security::load(&path).expect("loads");
        assert!(!s.tls());
        let a = s.current();
        assert_eq!(s.admit(&a, &basic("alice", "pw")).await, Verdict::In);
        assert_eq!(
            s.admit(&a, &basic("alice", "wrong")).await,
            Verdict::Unauthorized
        );
        assert_eq!(s.admit(&a, &HeaderMap::new()).await, Verdict::Unauthorized);
        // The three tokens are spent, on right and wrong requests alike.
        assert_eq!(s.admit(&a, &basic("alice", "pw")).await, Verdict::Limited);
    }

    #[tokio::test]
    async fn off_lets_everything_in() {
        let s = Security::off();
        assert!(!s.tls() && s.http2());
        let a = s.current();
        for _ in 0..1000 {
            assert_eq!(s.admit(&a, &HeaderMap::new()).await, Verdict::In);
        }
        assert!(!s.reload_if_changed());
    }

    #[tokio::test]
    async fn changes_are_loaded_broken_versions_kept_out() {
        let dir = TestDir::new("live-reload");
        let path = dir.path().join("web.yml");
        let users = |u: &str| format!("basic_auth_users:\n  {u}: {}\n", hash("pw"));
        replace(&path, &users("alice"));
        let s = Security::load(&path).expect("loads");
        assert!(!s.reload_if_changed(), "nothing changed");
        let first = s.current();

        // alice hashed again (a new salt: another hash), and headers.
        let same_users = format!(
            "{}http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
            users("alice")
        );
        replace(&path, &same_users);
        assert!(s.reload_if_changed());
        let second = s.current();
        assert!(
            !Arc::ptr_eq(&first.auth, &second.auth),
            "a new hash is a new user list"
        );
        assert_eq!(second.headers.len(), 1);
        replace(
            &path,
            &std::fs::read_to_string(&path)
                .expect("read")
                .replace("deny", "sameorigin"),
        );
        assert!(s.reload_if_changed());
        let third = s.current();
        assert!(
            Arc::ptr_eq(&second.auth, &third.auth),
            "same users, same cache"
        );
        assert_eq!(third.headers[0].1, "sameorigin");

        // Bob replaces alice.
        replace(&path, &users("bob"));
        assert!(s.reload_if_changed());
        let a = s.current();
        assert_eq!(s.admit(&a, &basic("bob", "pw")).await, Verdict::In);
        assert_eq!(
            s.admit(&a, &basic("alice", "pw")).await,
            Verdict::Unauthorized
        );

        // A broken version is not taken, and not retried until it changes.
        replace(&path, "basic_auth_users:\n  bob: not-a-hash\n");
        assert!(!s.reload_if_changed());
        assert!(!s.reload_if_changed());
        assert_eq!(
            s.admit(&s.current(), &basic("bob", "pw")).await,
            Verdict::In
        );
        // Nor is a file gone.
        std::fs::remove_file(&path).expect("rm");
        assert!(!s.reload_if_changed());
        assert_eq!(
            s.admit(&s.current(), &basic("bob", "pw")).await,
            Verdict::In
        );

        // Turning TLS on needs a restart.
        let cert = self_signed(dir.path());
        replace(
            &path,
            "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\n",
        );
        assert!(!s.reload_if_changed());
        assert!(s.current().acceptor.is_none());
        // The same file at start is TLS.
        let tls = Security::load(&path).expect("loads");
        assert!(tls.tls() && tls.http2());
        // A certificate file that changes is seen.
        std::fs::write(dir.path().join("s.crt"), "junk").expect("write");
        assert!(!tls.reload_if_changed(), "junk is not taken");
        std::fs::write(dir.path().join("s.crt"), &cert).expect("write");
        assert!(tls.reload_if_changed(), "the good certificate again");
    }

    #[tokio::test]
    async fn http2_and_rate_limit_stay_as_at_start_while_the_rest_reloads() {
        let dir = TestDir::new("live-fixed");
        let path = dir.path().join("web.yml");
        let file = |user: &str, burst: u32, http2: bool| {
            format!(
                "basic_auth_users:\n  {user}: {}\nrate_limit:\n  interval: 1h\n  burst: {burst}\nhttp_server_config:\n  http2: {http2}\n",
                hash("pw")
            )
        };
        replace(&path, &file("alice", 2, true));
        let s = Security::load(&path).expect("loads");
        assert!(s.http2());

        // A new user, a larger burst and http2 off: the user is taken, the
        // other two wait for a restart.
        replace(&path, &file("bob", 100, false));
        assert!(s.reload_if_changed(), "the rest of the file is taken");
        let a = s.current();
        assert!(
            !a.file.http2,
            "the version in force says what the file says"
        );
        assert!(s.http2(), "but the server goes on offering HTTP/2");
        assert_eq!(s.admit(&a, &basic("bob", "pw")).await, Verdict::In);
        assert_eq!(
            s.admit(&a, &basic("alice", "pw")).await,
            Verdict::Unauthorized
        );
        // Two tokens were spent: the burst of 2 from the start holds.
        assert_eq!(s.admit(&a, &basic("bob", "pw")).await, Verdict::Limited);

        // A restart takes both.
        let restarted = Security::load(&path).expect("loads");
        assert!(!restarted.http2());
        let a = restarted.current();
        for _ in 0..3 {
            assert_eq!(restarted.admit(&a, &basic("bob", "pw")).await, Verdict::In);
        }

        // Over TLS, HTTP/2 is offered by ALPN: a reloaded certificate keeps
        // the offer made at start.
        self_signed(dir.path());
        let tls = |http2: bool| {
            format!(
                "tls_server_config:\n  cert_file: s.crt\n  key_file: s.key\nhttp_server_config:\n  http2: {http2}\n"
            )
        };
        let alpn = |s: &Security| {
            s.current()
                .acceptor
                .as_ref()
                .expect("TLS")
                .config()
                .alpn_protocols
                .clone()
        };
        replace(&path, &tls(true));
        let s = Security::load(&path).expect("loads");
        assert!(alpn(&s).contains(&b"h2".to_vec()));
        replace(&path, &tls(false));
        assert!(s.reload_if_changed());
        assert!(alpn(&s).contains(&b"h2".to_vec()), "{:?}", alpn(&s));
        let restarted = Security::load(&path).expect("loads");
        assert_eq!(alpn(&restarted), [b"http/1.1".to_vec()]);
    }

    #[test]
    fn load_names_the_flag_the_file_and_the_key() {
        let dir = TestDir::new("live-load");
        let path = dir.write("web.yml", b"rate_limit:\n  burst: x\n");
        let e = Security::load(&path).expect_err("refused");
        assert!(
            e.starts_with(&format!("--web.config.file {}: ", path.display())),
            "{e}"
        );
        assert!(e.contains("burst"), "{e}");
        let e = Security::load(&dir.path().join("absent.yml")).expect_err("refused");
        assert!(e.contains("absent.yml"), "{e}");
    }

    #[test]
    fn the_handshake_log_is_gated() {
        let s = Security::off();
        for _ in 0..10 {
            s.handshake_failed(&"x");
        }
        let g = s.handshakes.lock().expect("lock");
        assert!(g.last.is_some());
        assert_eq!(g.skipped, 9);
    }
}
