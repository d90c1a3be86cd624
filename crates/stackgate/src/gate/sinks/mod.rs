//! The sinks: each turns the run's events into one view. Live sinks see events as they come
//! (`terminal`, `stream`, `history`); the others render the whole [`Record`] at the end (`summary`, `junit`,
//! `github`, `html` and `trace`, the last two through the lanes of `timeline`); `ending` and
//! `artefacts` write them and print the summary when the command has run the pipeline. Every sink's rendering is a pure function of events, tested with snapshots against
//! the runs in [`fixtures`]. Each sink matches every [`Event`] kind explicitly, so a new kind
//! cannot be dropped by one of them unnoticed.
//!
//! Not here: deciding anything about the run (the pipeline does).
//!
//! [`Record`]: super::events::Record
//! [`Event`]: super::events::Event

pub mod terminal;
pub mod stream;
pub mod summary;
pub mod junit;
pub mod github;
pub mod timeline;
pub mod html;
pub mod trace;
pub mod history;
pub mod artefacts;
pub mod ending;

#[cfg(test)]
pub mod fixtures;
