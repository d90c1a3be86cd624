//! The commands: one file per command, each turning what the layers below return into text,
//! JSON and an exit code. Only this layer and the gate's sinks print.

pub mod doctor;
pub mod engine_only;
pub mod health;
pub mod stack_table;
pub mod ws_check;
pub mod monitor;
pub mod docker_down;
pub mod junit_merge;
pub mod init;
pub mod history;
pub mod install_hook;
pub mod ci;
pub mod pipeline;
pub mod mission_critical;
pub mod docker_up;

use crate::progress::Progress;
use crate::ui;

/// Progress for a plain command: status lines on stderr, for people.
pub fn terminal_progress() -> Progress {
    Progress::to(|message| ui::say(message))
}
