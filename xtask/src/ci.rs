//! `cargo xtask ci`: the project's own checks, exactly what `.ci/run` calls. On a fresh Debian
//! machine it installs what is missing, starts the engine through the same restoration code users
//! get, then runs fmt, clippy, every test, the gate against the reference stack, and the platform
//! checks ([`crate::cross`]: clippy for Windows and macOS, the library's tests under Wine).

use std::time::Instant;

use anyhow::Context;
use xshell::{cmd, Shell};

use crate::error::Failure;
use crate::progress::Progress;
use crate::report::{Check, Outcome};
use crate::{ui, Ctx};

/// Debian packages the project's checks need: the engine, compose v1, debootstrap for the offline
/// base image, xmllint to validate JUnit against the XSD (and [`crate::cross::PACKAGES`]: mingw
/// and Wine for the Windows tests).
const PACKAGES: &[&str] = &[
    "docker.io",
    "docker-compose",
    "debootstrap",
    "libxml2-utils",
];

/// Set for the tests when this `ci` run started the engine itself: only then may a test stop it.
pub const OWNS_ENGINE_ENV: &str = "XTASK_OWNS_ENGINE";

impl crate::flags::Ci {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let sh = Shell::new()?;
        sh.change_dir(&config.root);
        let mut steps: Vec<Check> = Vec::new();

        let packages: Vec<&str> = if self.platforms_only {
            crate::cross::PACKAGES.to_vec()
        } else {
            PACKAGES
                .iter()
                .chain(crate::cross::PACKAGES)
                .copied()
                .collect()
        };
        if self.no_install {
            steps.push(Check::skipped("install packages", "--no-install"));
        } else {
            let started = Instant::now();
            let installed = crate::engine::install_packages(&packages, &Progress::terminal())
                .await
                .context("installing the project's packages")?;
            let detail = if installed {
                "installed missing packages"
            } else {
                "all present"
            };
            steps.push(Check::passed(
                "install packages",
                started.elapsed(),
                format!("{detail}: {}", packages.join(", ")),
            ));
        }
        if self.platforms_only {
            steps.extend(crate::cross::checks(&config.root).await);
            return finish(&steps);
        }

        // The engine and the images, made by the gate's own stages.
        let started = Instant::now();
        let (engine, engine_steps) = crate::gate::engine_and_images(config.clone(), false).await?;
        let owns_engine = engine.info.started_by_harness;
        steps.push(Check::passed(
            "engine",
            started.elapsed(),
            format!(
                "{} {} ({}){}",
                engine.info.host,
                engine.info.server_version,
                engine.info.api_version,
                if owns_engine {
                    ", started by the harness"
                } else {
                    ""
                }
            ),
        ));
        steps.extend(
            engine_steps
                .into_iter()
                .filter(|c| c.outcome != Outcome::Passed),
        );
        let owned = if owns_engine { "1" } else { "0" };
        let _owns = sh.push_env(OWNS_ENGINE_ENV, owned);
        // A test whose prerequisite is missing fails here instead of passing by skipping.
        let _require_all = sh.push_env("XTASK_REQUIRE_ALL", "1");
        // Snapshots are compared, never rewritten, in CI.
        let _snapshots = sh.push_env("INSTA_UPDATE", "no");
        let gate_config = config.path.clone();
        let exe = std::env::current_exe().context("cannot find the xtask binary")?;
        let mut cargo_steps: Vec<(&str, xshell::Cmd<'_>)> = vec![
            ("cargo fmt", cmd!(sh, "cargo fmt --all -- --check")),
            ("cargo clippy", cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings")),
            (
                "tests",
                cmd!(sh, "cargo nextest run --workspace --exclude stack-load-tests --locked --no-fail-fast -E 'not test(/owned_engine_/)'"),
            ),
        ];
        if owns_engine {
            cargo_steps.push((
                "engine restoration tests",
                cmd!(sh, "cargo nextest run -p xtask --locked --no-fail-fast --test-threads 1 -E 'test(/owned_engine_/)'"),
            ));
        } else {
            steps.push(Check::skipped(
                "engine restoration tests",
                "the engine was already running when ci started, so ci does not own it and will not stop it",
            ));
        }
        if !self.no_gate {
            cargo_steps.push((
                "gate (mission-critical)",
                cmd!(sh, "{exe} --config {gate_config} mission-critical"),
            ));
        }
        for (name, command) in cargo_steps {
            ui::say(format!("ci: {name}"));
            let started = Instant::now();
            let result = command.run();
            steps.push(match result {
                Ok(()) => Check::passed(name, started.elapsed(), "ok"),
                Err(e) => Check::failed(name, started.elapsed(), e.to_string()),
            });
        }
        steps.extend(crate::cross::checks(&config.root).await);
        finish(&steps)
    }
}

/// The table, the closing line CI systems read, and the result.
fn finish(steps: &[Check]) -> anyhow::Result<()> {
    eprint!("\n{}", crate::report::table(steps));
    let failed = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Failed)
        .count();
    let passed = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Passed)
        .count();
    let skipped = steps
        .iter()
        .filter(|s| s.outcome == Outcome::Skipped)
        .count();
    // A plain closing line that CI systems read.
    println!("ci: {passed} passed, {failed} failed, {skipped} skipped");
    if failed > 0 {
        return Err(Failure::check(format!("{failed} ci step(s) failed")).into());
    }
    Ok(())
}
