//! The `[stack]` keys of how fast and how warm the stack comes up: `probe_interval_ms` (the
//! harness's own readiness probes), `ready` (an HTTP or TCP probe for services without a
//! healthcheck), `start` (who starts services in dependency order), `reuse` and `reset` (warm
//! stacks). Read raw by [super] with the rest of `[stack]`, validated here.
//!
//! Not here: the probes ([crate::stack::probe]), the order ([crate::stack::order]), reuse
//! ([crate::stack::reuse]).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::Locator;
use crate::endpoints::Template;
use crate::error::Failure;

/// `[stack]`'s keys of readiness, start order and warm stacks, validated.
#[derive(Debug, Clone)]
pub struct SpeedCfg {
    /// How often the harness runs a starting service's own healthcheck itself (0: never).
    pub probe_interval_ms: u64,
    /// HTTP or TCP probes (URL templates) for services without a healthcheck, by service.
    pub ready: BTreeMap<String, String>,
    /// Who starts the services in dependency order (`auto`: by the compose version).
    pub start: StartMode,
    /// Keep a passing gate's stack warm and take a matching one (as `--reuse`).
    pub reuse: bool,
    /// Run before a warm stack is taken (program and arguments; empty: nothing).
    pub reset: Vec<String>,
}

/// Who starts the services once compose created them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// `ordered` with compose v2, `compose` with v1: measured faster each (docs/stack.md).
    #[default]
    Auto,
    /// `compose up --no-start`, then the harness starts each service through the engine as soon
    /// as its `depends_on` conditions hold by the harness's readiness.
    Ordered,
    /// `compose up -d`: compose starts them, waiting for the engine's own health status.
    Compose,
}

/// The keys of a raw `[stack]`, validated (`ready` and `reset` are taken out of it).
pub(super) fn speed(at: &Locator<'_>, stack: &mut super::RawStack) -> Result<SpeedCfg, Failure> {
    Ok(SpeedCfg {
        probe_interval_ms: stack.probe_interval_ms,
        ready: ready(
            at,
            std::mem::take(&mut stack.ready),
            stack.services.get_ref(),
        )?,
        start: stack.start,
        reuse: stack.reuse,
        reset: reset(at, stack.reset.take())?,
    })
}

pub(super) fn default_probe_interval() -> u64 {
    100
}

/// `stack.ready`: each entry names a service of `stack.services` and a `http://` or `tcp://`
/// template that may use `{port:SERVICE:PORT}`, `{engine_host}` and `${VAR}`.
fn ready(
    at: &Locator<'_>,
    raw: BTreeMap<String, Spanned<String>>,
    services: &[String],
) -> Result<BTreeMap<String, String>, Failure> {
    let mut out = BTreeMap::new();
    for (service, template) in raw {
        let key = format!("stack.ready.{service}");
        if !services.contains(&service) {
            return Err(at.at(
                template.span(),
                &key,
                format!(
                    "`{service}` is not in stack.services ({})",
                    services.join(", ")
                ),
            ));
        }
        let text = template.get_ref();
        if !["http://", "https://", "tcp://"]
            .iter()
            .any(|scheme| text.starts_with(scheme))
        {
            return Err(at.at(
                template.span(),
                &key,
                format!("`{text}` must start with http://, https:// or tcp://"),
            ));
        }
        let parsed = Template::parse(text).map_err(|e| at.at(template.span(), &key, e))?;
        // Other endpoints may name services not started yet: only ports and the environment.
        if let Some(problem) = parsed.unknown_references(services, &[]).into_iter().next() {
            return Err(at.at(template.span(), &key, problem));
        }
        out.insert(service, template.into_inner());
    }
    Ok(out)
}

/// `stack.reset`: a command (program and arguments), not empty when given.
fn reset(at: &Locator<'_>, raw: Option<Spanned<Vec<String>>>) -> Result<Vec<String>, Failure> {
    match raw {
        Some(command) if command.get_ref().is_empty() => Err(at.at(
            command.span(),
            "stack.reset",
            "must name a program (a list such as [\"python\", \"tests/reset.py\"]) or be left out",
        )),
        Some(command) => Ok(command.into_inner()),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::StartMode;
    use crate::config::{parse, Config};

    fn with_stack(extra: &str) -> Result<Config, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), "services: {}\n").unwrap();
        let text = format!(
            "[project]\nname = \"demo\"\n\n[stack]\ncompose_file = \"compose.yaml\"\nservices = [\"web\", \"cache\"]\n{extra}\n"
        );
        parse(&dir.path().join("harness.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_every_key_read() {
        let stack = with_stack("").unwrap().stack.unwrap().speed;
        assert_eq!(stack.probe_interval_ms, 100);
        assert_eq!(stack.start, StartMode::Auto);
        assert!(!stack.reuse && stack.reset.is_empty() && stack.ready.is_empty());
        let stack = with_stack(
            "probe_interval_ms = 0\nstart = \"compose\"\nreuse = true\nreset = [\"python\", \"reset.py\"]\n\n[stack.ready]\ncache = \"tcp://127.0.0.1:{port:cache:6379}\"\n",
        )
        .unwrap()
        .stack
        .unwrap()
        .speed;
        assert_eq!(stack.probe_interval_ms, 0);
        assert_eq!(stack.start, StartMode::Compose);
        assert!(stack.reuse);
        assert_eq!(stack.reset, ["python", "reset.py"]);
        assert_eq!(stack.ready["cache"], "tcp://127.0.0.1:{port:cache:6379}");
        // Where a remote engine publishes the port.
        let stack = with_stack("[stack.ready]\nweb = \"http://{engine_host}:{port:web:80}/\"\n")
            .unwrap()
            .stack
            .unwrap()
            .speed;
        assert_eq!(stack.ready["web"], "http://{engine_host}:{port:web:80}/");
    }

    #[test]
    fn bad_values_name_the_key_and_the_line() {
        for (extra, expect) in [
            (
                "[stack.ready]\ndb = \"tcp://127.0.0.1:{port:db:5432}\"",
                "key `stack.ready.db`: `db` is not in stack.services",
            ),
            (
                "[stack.ready]\nweb = \"ftp://127.0.0.1:{port:web:80}\"",
                "must start with http://, https:// or tcp://",
            ),
            (
                "[stack.ready]\nweb = \"http://{backend}/health\"",
                "key `stack.ready.web`",
            ),
            ("reset = []", "key `stack.reset`: must name a program"),
            ("start = \"later\"", "key `stack.start`"),
            ("probe_interval_ms = -1", "key `stack.probe_interval_ms`"),
        ] {
            let error = with_stack(extra).unwrap_err();
            assert!(error.contains(expect), "{extra}: {error}");
            assert!(error.contains("harness.toml:"), "{extra}: {error}");
        }
    }
}
