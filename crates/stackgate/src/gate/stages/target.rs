//! The target stage: where the suites run. Docker when the engine answered; otherwise the first
//! usable target of `[fallback] order` (or the one `--target` forces): staging when its
//! endpoints are set and answer (over TLS: with a certificate the harness trusts), local by
//! starting `[targets.local]`'s processes.
//!
//! Not here: probing staging or running the processes ([crate::target]), the stack
//! ([super::stack]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::TargetKind;
use crate::error::Failure;
use crate::flags::TargetChoice;
use crate::report::Check;

use crate::gate::context::{Context, Ledger, StageClock};
use crate::gate::events::{Stage, StageOutcome};
use crate::gate::suite_support::PythonSlot;

/// The target the suites run against, once chosen.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub kind: TargetKind,
    pub endpoints: BTreeMap<String, String>,
    /// More variables for the suites (`XTASK_COMPOSE_PROJECT`, the run secret).
    pub extra_env: BTreeMap<String, String>,
    pub skip_markers: Vec<String>,
}

/// The engine answered: the suites run on docker (the stack stage gives the endpoints).
pub fn docker(run: &Context, engine: &crate::engine::Engine) {
    let mut clock = StageClock::start(run, Stage::Target);
    clock.step(Check::passed(
        "target docker",
        Duration::ZERO,
        format!("the engine at {} answered", engine.info.host),
    ));
    run.property("target", "docker");
    clock.finish();
}

/// No engine (or `--target staging|local`): the first usable target. `Err` (exit 3) when none is.
pub async fn fallback(
    run: &Context,
    ledger: &Ledger,
    python: &PythonSlot,
) -> anyhow::Result<Chosen> {
    let mut clock = StageClock::start(run, Stage::Target);
    let kinds = match run.options.target {
        TargetChoice::Staging => vec![TargetKind::Staging],
        TargetChoice::Local => vec![TargetKind::Local],
        TargetChoice::Auto | TargetChoice::Docker => run.config.fallback.order.clone(),
    };
    let mut reasons = Vec::new();
    let mut certificate_problem = false;
    for kind in kinds {
        match try_target(run, ledger, kind, &mut clock, python).await {
            Ok(chosen) => {
                run.property("target", kind.to_string());
                clock.finish();
                for stage in [Stage::Images, Stage::Stack] {
                    run.skip(stage, format!("not used on the {kind} target"));
                }
                return Ok(chosen);
            }
            Err(e) => {
                certificate_problem |=
                    crate::tls::failure_in(&e).is_some_and(|f| f.is_certificate());
                run.note(format!("target {kind} not usable: {e:#}"));
                reasons.push(format!("{kind}: {e:#}"));
            }
        }
    }
    let message = match (run.options.target, reasons.is_empty()) {
        (TargetChoice::Staging | TargetChoice::Local, _) => {
            format!("target {}", reasons.join("; "))
        }
        (_, true) => "no engine, and [fallback] order names no other target".to_owned(),
        (_, false) => format!(
            "no engine, and no fallback target is usable ({})",
            reasons.join("; ")
        ),
    };
    clock.step(Check::failed("target", Duration::ZERO, message.clone()));
    clock.finish_as(StageOutcome::Failed);
    let hint = if certificate_problem {
        "trust the CA that signed staging's certificate: `ca_file` under [targets.staging] in harness.toml, or SSL_CERT_FILE; a wrong hostname or an expired certificate is staging's to fix"
    } else {
        "start the engine, or set the staging endpoints, or fix [targets.local]"
    };
    Err(Failure::unavailable(message, Some(hint.to_owned())).into())
}

async fn try_target(
    run: &Context,
    ledger: &Ledger,
    kind: TargetKind,
    clock: &mut StageClock<'_>,
    python: &PythonSlot,
) -> anyhow::Result<Chosen> {
    let config = &run.config;
    match kind {
        TargetKind::Docker => anyhow::bail!("docker is not a fallback target"),
        TargetKind::Staging => {
            let endpoints = crate::target::staging_endpoints(config).await?;
            let staging = config
                .targets
                .staging
                .as_ref()
                .context("no [targets.staging] in harness.toml")?;
            clock.step(Check::passed(
                "target staging",
                Duration::ZERO,
                format!("{} endpoints answer", endpoints.len()),
            ));
            let mut extra_env = BTreeMap::new();
            if staging.ca_file.is_some() {
                // The suites trust what the harness trusts: the platform's roots and the CA file.
                let bundle = crate::stack::run_dir(config, &run.run_id).join("ca-bundle.pem");
                config.tls().write_bundle(&bundle)?;
                for name in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
                    extra_env.insert(name.to_owned(), bundle.display().to_string());
                }
            }
            Ok(Chosen {
                kind,
                endpoints,
                extra_env,
                skip_markers: staging.skip_markers.clone(),
            })
        }
        TargetKind::Local => {
            let local_cfg = config
                .targets
                .local
                .as_ref()
                .context("no [targets.local] in harness.toml")?;
            // The local processes run from the suites' venv: waiting for it is this stage's.
            let python_exe = python.get(run).await.map(|env| env.python.clone());
            let secret = crate::target::random_secret();
            run.add_secret(secret.clone());
            let mut extra = BTreeMap::new();
            extra.insert("XTASK_RUN_SECRET".to_owned(), secret);
            extra.insert("XTASK_RUN_ID".to_owned(), run.run_id.clone());
            let mut local = crate::target::start_local(
                config,
                python_exe.as_deref(),
                &extra,
                &run.progress(Stage::Target),
            )
            .await?;
            for check in std::mem::take(&mut local.checks) {
                clock.step(check);
            }
            let endpoints = local.endpoints.clone();
            ledger.record(|r| r.local = Some(local));
            Ok(Chosen {
                kind,
                endpoints,
                extra_env: extra,
                skip_markers: local_cfg.skip_markers.clone(),
            })
        }
    }
}
