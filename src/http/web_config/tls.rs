//! A rustls server configuration from `tls_server_config`: the ring
//! provider narrowed to the configured suites and curves, the versions,
//! the certificate and key, and the client-certificate policy with the
//! allowed subject alternative names. The PEM texts come in through
//! [`Pems`], read by the caller.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, RootCertStore, ServerConfig,
    SignatureScheme,
};

use super::file::{Cipher, ClientAuth, ConfigError, Curve, TlsSettings, TlsVersion};

/// The PEM texts a [`TlsSettings`] names, read (files) or copied (inline).
pub struct Pems {
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    pub client_ca: Option<Vec<u8>>,
}

impl fmt::Debug for Pems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pems(..)")
    }
}

fn err(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

/// The ring provider with only the configured suites (TLS 1.3's always)
/// and curves, in the configured order.
fn provider(t: &TlsSettings) -> CryptoProvider {
    use ring::cipher_suite as cs;
    let mut p = ring::default_provider();
    if !t.cipher_suites.is_empty() {
        let mut suites = vec![
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
        ];
        for c in &t.cipher_suites {
            let s = match c {
                Cipher::EcdheEcdsaAes128Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
                Cipher::EcdheEcdsaAes256Gcm => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
                Cipher::EcdheRsaAes128Gcm => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
                Cipher::EcdheRsaAes256Gcm => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
                Cipher::EcdheEcdsaChacha20 => cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                Cipher::EcdheRsaChacha20 => cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
                // Go enables all three TLS 1.3 suites whatever the list.
                Cipher::Tls13Aes128Gcm | Cipher::Tls13Aes256Gcm | Cipher::Tls13Chacha20 => {
                    continue;
                }
            };
            suites.push(s);
        }
        p.cipher_suites = suites;
    }
    if !t.curves.is_empty() {
        p.kx_groups = t
            .curves
            .iter()
            .map(|c| match c {
                Curve::P256 => ring::kx_group::SECP256R1,
                Curve::P384 => ring::kx_group::SECP384R1,
                Curve::X25519 => ring::kx_group::X25519,
            })
            .collect();
    }
    p
}

fn certificates(pem: &[u8], key: &str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(key, format!("not PEM certificates: {e}")))?;
    if certs.is_empty() {
        return Err(err(key, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The server configuration `t` asks for, with ALPN offering HTTP/2 when
/// `http2`.
pub fn server_config(
    t: &TlsSettings,
    pems: &Pems,
    http2: bool,
) -> Result<ServerConfig, ConfigError> {
    let provider = Arc::new(provider(t));
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
        (TlsVersion::Tls12, &rustls::version::TLS12),
        (TlsVersion::Tls13, &rustls::version::TLS13),
    ]
    .into_iter()
    .filter(|(v, _)| (t.min_version..=t.max_version).contains(v))
    .map(|(_, p)| p)
    .collect();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| err("tls_server_config", format!("{e}")))?;
    let verifier = client_verifier(t, pems, &provider)?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v),
        None => builder.with_no_client_auth(),
    };
    let certs = certificates(&pems.cert, "tls_server_config.cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!("no PEM private key: {e}"),
        )
    })?;
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        err(
            "tls_server_config.key_file",
            format!("the key and the certificate do not go together: {e}"),
        )
    })?;
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(config)
}

fn client_verifier(
    t: &TlsSettings,
    pems: &Pems,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn ClientCertVerifier>>, ConfigError> {
    let inner: Arc<dyn ClientCertVerifier> = match t.client_auth {
        ClientAuth::None => return Ok(None),
        ClientAuth::Request | ClientAuth::RequireAny => Arc::new(AnyCertificate {
            mandatory: t.client_auth.requires(),
            algorithms: provider.signature_verification_algorithms,
        }),
        ClientAuth::VerifyIfGiven | ClientAuth::RequireAndVerify => {
            const KEY: &str = "tls_server_config.client_ca_file";
            let pem = pems
                .client_ca
                .as_deref()
                .ok_or_else(|| err(KEY, "no client CA"))?;
            let mut roots = RootCertStore::empty();
            for c in certificates(pem, KEY)? {
                roots
                    .add(c)
                    .map_err(|e| err(KEY, format!("not a CA certificate: {e}")))?;
            }
            let b =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
            let b = if t.client_auth.requires() {
                b
            } else {
                b.allow_unauthenticated()
            };
            b.build().map_err(|e| err(KEY, format!("{e}")))?
        }
    };
    Ok(Some(match &t.allowed_sans {
        Some(sans) => Arc::new(AllowedSans {
            inner,
            sans: sans.clone(),
        }),
        None => inner,
    }))
}

/// `RequestClientCert` and `RequireAnyClientCert`: any certificate, never
/// checked against a CA; the client still proves it holds its key.
#[derive(Debug)]
struct AnyCertificate {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `client_allowed_sans`: after the policy's own check, the leaf
/// certificate must name one of these (DNS, e-mail, IP or URI), compared
/// exactly, as exporter-toolkit compares them.
#[derive(Debug)]
struct AllowedSans {
    inner: Arc<dyn ClientCertVerifier>,
    sans: Vec<String>,
}

/// The subject alternative names of a DER certificate, as text.
pub fn subject_alt_names(der: &[u8]) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let Some(ext) = cert.subject_alternative_name().map_err(|e| e.to_string())? else {
        return Ok(Vec::new());
    };
    Ok(ext
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_owned())
            }
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| Ipv4Addr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| Ipv6Addr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

impl ClientCertVerifier for AllowedSans {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let names = subject_alt_names(end_entity).map_err(|e| {
            Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(
                SanError(format!("client certificate unreadable: {e}")),
            ))))
        })?;
        if names.iter().any(|n| self.sans.contains(n)) {
            Ok(verified)
        } else {
            tracing::debug!(?names, allowed = ?self.sans, "client certificate names no allowed SAN");
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct SanError(String);

impl fmt::Display for SanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SanError {}
