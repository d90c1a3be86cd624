//! Base images (`[images]`): present, else pulled, else built locally with debootstrap when no
//! registry answers. `provision` is called by docker-up, the gate and ci after the engine is up;
//! it prints nothing (what it waits for goes to the caller's [`Progress`]).
//!
//! The recipe (docs/engine.md): `debootstrap --variant=minbase SUITE ROOTFS MIRROR` with the mirror the
//! host's apt sources name, then the rootfs is streamed as a tar into the engine's import
//! (`POST /images/create?fromSrc=-`, what `docker import` does). The temporary rootfs is always
//! removed (unmounting what debootstrap left mounted: the Linux-specific part, at the end of this
//! file); no image is ever deleted here. debootstrap exists only on Linux: on macOS and Windows an
//! image that cannot be pulled is a failed check that says so and names the other ways (a pull,
//! `docker load`, `smoke_fallback_image`).
//!
//! Not here: starting the engine, pulling and the smoke container ([`crate::engine`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;

use crate::config::{Config, ImageCfg, Provision};
use crate::engine::{self, Engine};
use crate::error::Failure;
use crate::process::Cmd;
use crate::progress::Progress;
use crate::report::Check;
use crate::ui;

/// The mirror used when neither the config nor the host's apt sources name one.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// How long tar may take to exit once the import has read all it wrote.
const TAR_EXIT_DEADLINE: Duration = Duration::from_secs(30);

/// debootstrap builds Debian root filesystems on Linux only.
const DEBOOTSTRAP_HERE: bool = cfg!(target_os = "linux");

/// Makes every `[images]` entry present; one check per image (idempotent: fast when present).
pub async fn provision(
    engine: &Engine,
    config: &Config,
    progress: &Progress,
) -> anyhow::Result<Vec<Check>> {
    let mut checks = Vec::new();
    for (name, image) in &config.images {
        checks.push(provision_one(engine, config, name, image, progress).await?);
    }
    Ok(checks)
}

/// One image: present → passed at once; else pulled; else (debootstrap) built and imported.
/// A configuration problem (no suite to be had) is an error; everything else is a check.
pub async fn provision_one(
    engine: &Engine,
    config: &Config,
    name: &str,
    image: &ImageCfg,
    progress: &Progress,
) -> anyhow::Result<Check> {
    let began = Instant::now();
    let check_name = format!("image {name}");
    let docker = &engine.docker;
    if engine::image_present(docker, name).await {
        return Ok(Check::passed(
            check_name,
            began.elapsed(),
            "present".to_owned(),
        ));
    }
    let deadline = image.timeout_s.duration();
    let pull_deadline = engine::PULL_DEADLINE.min(deadline);
    let pulling = engine::pull(docker, name, pull_deadline);
    let what = format!("the pull of `{name}`");
    let pull_error = match progress.while_waiting(&what, pull_deadline, pulling).await {
        Ok(()) => {
            return Ok(Check::passed(
                check_name,
                began.elapsed(),
                format!("pulled in {}", ui::duration(began.elapsed())),
            ))
        }
        Err(e) => format!("{e:#}"),
    };
    match image.provision {
        Provision::Pull => Ok(Check::failed(check_name, began.elapsed(), pull_error)
            .with_remedy(format!(
                "make a registry reachable, load the image (`docker load`), or set `provision = \"debootstrap\"` under [images.\"{name}\"]"
            ))),
        Provision::Debootstrap if !DEBOOTSTRAP_HERE => Ok(Check::failed(
            check_name,
            began.elapsed(),
            format!(
                "cannot be pulled ({pull_error}), and `provision = \"debootstrap\"` cannot build it here: debootstrap exists only on Linux, not on {}",
                std::env::consts::OS
            ),
        )
        .with_remedy(format!(
            "make a registry reachable, load the image (`docker load -i FILE`), or set `smoke_fallback_image` under [engine] to an image the engine has (and `provision = \"pull\"` under [images.\"{name}\"])"
        ))),
        Provision::Debootstrap => {
            let suite = match &image.suite {
                Some(suite) => suite.clone(),
                None => suite_from_reference(name).ok_or_else(|| {
                    Failure::config(format!(
                        "{}: key `images.\"{name}\".suite`: the tag of `{name}` names no Debian or Ubuntu release; set `suite`",
                        config.path.display()
                    ))
                })?,
            };
            let mirror = image
                .mirror
                .clone()
                .or_else(|| host_mirror(Path::new("/etc/apt"), &suite))
                .unwrap_or_else(|| DEFAULT_MIRROR.to_owned());
            progress.say(format!(
                "image {name} is absent and cannot be pulled ({pull_error}); building it with debootstrap {suite} from {mirror}"
            ));
            let remaining = deadline.saturating_sub(began.elapsed());
            let recipe = Recipe { suite: &suite, variant: &image.variant, mirror: &mirror };
            match build_with_debootstrap(engine, config, name, &recipe, remaining, progress)
                .await
            {
                Ok(detail) => Ok(Check::passed(
                    check_name,
                    began.elapsed(),
                    format!("built with debootstrap in {}: {detail}", ui::duration(began.elapsed())),
                )),
                Err(e) => {
                    let hint = e
                        .chain()
                        .find_map(|c| c.downcast_ref::<Failure>())
                        .and_then(Failure::hint)
                        .map(str::to_owned);
                    let check = Check::failed(
                        check_name,
                        began.elapsed(),
                        format!("cannot be pulled ({pull_error}) and debootstrap failed: {e:#}"),
                    );
                    Ok(match hint {
                        Some(hint) => check.with_remedy(hint),
                        None => check,
                    })
                }
            }
        }
    }
}

/// `debian:bookworm-slim` → `bookworm`, `debian:12` → `bookworm`, `ubuntu:24.04` → `noble`.
pub fn suite_from_reference(name: &str) -> Option<String> {
    let (_, tag) = engine::split_reference(name);
    let first = tag.split(['-', '_']).next().unwrap_or(tag);
    let by_number = [
        ("10", "buster"),
        ("11", "bullseye"),
        ("12", "bookworm"),
        ("13", "trixie"),
        ("20.04", "focal"),
        ("22.04", "jammy"),
        ("24.04", "noble"),
    ];
    if let Some((_, codename)) = by_number.iter().find(|(number, _)| *number == first) {
        return Some((*codename).to_owned());
    }
    let known = [
        "buster", "bullseye", "bookworm", "trixie", "forky", "sid", "focal", "jammy", "noble",
        "oracular", "plucky",
    ];
    known.contains(&first).then(|| first.to_owned())
}

/// One `deb` entry of the apt sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    pub uri: String,
    pub suites: Vec<String>,
}

/// Parses one-line `sources.list` text (`deb [opts] URI SUITE COMPONENTS...`).
pub fn parse_sources_list(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let mut rest = rest.trim_start();
        if rest.starts_with('[') {
            match rest.find(']') {
                Some(end) => rest = rest[end + 1..].trim_start(),
                None => continue,
            }
        }
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            sources.push(AptSource {
                uri: uri.to_owned(),
                suites: vec![suite.to_owned()],
            });
        }
    }
    sources
}

/// Parses deb822 `.sources` text (stanzas of `Types:`, `URIs:`, `Suites:`, ...).
pub fn parse_deb822(text: &str) -> Vec<AptSource> {
    let mut sources = Vec::new();
    for stanza in text.split("\n\n") {
        let mut types = Vec::new();
        let mut uris = Vec::new();
        let mut suites = Vec::new();
        let mut enabled = true;
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let values = || {
                value
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "types" => types = values(),
                "uris" => uris = values(),
                "suites" => suites = values(),
                "enabled" => enabled = !value.trim().eq_ignore_ascii_case("no"),
                _ => {}
            }
        }
        if enabled && types.iter().any(|t| t == "deb") {
            for uri in uris {
                sources.push(AptSource {
                    uri,
                    suites: suites.clone(),
                });
            }
        }
    }
    sources
}

/// The mirror the host's apt uses for `suite` (else its first non-security mirror).
pub fn host_mirror(apt_dir: &Path, suite: &str) -> Option<String> {
    let mut sources = Vec::new();
    if let Ok(text) = std::fs::read_to_string(apt_dir.join("sources.list")) {
        sources.extend(parse_sources_list(&text));
    }
    if let Ok(entries) = std::fs::read_dir(apt_dir.join("sources.list.d")) {
        let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("sources") => sources.extend(parse_deb822(&text)),
                Some("list") => sources.extend(parse_sources_list(&text)),
                _ => {}
            }
        }
    }
    choose_mirror(&sources, suite)
}

/// The entry that carries `suite` itself, else the first that is not a security archive.
pub fn choose_mirror(sources: &[AptSource], suite: &str) -> Option<String> {
    sources
        .iter()
        .find(|s| s.suites.iter().any(|x| x == suite))
        .or_else(|| sources.iter().find(|s| !s.uri.contains("security")))
        .map(|s| s.uri.trim_end_matches('/').to_owned())
}

/// What debootstrap builds: `debootstrap --variant=VARIANT SUITE ROOTFS MIRROR`.
struct Recipe<'a> {
    suite: &'a str,
    variant: &'a str,
    mirror: &'a str,
}

/// Runs debootstrap into a temporary rootfs under `target/xtask`, imports it as `name`, and
/// removes the rootfs whatever happened.
async fn build_with_debootstrap(
    engine: &Engine,
    config: &Config,
    name: &str,
    recipe: &Recipe<'_>,
    deadline: Duration,
    progress: &Progress,
) -> anyhow::Result<String> {
    let debootstrap = which::which("debootstrap")
        .ok()
        .or_else(|| {
            let path = PathBuf::from("/usr/sbin/debootstrap");
            path.is_file().then_some(path)
        })
        .ok_or_else(|| {
            Failure::unavailable(
                "debootstrap is not installed",
                Some(
                    "`apt-get install -y debootstrap` as root (`cargo xtask ci` installs it)"
                        .to_owned(),
                ),
            )
        })?;
    let safe_name: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let rootfs = config
        .work_dir()
        .join(format!("rootfs-{safe_name}-{}", crate::state::new_run_id()));
    std::fs::create_dir_all(&rootfs)
        .with_context(|| format!("cannot create {}", rootfs.display()))?;
    let result = async {
        let began = Instant::now();
        let argv = vec![
            debootstrap.to_string_lossy().into_owned(),
            format!("--variant={}", recipe.variant),
            recipe.suite.to_owned(),
            rootfs.to_string_lossy().into_owned(),
            recipe.mirror.to_owned(),
        ];
        let shown = argv.join(" ");
        progress.say(format!(
            "running `{shown}` (deadline {})",
            ui::duration(deadline)
        ));
        // Killed at once at the deadline; whatever it left mounted goes with the rootfs below.
        let running = Cmd::from_argv(&argv)?.on_deadline(&[]).output(deadline);
        let finished = progress
            .while_waiting("debootstrap", deadline, running)
            .await?;
        anyhow::ensure!(
            !finished.timed_out,
            "`{shown}` did not finish within {}; it was killed",
            ui::duration(deadline)
        );
        anyhow::ensure!(
            finished.success(),
            "`{shown}` exited with {}: {}",
            finished
                .code()
                .map_or("a signal".to_owned(), |c| c.to_string()),
            finished.tail(8)
        );
        let bootstrapped = began.elapsed();
        let remaining = deadline.saturating_sub(began.elapsed());
        let id = import_rootfs(engine, &rootfs, name, remaining, progress).await?;
        Ok(format!(
            "debootstrap {}, import {}, image {}",
            ui::duration(bootstrapped),
            ui::duration(began.elapsed() - bootstrapped),
            id
        ))
    }
    .await;
    if let Err(e) = remove_rootfs(&rootfs) {
        progress.say(format!("warning: {e:#}"));
    }
    result
}

/// Streams `tar -C ROOTFS -c .` into the engine's import as `name` (what `docker import` does),
/// then proves the engine knows the image by that name. The image's id.
pub async fn import_rootfs(
    engine: &Engine,
    rootfs: &Path,
    name: &str,
    deadline: Duration,
    progress: &Progress,
) -> anyhow::Result<String> {
    let mut tar = Cmd::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(rootfs)
        .args(["-c", "."])
        .pipe_stdout()
        .spawn()?;
    let stdout = tar.take_stdout().context("tar has no stdout")?;
    let body = futures_util::stream::unfold(stdout, |mut stdout| async move {
        let mut buffer = vec![0u8; 256 * 1024];
        match stdout.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(hyper::body::Bytes::from(buffer)), stdout))
            }
            Err(e) => Some((Err(e), stdout)),
        }
    });
    // The whole reference goes in `repo` ("the repo may include a tag", says the engine API):
    // podman's compatible API ignores `tag` and would name the image `repo:latest`.
    let options = bollard::query_parameters::CreateImageOptions {
        from_src: Some("-".to_owned()),
        repo: Some(name.to_owned()),
        // Like the images on Docker Hub: a shell when nothing else is said.
        changes: vec![r#"CMD ["bash"]"#.to_owned()],
        message: Some("built by cargo xtask with debootstrap".to_owned()),
        ..Default::default()
    };
    let importing = async {
        let mut stream =
            engine
                .docker
                .create_image(Some(options), Some(bollard::body_try_stream(body)), None);
        let mut last = String::new();
        while let Some(item) = stream.next().await {
            let info = item.with_context(|| format!("importing the rootfs as {name}"))?;
            if let Some(status) = info.status {
                last = status;
            }
        }
        Ok::<String, anyhow::Error>(last)
    };
    let what = format!("the import of {name}");
    let importing = progress.while_waiting(&what, deadline, importing);
    let imported = tokio::time::timeout(deadline, importing)
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "import of {name} did not finish within {}",
                ui::duration(deadline)
            )
        })??;
    // The import read tar's output to its end: tar only has to exit.
    let finished = tar.wait(TAR_EXIT_DEADLINE).await?;
    anyhow::ensure!(
        finished.success(),
        "`tar -C {} -c .` failed ({}): {}",
        rootfs.display(),
        finished.describe(),
        finished.stderr.trim()
    );
    let id = imported.trim().to_owned();
    ensure_tagged(engine, name, &id).await?;
    Ok(id)
}

/// Makes sure the imported image `id` answers to `name`: an engine that dropped the name gets it
/// put on with a tag; the error says what the engine did instead.
async fn ensure_tagged(engine: &Engine, name: &str, id: &str) -> anyhow::Result<()> {
    if engine::image_present(&engine.docker, name).await {
        return Ok(());
    }
    let (repo, tag) = engine::split_reference(name);
    let tagged = engine
        .docker
        .tag_image(
            id,
            Some(bollard::query_parameters::TagImageOptions {
                repo: Some(repo.to_owned()),
                tag: Some(tag.to_owned()),
            }),
        )
        .await;
    if engine::image_present(&engine.docker, name).await {
        return Ok(());
    }
    let names = engine
        .docker
        .inspect_image(id)
        .await
        .ok()
        .and_then(|image| image.repo_tags)
        .unwrap_or_default();
    Err(anyhow::anyhow!(
        "the engine at {} imported the rootfs as {id} but not as `{name}` (its names: {}){}",
        engine.info.host,
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        },
        match tagged {
            Ok(()) => String::new(),
            Err(e) => format!("; tagging it failed: {e}"),
        }
    ))
}

// ---------------------------------------------------------------------------------------------
// Linux only: what debootstrap leaves mounted in its rootfs.

/// Removes a rootfs: unmounts whatever debootstrap left mounted inside it (a killed run may
/// leave /proc or /dev bound), and never crosses into another filesystem.
#[cfg(target_os = "linux")]
pub fn remove_rootfs(rootfs: &Path) -> anyhow::Result<()> {
    if !rootfs.exists() {
        return Ok(());
    }
    let rootfs = rootfs
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", rootfs.display()))?;
    for mount in mounts_under(&rootfs) {
        let path = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes())?;
        // SAFETY: detaches a mount under our own temporary rootfs.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
    let device = device_of(&rootfs)?;
    remove_same_fs(&rootfs, device)
        .with_context(|| format!("cannot remove the temporary rootfs {}", rootfs.display()))
}

/// Removes a rootfs. debootstrap never ran here (it exists only on Linux), so nothing is mounted.
#[cfg(not(target_os = "linux"))]
pub fn remove_rootfs(rootfs: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(rootfs) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e)
            .with_context(|| format!("cannot remove the temporary rootfs {}", rootfs.display())),
        _ => Ok(()),
    }
}

/// Mount points under `dir`, deepest first.
#[cfg(target_os = "linux")]
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .filter(|path| path.starts_with(dir) && path != dir)
        .collect();
    mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    mounts
}

#[cfg(target_os = "linux")]
fn device_of(path: &Path) -> anyhow::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::symlink_metadata(path)
        .with_context(|| format!("cannot stat {}", path.display()))?
        .dev())
}

#[cfg(target_os = "linux")]
fn remove_same_fs(dir: &Path, device: u64) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            if meta.dev() != device {
                // Still mounted after the unmount: leave it rather than delete another filesystem.
                return Err(std::io::Error::other(format!(
                    "{} is another filesystem",
                    path.display()
                )));
            }
            remove_same_fs(&path, device)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    std::fs::remove_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_come_from_the_tag() {
        assert_eq!(
            suite_from_reference("debian:bookworm-slim").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            suite_from_reference("debian:bookworm").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            suite_from_reference("xtask-test-1a-2:bookworm").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            suite_from_reference("debian:12-slim").as_deref(),
            Some("bookworm")
        );
        assert_eq!(
            suite_from_reference("ubuntu:24.04").as_deref(),
            Some("noble")
        );
        assert_eq!(
            suite_from_reference("debian:trixie-20250520").as_deref(),
            Some("trixie")
        );
        assert_eq!(suite_from_reference("debian"), None);
        assert_eq!(suite_from_reference("myapp:latest"), None);
    }

    #[test]
    fn one_line_sources() {
        let text = "# comment\n\
            deb http://deb.debian.org/debian bookworm main contrib\n\
            deb-src http://deb.debian.org/debian bookworm main\n\
            deb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian/ bookworm-updates main\n\
            deb http://security.debian.org/debian-security bookworm-security main # trailing\n";
        let sources = parse_sources_list(text);
        assert_eq!(sources.len(), 3);
        assert_eq!(sources[1].uri, "http://mirror.example/debian/");
        assert_eq!(sources[1].suites, vec!["bookworm-updates"]);
        assert_eq!(
            choose_mirror(&sources, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
    }

    #[test]
    fn deb822_sources_like_this_machine() {
        // /etc/apt/sources.list.d/debian.sources of this machine.
        let text = "Types: deb\n\
            # http://snapshot.debian.org/archive/debian/20250520T000000Z\n\
            URIs: http://deb.debian.org/debian\n\
            Suites: bookworm bookworm-updates\n\
            Components: main\n\
            Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\
            \n\
            Types: deb\n\
            URIs: http://deb.debian.org/debian-security\n\
            Suites: bookworm-security\n\
            Components: main\n";
        let sources = parse_deb822(text);
        assert_eq!(sources.len(), 2);
        assert_eq!(
            choose_mirror(&sources, "bookworm").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        // A suite the host does not carry: the first mirror that is not a security archive.
        let security_first: Vec<AptSource> = sources.iter().rev().cloned().collect();
        assert_eq!(
            choose_mirror(&security_first, "trixie").as_deref(),
            Some("http://deb.debian.org/debian")
        );
        let disabled =
            "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n";
        assert!(parse_deb822(disabled).is_empty());
        assert!(parse_deb822("Types: deb-src\nURIs: http://x/\nSuites: bookworm\n").is_empty());
    }

    #[test]
    fn host_mirror_reads_both_formats_from_an_apt_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(host_mirror(dir.path(), "bookworm"), None);
        std::fs::create_dir_all(dir.path().join("sources.list.d")).unwrap();
        std::fs::write(
            dir.path().join("sources.list.d/debian.sources"),
            "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n",
        )
        .unwrap();
        std::fs::write(
            dir.path()
                .join("sources.list.d/other.list.disabled-by-farm"),
            "deb http://ignored.example/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(dir.path(), "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
        std::fs::write(
            dir.path().join("sources.list"),
            "deb http://first.example/debian bookworm main\n",
        )
        .unwrap();
        assert_eq!(
            host_mirror(dir.path(), "bookworm").as_deref(),
            Some("http://first.example/debian")
        );
    }

    #[cfg(unix)]
    #[test]
    fn rootfs_removal_removes_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("usr/bin")).unwrap();
        std::fs::write(rootfs.join("usr/bin/tool"), "x").unwrap();
        std::os::unix::fs::symlink("/etc", rootfs.join("etc-link")).unwrap();
        remove_rootfs(&rootfs).unwrap();
        assert!(!rootfs.exists());
        assert!(
            Path::new("/etc").exists(),
            "a symlink is removed, not followed"
        );
        remove_rootfs(&rootfs).unwrap();
    }
}
