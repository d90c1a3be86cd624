//! The stack: `docker-up`, `health`, `docker-down` on top of [crate::compose] and [crate::engine].

use crate::Ctx;

impl crate::flags::DockerUp {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`docker-up` is not implemented yet")
    }
}

impl crate::flags::Health {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`health` is not implemented yet")
    }
}

impl crate::flags::DockerDown {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`docker-down` is not implemented yet")
    }
}
