//! `monitor`: health and a one-user ws-check on a schedule; uptime, outages, latency percentiles.

use crate::Ctx;

impl crate::flags::Monitor {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`monitor` is not implemented yet")
    }
}
