//! The WebSocket stage: the `[ws_check]` plan run against the chosen target's endpoints.
//!
//! Not here: the WebSocket client and its checks ([crate::ws]).

use std::time::Duration;

use crate::report::Check;

use crate::gate::context::{Context, StageClock};
use crate::gate::events::{Stage, StageOutcome};

use super::target::Chosen;

/// What the WebSocket stage found: its checks and its outcome.
#[derive(Debug, Clone)]
pub struct WsReport {
    pub checks: Vec<Check>,
    pub outcome: StageOutcome,
}

impl WsReport {
    pub fn failed(&self) -> bool {
        self.outcome == StageOutcome::Failed
    }
}

/// The WebSocket stage, on the chosen target's endpoints.
pub async fn ws(run: &Context, chosen: &Chosen) -> WsReport {
    if run.config.ws_check.is_none() {
        let reason = "no [ws_check] in harness.toml";
        run.skip(Stage::Ws, reason);
        return WsReport {
            checks: Vec::new(),
            outcome: StageOutcome::Skipped(reason.to_owned()),
        };
    }
    let mut clock = StageClock::start(run, Stage::Ws);
    let checks = match crate::ws::plan_from_config(
        &run.config,
        &chosen.endpoints,
        &crate::ws::Overrides::default(),
    ) {
        Ok(plan) => crate::ws::run(&plan).await.checks,
        Err(e) => vec![Check::failed(
            "websocket plan",
            Duration::ZERO,
            format!("{e:#}"),
        )],
    };
    checks.iter().cloned().for_each(|c| clock.step(c));
    WsReport {
        checks,
        outcome: clock.finish(),
    }
}
