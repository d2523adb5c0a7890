//! A run once attached: what each event of the loop does to the session, the evidence and the
//! views, and the last report at the end.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    pin::Pin,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use crossterm::event::Event;
use probe_common::Mode;
use probe_user::{
    net::{link_events::LinkChanges, names::printable},
    output::compact::{self, Compactor},
    output::metrics::Tally,
    output::report::{
        AttachedReport, EventReport, FirewallChangeReport, Report, SysctlChangeReport,
    },
    output::samples::{SampleRing, SampledFrame},
    probe::TcxPrecededBy,
    session::{InterfaceSnapshot, Session, SessionError, Snapshot, Started},
};
use tokio::time::Sleep;

use super::{
    View,
    announce::Announcer,
    coalesce::Coalescer,
    evidence::{Evidence, addresses_children},
    metrics_server::{Scraped, SnapshotRequest},
    output::{Output, Stream, WAITING_BYTES},
    say_left_out,
};
use crate::{
    stream::Format,
    table,
    tui::{Command, Live},
};

/// How long the last report may wait for a reader that stopped reading.
const FINAL_REPORT_PATIENCE: Duration = Duration::from_secs(2);

/// The route_localnet changes the live view keeps showing, newest last.
const ALERTS_SHOWN: usize = 5;

/// The events the table left on the screen at exit shows.
const FINAL_EVENTS: usize = 10;

/// How long to wait before listing interfaces again that kept changing as they were listed.
const RELIST_PAUSE: Duration = Duration::from_millis(100);

/// What a run keeps between the events of its loop.
pub(super) struct Running {
    pub(super) session: Session,
    /// Where the standing filter is pinned, when it stays after exit.
    stays_pinned_in: Option<std::path::PathBuf>,
    attached_at: Instant,
    pins_stay: bool,
    render: Render,
    pub(super) evidence: Evidence,
    pub(super) ring: Option<SampleRing>,
    /// Samples read from the ring, reused from one read to the next.
    pub(super) batch: Vec<SampledFrame>,
    /// Where reports, events and the live view go; none for the pcap stream.
    pub(super) output: Option<Output>,
    pub(super) live: Option<Live>,
    previous: Option<Snapshot>,
    warned: Warned,
    /// Interfaces found removed by a snapshot between reports (a scrape's, a check of
    /// route_localnet), for the next report to list: each snapshot lists a removal once.
    removed_between_reports: Vec<InterfaceSnapshot>,
    /// The live view's last route_localnet changes.
    alerts: VecDeque<String>,
    /// What the metrics count across snapshots; every snapshot taken is added.
    tally: Tally,
    pub(super) announcer: Announcer,
    /// Interfaces attached since the last object the stream's reader got, for the next one.
    attached_since_object: Vec<AttachedReport>,
    /// When link events were last followed, which spaces out the next following.
    coalescer: Coalescer,
}

/// What a key in the live view asks of the loop.
pub(super) enum Key {
    Quit,
    ModeSwitched,
    Other,
}

impl Running {
    pub(super) fn new(
        session: Session,
        started: &Started,
        attached_at: Instant,
        announcer: Announcer,
        render: Render,
        mut evidence: Evidence,
        live: Option<Live>,
    ) -> Self {
        evidence.add_interfaces(&started.attached);
        let pins_stay = started.pinned_in.is_some() && started.pins_vanish == Some(false);
        Self {
            session,
            stays_pinned_in: started.pinned_in.clone().filter(|_| pins_stay),
            attached_at,
            pins_stay,
            // JSON events share the stream with the reports: room for a few batches between two.
            output: (render.view != View::Pcap)
                .then(|| Output::spawn(Stream::Stdout, WAITING_BYTES)),
            render,
            evidence,
            ring: None,
            batch: Vec::new(),
            live,
            previous: None,
            warned: Warned::default(),
            removed_between_reports: Vec::new(),
            alerts: VecDeque::new(),
            tally: Tally::default(),
            announcer,
            attached_since_object: started.attached.iter().map(AttachedReport::new).collect(),
            coalescer: Coalescer::default(),
        }
    }

    /// The report of an interval.
    pub(super) fn report(&mut self) -> anyhow::Result<()> {
        let mut snapshot = self.snapshot()?;
        snapshot
            .removed
            .splice(0..0, self.removed_between_reports.drain(..));
        say_changes(
            &snapshot,
            self.render.view,
            self.output.as_mut(),
            &mut self.alerts,
        );
        let session = &self.session;
        self.evidence.senders.expire(Instant::now(), |ifindex| {
            session.interface_name(ifindex).is_some()
        });
        let report = self.report_of(&snapshot, false);
        warn_on_changes(&report, &mut self.warned);
        self.announcer.removed(&report.removed);
        self.announcer.say_pooled(false);
        self.show(report, snapshot.at)?;
        self.previous = Some(snapshot);
        Ok(())
    }

    /// A snapshot between reports: for a scrape when given one, else to find route_localnet and
    /// firewall changes, which the live views show at once.
    pub(super) fn between(&mut self, scrape: Option<SnapshotRequest>) -> anyhow::Result<()> {
        let mut snapshot = self.snapshot()?;
        self.removed_between_reports.append(&mut snapshot.removed);
        // The live view shows a change at once, with the exposure it leaves.
        if say_changes(
            &snapshot,
            self.render.view,
            self.output.as_mut(),
            &mut self.alerts,
        ) && matches!(self.render.view, View::Plain | View::Live)
        {
            let report = self.report_of(&snapshot, false);
            self.show(report, snapshot.at)?;
        }
        if let Some(scrape) = scrape {
            // Nothing to do when the scraper has gone.
            let _ = scrape.send(Scraped {
                snapshot,
                tally: self.tally,
            });
        }
        Ok(())
    }

    /// The session's snapshot, counted in the tally. A served interface it found without the
    /// probe's program though the device is here (its link detached by another tool) is served
    /// again at once, not at the next link event, which may never come.
    fn snapshot(&mut self) -> Result<Snapshot, SessionError> {
        let snapshot = self.session.snapshot()?;
        self.tally.add(&snapshot);
        if self.session.take_lost_present() {
            // A pause it asks for (interfaces changing, a refusal that may pass) is left to the
            // next link event or snapshot.
            let _ = self.follow()?;
        }
        Ok(snapshot)
    }

    fn report_of(&self, snapshot: &Snapshot, is_final: bool) -> Report {
        let mut report = Report::new(
            snapshot,
            self.previous.as_ref(),
            self.attached_at.elapsed(),
            is_final,
        );
        let origins = self.session.sender_origins();
        report.add_top_senders(&self.evidence.senders, self.evidence.top, |ifindex, mac| {
            origins.of(ifindex, mac)
        });
        report
    }

    /// Shows a report read at `at`: on the live view, or rendered for the output.
    fn show(&mut self, report: Report, at: Instant) -> anyhow::Result<()> {
        let Some(output) = &mut self.output else {
            return Ok(());
        };
        match &mut self.live {
            Some(live) => {
                live.view.set_evidence(&self.evidence.pane, &self.alerts);
                live.view.update(report, at);
                draw(live, output)
            }
            None => {
                let mut report = report;
                report.attached.clone_from(&self.attached_since_object);
                let bytes = self
                    .render
                    .render(&mut report, &self.evidence.pane, &self.alerts);
                if output.offer(bytes, "reports") {
                    self.attached_since_object.clear();
                } else {
                    self.render.lost();
                }
                Ok(())
            }
        }
    }

    /// Link events: followed at once, or, soon after the last following and unless they
    /// announce an interface not listed before (or were lost), when its spacing is over (with
    /// every event until then), or at `relist` if that is sooner.
    pub(super) fn link_event(
        &mut self,
        changes: &LinkChanges,
        relist: Option<Pin<Box<Sleep>>>,
    ) -> Result<Option<Pin<Box<Sleep>>>, SessionError> {
        self.session
            .links_announced(&changes.announced, changes.lost);
        let appeared = changes.lost
            || changes
                .announced
                .iter()
                .any(|&ifindex| self.session.is_new(ifindex));
        let Some(due) = self.coalescer.due(Instant::now(), appeared) else {
            return self.follow();
        };
        let due = tokio::time::Instant::from_std(due);
        Ok(Some(match relist {
            Some(pause) if pause.deadline() <= due => pause,
            _ => Box::pin(tokio::time::sleep_until(due)),
        }))
    }

    /// Attaches to what the selection asks for since the last call and says what changed; when
    /// interfaces kept changing as they were listed, the pause after which to call again.
    pub(super) fn follow(&mut self) -> Result<Option<Pin<Box<Sleep>>>, SessionError> {
        let started = Instant::now();
        let followed = self.session.follow_links()?;
        // A generation of the programs loaded for the interfaces just served has a ring of its
        // own; without sampling nobody reads them.
        for ring in self.session.take_samples() {
            if let Some(rings) = &mut self.ring
                && let Err(error) = rings.add(ring)
            {
                tracing::warn!("samples of the interfaces attached now cannot be read: {error}");
            }
        }
        if let Some(room) = followed.grown_to {
            tracing::info!(
                "the counters grew to room for {room} interfaces (at most {}; --capacity sets it)",
                self.session.capacity_bound()
            );
        }
        say_left_out(&followed.skipped);
        for refusal in &followed.refused {
            tracing::warn!("{}", printable(&refusal.to_string()));
        }
        self.announcer
            .attached(&followed.attached, self.session.xdp_programs());
        if self.live.is_none() {
            self.attached_since_object
                .extend(followed.attached.iter().map(AttachedReport::new));
        }
        self.evidence.add_interfaces(&followed.attached);
        let pause = if followed.unsettled {
            Some(RELIST_PAUSE)
        } else {
            followed.retry_in
        };
        self.coalescer.followed(started, Instant::now());
        Ok(pause.map(|pause| Box::pin(tokio::time::sleep(pause))))
    }

    /// The samples just read into the batch, as evidence.
    pub(super) fn samples(&mut self) {
        let session = &self.session;
        let (workloads, children) = (session.workloads(), session.children());
        let json = self
            .evidence
            .take(&self.batch, &workloads, &children, |ifindex| {
                name_in(session, ifindex)
            });
        if addresses_children(&self.batch, &children) {
            session.children_addressed();
        }
        if let (false, Some(output)) = (json.is_empty(), &mut self.output) {
            output.offer(json, "events");
        }
        self.batch.clear();
    }

    /// A key or a resize in the live view.
    pub(super) fn key(&mut self, event: Result<Event, String>) -> anyhow::Result<Key> {
        let (Some(live), Some(output)) = (&mut self.live, &mut self.output) else {
            return Ok(Key::Other);
        };
        let key = match live.on_event(event) {
            Some(Command::Quit) => return Ok(Key::Quit),
            Some(Command::SetMode {
                ifindex,
                name,
                mode,
            }) => {
                switch_mode(
                    &mut self.session,
                    live,
                    (ifindex, &name, mode),
                    self.pins_stay,
                );
                Key::ModeSwitched
            }
            None => Key::Other,
        };
        draw(live, output)?;
        Ok(key)
    }

    /// The last report, after detaching: on the screen left behind, or on the stream.
    pub(super) fn finish(mut self) -> anyhow::Result<()> {
        let mut snapshot = self.snapshot()?;
        snapshot
            .removed
            .splice(0..0, self.removed_between_reports.drain(..));
        say_changes(
            &snapshot,
            self.render.view,
            self.output.as_mut(),
            &mut self.alerts,
        );
        let mut report = self.report_of(&snapshot, true);
        warn_on_changes(&report, &mut self.warned);
        self.announcer.removed(&report.removed);
        self.announcer.say_pooled(true);
        report.attached = std::mem::take(&mut self.attached_since_object);
        let names: BTreeMap<u32, String> = snapshot
            .interfaces
            .iter()
            .chain(&snapshot.removed)
            .map(|interface| (interface.ifindex, interface.name.clone()))
            .collect();
        let (workloads, children) = (self.session.workloads(), self.session.children());
        let Self {
            session,
            stays_pinned_in,
            mut render,
            mut evidence,
            mut ring,
            mut batch,
            output,
            live,
            alerts,
            ..
        } = self;
        // A link pin removed while this process held the link would let the filter go with
        // it: pinned again, and said.
        match session.restore_link_pins() {
            Ok(restored) => {
                for name in restored {
                    tracing::warn!(
                        "the link pin of {} had been removed; pinned again so that its filter \
                         stays",
                        printable(&name)
                    );
                }
            }
            Err(error) => tracing::error!(
                "{}: the standing filter may not stay attached everywhere",
                printable(&error.to_string())
            ),
        }
        // Detach before writing: a reader that stopped reading must not keep the programs
        // attached.
        drop(session);
        if let Some(dir) = &stays_pinned_in {
            tracing::info!(
                "the standing filter stays attached, pinned in {}: `localnet-probe status` shows \
                 it, `localnet-probe detach` removes it",
                dir.display()
            );
        }
        // What the programs sent before they were detached.
        if let Some(ring) = &mut ring {
            ring.drain(&mut batch);
        }
        let last = evidence.take(&batch, &workloads, &children, |ifindex| {
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
        last.extend(render.render(&mut report, &evidence.pane, &alerts));
        evidence.finish(FINAL_REPORT_PATIENCE);
        match output {
            Some(output) => output.finish(last, FINAL_REPORT_PATIENCE),
            None => tracing::info!("detached: {}", report.totals),
        }
        crate::logs::release();
        Ok(())
    }
}

/// Reports as text or a stream for stdout, by the view.
pub(super) struct Render {
    view: View,
    /// The state the plain table shows while running, and once ended.
    live_state: String,
    final_state: &'static str,
    /// Cuts the stream's objects to what changed (compact JSON); none for full objects.
    compactor: Option<Compactor>,
}

impl Render {
    pub(super) fn new(
        view: View,
        interval: f64,
        pins_stay: bool,
        compactor: Option<Compactor>,
    ) -> Self {
        Self {
            view,
            live_state: format!(
                "refresh {interval} s, Ctrl-C to {}",
                if pins_stay {
                    "exit (the filter stays)"
                } else {
                    "detach"
                }
            ),
            final_state: if pins_stay {
                "exited, the standing filter stays attached"
            } else {
                "detached"
            },
            compactor,
        }
    }

    /// The last rendering never reached the reader.
    fn lost(&mut self) {
        if let Some(compactor) = &mut self.compactor {
            compactor.lost();
        }
    }

    fn render(
        &mut self,
        report: &mut Report,
        pane: &VecDeque<EventReport>,
        alerts: &VecDeque<String>,
    ) -> Vec<u8> {
        match self.view {
            View::Stream(format) => match &mut self.compactor {
                Some(compactor) => {
                    compactor.compact(report);
                    format.line(&compact::object(report))
                }
                None => format.line(report),
            },
            // The last view stays on the screen and scrolls, with the newest events.
            View::Plain | View::Live if report.is_final => {
                let newest = pane.iter().skip(pane.len().saturating_sub(FINAL_EVENTS));
                let lines: Vec<String> = newest.map(EventReport::line).collect();
                table::render(report, self.final_state, &lines, alerts, None).into()
            }
            View::Plain => {
                let lines: Vec<String> = pane.iter().map(EventReport::line).collect();
                table::redraw(&table::render(
                    report,
                    &self.live_state,
                    &lines,
                    alerts,
                    table::terminal_size(),
                ))
            }
            View::Live | View::Pcap => Vec::new(),
        }
    }
}

/// The name a sample's interface goes by.
fn name_in(session: &Session, ifindex: u32) -> String {
    session
        .interface_name(ifindex)
        .map_or_else(|| format!("ifindex {ifindex}"), str::to_owned)
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
            live.view.say(format!(
                "{}: {} mode from now on",
                printable(name),
                mode.name()
            ));
        }
        Err(error) => live.view.say(format!("{:#}", anyhow::Error::from(error))),
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
/// exposed, or exposed through other devices than before; forgets those that disappeared (the
/// announcer says that).
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
    }
}
