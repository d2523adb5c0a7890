use std::{
    io::{IsTerminal as _, Write as _},
    process::ExitCode,
};

use clap::{CommandFactory as _, Parser, Subcommand, error::ErrorKind};
use probe_user::{net::names::printable, session::SessionError};
use tracing_subscriber::EnvFilter;

mod args;
mod audit;
mod detach;
mod generate;
mod logs;
mod run;
mod scan;
mod status;
mod stream;
mod table;
mod text;
mod tui;
mod version;

/// Count, or drop, frames with loopback addresses arriving on real network interfaces (XDP).
///
/// localnet-probe counts, and on request drops, frames with a loopback source or destination
/// (127.0.0.0/8, ::1, ::ffff:127.0.0.0/104) arriving on real network interfaces, with an XDP
/// program: frames that reach services bound to loopback where route_localnet is set, as
/// kube-proxy and Docker set it. Its audit says which links can reach such services.
#[derive(Debug, Parser)]
#[command(
    name = "localnet-probe",
    version,
    disable_version_flag = true,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// Print the version, the git revision and the eBPF object's SHA-256 it was built from,
    /// the oldest kernel localnet-probe runs on, and the kernel features found here (with the
    /// privileges to probe them), for a bug report.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Attach to interfaces and count, or drop, frames with loopback addresses until stopped.
    ///
    /// Shows each served interface's counts and route_localnet: a live view on a terminal, a
    /// table with --plain, JSON objects with --json or when stdout is not a terminal. Runs until
    /// Ctrl-C, SIGTERM, SIGHUP or --duration, or until the reader of the table or JSON on stdout
    /// goes away (one of `--pcap -` that goes away only ends the pcap).
    ///
    /// Everything is detached on exit, unless --pin leaves it as this network namespace's
    /// standing filter. Needs root, or CAP_BPF and CAP_NET_ADMIN.
    Run(run::RunArgs),
    /// Show this network namespace's standing filter, read from its pins.
    ///
    /// The standing filter is what `run --pin` leaves attached; status shows the same table or
    /// JSON as `run`, without attaching anything. With nothing pinned, it shows each
    /// interface's route_localnet.
    Status(status::StatusArgs),
    /// Remove this network namespace's standing filter.
    ///
    /// From every interface, or from those given with --iface; pins of interfaces that no
    /// longer exist are cleared too.
    Detach(detach::DetachArgs),
    /// Say which services bound to loopback each link can reach, without attaching anything.
    ///
    /// Reads route_localnet and the related sysctls, the loopback sockets and their processes,
    /// and what drops such frames (localnet-probe in drop mode, nftables). Exit status 0: no
    /// exposure, 1: exposure found, 2: error.
    Audit(audit::AuditArgs),
    /// Read captures (pcap, pcapng) with the same classifier, and count the frames with loopback
    /// addresses in them.
    ///
    /// Reads files written by tcpdump, dumpcap, Zeek or a cloud mirror, gzip- or
    /// zstd-compressed or not, or stdin (`-`), one frame at a time: Ethernet (behind up to two
    /// VLAN tags), raw IP, and Linux cooked captures (SLL, SLL2: `tcpdump -i any`). Reports per
    /// file and interface the classes `run` counts, the first and last match, the top senders
    /// and the frames it could not classify. Needs no privileges. Exit status 0: no frame with
    /// a loopback address, 1: some found, 2: error (a file that cannot be read to its end).
    Scan(scan::ScanArgs),
    /// Write the manual pages, or print a shell's completion script.
    ///
    /// Both are made from this binary's own options, so they match it. The completion scripts
    /// ask localnet-probe (found on PATH) for the candidates at each Tab, which completes
    /// interface names from those present.
    Generate(generate::GenerateArgs),
}

/// Exits as clap does for `error`, but with what the user typed escaped: a usage error quotes
/// the argument it refuses, which may hold bytes a terminal acts on.
fn refuse(error: &clap::Error) -> ! {
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        error.exit();
    }
    let rendered = error.render().to_string();
    let escaped: Vec<std::borrow::Cow<'_, str>> = rendered.lines().map(printable).collect();
    eprintln!("{}", escaped.join("\n"));
    std::process::exit(error.exit_code());
}

fn main() -> ExitCode {
    // First: a shell asking for completions gets them and nothing else on stdout.
    generate::complete_if_asked();
    // Logs are written by a thread of their own, and dropped rather than waited for when
    // stderr stalls: a stalled reader of stderr must not hold up the counting or the signals.
    let (stderr, flush_logs) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(true)
        .finish(logs::Stderr);
    tracing_subscriber::fmt()
        .with_writer(stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::try_parse().unwrap_or_else(|error| refuse(&error));
    let Some(command) = cli.command else {
        if cli.version {
            return version::print_version();
        }
        Cli::command()
            .error(ErrorKind::MissingSubcommand, "a subcommand is required")
            .exit();
    };
    raise_file_limit();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // The metrics pages are encoded on blocking threads: two at once keep parallel scrapes
        // from costing a thread, its stack and an allocator arena each (40 scrapes at once of
        // 2,000 interfaces' detailed page: 103 MiB resident 3 s later with a thread each, 22
        // MiB with two).
        .max_blocking_threads(2)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            say(&format!("cannot start the async runtime: {error}"));
            return ExitCode::FAILURE;
        }
    };
    // Any error of `audit` or `scan` is 2, so that 1 always means an exposure or a match.
    let is_audit = matches!(command, Command::Audit(_) | Command::Scan(_));
    let result = match command {
        Command::Run(args) => runtime.block_on(run::run(args)).map(|()| ExitCode::SUCCESS),
        Command::Status(args) => runtime
            .block_on(status::status(args))
            .map(|()| ExitCode::SUCCESS),
        Command::Detach(args) => detach::detach(&args).map(|()| ExitCode::SUCCESS),
        Command::Generate(args) => generate::generate(&args).map(|()| ExitCode::SUCCESS),
        Command::Audit(args) => audit::audit(&args).map(found),
        Command::Scan(args) => scan::scan(&args).map(found),
    };
    // The logs first, then the last word.
    drop(flush_logs);
    match result {
        Ok(code) => code,
        Err(error) => {
            say(&format!("error: {error:#}"));
            // Interfaces named that cannot be served are invalid arguments, like clap's; and
            // every error of `audit` and `scan` is 2.
            let status_2 = is_audit
                || matches!(
                    error.downcast_ref::<SessionError>(),
                    Some(SessionError::Select(_))
                )
                || error.is::<run::InvalidArguments>();
            if status_2 {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// The exit status of `audit` and `scan`: 1 when they found what they look for.
fn found(found: bool) -> ExitCode {
    if found {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Writes the last word on stderr, printable (errors quote interface and process names, anyone's
/// bytes); a stderr that is gone is no reason to panic.
fn say(message: &str) {
    let _ = writeln!(std::io::stderr(), "localnet-probe: {}", printable(message));
}

/// Raises the soft limit of open files to the hard one: a soft limit of 1024 (systemd's
/// default, many container runtimes') is a few hundred connections away from refusing an
/// interface for want of a descriptor. Only when there is room, so a unit that sets both
/// (`LimitNOFILE=`) and filters `setrlimit` sees no call.
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is valid for writes during the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0
        || limit.rlim_cur >= limit.rlim_max
    {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: `raised` is valid for reads during the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
        tracing::warn!(
            "cannot raise the limit of open files from {} to {}: {}",
            limit.rlim_cur,
            limit.rlim_max,
            std::io::Error::last_os_error()
        );
    }
}
