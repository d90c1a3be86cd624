//! `[history]`: where the run history is kept, how much of it, and when a figure counts as a
//! regression.

use std::path::PathBuf;

use serde::Deserialize;

use super::{KeepRuns, NonNegative, Ratio};

/// `[history]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistoryCfg {
    /// `false`: runs are not recorded (the `history` command still reads what is there).
    pub enabled: bool,
    /// The SQLite file, relative to the config's directory; none: `target/xtask/history.db`.
    pub path: Option<PathBuf>,
    /// The newest runs kept; older ones are dropped as new ones finish.
    pub keep_runs: KeepRuns,
    /// A figure above this many times the median of earlier runs is a regression...
    pub regression_ratio: Ratio,
    /// ...and above it by more than this many seconds.
    pub regression_margin_s: NonNegative,
}

impl Default for HistoryCfg {
    fn default() -> Self {
        HistoryCfg {
            enabled: true,
            path: None,
            keep_runs: KeepRuns(1000),
            regression_ratio: Ratio(1.5),
            regression_margin_s: NonNegative(0.5),
        }
    }
}
