//! The web configuration file, as exporter-toolkit documents it: every key
//! supported or refused with its name, hostile files refused.

use std::path::Path;
use std::time::Duration;

use super::file::{
    Cipher, ClientAuth, ConfigError, Curve, Pem, RateLimit, TlsVersion, WebConfigFile, go_duration,
    parse,
};

const DIR: &str = "/etc/clock_exporter";
/// A well-formed bcrypt hash at cost 4 (the parser checks the form only).
const HASH: &str = "$2y$04$nKCZz1Ux.e6n3odIXeRReOZzYO4UOe0fAUeVxnAGzXxfzWbq.cNvK";

fn ok(text: &str) -> WebConfigFile {
    parse(text, Path::new(DIR)).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn refused(text: &str) -> ConfigError {
    match parse(text, Path::new(DIR)) {
        Ok(c) => panic!("accepted: {c:?}\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    for text in ["", "\n", "# nothing here\n  \n", "---\n"] {
        let c = ok(text);
        assert_eq!(c.tls, None);
        assert!(c.http2);
        assert!(c.users.is_empty() && c.headers.is_empty() && c.rate_limit.is_none());
    }
}

#[test]
fn tls_with_files_relative_to_the_config_and_defaults() {
    let c = ok("tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n");
    let t = c.tls.expect("tls");
    assert_eq!(t.cert, Pem::File(Path::new(DIR).join("server.crt")));
    assert_eq!(t.key, Pem::File("/abs/server.key".into()));
    assert_eq!(t.client_auth, ClientAuth::None);
    assert_eq!(
        (t.min_version, t.max_version),
        (TlsVersion::Tls12, TlsVersion::Tls13)
    );
    assert!(t.cipher_suites.is_empty() && t.curves.is_empty() && t.client_ca.is_none());
}

#[test]
fn inline_certificates_and_keys() {
    let c = ok(
        "tls_server_config:\n  cert: |\n    -----BEGIN CERTIFICATE-----\n    AAAA\n    -----END CERTIFICATE-----\n  key: KEYTEXT\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca: CATEXT\n",
    );
    let t = c.tls.expect("tls");
    assert_eq!(
        t.cert,
        Pem::Inline("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into())
    );
    assert_eq!(t.key, Pem::Inline("KEYTEXT".into()));
    assert_eq!(t.client_ca, Some(Pem::Inline("CATEXT".into())));
    // An inline key never reaches a log through Debug.
    assert!(!format!("{:?}", t.key).contains("KEYTEXT"));
}

#[test]
fn the_five_client_auth_types_and_the_alias() {
    for (name, want) in [
        ("NoClientCert", ClientAuth::None),
        ("RequestClientCert", ClientAuth::Request),
        ("RequireAnyClientCert", ClientAuth::RequireAny),
        ("RequireClientCert", ClientAuth::RequireAny),
        ("VerifyClientCertIfGiven", ClientAuth::VerifyIfGiven),
        ("RequireAndVerifyClientCert", ClientAuth::RequireAndVerify),
    ] {
        let ca = if want == ClientAuth::None {
            ""
        } else {
            "  client_ca_file: ca.pem\n"
        };
        let c = ok(&format!(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: {name}\n{ca}"
        ));
        assert_eq!(c.tls.expect("tls").client_auth, want, "{name}");
    }
    let e = refused(
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: requireany\n",
    );
    assert_eq!(e.key, "tls_server_config.client_auth_type");
}

#[test]
fn client_auth_rules() {
    // A CA without a policy, as exporter-toolkit refuses it.
    let e =
        refused("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca.pem\n");
    assert_eq!(e.key, "tls_server_config.client_auth_type");
    // Verification with no CA: refused here (exporter-toolkit would use
    // the system roots).
    let e = refused(
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
    );
    assert_eq!(e.key, "tls_server_config.client_ca_file");
    // Requiring any certificate needs no CA.
    ok(
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
    );
    let c = ok(
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n  client_allowed_sans: [one, 127.0.0.1]\n",
    );
    assert_eq!(
        c.tls.expect("tls").allowed_sans,
        Some(vec!["one".to_owned(), "127.0.0.1".to_owned()])
    );
}

#[test]
fn missing_cert_or_key_and_both_sources() {
    for (text, key, says) in [
        (
            "tls_server_config:\n  key_file: b\n",
            "tls_server_config",
            "cert",
        ),
        (
            "tls_server_config:\n  cert_file: \"\"\n  key_file: b\n",
            "tls_server_config",
            "cert",
        ),
        (
            "tls_server_config:\n  cert_file: a\n",
            "tls_server_config",
            "key",
        ),
        (
            "tls_server_config:\n  cert: a\n  key: \"\"\n",
            "tls_server_config",
            "key",
        ),
        (
            "tls_server_config:\n  client_auth_type: x\n",
            "tls_server_config",
            "cert",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  cert: a\n  key_file: b\n",
            "tls_server_config.cert_file",
            "not both",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  key: b\n",
            "tls_server_config.key_file",
            "not both",
        ),
    ] {
        let e = refused(text);
        assert_eq!(e.key, key, "{text}");
        assert!(e.message.contains(says), "{e}");
    }
    // Only versions or suites: still plain HTTP, as in exporter-toolkit.
    assert_eq!(ok("tls_server_config:\n  min_version: TLS13\n").tls, None);
    assert_eq!(ok("tls_server_config:\n").tls, None);
}

#[test]
fn versions_tls10_and_11_are_refused_with_the_reason() {
    let base = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
    let c = ok(&format!("{base}  min_version: TLS13\n"));
    assert_eq!(c.tls.expect("tls").min_version, TlsVersion::Tls13);
    for v in ["TLS10", "TLS11"] {
        let e = refused(&format!("{base}  min_version: {v}\n"));
        assert_eq!(e.key, "tls_server_config.min_version");
        assert!(e.message.contains("rustls") && e.message.contains(v), "{e}");
    }
    let e = refused(&format!("{base}  max_version: TLS111\n"));
    assert_eq!(e.key, "tls_server_config.max_version");
    let e = refused(&format!(
        "{base}  min_version: TLS13\n  max_version: TLS12\n"
    ));
    assert!(e.message.contains("above"), "{e}");
}

#[test]
fn cipher_suites_and_curves_by_go_name() {
    let base = "tls_server_config:\n  cert_file: a\n  key_file: b\n";
    let names: Vec<&str> = Cipher::NAMES.iter().map(|(n, _)| *n).collect();
    let c = ok(&format!(
        "{base}  cipher_suites: [{}]\n  curve_preferences: [X25519, CurveP256, CurveP384]\n  prefer_server_cipher_suites: false\n",
        names.join(", ")
    ));
    let t = c.tls.expect("tls");
    assert_eq!(t.cipher_suites.len(), 9);
    assert_eq!(t.curves, vec![Curve::X25519, Curve::P256, Curve::P384]);
    for (bad, says) in [
        ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "CBC"),
        ("TLS_RSA_WITH_AES_128_GCM_SHA256", "unknown or insecure"),
        ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA2048", "unknown"),
    ] {
        let e = refused(&format!("{base}  cipher_suites: [{bad}]\n"));
        assert_eq!(e.key, "tls_server_config.cipher_suites");
        assert!(e.message.contains(says), "{e}");
    }
    let e = refused(&format!(
        "{base}  max_version: TLS12\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"
    ));
    assert!(e.message.contains("no TLS 1.2 suite"), "{e}");
    for (bad, says) in [
        ("CurveP521", "ring"),
        ("CurveP257", "unknown"),
        ("P256", "unknown"),
    ] {
        let e = refused(&format!("{base}  curve_preferences: [{bad}]\n"));
        assert_eq!(e.key, "tls_server_config.curve_preferences");
        assert!(e.message.contains(says), "{e}");
    }
}

#[test]
fn headers_only_those_exporter_toolkit_allows() {
    let c = ok(
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000; includeSubDomains\n    X-Content-Type-Options: nosniff\n    X-XSS-Protection: 1\n    Content-Security-Policy: \"default-src 'self'\"\n",
    );
    assert!(!c.http2);
    assert_eq!(
        c.headers,
        [
            (
                "Strict-Transport-Security",
                "max-age=31536000; includeSubDomains"
            ),
            ("X-Content-Type-Options", "nosniff"),
            ("X-Frame-Options", "deny"),
            ("X-XSS-Protection", "1"),
            ("Content-Security-Policy", "default-src 'self'"),
        ]
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
    );
    for (text, key) in [
        (
            "http_server_config:\n  headers:\n    Content-Type: foo\n",
            "http_server_config.headers",
        ),
        (
            "http_server_config:\n  headers:\n    x-frame-options: deny\n",
            "http_server_config.headers",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: foo\n",
            "http_server_config.headers.X-Frame-Options",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: DENY\n",
            "http_server_config.headers.X-Frame-Options",
        ),
        (
            "http_server_config:\n  headers:\n    X-Content-Type-Options: sniff\n",
            "http_server_config.headers.X-Content-Type-Options",
        ),
        (
            "http_server_config:\n  headers:\n    X-XSS-Protection: \"1\\r\\nSet-Cookie: a\"\n",
            "http_server_config.headers.X-XSS-Protection",
        ),
    ] {
        assert_eq!(refused(text).key, key, "{text}");
    }
}

#[test]
fn users_need_bcrypt_hashes() {
    let c = ok(&format!(
        "basic_auth_users:\n  alice: {HASH}\n  bob: '{HASH}'\n"
    ));
    assert_eq!(c.users.len(), 2);
    assert_eq!(c.users["alice"], HASH);
    for text in [
        "basic_auth_users:\n  john: doe\n".to_owned(),
        "basic_auth_users:\n  john:\n".to_owned(),
        format!("basic_auth_users:\n  \"jo:hn\": {HASH}\n"),
        "basic_auth_users:\n  john: $2y$99$nKCZz1Ux.e6n3odIXeRReOZzYO4UOe0fAUeVxnAGzXxfzWbq.cNvK\n"
            .to_owned(),
    ] {
        assert!(
            refused(&text).key.starts_with("basic_auth_users."),
            "{text}"
        );
    }
}

#[test]
fn rate_limit_and_go_durations() {
    let c = ok("rate_limit:\n  interval: 1s\n  burst: 20\n");
    assert_eq!(
        c.rate_limit,
        Some(RateLimit {
            interval: Duration::from_secs(1),
            burst: 20
        })
    );
    assert_eq!(
        ok("rate_limit:\n  interval: 0\n  burst: 0\n").rate_limit,
        None
    );
    assert_eq!(ok("rate_limit:\n  burst: 5\n").rate_limit, None);
    // A bare integer is nanoseconds, as Go reads it.
    assert_eq!(
        ok("rate_limit:\n  interval: 1500\n")
            .rate_limit
            .map(|r| r.interval),
        Some(Duration::from_nanos(1500))
    );
    assert_eq!(
        refused("rate_limit:\n  interval: 1d\n").key,
        "rate_limit.interval"
    );
    assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
    assert_eq!(go_duration("1.5s"), Ok(Duration::from_millis(1500)));
    assert_eq!(go_duration("500ms"), Ok(Duration::from_millis(500)));
    assert_eq!(go_duration("2us"), Ok(Duration::from_micros(2)));
    assert_eq!(go_duration("-1s"), Ok(Duration::ZERO));
    for bad in ["", "1", "s", "1x", "1..5s", ".s", "1s2", "1e3s"] {
        assert!(go_duration(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn unknown_keys_duplicates_and_junk_are_refused() {
    for text in [
        "tls_server_config:\n  cert_filse: a\n",
        "basic_auth: {}\n",
        "http_server_config:\n  http3: true\n",
        "rate_limit:\n  intervals: 1s\n",
        "tls_server_config:\n  cert_file: a\n  cert_file: b\n  key_file: c\n",
        "just some text\nover two lines\n",
        "[1, 2, 3]\n",
        "tls_server_config: [a]\n",
        "http_server_config:\n  http2: maybe\n",
        "tls_server_config:\n  cert_file: [a, b]\n",
        "a: &a [*a]\n",
        "\u{0}\u{1}\u{2}",
    ] {
        let e = refused(text);
        assert!(!e.to_string().is_empty(), "{text}");
    }
    let e = refused("tls_server_config:\n  cert_filse: a\n");
    assert!(e.message.contains("cert_filse"), "{e}");
    let huge = format!("# {}\n", "x".repeat(super::file::MAX_FILE_BYTES));
    assert!(refused(&huge).message.contains("larger"));
}

// The CA the integration tests and the TLS benchmark use too.
#[path = "../../../tests/common/ca.rs"]
mod ca;

mod auth {
    use std::collections::BTreeMap;

    use super::super::auth::{Authenticator, MAX_PASSWORD_BYTES, PER_USER, parse_basic};

    fn users() -> BTreeMap<String, String> {
        let mut u = BTreeMap::new();
        u.insert(
            "alice".to_owned(),
            bcrypt::hash("alice-pw", 4).expect("hash"),
        );
        u.insert("bob".to_owned(), bcrypt::hash("bob-pw", 4).expect("hash"));
        u
    }

    #[test]
    fn basic_credentials_are_parsed_and_bad_headers_refused() {
        // "alice:pa:ss" in base64: the password may hold colons.
        assert_eq!(
            parse_basic(b"Basic YWxpY2U6cGE6c3M="),
            Some(("alice".to_owned(), b"pa:ss".to_vec()))
        );
        assert_eq!(
            parse_basic(b"basic YWxpY2U6"),
            Some(("alice".to_owned(), Vec::new()))
        );
        for bad in [
            &b"Bearer YWxpY2U6cGE6c3M="[..],
            b"Basic",
            b"Basic YWxpY2U",
            b"Basic YWxpY2U=",
            b"Basic !!!!",
            b"Basic\xff\xfe",
            b"",
        ] {
            assert_eq!(parse_basic(bad), None, "{bad:?}");
        }
        let huge = format!("Basic {}", "QUFB".repeat(2000));
        assert_eq!(parse_basic(huge.as_bytes()), None);
    }

    proptest::proptest! {
        /// Any header bytes: an answer, never a panic.
        #[test]
        fn any_authorization_header_is_answered(header in proptest::collection::vec(proptest::num::u8::ANY, 0..6000)) {
            let _ = parse_basic(&header);
        }

        /// Credentials a client encodes come back as they were sent.
        #[test]
        fn encoded_credentials_come_back(user in "[^:]{0,40}", password in proptest::collection::vec(proptest::num::u8::ANY, 0..80)) {
            use base64::Engine as _;
            let mut raw = user.clone().into_bytes();
            raw.push(b':');
            raw.extend_from_slice(&password);
            let header = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(&raw));
            proptest::prop_assert_eq!(parse_basic(header.as_bytes()), Some((user, password)));
        }
    }

    #[tokio::test]
    async fn right_wrong_and_unknown_users_and_the_cache() {
        let a = Authenticator::new(users());
        assert!(a.enabled());
        assert!(a.check("alice", b"alice-pw").await);
        assert!(!a.check("alice", b"bob-pw").await);
        assert!(!a.check("carol", b"alice-pw").await);
        assert!(!a.check("", b"").await);
        assert_eq!(a.bcrypt_runs(), 4);
        // Known outcomes come from the cache, right and wrong alike.
        assert!(a.check("alice", b"alice-pw").await);
        assert!(!a.check("alice", b"bob-pw").await);
        assert!(!a.check("carol", b"alice-pw").await);
        assert_eq!(a.bcrypt_runs(), 4);
        // A right password of one user is not another's.
        assert!(!a.check("bob", b"alice-pw").await);
        assert!(a.check("bob", b"bob-pw").await);
        assert_eq!(a.bcrypt_runs(), 6);
        // Passwords bcrypt would cut are refused without it.
        let long = vec![b'a'; MAX_PASSWORD_BYTES + 1];
        assert!(!a.check("alice", &long).await);
        assert_eq!(a.bcrypt_runs(), 6);
    }

    #[tokio::test]
    async fn the_cache_is_bounded_per_user() {
        let a = Authenticator::new(users());
        for i in 0..(PER_USER + 2) {
            assert!(!a.check("alice", format!("wrong-{i}").as_bytes()).await);
        }
        let runs = a.bcrypt_runs();
        // The oldest wrong ones were forgotten, the newest are kept.
        assert!(!a.check("alice", b"wrong-0").await);
        assert_eq!(a.bcrypt_runs(), runs + 1);
        assert!(
            !a.check("alice", format!("wrong-{}", PER_USER + 1).as_bytes())
                .await
        );
        assert_eq!(a.bcrypt_runs(), runs + 1);
    }

    #[test]
    fn no_users_means_no_authentication() {
        assert!(!Authenticator::new(BTreeMap::new()).enabled());
    }
}

mod tls {
    use std::sync::Arc;

    use rustls::crypto::ring;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    use super::super::file::{Cipher, ClientAuth, Curve, Pem, TlsSettings, TlsVersion};
    use super::super::tls::{Pems, server_config, subject_alt_names};
    use super::ca::Ca;

    fn settings() -> TlsSettings {
        TlsSettings {
            cert: Pem::Inline(String::new()),
            key: Pem::Inline(String::new()),
            client_auth: ClientAuth::None,
            client_ca: None,
            allowed_sans: None,
            min_version: TlsVersion::Tls12,
            max_version: TlsVersion::Tls13,
            cipher_suites: Vec::new(),
            curves: Vec::new(),
        }
    }

    struct World {
        ca: Ca,
        server: (String, String),
    }

    fn world() -> World {
        let ca = Ca::new("clock_exporter test CA");
        let server = ca.leaf(&["localhost"]);
        World { ca, server }
    }

    impl World {
        fn server(&self, t: &TlsSettings, client_ca: Option<String>, http2: bool) -> ServerConfig {
            let pems = Pems {
                cert: self.server.0.clone().into_bytes(),
                key: self.server.1.clone().into_bytes(),
                client_ca: client_ca.map(String::into_bytes),
            };
            server_config(t, &pems, http2).expect("server config")
        }

        fn client(
            &self,
            identity: Option<&(String, String)>,
            tweak: impl FnOnce(&mut rustls::crypto::CryptoProvider),
        ) -> ClientConfig {
            let mut provider = ring::default_provider();
            tweak(&mut provider);
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(self.ca.pem().as_bytes()).expect("CA"))
                .expect("root");
            let b = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(rustls::ALL_VERSIONS)
                .expect("versions")
                .with_root_certificates(roots);
            match identity {
                None => b.with_no_client_auth(),
                Some((cert, key)) => b
                    .with_client_auth_cert(
                        vec![CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert")],
                        PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key"),
                    )
                    .expect("client cert"),
            }
        }
    }

    /// Runs a handshake in memory; the ALPN protocol and suite agreed.
    fn handshake(
        server: ServerConfig,
        mut client: ClientConfig,
    ) -> Result<(Option<Vec<u8>>, String), rustls::Error> {
        client.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let mut s = ServerConnection::new(Arc::new(server))?;
        let mut c = ClientConnection::new(Arc::new(client), "localhost".try_into().expect("name"))?;
        for _ in 0..16 {
            let mut wire = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut wire).expect("client writes");
            }
            if !wire.is_empty() {
                s.read_tls(&mut wire.as_slice()).expect("server reads");
                s.process_new_packets()?;
            }
            let mut wire = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut wire).expect("server writes");
            }
            if !wire.is_empty() {
                c.read_tls(&mut wire.as_slice()).expect("client reads");
                c.process_new_packets()?;
            }
            if !s.is_handshaking() && !c.is_handshaking() && !s.wants_write() && !c.wants_write() {
                let suite = s
                    .negotiated_cipher_suite()
                    .map(|x| format!("{:?}", x.suite()))
                    .unwrap_or_default();
                return Ok((s.alpn_protocol().map(<[u8]>::to_vec), suite));
            }
        }
        panic!("the handshake did not end");
    }

    #[test]
    fn tls_with_alpn_as_http2_says() {
        let w = world();
        let (alpn, _) = handshake(w.server(&settings(), None, true), w.client(None, |_| {}))
            .expect("handshake");
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        let (alpn, _) = handshake(w.server(&settings(), None, false), w.client(None, |_| {}))
            .expect("handshake");
        assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    }

    #[test]
    fn versions_suites_and_curves_are_held_to() {
        let w = world();
        let mut t = settings();
        t.min_version = TlsVersion::Tls13;
        let tls12_only = {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(w.ca.pem().as_bytes()).expect("CA"))
                .expect("root");
            ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
                .with_protocol_versions(&[&rustls::version::TLS12])
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth()
        };
        assert!(handshake(w.server(&t, None, false), tls12_only).is_err());
        assert!(handshake(w.server(&t, None, false), w.client(None, |_| {})).is_ok());

        // TLS 1.2 with one suite: a client without it is refused.
        let mut t = settings();
        t.max_version = TlsVersion::Tls12;
        t.cipher_suites = vec![Cipher::EcdheEcdsaAes256Gcm];
        let only_128 = w.client(None, |p| {
            p.cipher_suites = vec![ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256];
        });
        assert!(handshake(w.server(&t, None, false), only_128).is_err());
        let (_, suite) =
            handshake(w.server(&t, None, false), w.client(None, |_| {})).expect("handshake");
        assert_eq!(suite, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");

        // One curve: a client offering only another is refused.
        let mut t = settings();
        t.curves = vec![Curve::P384];
        let x25519 = w.client(None, |p| p.kx_groups = vec![ring::kx_group::X25519]);
        assert!(handshake(w.server(&t, None, false), x25519).is_err());
        assert!(handshake(w.server(&t, None, false), w.client(None, |_| {})).is_ok());
    }

    #[test]
    fn client_certificates_by_policy() {
        let w = world();
        let good = w.ca.leaf(&["prometheus"]);
        let stranger = Ca::new("another CA").leaf(&["prometheus"]);
        let mut t = settings();
        t.client_auth = ClientAuth::RequireAndVerify;
        let ca = Some(w.ca.pem());
        assert!(
            handshake(
                w.server(&t, ca.clone(), false),
                w.client(Some(&good), |_| {})
            )
            .is_ok()
        );
        assert!(handshake(w.server(&t, ca.clone(), false), w.client(None, |_| {})).is_err());
        assert!(
            handshake(
                w.server(&t, ca.clone(), false),
                w.client(Some(&stranger), |_| {})
            )
            .is_err()
        );

        t.client_auth = ClientAuth::VerifyIfGiven;
        assert!(handshake(w.server(&t, ca.clone(), false), w.client(None, |_| {})).is_ok());
        assert!(
            handshake(
                w.server(&t, ca.clone(), false),
                w.client(Some(&stranger), |_| {})
            )
            .is_err()
        );

        t.client_auth = ClientAuth::RequireAny;
        assert!(handshake(w.server(&t, None, false), w.client(Some(&stranger), |_| {})).is_ok());
        assert!(handshake(w.server(&t, None, false), w.client(None, |_| {})).is_err());

        t.client_auth = ClientAuth::Request;
        assert!(handshake(w.server(&t, None, false), w.client(None, |_| {})).is_ok());
        assert!(handshake(w.server(&t, None, false), w.client(Some(&stranger), |_| {})).is_ok());

        // Allowed SANs: the verified certificate must name one.
        t.client_auth = ClientAuth::RequireAndVerify;
        t.allowed_sans = Some(vec!["prometheus".into(), "127.0.0.1".into()]);
        assert!(
            handshake(
                w.server(&t, ca.clone(), false),
                w.client(Some(&good), |_| {})
            )
            .is_ok()
        );
        let other = w.ca.leaf(&["grafana"]);
        assert!(
            handshake(
                w.server(&t, ca.clone(), false),
                w.client(Some(&other), |_| {})
            )
            .is_err()
        );
        let by_ip = w.ca.leaf(&["127.0.0.1"]);
        assert!(handshake(w.server(&t, ca, false), w.client(Some(&by_ip), |_| {})).is_ok());
    }

    #[test]
    fn names_of_a_certificate() {
        let w = world();
        let (cert, _) = w.ca.leaf(&["prometheus", "127.0.0.1", "::1"]);
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).expect("cert");
        assert_eq!(
            subject_alt_names(&der).expect("names"),
            ["prometheus", "127.0.0.1", "::1"]
        );
        assert!(subject_alt_names(b"\x30\x03\x02\x01").is_err());
    }

    #[test]
    fn bad_certificates_and_keys_name_their_key() {
        let w = world();
        let other_key = rcgen::KeyPair::generate().expect("key").serialize_pem();
        let t = settings();
        for (cert, key, client_ca, want) in [
            (
                w.server.0.clone(),
                other_key,
                None,
                "tls_server_config.key_file",
            ),
            (
                "not pem".to_owned(),
                w.server.1.clone(),
                None,
                "tls_server_config.cert_file",
            ),
            (
                w.server.0.clone(),
                "not pem".to_owned(),
                None,
                "tls_server_config.key_file",
            ),
        ] {
            let pems = Pems {
                cert: cert.into_bytes(),
                key: key.into_bytes(),
                client_ca: client_ca.map(String::into_bytes),
            };
            let e = server_config(&t, &pems, false).expect_err("refused");
            assert_eq!(e.key, want, "{e}");
        }
        let mut t = settings();
        t.client_auth = ClientAuth::RequireAndVerify;
        let pems = Pems {
            cert: w.server.0.clone().into_bytes(),
            key: w.server.1.clone().into_bytes(),
            client_ca: Some(b"garbage".to_vec()),
        };
        let e = server_config(&t, &pems, false).expect_err("refused");
        assert_eq!(e.key, "tls_server_config.client_ca_file", "{e}");
    }
}
