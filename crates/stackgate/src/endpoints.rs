//! Endpoint URL templates: `{port:SERVICE:PORT}` (a published port), `{name}` (another endpoint),
//! `{engine_host}` (the engine's host: a tcp engine's address, `127.0.0.1` for a local socket) and
//! `${VAR}` (the environment). Parsing, validation and resolution; no I/O.

use std::collections::BTreeMap;

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    /// The host port the engine published for `service`'s container port.
    Port {
        service: String,
        container_port: u16,
    },
    /// Another endpoint, resolved first.
    Ref(String),
    /// `{engine_host}`: where the engine publishes ports (reserved: no endpoint has this name).
    EngineHost,
    /// An environment variable.
    Env(String),
}

/// The reserved placeholder `{engine_host}`.
pub const ENGINE_HOST: &str = "engine_host";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub parts: Vec<Part>,
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(start) = rest.find(['{', '$']) {
            let (before, from) = rest.split_at(start);
            literal.push_str(before);
            let (is_env, body_start) = if from.starts_with("${") {
                (true, 2)
            } else if from.starts_with('{') {
                (false, 1)
            } else {
                literal.push('$');
                rest = &from[1..];
                continue;
            };
            let end = from
                .find('}')
                .ok_or_else(|| format!("unclosed `{}` in `{text}`", &from[..body_start]))?;
            let body = &from[body_start..end];
            rest = &from[end + 1..];
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            }
            parts.push(if is_env {
                if body.is_empty() || !body.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(format!("`${{{body}}}` is not an environment variable name"));
                }
                Part::Env(body.to_owned())
            } else if let Some(port_spec) = body.strip_prefix("port:") {
                let (service, port) = port_spec.rsplit_once(':').ok_or_else(|| {
                    format!("`{{{body}}}` must read {{port:SERVICE:CONTAINER_PORT}}")
                })?;
                let container_port: u16 =
                    port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("`{{{body}}}`: `{port}` is not a port within 1..65535")
                    })?;
                if service.is_empty() {
                    return Err(format!("`{{{body}}}` names no service"));
                }
                Part::Port {
                    service: service.to_owned(),
                    container_port,
                }
            } else {
                if body.is_empty()
                    || !body
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!("`{{{body}}}` is not an endpoint name"));
                }
                if body == ENGINE_HOST {
                    Part::EngineHost
                } else {
                    Part::Ref(body.to_owned())
                }
            });
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template { parts })
    }

    /// Problems with the names the template uses, given the services and endpoints that exist.
    pub fn unknown_references(&self, services: &[String], endpoints: &[String]) -> Vec<String> {
        self.parts
            .iter()
            .filter_map(|part| match part {
                Part::Port { service, .. } if !services.contains(service) => Some(if services.is_empty() {
                    format!("`{{port:{service}:...}}` needs a [stack] service, and none is configured here")
                } else {
                    format!("names service `{service}`, which is not in stack.services ({})", services.join(", "))
                }),
                Part::Ref(name) if !endpoints.contains(name) => Some(format!(
                    "names endpoint `{name}`, which is not defined (known: {})",
                    if endpoints.is_empty() { "none".to_owned() } else { endpoints.join(", ") }
                )),
                _ => None,
            })
            .collect()
    }

    /// Whether it uses `{engine_host}`, which only the docker target's `[endpoints]` know.
    pub fn uses_engine_host(&self) -> bool {
        self.parts.contains(&Part::EngineHost)
    }

    /// The `(service, container_port)` pairs the template needs.
    pub fn ports(&self) -> impl Iterator<Item = (&str, u16)> {
        self.parts.iter().filter_map(|part| match part {
            Part::Port {
                service,
                container_port,
            } => Some((service.as_str(), *container_port)),
            _ => None,
        })
    }
}

/// What is wrong with `{engine_host}` in the template under `key`: the reserved name taken by an
/// endpoint, or the placeholder outside `[endpoints]` (only the docker target's endpoints are
/// resolved with an engine at hand).
pub fn engine_host_problem(template: &Template, key: &str) -> Option<&'static str> {
    if key == format!("endpoints.{ENGINE_HOST}") {
        return Some("`engine_host` is reserved: `{engine_host}` is the engine's host; name this endpoint otherwise");
    }
    (template.uses_engine_host() && !key.starts_with("endpoints.")).then_some(
        "`{engine_host}` is known only in [endpoints] (the docker target's); refer to such an endpoint here instead",
    )
}

/// What is wrong with the template `text` under `key`, if anything: its syntax, `{engine_host}`
/// where it is not known ([`engine_host_problem`]), a reference to a service or endpoint that
/// is not among `services` and `endpoints`.
pub fn check(
    text: &str,
    key: &str,
    services: &[String],
    endpoints: &[String],
) -> Result<(), String> {
    let parsed = Template::parse(text)?;
    if let Some(problem) = engine_host_problem(&parsed, key) {
        return Err(problem.to_owned());
    }
    match parsed
        .unknown_references(services, endpoints)
        .into_iter()
        .next()
    {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

/// Where resolution looks things up.
pub trait Lookup {
    /// The host port published for a service's container port.
    fn port(&self, service: &str, container_port: u16) -> Option<u16>;
    /// An environment variable.
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    /// `{engine_host}`: known only where there is an engine.
    fn engine_host(&self) -> Option<String> {
        None
    }
}

/// Published ports on an engine: `{port:...}` from `ports`, `{engine_host}` from the engine.
pub struct OnEngine<'a> {
    pub ports: &'a dyn Lookup,
    pub engine_host: &'a str,
}

impl Lookup for OnEngine<'_> {
    fn port(&self, service: &str, container_port: u16) -> Option<u16> {
        self.ports.port(service, container_port)
    }
    fn env(&self, name: &str) -> Option<String> {
        self.ports.env(name)
    }
    fn engine_host(&self) -> Option<String> {
        Some(self.engine_host.to_owned())
    }
}

/// No published ports: for targets without a stack.
pub struct NoPorts;
impl Lookup for NoPorts {
    fn port(&self, _: &str, _: u16) -> Option<u16> {
        None
    }
}

impl Lookup for BTreeMap<(String, u16), u16> {
    fn port(&self, service: &str, container_port: u16) -> Option<u16> {
        self.get(&(service.to_owned(), container_port)).copied()
    }
}

/// Resolves every endpoint of `templates`; an error names the endpoint and what is missing.
pub fn resolve_all(
    templates: &BTreeMap<String, String>,
    lookup: &dyn Lookup,
) -> Result<BTreeMap<String, String>, String> {
    let mut resolved = BTreeMap::new();
    for name in templates.keys() {
        resolve_one(name, templates, lookup, &mut resolved, &mut Vec::new())?;
    }
    Ok(resolved)
}

fn resolve_one(
    name: &str,
    templates: &BTreeMap<String, String>,
    lookup: &dyn Lookup,
    resolved: &mut BTreeMap<String, String>,
    visiting: &mut Vec<String>,
) -> Result<String, String> {
    if let Some(done) = resolved.get(name) {
        return Ok(done.clone());
    }
    if visiting.iter().any(|v| v == name) {
        return Err(format!(
            "endpoint `{name}` refers to itself through {}",
            visiting.join(" -> ")
        ));
    }
    let text = templates
        .get(name)
        .ok_or_else(|| format!("endpoint `{name}` is not defined"))?;
    visiting.push(name.to_owned());
    let template = Template::parse(text).map_err(|e| format!("endpoint `{name}`: {e}"))?;
    let mut out = String::new();
    for part in &template.parts {
        match part {
            Part::Literal(text) => out.push_str(text),
            Part::Port {
                service,
                container_port,
            } => {
                let port = lookup.port(service, *container_port).ok_or_else(|| {
                    format!("endpoint `{name}`: service `{service}` publishes no host port for container port {container_port}")
                })?;
                out.push_str(&port.to_string());
            }
            Part::Ref(other) => {
                out.push_str(&resolve_one(other, templates, lookup, resolved, visiting)?)
            }
            Part::EngineHost => out.push_str(&lookup.engine_host().ok_or_else(|| {
                format!("endpoint `{name}`: {{{ENGINE_HOST}}} is known only on the docker target")
            })?),
            Part::Env(var) => out.push_str(&lookup.env(var).ok_or_else(|| {
                format!("endpoint `{name}`: environment variable {var} is not set")
            })?),
        }
    }
    visiting.pop();
    resolved.insert(name.to_owned(), out.clone());
    Ok(out)
}

/// Fills `{name}` references in `text` (a ws_check URL, a readiness URL) from resolved endpoints.
pub fn render(text: &str, endpoints: &BTreeMap<String, String>) -> Result<String, String> {
    let mut templates = endpoints.clone();
    templates.insert("\0render".to_owned(), text.to_owned());
    let mut resolved: BTreeMap<String, String> = BTreeMap::new();
    resolve_one(
        "\0render",
        &templates,
        &NoPorts,
        &mut resolved,
        &mut Vec::new(),
    )
}

/// The environment variable a suite receives for an endpoint: `backend_ws` → `BACKEND_WS_URL`.
pub fn env_name(endpoint: &str) -> String {
    format!("{}_URL", endpoint.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part_kind() {
        let template =
            Template::parse("ws://127.0.0.1:{port:backend:8000}/ws?x={auth}&k=${KEY}$").unwrap();
        assert_eq!(
            template.parts,
            vec![
                Part::Literal("ws://127.0.0.1:".into()),
                Part::Port {
                    service: "backend".into(),
                    container_port: 8000
                },
                Part::Literal("/ws?x=".into()),
                Part::Ref("auth".into()),
                Part::Literal("&k=".into()),
                Part::Env("KEY".into()),
                Part::Literal("$".into()),
            ]
        );
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::parse("{port:backend}")
            .unwrap_err()
            .contains("{port:SERVICE:CONTAINER_PORT}"));
        assert!(Template::parse("{port:backend:70000}")
            .unwrap_err()
            .contains("70000"));
        assert!(Template::parse("http://{unclosed")
            .unwrap_err()
            .contains("unclosed"));
    }

    #[test]
    fn names_unknown_services_and_endpoints() {
        let template = Template::parse("{port:db:5432}{nope}").unwrap();
        let problems = template.unknown_references(&["backend".into()], &["auth".into()]);
        assert_eq!(problems.len(), 2);
        assert!(problems[0].contains("`db`"), "{problems:?}");
        assert!(problems[1].contains("`nope`"), "{problems:?}");
    }

    #[test]
    fn resolves_ports_references_and_reports_cycles() {
        let mut templates = BTreeMap::new();
        templates.insert(
            "backend".to_owned(),
            "http://127.0.0.1:{port:backend:8000}".to_owned(),
        );
        templates.insert(
            "backend_ws".to_owned(),
            "ws://127.0.0.1:{port:backend:8000}/ws".to_owned(),
        );
        templates.insert("health".to_owned(), "{backend}/health".to_owned());
        let mut ports = BTreeMap::new();
        ports.insert(("backend".to_owned(), 8000), 49153);
        let resolved = resolve_all(&templates, &ports).unwrap();
        assert_eq!(resolved["health"], "http://127.0.0.1:49153/health");
        assert_eq!(
            render("{backend_ws}?v=1", &resolved).unwrap(),
            "ws://127.0.0.1:49153/ws?v=1"
        );

        assert!(resolve_all(&templates, &NoPorts)
            .unwrap_err()
            .contains("publishes no host port"));
        templates.insert("a".to_owned(), "{b}".to_owned());
        templates.insert("b".to_owned(), "{a}".to_owned());
        assert!(resolve_all(&templates, &ports)
            .unwrap_err()
            .contains("refers to itself"));
    }

    #[test]
    fn engine_host_is_the_engines_and_unknown_without_one() {
        let template = Template::parse("http://{engine_host}:{port:web:80}").unwrap();
        assert!(template.uses_engine_host());
        assert_eq!(template.parts[1], Part::EngineHost);
        assert!(template.unknown_references(&["web".into()], &[]).is_empty());
        let templates = BTreeMap::from([
            (
                "web".to_owned(),
                "http://{engine_host}:{port:web:80}".to_owned(),
            ),
            ("health".to_owned(), "{web}/health".to_owned()),
        ]);
        let ports = BTreeMap::from([(("web".to_owned(), 80), 49200)]);
        let on_remote = OnEngine {
            ports: &ports,
            engine_host: "10.0.3.2",
        };
        let resolved = resolve_all(&templates, &on_remote).unwrap();
        assert_eq!(resolved["web"], "http://10.0.3.2:49200");
        assert_eq!(resolved["health"], "http://10.0.3.2:49200/health");
        let on_local = OnEngine {
            ports: &ports,
            engine_host: "127.0.0.1",
        };
        assert_eq!(
            resolve_all(&templates, &on_local).unwrap()["web"],
            "http://127.0.0.1:49200"
        );
        let error = resolve_all(&templates, &ports).unwrap_err();
        assert!(error.contains("known only on the docker target"), "{error}");
    }

    #[test]
    fn env_names_follow_the_design() {
        assert_eq!(env_name("backend_ws"), "BACKEND_WS_URL");
        assert_eq!(env_name("auth"), "AUTH_URL");
    }
}
