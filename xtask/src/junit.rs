//! The JUnit report: building, sanitising, writing atomically, merging (`junit-merge`).

use crate::Ctx;

impl crate::flags::JunitMerge {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`junit-merge` is not implemented yet")
    }
}
