//! The stack: `docker-up`, `health`, `docker-down` on top of [crate::compose] and [crate::engine].

use crate::Ctx;

impl crate::flags::DockerUp {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        if self.engine_only {
            let options = crate::engine::EnsureOptions {
                install: self.install,
            };
            return crate::engine::run_engine_only(&_ctx.config()?, &options, self.json).await;
        }
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

/// CONTRACT (used by monitor and the gate): the health of the recorded run, without printing.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct HealthSnapshot {
    /// Engine answered.
    pub engine_ok: bool,
    /// Every service of the recorded run is healthy (or running when it has no healthcheck).
    pub all_healthy: bool,
    /// One line per problem, naming the service.
    pub problems: Vec<String>,
}

/// Takes one health snapshot of the recorded run.
pub async fn health_snapshot(_config: &crate::config::Config) -> anyhow::Result<HealthSnapshot> {
    anyhow::bail!("stack::health_snapshot is not implemented yet")
}
