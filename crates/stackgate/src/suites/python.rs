//! The Python environment the pytest suites (and the local target) run in: the venv of
//! `[python]`, created once and reused while the interpreter and the requirement files' contents
//! are unchanged (one digest per file in [`REQUIREMENTS_STAMP`]), behind a file lock beside the
//! venv so that concurrent harnesses wait for each other.
//!
//! Not here: running pytest ([super::pytest]), what a suite's process receives ([super::child_env]).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::shard::Fnv;
use crate::config::Config;
use crate::junit;
use crate::process::Cmd;

/// How long `python -m venv` and `pip install` may take each, and how long a second harness
/// waits for the first one's install.
const PIP_TIMEOUT: Duration = Duration::from_secs(900);
/// The file in the venv that records what it was built from.
pub const REQUIREMENTS_STAMP: &str = ".xtask-requirements.sha";
/// How much of pip's output an error shows (the whole of it is in `pip.log`).
const ERROR_TAIL: usize = 4096;

/// A ready virtual environment.
#[derive(Debug, Clone)]
pub struct PythonEnv {
    pub venv: PathBuf,
    /// `<venv>/bin/python` (`<venv>\Scripts\python.exe` on Windows).
    pub python: PathBuf,
    /// True when the venv was already up to date (nothing was installed).
    pub reused: bool,
    pub duration: Duration,
    /// Where pip's output went.
    pub log: PathBuf,
}

/// Which requirement files go into the venv.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirements {
    /// `[python] requirements`.
    Suites,
    /// Those and `[targets.local] requirements` (the local target runs the services from it).
    SuitesAndLocal,
}

/// The venv of `[python]` with its requirements; see [`python_env_with`].
pub async fn python_env(config: &Config) -> anyhow::Result<PythonEnv> {
    python_env_with(config, Requirements::Suites).await
}

/// Creates or reuses the venv at `[python] venv` and installs the requirement files with pip. The
/// venv is reused while the interpreter and the files' contents are unchanged (one digest per
/// file installed is kept in `<venv>/.xtask-requirements.sha`). Concurrent callers wait on a lock
/// file beside the venv. Files a requirement file includes (`-r other.txt`) are not part of the
/// digest.
pub async fn python_env_with(
    config: &Config,
    requirements: Requirements,
) -> anyhow::Result<PythonEnv> {
    let mut files: Vec<PathBuf> = config
        .python
        .requirements
        .iter()
        .map(|r| config.resolve(r))
        .collect();
    if requirements == Requirements::SuitesAndLocal {
        if let Some(local) = &config.targets.local {
            files.extend(local.requirements.iter().map(|r| config.resolve(r)));
        }
    }
    prepare(config, files).await
}

/// Installs more requirement files (relative to the root, e.g. `[targets.local] requirements`)
/// into the venv of `py`, with the same reuse rule, and returns its interpreter.
pub async fn ensure_requirements(
    config: &Config,
    py: &PythonEnv,
    files: &[PathBuf],
) -> anyhow::Result<PathBuf> {
    let mut all: Vec<PathBuf> = config
        .python
        .requirements
        .iter()
        .chain(files)
        .map(|r| config.resolve(r))
        .collect();
    all.dedup();
    let ready = prepare(config, all).await?;
    debug_assert_eq!(ready.venv, py.venv);
    Ok(ready.python)
}

async fn prepare(config: &Config, files: Vec<PathBuf>) -> anyhow::Result<PythonEnv> {
    let started = Instant::now();
    let venv = config.resolve(&config.python.venv);
    let python = venv_python(&venv);
    let log = config.work_dir().join("pip.log");
    // One digest per requirement file; the stamp holds the digests of everything installed, so
    // that a venv set up for the local target (more files) also serves the others.
    let digests = requirements_digests(&config.python.interpreter, &files)?;
    let stamp = venv.join(REQUIREMENTS_STAMP);
    let installed = || -> BTreeSet<String> {
        std::fs::read_to_string(&stamp)
            .map(|text| text.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let up_to_date = || python.is_file() && digests.is_subset(&installed());
    let ready = |reused| PythonEnv {
        venv: venv.clone(),
        python: python.clone(),
        reused,
        duration: started.elapsed(),
        log: log.clone(),
    };
    if up_to_date() {
        return Ok(ready(true));
    }

    let lock_path = PathBuf::from(format!("{}.lock", venv.display()));
    let _lock = FileLock::acquire(&lock_path, PIP_TIMEOUT).await?;
    if up_to_date() {
        return Ok(ready(true));
    }
    std::fs::create_dir_all(config.work_dir())
        .with_context(|| format!("cannot create {}", config.work_dir().display()))?;
    let mut already = installed();
    if !is_whole(&venv) {
        already.clear();
        let mut create = Cmd::new(&config.python.interpreter).args(["-m", "venv"]);
        if venv.exists() {
            create = create.arg("--clear");
        }
        let run = super::runner::command(create.arg(&venv))
            .current_dir(&config.root)
            .log_to(&log)
            .output(PIP_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "cannot run `{} -m venv` (key `python.interpreter`)",
                    config.python.interpreter
                )
            })?;
        if !run.success() {
            anyhow::bail!(
                "`{} -m venv {}` failed ({}); see {}:\n{}",
                config.python.interpreter,
                venv.display(),
                run.describe(),
                log.display(),
                junit::keep_tail(&super::runner::printed(&run), ERROR_TAIL)
            );
        }
    }
    let _ = std::fs::remove_file(&stamp);
    if !files.is_empty() {
        let mut pip = Cmd::new(&python).args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
        ]);
        for file in &files {
            pip = pip.arg("-r").arg(file);
        }
        let run = super::runner::command(pip)
            .current_dir(&config.root)
            .log_to(&log)
            .output(PIP_TIMEOUT)
            .await
            .context("cannot run pip")?;
        if !run.success() {
            anyhow::bail!(
                "pip could not install {} ({}); see {}:\n{}",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                run.describe(),
                log.display(),
                junit::keep_tail(&super::runner::printed(&run), ERROR_TAIL)
            );
        }
    }
    already.extend(digests);
    let lines: Vec<String> = already.into_iter().collect();
    std::fs::write(&stamp, lines.join("\n") + "\n")
        .with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(ready(false))
}

/// Whether a venv has its interpreter and its pip: one whose `python -m venv` was cut off
/// (killed, out of disk) has the first without the second, and is made again (`--clear`)
/// rather than failing every later run with "No module named pip".
fn is_whole(venv: &Path) -> bool {
    let pip = venv_bin(venv).join(if cfg!(windows) { "pip.exe" } else { "pip" });
    venv_python(venv).is_file() && pip.is_file()
}

/// The directory of a venv's programs: `Scripts` on Windows, `bin` elsewhere.
pub fn venv_bin(venv: &Path) -> PathBuf {
    venv.join(if cfg!(windows) { "Scripts" } else { "bin" })
}

/// A venv's interpreter: `Scripts\python.exe` on Windows, `bin/python` elsewhere.
pub fn venv_python(venv: &Path) -> PathBuf {
    venv_bin(venv).join(if cfg!(windows) {
        "python.exe"
    } else {
        "python"
    })
}

/// `dir` first, then the entries of a search path such as PATH or PYTHONPATH (`;`-separated on
/// Windows, `:` elsewhere).
pub fn prepend_to_search_path(dir: &Path, existing: Option<&str>) -> String {
    let mut entries = vec![dir.to_path_buf()];
    if let Some(existing) = existing.filter(|e| !e.is_empty()) {
        entries.extend(std::env::split_paths(existing));
    }
    match std::env::join_paths(&entries) {
        Ok(joined) => joined.to_string_lossy().into_owned(),
        // An entry holding the separator itself: keep the directory alone rather than break both.
        Err(_) => dir.display().to_string(),
    }
}

fn requirements_digests(interpreter: &str, files: &[PathBuf]) -> anyhow::Result<BTreeSet<String>> {
    let mut digests = BTreeSet::new();
    for file in files {
        let bytes = std::fs::read(file)
            .with_context(|| format!("cannot read requirements {}", file.display()))?;
        // Contents only: the same files elsewhere (a copy of the repository) need no reinstall.
        let mut hash = Fnv::new();
        hash.write(interpreter.as_bytes());
        hash.write(b"\0");
        hash.write(&bytes);
        digests.insert(format!("{:016x}", hash.finish()));
    }
    Ok(digests)
}

/// An exclusive lock on a file (advisory, as `flock`), released on drop.
struct FileLock {
    file: std::fs::File,
}

impl FileLock {
    async fn acquire(path: &Path, deadline: Duration) -> anyhow::Result<FileLock> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()))
                }
            }
            if started.elapsed() > deadline {
                anyhow::bail!(
                    "waited {}s for {} (another harness is installing the venv)",
                    deadline.as_secs(),
                    path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file would release it too; unlocking says so where it matters.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_held_lock_makes_the_second_caller_wait_until_its_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("venv.lock");
        let first = FileLock::acquire(&path, Duration::from_secs(1))
            .await
            .unwrap();
        let error = FileLock::acquire(&path, Duration::from_millis(200))
            .await
            .err()
            .expect("the second caller waits for the first");
        assert!(
            error.to_string().contains("another harness is installing"),
            "{error:#}"
        );
        drop(first);
        FileLock::acquire(&path, Duration::from_secs(1))
            .await
            .expect("released on drop");
    }

    #[test]
    fn a_venv_cut_off_before_its_pip_is_not_whole() {
        let dir = tempfile::tempdir().unwrap();
        let venv = dir.path().join("venv");
        assert!(!is_whole(&venv), "no venv at all");
        std::fs::create_dir_all(venv_bin(&venv)).unwrap();
        std::fs::write(venv_python(&venv), "").unwrap();
        assert!(!is_whole(&venv), "an interpreter without pip");
        let pip = if cfg!(windows) { "pip.exe" } else { "pip" };
        std::fs::write(venv_bin(&venv).join(pip), "").unwrap();
        assert!(is_whole(&venv));
    }

    #[test]
    fn venv_programs_and_search_paths_follow_the_platform() {
        let venv = Path::new("my venv");
        let separator = if cfg!(windows) { ";" } else { ":" };
        if cfg!(windows) {
            assert_eq!(venv_python(venv), Path::new(r"my venv\Scripts\python.exe"));
        } else {
            assert_eq!(venv_python(venv), Path::new("my venv/bin/python"));
        }
        let existing = format!("first{separator}second");
        assert_eq!(
            prepend_to_search_path(Path::new("plugin dir"), Some(&existing)),
            format!("plugin dir{separator}first{separator}second")
        );
        assert_eq!(
            prepend_to_search_path(Path::new("plugin dir"), Some("")),
            "plugin dir"
        );
    }

    #[cfg(windows)]
    #[test]
    fn windows_venv_python_is_scripts_python_exe_under_a_drive_path_with_spaces() {
        let venv = Path::new(r"C:\Users\Jane Doe\repo\target\xtask\venv");
        assert_eq!(
            venv_python(venv).display().to_string(),
            r"C:\Users\Jane Doe\repo\target\xtask\venv\Scripts\python.exe"
        );
        assert_eq!(
            prepend_to_search_path(
                &venv_bin(venv),
                Some(r"C:\Windows;C:\Program Files\Git\cmd")
            ),
            r"C:\Users\Jane Doe\repo\target\xtask\venv\Scripts;C:\Windows;C:\Program Files\Git\cmd"
        );
    }

    #[test]
    fn digests_follow_the_interpreter_and_the_contents() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("requirements.txt");
        std::fs::write(&file, "pytest\n").unwrap();
        let one = requirements_digests("python3", std::slice::from_ref(&file)).unwrap();
        assert_eq!(
            one,
            requirements_digests("python3", std::slice::from_ref(&file)).unwrap()
        );
        assert_ne!(
            one,
            requirements_digests("python3.12", std::slice::from_ref(&file)).unwrap()
        );
        std::fs::write(&file, "pytest\n# changed\n").unwrap();
        assert_ne!(
            one,
            requirements_digests("python3", std::slice::from_ref(&file)).unwrap()
        );
    }
}
