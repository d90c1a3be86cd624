//! The `stackgate` binary: the same program as `cargo xtask` (same commands, flags, exit codes).

fn main() -> std::process::ExitCode {
    stackgate::cli::run("stackgate", std::env::args_os())
}
