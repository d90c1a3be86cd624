//! The stages of the gate, one file each, in pipeline order. Each is a function from inputs to
//! outputs: it takes the run's [`Context`](super::context::Context) (and the
//! [`Ledger`](super::context::Ledger) when it creates something teardown must undo) and the
//! outputs of the stages before it, emits its events, and returns its own output, which
//! [super::pipeline] hands to the next stage and to the command.
//!
//! Not here: the order of the stages and what overlaps ([super::pipeline]); how each does its
//! work (the domain modules: [crate::preflight], [crate::engine], [crate::images], [crate::stack],
//! [crate::ws], [crate::suites], [crate::target]).

pub mod preflight;
pub mod engine;
pub mod target;
pub mod images;
pub mod stack;
pub mod ws;
pub mod suites;
pub mod teardown;
