//! The platform checks of `cargo xtask ci`: the Rust targets they need (`rustup target add`),
//! clippy for Windows and macOS (`--target`, type-checking only: no linker for them is needed, and
//! C dependencies get a stand-in compiler, `assets/check-cc`),
//! and the library's tests built for `x86_64-pc-windows-gnu` and run as a Windows program under
//! Wine, with the `ProcessPrng` shim Wine 8 lacks (built with mingw from
//! `assets/bcryptprimitives.c` beside the test executable, never committed; both are embedded, so
//! that the packaged crate needs nothing from this repository). Each is a row of
//! its own in ci's table; the Wine row carries the test counts. They build in a target directory
//! of their own (`target/cross`), so that ci runs them beside its other steps instead of waiting
//! for cargo's lock on `target/` (see [`Show`]).
//!
//! Not here: installing mingw and Wine (ci's package step), the other checks ([`crate::commands::ci`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::process::{Cmd, LineSink};
use crate::report::Check;

/// The targets clippy checks besides the host's.
pub const CLIPPY_TARGETS: &[&str] = &[
    "x86_64-pc-windows-msvc",
    "x86_64-apple-darwin",
    "aarch64-apple-darwin",
];

/// The target whose test executable Wine runs (mingw links it; msvc would need Microsoft's linker).
pub const WINE_TARGET: &str = "x86_64-pc-windows-gnu";

/// A stand-in C compiler and archiver for the cross-target type checks.
const CHECK_CC: &str = include_str!("../../../assets/check-cc");
/// The `ProcessPrng` export Wine 8 lacks, as a DLL source.
const PRNG_SHIM: &str = include_str!("../../../assets/bcryptprimitives.c");

/// The Debian packages the Wine run needs: the mingw C compiler (the linker of the gnu target and
/// the compiler of the shim) and Wine.
pub const PACKAGES: &[&str] = &["gcc-mingw-w64-x86-64", "wine"];

/// Below these, the Windows test binary would no longer say much about the Windows build.
const MIN_PASSED: usize = 40;
const MIN_WINDOWS_PASSED: usize = 5;

/// What a test's name says about it covering Windows-specific code.
const WINDOWS_WORDS: &[&str] = &["windows", "npipe", "desktop"];

/// A cold build of the crate for one more target, with everything it depends on.
const BUILD_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// Where the checks' output goes.
#[derive(Debug, Clone)]
pub enum Show {
    /// On the terminal, as it comes (`ci --platforms-only`).
    Live,
    /// Into one file a step in this directory (when they run beside ci's other steps, whose
    /// output they would otherwise interleave); a failed step's row ends with its output's tail.
    Logs(PathBuf),
}

impl Show {
    fn apply(&self, cmd: Cmd, step: &str) -> Cmd {
        match self {
            Show::Live => cmd.show_output(),
            Show::Logs(dir) => {
                let _ = std::fs::create_dir_all(dir);
                cmd.log_to(dir.join(format!("{step}.log")))
            }
        }
    }
}

/// Every platform check, in order: the targets, clippy for each, the Wine run.
pub async fn checks(root: &Path, show: &Show) -> Vec<Check> {
    let mut checks = vec![add_targets(root).await];
    checks.extend(clippy(root, show).await);
    checks.push(wine_tests(root, show).await);
    checks
}

/// `rustup target add` for the clippy targets and the Wine target (quick when present).
pub async fn add_targets(root: &Path) -> Check {
    let started = Instant::now();
    let name = "rust targets";
    let targets: Vec<&str> = CLIPPY_TARGETS
        .iter()
        .chain([&WINE_TARGET])
        .copied()
        .collect();
    let run = Cmd::new("rustup")
        .args(["target", "add"])
        .args(&targets)
        .current_dir(root)
        .run(Duration::from_secs(15 * 60))
        .await;
    match run {
        Ok(_) => Check::passed(name, started.elapsed(), targets.join(", ")),
        Err(e) => Check::failed(name, started.elapsed(), format!("{e:#}"))
            .with_remedy("install rustup (https://rustup.rs), or add the targets to the toolchain"),
    }
}

/// `cargo clippy -p stackgate --all-targets --target T -- -D warnings`, one check per target, one
/// after the other: cargo lets one build at a time use a target directory, and each already
/// spreads its work over the cores.
pub async fn clippy(root: &Path, show: &Show) -> Vec<Check> {
    let mut checks = Vec::new();
    for target in CLIPPY_TARGETS {
        let started = Instant::now();
        let name = format!("clippy {target}");
        crate::ui::say(format!("ci: {name}"));
        // Clippy never links, but ring's build script compiles its C for the target, which needs
        // that target's SDK: a stand-in compiler writes empty objects (see assets/check-cc).
        let variable = target.replace('-', "_");
        let check_cc = match stand_in_compiler(root) {
            Ok(path) => path,
            Err(e) => {
                checks.push(Check::failed(name, started.elapsed(), format!("{e:#}")));
                continue;
            }
        };
        let cmd = Cmd::new("cargo")
            .args(["clippy", "-p", "stackgate", "--all-targets", "--locked"])
            .args(["--target", target, "--", "-D", "warnings"])
            .env(format!("CC_{variable}"), &check_cc)
            .env(format!("AR_{variable}"), &check_cc)
            .env("CARGO_TARGET_DIR", target_dir(root))
            .current_dir(root);
        let run = show
            .apply(cmd, &format!("clippy-{target}"))
            .run(BUILD_DEADLINE)
            .await;
        checks.push(match run {
            Ok(_) => Check::passed(name, started.elapsed(), "ok"),
            Err(e) => Check::failed(name, started.elapsed(), format!("{e:#}")),
        });
    }
    checks
}

/// The stand-in compiler (`assets/check-cc`, embedded), written under the target directory.
fn stand_in_compiler(root: &Path) -> anyhow::Result<PathBuf> {
    let path = target_dir(root).join("check-cc");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(CHECK_CC) {
        crate::state::write_atomic(&path, CHECK_CC.as_bytes())?;
    }
    #[cfg(unix)]
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| anyhow::anyhow!("cannot make {} executable: {e}", path.display()))?;
    Ok(path)
}

/// What the Windows test executable reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestCounts {
    pub passed: usize,
    pub failed: usize,
    pub ignored: usize,
    /// Passed tests whose names say they cover Windows code (`windows`, `npipe`, `desktop`).
    pub windows_passed: usize,
}

impl std::fmt::Display for TestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} passed ({} Windows-specific), {} failed, {} ignored",
            self.passed, self.windows_passed, self.failed, self.ignored
        )
    }
}

/// Reads libtest's output: `test NAME ... ok` lines and the `test result:` line.
pub fn parse_test_output(text: &str) -> Option<TestCounts> {
    let mut counts = TestCounts::default();
    let mut summary = false;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|rest| rest.strip_suffix(" ... ok"))
        {
            // The test's own name, not its module's (`engine::desktop` also holds colima's).
            let name = name
                .rsplit("::")
                .next()
                .unwrap_or(name)
                .to_ascii_lowercase();
            if WINDOWS_WORDS.iter().any(|word| name.contains(word)) {
                counts.windows_passed += 1;
            }
        }
        if let Some(rest) = line.strip_prefix("test result: ") {
            summary = true;
            for part in rest.split([';', '.']) {
                let mut words = part.split_whitespace();
                let (Some(number), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(number) = number.parse::<usize>() else {
                    continue;
                };
                match what {
                    "passed" => counts.passed += number,
                    "failed" => counts.failed += number,
                    "ignored" => counts.ignored += number,
                    _ => {}
                }
            }
        }
    }
    summary.then_some(counts)
}

/// Where the platform checks build: `cross` in cargo's target directory (`CARGO_TARGET_DIR`,
/// else `target` at the root), so that they never wait on the host build's lock.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| root.join(dir))
        .unwrap_or_else(|| root.join("target"))
        .join("cross")
}

/// Wine's loader: the 64-bit one itself when Debian's `wine` wrapper is around it (the wrapper
/// complains about a missing 32-bit Wine on every start), else `wine` on PATH.
fn wine_program() -> Option<PathBuf> {
    let loader = Path::new("/usr/lib/wine/wine64");
    if loader.is_file() {
        return Some(loader.to_path_buf());
    }
    which::which("wine64")
        .or_else(|_| which::which("wine"))
        .ok()
}

/// `cargo test -p stackgate --lib --target x86_64-pc-windows-gnu` with Wine as cargo's runner: a
/// private Wine prefix under the target directory, the `ProcessPrng` shim beside the executable,
/// insta told where the snapshots are (it cannot ask cargo from inside Wine).
pub async fn wine_tests(root: &Path, show: &Show) -> Check {
    let started = Instant::now();
    let name = format!("windows tests ({WINE_TARGET}, wine)");
    crate::ui::say(format!("ci: {name}"));
    match run_wine_tests(root, show).await {
        Ok(counts) if counts.failed > 0 => {
            Check::failed(name, started.elapsed(), counts.to_string())
        }
        Ok(counts) if counts.passed < MIN_PASSED || counts.windows_passed < MIN_WINDOWS_PASSED => {
            Check::failed(
                name,
                started.elapsed(),
                format!(
                    "{counts}: fewer than {MIN_PASSED} tests, or {MIN_WINDOWS_PASSED} Windows-specific ones, ran as a Windows program"
                ),
            )
            .with_remedy("keep the library's tests that need no Unix tool compiled on Windows")
        }
        Ok(counts) => Check::passed(name, started.elapsed(), counts.to_string()),
        Err(e) => Check::failed(name, started.elapsed(), format!("{e:#}")),
    }
}

async fn run_wine_tests(root: &Path, show: &Show) -> anyhow::Result<TestCounts> {
    let wine = wine_program().ok_or_else(|| {
        crate::error::Failure::unavailable(
            "wine is not installed",
            Some("`apt-get install -y wine` (`cargo xtask ci` installs it)".to_owned()),
        )
    })?;
    let target = target_dir(root);
    let deps = target.join(WINE_TARGET).join("debug").join("deps");
    build_prng_shim(root, &deps).await?;
    // Wine makes the prefix on first use, but only inside a directory that exists.
    let prefix = target.join("wine").join("prefix");
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create the Wine prefix {}", prefix.display()))?;
    let runner_var = format!(
        "CARGO_TARGET_{}_RUNNER",
        WINE_TARGET.to_ascii_uppercase().replace('-', "_")
    );
    let cmd = Cmd::new("cargo")
        .args([
            "test",
            "-p",
            "stackgate",
            "--lib",
            "--locked",
            "--target",
            WINE_TARGET,
        ])
        .current_dir(root)
        .env(runner_var, &wine)
        .env("WINEPREFIX", &prefix)
        .env("WINEDEBUG", "-all")
        // No Mono or Gecko install prompts while the prefix is created.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env("INSTA_WORKSPACE_ROOT", root)
        .env("INSTA_UPDATE", "no")
        .env("CARGO_TARGET_DIR", &target);
    // The counts come from the captured stdout, whatever is shown.
    let cmd = match show {
        Show::Live => {
            let echo: LineSink = Arc::new(|_, line: &str| eprintln!("{line}"));
            cmd.on_line(echo)
        }
        Show::Logs(_) => show.apply(cmd, "windows-tests"),
    };
    let finished = cmd.output(BUILD_DEADLINE).await?;
    match parse_test_output(&finished.stdout) {
        Some(counts) => Ok(counts),
        None => Err(finished.failure()),
    }
}

/// Builds `bcryptprimitives.dll` into `deps` (where the test executable is) unless it is there
/// and newer than its source.
async fn build_prng_shim(root: &Path, deps: &Path) -> anyhow::Result<()> {
    let source = deps.join("bcryptprimitives.c");
    let dll = deps.join("bcryptprimitives.dll");
    // Built once per source text: the source is written beside the DLL only when it changed.
    if dll.exists() && std::fs::read_to_string(&source).ok().as_deref() == Some(PRNG_SHIM) {
        return Ok(());
    }
    std::fs::create_dir_all(deps)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", deps.display()))?;
    crate::state::write_atomic(&source, PRNG_SHIM.as_bytes())?;
    Cmd::new("x86_64-w64-mingw32-gcc")
        .args(["-O2", "-shared", "-o"])
        .arg(&dll)
        .arg(&source)
        .arg("-ladvapi32")
        .current_dir(root)
        .run(Duration::from_secs(120))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\n(hint: `apt-get install -y gcc-mingw-w64-x86-64`; `cargo xtask ci` installs it)"
            )
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_output_gives_the_counts_and_those_named_for_their_platform() {
        let text = "\nrunning 4 tests\n\
            test engine::discover::tests::windows_looks_at_the_desktop_npipes ... ok\n\
            test engine::start::tests::macos_colima_plans ... ok\n\
            test process::sys::tests::windows_job_object_deadline_ends_the_child_tree ... FAILED\n\
            test engine::desktop::tests::colima_profiles_come_from_their_sockets ... ok\n\
            \n\
            test result: FAILED. 3 passed; 1 failed; 2 ignored; 0 measured; 0 filtered out; finished in 4.92s\n";
        assert_eq!(
            parse_test_output(text),
            Some(TestCounts {
                passed: 3,
                failed: 1,
                ignored: 2,
                windows_passed: 1,
            })
        );
        assert_eq!(
            parse_test_output(text).unwrap().to_string(),
            "3 passed (1 Windows-specific), 1 failed, 2 ignored"
        );
        // No summary: the executable did not run to its end.
        assert_eq!(parse_test_output("running 4 tests\n"), None);
    }
}
