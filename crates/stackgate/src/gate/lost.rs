//! The loss of the engine in the middle of a run, as [`super::watch`] notices it and every later
//! stage reads it: when, why, and the deadline of what still has to happen.

use std::time::{Duration, Instant};

use crate::ui;

/// From noticing the loss to the end of teardown: the restoration and the stack's removal fit
/// in this.
pub const BUDGET: Duration = Duration::from_secs(19);
/// The engine stopped answering.
#[derive(Debug, Clone)]
pub struct Lost {
    /// Since the run began.
    pub after: Duration,
    /// When the harness noticed.
    pub noticed: Instant,
    /// Wall-clock time of that moment (`HH:MM:SS.mmm`, UTC).
    pub clock: String,
    /// The engine's address.
    pub host: String,
    /// What gave it away: the event stream ended, a ping failed.
    pub why: String,
}

impl Lost {
    /// `engine lost at 41.2s`: the case's name and the reason of what did not run.
    pub fn reason(&self) -> String {
        format!("engine lost at {}", ui::duration(self.after))
    }

    /// The deadline of everything after the loss.
    pub fn deadline(&self) -> Instant {
        self.noticed + BUDGET
    }
}
