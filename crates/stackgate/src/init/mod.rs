//! `init`: what a repository holds (its compose file, its services and ports, its pytest
//! directories, a Cargo workspace) read into plain values, with every guess and why it was made.
//! No engine is needed: the compose file is read here as YAML, not through compose.
//!
//! Not here: the `harness.toml` text ([render]), the `cargo xtask` files ([scaffold]), printing
//! and writing (`commands::init`).

pub mod render;
pub mod scaffold;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::Failure;
use crate::stack::model::yaml_to_json;

/// The compose files looked for at the repository's root, in this order.
pub const COMPOSE_FILES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// Directories looked in, one level down, when the root holds none of [`COMPOSE_FILES`].
pub const COMPOSE_DIRS: [&str; 4] = ["docker", "deploy", "services", "compose"];

/// Directories that are pytest suites when they hold `test_*.py`, `*_test.py` or `conftest.py`.
pub const SUITE_DIRS: [&str; 3] = ["tests", "test", "e2e"];

/// The requirements file `init` writes when no requirements file of the suites names pytest.
pub const PYTEST_REQUIREMENTS: &str = "requirements-stackgate.txt";

/// Everything `init` found and guessed, before it is rendered.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// The compose file, relative to the root, with `/` separators.
    pub compose_file: String,
    pub project_name: String,
    /// `[stack] services`, by name.
    pub services: Vec<String>,
    pub service_budget_s: u64,
    /// `[endpoints]`: name, template, why.
    pub endpoints: Vec<Endpoint>,
    /// `[stack] isolated_env`: the variable of a host port, set to `0` (the engine picks one).
    pub isolated_env: BTreeMap<String, String>,
    /// `[stack.ready]`: a TCP probe for a service without a healthcheck.
    pub ready: BTreeMap<String, String>,
    /// Fixed host ports (`[preflight] free_ports`): nothing can isolate those.
    pub fixed_ports: Vec<u16>,
    /// Base images to build with debootstrap when no registry answers (`[images]`).
    pub debootstrap_images: Vec<String>,
    pub suites: Vec<PytestSuite>,
    /// `[python] requirements`, relative to the root.
    pub requirements: Vec<String>,
    /// None of `requirements` names pytest: `init` writes [`PYTEST_REQUIREMENTS`].
    pub needs_pytest_file: bool,
    /// The root is a Cargo workspace with tests: a nextest suite.
    pub nextest: bool,
    /// `--ws`: the endpoint it becomes and its template.
    pub ws: Option<Endpoint>,
    /// What was guessed and why, one line each, for the person running `init`.
    pub guesses: Vec<String>,
}

/// A named URL template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub template: String,
    pub why: String,
}

/// A pytest directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PytestSuite {
    pub name: String,
    /// Relative to the root.
    pub dir: String,
}

/// Finds the compose file under `root`: the root first, then one level into [`COMPOSE_DIRS`].
pub fn find_compose(root: &Path) -> Result<PathBuf, Failure> {
    let at_root = COMPOSE_FILES.iter().map(|name| root.join(name));
    let below = COMPOSE_DIRS.iter().flat_map(|dir| {
        COMPOSE_FILES
            .iter()
            .map(move |name| root.join(dir).join(name))
    });
    at_root.chain(below).find(|p| p.is_file()).ok_or_else(|| {
        Failure::config(format!(
            "no compose file in {}: looked for {} there and in {}/",
            root.display(),
            COMPOSE_FILES.join(", "),
            COMPOSE_DIRS.join("/, ")
        ))
        .with_hint("run `stackgate init` in the repository that holds the stack's compose file")
    })
}

/// Reads the repository at `root` and guesses its configuration. `ws` is `--ws URL_TEMPLATE`.
pub fn discover(root: &Path, ws: Option<&str>) -> Result<Discovery, Failure> {
    let compose_path = find_compose(root)?;
    let compose_rel = relative(root, &compose_path);
    let text = std::fs::read_to_string(&compose_path)
        .map_err(|e| Failure::config(format!("{}: cannot read: {e}", compose_path.display())))?;
    let value = yaml_to_json(&text)
        .map_err(|e| Failure::config(format!("{}: {e}", compose_path.display())))?;
    let mut found = Discovery {
        compose_file: compose_rel.clone(),
        project_name: project_name(root),
        ..Discovery::default()
    };
    found.guesses.push(format!(
        "compose file: {compose_rel} (the first of {} found)",
        COMPOSE_FILES.join(", ")
    ));
    found.guesses.push(format!(
        "project name: `{}`, from the directory name",
        found.project_name
    ));
    read_services(&mut found, &value, &compose_path)?;
    read_suites(&mut found, root);
    found.nextest = cargo_tests(root);
    if found.nextest {
        found.guesses.push(
            "a nextest suite: Cargo.toml at the root and Rust tests in the tree (needs cargo-nextest)"
                .to_owned(),
        );
    }
    if let Some(template) = ws {
        let service = template
            .split("{port:")
            .nth(1)
            .and_then(|rest| rest.split(':').next())
            .map(endpoint_name);
        let name = match service {
            Some(service) => format!("{service}_ws"),
            None => "ws".to_owned(),
        };
        found.guesses.push(format!(
            "endpoint `{name}` from --ws (suites get its _URL); [ws_check] is written commented: uncomment it with a message your server answers and the events it sends"
        ));
        found.ws = Some(Endpoint {
            name,
            template: template.to_owned(),
            why: "from --ws".to_owned(),
        });
    } else {
        found.guesses.push(
            "no [ws_check] (pass --ws URL_TEMPLATE for one): the ws stage is skipped".to_owned(),
        );
    }
    Ok(found)
}

/// The directory's name as a compose project name: `[a-z0-9][a-z0-9_-]*`.
pub fn project_name(root: &Path) -> String {
    let raw = root
        .canonicalize()
        .unwrap_or_else(|_| root.to_path_buf())
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(['-', '_']).trim_end_matches('-');
    if trimmed.is_empty() {
        "app".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// A service name as an endpoint name (and so an environment variable: `SERVICE_URL`).
fn endpoint_name(service: &str) -> String {
    service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// One published port as the compose file writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    pub target: u16,
    /// The variable the host port comes from (`${WEB_PORT-8080}`), if any.
    pub host_var: Option<String>,
    /// A host port fixed in the file.
    pub fixed: Option<u16>,
}

/// Reads a `ports` entry: `TARGET`, `HOST:TARGET`, `IP:HOST:TARGET` (each part may be `${VAR}`,
/// `${VAR-default}` or `${VAR:-default}`), `/proto`, or the long form. `None` for what it cannot
/// read (ranges, a target from a variable without a default).
pub fn port_spec(entry: &Value) -> Option<PortSpec> {
    if let Value::Object(fields) = entry {
        let target = scalar(fields.get("target")?)?;
        let published = fields.get("published").and_then(scalar);
        return Some(host_part(&resolve_default(&target)?, published.as_deref()));
    }
    let text = scalar(entry)?;
    let text = text.split('/').next().unwrap_or_default();
    // Variables may hold `:` (`${P:-8000}`): split outside `${...}` only.
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ':' if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    let target = resolve_default(parts.last()?)?;
    let host = match parts.len() {
        1 => None,
        2 => Some(parts[0].as_str()),
        _ => Some(parts[parts.len() - 2].as_str()),
    };
    Some(host_part(&target, host))
}

fn host_part(target: &str, host: Option<&str>) -> PortSpec {
    let target: u16 = target.parse().unwrap_or(0);
    let mut spec = PortSpec {
        target,
        host_var: None,
        fixed: None,
    };
    match host.map(str::trim) {
        None | Some("") => {}
        Some(host) => {
            if let Some(inner) = host.strip_prefix("${").and_then(|h| h.strip_suffix('}')) {
                let name: String = inner
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                spec.host_var = Some(name);
            } else if let Some(name) = host.strip_prefix('$') {
                spec.host_var = Some(name.to_owned());
            } else {
                spec.fixed = host.parse().ok();
            }
        }
    }
    spec
}

/// `8080` → `8080`; `${T:-8080}` / `${T-8080}` → `8080` (the variable's value if set).
fn resolve_default(text: &str) -> Option<String> {
    let text = text.trim();
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return text.parse::<u16>().ok().map(|_| text.to_owned());
    };
    let (name, default) = match inner.split_once(":-").or_else(|| inner.split_once('-')) {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    let value = std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .or(default.map(str::to_owned))?;
    value.parse::<u16>().ok().map(|_| value)
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The URL scheme of a well-known port; `http` for the rest.
fn scheme_of(target: u16) -> &'static str {
    match target {
        6379 => "redis",
        5432 => "postgresql",
        3306 => "mysql",
        27017 => "mongodb",
        5672 => "amqp",
        11211 => "memcached",
        _ => "http",
    }
}

fn read_services(found: &mut Discovery, value: &Value, compose: &Path) -> Result<(), Failure> {
    let compose_dir = compose.parent().unwrap_or(Path::new("."));
    let services = match value.get("services") {
        Some(Value::Object(map)) => map,
        _ => {
            return Err(Failure::config(format!(
                "{}: no `services` mapping",
                compose.display()
            )))
        }
    };
    let mut budget = 60;
    let mut fallback = Vec::new();
    for (name, service) in services {
        let in_profile = service
            .get("profiles")
            .and_then(Value::as_array)
            .is_some_and(|p| !p.is_empty());
        if in_profile {
            found.guesses.push(format!(
                "left out `{name}`: it is in a profile (compose starts it only when asked)"
            ));
            continue;
        }
        fallback.push(name.clone());
        images_of(found, service, compose_dir);
        let healthcheck = healthcheck_of(service);
        if let Some(start) = healthcheck
            .and_then(|h| h.get("start_period"))
            .and_then(Value::as_str)
            .and_then(crate::stack::model::parse_duration)
        {
            budget = budget.max(start.as_secs() + 30);
        }
        let ports = published_ports(service);
        if healthcheck.is_none() && ports.is_empty() {
            found.guesses.push(format!(
                "left out `{name}`: no healthcheck and no published port (compose still starts it for the services that depend on it)"
            ));
            continue;
        }
        found.services.push(name.clone());
        found.guesses.push(format!(
            "service `{name}`: {}",
            match (healthcheck.is_some(), ports.is_empty()) {
                (true, true) => "its healthcheck".to_owned(),
                (true, false) => "its healthcheck and published port".to_owned(),
                _ => "a published port, no healthcheck: ready when its port accepts a connection that stays open".to_owned(),
            }
        ));
        endpoints_of(found, name, &ports, healthcheck.is_some());
    }
    if found.services.is_empty() {
        found.guesses.push(
            "no service has a healthcheck or a published port: every service is waited for (running counts as ready)"
                .to_owned(),
        );
        found.services = fallback;
    }
    if found.services.is_empty() {
        return Err(Failure::config(format!(
            "{}: no service outside a profile",
            compose.display()
        )));
    }
    found.service_budget_s = budget;
    found.fixed_ports.sort_unstable();
    found.fixed_ports.dedup();
    Ok(())
}

/// A service's healthcheck, unless it is disabled (`disable: true`, `test: ["NONE"]`).
fn healthcheck_of(service: &Value) -> Option<&Value> {
    service.get("healthcheck").filter(|h| {
        !(h.get("disable").and_then(Value::as_bool) == Some(true)
            || h.get("test")
                .and_then(Value::as_array)
                .and_then(|t| t.first())
                .and_then(Value::as_str)
                == Some("NONE"))
    })
}

/// The ports a service publishes (`ports:`), without those with no container port.
fn published_ports(service: &Value) -> Vec<PortSpec> {
    let ports: Vec<PortSpec> = service
        .get("ports")
        .and_then(Value::as_array)
        .map(|ports| ports.iter().filter_map(port_spec).collect())
        .unwrap_or_default();
    ports.into_iter().filter(|p| p.target != 0).collect()
}

/// One endpoint per published port of `name` (the first is `[stack.ready]`'s port when it has
/// no healthcheck), each with why its host port is what it is.
fn endpoints_of(found: &mut Discovery, name: &str, ports: &[PortSpec], has_healthcheck: bool) {
    let base = endpoint_name(name);
    for (i, port) in ports.iter().enumerate() {
        let endpoint = if i == 0 {
            base.clone()
        } else {
            format!("{base}_{}", port.target)
        };
        let template = format!(
            "{}://{{engine_host}}:{{port:{name}:{}}}",
            scheme_of(port.target),
            port.target
        );
        if i == 0 && !has_healthcheck {
            found.ready.insert(
                name.to_owned(),
                format!("tcp://{{engine_host}}:{{port:{name}:{}}}", port.target),
            );
        }
        let why = match (&port.host_var, port.fixed) {
            (Some(var), _) => {
                found.isolated_env.insert(var.clone(), "0".to_owned());
                format!("host port from ${{{var}}}: isolated runs set it to 0 (the engine picks a free one)")
            }
            (None, Some(fixed)) => {
                found.fixed_ports.push(fixed);
                found.guesses.push(format!(
                    "`{name}` publishes the fixed host port {fixed}: two gates at once would fight for it (write `${{{}_PORT:-{fixed}}}:{}` in the compose file and run init again to isolate it)",
                    base.to_uppercase(),
                    port.target
                ));
                format!("fixed host port {fixed}")
            }
            (None, None) => "host port picked by the engine".to_owned(),
        };
        found.endpoints.push(Endpoint {
            name: endpoint.clone(),
            template,
            why: format!(
                "{name}:{} ({why}); suites get {}_URL",
                port.target,
                endpoint.to_uppercase()
            ),
        });
    }
}

/// The base images a service needs that debootstrap can build (Debian and Ubuntu releases).
fn images_of(found: &mut Discovery, service: &Value, compose_dir: &Path) {
    let mut candidates = Vec::new();
    let (context, dockerfile) = match service.get("build") {
        Some(Value::String(context)) => (Some(context.clone()), None),
        Some(Value::Object(build)) => (
            Some(
                build
                    .get("context")
                    .and_then(scalar)
                    .unwrap_or_else(|| ".".to_owned()),
            ),
            build.get("dockerfile").and_then(scalar),
        ),
        _ => (None, None),
    };
    if let Some(context) = context {
        let file = compose_dir
            .join(&context)
            .join(dockerfile.unwrap_or_else(|| "Dockerfile".to_owned()));
        if let Ok(text) = std::fs::read_to_string(file) {
            for line in text.lines() {
                let mut words = line.split_whitespace();
                if words.next().is_some_and(|w| w.eq_ignore_ascii_case("FROM")) {
                    if let Some(image) = words.find(|w| !w.starts_with("--")) {
                        candidates.push(image.to_owned());
                    }
                }
            }
        }
    } else if let Some(image) = service.get("image").and_then(scalar) {
        candidates.push(image);
    }
    for image in candidates {
        if crate::images::suite_from_reference(&image).is_some()
            && !found.debootstrap_images.contains(&image)
        {
            found.guesses.push(format!(
                "image `{image}`: built with debootstrap when no registry answers"
            ));
            found.debootstrap_images.push(image);
        }
    }
}

fn read_suites(found: &mut Discovery, root: &Path) {
    for dir in SUITE_DIRS {
        let path = root.join(dir);
        if path.is_dir() && holds_pytest(&path, 0) {
            found.suites.push(PytestSuite {
                name: endpoint_name(dir),
                dir: dir.to_owned(),
            });
            found.guesses.push(format!(
                "pytest suite `{dir}`: {dir}/ holds test_*.py, *_test.py or conftest.py"
            ));
            found.requirements.extend(requirement_files(root, &path));
        }
    }
    if found.suites.is_empty() {
        found.guesses.push(format!(
            "no pytest suite: none of {}/ holds test_*.py, *_test.py or conftest.py",
            SUITE_DIRS.join("/, ")
        ));
        return;
    }
    if found.requirements.is_empty() {
        let at_root = requirement_files(root, root);
        if !at_root.is_empty() {
            found.guesses.push(format!(
                "python requirements: {} (the suites' directories hold none)",
                at_root.join(", ")
            ));
        }
        found.requirements = at_root;
    }
    found.needs_pytest_file = !found
        .requirements
        .iter()
        .any(|file| names_pytest(&root.join(file)));
    if found.needs_pytest_file {
        found.guesses.push(format!(
            "no requirements file names pytest: writes {PYTEST_REQUIREMENTS} with it"
        ));
        found.requirements.push(PYTEST_REQUIREMENTS.to_owned());
    }
}

fn holds_pytest(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            depth < 4
                && !name.starts_with('.')
                && !["target", "__pycache__", "node_modules", "venv"].contains(&name.as_str())
                && holds_pytest(&path, depth + 1)
        } else {
            name == "conftest.py"
                || (name.starts_with("test_") && name.ends_with(".py"))
                || name.ends_with("_test.py")
        }
    })
}

/// `requirements*.txt` directly in `dir`, relative to the root.
fn requirement_files(root: &Path, dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("requirements") && n.ends_with(".txt") && n != PYTEST_REQUIREMENTS
                })
        })
        .map(|p| relative(root, &p))
        .collect();
    files.sort();
    files
}

/// Whether a requirements file names pytest itself (not only a plugin).
fn names_pytest(file: &Path) -> bool {
    std::fs::read_to_string(file).is_ok_and(|text| {
        text.lines().any(|line| {
            let line = line.trim();
            line.strip_prefix("pytest").is_some_and(|rest| {
                !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            })
        })
    })
}

/// A Cargo workspace at the root with tests somewhere in its tree.
fn cargo_tests(root: &Path) -> bool {
    root.join("Cargo.toml").is_file() && rust_tests(root, 0)
}

fn rust_tests(dir: &Path, depth: usize) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_dir() {
            depth < 6
                && !name.starts_with('.')
                && !["target", "node_modules", "xtask"].contains(&name.as_str())
                && rust_tests(&path, depth + 1)
        } else {
            name.ends_with(".rs")
                && std::fs::read_to_string(&path)
                    .is_ok_and(|text| text.contains("#[test]") || text.contains("::test]"))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_read_in_every_short_form() {
        let spec = |text: &str| port_spec(&Value::String(text.to_owned())).unwrap();
        assert_eq!(
            spec("8080"),
            PortSpec {
                target: 8080,
                host_var: None,
                fixed: None
            }
        );
        assert_eq!(spec("127.0.0.1::5432").fixed, None);
        assert_eq!(spec("8000:8000").fixed, Some(8000));
        assert_eq!(
            spec("127.0.0.1:9000:80/tcp"),
            PortSpec {
                target: 80,
                host_var: None,
                fixed: Some(9000)
            }
        );
        let templated = spec("127.0.0.1:${WEB_PORT:-18080}:8080");
        assert_eq!(
            (templated.target, templated.host_var.as_deref()),
            (8080, Some("WEB_PORT"))
        );
        assert_eq!(spec("${P-1}:${INIT_TEST_UNSET_T:-81}").target, 81);
    }

    #[test]
    fn project_names_are_compose_names() {
        assert_eq!(project_name(Path::new("/tmp/My App.v2")), "my-app-v2");
        assert_eq!(project_name(Path::new("/tmp/__x")), "x");
    }
}
