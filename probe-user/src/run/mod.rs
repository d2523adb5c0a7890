//! `localnet-probe run`: attach, report every interval, detach on exit.

mod metrics_server;
mod output;
mod table;

use std::{
    collections::BTreeMap,
    io::{self, IsTerminal as _},
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use probe_user::{
    probe::{ProbeError, XdpModeChoice, native_refusal},
    report::Report,
    select::Selection,
    session::{Session, SessionError, SessionOptions},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};

use self::{metrics_server::SnapshotRequest, output::Output};

/// The longest `--interval`: a refresh less often than hourly is no live view.
const MAX_INTERVAL_SECS: f64 = 3600.0;
/// The longest `--duration`, a year; without `--duration` the probe runs until stopped.
const MAX_DURATION_SECS: f64 = 365.0 * 86400.0;
/// How long the last report may wait for a reader that stopped reading.
const FINAL_REPORT_PATIENCE: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Attach to this interface (repeatable). Default: every interface that is up, except
    /// loopback, ifb devices and devices stacked on another selected one.
    #[arg(long = "iface", value_name = "IF")]
    ifaces: Vec<String>,
    /// Leave this interface out (repeatable).
    #[arg(long, value_name = "IF")]
    exclude: Vec<String>,
    /// Drop matched frames on every selected interface instead of only counting them.
    #[arg(long, conflicts_with = "drop_on")]
    drop: bool,
    /// Drop matched frames on this interface (repeatable); the others are only monitored.
    #[arg(long, value_name = "IF")]
    drop_on: Vec<String>,
    /// How to attach: native (in the driver), generic (in the stack, slower, works everywhere),
    /// or auto (native, falling back to generic with a notice).
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    xdp_mode: XdpModeArg,
    /// Seconds between refreshes of the table or JSON objects (0.01 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = interval_seconds,
          allow_negative_numbers = true)]
    interval: f64,
    /// Detach and exit after this many seconds (0.01 to one year).
    #[arg(long, value_name = "SECS", value_parser = duration_seconds, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// Write one JSON object per interval on stdout even on a terminal (the default when stdout
    /// is not a terminal).
    #[arg(long)]
    json: bool,
    /// Print the kernel verifier's full log if it rejects the program.
    #[arg(long)]
    verifier_log: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, read from the counters at each scrape.
    /// ADDR is an IP address and port; without it, 127.0.0.1:9464.
    #[arg(long, value_name = "ADDR", num_args = 0..=1,
          default_missing_value = metrics_server::DEFAULT_ADDRESS)]
    metrics: Option<SocketAddr>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum XdpModeArg {
    Auto,
    Native,
    Generic,
}

impl From<XdpModeArg> for XdpModeChoice {
    fn from(arg: XdpModeArg) -> Self {
        match arg {
            XdpModeArg::Auto => Self::Auto,
            XdpModeArg::Native => Self::Native,
            XdpModeArg::Generic => Self::Generic,
        }
    }
}

fn seconds_in(value: &str, max: f64, range: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(seconds) if (0.01..=max).contains(&seconds) => Ok(seconds),
        Ok(_) => Err(format!("must be {range}")),
        Err(error) => Err(format!("{error}; give a number of seconds such as 0.5")),
    }
}

fn interval_seconds(value: &str) -> Result<f64, String> {
    seconds_in(value, MAX_INTERVAL_SECS, "from 0.01 to 3600 seconds")
}

fn duration_seconds(value: &str) -> Result<f64, String> {
    seconds_in(
        value,
        MAX_DURATION_SECS,
        "from 0.01 to 31536000 seconds (a year); leave --duration out to run until stopped",
    )
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    let options = SessionOptions {
        selection: Selection {
            ifaces: args.ifaces,
            exclude: args.exclude,
            drop_all: args.drop,
            drop_on: args.drop_on,
        },
        xdp_mode: args.xdp_mode.into(),
        verifier_log: args.verifier_log,
        sample_rate: 100,
    };
    // Handlers first: a signal during start-up then ends the run cleanly once attached.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // A closed terminal or `kill -HUP` ends the run like Ctrl-C: detach, last report.
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    // Bound before attaching: an address that cannot be served leaves nothing attached.
    let metrics_listener = match args.metrics {
        Some(address) => Some(metrics_server::bind(address).await?),
        None => None,
    };
    let (mut session, started) =
        Session::start(options).map_err(|error| explain(error, args.verifier_log))?;
    let attached_at = Instant::now();
    tracing::debug!(
        "counters for up to {} interfaces (288 bytes each on every CPU)",
        started.capacity
    );
    for skipped in &started.skipped {
        tracing::info!("{}: left out: {}", skipped.name, skipped.reason);
    }
    for attached in &started.attached {
        if let Some(reason) = &attached.native_refused {
            tracing::info!(
                "{}: no native XDP here ({}); using generic XDP",
                attached.name,
                native_refusal(reason)
            );
        }
        tracing::info!(
            "attached to {} ({} XDP, {} mode)",
            attached.name,
            attached.xdp_mode.name(),
            attached.mode.name()
        );
    }

    let (mut scrapes, metrics_server) = match metrics_listener {
        Some(listener) => {
            if let Ok(address) = listener.local_addr() {
                tracing::info!("serving metrics at http://{address}/metrics");
            }
            let (requests, scrapes) = mpsc::channel(16);
            (
                Some(scrapes),
                Some(metrics_server::spawn(listener, requests)),
            )
        }
        None => (None, None),
    };

    let json = args.json || !io::stdout().is_terminal();
    let render = |report: &Report| {
        if json {
            let mut line = serde_json::to_string(report).expect("reports serialize");
            line.push('\n');
            line
        } else if report.is_final {
            table::render(report, args.interval)
        } else {
            format!("\x1b[H\x1b[2J{}", table::render(report, args.interval))
        }
    };
    let mut output = Output::spawn();
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let deadline = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut previous = None;
    let mut exposed = BTreeMap::new();
    // Interfaces found removed by a scrape's snapshot, for the next report to list: each
    // snapshot lists a removal once.
    let mut removed_at_scrapes = Vec::new();
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                let mut snapshot = session.snapshot()?;
                snapshot.removed.splice(0..0, removed_at_scrapes.drain(..));
                let report = Report::new(&snapshot, previous.as_ref(), attached_at.elapsed(), false);
                warn_on_changes(&report, &mut exposed);
                output.offer(render(&report));
                previous = Some(snapshot);
            }
            Some(scrape) = next_scrape(&mut scrapes) => {
                let mut snapshot = session.snapshot()?;
                removed_at_scrapes.append(&mut snapshot.removed);
                // Nothing to do when the scraper has gone.
                let _ = scrape.send(snapshot);
            }
            // Nobody reads any more: detach (dropping the session) and end.
            () = output.gone() => return Ok(()),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            () = &mut deadline => break,
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    let mut snapshot = session.snapshot()?;
    snapshot.removed.splice(0..0, removed_at_scrapes);
    let report = Report::new(&snapshot, previous.as_ref(), attached_at.elapsed(), true);
    // Detach before writing: a reader that stopped reading must not keep the programs attached.
    drop(session);
    output.finish(render(&report), FINAL_REPORT_PATIENCE);
    Ok(())
}

/// The next scrape waiting for a snapshot; never, without `--metrics`.
async fn next_scrape(
    scrapes: &mut Option<mpsc::Receiver<SnapshotRequest>>,
) -> Option<SnapshotRequest> {
    match scrapes {
        Some(scrapes) => scrapes.recv().await,
        None => std::future::pending().await,
    }
}

/// Says once what changed: an interface that became exposed, or exposed through other devices
/// than before; one that disappeared.
fn warn_on_changes(report: &Report, exposed: &mut BTreeMap<u32, Vec<String>>) {
    for interface in &report.interfaces {
        if interface.exposed {
            let via = &interface.route_localnet_via;
            if exposed.get(&interface.ifindex) != Some(via) {
                tracing::warn!("{}", table::exposure_warning(interface));
                exposed.insert(interface.ifindex, via.clone());
            }
        } else {
            exposed.remove(&interface.ifindex);
        }
    }
    for removed in &report.removed {
        exposed.remove(&removed.ifindex);
        tracing::warn!(
            "{} (ifindex {}) was removed; its final counts: {} matched, {} dropped",
            removed.name,
            removed.ifindex,
            removed.totals.packets_matched,
            removed.totals.packets_dropped
        );
    }
}

/// Start-up errors with what to do about them.
fn explain(error: SessionError, verifier_log: bool) -> anyhow::Error {
    let SessionError::Load(error) = error else {
        return error.into();
    };
    match *error {
        ProbeError::Verifier {
            io_error,
            verifier_log: log,
        } => {
            if verifier_log {
                anyhow::anyhow!("the kernel verifier rejected the XDP program: {io_error}\n{log}")
            } else {
                anyhow::anyhow!(
                    "the kernel verifier rejected the XDP program: {io_error}; rerun with \
                     --verifier-log to see why"
                )
            }
        }
        other => anyhow::Error::new(other).context(
            "cannot load the XDP program (localnet-probe needs Linux 5.18 or newer with XDP links)",
        ),
    }
}
