//! `ci`: the project's own checks, as `.ci/run` calls them.

use crate::Ctx;

impl crate::flags::Ci {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`ci` is not implemented yet")
    }
}
