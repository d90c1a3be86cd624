//! The typed failures a command can end with, and the one place that maps each to an exit code.
//!
//! Everything else uses `anyhow`; a task returns one of these (wrapped in `anyhow::Error`) when the
//! exit code matters. Any other error is a failed check (exit 1).

use std::fmt;

/// The exit codes (0 passed, 1 failed, 2 usage or configuration, 3 environment unavailable, 130
/// interrupted; README.md lists them), the same for every command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// 0: everything passed.
    Passed,
    /// 1: a check or a test failed.
    Failed,
    /// 2: usage or configuration error.
    Usage,
    /// 3: environment unavailable (no engine and no usable fallback).
    Unavailable,
    /// 130: interrupted (Ctrl-C, SIGTERM).
    Interrupted,
}

impl ExitKind {
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Passed => 0,
            ExitKind::Failed => 1,
            ExitKind::Usage => 2,
            ExitKind::Unavailable => 3,
            ExitKind::Interrupted => 130,
        }
    }
}

/// A failure that carries its exit code and, where one helps, a hint for the person reading it.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A check or a test failed (exit 1). The message names the check.
    #[error("{message}")]
    Check {
        message: String,
        hint: Option<String>,
    },
    /// `harness.toml` or a flag is wrong (exit 2). The message names the file, line, column and key.
    #[error("{message}")]
    Config {
        message: String,
        hint: Option<String>,
    },
    /// The environment cannot be had (exit 3): no engine, nothing to fall back to.
    #[error("{message}")]
    Unavailable {
        message: String,
        hint: Option<String>,
    },
    /// The run was interrupted by a signal (exit 130).
    #[error("interrupted by {signal}")]
    Interrupted { signal: &'static str },
}

impl Failure {
    pub fn check(message: impl fmt::Display) -> Failure {
        Failure::Check {
            message: message.to_string(),
            hint: None,
        }
    }
    pub fn config(message: impl fmt::Display) -> Failure {
        Failure::Config {
            message: message.to_string(),
            hint: None,
        }
    }
    pub fn unavailable(message: impl fmt::Display, hint: impl Into<Option<String>>) -> Failure {
        Failure::Unavailable {
            message: message.to_string(),
            hint: hint.into(),
        }
    }
    /// Adds (or replaces) the hint printed on its own line after the error.
    pub fn with_hint(mut self, new_hint: impl fmt::Display) -> Failure {
        match &mut self {
            Failure::Check { hint, .. }
            | Failure::Config { hint, .. }
            | Failure::Unavailable { hint, .. } => *hint = Some(new_hint.to_string()),
            Failure::Interrupted { .. } => {}
        }
        self
    }
    pub fn kind(&self) -> ExitKind {
        match self {
            Failure::Check { .. } => ExitKind::Failed,
            Failure::Config { .. } => ExitKind::Usage,
            Failure::Unavailable { .. } => ExitKind::Unavailable,
            Failure::Interrupted { .. } => ExitKind::Interrupted,
        }
    }
    pub fn hint(&self) -> Option<&str> {
        match self {
            Failure::Check { hint, .. }
            | Failure::Config { hint, .. }
            | Failure::Unavailable { hint, .. } => hint.as_deref(),
            Failure::Interrupted { .. } => None,
        }
    }
}

/// The exit kind of any error: a `Failure` anywhere in the chain decides; anything else is a failed check.
pub fn exit_kind_of(error: &anyhow::Error) -> ExitKind {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .map_or(ExitKind::Failed, Failure::kind)
}

/// Prints an error the way every command does: `error: ...`, its causes, then `(hint: ...)`.
pub fn render(error: &anyhow::Error) -> String {
    let mut text = format!("error: {error}");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("\n  caused by: {cause}"));
    }
    if let Some(hint) = error
        .chain()
        .find_map(|cause| cause.downcast_ref::<Failure>())
        .and_then(Failure::hint)
    {
        text.push_str(&format!("\n(hint: {hint})"));
    }
    text
}
