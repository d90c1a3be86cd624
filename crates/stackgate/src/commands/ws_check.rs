//! The `ws-check` command: plans the check from the flags and `[ws_check]`, prints each event as
//! it arrives, the checks and (for many users) the figures, and the result as JSON with `--json`.
//!
//! Not here: the check itself ([crate::ws::run_observed]).

use std::time::Duration;

use anyhow::Context;

use crate::ws::{current_endpoints, plan_from_config, run_observed, scrub, EventSeen, Overrides};
use crate::{ui, Ctx};

impl crate::flags::WsCheck {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let config = ctx.config()?;
        let overrides = Overrides {
            url: self.url.clone(),
            token_url: self.token_url.clone(),
            token: self.token.clone(),
            users: self.users,
            messages: self.messages,
        };
        let run = self.run.as_deref();
        if let Ok(Some(note)) = crate::stack::choose(&config, run).map(|c| c.and_then(|c| c.note)) {
            ui::say(note);
        }
        let endpoints = if self.url.is_some() {
            // Any endpoint will do; the recorded ones only fill a configured token_url.
            current_endpoints(&config, run).await.unwrap_or_default()
        } else {
            current_endpoints(&config, run).await?
        };
        let plan = plan_from_config(&config, &endpoints, &overrides)
            .context("cannot plan the websocket check")?;
        let secrets: Vec<&str> = plan.token.as_deref().into_iter().collect();
        ui::say(format!(
            "ws-check {} ({} user{}, {} message{} each), expecting {}",
            scrub(&plan.url, &secrets),
            plan.users,
            if plan.users == 1 { "" } else { "s" },
            plan.messages,
            if plan.messages == 1 { "" } else { "s" },
            plan.expect.join(" → ")
        ));
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<EventSeen>();
        let one_user = plan.users == 1;
        let printer = tokio::spawn(async move {
            while let Some(event) = receiver.recv().await {
                if one_user {
                    let mark = if event.expected { "✓" } else { "·" };
                    ui::say(format!(
                        "  {mark} {:<20} {:>8.1} ms",
                        event.name, event.latency_ms
                    ));
                }
            }
        });
        let result = run_observed(&plan, Some(sender)).await;
        let _ = printer.await;

        eprint!("{}", crate::report::table(&result.checks));
        if plan.users > 1 {
            let s = &result.stats;
            eprint!(
                "{}",
                ui::table(
                    &["figure", "value"],
                    &[
                        vec![
                            "connections".into(),
                            format!(
                                "{}/{} succeeded ({:.1}%)",
                                s.connections_succeeded,
                                s.connections_attempted,
                                s.success_rate_percent
                            )
                        ],
                        vec![
                            "messages".into(),
                            format!("{}/{} complete", s.messages_completed, s.messages_sent)
                        ],
                        vec!["events received".into(), s.events_received.to_string()],
                        vec!["events misrouted".into(), s.events_misrouted.to_string()],
                        vec!["connect".into(), s.connect.line()],
                        vec!["first event".into(), s.first_event.line()],
                        vec!["last event".into(), s.last_event.line()],
                        vec![
                            "wall time".into(),
                            ui::duration(Duration::from_secs_f64(s.wall_ms / 1000.0))
                        ],
                    ]
                )
            );
        }
        if self.json {
            ui::print_json(serde_json::to_value(&result)?, result.passed);
        }
        if result.passed {
            ui::say("ws-check passed");
        }
        result.into_outcome()?;
        Ok(())
    }
}
