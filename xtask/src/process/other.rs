//! Elsewhere the child alone is signalled until the platform's own groups (Job objects) land.
//!
//! Not here: what the runner does with them ([super]).

use super::Signal;
use std::process::{ExitStatus, Stdio};

pub fn before_spawn(_command: &mut std::process::Command) {}

pub fn before_spawn_daemon(_command: &mut std::process::Command) {}

#[derive(Debug, Clone)]
pub struct Group {
    pid: Option<u32>,
}

impl Group {
    pub fn adopt(child: &tokio::process::Child) -> Group {
        Group { pid: child.id() }
    }

    pub fn signal(&self, signal: Signal) {
        if let (Some(pid), Signal::Terminate | Signal::Kill) = (self.pid, signal) {
            let _ = std::process::Command::new("taskkill")
                .args(["/T", "/F", "/PID", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }

    /// Not known without the platform's groups: a dropped process waits out its grace.
    pub fn is_empty(&self) -> bool {
        self.pid.is_none()
    }
}

pub fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => "ended".to_owned(),
    }
}

pub fn stderr_stdio() -> anyhow::Result<Stdio> {
    Ok(Stdio::inherit())
}
