//! `localnet-probe status`: the standing filter as pinned, read without attaching anything.

use std::{
    io,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use clap::Args;
use probe_user::{
    kernel::features::KernelReport,
    net::workload::cri,
    output::report::{Report, StandingReport},
    probe::pins,
    session::{Observed, Snapshot, UnservedInterface, unserved_interfaces},
};
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    args::interval_seconds,
    stream::Format,
    table,
    tui::{Command, Live, LiveView, Switching, next_event},
};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Write JSON (one object per reading) even on a terminal (the default when stdout is not
    /// one).
    #[arg(long, conflicts_with = "plain")]
    json: bool,
    /// With --watch on a terminal, redraw a plain table instead of the full-screen view.
    #[arg(long)]
    plain: bool,
    /// Read again every --interval until Ctrl-C, SIGTERM or SIGHUP.
    #[arg(long)]
    watch: bool,
    /// Seconds between readings with --watch (0.01 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 1.0, value_parser = interval_seconds,
          allow_negative_numbers = true)]
    interval: f64,
    #[command(flatten)]
    cri: crate::args::CriArgs,
}

/// A `status` object on the stream, with the kernel's report: a bug report carries it.
#[derive(Serialize)]
struct WithKernel<'a, T> {
    #[serde(flatten)]
    object: &'a T,
    kernel: &'a KernelReport,
}

/// What `status` writes when no standing filter is pinned.
#[derive(Serialize)]
struct NothingPinned<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: f64,
    standing_filter: Option<StandingReport>,
    interfaces: &'a [UnservedInterface],
}

pub(crate) async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let format = Format::chosen(args.json);
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut previous: Option<Snapshot> = None;
    let mut live = if args.watch && format.is_none() && !args.plain {
        Some(
            Live::start(LiveView::new(
                String::new(),
                Switching::ReadOnly,
                Duration::from_secs_f64(args.interval),
            ))
            .context("cannot take the terminal for the live view; --plain or --json do without")?,
        )
    } else {
        None
    };
    // What the live view showed last, left on the screen when it closes.
    let mut last_table = Vec::new();
    let cri = args.cri.client();
    // The first reading waits for the pods' names, at most the CRI's deadline; the next ones
    // take the names listed by then, so a CRI that hangs never delays a reading.
    let mut cri_wait = cri::WAIT;
    let mut stdout = io::stdout().lock();
    // Probed once: the kernel's features do not change while it runs.
    let kernel = KernelReport::of_this_kernel();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            event = next_event(live.as_mut()) => {
                if let Some(live) = &mut live {
                    if live.on_event(event) == Some(Command::Quit) {
                        break;
                    }
                    let frame = live.frame().context("cannot draw the live view")?;
                    if !write(&mut stdout, &frame)? {
                        break;
                    }
                }
                continue;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
        }
        let view = match Observed::standing(&cri, std::mem::take(&mut cri_wait))? {
            Ok((mut session, standing)) => {
                let snapshot = session.snapshot()?;
                let pinned_for = SystemTime::now()
                    .duration_since(UNIX_EPOCH + Duration::from_secs(standing.pinned_at))
                    .unwrap_or_default();
                let mut report = Report::new(&snapshot, previous.as_ref(), pinned_for, false);
                report.kind = "status";
                let directory = session
                    .standing_dir()
                    .map(|dir| dir.path.display().to_string())
                    .unwrap_or_default();
                let served_by = pins::serving_process();
                let pins_vanish = pins::pins_vanish(false);
                let mut state = match &served_by {
                    Some(process) => format!("standing filter in {directory}, served by {process}"),
                    None if report.interfaces.is_empty() => format!(
                        "standing filter in {directory}, no process serving it and no interface \
                         filtered"
                    ),
                    None => format!(
                        "standing filter in {directory}, no process serving it (filtering and \
                         counting go on, without samples)"
                    ),
                };
                if pins_vanish == Some(true) {
                    state.push_str(
                        "; its pins go away with this mount namespace (as `ip netns exec` makes)",
                    );
                }
                report.standing_filter = Some(StandingReport {
                    directory,
                    pinned_at: standing.pinned_at,
                    served_by,
                    pins_vanish,
                });
                let at = snapshot.at;
                previous = Some(snapshot);
                match &mut live {
                    Some(live) => {
                        last_table = render_report(&report, &state, None, false, &kernel);
                        live.view.set_state(state);
                        live.view.update(report, at);
                        live.frame().context("cannot draw the live view")?
                    }
                    None => render_report(&report, &state, format, args.watch, &kernel),
                }
            }
            Err(dir) => {
                previous = None;
                let interfaces = unserved_interfaces()?;
                let directory = dir.path.display().to_string();
                match &mut live {
                    Some(live) => {
                        last_table = render_nothing(&interfaces, &directory, None, false, &kernel);
                        live.view.set_state(format!(
                            "no standing filter in {directory} (`localnet-probe run --pin` \
                             leaves one)"
                        ));
                        live.view.show_unserved(interfaces);
                        live.frame().context("cannot draw the live view")?
                    }
                    None => render_nothing(&interfaces, &directory, format, args.watch, &kernel),
                }
            }
        };
        if !write(&mut stdout, &view)? || !args.watch {
            break;
        }
    }
    if let Some(live) = live {
        write(&mut stdout, &[live.close(), last_table].concat())?;
        crate::logs::release();
    }
    Ok(())
}

/// Writes `bytes`; `false` when the reader has gone.
fn write(stdout: &mut impl io::Write, bytes: &[u8]) -> anyhow::Result<bool> {
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

fn render_report(
    report: &Report,
    state: &str,
    format: Option<Format>,
    watch: bool,
    kernel: &KernelReport,
) -> Vec<u8> {
    if let Some(format) = format {
        return format.line(&WithKernel {
            object: report,
            kernel,
        });
    }
    let view = table::render(report, state, &[], &Default::default(), None);
    if watch {
        table::redraw(&view)
    } else {
        view.into()
    }
}

fn render_nothing(
    interfaces: &[UnservedInterface],
    directory: &str,
    format: Option<Format>,
    watch: bool,
    kernel: &KernelReport,
) -> Vec<u8> {
    if let Some(format) = format {
        return format.line(&WithKernel {
            object: &NothingPinned {
                kind: "status",
                timestamp: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |since| since.as_secs_f64()),
                standing_filter: None,
                interfaces,
            },
            kernel,
        });
    }
    let view = table::render_unserved(interfaces, directory);
    if watch {
        table::redraw(&view)
    } else {
        view.into()
    }
}
