//! `localnet-probe run`: attach, report every interval, say route_localnet changes within a
//! second, detach on exit.

mod announce;
mod args;
mod coalesce;
mod evidence;
mod memory;
mod metrics_server;
mod output;
mod running;

pub(crate) use self::args::{InvalidArguments, RunArgs};

use std::{
    io,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use probe_common::Framing;
use probe_user::{
    kernel::features::{Feature, KernelReport},
    net::link_events::LinkEvents,
    net::names::{NamePattern, printable},
    output::compact::Compactor,
    output::metrics::Detail,
    output::samples::{SampleRing, SampledFrame},
    output::web_config::WebConfigWatch,
    probe::{DEFAULT_SAMPLE_RATE, MAX_SAMPLE_RATE, ProbeError, XdpModeChoice},
    session::select::{LeftOut, Selection, Skipped},
    session::{OnConflict, Session, SessionError, SessionOptions, Started},
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
    time::Sleep,
};

use crate::{
    stream::Format,
    tui::{Live, LiveView, Switching, next_event},
};

use self::{
    announce::Announcer,
    args::{DEFAULT_TOP, JsonObjects},
    evidence::{Events, Evidence, Pcap},
    metrics_server::SnapshotRequest,
    output::{Output, Stream, WAITING_BYTES},
    running::{Key, Render, Running},
};

/// How often route_localnet is read at least, whatever `--interval`: the kernel sends no
/// notification when it changes.
const ROUTE_LOCALNET_CHECK: Duration = Duration::from_secs(1);
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
    check_arguments(&args)?;
    let view = View::chosen(&args);
    // Before anything attaches: a path that cannot be written ends the run here.
    let pcap = match &args.pcap {
        Some(path) => Some(Pcap::open(path)?),
        None => None,
    };
    // The full-screen view shows the latest samples whenever there are any.
    let events = match (args.events, view) {
        (_, View::Live) if args.sample_rate > 0 => Some(Events::Pane),
        (false, _) => None,
        (true, View::Stream(format)) if args.json.is_some() => Some(Events::Stream(format)),
        (true, View::Live | View::Plain) => Some(Events::Pane),
        (true, _) => Some(Events::Stderr(Output::spawn(Stream::Stderr, WAITING_BYTES))),
    };
    let mut announcer = Announcer::new(&args.ifaces);
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
        cri: args.cri.client(),
    };
    // Handlers first: a signal during start-up then ends the run cleanly once attached.
    let mut sigterm = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // A closed terminal or `kill -HUP` ends the run like Ctrl-C: detach, last report.
    let mut sighup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    // Read before attaching, like the address: a configuration that cannot be served ends the
    // run before it starts.
    let web_config = match &args.web_config {
        Some(path) => {
            Some(Arc::new(WebConfigWatch::load(path).map_err(|error| {
                InvalidArguments(format!("--web-config {error}"))
            })?))
        }
        None => None,
    };
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
    let (session, started) =
        Session::start(options).map_err(|error| explain(error, args.verifier_log))?;
    let attached_at = Instant::now();
    say_started(&started, &patterns, &mut announcer);
    let pins_stay = args.pin && started.pins_vanish == Some(false);
    if let Some(live) = &mut live {
        live.view
            .set_switching(Switching::Allowed { pinned: pins_stay });
        if pins_stay {
            live.view
                .set_state("standing filter (stays after exit)".to_owned());
        }
    }

    let (mut scrapes, metrics_server) = match metrics_listener {
        Some(listener) => {
            if let Ok(address) = listener.local_addr() {
                match web_config.as_ref().map(|web| web.last_good()) {
                    Some(config) if config.tls().is_some() => {
                        tracing::info!("serving metrics at https://{address}/metrics");
                    }
                    // As the exporters' toolkit does, but an operator who gave the file meant
                    // something by it.
                    Some(_) => tracing::warn!(
                        "serving metrics at http://{address}/metrics, unencrypted: the web \
                         configuration gives no tls_server_config certificate"
                    ),
                    None => tracing::info!("serving metrics at http://{address}/metrics"),
                }
            }
            let (requests, scrapes) = mpsc::channel(16);
            (
                Some(scrapes),
                Some(metrics_server::spawn(
                    listener,
                    requests,
                    if args.metrics_detail {
                        Detail::Full
                    } else {
                        Detail::Summary
                    },
                    web_config,
                )),
            )
        }
        None => (None, None),
    };
    // Compact objects on the stream unless --json asks for full ones: without --json, the
    // stream is there because stdout is not a terminal (a service's log).
    let compactor = match (view, args.json) {
        (View::Stream(_), None | Some(JsonObjects::Compact)) => Some(Compactor::new(
            args::full_every_objects(args.full_every, args.interval),
        )),
        _ => None,
    };
    let mut running = Running::new(
        session,
        &started,
        attached_at,
        announcer,
        Render::new(view, args.interval, pins_stay, compactor),
        Evidence::new(events, pcap, usize::from(args.top.unwrap_or(DEFAULT_TOP))),
        live,
    );
    let rings = running.session.take_samples();
    running.ring = if args.sample_rate > 0 {
        Some(SampleRing::new(rings).context("cannot watch the sample ring buffer")?)
    } else {
        None
    };

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
    // Set while interfaces kept changing as they were listed: when to list them again.
    let mut relist = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => running.report()?,
            _ = refills.tick() => {
                running.session.refill_sample_tokens()?;
                running.announcer.say_pooled(false);
                memory::give_back();
                if check_between_reports {
                    running.between(None)?;
                }
            }
            changed = links.changed() => {
                let changes = changed.context("cannot watch the interfaces for changes")?;
                relist = running.link_event(&changes, relist.take())?;
            }
            () = next_relist(&mut relist) => relist = running.follow()?,
            read = next_samples(running.ring.as_mut(), &mut running.batch) => {
                read.context("cannot read the samples")?;
                running.samples();
            }
            Some(scrape) = next_scrape(&mut scrapes) => running.between(Some(scrape))?,
            event = next_event(running.live.as_mut()) => match running.key(event)? {
                Key::Quit => break,
                // The new mode on the screen at once.
                Key::ModeSwitched => ticks.reset_immediately(),
                Key::Other => {}
            },
            () = running.evidence.pcap_reader_gone() => {}
            // Nobody reads any more: detach (dropping the session) and end.
            () = reader_gone(running.output.as_ref()) => return Ok(()),
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
            _ = sighup.recv() => break,
            () = &mut deadline => break,
        }
    }
    if let Some(server) = metrics_server {
        server.abort();
    }
    running.finish()
}

/// Combinations of arguments that cannot work together.
fn check_arguments(args: &RunArgs) -> Result<(), InvalidArguments> {
    if args.sample_rate == 0 && (args.events || args.pcap.is_some() || args.top.is_some()) {
        return Err(InvalidArguments(
            "--events, --pcap and --top show samples, and --sample-rate 0 turns sampling off; \
             give a rate above 0"
                .to_owned(),
        ));
    }
    if args.json.is_some() && args.pcap.as_deref() == Some("-") {
        return Err(InvalidArguments(
            "--pcap - puts the pcap on stdout, where --json would go; write the pcap to a file \
             or leave out --json"
                .to_owned(),
        ));
    }
    Ok(())
}

impl View {
    fn chosen(args: &RunArgs) -> Self {
        if args.pcap.as_deref() == Some("-") {
            Self::Pcap
        } else if let Some(format) = Format::chosen(args.json.is_some()) {
            Self::Stream(format)
        } else if args.plain {
            Self::Plain
        } else {
            Self::Live
        }
    }
}

/// What start-up found, on stderr.
fn say_started(started: &Started, patterns: &[String], announcer: &mut Announcer) {
    tracing::debug!(
        "counters for {} interfaces to start with (432 bytes each on every CPU), growing as \
         interfaces come",
        started.capacity
    );
    for note in &started.notes {
        tracing::warn!("{}", printable(note));
    }
    let xdp = started.xdp;
    if let (Some(ethernet), Some(ip)) = (
        xdp.largest_mtu(Framing::Ethernet),
        xdp.largest_mtu(Framing::Ip),
    ) {
        let masked = if started.kernel.masked.contains(&Feature::XDP_FRAGS.key) {
            ", masked by LOCALNET_PROBE_WITHOUT"
        } else {
            ""
        };
        tracing::warn!(
            "this kernel has no {}{masked}: the XDP programs without it serve interfaces whose \
             MTU is at most {ethernet} ({ip} on layer-3 devices); those above are left out",
            Feature::XDP_FRAGS,
        );
    }
    say_left_out(&started.skipped);
    announcer.attached(&started.attached, xdp);
    if started.attached.is_empty() && !patterns.is_empty() {
        tracing::info!(
            "no interface matches --iface {} yet; waiting for one to appear",
            patterns.join(", ")
        );
    }
    if let Some(dir) = &started.pinned_in {
        tracing::info!(
            "standing filter pinned in {}: {}",
            dir.display(),
            match started.pins_vanish {
                Some(false) => "it stays attached after exit",
                Some(true) => "it goes away with this mount namespace",
                None => "whether it stays attached after exit cannot be told (see above)",
            }
        );
    }
}

fn say_left_out(skipped: &[Skipped]) {
    for skipped in skipped {
        if matches!(
            skipped.reason,
            LeftOut::Occupied { .. } | LeftOut::NeedsMultiBuffer { .. }
        ) {
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

/// Completes when the pause before listing interfaces again is over; never without one.
async fn next_relist(relist: &mut Option<Pin<Box<Sleep>>>) {
    match relist {
        Some(pause) => pause.await,
        None => std::future::pending().await,
    }
}

/// The next samples, or never when sampling is off.
async fn next_samples(
    ring: Option<&mut SampleRing>,
    batch: &mut Vec<SampledFrame>,
) -> io::Result<()> {
    match ring {
        Some(ring) => ring.read(batch).await,
        None => std::future::pending().await,
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

/// Start-up errors with what to do about them.
fn explain(error: SessionError, verifier_log: bool) -> anyhow::Error {
    let SessionError::Load(error) = error else {
        return error.into();
    };
    // What the kernel lacks of what the probe may need, said before any verifier log.
    let kernel = KernelReport::of_this_kernel().lines().replace('\n', "; ");
    match *error {
        ProbeError::Verifier {
            io_error,
            verifier_log: log,
        } => {
            if verifier_log {
                anyhow::anyhow!(
                    "the kernel verifier rejected the XDP program ({kernel}): {io_error}\n{log}"
                )
            } else {
                anyhow::anyhow!(
                    "the kernel verifier rejected the XDP program ({kernel}): {io_error}; rerun \
                     with --verifier-log to see why"
                )
            }
        }
        other => {
            anyhow::Error::new(other).context(format!("cannot load the XDP program ({kernel})"))
        }
    }
}
