//! `install-hook`: installs the pre-push hook (the gate before every push, `assets/pre-push`,
//! embedded) into this clone's hooks.

use anyhow::Context;
use xshell::{cmd, Shell};

use crate::error::Failure;
use crate::{ui, Ctx};

/// The line that marks a hook as ours, so that re-installing may replace it.
const MARKER: &str = "installed by cargo xtask install-hook";

/// The hook: embedded, so that the packaged crate needs nothing from this repository.
pub const HOOK: &str = include_str!("../../assets/pre-push");

impl crate::flags::InstallHook {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let hook = HOOK;
        let sh = Shell::new()?;
        sh.change_dir(&config.root);
        let hooks_dir = cmd!(sh, "git rev-parse --git-path hooks")
            .read()
            .context("not a git clone")?;
        let target = config.root.join(hooks_dir.trim()).join("pre-push");
        if let Ok(existing) = std::fs::read_to_string(&target) {
            if !existing.contains(MARKER) && !self.force {
                return Err(Failure::config(format!(
                    "{} exists and was not written by the harness",
                    target.display()
                ))
                .with_hint("move it away, or pass --force to replace it")
                .into());
            }
        }
        std::fs::create_dir_all(target.parent().unwrap_or(&config.root))?;
        std::fs::write(&target, hook)
            .with_context(|| format!("cannot write {}", target.display()))?;
        // Git for Windows runs hooks through its own sh whatever their mode.
        #[cfg(unix)]
        std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        ui::say(format!(
            "installed {} (skip once with XTASK_SKIP_GATE=1 git push)",
            target.display()
        ));
        Ok(())
    }
}
