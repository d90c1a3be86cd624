//! TLS for the harness's own clients: which certificates are trusted ([`Tls`]), the rustls client
//! configurations (https and wss; a tcp engine with its client certificate), the handshake over a
//! TCP stream, the CA bundle the suites receive, and certificate problems named in words
//! ([`TlsFailure`]). Verification is never skipped.
//!
//! Trust for https and wss: the platform's roots as OpenSSL reads them (the system store, or
//! `SSL_CERT_FILE` / `SSL_CERT_DIR` in its place when set, as curl, Python and the suites' own
//! clients read them, so that the harness and the suites agree on what is trusted), plus
//! `targets.staging.ca_file`. The crypto is rustls on ring (it builds in a fraction of
//! aws-lc-rs's time; README "Build cost").
//!
//! Not here: the HTTP client ([crate::http]), the WebSocket client ([crate::ws]), where a TLS
//! engine's certificates are ([crate::engine]).

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// Why a TLS connection could not be made; the message names the problem.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsFailure {
    /// The server's certificate failed verification: not trusted, another host's, expired, ...
    #[error("{problem}")]
    Certificate { server: String, problem: String },
    /// The handshake failed otherwise: a plain (non-TLS) server, no common protocol, this
    /// client's certificate refused by the server.
    #[error("TLS handshake with {server} failed: {detail}")]
    Handshake { server: String, detail: String },
    /// The harness's own side cannot be set up: a CA file, a client certificate or key that cannot
    /// be read, a host that is not a valid server name.
    #[error("{0}")]
    Setup(String),
}

impl TlsFailure {
    /// Whether the server's certificate is the problem (not the connection or our own setup).
    pub fn is_certificate(&self) -> bool {
        matches!(self, TlsFailure::Certificate { .. })
    }
}

/// The first [`TlsFailure`] in an error's chain, if any (what callers test to say "certificate
/// problem" rather than "does not answer").
pub fn failure_in(error: &anyhow::Error) -> Option<&TlsFailure> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<TlsFailure>())
}

// ---------------------------------------------------------------------------------------------
// Trust.

/// What the harness's https and wss clients trust. Cheap to clone; the roots are read at the
/// first TLS connection (plain http never reads them).
#[derive(Clone)]
pub struct Tls {
    inner: Arc<TlsInner>,
}

struct TlsInner {
    ca_files: Vec<PathBuf>,
    config: OnceLock<Result<Arc<ClientConfig>, String>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("ca_files", &self.inner.ca_files)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// The platform's roots plus the certificates in `ca_files`.
    pub fn with_ca_files(ca_files: Vec<PathBuf>) -> Tls {
        Tls {
            inner: Arc::new(TlsInner {
                ca_files,
                config: OnceLock::new(),
            }),
        }
    }

    pub fn ca_files(&self) -> &[PathBuf] {
        &self.inner.ca_files
    }

    /// The rustls configuration of every https and wss connection, made once.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsFailure> {
        self.inner
            .config
            .get_or_init(|| {
                let roots = self.roots()?;
                let config = builder()?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Ok(Arc::new(config))
            })
            .clone()
            .map_err(TlsFailure::Setup)
    }

    fn roots(&self) -> Result<RootCertStore, String> {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(platform().certs.iter().cloned());
        for file in &self.inner.ca_files {
            roots.add_parsable_certificates(read_certificates(file)?);
        }
        Ok(roots)
    }

    /// The roots trusted, in words, for the message of an untrusted certificate.
    pub fn trusted(&self) -> String {
        let platform = platform();
        let mut parts = vec![match (&platform.source, platform.certs.len()) {
            (source, 0) if !platform.errors.is_empty() => format!(
                "{source}: none could be read ({})",
                platform.errors.join("; ")
            ),
            (source, count) => format!("{source} ({count} certificates)"),
        }];
        parts.extend(
            self.inner
                .ca_files
                .iter()
                .map(|file| format!("ca_file {}", file.display())),
        );
        parts.join(", ")
    }

    /// A TLS session over `tcp` with `host`, its certificate verified for `host`.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
    ) -> Result<TlsStream<TcpStream>, TlsFailure> {
        let config = self.client_config()?;
        let name = server_name(host)?;
        TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .map_err(|e| {
                describe_in(&e, host, &|| self.trusted()).unwrap_or_else(|| TlsFailure::Handshake {
                    server: host.to_owned(),
                    detail: e.to_string(),
                })
            })
    }

    /// Writes every trusted root (the platform's and the CA files') as one PEM bundle: what the
    /// suites get as `SSL_CERT_FILE` and `REQUESTS_CA_BUNDLE`, so that they trust what the
    /// harness trusts (pointing them at the CA file alone would drop the platform's roots for
    /// clients such as requests).
    pub fn write_bundle(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let mut text = String::new();
        for cert in &platform().certs {
            text.push_str(&pem("CERTIFICATE", cert.as_ref()));
        }
        for file in &self.inner.ca_files {
            for cert in read_certificates(file).map_err(anyhow::Error::msg)? {
                text.push_str(&pem("CERTIFICATE", cert.as_ref()));
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The platform's roots, read once per process.
struct Platform {
    /// Where they came from, in words.
    source: String,
    certs: Vec<CertificateDer<'static>>,
    errors: Vec<String>,
}

fn platform() -> &'static Platform {
    static PLATFORM: OnceLock<Platform> = OnceLock::new();
    PLATFORM.get_or_init(|| {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let source = match (var("SSL_CERT_FILE"), var("SSL_CERT_DIR")) {
            (Some(file), Some(dir)) => format!("SSL_CERT_FILE={file} and SSL_CERT_DIR={dir}"),
            (Some(file), None) => format!("SSL_CERT_FILE={file}"),
            (None, Some(dir)) => format!("SSL_CERT_DIR={dir}"),
            (None, None) => "the platform's roots".to_owned(),
        };
        let loaded = rustls_native_certs::load_native_certs();
        Platform {
            source,
            certs: loaded.certs,
            errors: loaded.errors.iter().map(ToString::to_string).collect(),
        }
    })
}

/// Every certificate of a PEM file; an error names the file and says what is wrong with it.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file ({e})", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{} holds no certificate (expected PEM `-----BEGIN CERTIFICATE-----` blocks)",
            path.display()
        ));
    }
    Ok(certs)
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, String> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))
}

/// `host` (an IP address or a DNS name, IPv6 brackets allowed) as rustls verifies it.
fn server_name(host: &str) -> Result<ServerName<'static>, TlsFailure> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|_| TlsFailure::Setup(format!("`{host}` is not a valid TLS server name")))
}

// ---------------------------------------------------------------------------------------------
// A TLS engine (tcp://HOST:2376 with DOCKER_TLS_VERIFY).

/// The files of `DOCKER_CERT_PATH`, as the docker CLI names them.
pub const ENGINE_CA: &str = "ca.pem";
pub const ENGINE_CERT: &str = "cert.pem";
pub const ENGINE_KEY: &str = "key.pem";

/// The configuration for a tcp engine with `DOCKER_TLS_VERIFY`, from the files in `cert_dir`
/// as the docker CLI reads them: the engine's certificate verified against `ca.pem` alone (the
/// platform's roots when there is none), and `cert.pem` / `key.pem` presented as this client's
/// when both are there.
pub fn engine_client_config(cert_dir: &Path) -> Result<Arc<ClientConfig>, TlsFailure> {
    let ca = cert_dir.join(ENGINE_CA);
    let roots = if ca.exists() {
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(read_certificates(&ca).map_err(setup)?);
        if added == 0 {
            return Err(setup(format!(
                "{}: no usable CA certificate in it",
                ca.display()
            )));
        }
        roots
    } else {
        Tls::with_ca_files(Vec::new()).roots().map_err(setup)?
    };
    let builder = builder().map_err(setup)?.with_root_certificates(roots);
    let (cert, key_path) = (cert_dir.join(ENGINE_CERT), cert_dir.join(ENGINE_KEY));
    let config = match (cert.exists(), key_path.exists()) {
        (false, false) => builder.with_no_client_auth(),
        (true, true) => {
            let chain = read_certificates(&cert).map_err(setup)?;
            let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| {
                setup(format!(
                    "{}: not a PEM private key ({e})",
                    key_path.display()
                ))
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                setup(format!(
                    "{} and {} are not a usable client certificate and key: {e}",
                    cert.display(),
                    key_path.display()
                ))
            })?
        }
        (true, false) | (false, true) => {
            let (there, missing) = if cert.exists() {
                (&cert, &key_path)
            } else {
                (&key_path, &cert)
            };
            return Err(setup(format!(
                "{} is there but {} is missing: a client certificate needs both",
                there.display(),
                missing.display()
            )));
        }
    };
    Ok(Arc::new(config))
}

fn setup(message: String) -> TlsFailure {
    TlsFailure::Setup(message)
}

// ---------------------------------------------------------------------------------------------
// Problems, in words.

/// The TLS failure inside an error (hyper's and tokio-rustls's errors carry rustls's error in an
/// `io::Error`, which `source()` skips: each `io::Error` is opened too), described for `server`.
/// `trusted` says which roots were trusted, for an unknown issuer.
pub fn describe_in(
    error: &(dyn StdError + 'static),
    server: &str,
    trusted: &dyn Fn() -> String,
) -> Option<TlsFailure> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(rustls_error) = current.downcast_ref::<rustls::Error>() {
            return Some(describe(rustls_error, server, trusted));
        }
        if let Some(failure) = current.downcast_ref::<TlsFailure>() {
            return Some(failure.clone());
        }
        // hyper-rustls wraps tokio-rustls's io::Error in another: open each one.
        next = match current.downcast_ref::<std::io::Error>() {
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn StdError + 'static)),
                None => None,
            },
            None => current.source(),
        };
    }
    None
}

/// One rustls error in words: what is wrong with the certificate and what was expected.
/// `trusted` says which roots were trusted (for an unknown issuer).
pub fn describe(error: &rustls::Error, server: &str, trusted: &dyn Fn() -> String) -> TlsFailure {
    let certificate = |problem: String| TlsFailure::Certificate {
        server: server.to_owned(),
        problem,
    };
    let handshake = |detail: String| TlsFailure::Handshake {
        server: server.to_owned(),
        detail,
    };
    match error {
        rustls::Error::InvalidCertificate(cert) => certificate(match cert {
            CertificateError::UnknownIssuer => format!(
                "untrusted certificate: {server} presents a certificate whose issuer is not trusted here (trusted: {})",
                trusted()
            ),
            CertificateError::BadSignature => format!(
                "untrusted certificate: {server} presents a certificate that names a trusted CA as its issuer, but that CA did not sign it (another CA of the same name?; trusted: {})",
                trusted()
            ),
            CertificateError::NotValidForName => format!(
                "wrong hostname: the certificate {server} presents is not valid for that name"
            ),
            CertificateError::NotValidForNameContext {
                expected,
                presented,
            } => format!(
                "wrong hostname: the certificate {server} presents is for {}, not `{}`",
                names(presented),
                expected.to_str()
            ),
            CertificateError::Expired => {
                format!("expired certificate: the certificate {server} presents has expired")
            }
            CertificateError::ExpiredContext { time, not_after } => format!(
                "expired certificate: the certificate {server} presents expired at {} (now {})",
                stamp(not_after.as_secs()),
                stamp(time.as_secs())
            ),
            CertificateError::NotValidYet => {
                format!("certificate not yet valid: the certificate {server} presents is not valid yet")
            }
            CertificateError::NotValidYetContext { time, not_before } => format!(
                "certificate not yet valid: the certificate {server} presents is valid from {} (now {})",
                stamp(not_before.as_secs()),
                stamp(time.as_secs())
            ),
            CertificateError::Revoked => {
                format!("revoked certificate: the certificate {server} presents is revoked")
            }
            other => format!(
                "invalid certificate: the certificate {server} presents was rejected: {}",
                rustls::Error::InvalidCertificate(other.clone())
            ),
        }),
        rustls::Error::AlertReceived(alert) => {
            use rustls::AlertDescription as A;
            handshake(match alert {
                A::BadCertificate
                | A::CertificateRequired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::UnsupportedCertificate
                | A::CertificateExpired
                | A::CertificateRevoked => format!(
                    "the server refused this client's certificate (alert: {alert:?})"
                ),
                other => format!("the server ended the handshake (alert: {other:?})"),
            })
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            handshake(format!("{error} (is it a plain, non-TLS server?)"))
        }
        other => handshake(other.to_string()),
    }
}

/// `DnsName("a.example")` (webpki's rendering of a subject alternative name) as `a.example`.
fn names(presented: &[String]) -> String {
    if presented.is_empty() {
        return "no name at all".to_owned();
    }
    presented
        .iter()
        .map(|name| {
            let bare = name
                .strip_prefix("DnsName(\"")
                .and_then(|rest| rest.strip_suffix("\")"))
                .unwrap_or(name);
            format!("`{bare}`")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn stamp(unix_secs: u64) -> String {
    crate::clock::utc_stamp(unix_secs.saturating_mul(1000))
}

/// One DER object as PEM: base64 in lines of 64.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let triple = u32::from(bytes[0]) << 16 | u32::from(bytes[1]) << 8 | u32::from(bytes[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                encoded.push(ALPHABET[(triple >> (18 - 6 * index) & 0x3f) as usize] as char);
            } else {
                encoded.push('=');
            }
        }
    }
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in encoded.as_bytes().chunks(64) {
        text.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_rustls::rustls::pki_types::{DnsName, UnixTime};
    use tokio_rustls::rustls::AlertDescription;

    fn words(error: rustls::Error) -> String {
        describe(&error, "staging.example:443", &|| "ca.pem".to_owned()).to_string()
    }

    #[test]
    fn certificate_problems_are_named() {
        assert_eq!(
            words(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)),
            "untrusted certificate: staging.example:443 presents a certificate whose issuer is not trusted here (trusted: ca.pem)"
        );
        assert!(
            words(rustls::Error::InvalidCertificate(CertificateError::BadSignature))
                .starts_with("untrusted certificate: staging.example:443 presents a certificate that names a trusted CA as its issuer, but that CA did not sign it"),
        );
        let wrong_host = CertificateError::NotValidForNameContext {
            expected: ServerName::DnsName(DnsName::try_from("staging.example").unwrap()),
            presented: vec![
                "DnsName(\"other.example\")".to_owned(),
                "DnsName(\"*.other.example\")".to_owned(),
            ],
        };
        assert_eq!(
            words(rustls::Error::InvalidCertificate(wrong_host)),
            "wrong hostname: the certificate staging.example:443 presents is for `other.example`, `*.other.example`, not `staging.example`"
        );
        let expired = CertificateError::ExpiredContext {
            time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
        };
        assert_eq!(
            words(rustls::Error::InvalidCertificate(expired)),
            "expired certificate: the certificate staging.example:443 presents expired at 2023-11-14T22:13:20Z (now 2027-01-15T08:00:00Z)"
        );
        let failure = describe(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            "s:1",
            &String::new,
        );
        assert!(failure.is_certificate());
    }

    #[test]
    fn a_refused_client_certificate_and_a_plain_server_are_handshake_failures() {
        let refused = describe(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            "10.0.0.2:2376",
            &String::new,
        );
        assert!(!refused.is_certificate());
        assert_eq!(
            refused.to_string(),
            "TLS handshake with 10.0.0.2:2376 failed: the server refused this client's certificate (alert: CertificateRequired)"
        );
        let plain = describe(
            &rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
            "localhost:8000",
            &String::new,
        )
        .to_string();
        assert!(
            plain.ends_with("(is it a plain, non-TLS server?)"),
            "{plain}"
        );
    }

    #[test]
    fn the_failure_is_found_inside_io_errors() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let wrapped = anyhow::Error::new(io).context("GET https://x/ failed");
        let found = describe_in(wrapped.as_ref(), "x:443", &|| "roots".to_owned())
            .expect("the rustls error inside the io::Error");
        assert!(
            found.to_string().starts_with("untrusted certificate"),
            "{found}"
        );
        assert!(describe_in(anyhow::anyhow!("refused").as_ref(), "x:443", &String::new).is_none());
    }

    #[test]
    fn pem_round_trips_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let ders: Vec<Vec<u8>> = vec![vec![0x30, 0x82, 0x01], (0..=255).collect(), vec![7; 100]];
        let text: String = ders.iter().map(|der| pem("CERTIFICATE", der)).collect();
        assert!(text.lines().all(|line| line.len() <= 64), "{text}");
        let path = dir.path().join("bundle.pem");
        std::fs::write(&path, &text).unwrap();
        let read: Vec<Vec<u8>> = read_certificates(&path)
            .unwrap()
            .iter()
            .map(|c| c.as_ref().to_vec())
            .collect();
        assert_eq!(read, ders);

        std::fs::write(&path, "just text\n").unwrap();
        let error = read_certificates(&path).unwrap_err();
        assert!(error.contains("holds no certificate"), "{error}");
        let error = read_certificates(&dir.path().join("none.pem")).unwrap_err();
        assert!(error.starts_with("cannot read "), "{error}");
    }

    #[test]
    fn the_bundle_holds_the_platform_roots_and_the_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, pem("CERTIFICATE", &[1, 2, 3])).unwrap();
        let tls = Tls::with_ca_files(vec![ca.clone()]);
        let bundle = dir.path().join("run/ca-bundle.pem");
        tls.write_bundle(&bundle).unwrap();
        let certs = read_certificates(&bundle).unwrap();
        assert_eq!(certs.len(), platform().certs.len() + 1);
        assert_eq!(certs.last().unwrap().as_ref(), &[1, 2, 3]);
        assert!(tls
            .trusted()
            .ends_with(&format!("ca_file {}", ca.display())));
    }
}
