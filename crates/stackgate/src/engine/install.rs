//! Installing packages with apt-get on Debian or Ubuntu: the engine's (`--install`) and the
//! project's (`ci`), and the remedy to print when an engine is missing on each platform.
//!
//! Not here: starting the installed engine ([`super::start`]).

use std::path::Path;
use std::time::{Duration, Instant};

use super::os;
use super::{HostFacts, Platform};
use crate::error::Failure;
use crate::process::Cmd;
use crate::progress::Progress;
use crate::report::Check;

/// The engine packages `--install` puts on Debian or Ubuntu.
pub const ENGINE_PACKAGES: &[&str] = &["docker.io", "docker-compose"];

/// How long one apt-get call may take: a slow mirror, a few hundred MB at most.
const APT_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The remedy for "no engine installed", for this platform.
pub fn install_remedy(platform: Platform) -> String {
    match platform {
        Platform::Linux if is_debian_like() => {
            "run `cargo xtask docker-up --install` as root, or `apt-get install -y docker.io docker-compose`"
                .to_owned()
        }
        Platform::Linux => {
            "install the Docker engine with your distribution's packages (https://docs.docker.com/engine/install/)"
                .to_owned()
        }
        Platform::Macos => {
            "install Docker Desktop (https://docs.docker.com/desktop/install/mac-install/) or colima (`brew install colima docker`)"
                .to_owned()
        }
        Platform::Windows => {
            "install Docker Desktop (https://docs.docker.com/desktop/install/windows-install/)".to_owned()
        }
    }
}

/// Debian, Ubuntu and derivatives (apt-get and dpkg-query present).
pub fn is_debian_like() -> bool {
    Path::new("/etc/debian_version").exists() && which::which("apt-get").is_ok()
}

/// Installs the Debian packages among `packages` that are missing (`apt-get update`, then
/// `apt-get install -y`, their output shown on stderr); returns whether it installed anything.
/// Needs root on Debian or Ubuntu.
pub async fn install_packages(packages: &[&str], progress: &Progress) -> anyhow::Result<bool> {
    let mut missing: Vec<&str> = Vec::new();
    for package in packages {
        if !package_installed(package).await {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(false);
    }
    if !is_debian_like() {
        return Err(Failure::unavailable(
            format!(
                "cannot install {}: this is not Debian or Ubuntu (no apt-get)",
                missing.join(", ")
            ),
            Some(install_remedy(Platform::current())),
        )
        .into());
    }
    if !os::is_root() {
        return Err(Failure::unavailable(
            format!("installing {} needs root", missing.join(", ")),
            Some(format!(
                "run as root, or `sudo apt-get install -y {}`",
                missing.join(" ")
            )),
        )
        .into());
    }
    let mut install = vec!["apt-get", "install", "-y"];
    install.extend(&missing);
    for argv in [vec!["apt-get", "update"], install] {
        let shown = argv.join(" ");
        progress.say(format!("running `{shown}`"));
        // For people: apt-get's progress is the progress of this step.
        let finished = Cmd::from_argv(&argv)?
            .env("DEBIAN_FRONTEND", "noninteractive")
            .show_output()
            .output(APT_DEADLINE)
            .await?;
        anyhow::ensure!(
            finished.success(),
            "`{shown}` failed: {}",
            finished.describe()
        );
    }
    progress.say(format!("installed {}", missing.join(", ")));
    Ok(true)
}

/// Whether dpkg says the package is installed.
pub async fn package_installed(package: &str) -> bool {
    Cmd::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output(Duration::from_secs(30))
        .await
        .is_ok_and(|finished| finished.stdout.contains("install ok installed"))
}

/// `--install`: puts the engine packages on Debian or Ubuntu when they are missing.
pub(super) async fn install_engine_packages(
    platform: Platform,
    began: Instant,
    progress: &Progress,
) -> anyhow::Result<Option<Check>> {
    if platform != Platform::Linux || !is_debian_like() {
        if HostFacts::detect().installed() {
            return Ok(None);
        }
        return Err(Failure::unavailable(
            "`--install` installs the engine only on Debian or Ubuntu",
            Some(install_remedy(platform)),
        )
        .into());
    }
    let installed = install_packages(ENGINE_PACKAGES, progress).await?;
    Ok(installed.then(|| {
        Check::passed(
            "engine installed",
            began.elapsed(),
            format!(
                "installed the missing ones of {}",
                ENGINE_PACKAGES.join(", ")
            ),
        )
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remedies_name_the_platform_way() {
        assert!(install_remedy(Platform::Macos).contains("Docker Desktop"));
        assert!(install_remedy(Platform::Windows).contains("Docker Desktop"));
        let linux = install_remedy(Platform::Linux);
        assert!(linux.contains("docker.io") || linux.contains("engine/install"));
    }
}
