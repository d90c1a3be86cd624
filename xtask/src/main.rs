//! This repository's `cargo xtask`: every command is stackgate's (see `crates/stackgate`).

fn main() -> std::process::ExitCode {
    stackgate::cli::run("cargo xtask", std::env::args_os())
}
