//! The images stage: every `[images]` entry present or provisioned on the engine.
//!
//! Not here: provisioning ([crate::images]).

use std::time::Duration;

use crate::engine::Engine;
use crate::report::Check;

use crate::gate::context::{Context, StageClock};
use crate::gate::events::{Stage, StageOutcome};

/// What the images stage did: its steps and its outcome.
#[derive(Debug, Clone)]
pub struct Images {
    pub steps: Vec<Check>,
    pub outcome: StageOutcome,
}

/// The images stage: every `[images]` entry present or provisioned.
pub async fn images(run: &Context, engine: &Engine) -> Images {
    let mut clock = StageClock::start(run, Stage::Images);
    let steps =
        match crate::images::provision(engine, &run.config, &run.progress(Stage::Images)).await {
            Ok(checks) => checks,
            Err(e) => vec![Check::failed("images", Duration::ZERO, format!("{e:#}"))],
        };
    steps.iter().cloned().for_each(|c| clock.step(c));
    Images {
        steps,
        outcome: clock.finish(),
    }
}
