//! `localnet-probe run`: attach, report every interval, say route_localnet changes within a
//! second, detach on exit.

mod args;
mod evidence;
mod metrics_server;
mod output;

pub(crate) use self::args::{InvalidArguments, RunArgs};

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    io,
    net::SocketAddr,
    pin::Pin,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use probe_common::Mode;
use probe_user::{
    net::link_events::LinkEvents,
    net::names::{NamePattern, printable},
    output::report::{EventReport, FirewallChangeReport, Report, SysctlChangeReport},
    output::samples::SampleRing,
    probe::attachment::{Hook, TcHook},
    probe::{
        DEFAULT_SAMPLE_RATE, MAX_SAMPLE_RATE, ProbeError, TcxPrecededBy, XdpModeChoice,
        native_refusal,
    },
    session::select::{LeftOut, Selection, Skipped},
    session::{AttachedInterface, OnConflict, Session, SessionError, SessionOptions, Snapshot},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::Sleep,
};

use crate::{
    stream::Format,
    table,
    tui::{Command, Live, LiveView, Switching, next_event},
};

use self::{
    args::DEFAULT_TOP,
    evidence::{Events, Evidence, Pcap},
    metrics_server::SnapshotRequest,
    output::{Output, Stream},
};

/// How long the last report may wait for a reader that stopped reading.
const FINAL_REPORT_PATIENCE: Duration = Duration::from_secs(2);
/// How often route_localnet is read at least, whatever `--interval`: the kernel sends no
/// notification when it changes.
const ROUTE_LOCALNET_CHECK: Duration = Duration::from_secs(1);
/// The route_localnet changes the live view keeps showing, newest last.
const ALERTS_SHOWN: usize = 5;
/// The events the table left on the screen at exit shows.
const FINAL_EVENTS: usize = 10;

/// What stdout carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum View {
    /// The full-screen view, on a terminal.
    Live,
    /// A table redrawn every interval (`--plain`).
    Plain,
    /// The machine-readable stream.
    Stream(Format),
    /// The pcap stream.
    Pcap,
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<()> {
    if args.sample_rate == 0 && (args.events || args.pcap.is_some() || args.top.is_some()) {
        return Err(InvalidArguments(
            "--events, --pcap and --top show samples, and --sample-rate 0 turns sampling off; \
             give a rate above 0"
                .to_owned(),
        )
        .into());
    }
    if args.json && args.pcap.as_deref() == Some("-") {
        return Err(InvalidArguments(
            "--pcap - puts the pcap on stdout, where --json would go; write the pcap to a file \
             or leave out --json"
                .to_owned(),
        )
        .into());
    }
    let view = if args.pcap.as_deref() == Some("-") {
        View::Pcap
    } else if let Some(format) = Format::chosen(args.json) {
        View::Stream(format)
    } else if args.plain {
        View::Plain
    } else {
        View::Live
    };
    // Before anything attaches: a path that cannot be written ends the run here.
    let pcap = match &args.pcap {
        Some(path) => Some(Pcap::open(path)?),
        None => None,
    };
    // The full-screen view shows the latest samples whenever there are any.
    let events = match (args.events, view) {
        (_, View::Live) if args.sample_rate > 0 => Some(Events::Pane),
        (false, _) => None,
        (true, View::Stream(format)) if args.json => Some(Events::Stream(format)),
        (true, View::Live | View::Plain) => Some(Events::Pane),
        (true, _) => Some(Events::Stderr(Output::spawn(Stream::Stderr, 64))),
    };
    let selection = Selection {
        ifaces: args.ifaces,
        exclude: args.exclude,
        drop_all: args.drop,
        drop_on: args.drop_on,
    };
    // Said when nothing matches them at start.
    let patterns: Vec<String> = selection
        .ifaces
        .iter()
        .filter(|pattern| matches!(pattern, NamePattern::Glob(_)))
        .map(|pattern| format!("'{pattern}'"))
        .collect();
    let options = SessionOptions {
        selection,
        xdp_mode: args.xdp_mode.into(),
        on_conflict: args.on_conflict.into(),
        egress: args.egress,
        verifier_log: args.verifier_log,
        sample_rate: args.sample_rate,
        pin: args.pin,
        capacity: args.capacity,
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
    // Subscribed before the interfaces are listed at start, so none that appears in between is
    // missed.
    let mut links = LinkEvents::subscribe().context("cannot watch the interfaces for changes")?;
    // Taken before attaching: what start-up says is then kept for the view (`l`), not drawn
    // over by it.
    let mut live = match view {
        View::Live => Some(
            Live::start(LiveView::new(
                String::new(),
                Switching::Allowed { pinned: args.pin },
                Duration::from_secs_f64(args.interval),
            ))
            .context("cannot take the terminal for the live view; --plain or --json do without")?,
        ),
        _ => None,
    };
    let (mut session, started) =
        Session::start(options).map_err(|error| explain(error, args.verifier_log))?;
    let attached_at = Instant::now();
    tracing::debug!(
        "counters for up to {} interfaces (432 bytes each on every CPU)",
        started.capacity
    );
    for note in &started.notes {
        tracing::warn!("{}", printable(note));
    }
    say_left_out(&started.skipped);
    say_attached(&started.attached);
    if started.attached.is_empty() && !patterns.is_empty() {
        tracing::info!(
            "no interface matches --iface {} yet; waiting for one to appear",
            patterns.join(", ")
        );
    }
    let pins_stay = args.pin && !started.pins_vanish;
    if let Some(dir) = &started.pinned_in {
        tracing::info!(
            "standing filter pinned in {}: {}",
            dir.display(),
            if pins_stay {
                "it stays attached after exit"
            } else {
                "it goes away with this command's mount namespace"
            }
        );
    }
    let live_state = format!(
        "refresh {} s, Ctrl-C to {}",
        args.interval,
        if pins_stay {
            "exit (the filter stays)"
        } else {
            "detach"
        }
    );
    if let Some(live) = &mut live {
        live.view
            .set_switching(Switching::Allowed { pinned: pins_stay });
        if pins_stay {
            live.view
                .set_state("standing filter (stays after exit)".to_owned());
        }
    }
    let final_state = if pins_stay {
        "exited, the standing filter stays attached"
    } else {
        "detached"
    };

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

    let mut ring = match session.take_samples() {
        Some(ring) if args.sample_rate > 0 => {
            Some(SampleRing::new(ring).context("cannot watch the sample ring buffer")?)
        }
        _ => None,
    };
    let mut evidence = Evidence::new(events, pcap);
    evidence.add_interfaces(&started.attached);
    let top = usize::from(args.top.unwrap_or(DEFAULT_TOP));
    let render = |report: &Report, pane: &VecDeque<EventReport>, alerts: &VecDeque<String>| {
        match view {
            View::Stream(format) => format.line(report),
            // The last view stays on the screen and scrolls, with the newest events.
            View::Plain | View::Live if report.is_final => {
                let newest = pane.iter().skip(pane.len().saturating_sub(FINAL_EVENTS));
                let lines: Vec<String> = newest.map(EventReport::line).collect();
                table::render(report, final_state, &lines, alerts, None).into()
            }
            View::Plain => {
                let lines: Vec<String> = pane.iter().map(EventReport::line).collect();
                table::redraw(&table::render(
                    report,
                    &live_state,
                    &lines,
                    alerts,
                    table::terminal_size(),
                ))
            }
            View::Live | View::Pcap => Vec::new(),
        }
    };
    // JSON events share the stream with the reports: room for a few batches between two.
    let mut output = (view != View::Pcap).then(|| Output::spawn(Stream::Stdout, 8));
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(args.interval));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut refills = tokio::time::interval(Duration::from_secs(1));
    refills.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Reports further apart than that leave route_localnet to be read at each refill.
    let check_between_reports = Duration::from_secs_f64(args.interval) > ROUTE_LOCALNET_CHECK;
    let deadline = async {
        match args.duration {
            Some(seconds) => tokio::time::sleep(Duration::from_secs_f64(seconds)).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(deadline);
    let mut previous = None;
    let mut warned = Warned::default();
    let mut batch = Vec::new();
    // Interfaces found removed by a snapshot between reports (a scrape's, a check of
    // route_localnet), for the next report to list: each snapshot lists a removal once.
    let mut removed_between_reports = Vec::new();
    // The live view's last route_localnet changes.
    let mut alerts = VecDeque::new();
    // Set while interfaces kept changing as they were listed: when to list them again.
    let mut relist = None;
    loop {
        // A snapshot taken between reports, and the scrape that asked for it.
        let mut between = None;
        tokio::select! {
            _ = ticks.tick() => {
                let mut snapshot = session.snapshot()?;
                snapshot.removed.splice(0..0, removed_between_reports.drain(..));
                say_changes(&snapshot, view, output.as_mut(), &mut alerts);
                evidence.senders.expire(Instant::now(), |ifindex| {
                    session.interface_name(ifindex).is_some()
                });
                let mut report =
                    Report::new(&snapshot, previous.as_ref(), attached_at.elapsed(), false);
                report.add_top_senders(&evidence.senders, top);
                warn_on_changes(&report, &mut warned);
                if let Some(output) = &mut output {
                    let at = snapshot.at;
                    show(report, at, live.as_mut(), output, &render, (&evidence.pane, &alerts))?;
                }
                previous = Some(snapshot);
            }
            _ = refills.tick() => {
                session.refill_sample_tokens()?;
                if check_between_reports {
                    between = Some((session.snapshot()?, None));
                }
            }
            changed = links.changed() => {
                changed.context("cannot watch the interfaces for changes")?;
                relist = follow(&mut session, &mut evidence)?;
            }
            () = next_relist(&mut relist) => relist = follow(&mut session, &mut evidence)?,
            read = next_samples(ring.as_mut(), &mut batch) => {
                read.context("cannot read the samples")?;
                let json = evidence.take(&batch, |ifindex| name_in(&session, ifindex));
                if let (false, Some(output)) = (json.is_empty(), &mut output) {
                    output.offer(json, "events");
                }
                batch.clear();
            }
            Some(scrape) = next_scrape(&mut scrapes) => {
                between = Some((session.snapshot()?, Some(scrape)));
            }
            event = next_event(live.as_mut()) => {
                if let (Some(live), Some(output)) = (&mut live, &mut output) {
                    match live.on_event(event) {
                        Some(Command::Quit) => break,
                        Some(Command::SetMode { ifindex, name, mode }) => {
                            switch_mode(&mut session, live, (ifindex, &name, mode), pins_stay);
                            // The new mode on the screen at once.
                            ticks.reset_immediately();
                        }
                        None => {}
                    }
                    draw(live, output)?;
                }
            }
            () = evidence.pcap_reader_gone() => {}
            // Nobody reads any more: detach (dropping the session) and end.
            () = reader_gone(output.as_ref()) => return Ok(()),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            () = &mut deadline => break,
        }
        if let Some((mut snapshot, scrape)) = between {
            removed_between_reports.append(&mut snapshot.removed);
            // The live view shows a change at once, with the exposure it leaves.
            if say_changes(&snapshot, view, output.as_mut(), &mut alerts)
                && matches!(view, View::Plain | View::Live)
                && let Some(output) = &mut output
            {
                let mut report =
                    Report::new(&snapshot, previous.as_ref(), attached_at.elapsed(), false);
                report.add_top_senders(&evidence.senders, top);
                let at = snapshot.at;
                show(
                    report,
                    at,
                    live.as_mut(),
                    output,
                    &render,
                    (&evidence.pane, &alerts),
                )?;
            }
            if let Some(scrape) = scrape {
                // Nothing to do when the scraper has gone.
                let _ = scrape.send(snapshot);
            }
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    let mut snapshot = session.snapshot()?;
    snapshot.removed.splice(0..0, removed_between_reports);
    say_changes(&snapshot, view, output.as_mut(), &mut alerts);
    let mut report = Report::new(&snapshot, previous.as_ref(), attached_at.elapsed(), true);
    report.add_top_senders(&evidence.senders, top);
    warn_on_changes(&report, &mut warned);
    let names: BTreeMap<u32, String> = snapshot
        .interfaces
        .iter()
        .chain(&snapshot.removed)
        .map(|interface| (interface.ifindex, interface.name.clone()))
        .collect();
    // Detach before writing: a reader that stopped reading must not keep the programs attached.
    drop(session);
    if let Some(dir) = &started.pinned_in
        && !started.pins_vanish
    {
        tracing::info!(
            "the standing filter stays attached, pinned in {}: `localnet-probe status` shows it, \
             `localnet-probe detach` removes it",
            dir.display()
        );
    }
    // What the programs sent before they were detached.
    if let Some(ring) = &mut ring {
        ring.drain(&mut batch);
    }
    let last = evidence.take(&batch, |ifindex| {
        names
            .get(&ifindex)
            .cloned()
            .unwrap_or_else(|| format!("ifindex {ifindex}"))
    });
    // The terminal given back first; the final table then stays on the screen.
    let mut last = match live {
        Some(live) => [live.close(), last].concat(),
        None => last,
    };
    last.extend(render(&report, &evidence.pane, &alerts));
    evidence.finish(FINAL_REPORT_PATIENCE);
    match output {
        Some(output) => output.finish(last, FINAL_REPORT_PATIENCE),
        None => tracing::info!("detached: {}", report.totals),
    }
    crate::logs::release();
    Ok(())
}

fn say_left_out(skipped: &[Skipped]) {
    for skipped in skipped {
        if matches!(skipped.reason, LeftOut::Occupied { .. }) {
            tracing::warn!(
                "{}",
                printable(&format!("{}: left out: {}", skipped.name, skipped.reason))
            );
        } else {
            tracing::info!(
                "{}",
                printable(&format!("{}: left out: {}", skipped.name, skipped.reason))
            );
        }
    }
}

/// Says what was attached or taken over, and where auto mode fell back to generic XDP.
fn say_attached(attached: &[AttachedInterface]) {
    for attached in attached {
        if let Some(reason) = &attached.native_refused {
            tracing::info!(
                "{}: no native XDP here ({}); using generic XDP",
                printable(&attached.name),
                native_refusal(reason)
            );
        }
        let hook = match attached.hook {
            Hook::Xdp(mode) => format!("{} XDP", mode.name()),
            Hook::Tc(tc) => {
                let how = match tc {
                    TcHook::Tcx => "",
                    TcHook::Clsact => " (a clsact filter: this kernel has no tcx)",
                };
                let beside = if attached.adopted {
                    ""
                } else {
                    ", beside another XDP program"
                };
                format!("{} ingress{how}{beside}", tc.name())
            }
        };
        let egress = attached
            .egress
            .map(|egress| format!("; replies counted at {} egress", egress.name()))
            .unwrap_or_default();
        tracing::info!(
            "{} {} ({hook}{}, {} mode)",
            if attached.adopted {
                "took over"
            } else {
                "attached to"
            },
            printable(&attached.name),
            egress,
            attached.mode.name()
        );
    }
}

/// How long to wait before listing interfaces again that kept changing as they were listed.
const RELIST_PAUSE: Duration = Duration::from_millis(100);

/// Attaches to what the selection asks for since the last call and says what changed; when
/// interfaces kept changing as they were listed, the pause after which to call again.
fn follow(
    session: &mut Session,
    evidence: &mut Evidence,
) -> Result<Option<Pin<Box<Sleep>>>, SessionError> {
    let followed = session.follow_links()?;
    say_left_out(&followed.skipped);
    for refusal in &followed.refused {
        tracing::warn!("{}", printable(&refusal.to_string()));
    }
    say_attached(&followed.attached);
    evidence.add_interfaces(&followed.attached);
    let pause = if followed.unsettled {
        Some(RELIST_PAUSE)
    } else {
        followed.retry_in
    };
    Ok(pause.map(|pause| Box::pin(tokio::time::sleep(pause))))
}

/// Completes when the pause before listing interfaces again is over; never without one.
async fn next_relist(relist: &mut Option<Pin<Box<Sleep>>>) {
    match relist {
        Some(pause) => pause.await,
        None => std::future::pending().await,
    }
}

/// The name a sample's interface goes by.
fn name_in(session: &Session, ifindex: u32) -> String {
    session
        .interface_name(ifindex)
        .map_or_else(|| format!("ifindex {ifindex}"), str::to_owned)
}

/// The next samples, or never when sampling is off.
async fn next_samples(
    ring: Option<&mut SampleRing>,
    batch: &mut Vec<probe_user::output::samples::SampledFrame>,
) -> io::Result<()> {
    match ring {
        Some(ring) => ring.read(batch).await,
        None => std::future::pending().await,
    }
}

/// Shows a report read at `at`: on the live view, or rendered for `output`.
fn show(
    report: Report,
    at: Instant,
    live: Option<&mut Live>,
    output: &mut Output,
    render: &impl Fn(&Report, &VecDeque<EventReport>, &VecDeque<String>) -> Vec<u8>,
    (events, alerts): (&VecDeque<EventReport>, &VecDeque<String>),
) -> anyhow::Result<()> {
    match live {
        Some(live) => {
            live.view.set_evidence(events, alerts);
            live.view.update(report, at);
            draw(live, output)
        }
        None => {
            output.offer(render(&report, events, alerts), "reports");
            Ok(())
        }
    }
}

/// Draws the live view's next frame; one that cannot be written now is drawn whole next time.
fn draw(live: &mut Live, output: &mut Output) -> anyhow::Result<()> {
    let frame = live.frame().context("cannot draw the live view")?;
    if !output.offer(frame, "the live view") {
        live.not_written();
    }
    Ok(())
}

/// Switches an interface's mode from the live view, said in its footer and in the logs.
fn switch_mode(
    session: &mut Session,
    live: &mut Live,
    (ifindex, name, mode): (u32, &str, Mode),
    pinned: bool,
) {
    match session.set_mode(ifindex, mode) {
        Ok(()) => {
            tracing::warn!(
                "{}: switched to {} mode from the live view{}",
                printable(name),
                mode.name(),
                if pinned {
                    "; the standing filter keeps it after exit"
                } else {
                    ""
                }
            );
            live.view
                .say(format!("{name}: {} mode from now on", mode.name()));
        }
        Err(error) => live.view.say(format!("{:#}", anyhow::Error::from(error))),
    }
}

/// Completes when the reader of the reports is gone; never without reports.
async fn reader_gone(output: Option<&Output>) {
    match output {
        Some(output) => output.gone().await,
        None => std::future::pending().await,
    }
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

/// Says the route_localnet and nftables changes `snapshot` found: a warning on stderr each, and
/// a `sysctl_change` or `firewall_change` object on the JSON stream or a line kept in `alerts`
/// for the live view. Returns whether there were any.
fn say_changes(
    snapshot: &Snapshot,
    view: View,
    mut output: Option<&mut Output>,
    alerts: &mut VecDeque<String>,
) -> bool {
    let mut say = |sentence: String, line: String, json: &dyn Fn(Format) -> Vec<u8>| {
        tracing::warn!("{sentence}");
        match (view, output.as_deref_mut()) {
            (View::Stream(format), Some(output)) => {
                output.offer(json(format), "route_localnet and firewall changes");
            }
            (View::Plain | View::Live, _) => {
                if alerts.len() == ALERTS_SHOWN {
                    alerts.pop_front();
                }
                alerts.push_back(line);
            }
            _ => {}
        }
    };
    for change in &snapshot.route_localnet_changes {
        let change = SysctlChangeReport::new(change, snapshot);
        say(change.sentence(), change.line(), &|format| {
            format.line(&change)
        });
    }
    for change in &snapshot.firewall_changes {
        let change = FirewallChangeReport::new(change, snapshot);
        say(change.sentence(), change.line(), &|format| {
            format.line(&change)
        });
    }
    !snapshot.route_localnet_changes.is_empty() || !snapshot.firewall_changes.is_empty()
}

/// What the warnings have said, by ifindex.
#[derive(Default)]
struct Warned {
    /// Exposed interfaces, with the devices they are exposed through.
    exposed: BTreeMap<u32, Vec<String>>,
    /// Interfaces where replies were seen.
    exploited: BTreeSet<u32>,
    /// Interfaces where other programs run before the probe's at tcx, with their ids.
    preceded: BTreeMap<u32, TcxPrecededBy>,
}

/// Says once what changed: an interface where replies were first seen, one that became
/// exposed, or exposed through other devices than before; one that disappeared.
fn warn_on_changes(report: &Report, warned: &mut Warned) {
    for interface in &report.interfaces {
        if interface.exploited && warned.exploited.insert(interface.ifindex) {
            tracing::error!("exploited: {}", table::exploitation_warning(interface));
        }
        let preceded = &interface.tcx_preceded_by;
        if warned
            .preceded
            .get(&interface.ifindex)
            .unwrap_or(&TcxPrecededBy::default())
            != preceded
        {
            if !preceded.is_empty() {
                tracing::warn!("{}", table::precedence_warning(interface));
            }
            warned.preceded.insert(interface.ifindex, preceded.clone());
        }
        if interface.exposed {
            let via = &interface.route_localnet_via;
            if warned.exposed.get(&interface.ifindex) != Some(via) {
                tracing::warn!("{}", table::exposure_warning(interface));
                warned.exposed.insert(interface.ifindex, via.clone());
            }
        } else {
            warned.exposed.remove(&interface.ifindex);
        }
    }
    for removed in &report.removed {
        warned.exposed.remove(&removed.ifindex);
        warned.exploited.remove(&removed.ifindex);
        warned.preceded.remove(&removed.ifindex);
        tracing::warn!(
            "{} (ifindex {}) was removed; its final counts: {}",
            printable(&removed.name),
            removed.ifindex,
            removed.totals
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
