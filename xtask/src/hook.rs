//! `install-hook`: installs ci/pre-push into this clone.

use crate::Ctx;

impl crate::flags::InstallHook {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`install-hook` is not implemented yet")
    }
}
