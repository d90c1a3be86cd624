//! One file per command: with the sinks, the only code that prints.

pub mod init;
