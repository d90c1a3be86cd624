//! The pipeline every command that brings an environment up runs on: `mission-critical` runs
//! it to the end, `docker-up` until the stack (kept), `ci` until the images. The commands
//! ([crate::commands]) make the run's [`context::Context`], call [`pipeline::run`], and read
//! what it returns ([`pipeline::PipelineOutput`]: each stage's output). Stages are functions
//! ([`stages`], one file each) from the context and the outputs before them to their own
//! output; what they create goes into the teardown [`context::Ledger`], the only shared state,
//! which teardown empties on every path: success, failure, a suite past its deadline, an engine
//! lost mid-run, Ctrl-C, SIGTERM, a panic. Stages emit [`events::Event`]s to one
//! [`reporter::Reporter`], whose sinks render the terminal, the JSON event stream, the summary,
//! the JUnit report, report.html, the trace and the GitHub step summary.
//!
//! Reading order: the run's context and ledger (`context`), the events (`events`), the order of
//! the stages (`pipeline`), the stages themselves (`stages`: preflight, engine, target, images,
//! stack, ws, suites, teardown) and what the suites stage shares (`suite_support`, `parallel`,
//! `collect`), the engine watched while they run (`watch`, `lost`), how every path ends
//! (`supervise`), then reporting (`reporter`, `sinks`).
//!
//! Not here: how each stage does its work (engine, images, stack, ws, suites, target modules);
//! the commands, their output and exit codes ([crate::commands]).

pub mod context;
pub mod events;
pub mod pipeline;
pub mod stages;
pub mod suite_support;
pub mod parallel;
pub mod collect;
pub mod lost;
pub mod watch;
pub mod supervise;
pub mod reporter;
pub mod sinks;
