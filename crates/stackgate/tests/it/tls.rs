//! TLS end to end, with certificates the tests make with `openssl` (a CA of their own, server
//! certificates for `localhost`, for another host, and one that expired in 2020): the harness's
//! https client names each certificate problem; `ws-check` over `wss://`; the gate on the staging
//! target with the reference auth and backend (host processes) behind a TLS terminator (a few
//! lines of tokio-rustls below): it passes when `targets.staging.ca_file` names the CA and exits 3
//! naming the untrusted certificate when it does not.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use stackgate::tls::{Tls, TlsFailure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::support::{explain, repo_root};
use crate::ws::{Reference, JWT_SECRET};

// ---------------------------------------------------------------------------------------------
// Certificates, made with openssl.

/// A CA of the test's own, in its own directory, and the certificates it signs.
pub struct Pki {
    dir: tempfile::TempDir,
    openssl: PathBuf,
    serial: std::cell::Cell<u32>,
}

/// A certificate and its key, PEM files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// When an issued certificate is valid.
pub enum Validity {
    /// From now for this many days.
    Days(u32),
    /// Between two `YYYYMMDDHHMMSSZ` dates.
    Between(&'static str, &'static str),
}

impl Pki {
    /// The CA; `None` (after a skip through `require`) without openssl.
    #[track_caller]
    pub fn new() -> Option<Pki> {
        let openssl = crate::require::program("openssl", &["version"])?;
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            openssl,
            serial: std::cell::Cell::new(1),
        };
        std::fs::create_dir_all(pki.path("db")).unwrap();
        std::fs::write(pki.path("db/index.txt"), "").unwrap();
        std::fs::write(
            pki.path("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = db/index.txt\nnew_certs_dir = db\n\
             serial = db/serial\ndefault_md = sha256\npolicy = any\nunique_subject = no\n[any]\ncommonName = supplied\n",
        )
        .unwrap();
        // Each CA a name of its own: a client finds the issuer of a certificate by its name.
        let subject = format!(
            "/CN=xtask test CA {}",
            pki.dir.path().file_name().unwrap().to_string_lossy()
        );
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "3",
            "-subj",
            &subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        Some(pki)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate (what a client trusts).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new(&self.openssl)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {} failed in {}: {}",
            args.join(" "),
            self.dir.path().display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A certificate for `subject_alt_names` (`DNS:localhost,IP:127.0.0.1`), for a server
    /// (`serverAuth`) or a client (`clientAuth`), signed by the CA.
    pub fn issue(
        &self,
        name: &str,
        subject_alt_names: &str,
        usage: &str,
        when: Validity,
    ) -> Issued {
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        std::fs::write(self.path("db/serial"), format!("{serial:02X}\n")).unwrap();
        let (key, csr, cert, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let mut extensions = format!("extendedKeyUsage={usage}\n");
        if !subject_alt_names.is_empty() {
            extensions.push_str(&format!("subjectAltName={subject_alt_names}\n"));
        }
        std::fs::write(self.path(&ext), extensions).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ]);
        let mut args = vec![
            "ca", "-batch", "-config", "ca.cnf", "-cert", "ca.pem", "-keyfile", "ca.key", "-in",
            &csr, "-out", &cert, "-extfile", &ext, "-notext",
        ];
        let days;
        match when {
            Validity::Days(n) => {
                days = n.to_string();
                args.extend(["-days", &days]);
            }
            Validity::Between(start, end) => args.extend(["-startdate", start, "-enddate", end]),
        }
        self.openssl(&args);
        Issued {
            cert: self.path(&cert),
            key: self.path(&key),
        }
    }

    /// A server certificate for `localhost` and 127.0.0.1, valid now.
    pub fn localhost(&self) -> Issued {
        self.issue(
            "localhost",
            "DNS:localhost,IP:127.0.0.1",
            "serverAuth",
            Validity::Days(2),
        )
    }
}

// ---------------------------------------------------------------------------------------------
// A TLS terminator.

/// What a [`Terminator`] does with a connection once TLS is up.
#[derive(Clone, Copy)]
pub enum Behind {
    /// Relays it to this port on 127.0.0.1 (a plain http and ws server).
    Port(u16),
    /// Answers any request with `200 ok` and closes.
    Ok,
}

/// A TLS server on 127.0.0.1 with one certificate, on a runtime (thread) of its own, stopped when
/// dropped.
pub struct Terminator {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Terminator {
    pub fn start(identity: &Issued, behind: Behind) -> Terminator {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&identity.cert)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&identity.key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let serve = async {
                    while let Ok((tcp, _)) = listener.accept().await {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            // A client that refuses our certificate ends here: that is the point.
                            let Ok(mut tls) = acceptor.accept(tcp).await else {
                                return;
                            };
                            match behind {
                                Behind::Port(upstream) => {
                                    if let Ok(mut plain) =
                                        tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                                    {
                                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain)
                                            .await;
                                    }
                                }
                                Behind::Ok => {
                                    let mut request = Vec::new();
                                    let mut buffer = [0u8; 1024];
                                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                                        match tls.read(&mut buffer).await {
                                            Ok(0) | Err(_) => return,
                                            Ok(n) => request.extend_from_slice(&buffer[..n]),
                                        }
                                    }
                                    let _ = tls
                                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                                        .await;
                                    let _ = tls.shutdown().await;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = stopped => {}
                    () = serve => {}
                }
            });
        });
        Terminator {
            port,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The harness's https client against each kind of certificate.

async fn get(url: &str, tls: &Tls) -> anyhow::Result<stackgate::http::Response> {
    stackgate::http::get(url, Duration::from_secs(10), tls).await
}

fn problem_of(error: &anyhow::Error) -> &TlsFailure {
    stackgate::tls::failure_in(error).unwrap_or_else(|| panic!("no TLS failure in: {error:#}"))
}

#[tokio::test]
async fn https_trusts_the_ca_file_and_names_an_untrusted_a_wrong_host_and_an_expired_certificate() {
    let Some(pki) = Pki::new() else {
        return;
    };
    let trusted = Tls::with_ca_files(vec![pki.ca()]);
    let good = Terminator::start(&pki.localhost(), Behind::Ok);
    let url = format!("https://localhost:{}/health", good.port);
    let response = get(&url, &trusted).await.expect("a trusted certificate");
    assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    // By IP address too: the certificate names 127.0.0.1.
    let by_ip = format!("https://127.0.0.1:{}/health", good.port);
    assert_eq!(get(&by_ip, &trusted).await.unwrap().status, 200);

    // Without the CA: the platform's roots do not know it.
    let error = get(&url, &Tls::with_ca_files(Vec::new()))
        .await
        .unwrap_err();
    let failure = problem_of(&error);
    assert!(failure.is_certificate(), "{failure:?}");
    let text = format!("{error:#}");
    assert!(
        text.contains(&format!(
            "untrusted certificate: localhost:{} presents a certificate whose issuer is not trusted here (trusted: ",
            good.port
        )),
        "{text}"
    );

    let other = pki.issue(
        "other",
        "DNS:other.example",
        "serverAuth",
        Validity::Days(2),
    );
    let wrong_host = Terminator::start(&other, Behind::Ok);
    let error = get(&format!("https://localhost:{}/", wrong_host.port), &trusted)
        .await
        .unwrap_err();
    assert_eq!(
        problem_of(&error).to_string(),
        format!(
            "wrong hostname: the certificate localhost:{} presents is for `other.example`, not `localhost`",
            wrong_host.port
        )
    );

    let old = pki.issue(
        "expired",
        "DNS:localhost",
        "serverAuth",
        Validity::Between("20200101000000Z", "20200102000000Z"),
    );
    let expired = Terminator::start(&old, Behind::Ok);
    let error = get(&format!("https://localhost:{}/", expired.port), &trusted)
        .await
        .unwrap_err();
    let text = problem_of(&error).to_string();
    assert!(
        text.starts_with(&format!(
            "expired certificate: the certificate localhost:{} presents expired at 2020-01-02T00:00:00Z (now 20",
            expired.port
        )),
        "{text}"
    );

    // A plain http server behind an https URL: a handshake failure, not a certificate problem.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let answer = std::thread::spawn(move || {
        use std::io::{Read, Write};
        if let Ok((mut stream, _)) = plain.accept() {
            let mut buffer = [0u8; 512];
            let _ = stream.read(&mut buffer);
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        }
    });
    let error = get(&format!("https://localhost:{plain_port}/"), &trusted)
        .await
        .unwrap_err();
    assert!(!problem_of(&error).is_certificate(), "{error:#}");
    answer.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// ws-check and the gate against the reference behind TLS.

/// The reference auth and backend behind TLS terminators with a certificate for `localhost`.
struct Secured {
    _reference: Reference,
    backend: Terminator,
    auth: Terminator,
    pki: Pki,
}

impl Secured {
    #[track_caller]
    fn start() -> Option<Secured> {
        let pki = Pki::new()?;
        let python = crate::ws::python()?;
        let reference = Reference::start(python);
        let identity = pki.localhost();
        Some(Secured {
            backend: Terminator::start(&identity, Behind::Port(reference.backend_port)),
            auth: Terminator::start(&identity, Behind::Port(reference.auth_port)),
            _reference: reference,
            pki,
        })
    }

    fn staging_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "STAGING_BACKEND_URL",
                format!("https://localhost:{}", self.backend.port),
            ),
            (
                "STAGING_BACKEND_WS_URL",
                format!("wss://localhost:{}/ws", self.backend.port),
            ),
            (
                "STAGING_AUTH_URL",
                format!("https://localhost:{}", self.auth.port),
            ),
            // The suites mint wrong-issuer tokens with the servers' secret.
            ("JWT_SECRET", JWT_SECRET.to_owned()),
        ]
    }
}

fn xtask(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = crate::support::stackgate();
    command
        .args(args)
        .current_dir(repo_root())
        .env_remove("XTASK_WS_TOKEN")
        .env_remove("GITHUB_STEP_SUMMARY")
        // The caller's own trust settings would change what these tests prove.
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("xtask runs")
}

// The reference servers run on the test's runtime (tokio::process); the xtask calls block it,
// which they may: the servers' output goes straight to stderr, not through this runtime.
#[tokio::test]
async fn ws_check_over_wss_passes_with_the_ca_in_ssl_cert_file_and_names_an_untrusted_certificate()
{
    let Some(secured) = Secured::start() else {
        return;
    };
    let config = repo_root().join("harness.toml");
    let url = format!("wss://localhost:{}/ws", secured.backend.port);
    let token_url = format!("https://localhost:{}/token", secured.auth.port);
    let args = [
        "--config",
        config.to_str().unwrap(),
        "ws-check",
        "--url",
        &url,
        "--token-url",
        &token_url,
        "--json",
    ];
    let ca = secured.pki.ca().display().to_string();
    let passed = xtask(&args, &[("SSL_CERT_FILE", ca)]);
    assert_eq!(passed.status.code(), Some(0), "{}", explain(&passed));
    let json: serde_json::Value = serde_json::from_slice(&passed.stdout).unwrap();
    assert_eq!(json["passed"], true, "{json}");

    // Without the CA, the token request over https fails first, naming the certificate.
    let failed = xtask(&args, &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", explain(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("untrusted certificate"),
        "{}",
        explain(&failed)
    );

    // With a token given, the wss connection itself is refused for the certificate.
    let mut with_token: Vec<&str> = args.to_vec();
    with_token.truncate(5);
    with_token.extend(["--token", "not-checked", "--json"]);
    let failed = xtask(&with_token, &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", explain(&failed));
    let json: serde_json::Value = serde_json::from_slice(&failed.stdout).unwrap();
    let text = json.to_string();
    assert!(
        text.contains("\"certificate\""),
        "the failure's kind: {text}"
    );
    assert!(text.contains("untrusted certificate"), "{text}");
    assert!(
        !text.contains("not-checked"),
        "the token is never printed: {text}"
    );
}

/// A `harness.toml` for the staging target only, in `dir`, on the reference suites (absolute
/// paths, the reference venv); `ca_file` when given.
fn staging_config(dir: &Path, ca_file: Option<&Path>) -> PathBuf {
    let root = repo_root();
    let root = root.display();
    let ca_line = ca_file
        .map(|ca| format!("ca_file = {:?}\n", ca.display().to_string()))
        .unwrap_or_default();
    let text = format!(
        r#"[project]
name = "tlsstaging"

[endpoints]
backend = "${{STAGING_BACKEND_URL}}"
backend_ws = "${{STAGING_BACKEND_WS_URL}}"
auth = "${{STAGING_AUTH_URL}}"

[ws_check]
url = "{{backend_ws}}"
token_url = "{{auth}}/token"
send = '{{"type": "user_message", "content": "What is 2 + 3?"}}'
expect = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]

[python]
requirements = ["{root}/tests/requirements.txt"]
venv = "{root}/target/xtask/venv"

[[suite]]
name = "mission_critical"
runner = "pytest"
args = ["{root}/tests/mission_critical"]

[[suite]]
name = "e2e"
runner = "pytest"
args = ["{root}/tests/e2e"]

[targets.staging]
endpoints = {{ backend = "${{STAGING_BACKEND_URL}}", backend_ws = "${{STAGING_BACKEND_WS_URL}}", auth = "${{STAGING_AUTH_URL}}" }}
{ca_line}
[fallback]
order = ["staging"]
"#
    );
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("harness.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn the_gate_on_staging_over_tls_passes_with_the_ca_file_and_exits_3_naming_the_certificate_without(
) {
    let Some(secured) = Secured::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("junit.xml");
    let env = secured.staging_env();
    let gate = |config: &Path| {
        xtask(
            &[
                "--config",
                config.to_str().unwrap(),
                "mission-critical",
                "--target",
                "staging",
                "--junit",
                report.to_str().unwrap(),
            ],
            &env,
        )
    };

    let trusted = staging_config(dir.path(), Some(&secured.pki.ca()));
    let passed = gate(&trusted);
    assert_eq!(passed.status.code(), Some(0), "{}", explain(&passed));
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(xml.contains("name=\"target\" value=\"staging\""), "{xml}");
    // The suites ran over https and wss (their clients trust the bundle the harness gave them).
    assert!(xml.contains("testsuite name=\"mission_critical\""), "{xml}");
    assert!(xml.contains("testsuite name=\"e2e\""), "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");
    assert!(!xml.contains("<error"), "{xml}");
    assert!(
        xml.matches("<testcase").count() > 10,
        "the suites' own cases are in the report: {xml}"
    );
    crate::support::xmllint_valid(&report);

    let untrusted = staging_config(&dir.path().join("untrusted"), None);
    let failed = gate(&untrusted);
    assert_eq!(failed.status.code(), Some(3), "{}", explain(&failed));
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("has a certificate problem") && stderr.contains("untrusted certificate"),
        "{}",
        explain(&failed)
    );
    assert!(
        stderr.contains("ca_file"),
        "the hint names the key: {stderr}"
    );
    let xml = std::fs::read_to_string(&report).unwrap();
    assert!(
        xml.contains("untrusted certificate"),
        "the JUnit case names it: {xml}"
    );
    crate::support::xmllint_valid(&report);
}
