//! stackgate, the harness as a library: a binary calls [`cli::run`] (the `stackgate` binary and
//! every `cargo xtask` that embeds it); integration tests call the modules directly. Modules in
//! reading order: the edge (flags, config, endpoints, errors), what every step uses (the process
//! runner, who owns a run, the run store, progress, checks, output for people), the pipeline's
//! steps in order (preflight, engine, images, stack, target, ws, suites, junit), the pipeline
//! itself (gate), the other commands (monitor), the command line (cli), and the project's own
//! tasks (ci, its platform checks in cross, hook).

pub mod flags;
pub mod config;
pub mod endpoints;
pub mod error;

pub mod process;
pub mod owner;
pub mod state;
pub mod progress;
pub mod report;
pub mod ui;
pub mod http;
pub mod tls;

pub mod preflight;
pub mod engine;
pub mod images;
pub mod stack;
pub mod target;
pub mod ws;
pub mod suites;
pub mod junit;
pub mod history;

pub mod gate;
pub mod init;
pub mod monitor;

pub mod commands;
pub mod cli;
pub mod ci;
pub mod actionlint;
pub mod cross;
pub mod hook;

use std::path::PathBuf;

/// What every command gets: where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Ctx {
    /// `--config PATH`, when given.
    pub config_path: Option<PathBuf>,
}

impl Ctx {
    /// Loads and validates `harness.toml`; an error here exits 2 before anything touches the engine.
    pub fn config(&self) -> Result<config::Config, error::Failure> {
        config::load(self.config_path.as_deref())
    }
}
