//! Engines on tcp with TLS, as the docker CLI reads them: `DOCKER_HOST=tcp://HOST:2376` with
//! `DOCKER_TLS_VERIFY` set and the certificates in `DOCKER_CERT_PATH` (ca.pem, cert.pem, key.pem;
//! default: the docker config directory), or a docker context's TLS files. Here: where the
//! certificates are, the bollard client that verifies the engine and presents ours, the variables
//! that hand the same engine to compose and the suites, and engine errors in words.
//!
//! `DOCKER_TLS` without `DOCKER_TLS_VERIFY` (TLS without verifying the engine) is refused:
//! verification is never skipped.
//!
//! Not here: the rustls configuration ([crate::tls]), parsing `DOCKER_HOST` and the candidates
//! ([super::discover]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bollard::{BollardRequest, Docker};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::error::Failure;
use crate::tls::{ENGINE_CA, ENGINE_CERT, ENGINE_KEY};

/// Seconds bollard gives one request (its own default).
const REQUEST_TIMEOUT_S: u64 = 120;

/// The certificate directory for `DOCKER_TLS_VERIFY`: `DOCKER_CERT_PATH`, else the docker config
/// directory (`DOCKER_CONFIG`, else `~/.docker`), as the docker CLI defaults it.
pub fn cert_dir(cert_path: Option<&Path>, config_dir: Option<&Path>) -> Option<PathBuf> {
    cert_path.or(config_dir).map(Path::to_path_buf)
}

/// A certificate directory the harness can use: the directory exists and has the files the docker
/// CLI would read (ca.pem; cert.pem and key.pem together, or neither). `from` names where the
/// directory came from, for the message.
pub fn check_cert_dir(dir: &Path, from: &str) -> Result<(), Failure> {
    let hint = "DOCKER_CERT_PATH names a directory with ca.pem, cert.pem and key.pem (the engine's CA, this client's certificate and key)";
    if !dir.is_dir() {
        return Err(
            Failure::config(format!("{from}: {} is not a directory", dir.display()))
                .with_hint(hint),
        );
    }
    let there = |name: &str| dir.join(name).is_file();
    if !there(ENGINE_CA) {
        return Err(Failure::config(format!(
            "{from}: {} has no {ENGINE_CA}: the engine's certificate could not be verified",
            dir.display()
        ))
        .with_hint(hint));
    }
    if there(ENGINE_CERT) != there(ENGINE_KEY) {
        return Err(Failure::config(format!(
            "{from}: {} has only one of {ENGINE_CERT} and {ENGINE_KEY}: a client certificate needs both",
            dir.display()
        ))
        .with_hint(hint));
    }
    Ok(())
}

/// A bollard client for `https://AUTHORITY` that verifies the engine's certificate and presents
/// this client's, from the files in `certs` (nothing is sent yet).
pub fn client(authority: &str, certs: &Path) -> Result<Docker, bollard::errors::Error> {
    let config = crate::tls::engine_client_config(certs).map_err(|failure| {
        bollard::errors::Error::IOError {
            err: std::io::Error::other(failure),
        }
    })?;
    let mut http = HttpConnector::new();
    // The scheme is https: the connector hands the TCP stream to rustls.
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((*config).clone())
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    let mut builder = Client::builder(TokioExecutor::new());
    // As bollard's own transports: no idle connections kept between requests.
    builder.pool_max_idle_per_host(0);
    let client = Arc::new(builder.build(connector));
    Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let client = Arc::clone(&client);
            async move {
                client
                    .request(request)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some(format!("https://{authority}")),
        REQUEST_TIMEOUT_S,
        bollard::API_DEFAULT_VERSION,
    )
}

/// What the docker CLI, compose and the suites need to reach this engine: `DOCKER_HOST`,
/// `DOCKER_TLS_VERIFY=1`, `DOCKER_CERT_PATH`.
pub fn env(authority: &str, certs: &Path) -> Vec<(String, String)> {
    vec![
        ("DOCKER_HOST".to_owned(), format!("tcp://{authority}")),
        ("DOCKER_TLS_VERIFY".to_owned(), "1".to_owned()),
        ("DOCKER_CERT_PATH".to_owned(), certs.display().to_string()),
    ]
}

/// An engine error in words when TLS is its cause (an untrusted, wrong-host or expired
/// certificate; our certificate refused), else `None`.
pub fn explain(error: &bollard::errors::Error, authority: &str, certs: &Path) -> Option<String> {
    let ca = certs.join(ENGINE_CA);
    crate::tls::describe_in(error, authority, &|| ca.display().to_string())
        .map(|failure| failure.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::discover::{candidates, DiscoveryEnv, Host};
    use super::*;

    #[test]
    fn the_cert_dir_is_docker_cert_path_else_the_config_dir() {
        let given = Path::new("/certs");
        let config = Path::new("/home/me/.docker");
        assert_eq!(cert_dir(Some(given), Some(config)).unwrap(), given);
        assert_eq!(cert_dir(None, Some(config)).unwrap(), config);
        assert!(cert_dir(None, None).is_none());
    }

    #[test]
    fn a_cert_dir_needs_the_ca_and_both_or_neither_client_files() {
        let dir = tempfile::tempdir().unwrap();
        let error = check_cert_dir(&dir.path().join("none"), "DOCKER_CERT_PATH").unwrap_err();
        assert!(error.to_string().contains("is not a directory"), "{error}");
        assert_eq!(error.kind(), crate::error::ExitKind::Usage);

        let error = check_cert_dir(dir.path(), "DOCKER_CERT_PATH").unwrap_err();
        assert!(error.to_string().contains("has no ca.pem"), "{error}");

        std::fs::write(dir.path().join(ENGINE_CA), "x").unwrap();
        std::fs::write(dir.path().join(ENGINE_CERT), "x").unwrap();
        let error = check_cert_dir(dir.path(), "DOCKER_CERT_PATH").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("only one of cert.pem and key.pem"),
            "{error}"
        );

        std::fs::write(dir.path().join(ENGINE_KEY), "x").unwrap();
        check_cert_dir(dir.path(), "DOCKER_CERT_PATH").unwrap();
        std::fs::remove_file(dir.path().join(ENGINE_CERT)).unwrap();
        std::fs::remove_file(dir.path().join(ENGINE_KEY)).unwrap();
        check_cert_dir(dir.path(), "DOCKER_CERT_PATH").unwrap();
    }

    #[test]
    fn compose_and_the_suites_get_the_variables_the_docker_cli_reads() {
        assert_eq!(
            env("10.0.0.2:2376", Path::new("/certs")),
            vec![
                ("DOCKER_HOST".to_owned(), "tcp://10.0.0.2:2376".to_owned()),
                ("DOCKER_TLS_VERIFY".to_owned(), "1".to_owned()),
                ("DOCKER_CERT_PATH".to_owned(), "/certs".to_owned()),
            ]
        );
    }

    fn tls_env(dir: &Path) -> DiscoveryEnv {
        DiscoveryEnv {
            docker_host: Some("tcp://10.0.0.2".into()),
            docker_tls_verify: Some("1".into()),
            docker_cert_path: Some(dir.to_path_buf()),
            ..DiscoveryEnv::default()
        }
    }

    #[test]
    fn docker_tls_verify_makes_a_tcp_docker_host_a_tls_engine_on_2376() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ENGINE_CA), "x").unwrap();
        let mut env = tls_env(dir.path());
        let host = candidates(&env).unwrap().remove(0).host;
        assert_eq!(
            host,
            Host::TcpTls {
                authority: "10.0.0.2:2376".into(),
                certs: dir.path().to_path_buf()
            }
        );
        assert_eq!(host.url(), "tcp://10.0.0.2:2376");
        assert_eq!(host.tls_env(), env_vars("10.0.0.2:2376", dir.path()));

        env.docker_host = Some("tcp://10.0.0.2:12376".into());
        let host = candidates(&env).unwrap().remove(0).host;
        assert_eq!(host.url(), "tcp://10.0.0.2:12376");

        // A socket is local: DOCKER_TLS_VERIFY does not apply to it, as with the docker CLI.
        env.docker_host = Some("unix:///tmp/d.sock".into());
        let host = candidates(&env).unwrap().remove(0).host;
        assert_eq!(host, Host::Unix(PathBuf::from("/tmp/d.sock")));
        assert!(host.tls_env().is_empty());

        // Without DOCKER_TLS_VERIFY a tcp engine is plain, on 2375.
        env.docker_host = Some("tcp://10.0.0.2".into());
        env.docker_tls_verify = None;
        let host = candidates(&env).unwrap().remove(0).host;
        assert_eq!(host, Host::Tcp("10.0.0.2:2375".into()));
        assert!(host.tls_env().is_empty());
    }

    #[test]
    fn the_certificates_default_to_the_docker_config_directory_and_must_be_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut env = tls_env(dir.path());
        env.docker_cert_path = None;
        env.docker_config = Some(dir.path().join("config"));
        let error = candidates(&env).unwrap_err();
        assert_eq!(error.kind(), crate::error::ExitKind::Usage);
        assert!(
            error.to_string().contains(&format!(
                "{} is not a directory",
                dir.path().join("config").display()
            )),
            "{error}"
        );
        std::fs::create_dir_all(dir.path().join("config")).unwrap();
        let error = candidates(&env).unwrap_err().to_string();
        assert!(error.contains("has no ca.pem"), "{error}");
    }

    #[test]
    fn docker_tls_without_verify_is_refused() {
        let env = DiscoveryEnv {
            docker_host: Some("tcp://10.0.0.2:2376".into()),
            docker_tls: Some("1".into()),
            ..DiscoveryEnv::default()
        };
        let error = candidates(&env).unwrap_err();
        assert_eq!(error.kind(), crate::error::ExitKind::Usage);
        assert!(
            error
                .to_string()
                .contains("DOCKER_TLS is set without DOCKER_TLS_VERIFY"),
            "{error}"
        );
        let https = DiscoveryEnv {
            docker_host: Some("https://10.0.0.2:2376".into()),
            ..DiscoveryEnv::default()
        };
        let error = candidates(&https).unwrap_err().to_string();
        assert!(
            error.contains("set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH"),
            "{error}"
        );
    }

    #[test]
    fn a_context_with_tls_files_is_a_tls_engine_and_one_that_skips_verification_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config_dir = dir.path().join(".docker");
        let meta_dir = config_dir.join("contexts/meta/d1g35t");
        std::fs::create_dir_all(&meta_dir).unwrap();
        let meta = |skip: bool| {
            serde_json::json!({
                "Name": "remote",
                "Endpoints": {"docker": {"Host": "tcp://10.0.0.3:2376", "SkipTLSVerify": skip}}
            })
            .to_string()
        };
        std::fs::write(meta_dir.join("meta.json"), meta(false)).unwrap();
        let tls_dir = config_dir.join("contexts/tls/d1g35t/docker");
        std::fs::create_dir_all(&tls_dir).unwrap();
        let env = DiscoveryEnv {
            docker_config: Some(config_dir.clone()),
            docker_context: Some("remote".into()),
            ..DiscoveryEnv::default()
        };
        assert_eq!(
            candidates(&env).unwrap().remove(0).host,
            Host::TcpTls {
                authority: "10.0.0.3:2376".into(),
                certs: tls_dir.clone()
            }
        );
        std::fs::write(meta_dir.join("meta.json"), meta(true)).unwrap();
        let error = candidates(&env).unwrap_err().to_string();
        assert!(error.contains("skips TLS verification"), "{error}");
    }

    fn env_vars(authority: &str, certs: &Path) -> Vec<(String, String)> {
        env(authority, certs)
    }

    #[test]
    fn unreadable_certificates_are_named_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(ENGINE_CA), "not a certificate").unwrap();
        let error = client("127.0.0.1:2376", dir.path())
            .unwrap_err()
            .to_string();
        assert!(error.contains("ca.pem holds no certificate"), "{error}");
    }
}
