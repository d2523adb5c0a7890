use std::{io::IsTerminal as _, process::ExitCode};

use clap::{Parser, Subcommand};
use probe_user::session::SessionError;
use tracing_subscriber::EnvFilter;

mod run;

/// Counts, and on request drops, frames with a loopback source or destination (127.0.0.0/8, ::1,
/// ::ffff:127.0.0.0/104) arriving on real network interfaces, with an XDP program.
#[derive(Debug, Parser)]
#[command(name = "localnet-probe", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to interfaces and show loopback-address frames until Ctrl-C, SIGTERM, SIGHUP or
    /// --duration, or until the reader of stdout goes away; everything is detached on exit.
    Run(run::RunArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("localnet-probe: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Run(args) => runtime.block_on(run::run(args)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("localnet-probe: error: {error:#}");
            // Interfaces named that cannot be served are invalid arguments, like clap's.
            let invalid_arguments = matches!(
                error.downcast_ref::<SessionError>(),
                Some(SessionError::Select(_))
            ) || error.is::<run::InvalidArguments>();
            if invalid_arguments {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
