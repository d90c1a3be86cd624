//! The commands: one file per command, each turning what the layers below return into text,
//! JSON and an exit code. Only this layer and the gate's sinks print.

pub mod init;
pub mod history;
