//! Running the command line from a binary: parse flags, dispatch to the command, map the error to
//! an exit code. The `stackgate` binary and every `cargo xtask` that embeds the harness call
//! [`run`]; nothing else here is for callers.

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::flags::{Command, Xtask};
use crate::{error, ui, Ctx};

/// The command names the harness answers to (`doctor`, `docker-up`, `mission-critical`, ...), for
/// an `xtask` of a repository's own that hands some of its subcommands to [`run`].
pub fn commands() -> Vec<String> {
    Xtask::command()
        .get_subcommands()
        .map(|sub| sub.get_name().to_owned())
        .collect()
}

/// Parses `args` (the program's name first, as `std::env::args_os` gives them) and runs the
/// command; `bin_name` is how help and errors name the program (`"stackgate"`, `"cargo xtask"`).
/// The exit code follows the harness's contract: 0 passed, 1 failed, 2 usage or configuration
/// error, 3 environment unavailable, 130 interrupted.
pub fn run<I, T>(bin_name: &'static str, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = Xtask::command()
        .name(bin_name)
        .bin_name(bin_name)
        .get_matches_from(args);
    let flags = match Xtask::from_arg_matches(&matches) {
        Ok(flags) => flags,
        Err(e) => e.exit(),
    };
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
                ui::print_json(
                    serde_json::json!({ "error": format!("cannot start the async runtime: {e}") }),
                    false,
                );
            }
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(dispatch(flags.command, &ctx));
    // Background tasks (log followers, progress tickers) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", error::render(&e));
            if json && !ui::json_printed() {
                // One JSON contract: even an error before any work is an object with `passed`.
                ui::print_json(serde_json::json!({ "error": format!("{e:#}") }), false);
            }
            ExitCode::from(error::exit_kind_of(&e).code() as u8)
        }
    }
}

async fn dispatch(command: Command, ctx: &Ctx) -> anyhow::Result<()> {
    match command {
        Command::Doctor(cmd) => cmd.run(ctx).await,
        Command::DockerUp(cmd) => cmd.run(ctx).await,
        Command::Health(cmd) => cmd.run(ctx).await,
        Command::WsCheck(cmd) => cmd.run(ctx).await,
        Command::Monitor(cmd) => cmd.run(ctx).await,
        Command::MissionCritical(cmd) => cmd.run(ctx).await,
        Command::DockerDown(cmd) => cmd.run(ctx).await,
        Command::JunitMerge(cmd) => cmd.run(ctx).await,
        Command::History(cmd) => cmd.run(ctx).await,
        Command::InstallHook(cmd) => cmd.run(ctx).await,
        Command::Ci(cmd) => cmd.run(ctx).await,
        Command::Init(cmd) => cmd.run(ctx).await,
    }
}
