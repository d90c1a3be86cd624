//! `init`: prints what [`crate::init`] found and guessed, validates the `harness.toml` it renders
//! with the real configuration loader, and writes it (and, with `--xtask`, the Cargo scaffold).
//!
//! Not here: the guesses ([crate::init]), the text ([crate::init::render]), the scaffold's plan
//! ([crate::init::scaffold]).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::config::FILE_NAME;
use crate::error::Failure;
use crate::init::scaffold::{self, Dependency, Plan};
use crate::init::{self as guess, render::render, PYTEST_REQUIREMENTS};
use crate::{config, flags, Ctx};

const PYTEST_REQUIREMENTS_TEXT: &str =
    "# Written by `stackgate init`: the gate runs the suites with pytest, which no other\n# requirements file of the suites names.\npytest\n";

impl flags::Init {
    pub async fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let cwd = std::env::current_dir().context("cannot read the current directory")?;
        let target = match &ctx.config_path {
            Some(path) => cwd.join(path),
            None => cwd.join(FILE_NAME),
        };
        let root = target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| cwd.clone());
        let exists = target.exists();
        // With --xtask an existing harness.toml is kept: the scaffold is the point of the call.
        let write_config = !(exists && self.xtask && !self.force);
        if exists && !self.force && !self.xtask && !self.dry_run {
            return Err(
                Failure::config(format!("{} exists: not overwritten", target.display()))
                    .with_hint(
                        "pass --force to replace it, or --dry-run to print what init would write",
                    )
                    .into(),
            );
        }
        let dependency = match &self.crate_path {
            None => Dependency::CratesIo,
            Some(dir) => Dependency::Path(crate_dir(&cwd.join(dir))?),
        };
        let found = guess::discover(&root, self.ws.as_deref())?;
        let text = render(&found);
        validate(&target, &root, &found)?;

        eprintln!("init: guessed from {}", root.display());
        for line in &found.guesses {
            eprintln!("  {line}");
        }
        let plan = if self.xtask {
            Some(scaffold::plan(&root, &dependency)?)
        } else {
            None
        };
        if self.dry_run {
            if write_config {
                print!("{text}");
            }
            if let Some(Plan::Files(files)) = &plan {
                for (path, content) in files {
                    println!("\n# --- {} ---\n{content}", path.display());
                }
            }
            if let Some(Plan::Lines(lines)) = &plan {
                eprintln!("{lines}");
            }
            eprintln!("dry run: nothing written");
            return Ok(());
        }
        if write_config {
            if found.needs_pytest_file {
                let file = root.join(PYTEST_REQUIREMENTS);
                if !file.exists() {
                    write(&file, PYTEST_REQUIREMENTS_TEXT)?;
                    eprintln!("wrote {}", file.display());
                }
            }
            write(&target, &text)?;
            eprintln!("wrote {}", target.display());
        } else {
            eprintln!(
                "kept {} (--xtask leaves an existing one alone)",
                target.display()
            );
        }
        match &plan {
            None => {}
            Some(Plan::Lines(lines)) => eprintln!("{lines}"),
            Some(Plan::Files(files)) => {
                for (path, content) in files {
                    let file = root.join(path);
                    write(&file, content)?;
                    eprintln!("wrote {}", file.display());
                }
            }
        }
        eprintln!(
            "next: run the gate with `stackgate mission-critical --target docker`{}",
            if matches!(plan, Some(Plan::Files(_))) {
                " or `cargo xtask mission-critical`"
            } else {
                ""
            }
        );
        Ok(())
    }
}

/// Checks the text with the real loader before anything is written. A requirements file `init`
/// has yet to write is left out of the check (the loader wants every listed file to exist).
fn validate(target: &Path, root: &Path, found: &guess::Discovery) -> Result<(), Failure> {
    let mut checked = found.clone();
    if !root.join(PYTEST_REQUIREMENTS).exists() {
        checked.requirements.retain(|r| r != PYTEST_REQUIREMENTS);
    }
    config::parse(target, &render(&checked)).map_err(|e| {
        let failure = Failure::config(format!(
            "the harness.toml init would write does not validate: {e}"
        ));
        match &found.ws {
            Some(ws) => failure.with_hint(format!(
                "check --ws `{}`: it may use {{engine_host}} and {{port:SERVICE:PORT}} of a service in [stack] services",
                ws.template
            )),
            None => failure,
        }
    })?;
    Ok(())
}

/// `--crate-path DIR`, absolute, holding the stackgate crate.
fn crate_dir(dir: &Path) -> Result<PathBuf, Failure> {
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        Failure::config(format!(
            "--crate-path {}: cannot read {}: {e}",
            dir.display(),
            manifest.display()
        ))
    })?;
    let named = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| {
            t.get("package")?
                .get("name")?
                .as_str()
                .map(|n| n == "stackgate")
        })
        .unwrap_or(false);
    if !named {
        return Err(Failure::config(format!(
            "--crate-path {}: {} is not the stackgate crate's manifest",
            dir.display(),
            manifest.display()
        )));
    }
    Ok(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()))
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::check(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| Failure::check(format!("cannot write {}: {e}", path.display())))
}
