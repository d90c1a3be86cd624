//! stackgate, the harness as a library: a binary calls [`cli::run`] (the `stackgate` binary and
//! every `cargo xtask` that embeds it); integration tests call the modules directly. Modules in
//! reading order: the edge (flags, config, endpoints, errors), what every step uses (the process
//! runner, who owns a run, the run store, progress, checks, output for people), the pipeline's
//! steps in order (preflight, engine, images, stack, target, ws, suites, junit), the monitor's
//! rounds, the pipeline itself (gate), and the commands (one file each in commands, the project's
//! own `ci` among them) with the command line (cli).
//!
//! The library's API is [`cli`]: run the command line from a binary of your own (a `cargo
//! xtask`). The other modules are public for this crate's own integration tests and benches only:
//! they are hidden from the documentation and are not a stable API (their doc comments link
//! freely to private items and name TOML tables like `[ws_check]`, hence the allowed lints).

#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod flags;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod config;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod endpoints;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod error;

#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod process;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod owner;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod state;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod progress;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod report;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod ui;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod http;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod tls;
#[doc(hidden)]
pub mod clock;

#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod preflight;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod engine;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod images;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod stack;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod target;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod ws;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod suites;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod junit;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod history;

#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod gate;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod init;
#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod monitor;

#[doc(hidden)]
#[allow(
    rustdoc::broken_intra_doc_links,
    rustdoc::private_intra_doc_links,
    rustdoc::invalid_html_tags
)]
pub mod commands;
pub mod cli;

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
