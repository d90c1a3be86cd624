//! Base images: pull, or build locally with debootstrap when no registry answers.
//!
//! CONTRACT: `provision` is called by docker-up and the gate after the engine is up.

use crate::config::Config;
use crate::engine::Engine;
use crate::report::Check;

/// Makes every `[images]` entry present; one check per image (idempotent: fast when present).
pub async fn provision(_engine: &Engine, _config: &Config) -> anyhow::Result<Vec<Check>> {
    anyhow::bail!("images::provision is not implemented yet")
}
