//! A TLS engine end to end: a private dockerd in a network namespace of its own, listening on tcp
//! at the namespace's address with `--tlsverify` and certificates this test makes with openssl
//! (a CA, the daemon's certificate for that address, this client's certificate). The harness
//! reaches it with `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` as the docker CLI does, runs the
//! smoke container on it, and hands compose and the docker CLI the same variables; a CA that did
//! not sign the daemon's certificate, and a client without a certificate, are named.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use stackgate::engine::{self, DiscoveryEnv, EnsureOptions, Host, Platform, Probe, SmokeRun};
use stackgate::progress::Progress;

use crate::daemons::{copy_image, Dockerd, DockerdOptions};
use crate::require;
use crate::tls::{Issued, Pki, Validity};

/// `DOCKER_CERT_PATH` as the docker CLI reads it: ca.pem, and cert.pem / key.pem when given.
fn cert_path(dir: &Path, ca: &Path, client: Option<&Issued>) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::copy(ca, dir.join("ca.pem")).unwrap();
    if let Some(client) = client {
        std::fs::copy(&client.cert, dir.join("cert.pem")).unwrap();
        std::fs::copy(&client.key, dir.join("key.pem")).unwrap();
    }
    dir.to_path_buf()
}

fn tls_env(tcp: &str, certs: &Path) -> DiscoveryEnv {
    DiscoveryEnv {
        docker_host: Some(tcp.to_owned()),
        docker_tls_verify: Some("1".to_owned()),
        docker_cert_path: Some(certs.to_path_buf()),
        platform: Platform::Linux,
        ..DiscoveryEnv::default()
    }
}

async fn probe_detail(env: &DiscoveryEnv) -> String {
    let host = engine::candidates(env).unwrap().remove(0).host;
    match engine::probe(&host, Duration::from_secs(20)).await.0 {
        Probe::NoAnswer(detail) => detail,
        other => panic!("expected no answer, got {other:?}"),
    }
}

#[tokio::test]
async fn a_tls_engine_is_reached_with_docker_tls_verify_and_a_wrong_ca_or_no_client_certificate_is_named(
) {
    let Some(()) = require::root() else { return };
    let Some(_) = require::dockerd() else { return };
    let Some(docker_cli) = require::program("docker", &["--version"]) else {
        return;
    };
    let Some(machine) = require::engine_async().await else {
        return;
    };
    let Some(pki) = Pki::new() else { return };
    let work = tempfile::tempdir().unwrap();
    let server_cert = work.path().join("server-cert.pem");
    let server_key = work.path().join("server-key.pem");
    let daemon = Dockerd::prepare(DockerdOptions {
        tcp: true,
        extra_args: vec![
            "--tlsverify".into(),
            format!("--tlscacert={}", pki.ca().display()),
            format!("--tlscert={}", server_cert.display()),
            format!("--tlskey={}", server_key.display()),
        ],
    });
    // The daemon's certificate names the address its namespace got.
    let tcp = daemon.tcp.clone().expect("a tcp address");
    let address = tcp
        .trim_start_matches("tcp://")
        .rsplit_once(':')
        .unwrap()
        .0
        .to_owned();
    let server = pki.issue(
        "dockerd",
        &format!("IP:{address}"),
        "serverAuth",
        Validity::Days(2),
    );
    std::fs::copy(&server.cert, &server_cert).unwrap();
    std::fs::copy(&server.key, &server_key).unwrap();
    let private = daemon.start().await;

    let client = pki.issue("client", "", "clientAuth", Validity::Days(2));
    let certs = cert_path(&work.path().join("client"), &pki.ca(), Some(&client));
    let env = tls_env(&tcp, &certs);
    let config = crate::engine::config_in(
        work.path(),
        "start_if_stopped = false\nsmoke_image = \"hello-world\"\n\
         smoke_fallback_image = \"debian:bookworm-slim\"\nsmoke_timeout_s = 120\n",
        "",
    );
    let restored = engine::restore_with(
        &config,
        &EnsureOptions::default(),
        &env,
        &Progress::silent(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon.log_tail()));
    let tls_engine = restored.engine;
    assert_eq!(
        tls_engine.host,
        Host::TcpTls {
            authority: tcp.trim_start_matches("tcp://").to_owned(),
            certs: certs.clone()
        }
    );
    assert_eq!(tls_engine.info.host, tcp);
    assert!(!tls_engine.info.server_version.is_empty());

    // The smoke container runs through the TLS transport (its image loaded through it first).
    copy_image(&machine, &tls_engine.docker, "debian:bookworm-slim").await;
    let check = engine::smoke(
        &tls_engine,
        &config,
        &SmokeRun::new("tls-engine-test".to_owned()),
        &Progress::silent(),
    )
    .await;
    assert_eq!(
        check.outcome,
        stackgate::report::Outcome::Passed,
        "{check:?}\n{}",
        daemon.log_tail()
    );

    // Compose and the suites get these variables: the docker CLI reaches the same engine with them.
    let vars = tls_engine.host.tls_env();
    let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"]
    );
    let output = Command::new(&docker_cli)
        .args(["version", "--format", "{{.Server.Version}}"])
        .env_remove("DOCKER_CONTEXT")
        .env("DOCKER_CONFIG", work.path().join("docker-config"))
        .envs(vars.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "docker version with {vars:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        tls_engine.info.server_version
    );

    // A CA that did not sign the daemon's certificate: named, with the CA file trusted.
    let Some(other_pki) = Pki::new() else { return };
    let wrong = cert_path(
        &work.path().join("wrong-ca"),
        &other_pki.ca(),
        Some(&client),
    );
    let detail = probe_detail(&tls_env(&tcp, &wrong)).await;
    assert!(
        detail.starts_with(&format!(
            "untrusted certificate: {} presents a certificate whose issuer is not trusted here (trusted: {})",
            tcp.trim_start_matches("tcp://"),
            wrong.join("ca.pem").display()
        )),
        "{detail}"
    );

    // No client certificate: the daemon refuses the connection, and that is what is said.
    let anonymous = cert_path(&work.path().join("anonymous"), &pki.ca(), None);
    let detail = probe_detail(&tls_env(&tcp, &anonymous)).await;
    assert!(
        detail.contains("the server refused this client's certificate"),
        "{detail}"
    );
    drop(private);
}
