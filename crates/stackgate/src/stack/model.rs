//! The compose model as compose itself resolves it: services (image, build, ports, healthcheck,
//! `stop_grace_period`, `depends_on` with conditions), networks and volumes (with `external`),
//! read from `docker compose config --format json` (v2) or `docker-compose config` (v1, YAML,
//! read with `yaml-rust2`), and cached while the files, the environment and the program stay the
//! same. Compose has already applied anchors, merges, flow style, `.env` and interpolation, so
//! nothing here re-reads the compose file.
//!
//! Not here: what the harness writes from the model ([super::labels]), running compose
//! ([super::compose]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::compose::{Project, QUICK_TIMEOUT};

/// What a compose file holds, after compose resolved it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// The file format `version` (compose v1 prints it, and refuses an override of another
    /// version); `None` when compose does not print one (v2).
    pub version: Option<String>,
    pub services: BTreeMap<String, Service>,
    /// Declared networks (`default` only when the file declares it).
    pub networks: BTreeMap<String, Resource>,
    pub volumes: BTreeMap<String, Resource>,
    /// A digest of everything compose resolved (every key of every service, not only the ones
    /// read above), in canonical form: what a warm stack's key is made of ([super::reuse]).
    #[serde(default)]
    pub digest: String,
}

/// One service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub image: Option<String>,
    /// Its build context, when compose builds it.
    pub build: Option<String>,
    pub ports: Vec<Port>,
    /// `None` without one; a disabled one reads `test: ["NONE"]`.
    pub healthcheck: Option<Healthcheck>,
    pub stop_grace_period: Option<Duration>,
    /// Services it waits for, each with the condition.
    pub depends_on: BTreeMap<String, Condition>,
    /// The networks it joins, by name (none declared: the project's default network).
    #[serde(default)]
    pub networks: Vec<String>,
}

/// A published port, in compose's long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Port {
    pub target: u16,
    /// The host port; `None` (or empty) lets the engine pick one.
    pub published: Option<String>,
    pub host_ip: Option<String>,
    /// `tcp` or `udp`.
    pub protocol: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["CMD", ...]`, `["CMD-SHELL", "..."]`, or `["NONE"]` (disabled).
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub start_period: Option<Duration>,
    pub retries: Option<u64>,
}

impl Healthcheck {
    /// `disable: true`, or `test: ["NONE"]`.
    pub fn disabled(&self) -> bool {
        self.test.first().is_some_and(|first| first == "NONE")
    }
}

/// What `depends_on` waits for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Condition {
    /// `service_started` (and the short list form).
    Started,
    /// `service_healthy`.
    Healthy,
    /// `service_completed_successfully`.
    CompletedSuccessfully,
}

/// A network or a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    /// Made outside the project: compose neither creates nor labels it (and refuses labels on it).
    pub external: bool,
    /// The engine's name of an external one.
    pub name: Option<String>,
}

impl Model {
    /// Services that compose builds and that do not name their image: compose would call the
    /// image after the project, which the harness replaces by a name of the checkout's own.
    pub fn built_without_image(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|(_, s)| s.build.is_some() && s.image.is_none())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// Every service name.
    pub fn service_names(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }
}

/// A part of compose's output that does not read as the model expects.
#[derive(Debug, thiserror::Error)]
#[error("`{path}`: {problem}")]
pub struct ModelError {
    /// Where in compose's output: `services.web.healthcheck.interval`.
    pub path: String,
    pub problem: String,
}

fn problem(path: &str, problem: impl Into<String>) -> ModelError {
    ModelError {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// Asks compose for the project's model (`config`), at most [`QUICK_TIMEOUT`].
pub async fn read(project: &Project) -> anyhow::Result<Model> {
    let argv = project.config_argv();
    let finished = project.run_checked(&argv, QUICK_TIMEOUT).await?;
    let printed = |e: &ModelError| {
        let around = excerpt(&finished.stdout, &e.problem)
            .map(|lines| format!(", around:\n{lines}"))
            .unwrap_or_default();
        format!("cannot read what `{}` printed{around}", finished.command)
    };
    let mut model = parse_output(&finished.stdout).map_err(|e| {
        let context = printed(&e);
        anyhow::Error::new(e).context(context)
    })?;
    model.digest = digest_of(&finished.stdout, &project.name).map_err(|e| {
        let context = printed(&e);
        anyhow::Error::new(e).context(context)
    })?;
    Ok(model)
}

/// The digest of what compose printed, the project's name left out: compose v2 prints it (`name`,
/// and as the prefix of the default network's and the volumes' names), and it differs from run to
/// run of one stack (`<project>-<run>`). The name is taken out of the parsed values, never out of
/// the text: a project named like a word of the stack (`chat`, in `JWT_ISSUER: chat-auth`) would
/// otherwise turn compose's YAML into text that no longer parses.
pub fn digest_of(text: &str, project_name: &str) -> Result<String, ModelError> {
    let mut value = parse_value(text)?;
    if !project_name.is_empty() {
        neutralise(&mut value, project_name);
    }
    Ok(canonical_digest(&value))
}

/// Every string that is the project's name, or starts with it and `_` (compose's resource
/// names), gets `{project}` in its place.
fn neutralise(value: &mut Value, project_name: &str) {
    match value {
        Value::String(text) => {
            if text == project_name {
                *text = "{project}".to_owned();
            } else if let Some(rest) = text
                .strip_prefix(project_name)
                .filter(|rest| rest.starts_with('_'))
            {
                *text = format!("{{project}}{rest}");
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| neutralise(item, project_name)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| neutralise(item, project_name)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Where a parse error points in compose's output: the lines around `line N column M`, with a
/// caret, for the error message (compose's own text, so that a reader sees what was parsed).
pub fn excerpt(text: &str, error: &str) -> Option<String> {
    let after = error.split("line ").nth(1)?;
    let line: usize = after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()?;
    let column: usize = after
        .split("column ")
        .nth(1)
        .and_then(|c| c.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|c| c.parse().ok())
        .unwrap_or(1);
    let lines: Vec<&str> = text.lines().collect();
    if line == 0 || line > lines.len() {
        return None;
    }
    let first = line.saturating_sub(3);
    let mut out = String::new();
    for (index, text) in lines.iter().enumerate().take(line + 1).skip(first) {
        out.push_str(&format!("{:>5} | {text}\n", index + 1));
        if index + 1 == line {
            out.push_str(&format!(
                "      | {}^\n",
                " ".repeat(column.saturating_sub(1))
            ));
        }
    }
    Some(out)
}

/// Compose's `config` output: JSON (v2 with `--format json`) or YAML (v1).
pub fn parse_output(text: &str) -> Result<Model, ModelError> {
    let value = parse_value(text)?;
    let mut model = from_value(&value)?;
    model.digest = canonical_digest(&value);
    Ok(model)
}

fn parse_value(text: &str) -> Result<Value, ModelError> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| problem("(json)", e.to_string()))
    } else {
        yaml_to_json(text)
    }
}

/// FNV-1a of the value's JSON text: maps are sorted (serde_json without `preserve_order`), so
/// the same resolution always reads the same.
fn canonical_digest(value: &Value) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in value.to_string().as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

/// YAML to the JSON value model, with YAML 1.1 merge keys (`<<: *anchor`) applied: explicit
/// keys win over merged ones, and earlier merge sources over later ones. Aliases are resolved by
/// the loader. Floats keep their text (`version: 2.4` stays `"2.4"`).
pub fn yaml_to_json(text: &str) -> Result<Value, ModelError> {
    let documents = yaml_rust2::YamlLoader::load_from_str(text)
        .map_err(|e| problem("(yaml)", e.to_string()))?;
    match documents.first() {
        Some(document) => convert(document, ""),
        None => Ok(Value::Object(Map::new())),
    }
}

fn convert(node: &yaml_rust2::Yaml, path: &str) -> Result<Value, ModelError> {
    use yaml_rust2::Yaml;
    Ok(match node {
        Yaml::Real(text) | Yaml::String(text) => Value::String(text.clone()),
        Yaml::Integer(number) => Value::from(*number),
        Yaml::Boolean(flag) => Value::Bool(*flag),
        Yaml::Null => Value::Null,
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| convert(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(entries) => {
            let mut out = Map::new();
            let mut merged = Vec::new();
            for (key, value) in entries {
                let key = match key {
                    Yaml::String(text) if text == "<<" => {
                        merged.push(value);
                        continue;
                    }
                    Yaml::String(text) | Yaml::Real(text) => text.clone(),
                    Yaml::Integer(number) => number.to_string(),
                    Yaml::Boolean(flag) => flag.to_string(),
                    Yaml::Null => "null".to_owned(),
                    _ => return Err(problem(path, "a mapping key that is not a scalar")),
                };
                let inner = join(path, &key);
                out.insert(key, convert(value, &inner)?);
            }
            for source in merged {
                let sources: Vec<&Yaml> = match source {
                    Yaml::Array(items) => items.iter().collect(),
                    other => vec![other],
                };
                for source in sources {
                    let Value::Object(fields) = convert(source, path)? else {
                        return Err(problem(path, "a merge key `<<` needs a mapping"));
                    };
                    for (key, value) in fields {
                        out.entry(key).or_insert(value);
                    }
                }
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(problem(path, "an alias or value YAML cannot resolve"))
        }
    })
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// The model from compose's output as a JSON value (both outputs take the same shapes: compose
/// v1 prints short forms, v2 long ones; either is read).
pub fn from_value(value: &Value) -> Result<Model, ModelError> {
    let top = value
        .as_object()
        .ok_or_else(|| problem("(top)", "not a mapping"))?;
    let version = match top.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(scalar(v, "version")?),
    };
    let mut model = Model {
        version,
        ..Model::default()
    };
    for (name, entry) in entries(top.get("services"), "services")? {
        let path = join("services", name);
        model.services.insert(name.clone(), service(entry, &path)?);
    }
    for (section, target) in [
        ("networks", &mut model.networks),
        ("volumes", &mut model.volumes),
    ] {
        for (name, entry) in entries(top.get(section), section)? {
            target.insert(name.clone(), resource(entry, &join(section, name))?);
        }
    }
    Ok(model)
}

/// A mapping's entries (`null` or absent: none).
fn entries<'a>(
    value: Option<&'a Value>,
    path: &str,
) -> Result<Vec<(&'a String, &'a Value)>, ModelError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().collect()),
        Some(_) => Err(problem(path, "not a mapping")),
    }
}

/// A string, number or boolean as text.
fn scalar(value: &Value, path: &str) -> Result<String, ModelError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => Err(problem(path, "not a scalar")),
    }
}

fn service(value: &Value, path: &str) -> Result<Service, ModelError> {
    let mut service = Service::default();
    let fields = match value {
        Value::Null => return Ok(service),
        Value::Object(fields) => fields,
        _ => return Err(problem(path, "not a mapping")),
    };
    if let Some(image) = fields.get("image").filter(|v| !v.is_null()) {
        service.image = Some(scalar(image, &join(path, "image"))?);
    }
    service.build = match fields.get("build") {
        None | Some(Value::Null) => None,
        Some(Value::String(context)) => Some(context.clone()),
        Some(Value::Object(build)) => Some(match build.get("context") {
            Some(context) => scalar(context, &join(path, "build.context"))?,
            None => ".".to_owned(),
        }),
        Some(_) => return Err(problem(&join(path, "build"), "not a context or a mapping")),
    };
    if let Some(ports) = fields.get("ports").filter(|v| !v.is_null()) {
        let ports_path = join(path, "ports");
        let list = ports
            .as_array()
            .ok_or_else(|| problem(&ports_path, "not a list"))?;
        for (i, entry) in list.iter().enumerate() {
            service
                .ports
                .extend(port(entry, &format!("{ports_path}[{i}]"))?);
        }
    }
    if let Some(check) = fields.get("healthcheck").filter(|v| !v.is_null()) {
        service.healthcheck = Some(healthcheck(check, &join(path, "healthcheck"))?);
    }
    if let Some(grace) = fields.get("stop_grace_period").filter(|v| !v.is_null()) {
        service.stop_grace_period = Some(duration(grace, &join(path, "stop_grace_period"))?);
    }
    let networks_path = join(path, "networks");
    service.networks = match fields.get("networks") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(names)) => names
            .iter()
            .map(|n| scalar(n, &networks_path))
            .collect::<Result<_, _>>()?,
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        Some(_) => return Err(problem(&networks_path, "not a list or a mapping")),
    };
    let depends_path = join(path, "depends_on");
    match fields.get("depends_on") {
        None | Some(Value::Null) => {}
        Some(Value::Array(names)) => {
            for name in names {
                service
                    .depends_on
                    .insert(scalar(name, &depends_path)?, Condition::Started);
            }
        }
        Some(Value::Object(map)) => {
            for (name, entry) in map {
                let condition = match entry.get("condition").and_then(Value::as_str) {
                    None | Some("service_started") => Condition::Started,
                    Some("service_healthy") => Condition::Healthy,
                    Some("service_completed_successfully") => Condition::CompletedSuccessfully,
                    Some(other) => {
                        return Err(problem(
                            &join(&depends_path, name),
                            format!("unknown condition `{other}`"),
                        ))
                    }
                };
                service.depends_on.insert(name.clone(), condition);
            }
        }
        Some(_) => return Err(problem(&depends_path, "not a list or a mapping")),
    }
    Ok(service)
}

/// One `ports` entry: the long form (`{target, published, host_ip, protocol}`) or the short one
/// (`[HOST_IP:][PUBLISHED:]TARGET[/PROTOCOL]`, ranges included).
fn port(value: &Value, path: &str) -> Result<Vec<Port>, ModelError> {
    if let Value::Object(fields) = value {
        let target = fields
            .get("target")
            .ok_or_else(|| problem(path, "no target"))?;
        let target: u16 = scalar(target, path)?
            .parse()
            .map_err(|_| problem(path, "the target is not a port"))?;
        let text = |key: &str| -> Result<Option<String>, ModelError> {
            match fields.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => Ok(Some(scalar(v, &join(path, key))?).filter(|t| !t.is_empty())),
            }
        };
        return Ok(vec![Port {
            target,
            published: text("published")?,
            host_ip: text("host_ip")?,
            protocol: text("protocol")?.unwrap_or_else(|| "tcp".to_owned()),
        }]);
    }
    let text = scalar(value, path)?;
    let (spec, protocol) = text.split_once('/').unwrap_or((&text, "tcp"));
    let (rest, target) = match spec.rsplit_once(':') {
        Some((rest, target)) => (Some(rest), target),
        None => (None, spec),
    };
    let (host_ip, published) = match rest {
        None => (None, None),
        Some(rest) => match rest.rsplit_once(':') {
            Some((ip, published)) => (Some(ip), Some(published)),
            None => (None, Some(rest)),
        },
    };
    let range = |text: &str| -> Result<(u16, u16), ModelError> {
        let bad = || problem(path, format!("`{text}` is not a port or a range"));
        let (low, high) = text.split_once('-').unwrap_or((text, text));
        let (low, high): (u16, u16) = (
            low.parse().map_err(|_| bad())?,
            high.parse().map_err(|_| bad())?,
        );
        (low <= high).then_some((low, high)).ok_or_else(bad)
    };
    let (low, high) = range(target)?;
    let published = match published.filter(|p| !p.is_empty()) {
        None => None,
        Some(text) => Some(range(text)?),
    };
    Ok((low..=high)
        .enumerate()
        .map(|(offset, target)| Port {
            target,
            published: published.map(|(first, last)| {
                // A published range as long as the target range maps one to one; a longer one
                // lets the engine pick within it.
                if last - first == high - low {
                    (first + offset as u16).to_string()
                } else {
                    format!("{first}-{last}")
                }
            }),
            host_ip: host_ip
                .filter(|ip| !ip.is_empty())
                .map(|ip| ip.trim_matches(['[', ']']).to_owned()),
            protocol: protocol.to_owned(),
        })
        .collect())
}

fn healthcheck(value: &Value, path: &str) -> Result<Healthcheck, ModelError> {
    let fields = value
        .as_object()
        .ok_or_else(|| problem(path, "not a mapping"))?;
    let mut check = Healthcheck::default();
    if fields.get("disable").and_then(Value::as_bool) == Some(true) {
        check.test = vec!["NONE".to_owned()];
        return Ok(check);
    }
    let test_path = join(path, "test");
    check.test = match fields.get("test") {
        None | Some(Value::Null) => Vec::new(),
        // A string runs in the container's shell.
        Some(Value::String(command)) => vec!["CMD-SHELL".to_owned(), command.clone()],
        Some(Value::Array(words)) => words
            .iter()
            .map(|w| scalar(w, &test_path))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(problem(&test_path, "not a command")),
    };
    let optional = |key: &str| fields.get(key).filter(|v| !v.is_null());
    if let Some(v) = optional("interval") {
        check.interval = Some(duration(v, &join(path, "interval"))?);
    }
    if let Some(v) = optional("timeout") {
        check.timeout = Some(duration(v, &join(path, "timeout"))?);
    }
    if let Some(v) = optional("start_period") {
        check.start_period = Some(duration(v, &join(path, "start_period"))?);
    }
    if let Some(v) = optional("retries") {
        let retries_path = join(path, "retries");
        check.retries = Some(
            scalar(v, &retries_path)?
                .parse()
                .map_err(|_| problem(&retries_path, "not a count"))?,
        );
    }
    Ok(check)
}

fn resource(value: &Value, path: &str) -> Result<Resource, ModelError> {
    let fields = match value {
        Value::Null => return Ok(Resource::default()),
        Value::Object(fields) => fields,
        _ => return Err(problem(path, "not a mapping")),
    };
    // `external: true`, or the older `external: {name: N}` (which is external, named N).
    let (external, external_name) = match fields.get("external") {
        None | Some(Value::Null) => (false, None),
        Some(Value::Bool(flag)) => (*flag, None),
        Some(Value::Object(inner)) => (
            true,
            inner.get("name").map(|n| scalar(n, path)).transpose()?,
        ),
        Some(Value::String(text)) => (text != "false", None),
        Some(_) => return Err(problem(&join(path, "external"), "not a boolean")),
    };
    let name = match (external, external_name, fields.get("name")) {
        (false, _, _) => None,
        (true, Some(name), _) => Some(name),
        (true, None, Some(name)) => Some(scalar(name, &join(path, "name"))?),
        (true, None, None) => None,
    };
    Ok(Resource { external, name })
}

/// Compose's durations, Go's notation: `1m30s`, `500ms`, `1.5s`, `10us`, `2h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

fn duration(value: &Value, path: &str) -> Result<Duration, ModelError> {
    let text = scalar(value, path)?;
    parse_duration(&text).ok_or_else(|| problem(path, format!("`{text}` is not a duration")))
}

#[cfg(test)]
mod tests;
