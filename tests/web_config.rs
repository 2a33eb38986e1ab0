//! `--web.config.file` with real clients: the built exporter behind TLS,
//! client certificates, basic auth, headers and a rate limit, spoken to by
//! `curl` and `openssl s_client`, and scraped by a real Prometheus.
//! Certificates are made by the test (rcgen) in its own directory.
//!
//! These need curl and openssl (`scripts/lab-fetch` installs them when
//! missing) and are `#[ignore]`d like the lab tests; `scripts/test` runs them.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::ca::Ca;
use common::lab::{Proc, TempDir, exporter_bin, free_port, only_collectors, wait_for};

/// Writes `ca`'s certificate to `dir/<file>`.
fn write_ca(ca: &Ca, dir: &Path, file: &str) -> PathBuf {
    let p = dir.join(file);
    std::fs::write(&p, ca.pem()).expect("write CA");
    p
}

/// A leaf of `ca` for these names, written as `dir/<stem>.crt` and `.key`,
/// each beside and renamed into place, as a certificate manager rotates
/// them.
fn write_leaf(ca: &Ca, dir: &Path, stem: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let (cert, key) = ca.leaf(names);
    let (c, k) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    write_atomically(&c, &cert);
    write_atomically(&k, &key);
    (c, k)
}

/// A bcrypt hash at the lowest cost: the cost is bcrypt's business, the
/// tests' is what the server does with the outcome.
fn hash(password: &str) -> String {
    bcrypt::hash(password, 4).expect("bcrypt")
}

/// The exporter with a web configuration, on a free loopback port.
struct Server {
    proc: Proc,
    port: u16,
    config: PathBuf,
}

impl Server {
    fn start(dir: &TempDir, config: &str, extra: &[&str]) -> Server {
        let path = dir.path().join("web-config.yml");
        write_atomically(&path, config);
        let port = free_port();
        let mut cmd = Command::new(exporter_bin());
        cmd.arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.config.file={}", path.display()))
            .args(["--log.level", "debug"])
            .args(only_collectors(&["timex", "time"]))
            .args(extra);
        let mut proc = Proc::spawn(cmd, dir.path().join("exporter.log"), "clock_exporter");
        // Listening is enough: a plain request would be a failed handshake.
        wait_for("exporter listening", Duration::from_secs(10), || {
            proc.assert_running();
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        Server {
            proc,
            port,
            config: path,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    /// Replaces the configuration file, as an editor or a config manager does.
    fn rewrite(&self, config: &str) {
        write_atomically(&self.config, config);
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

/// One curl request: its status (0 when no HTTP answer came), headers
/// (lowercased names) and body, and curl's exit code.
#[derive(Debug)]
struct Reply {
    code: i32,
    version: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    stderr: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn curl(server: &Server, path: &str, args: &[&str]) -> Reply {
    let resolve = format!("localhost:{}:127.0.0.1", server.port);
    let out = Command::new("curl")
        .args(["-sS", "-i", "--max-time", "10", "--resolve", &resolve])
        .args(args)
        .arg(server.url(path))
        .stdin(Stdio::null())
        .output()
        .expect("curl runs (scripts/lab-fetch installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map_or((text.as_str(), ""), |(h, b)| (h, b));
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let mut words = first.split_whitespace();
    let version = words.next().unwrap_or_default().to_owned();
    let status = words.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        code: out.status.code().unwrap_or(-1),
        version,
        status,
        headers,
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The server's certificate authority, one server certificate for
/// `localhost` and 127.0.0.1, in `dir`.
struct Pki {
    ca: Ca,
    ca_file: PathBuf,
}

fn pki(dir: &TempDir) -> Pki {
    let ca = Ca::new("clock_exporter test CA");
    let ca_file = write_ca(&ca, dir.path(), "ca.crt");
    write_leaf(&ca, dir.path(), "server", &["localhost", "127.0.0.1"]);
    Pki { ca, ca_file }
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn basic_auth_over_tls_with_headers_on_every_path() {
    let dir = TempDir::new("webcfg-auth");
    let pki = pki(&dir);
    let ca = pki.ca_file.to_str().expect("utf-8");
    let config = format!(
        "{TLS}http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n    \
         Strict-Transport-Security: max-age=31536000\n\
         basic_auth_users:\n  alice: {}\n  bob: {}\n",
        hash("alice-pw"),
        hash("bob-pw")
    );
    let server = Server::start(&dir, &config, &[]);

    let ok = curl(
        &server,
        "/metrics",
        &["--cacert", ca, "-u", "alice:alice-pw"],
    );
    assert_eq!(ok.status, 200, "{ok:?}");
    assert!(ok.body.contains("clock_time_seconds "), "{}", ok.body);
    assert_eq!(ok.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(
        ok.header("strict-transport-security"),
        Some("max-age=31536000")
    );
    let bob = curl(&server, "/metrics", &["--cacert", ca, "-u", "bob:bob-pw"]);
    assert_eq!(bob.status, 200, "{bob:?}");

    for path in ["/metrics", "/", "/probe?target=127.0.0.1", "/nowhere"] {
        for creds in [None, Some("alice:bob-pw"), Some("carol:alice-pw")] {
            let mut args = vec!["--cacert", ca];
            if let Some(c) = creds {
                args.extend(["-u", c]);
            }
            let r = curl(&server, path, &args);
            assert_eq!(r.status, 401, "{path} with {creds:?}: {r:?}");
            assert_eq!(r.header("www-authenticate"), Some("Basic"), "{r:?}");
            assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
            assert!(!r.body.contains("clock_"), "{r:?}");
        }
    }
    // The landing page is behind the same door, and opens to it.
    let page = curl(&server, "/", &["--cacert", ca, "-u", "alice:alice-pw"]);
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("<html"), "{}", page.body);

    // HTTP/2 through ALPN (http2 defaults to true).
    let h2 = curl(
        &server,
        "/metrics",
        &["--cacert", ca, "-u", "alice:alice-pw", "--http2"],
    );
    assert_eq!((h2.version.as_str(), h2.status), ("HTTP/2", 200), "{h2:?}");
    assert!(h2.body.contains("clock_time_seconds "));

    // A client that does not trust the server's CA gives up (curl 60),
    // and plain HTTP to the TLS port gets no HTTP answer.
    let untrusted = curl(&server, "/metrics", &["-u", "alice:alice-pw"]);
    assert_eq!(untrusted.code, 60, "{untrusted:?}");
    assert!(untrusted.stderr.contains("certificate"), "{untrusted:?}");
    let plain = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{}/metrics", server.port))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&plain.stdout), "000", "{plain:?}");
    assert!(!plain.status.success());
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn http2_off_offers_http1_only() {
    let dir = TempDir::new("webcfg-h1");
    let pki = pki(&dir);
    let ca = pki.ca_file.to_str().expect("utf-8");
    let server = Server::start(
        &dir,
        &format!("{TLS}http_server_config:\n  http2: false\n"),
        &[],
    );
    let r = curl(&server, "/metrics", &["--cacert", ca, "--http2"]);
    assert_eq!((r.version.as_str(), r.status), ("HTTP/1.1", 200), "{r:?}");
}

/// Client certificates: the server's CA signs `scraper.example`'s, a
/// stranger's CA signs an impostor's.
#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn client_certificates_by_policy_ca_and_name() {
    let dir = TempDir::new("webcfg-mtls");
    let pki = pki(&dir);
    let ca = pki.ca_file.to_str().expect("utf-8");
    let (good_c, good_k) = write_leaf(&pki.ca, dir.path(), "scraper", &["scraper.example"]);
    let (other_c, other_k) = write_leaf(&pki.ca, dir.path(), "other", &["other.example"]);
    let stranger = Ca::new("someone else's CA");
    let (bad_c, bad_k) = write_leaf(&stranger, dir.path(), "impostor", &["scraper.example"]);
    let with = |c: &Path, k: &Path| {
        vec![
            "--cacert".to_owned(),
            ca.to_owned(),
            "--cert".to_owned(),
            c.display().to_string(),
            "--key".to_owned(),
            k.display().to_string(),
        ]
    };
    let run = |server: &Server, args: &[String]| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(server, "/metrics", &a)
    };
    let none = vec!["--cacert".to_owned(), ca.to_owned()];

    let strict = Server::start(
        &dir,
        &format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [scraper.example]\n"
        ),
        &[],
    );
    let good = run(&strict, &with(&good_c, &good_k));
    assert_eq!(good.status, 200, "{good:?}");
    for (what, args) in [
        ("no certificate", none.clone()),
        ("a stranger's CA", with(&bad_c, &bad_k)),
        ("a name not allowed", with(&other_c, &other_k)),
    ] {
        let r = run(&strict, &args);
        assert_eq!(r.status, 0, "{what}: {r:?}");
        assert_ne!(r.code, 0, "{what}: {r:?}");
    }
    drop(strict);

    // VerifyClientCertIfGiven: no certificate is fine, a bad one is not.
    let lenient = Server::start(
        &dir,
        &format!("{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n"),
        &[],
    );
    assert_eq!(run(&lenient, &none).status, 200);
    assert_eq!(run(&lenient, &with(&good_c, &good_k)).status, 200);
    assert_eq!(run(&lenient, &with(&bad_c, &bad_k)).status, 0);
    drop(lenient);

    // With client_allowed_sans every client must show a certificate, even
    // under a policy that lets it send none (exporter-toolkit checks the
    // names of every client).
    let named = Server::start(
        &dir,
        &format!(
            "{TLS}  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [scraper.example]\n"
        ),
        &[],
    );
    assert_eq!(run(&named, &with(&good_c, &good_k)).status, 200);
    assert_eq!(run(&named, &none).status, 0);
}

/// `openssl s_client` at one protocol version: whether the handshake
/// completed at that version.
fn handshake(port: u16, version: &str) -> (bool, String) {
    let (ok, text) = common::run(
        Command::new("openssl")
            .args(["s_client", "-connect"])
            .arg(format!("127.0.0.1:{port}"))
            // OpenSSL 3 refuses below TLS 1.2 at its default security
            // level; level 0 makes a refusal the server's.
            .args([version, "-cipher", "DEFAULT:@SECLEVEL=0"]),
    );
    let wanted = match version {
        "-tls1_3" => "New, TLSv1.3,",
        "-tls1_2" => "New, TLSv1.2,",
        "-tls1_1" => "New, TLSv1.1,",
        _ => "New, TLSv1,",
    };
    (ok && text.contains(wanted), text)
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn min_and_max_version_are_held_to() {
    let dir = TempDir::new("webcfg-versions");
    pki(&dir);
    let cases: [(&str, [(&str, bool); 4]); 3] = [
        (
            "",
            [
                ("-tls1", false),
                ("-tls1_1", false),
                ("-tls1_2", true),
                ("-tls1_3", true),
            ],
        ),
        (
            "  min_version: TLS13\n",
            [
                ("-tls1", false),
                ("-tls1_1", false),
                ("-tls1_2", false),
                ("-tls1_3", true),
            ],
        ),
        (
            "  max_version: TLS12\n",
            [
                ("-tls1", false),
                ("-tls1_1", false),
                ("-tls1_2", true),
                ("-tls1_3", false),
            ],
        ),
    ];
    for (extra, expected) in cases {
        let server = Server::start(&dir, &format!("{TLS}{extra}"), &[]);
        for (version, completes) in expected {
            let (done, text) = handshake(server.port, version);
            assert_eq!(done, completes, "{extra:?} {version}:\n{text}");
        }
    }
}

/// The status of a scrape trusting `ca`, with these credentials.
fn status(server: &Server, ca: &str, user_password: &str) -> u16 {
    curl(server, "/metrics", &["--cacert", ca, "-u", user_password]).status
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn rotated_certificates_and_changed_users_take_effect_without_a_restart() {
    let dir = TempDir::new("webcfg-reload");
    let pki = pki(&dir);
    let ca1 = pki.ca_file.to_str().expect("utf-8").to_owned();
    let config = |user: &str, pw: &str| format!("{TLS}basic_auth_users:\n  {user}: {}\n", hash(pw));
    let server = Server::start(&dir, &config("alice", "one"), &[]);
    assert_eq!(status(&server, &ca1, "alice:one"), 200);

    // A new certificate from another CA, renamed over the old files.
    let ca2 = Ca::new("the next CA");
    let ca2_file = write_ca(&ca2, dir.path(), "ca2.crt");
    let ca2_file = ca2_file.to_str().expect("utf-8");
    write_leaf(&ca2, dir.path(), "server", &["localhost"]);
    let seen = wait_for(
        "the rotated certificate served",
        Duration::from_secs(10),
        || {
            let r = curl(
                &server,
                "/metrics",
                &["--cacert", ca2_file, "-u", "alice:one"],
            );
            (r.status == 200).then_some(r)
        },
    );
    assert!(seen.body.contains("clock_time_seconds "));
    assert_eq!(
        curl(&server, "/metrics", &["--cacert", &ca1, "-u", "alice:one"]).code,
        60,
        "the old CA no longer matches"
    );

    // The users change: alice out, bob in.
    server.rewrite(&config("bob", "two"));
    wait_for("bob let in", Duration::from_secs(10), || {
        (status(&server, ca2_file, "bob:two") == 200).then_some(())
    });
    assert_eq!(status(&server, ca2_file, "alice:one"), 401);

    // A broken version is logged and the last good one stays.
    server.rewrite("tls_server_config:\n  cert_file: server.crt\n  key_file: nowhere.key\n");
    wait_for("the broken version logged", Duration::from_secs(10), || {
        server
            .proc
            .log_text()
            .contains("web configuration not reloaded")
            .then_some(())
    });
    assert!(server.proc.log_text().contains("nowhere.key"));
    assert_eq!(status(&server, ca2_file, "bob:two"), 200);
    // Turning TLS off is a restart's business.
    server.rewrite("basic_auth_users: {}\n");
    wait_for("TLS off refused", Duration::from_secs(10), || {
        server
            .proc
            .log_text()
            .contains("turning TLS on or off needs a restart")
            .then_some(())
    });
    assert_eq!(status(&server, ca2_file, "bob:two"), 200);
}

/// Runs the exporter with a configuration that must be refused; its output.
fn refused_at_start(dir: &TempDir, config: &str) -> String {
    let path = dir.path().join("refused.yml");
    std::fs::write(&path, config).expect("write");
    refused(&path, config)
}

/// Runs the exporter with `--web.config.file=path`, which must make it
/// exit with an error status within 10 s; its output. `what` names the
/// case in messages.
fn refused(path: &Path, what: &str) -> String {
    let mut child = Command::new(exporter_bin())
        .arg(format!("--web.listen-address=127.0.0.1:{}", free_port()))
        .arg(format!("--web.config.file={}", path.display()))
        .args(only_collectors(&["time"]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn exporter");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the exporter started with a bad configuration:\n{what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut text)
        .expect("read");
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut text)
        .expect("read");
    // Exit status 1, as README.md and docs/web-config.md say.
    assert_eq!(status.code(), Some(1), "{what}: {status}: {text}");
    text
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn malformed_files_are_refused_at_start_naming_the_key() {
    let dir = TempDir::new("webcfg-refused");
    pki(&dir);
    for (config, names) in [
        (
            format!("{TLS}  min_version: TLS11\n"),
            "tls_server_config.min_version: TLS11 is refused",
        ),
        (
            format!("{TLS}  max_versoin: TLS13\n"),
            "unknown field `max_versoin`",
        ),
        (
            "tls_server_config:\n  cert_file: server.crt\n  key_file: absent.key\n".to_owned(),
            "tls_server_config.key_file: ",
        ),
        (
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.crt\n".to_owned(),
            "tls_server_config.cert_file: holds no PEM certificate",
        ),
        (
            "basic_auth_users:\n  alice: plaintext-password\n".to_owned(),
            "basic_auth_users.alice: not a bcrypt hash",
        ),
        (
            "http_server_config:\n  headers:\n    Server: clock\n".to_owned(),
            "http_server_config.headers: header",
        ),
        (
            "rate_limit:\n  interval: soon\n".to_owned(),
            "rate_limit.interval: ",
        ),
        (
            "{[ not yaml".to_owned(),
            "not a web configuration: error: line 1 column 2",
        ),
    ] {
        let text = refused_at_start(&dir, &config);
        assert!(
            text.contains("--web.config.file") && text.contains(names),
            "{config}: the error should name {names}: {text}"
        );
    }
    // A missing file is refused too.
    let err = refused(Path::new("/nonexistent/web-config.yml"), "a missing file");
    assert!(err.contains("/nonexistent/web-config.yml"), "{err}");
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn the_rate_limit_answers_429_without_headers() {
    let dir = TempDir::new("webcfg-rate");
    let pki = pki(&dir);
    let ca = pki.ca_file.to_str().expect("utf-8");
    // One token an hour: the burst is all there is.
    let server = Server::start(
        &dir,
        &format!(
            "{TLS}http_server_config:\n  headers:\n    X-Frame-Options: deny\n\
             rate_limit:\n  interval: 1h\n  burst: 3\n"
        ),
        &[],
    );
    let statuses: Vec<u16> = (0..5)
        .map(|_| curl(&server, "/metrics", &["--cacert", ca]).status)
        .collect();
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let limited = curl(&server, "/", &["--cacert", ca]);
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("x-frame-options"), None, "{limited:?}");
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn handshakes_are_bounded_shed_and_their_failures_logged_sparingly() {
    let dir = TempDir::new("webcfg-handshake");
    let pki = pki(&dir);
    let ca = pki.ca_file.to_str().expect("utf-8");
    let server = Server::start(
        &dir,
        TLS,
        &["--web.max-connections=3", "--web.read-header-timeout=2s"],
    );
    // Three connections that never say hello fill the table; a real
    // client still gets in, shedding the oldest of them.
    let mut silent: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let r = curl(&server, "/metrics", &["--cacert", ca]);
    assert_eq!(r.status, 200, "{r:?}");
    // The silent ones are closed: shed, or at the handshake timeout.
    for s in &mut silent {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 64];
        assert!(
            matches!(s.read(&mut buf), Ok(0) | Err(_)),
            "a connection without a handshake stays open"
        );
    }

    // Twenty plain-text requests in a row fail their handshakes; the log
    // has at most a line for the first and counts the rest in the next.
    // Only lines after the silent connections' own are the burst's.
    let handshake_lines = || -> Vec<String> {
        server
            .proc
            .log_text()
            .lines()
            .filter(|l| l.contains("TLS handshake failed"))
            .map(str::to_owned)
            .collect()
    };
    let before = handshake_lines().len();
    for _ in 0..20 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", server.port)) {
            let _ = s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n");
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.read(&mut [0u8; 256]);
        }
    }
    std::thread::sleep(Duration::from_millis(1100));
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let _ = s.read(&mut [0u8; 256]);
    let counts_the_burst = |l: &String| {
        l.split_whitespace()
            .find_map(|w| w.strip_prefix("more_since_last="))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= 15)
    };
    let lines: Vec<String> = wait_for("a line counting the burst", Duration::from_secs(5), || {
        let lines = handshake_lines().split_off(before);
        lines.iter().any(counts_the_burst).then_some(lines)
    });
    assert!(lines.len() <= 4, "{lines:#?}");
    // At debug: a client's broken handshake is no operator's warning.
    assert!(
        handshake_lines()
            .iter()
            .all(|l| l.contains(" level=debug ")),
        "{:#?}",
        handshake_lines()
    );
    // Still serving.
    assert_eq!(curl(&server, "/metrics", &["--cacert", ca]).status, 200);
}

/// A real Prometheus scrapes over TLS with basic auth and a client
/// certificate: the target is up.
#[test]
#[ignore = "needs the lab: run scripts/test"]
fn prometheus_scrapes_over_tls_with_basic_auth_and_a_client_certificate() {
    let dir = TempDir::new("webcfg-prom");
    let pki = pki(&dir);
    let (client_c, client_k) =
        write_leaf(&pki.ca, dir.path(), "prometheus", &["prometheus.example"]);
    let server = Server::start(
        &dir,
        &format!(
            "{TLS}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             client_allowed_sans: [prometheus.example]\n\
             basic_auth_users:\n  prometheus: {}\n",
            hash("scrape-secret")
        ),
        &[],
    );
    let prom_port = free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: clock\n    scheme: https\n    \
         basic_auth:\n      username: prometheus\n      password: scrape-secret\n    \
         tls_config:\n      ca_file: {}\n      cert_file: {}\n      key_file: {}\n      server_name: localhost\n    \
         static_configs:\n      - targets: [\"127.0.0.1:{}\"]\n",
        pki.ca_file.display(),
        client_c.display(),
        client_k.display(),
        server.port
    );
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(&config_file, config).expect("write");
    let mut cmd = Command::new(common::lab_tool("prometheus"));
    cmd.arg(format!("--config.file={}", config_file.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("prom-data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .current_dir(dir.path());
    let prometheus = Proc::spawn(cmd, dir.path().join("prometheus.log"), "prometheus");
    let query = |expr: &str| -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", prom_port)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /api/v1/query?query={} HTTP/1.0\r\n\r\n",
            common::percent_encode(expr)
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let body = out.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        Some(v["data"]["result"][0]["value"][1].as_str()?.to_owned())
    };
    wait_for(
        "Prometheus scraping the target",
        Duration::from_secs(30),
        || query("up{job=\"clock\"}").filter(|v| v == "1"),
    );
    let samples = query("scrape_samples_scraped{job=\"clock\"}").expect("samples");
    assert!(samples.parse::<f64>().expect("number") > 10.0, "{samples}");
    assert!(
        query("clock_time_seconds{job=\"clock\"}").is_some(),
        "{}",
        prometheus.log_text()
    );
}

/// The web configurations among docs/web-config.md's YAML blocks (the
/// Prometheus one is not).
fn documented_examples() -> Vec<String> {
    let doc = std::fs::read_to_string(common::repo().join("docs/web-config.md")).expect("read");
    doc.split("```yaml\n")
        .skip(1)
        .filter_map(|b| b.split_once("```").map(|(block, _)| block.to_owned()))
        .filter(|b| !b.contains("scrape_configs:"))
        .collect()
}

#[test]
fn the_documented_examples_parse() {
    let examples = documented_examples();
    assert_eq!(examples.len(), 3, "{examples:#?}");
    let parsed: Vec<_> = examples
        .iter()
        .map(|e| {
            clock_exporter::testing::http::web_config_file::parse(e, Path::new("/etc"))
                .unwrap_or_else(|err| panic!("{e}: {err}"))
        })
        .collect();
    assert!(parsed.iter().all(|p| p.tls.is_some()));
    // The second as exporter-toolkit's docs/web-config.yml has it: $2y$
    // hashes, a quoted interval with a comment after it.
    assert!(examples[1].contains("$2y$10$") && examples[1].contains("interval: \"1s\" #"));
    assert_eq!(parsed[1].users.keys().collect::<Vec<_>>(), ["alice", "bob"]);
    let limit = parsed[1].rate_limit.as_ref().expect("rate_limit");
    assert_eq!(
        (limit.interval, limit.burst),
        (std::time::Duration::from_secs(1), 20)
    );
}

#[test]
#[ignore = "needs curl and openssl: run scripts/test"]
fn the_documented_examples_behave_as_documented() {
    let examples = documented_examples();
    let dir = TempDir::new("webcfg-examples");
    let pki = pki(&dir);
    let ca = pki.ca_file.to_str().expect("utf-8");

    // TLS only.
    let server = Server::start(&dir, &examples[0], &[]);
    assert_eq!(curl(&server, "/metrics", &["--cacert", ca]).status, 200);
    drop(server);

    // Two users, and a token a second with a burst of 20: one connection
    // asks 30 times in a row, far faster than a token a second.
    let server = Server::start(&dir, &examples[1], &[]);
    assert_eq!(status(&server, ca, "alice:alice-password"), 200);
    assert_eq!(status(&server, ca, "bob:bob-password"), 200);
    assert_eq!(status(&server, ca, "alice:bob-password"), 401);
    let resolve = format!("localhost:{}:127.0.0.1", server.port);
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--resolve",
            &resolve,
            "--cacert",
            ca,
        ])
        .args(["-u", "alice:alice-password", "-w", "%{http_code}\n"])
        .args(std::iter::repeat_n(["-o", "/dev/null"], 30).flatten())
        .args(std::iter::repeat_n(server.url("/metrics"), 30))
        .output()
        .expect("curl");
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    let codes: Vec<&str> = codes.lines().collect();
    assert_eq!(codes.len(), 30, "{codes:?}");
    let ok = codes.iter().filter(|c| **c == "200").count();
    // 17 tokens left after the three above, and perhaps one or two more
    // refilled while these ran.
    assert!((17..=20).contains(&ok), "{codes:?}");
    assert!(
        codes.iter().all(|c| *c == "200" || *c == "429"),
        "{codes:?}"
    );
    drop(server);

    // Client certificates from the scrapers' CA, one name allowed.
    let scrapers = Ca::new("scrapers");
    write_ca(&scrapers, dir.path(), "scrapers-ca.crt");
    let (c, k) = write_leaf(&scrapers, dir.path(), "prom", &["prometheus.example"]);
    let (c, k) = (c.to_str().expect("utf-8"), k.to_str().expect("utf-8"));
    let (oc, ok_) = write_leaf(&scrapers, dir.path(), "other", &["grafana.example"]);
    let (oc, ok_) = (oc.to_str().expect("utf-8"), ok_.to_str().expect("utf-8"));
    let server = Server::start(&dir, &examples[2], &[]);
    let with = curl(
        &server,
        "/metrics",
        &["--cacert", ca, "--cert", c, "--key", k],
    );
    assert_eq!(with.status, 200, "{with:?}");
    assert_eq!(curl(&server, "/metrics", &["--cacert", ca]).status, 0);
    assert_eq!(
        curl(
            &server,
            "/metrics",
            &["--cacert", ca, "--cert", oc, "--key", ok_]
        )
        .status,
        0
    );
}
