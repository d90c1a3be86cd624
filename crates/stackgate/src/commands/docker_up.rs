//! `docker-up`: the pipeline until the stack, kept up (on the project's own name and ports unless
//! `--isolated`); prints what `up` reported (`--json`: as an object) and says whether every
//! service is healthy. `--engine-only` only makes sure the engine answers.
//!
//! Not here: bringing the stack up ([crate::stack]), the stages ([crate::gate::stages]).

use crate::error::Failure;
use crate::flags::{DockerUp, TargetChoice};
use crate::gate::context::{Isolation, Keep, Options, Until};
use crate::{ui, Ctx};

use super::pipeline;

impl DockerUp {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        if self.engine_only {
            let options = crate::engine::EnsureOptions {
                install: self.install,
            };
            return crate::commands::engine_only::run(&config, &options, self.json).await;
        }
        crate::gate::supervise::Signals::install();
        let options = Options {
            isolation: if self.isolated {
                Isolation::Isolated
            } else {
                Isolation::Shared
            },
            keep: Keep::Always,
            preflight: !self.skip_preflight,
            install: self.install,
            ..Options::new("docker-up", TargetChoice::Docker, Until::Stack)
        };
        let run = pipeline::context(config, options).await;
        let (result, output) = pipeline::run(&run).await;
        let up = output.up;
        if let Some(report) = &up {
            crate::commands::stack_table::print_up(report);
            if self.json {
                ui::print_json(serde_json::to_value(report)?, report.passed());
            }
        }
        result?;
        match up {
            Some(report) => {
                if let Some(failed) = report.failure() {
                    return Err(Failure::check(format!("{}: {}", failed.name, failed.detail))
                        .with_hint(
                            "the stack is left as it is for inspection; `cargo xtask docker-down` removes it",
                        )
                        .into());
                }
                ui::say(format!(
                    "stack up: all {} services healthy, {} after docker-up started",
                    report.services.len(),
                    ui::duration(report.total)
                ));
                Ok(())
            }
            None => Err(Failure::config(format!(
                "{}: there is no [stack] table, so there is no stack to bring up",
                run.config.path.display()
            ))
            .into()),
        }
    }
}
