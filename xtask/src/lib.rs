//! The harness as a library: `main.rs` parses flags and calls into these modules; integration
//! tests call them directly. Modules in reading order: the edge (flags, config), the machine
//! (preflight, engine, images), the stack, the checks (ws, monitor), the gate (suites, junit,
//! target, gate), and the project's own tasks (ci, hook).

pub mod ci;
pub mod config;
pub mod endpoints;
pub mod engine;
pub mod error;
pub mod flags;
pub mod gate;
pub mod hook;
pub mod http;
pub mod images;
pub mod junit;
pub mod monitor;
pub mod preflight;
pub mod process;
pub mod progress;
pub mod report;
pub mod stack;
pub mod state;
pub mod suites;
pub mod target;
pub mod ui;
pub mod ws;

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
