//! `init --xtask`: the `cargo xtask` files for a repository (a workspace `Cargo.toml` with the
//! member `xtask`, or the member added to an existing one; `.cargo/config.toml` with the alias;
//! `xtask/` calling the library), or, for a repository with an `xtask/` of its own, the lines to
//! add to it. Plans only: nothing here writes.
//!
//! Not here: writing the files (`commands::init`).

use std::path::{Path, PathBuf};

use crate::error::Failure;

/// This crate's version: the default dependency of a scaffolded `xtask`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How the scaffolded `xtask` depends on stackgate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependency {
    /// `stackgate = "VERSION"` from crates.io.
    CratesIo,
    /// `stackgate = { path = DIR }`: a local checkout (absolute).
    Path(PathBuf),
}

impl Dependency {
    /// The `[dependencies]` line.
    pub fn line(&self) -> String {
        match self {
            Dependency::CratesIo => format!("stackgate = \"{VERSION}\""),
            Dependency::Path(dir) => format!(
                "stackgate = {{ path = \"{}\" }}",
                dir.display()
                    .to_string()
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
            ),
        }
    }
}

/// What `init --xtask` does to the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Files to write (relative path, whole new text), new or edited.
    Files(Vec<(PathBuf, String)>),
    /// The repository has its own `xtask/`: nothing is changed, these lines are printed.
    Lines(String),
}

/// The `main.rs` of a scaffolded `xtask`.
pub const MAIN_RS: &str = "//! This repository's `cargo xtask`: stackgate's gate (`cargo xtask mission-critical`, `doctor`, ...).\n\nfn main() -> std::process::ExitCode {\n    stackgate::cli::run(\"cargo xtask\", std::env::args_os())\n}\n";

/// The lines that hand stackgate's commands to it from a `main` of a repository's own `xtask`
/// (one that returns `std::process::ExitCode`).
pub const EXISTING_MAIN_LINES: &str = "    // stackgate's commands (mission-critical, doctor, docker-up, init, ...) go to stackgate\n    if stackgate::cli::commands().iter().any(|c| Some(c.as_str()) == std::env::args().nth(1).as_deref()) {\n        return stackgate::cli::run(\"cargo xtask\", std::env::args_os());\n    }\n";

const ALIAS: &str = "xtask = \"run --package xtask --\"";

/// Plans the scaffold for the repository at `root`.
pub fn plan(root: &Path, dependency: &Dependency) -> Result<Plan, Failure> {
    if root.join("xtask").exists() {
        return Ok(Plan::Lines(format!(
            "xtask/ exists: nothing changed. To give it stackgate's commands:\n\
             in xtask/Cargo.toml under [dependencies]:\n    {}\n\
             first in its `fn main() -> std::process::ExitCode`:\n{EXISTING_MAIN_LINES}\
             (these names go to stackgate: {}; filter out of the list any your xtask answers itself)",
            dependency.line(),
            crate::cli::commands().join(", ")
        )));
    }
    let mut files = Vec::new();
    let manifest = root.join("Cargo.toml");
    let cargo_toml = if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest)
            .map_err(|e| Failure::config(format!("{}: cannot read: {e}", manifest.display())))?;
        add_member(&text).map_err(|e| Failure::config(format!("{}: {e}", manifest.display())))?
    } else {
        Some("[workspace]\nresolver = \"2\"\nmembers = [\"xtask\"]\n".to_owned())
    };
    if let Some(text) = cargo_toml {
        files.push((PathBuf::from("Cargo.toml"), text));
    }
    let config = root.join(".cargo/config.toml");
    let config_text = if config.is_file() {
        let text = std::fs::read_to_string(&config)
            .map_err(|e| Failure::config(format!("{}: cannot read: {e}", config.display())))?;
        add_alias(&text).map_err(|e| Failure::config(format!("{}: {e}", config.display())))?
    } else {
        Some(format!("[alias]\n{ALIAS}\n"))
    };
    if let Some(text) = config_text {
        files.push((PathBuf::from(".cargo/config.toml"), text));
    }
    files.push((
        PathBuf::from("xtask/Cargo.toml"),
        format!(
            "[package]\nname = \"xtask\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[dependencies]\n{}\n",
            dependency.line()
        ),
    ));
    files.push((PathBuf::from("xtask/src/main.rs"), MAIN_RS.to_owned()));
    Ok(Plan::Files(files))
}

/// The manifest with `xtask` among `[workspace] members` (`None`: already there). The text is
/// edited in place: comments and layout stay.
pub fn add_member(text: &str) -> Result<Option<String>, String> {
    let value: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    let Some(workspace) = value.get("workspace") else {
        let mut out = text.to_owned();
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("\n[workspace]\nmembers = [\"xtask\"]\n");
        return Ok(Some(out));
    };
    let members = workspace.get("members").and_then(toml::Value::as_array);
    if members.is_some_and(|m| m.iter().any(|v| v.as_str() == Some("xtask"))) {
        return Ok(None);
    }
    let lines: Vec<&str> = text.lines().collect();
    let header = lines.iter().position(|l| l.trim() == "[workspace]").ok_or(
        "a `workspace` table that is not a `[workspace]` header: add the member `xtask` by hand",
    )?;
    let mut out: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    if members.is_some() {
        let at = lines[header + 1..]
            .iter()
            .take_while(|l| !l.trim_start().starts_with('['))
            .position(|l| l.trim_start().starts_with("members"))
            .map(|i| header + 1 + i)
            .ok_or(
                "`workspace.members` is not a line of its own: add the member `xtask` by hand",
            )?;
        let line = out[at].clone();
        let open = line
            .find('[')
            .ok_or("`workspace.members` on a line without `[`")?;
        let rest = line[open + 1..].trim_start();
        let separator = if rest.starts_with(']') || rest.is_empty() {
            ""
        } else {
            " "
        };
        let comma = if rest.starts_with(']') { "" } else { "," };
        out[at] = format!(
            "{}\"xtask\"{comma}{separator}{}",
            &line[..=open],
            &line[open + 1..]
        );
        if rest.is_empty() {
            // `members = [` then one member a line: `"xtask",` on the bracket's line stays valid.
            out[at] = format!("{}\"xtask\",", &line[..=open]);
        }
    } else {
        out.insert(header + 1, "members = [\"xtask\"]".to_owned());
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    Ok(Some(joined))
}

/// `.cargo/config.toml` with the `xtask` alias (`None`: an alias `xtask` exists already).
pub fn add_alias(text: &str) -> Result<Option<String>, String> {
    let value: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
    if value.get("alias").and_then(|a| a.get("xtask")).is_some() {
        return Ok(None);
    }
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match lines.iter().position(|l| l.trim() == "[alias]") {
        Some(header) => lines.insert(header + 1, ALIAS.to_owned()),
        None if value.contains_key("alias") => {
            return Err("an `alias` table that is not an `[alias]` header: add `xtask = \"run --package xtask --\"` by hand".to_owned())
        }
        None => {
            lines.push(String::new());
            lines.push("[alias]".to_owned());
            lines.push(ALIAS.to_owned());
        }
    }
    let mut joined = lines.join("\n");
    joined.push('\n');
    Ok(Some(joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<String> {
        let value: toml::Table = toml::from_str(text).unwrap();
        value["workspace"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn the_member_is_added_in_every_layout_and_comments_stay() {
        let one_line = "# mine\n[workspace]\nmembers = [\"app\"] # the app\n";
        let out = add_member(one_line).unwrap().unwrap();
        assert_eq!(members(&out), ["xtask", "app"]);
        assert!(out.contains("# mine") && out.contains("# the app"));
        let multi = "[workspace]\nmembers = [\n  \"a\",\n  \"b\",\n]\n";
        assert_eq!(
            members(&add_member(multi).unwrap().unwrap()),
            ["xtask", "a", "b"]
        );
        let empty = "[workspace]\nmembers = []\n";
        assert_eq!(members(&add_member(empty).unwrap().unwrap()), ["xtask"]);
        let no_members = "[workspace]\nresolver = \"2\"\n";
        assert_eq!(
            members(&add_member(no_members).unwrap().unwrap()),
            ["xtask"]
        );
        let package = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n";
        assert_eq!(members(&add_member(package).unwrap().unwrap()), ["xtask"]);
        assert_eq!(
            add_member("[workspace]\nmembers = [\"xtask\"]\n").unwrap(),
            None
        );
    }

    #[test]
    fn the_alias_is_added_once() {
        let out = add_alias("[alias]\nb = \"build\"\n").unwrap().unwrap();
        let value: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(
            value["alias"]["xtask"].as_str(),
            Some("run --package xtask --")
        );
        assert_eq!(value["alias"]["b"].as_str(), Some("build"));
        assert_eq!(add_alias(&out).unwrap(), None);
        let fresh = add_alias("[build]\njobs = 2\n").unwrap().unwrap();
        assert!(fresh.ends_with("[alias]\nxtask = \"run --package xtask --\"\n"));
    }
}
