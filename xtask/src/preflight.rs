//! Pre-flight checks (`doctor`): memory, disk, CPU, ports, other runtimes, engine socket, compose, Python.

use crate::Ctx;

impl crate::flags::Doctor {
    pub async fn run(self, _ctx: &Ctx) -> anyhow::Result<()> {
        anyhow::bail!("`doctor` is not implemented yet")
    }
}
