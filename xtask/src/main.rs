//! `cargo xtask`: the table of contents. Parse flags, dispatch, map the error to an exit code.

use std::process::ExitCode;

use clap::Parser;
use xtask::flags::{Command, Xtask};
use xtask::{error, Ctx};

fn main() -> ExitCode {
    let flags = Xtask::parse();
    let json = flags.command.json();
    let ctx = Ctx {
        config_path: flags.config,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            if json {
                xtask::ui::print_json(
                    serde_json::json!({ "error": format!("cannot start the async runtime: {e}") }),
                    false,
                );
            }
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match flags.command {
            Command::Doctor(cmd) => cmd.run(&ctx).await,
            Command::DockerUp(cmd) => cmd.run(&ctx).await,
            Command::Health(cmd) => cmd.run(&ctx).await,
            Command::WsCheck(cmd) => cmd.run(&ctx).await,
            Command::Monitor(cmd) => cmd.run(&ctx).await,
            Command::MissionCritical(cmd) => cmd.run(&ctx).await,
            Command::DockerDown(cmd) => cmd.run(&ctx).await,
            Command::JunitMerge(cmd) => cmd.run(&ctx).await,
            Command::InstallHook(cmd) => cmd.run(&ctx).await,
            Command::Ci(cmd) => cmd.run(&ctx).await,
        }
    });
    // Background tasks (log followers, progress tickers) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error::render(&e));
            if json && !xtask::ui::json_printed() {
                // One JSON contract: even an error before any work is an object with `passed`.
                xtask::ui::print_json(serde_json::json!({ "error": format!("{e:#}") }), false);
            }
            ExitCode::from(error::exit_kind_of(&e).code() as u8)
        }
    }
}
