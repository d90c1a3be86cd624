//! The `harness.toml` text `init` writes: a pure function of a [`Discovery`], commented with why
//! each value was chosen.
//!
//! Not here: finding the values ([super]), validating and writing the text (`commands::init`).

use std::fmt::Write;

use super::Discovery;

/// The commented `harness.toml` for `found`.
pub fn render(found: &Discovery) -> String {
    let mut out = String::new();
    out.push_str(
        "# Written by `stackgate init`: a guess at this repository's stack and suites, each value\n\
         # with why it was chosen. Run the gate with `stackgate mission-critical --target docker`.\n\n",
    );
    project_and_engine(&mut out, found);
    stack(&mut out, found);
    endpoints(&mut out, found);
    python_and_suites(&mut out, found);
    while out.ends_with("\n\n") {
        out.pop();
    }
    out
}

/// `[project]`, `[preflight]` (the compose file's fixed ports), `[engine]` and the
/// `[images.*]` built locally.
fn project_and_engine(out: &mut String, found: &Discovery) {
    let _ = writeln!(out, "[project]");
    let _ = writeln!(
        out,
        "name = {}                # the directory's name",
        toml_string(&found.project_name)
    );
    out.push('\n');
    if !found.fixed_ports.is_empty() {
        let _ = writeln!(out, "[preflight]");
        let ports: Vec<String> = found.fixed_ports.iter().map(u16::to_string).collect();
        let _ = writeln!(
            out,
            "free_ports = [{}]            # fixed host ports of the compose file: doctor names who holds one",
            ports.join(", ")
        );
        out.push('\n');
    }
    let _ = writeln!(out, "[engine]");
    let _ = writeln!(
        out,
        "start_if_stopped = true      # start an installed engine that is not running"
    );
    out.push('\n');
    for image in &found.debootstrap_images {
        let _ = writeln!(out, "[images.{}]", toml_string(image));
        let _ = writeln!(
            out,
            "provision = \"debootstrap\"    # a base image of the stack's Dockerfiles: built locally when no registry answers"
        );
        out.push('\n');
    }
}

/// `[stack]` and `[stack.ready]`.
fn stack(out: &mut String, found: &Discovery) {
    let _ = writeln!(out, "[stack]");
    let _ = writeln!(out, "compose_file = {}", toml_string(&found.compose_file));
    let _ = writeln!(
        out,
        "# services with a healthcheck or a published port (not in a profile); each healthy within the budget"
    );
    let _ = writeln!(out, "services = {}", toml_list(&found.services));
    let _ = writeln!(out, "service_budget_s = {}", found.service_budget_s);
    if !found.isolated_env.is_empty() {
        let pairs: Vec<String> = found
            .isolated_env
            .iter()
            .map(|(k, v)| format!("{k} = {}", toml_string(v)))
            .collect();
        let _ = writeln!(
            out,
            "# the gate runs its own compose project; these host-port variables set to 0 let the engine pick free ports"
        );
        let _ = writeln!(out, "isolated_env = {{ {} }}", pairs.join(", "));
    }
    out.push('\n');
    if !found.ready.is_empty() {
        let _ = writeln!(
            out,
            "[stack.ready]                # no healthcheck: ready when the port holds a connection open"
        );
        for (service, template) in &found.ready {
            let _ = writeln!(out, "{} = {}", bare_key(service), toml_string(template));
        }
        out.push('\n');
    }
}

/// `[endpoints]`, and `[ws_check]` left commented.
fn endpoints(out: &mut String, found: &Discovery) {
    let _ = writeln!(
        out,
        "[endpoints]                  # each reaches the suites as NAME_URL; {{port:SERVICE:PORT}} is the published port"
    );
    for endpoint in found.endpoints.iter().chain(found.ws.iter()) {
        let _ = writeln!(out, "# {}", endpoint.why);
        let _ = writeln!(
            out,
            "{} = {}",
            bare_key(&endpoint.name),
            toml_string(&endpoint.template)
        );
    }
    out.push('\n');
    if let Some(ws) = &found.ws {
        // Left commented: init cannot know the server's protocol, and a guessed message would
        // fail the gate; the endpoint above already reaches the suites.
        let _ = writeln!(
            out,
            "# The WebSocket check: uncomment it with a message your server answers and the events it"
        );
        let _ = writeln!(out, "# sends back (and `token_url` when it wants a token).");
        let _ = writeln!(out, "# [ws_check]");
        let _ = writeln!(out, "# url = {}", toml_string(&format!("{{{}}}", ws.name)));
        let _ = writeln!(out, "# send = '{{\"type\": \"ping\"}}'");
        let _ = writeln!(out, "# expect = [\"pong\"]");
        let _ = writeln!(out, "# event_field = \"type\"");
        out.push('\n');
    }
}

/// `[python]` and one `[[suite]]` per pytest folder, and nextest's.
fn python_and_suites(out: &mut String, found: &Discovery) {
    if !found.requirements.is_empty() {
        let _ = writeln!(
            out,
            "[python]                     # the suites' venv: target/xtask/venv"
        );
        let _ = writeln!(out, "requirements = {}", toml_list(&found.requirements));
        out.push('\n');
    }
    for suite in &found.suites {
        let _ = writeln!(out, "[[suite]]");
        let _ = writeln!(out, "name = {}", toml_string(&suite.name));
        let _ = writeln!(
            out,
            "runner = \"pytest\"             # {}/ holds pytest tests",
            suite.dir
        );
        let _ = writeln!(
            out,
            "args = {}",
            toml_list(std::slice::from_ref(&suite.dir))
        );
        out.push('\n');
    }
    if found.nextest {
        let _ = writeln!(out, "[[suite]]");
        let _ = writeln!(out, "name = \"rust\"");
        let _ = writeln!(
            out,
            "runner = \"nextest\"            # a Cargo workspace with tests (needs cargo-nextest)"
        );
        let _ = writeln!(out, "args = [\"--workspace\"]");
        out.push('\n');
    }
}

/// A TOML array of basic strings.
fn toml_list(items: &[String]) -> String {
    format!(
        "[{}]",
        items
            .iter()
            .map(|i| toml_string(i))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key, quoted when it is not a bare TOML key.
fn bare_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        toml_string(key)
    }
}
