//! What the full-screen view shows and how keys change it. Drawing is a function of this state
//! alone, so the tests draw it into ratatui's test backend.

use std::{
    cmp::Reverse,
    collections::{BTreeMap, BTreeSet, VecDeque},
    fmt::Write as _,
    time::{Duration, Instant},
};

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use probe_common::Mode;
use probe_user::{
    exposure::pin_switching,
    net::{names::printable, route_localnet::RouteLocalnet},
    output::report::{EventReport, InterfaceReport, Report, endpoint},
    session::UnservedInterface,
};
use ratatui::{
    Frame,
    layout::{Constraint, Flex, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Table, TableState},
};

mod columns;
mod draw;
mod evidence;
mod table;
mod warnings;

use self::columns::{Column, Columns};
use super::trend::{Series, Trends};
use crate::text::{
    count, fit, human_bytes, rate, short_address, short_duration, short_family, wrap,
};

/// How long a notice (the result of a key, the newest log line) stays in the footer.
const NOTICE_SHOWN: Duration = Duration::from_secs(10);
/// How long an interface removed stays among the warnings (a report lists it once).
const REMOVAL_SHOWN: Duration = Duration::from_secs(60);

/// Whether `d` may switch modes here.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Switching {
    /// `run`: the switch is live; with `pinned`, the standing filter keeps it after exit.
    Allowed { pinned: bool },
    /// `status --watch` only reads.
    ReadOnly,
}

/// What the caller is to do after a key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Command {
    Quit,
    SetMode {
        ifindex: u32,
        name: String,
        mode: Mode,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Sort {
    #[default]
    Name,
    Rate,
    Matched,
    Dropped,
}

impl Sort {
    const fn next(self) -> Self {
        match self {
            Self::Name => Self::Rate,
            Self::Rate => Self::Matched,
            Self::Matched => Self::Dropped,
            Self::Dropped => Self::Name,
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::Rate => "rate",
            Self::Matched => "matched",
            Self::Dropped => "dropped",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Overlay {
    Help,
    Logs,
}

/// Log lines the view keeps for `l`.
const LOG_LINES_KEPT: usize = 200;

/// A mode switch waiting for `y`.
#[derive(Debug)]
struct Confirm {
    ifindex: u32,
    name: String,
    to: Mode,
    question: String,
}

pub(crate) struct LiveView {
    /// What the probe does now: `refresh 1 s`, the standing filter served, …
    state: String,
    switching: Switching,
    report: Option<Report>,
    /// Newest last.
    events: Vec<EventReport>,
    /// route_localnet changes, newest last.
    alerts: Vec<String>,
    /// Interfaces removed, by ifindex: what to say and when it was last reported.
    removed: BTreeMap<u32, (String, Instant)>,
    trends: Trends,
    selected: Option<u32>,
    sort: Sort,
    /// What covers the view: the help or the logs.
    overlay: Option<Overlay>,
    confirm: Option<Confirm>,
    /// The result of a key, shown before the newest log line.
    notice: Option<(String, Instant)>,
    /// The newest log lines, newest last, and the newest one's time.
    logs: VecDeque<String>,
    newest_log: Option<Instant>,
    /// Warnings and errors logged since the logs were last looked at.
    unread_warnings: usize,
    /// With no standing filter to read (`status --watch`): every interface's route_localnet.
    unserved: Option<Vec<UnservedInterface>>,
    /// When the view is drawn: the trends' time.
    now: Instant,
}

impl LiveView {
    pub(crate) fn new(state: String, switching: Switching, interval: Duration) -> Self {
        let now = Instant::now();
        Self {
            state,
            switching,
            report: None,
            events: Vec::new(),
            alerts: Vec::new(),
            removed: BTreeMap::new(),
            trends: Trends::new(interval, now),
            selected: None,
            sort: Sort::default(),
            overlay: None,
            confirm: None,
            notice: None,
            logs: VecDeque::new(),
            newest_log: None,
            unread_warnings: 0,
            unserved: None,
            now,
        }
    }

    /// Shows `report`, read at `now`, and adds its counts to the trends.
    pub(crate) fn update(&mut self, report: Report, now: Instant) {
        self.now = now;
        self.unserved = None;
        let position = self
            .ordered()
            .iter()
            .position(|i| Some(i.ifindex) == self.selected);
        for interface in &report.interfaces {
            let series = Series::Interface(interface.ifindex);
            // A class that appears on an interface already followed is new: counted from zero.
            let followed = self.trends.follows(series);
            self.trends
                .record(series, interface.totals.packets_matched, now);
            for class in &interface.by_class {
                let series =
                    Series::Class(interface.ifindex, class.family, class.address, class.action);
                if followed && !self.trends.follows(series) {
                    self.trends.record(series, 0, now);
                }
                self.trends.record(series, class.packets, now);
            }
        }
        for removed in &report.removed {
            let mut line = format!(
                "{} (ifindex {}) removed; its final counts: {}",
                printable(&removed.name),
                removed.ifindex,
                removed.totals
            );
            if let Some(workload) = &removed.workload {
                let _ = write!(line, "; workload: {}", printable(&workload.summary()));
            }
            self.removed.insert(removed.ifindex, (line, now));
        }
        self.removed
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < REMOVAL_SHOWN);
        let present: BTreeSet<u32> = report.interfaces.iter().map(|i| i.ifindex).collect();
        let present = |ifindex: u32| present.contains(&ifindex);
        self.trends.retain(|series| match *series {
            Series::Interface(ifindex) | Series::Class(ifindex, ..) => present(ifindex),
        });
        if self.confirm.as_ref().is_some_and(|c| !present(c.ifindex)) {
            self.confirm = None;
            self.say("the interface is gone: nothing switched".to_owned());
        }
        self.report = Some(report);
        if !self.selected.is_some_and(present) {
            // The one now where the selected one was.
            let order = self.ordered();
            self.selected = order
                .get(position.unwrap_or(0).min(order.len().saturating_sub(1)))
                .map(|i| i.ifindex);
        }
    }

    pub(crate) fn set_evidence(
        &mut self,
        events: &VecDeque<EventReport>,
        alerts: &VecDeque<String>,
    ) {
        self.events.clear();
        self.events.extend(events.iter().cloned());
        self.alerts.clear();
        self.alerts.extend(alerts.iter().cloned());
    }

    /// What the probe does now, for the title.
    pub(crate) fn set_state(&mut self, state: String) {
        self.state = state;
    }

    /// Shows every interface's route_localnet: there is no standing filter to read.
    pub(crate) fn show_unserved(&mut self, interfaces: Vec<UnservedInterface>) {
        self.report = None;
        self.selected = None;
        self.confirm = None;
        self.unserved = Some(interfaces);
    }

    /// Whether `d` switches modes here.
    pub(crate) fn set_switching(&mut self, switching: Switching) {
        self.switching = switching;
    }

    /// Adds log lines, newest last: the newest shows in the footer, all of them with `l`.
    pub(crate) fn add_logs(&mut self, lines: Vec<String>, now: Instant) {
        for line in lines {
            if line.starts_with("WARN") || line.starts_with("ERROR") {
                self.unread_warnings += 1;
            }
            if self.logs.len() == LOG_LINES_KEPT {
                self.logs.pop_front();
            }
            self.logs.push_back(line);
            self.newest_log = Some(now);
        }
    }

    /// Pasted text is no key: a paste into the wrong window must not quit or switch.
    pub(crate) fn ignore_paste(&mut self) {
        match self.confirm.take() {
            Some(confirm) => self.say(format!(
                "pasted text ignored; {}: nothing switched",
                printable(&confirm.name)
            )),
            None => self.say("pasted text ignored: the view takes keys one at a time".to_owned()),
        }
    }

    /// Shows `notice` in the footer for a while.
    pub(crate) fn say(&mut self, notice: String) {
        self.notice = Some((printable(&notice).into_owned(), Instant::now()));
    }

    fn ordered(&self) -> Vec<&InterfaceReport> {
        let Some(report) = &self.report else {
            return Vec::new();
        };
        let mut interfaces: Vec<&InterfaceReport> = report.interfaces.iter().collect();
        interfaces.sort_by(|a, b| a.name.cmp(&b.name));
        match self.sort {
            Sort::Name => {}
            Sort::Rate => interfaces.sort_by(|a, b| {
                b.packets_matched_per_sec
                    .total_cmp(&a.packets_matched_per_sec)
            }),
            Sort::Matched => interfaces.sort_by_key(|i| Reverse(i.totals.packets_matched)),
            Sort::Dropped => interfaces.sort_by_key(|i| Reverse(i.totals.packets_dropped)),
        }
        interfaces
    }

    fn selected_interface(&self) -> Option<&InterfaceReport> {
        let report = self.report.as_ref()?;
        report
            .interfaces
            .iter()
            .find(|i| Some(i.ifindex) == self.selected)
    }

    /// Handles a key; what the caller is to do, if anything.
    pub(crate) fn on_key(&mut self, key: KeyEvent) -> Option<Command> {
        if key.kind != KeyEventKind::Press {
            return None;
        }
        let control = key.modifiers.contains(KeyModifiers::CONTROL);
        if control && key.code == KeyCode::Char('c') {
            return Some(Command::Quit);
        }
        if self.overlay.take().is_some() {
            return None;
        }
        // Ctrl-S then Ctrl-Q out of habit, Alt-anything: no key of the view.
        if control || key.modifiers.contains(KeyModifiers::ALT) {
            let said = match key.code {
                KeyCode::Char('z') if control => {
                    "Ctrl-Z does not suspend the view: q quits".to_owned()
                }
                _ => "no such key: ? lists them".to_owned(),
            };
            if let Some(confirm) = self.confirm.take() {
                self.say(format!("{}: nothing switched", printable(&confirm.name)));
            } else {
                self.say(said);
            }
            return None;
        }
        if let Some(confirm) = self.confirm.take() {
            if matches!(key.code, KeyCode::Char('y' | 'Y')) {
                return Some(Command::SetMode {
                    ifindex: confirm.ifindex,
                    name: confirm.name,
                    mode: confirm.to,
                });
            }
            let kept = match confirm.to {
                Mode::Drop => Mode::Monitor,
                Mode::Monitor => Mode::Drop,
            };
            self.say(format!(
                "{}: left in {} mode",
                printable(&confirm.name),
                kept.name()
            ));
            return None;
        }
        match key.code {
            KeyCode::Char('q' | 'Q') => return Some(Command::Quit),
            KeyCode::Up | KeyCode::Char('k') => self.move_selection(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_selection(1),
            KeyCode::PageUp => self.move_selection(-10),
            KeyCode::PageDown => self.move_selection(10),
            KeyCode::Home | KeyCode::Char('g') => self.move_selection(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_selection(isize::MAX),
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.say(format!("sorted by {}", self.sort.name()));
            }
            KeyCode::Char('?' | 'h') => self.overlay = Some(Overlay::Help),
            KeyCode::Char('l') => {
                self.overlay = Some(Overlay::Logs);
                self.unread_warnings = 0;
            }
            KeyCode::Char('d') => self.ask_to_switch(),
            _ => {}
        }
        None
    }

    fn move_selection(&mut self, by: isize) {
        let order: Vec<u32> = self.ordered().iter().map(|i| i.ifindex).collect();
        let Some(last) = order.len().checked_sub(1) else {
            return;
        };
        let at = self
            .selected
            .and_then(|selected| order.iter().position(|&i| i == selected))
            .unwrap_or(0);
        let to = at.saturating_add_signed(by).min(last);
        self.selected = Some(order[to]);
    }

    fn ask_to_switch(&mut self) {
        let pinned = match self.switching {
            Switching::Allowed { pinned } => pinned,
            Switching::ReadOnly => {
                let said = match (&self.report, self.selected_interface()) {
                    (Some(report), Some(interface)) => {
                        let to = if interface.mode == Mode::Drop.name() {
                            Mode::Monitor
                        } else {
                            Mode::Drop
                        };
                        let kept = crate::table::standing_of(report);
                        format!(
                            "status only reads the standing filter; `{}` switches {} to {} \
                             mode, keeping the other interfaces and modes it has",
                            pin_switching(&kept, &interface.name, to, &[]),
                            printable(&interface.name),
                            to.name()
                        )
                    }
                    _ => "status only reads the standing filter".to_owned(),
                };
                self.say(said);
                return;
            }
        };
        let Some(interface) = self.selected_interface() else {
            return;
        };
        let to = if interface.mode == Mode::Drop.name() {
            Mode::Monitor
        } else {
            Mode::Drop
        };
        let name = interface.name.clone();
        let shown = printable(&name);
        let mut question = match to {
            Mode::Drop => format!("Drop loopback-address frames arriving on {shown} from now on?"),
            Mode::Monitor => format!("Stop dropping on {shown} and only count?"),
        };
        if to == Mode::Monitor && interface.route_localnet.is_some_and(|r| r.effective) {
            question.push_str(" route_localnet=1: 127.0.0.1 services become reachable from it.");
        }
        if pinned {
            question.push_str(" The standing filter keeps it after exit.");
        }
        question.push_str("\n\ny: yes, any other key: no");
        self.confirm = Some(Confirm {
            ifindex: interface.ifindex,
            name,
            to,
            question,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::SystemTime,
    };

    use probe_common::{Action, Address, Family, Framing, LoopbackMatch};
    use probe_user::net::workload::{
        Holder, Netns, Workload,
        cgroup::{Attribution, Qos, Runtime},
    };
    use probe_user::{
        net::route_localnet::RouteLocalnet,
        output::report::{ClassReport, SamplesReport, SenderReport},
        output::samples::{Headers, SampledFrame},
        probe::TcxPrecededBy,
        session::totals::Totals,
    };
    use ratatui::{Terminal, backend::TestBackend};

    use super::*;

    const LONG_NAME: &str = "veth-to-a-container-7f3a";

    fn interface(name: &str, ifindex: u32, mode: &'static str) -> InterfaceReport {
        InterfaceReport {
            name: name.to_owned(),
            ifindex,
            mode,
            hook: Some("xdp"),
            xdp_mode: Some("native"),
            egress: false,
            egress_hook: None,
            tcx_preceded_by: TcxPrecededBy::default(),
            framing: "ethernet",
            route_localnet: Some(RouteLocalnet::new(false, false)),
            route_localnet_via: Vec::new(),
            exposed: false,
            exploited: false,
            totals: Totals::default(),
            packets_matched_per_sec: 0.0,
            bytes_matched_per_sec: 0.0,
            by_class: Vec::new(),
            samples: Some(SamplesReport::default()),
            top_senders_sampled: Some(Vec::new()),
            workload: None,
            children: Vec::new(),
        }
    }

    fn class(
        family: &'static str,
        address: &'static str,
        action: &'static str,
        packets: u64,
    ) -> ClassReport {
        ClassReport {
            family,
            address,
            action,
            packets,
            bytes: packets * 60,
        }
    }

    /// Three interfaces: one exposed with a long name and four classes, one dropping, one at
    /// tcx behind another program; forty events; two senders.
    fn report() -> Report {
        let mut exposed = interface(LONG_NAME, 7, "monitor");
        exposed.route_localnet = Some(RouteLocalnet::new(false, true));
        exposed.route_localnet_via = vec![LONG_NAME.to_owned()];
        exposed.exposed = true;
        exposed.by_class = vec![
            class("ipv4", "destination", "passed", 1200),
            class("ipv4", "source", "passed", 30),
            class("ipv6", "destination", "passed", 7),
            class("ipv4-mapped", "both", "passed", 2),
        ];
        exposed.totals = Totals {
            packets_matched: 1239,
            bytes_matched: 1239 * 60,
            ..Totals::default()
        };
        exposed.packets_matched_per_sec = 120.0;
        exposed.samples = Some(SamplesReport {
            emitted: 1000,
            suppressed: 239,
            lost: 0,
        });
        exposed.top_senders_sampled = Some(vec![SenderReport {
            source_mac: Some("02:00:00:00:00:01".to_owned()),
            source_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
            samples: 990,
            origin: None,
        }]);
        let mut dropping = interface("eth0", 2, "drop");
        dropping.by_class = vec![class("ipv6", "source", "dropped", 123_456_789)];
        dropping.totals = Totals {
            packets_matched: 123_456_789,
            bytes_matched: 123_456_789 * 60,
            packets_dropped: 123_456_789,
            bytes_dropped: 123_456_789 * 60,
            ..Totals::default()
        };
        dropping.packets_matched_per_sec = 2_500_000.0;
        dropping.top_senders_sampled = Some(vec![SenderReport {
            source_mac: Some("02:00:00:00:00:02".to_owned()),
            source_ip: Some("fd00::9".parse().expect("address")),
            samples: 10,
            origin: None,
        }]);
        let mut behind = interface("eth1", 3, "drop");
        behind.hook = Some("tcx");
        behind.xdp_mode = None;
        behind.tcx_preceded_by = TcxPrecededBy {
            ingress: vec![42],
            egress: Vec::new(),
        };
        Report {
            kind: "counters",
            timestamp: 0.0,
            elapsed_secs: 75.0,
            is_final: false,
            full: true,
            served: 3,
            interfaces: vec![dropping, exposed, behind],
            attached: Vec::new(),
            removed: Vec::new(),
            refused: Vec::new(),
            totals: Totals::default(),
            standing_filter: None,
        }
    }

    fn events() -> VecDeque<EventReport> {
        (0..40_u16)
            .map(|n| {
                let frame = SampledFrame {
                    at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + u64::from(n)),
                    ifindex: 7,
                    matched: LoopbackMatch {
                        family: Family::Ipv4,
                        address: Address::Destination,
                    },
                    action: Action::Passed,
                    framing: Framing::Ethernet,
                    frame_len: 60,
                    captured: bytes::Bytes::new(),
                    headers: Headers {
                        source_mac: Some([2, 0, 0, 0, 0, 1]),
                        destination_mac: Some([2, 0, 0, 0, 0, 2]),
                        source_ip: Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1))),
                        destination_ip: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                        protocol: Some(17),
                        source_port: Some(40000 + n),
                        destination_port: Some(5353),
                        ..Headers::default()
                    },
                };
                EventReport::new(&frame, LONG_NAME)
            })
            .collect()
    }

    fn view() -> LiveView {
        let mut view = LiveView::new(
            "refresh 1 s".to_owned(),
            Switching::Allowed { pinned: false },
            Duration::from_secs(1),
        );
        view.set_evidence(&events(), &VecDeque::new());
        view.update(report(), Instant::now());
        view
    }

    /// The screen's rows as text.
    fn screen(view: &LiveView, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test backend");
        terminal.draw(|frame| view.draw(frame)).expect("draw");
        rows(terminal.backend())
    }

    fn rows(backend: &TestBackend) -> Vec<String> {
        let buffer = backend.buffer();
        (0..buffer.area.height)
            .map(|y| {
                (0..buffer.area.width)
                    .map(|x| buffer[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect()
    }

    fn row_starting<'a>(screen: &'a [String], start: &str) -> (usize, &'a String) {
        screen
            .iter()
            .enumerate()
            .find(|(_, row)| row.starts_with(start))
            .unwrap_or_else(|| panic!("no row starts with {start:?}:\n{}", screen.join("\n")))
    }

    /// What every size must show: one row per interface, the selected one's classes under it,
    /// the exposure, events cut rather than wrapped, the keys.
    fn check_common(screen: &[String]) {
        let all = screen.join("\n");
        // Sorted by name; the first is selected, its four classes under it.
        let (eth0, _) = row_starting(screen, "eth0 ");
        let (eth1, eth1_row) = row_starting(screen, "eth1 ");
        assert!(eth1_row.contains("tcx!"), "{all}");
        assert_eq!(eth1, eth0 + 2, "eth0's class row sits between:\n{all}");
        assert!(screen[eth0 + 1].starts_with("└ v6 src"), "{all}");
        assert!(screen[eth0 + 1].contains("dropped"), "{all}");
        // The exposure has its own line, and the interface's cell its mark.
        assert!(
            screen
                .iter()
                .any(|row| row.starts_with(&format!("EXPOSED {LONG_NAME}: route_localnet=1"))),
            "{all}"
        );
        let (_, exposed_row) = row_starting(screen, "veth-to-a-");
        assert!(exposed_row.contains("1 !"), "{all}");
        assert!(exposed_row.contains("1239"), "{all}");
        // Events: each on one row starting with its time, the newest first.
        let events: Vec<&String> = screen
            .iter()
            .filter(|row| row.starts_with("22:") || row.starts_with("23:"))
            .collect();
        assert!(events.len() >= 3, "{all}");
        assert!(events[0].contains(":40039 > 127.0.0.1:53"), "{all}");
        assert!(events[1].contains(":40038 "), "{all}");
        assert!(
            screen.last().is_some_and(|row| row.contains("q quit")),
            "{all}"
        );
        // Whatever does not fit ends in an ellipsis: nothing is cut silently or continued on
        // the next row.
        for row in screen {
            assert!(
                row.ends_with([' ', '…', '─']),
                "a row cut without an ellipsis: {row:?}\n{all}"
            );
        }
    }

    #[test]
    fn fits_80_by_24() {
        let view = view();
        let screen = screen(&view, 80, 24);
        check_common(&screen);
        let all = screen.join("\n");
        // The long name is cut with an ellipsis, not wrapped.
        assert!(
            screen
                .iter()
                .any(|row| row.starts_with("veth-to-a-conta… ")),
            "{all}"
        );
        // Counters too large for the column get a unit; the rate one.
        let (_, eth0) = row_starting(&screen, "eth0 ");
        assert!(eth0.contains("123.5M") && eth0.contains("2.5M/s"), "{all}");
        // Event rows too long for 80 columns end with an ellipsis.
        assert!(
            screen
                .iter()
                .filter(|row| row.starts_with("22:"))
                .all(|row| row.ends_with('…')),
            "{all}"
        );
        // The senders below the events.
        assert!(
            screen
                .iter()
                .any(|row| row
                    .starts_with(&format!("{LONG_NAME} 02:00:00:00:00:01 198.18.0.1 (990)"))),
            "{all}"
        );
    }

    #[test]
    fn uses_the_room_of_200_by_50() {
        let view = view();
        let screen = screen(&view, 200, 50);
        check_common(&screen);
        let all = screen.join("\n");
        let (header, header_row) = row_starting(&screen, "INTERFACE");
        for title in ["BYTES", "SAMPLES", "TREND"] {
            assert!(header_row.contains(title), "{all}");
        }
        let (_, exposed_row) = row_starting(&screen, LONG_NAME);
        assert!(exposed_row.contains("1 all=0 if=1 !"), "{all}");
        assert!(exposed_row.contains("1000/239/0"), "{all}");
        // Exact counts where they fit.
        assert!(screen[header + 1].contains("123456789"), "{all}");
        // Events whole (no ellipsis) and the senders beside them.
        let event = screen
            .iter()
            .find(|row| row.starts_with("22:"))
            .expect("an event row");
        assert!(event.contains("from 02:00:00:00:00:01"), "{all}");
        assert!(!event.contains('…'), "{all}");
        assert!(
            screen
                .iter()
                .any(|row| row.starts_with("22:")
                    && row.contains("eth0 02:00:00:00:00:02 fd00::9 (10)")),
            "{all}"
        );
        assert!(
            screen.iter().filter(|row| row.starts_with("22:")).count() > 20,
            "{all}"
        );
    }

    #[test]
    fn never_panics_on_a_tiny_or_resized_terminal() {
        let view = view();
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test backend");
        for (width, height) in [(1, 1), (20, 5), (40, 10), (79, 23), (300, 100), (80, 24)] {
            terminal.backend_mut().resize(width, height);
            terminal.draw(|frame| view.draw(frame)).expect("draw");
            let screen = rows(terminal.backend());
            assert_eq!(screen.len(), usize::from(height));
        }
        check_common(&rows(terminal.backend()));
    }

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    #[test]
    fn keys_select_sort_switch_and_quit() {
        let mut view = view();
        // Down to the exposed interface: its classes show under it.
        for code in [
            KeyCode::Char('j'),
            KeyCode::Down,
            KeyCode::Up,
            KeyCode::Char('j'),
        ] {
            assert_eq!(view.on_key(key(code)), None);
        }
        let selected = screen(&view, 80, 24);
        let (row, _) = row_starting(&selected, "veth-to-a-conta… ");
        assert!(
            selected[row - 1].starts_with("eth1 "),
            "{}",
            selected.join("\n")
        );
        assert!(
            selected[row + 1].starts_with("├ v4 dst"),
            "{}",
            selected.join("\n")
        );
        assert!(
            selected[row + 4].starts_with("└ mapped both"),
            "{}",
            selected.join("\n")
        );
        // d asks; anything but y leaves it.
        assert_eq!(view.on_key(key(KeyCode::Char('d'))), None);
        // The whole question fits 80 columns, wrapped in its box.
        let asked = screen(&view, 80, 24).join("\n");
        for part in [
            "│Drop loopback-address frames arriving on",
            "│veth-to-a-container-7f3a from now on?",
            "│y: yes, any other key: no",
        ] {
            assert!(asked.contains(part), "{part}:\n{asked}");
        }
        assert_eq!(view.on_key(key(KeyCode::Char('n'))), None);
        assert!(
            screen(&view, 80, 24)
                .last()
                .is_some_and(|row| row.contains("left in monitor mode"))
        );
        view.on_key(key(KeyCode::Char('d')));
        assert_eq!(
            view.on_key(key(KeyCode::Char('y'))),
            Some(Command::SetMode {
                ifindex: 7,
                name: LONG_NAME.to_owned(),
                mode: Mode::Drop
            })
        );
        // Sorted by rate, eth0 (2.5 M/s) comes first and the header says so.
        view.on_key(key(KeyCode::Char('s')));
        let sorted = screen(&view, 80, 24);
        let (header, header_row) = row_starting(&sorted, "INTERFACE");
        assert!(header_row.contains("RATE▾"), "{}", sorted.join("\n"));
        assert!(
            sorted[header + 1].starts_with("eth0 "),
            "{}",
            sorted.join("\n")
        );
        // Help opens and any key closes it.
        view.on_key(key(KeyCode::Char('?')));
        assert!(
            screen(&view, 80, 24)
                .iter()
                .any(|row| row.contains("localnet-probe keys"))
        );
        assert_eq!(view.on_key(key(KeyCode::Char('q'))), None);
        assert!(
            !screen(&view, 80, 24)
                .iter()
                .any(|row| row.contains("localnet-probe keys"))
        );
        assert_eq!(view.on_key(key(KeyCode::Char('q'))), Some(Command::Quit));
        assert_eq!(
            view.on_key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Command::Quit)
        );
    }

    #[test]
    fn pastes_and_control_keys_do_nothing() {
        let mut view = view();
        view.on_key(key(KeyCode::Char('d')));
        view.ignore_paste();
        assert_eq!(
            view.on_key(key(KeyCode::Char('y'))),
            None,
            "the paste cancelled it"
        );
        for code in ['q', 'd', 'y', 's', 'z'] {
            assert_eq!(
                view.on_key(KeyEvent::new(KeyCode::Char(code), KeyModifiers::CONTROL)),
                None
            );
            assert_eq!(
                view.on_key(KeyEvent::new(KeyCode::Char(code), KeyModifiers::ALT)),
                None
            );
        }
        assert!(view.confirm.is_none());
        assert_eq!(view.sort, Sort::Name);
        assert!(
            screen(&view, 80, 24)
                .last()
                .is_some_and(|row| row.starts_with("no such key: ? lists them"))
        );
    }

    #[test]
    fn logs_show_in_the_footer_and_with_l() {
        let mut view = view();
        let now = Instant::now();
        view.add_logs(
            vec![
                "WARN vb: the standing filter dropped there, this run only monitors it".to_owned(),
                "INFO attached to vb".to_owned(),
            ],
            now,
        );
        assert!(
            screen(&view, 80, 24)
                .last()
                .is_some_and(|row| row.starts_with("INFO attached to vb"))
        );
        // Once the line is old, the keys, and the warning not yet read.
        view.newest_log = now.checked_sub(NOTICE_SHOWN);
        let footer = screen(&view, 80, 24).pop().expect("a footer");
        assert!(footer.contains("l logs (1 new warning)"), "{footer}");
        view.on_key(key(KeyCode::Char('l')));
        let logs = screen(&view, 80, 24).join("\n");
        assert!(
            logs.contains("│WARN vb: the standing filter dropped there"),
            "{logs}"
        );
        view.on_key(key(KeyCode::Char('x')));
        let footer = screen(&view, 80, 24).pop().expect("a footer");
        assert!(footer.contains("l logs  ?"), "{footer}");
    }

    #[test]
    fn the_newest_route_localnet_change_comes_first() {
        let mut view = view();
        let alerts: VecDeque<String> = (0..5).map(|n| format!("change {n}")).collect();
        view.set_evidence(&events(), &alerts);
        let screen = screen(&view, 80, 24);
        let (first, _) = row_starting(&screen, "change 4");
        assert!(
            screen[first + 1].starts_with("change 3"),
            "{}",
            screen.join("\n")
        );
    }

    #[test]
    fn the_selection_stays_in_place_when_its_interface_goes() {
        let mut view = view();
        view.on_key(key(KeyCode::Char('j')));
        assert_eq!(view.selected, Some(3));
        let mut without = report();
        without.interfaces.remove(2);
        view.update(without, Instant::now());
        assert_eq!(view.selected, Some(7), "the one now second by name");
    }

    #[test]
    fn status_without_a_standing_filter_lists_route_localnet() {
        let mut view = LiveView::new(String::new(), Switching::ReadOnly, Duration::from_secs(1));
        view.show_unserved(vec![
            UnservedInterface {
                name: "vb".to_owned(),
                ifindex: 2,
                xdp_program_id: None,
                route_localnet: Some(RouteLocalnet::new(false, true)),
                route_localnet_via: vec!["vb".to_owned()],
                exposed: true,
            },
            UnservedInterface {
                name: "eth0".to_owned(),
                ifindex: 3,
                xdp_program_id: Some(12),
                route_localnet: Some(RouteLocalnet::new(false, false)),
                route_localnet_via: Vec::new(),
                exposed: false,
            },
            // In effect through a device stacked on it, as the plain table says too.
            UnservedInterface {
                name: "eth1".to_owned(),
                ifindex: 4,
                xdp_program_id: None,
                route_localnet: Some(RouteLocalnet::new(false, false)),
                route_localnet_via: vec!["mv0".to_owned()],
                exposed: true,
            },
        ]);
        let screen = screen(&view, 80, 24);
        let all = screen.join("\n");
        let (_, eth1) = row_starting(&screen, "eth1 ");
        assert_eq!(
            cells(eth1),
            ["eth1", "-", "0", "all=0", "if=0", "via", "mv0", "!"],
            "{all}"
        );
        assert!(
            screen
                .iter()
                .any(|row| row.starts_with("EXPOSED vb: route_localnet=1")),
            "{all}"
        );
        let (_, vb) = row_starting(&screen, "vb ");
        assert_eq!(cells(vb), ["vb", "-", "1", "all=0", "if=1", "!"], "{all}");
        let (_, eth0) = row_starting(&screen, "eth0 ");
        assert_eq!(
            cells(eth0),
            ["eth0", "id", "12", "0", "all=0", "if=0"],
            "{all}"
        );
    }

    #[test]
    fn status_advises_a_run_pin_keeping_the_standing_filters_selection_and_modes() {
        let mut view = LiveView::new(String::new(), Switching::ReadOnly, Duration::from_secs(1));
        let mut standing = report();
        standing.kind = "status";
        // Its replies counted: the takeover must keep counting them.
        standing.interfaces[1].egress = true;
        view.update(standing, Instant::now());
        let notice = |view: &mut LiveView, ifindex| {
            view.selected = Some(ifindex);
            assert_eq!(view.on_key(key(KeyCode::Char('d'))), None);
            view.notice.clone().expect("a notice").0
        };
        // The exposed one, in monitor mode, to drop mode: the dropping ones keep dropping.
        let said = notice(&mut view, 7);
        assert!(
            said.contains(&format!(
                "`localnet-probe run --pin --iface eth0 --iface {LONG_NAME} --iface eth1 \
                 --egress --drop-on eth0 --drop-on eth1 --drop-on {LONG_NAME}` switches \
                 {LONG_NAME} to drop mode"
            )),
            "{said}"
        );
        // A dropping one to monitor mode: named with --iface, not with --drop-on.
        let said = notice(&mut view, 2);
        assert!(
            said.contains(&format!(
                "`localnet-probe run --pin --iface eth0 --iface {LONG_NAME} --iface eth1 \
                 --egress --drop-on eth1` switches eth0 to monitor mode"
            )),
            "{said}"
        );
        assert!(!said.contains("--drop-on IF"), "{said}");
    }

    #[test]
    fn with_nothing_pinned_one_command_drops_on_every_exposed_interface() {
        let mut view = LiveView::new(String::new(), Switching::ReadOnly, Duration::from_secs(1));
        let exposed = |name: &str, ifindex| UnservedInterface {
            name: name.to_owned(),
            ifindex,
            xdp_program_id: None,
            route_localnet: Some(RouteLocalnet::new(false, true)),
            route_localnet_via: vec![name.to_owned()],
            exposed: true,
        };
        view.show_unserved(vec![exposed("vb", 2), exposed("t;id*", 3)]);
        let warnings = view.warnings();
        assert_eq!(warnings.len(), 2);
        for (line, _) in warnings {
            assert!(
                line.contains(
                    "`localnet-probe run --pin --iface vb --iface 't;id[*]' --drop-on 't;id[*]' \
                     --drop-on vb` blocks them"
                ),
                "{line}"
            );
        }
    }

    fn cells(row: &str) -> Vec<&str> {
        row.split_whitespace().collect()
    }

    #[test]
    fn an_interface_not_served_is_a_warning() {
        let mut view = view();
        let mut report = report();
        report.refused.push(probe_user::session::RefusedInterface {
            name: "veth300".to_owned(),
            ifindex: 301,
            reason: "cannot attach to veth300: all 65 interface slots are in use".to_owned(),
        });
        view.update(report, Instant::now());
        let screen = screen(&view, 200, 50);
        assert!(
            screen.iter().any(|row| row.starts_with(
                "NOT SERVED veth300: cannot attach to veth300: all 65 interface slots are in use; \
                 neither counted nor filtered"
            )),
            "{}",
            screen.join("\n")
        );
    }

    #[test]
    fn a_removal_stays_a_minute() {
        let start = Instant::now();
        let mut view = view();
        let mut with_removal = report();
        let gone = with_removal.interfaces.remove(2);
        with_removal.removed.push(gone);
        view.update(with_removal, start);
        let said = |view: &LiveView| {
            screen(view, 80, 24)
                .iter()
                .any(|row| row.starts_with("eth1 (ifindex 3) removed; its final counts: 0 matched"))
        };
        assert!(said(&view));
        let mut after = report();
        after.interfaces.remove(2);
        view.update(after.clone(), start + Duration::from_secs(30));
        assert!(said(&view), "{}", screen(&view, 80, 24).join("\n"));
        view.update(after, start + Duration::from_secs(61));
        assert!(!said(&view));
    }

    #[test]
    fn status_does_not_switch() {
        let mut view = LiveView::new(String::new(), Switching::ReadOnly, Duration::from_secs(1));
        view.update(report(), Instant::now());
        assert_eq!(view.on_key(key(KeyCode::Char('d'))), None);
        let screen = screen(&view, 80, 24);
        assert!(
            screen
                .last()
                .is_some_and(|row| row.starts_with("status only reads the standing filter")),
            "{}",
            screen.join("\n")
        );
    }
    #[test]
    fn the_question_and_its_answers_show_a_hostile_name_escaped() {
        let mut view = LiveView::new(
            "refresh 1 s".to_owned(),
            Switching::Allowed { pinned: false },
            Duration::from_secs(1),
        );
        let mut report = report();
        report.interfaces = vec![interface("t\u{7}B", 5, "monitor")];
        view.update(report, Instant::now());
        view.on_key(key(KeyCode::Char('d')));
        let asked = screen(&view, 80, 24).join("\n");
        assert!(
            asked.contains("arriving on t\\u{7}B from now on?"),
            "{asked}"
        );
        view.on_key(key(KeyCode::Char('n')));
        let answered = screen(&view, 80, 24).join("\n");
        assert!(
            answered.contains("t\\u{7}B: left in monitor mode"),
            "{answered}"
        );
    }

    /// A workload whose /run/netns name and process name are hostile, and no container.
    fn hostile_workload() -> std::sync::Arc<Workload> {
        std::sync::Arc::new(Workload {
            netns: Some(Netns {
                inode: 4_026_532_999,
                cookie: None,
                name: Some("ns\u{1b}]0;X\u{7}\nB".to_owned()),
            }),
            processes: vec![Holder {
                pid: 4242,
                command: "sl\u{1b}[31mp".to_owned(),
            }],
            process_count: 1,
            attribution: Attribution::default(),
            unresolved: Some("no container runtime in the cgroup of pid 4242: /x".to_owned()),
            names: Default::default(),
            names_unresolved: None,
        })
    }

    #[test]
    fn the_selected_interfaces_children_are_a_line_each_escaped() {
        let mut view = view();
        let mut with_children = report();
        with_children.interfaces[0].children = vec![
            probe_user::net::workload::Child {
                name: "mv\u{1b}[2J".to_owned(),
                kind: "macvlan".to_owned(),
                mac: None,
                workload: hostile_workload(),
            },
            probe_user::net::workload::Child {
                name: "mv1".to_owned(),
                kind: "ipvlan".to_owned(),
                mac: None,
                workload: std::sync::Arc::new(Workload::pending()),
            },
        ];
        view.update(with_children, Instant::now());
        let rows = screen(&view, 200, 30);
        let all = rows.join("\n");
        let (eth0, _) = row_starting(&rows, "eth0 ");
        assert_eq!(
            rows[eth0 + 1].trim_end(),
            "└ macvlan mv\\u{1b}[2J: pid 4242 sl\\u{1b}[31mp netns ns\\u{1b}]0;X\\u{7}\\u{a}B [no \
             container runtime in the cgroup of pid 4242: /x]",
            "{all}"
        );
        assert_eq!(
            rows[eth0 + 2].trim_end(),
            "└ ipvlan mv1: [not resolved yet]",
            "{all}"
        );
        assert!(rows[eth0 + 3].starts_with("└ v6 src"), "{all}");
        assert!(!all.chars().any(|c| c.is_control() && c != '\n'), "{all}");
    }

    #[test]
    fn children_beyond_the_room_are_counted_on_a_line_and_the_classes_stay_in_view() {
        let mut view = view();
        let mut with_children = report();
        with_children.interfaces[0].children = (0..151)
            .map(|n| probe_user::net::workload::Child {
                name: format!("mv{n}"),
                kind: "macvlan".to_owned(),
                mac: None,
                workload: std::sync::Arc::new(Workload::pending()),
            })
            .collect();
        with_children.interfaces[0].by_class = vec![
            class("ipv4", "destination", "dropped", 1200),
            class("ipv4", "source", "dropped", 30),
            class("ipv6", "source", "dropped", 7),
            class("arp", "destination", "dropped", 2),
        ];
        view.update(with_children, Instant::now());
        let class_rows = |rows: &[String], after: usize| {
            rows[after + 1..]
                .iter()
                .take_while(|row| row.starts_with('├') || row.starts_with('└'))
                .filter(|row| !row.starts_with("└ macvlan") && !row.starts_with("└ … "))
                .count()
        };
        for (width, height) in [(80, 24), (40, 12), (200, 60)] {
            let rows = screen(&view, width, height);
            let all = rows.join("\n");
            let (eth0, _) = row_starting(&rows, "eth0 ");
            let more = rows
                .iter()
                .position(|row| row.starts_with("└ … "))
                .unwrap_or_else(|| panic!("no line counting the rest at {width}x{height}:\n{all}"));
            let shown = more - eth0 - 1;
            assert!(shown >= 1, "{all}");
            assert!(
                rows[more].starts_with(&format!("└ … {} more children", 151 - shown)),
                "{all}"
            );
            assert_eq!(class_rows(&rows, eth0), 4, "{all}");
        }
        // Where the classes alone fill the table, they keep it, and no child line is drawn.
        let rows = screen(&view, 20, 8);
        let all = rows.join("\n");
        let (eth0, _) = row_starting(&rows, "eth0");
        assert!(!all.contains("└ macvlan") && !all.contains("└ …"), "{all}");
        assert_eq!(class_rows(&rows, eth0), rows.len() - eth0 - 2, "{all}");
    }

    #[test]
    fn the_selected_interfaces_workload_is_a_line_of_its_own_escaped_and_cut_to_the_width() {
        let mut view = view();
        let mut with_workload = report();
        with_workload.interfaces[0].workload = Some(hostile_workload());
        let id = "ab".repeat(32);
        with_workload.interfaces[1].workload = Some(std::sync::Arc::new(Workload {
            attribution: Attribution {
                runtime: Some(Runtime::Containerd),
                container_id: Some(id.clone()),
                pod_uid: Some("0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a".to_owned()),
                qos: Some(Qos::Burstable),
            },
            unresolved: None,
            ..(*hostile_workload()).clone()
        }));
        view.update(with_workload, Instant::now());
        // eth0, selected: its workload line, then its class.
        let narrow = screen(&view, 60, 24);
        let all = narrow.join("\n");
        let (eth0, _) = row_starting(&narrow, "eth0 ");
        assert_eq!(
            narrow[eth0 + 1],
            "└ workload: pid 4242 sl\\u{1b}[31mp netns ns\\u{1b}]0;X\\u{7}\\…",
            "{all}"
        );
        assert!(narrow[eth0 + 2].starts_with("└ v6 src"), "{all}");
        for row in &narrow {
            assert_eq!(row.chars().count(), 60, "{all}");
            assert!(!row.chars().any(char::is_control), "{all}");
        }
        let wide = screen(&view, 200, 50);
        let (eth0, _) = row_starting(&wide, "eth0 ");
        assert_eq!(
            wide[eth0 + 1].trim_end(),
            "└ workload: pid 4242 sl\\u{1b}[31mp netns ns\\u{1b}]0;X\\u{7}\\u{a}B [no container runtime \
             in the cgroup of pid 4242: /x]",
            "{}",
            wide.join("\n")
        );
        // The selection moved: the next interface's workload, by its container and pod.
        view.on_key(key(KeyCode::Char('j')));
        let moved = screen(&view, 200, 50);
        let (row, _) = row_starting(&moved, "eth1 ");
        // eth1 has none: no line for it.
        assert!(
            moved[row + 1].starts_with("└ nothing"),
            "{}",
            moved.join("\n")
        );
        view.on_key(key(KeyCode::Char('j')));
        let moved = screen(&view, 200, 50);
        let (row, _) = row_starting(&moved, LONG_NAME);
        assert_eq!(
            moved[row + 1].trim_end(),
            format!(
                "└ workload: containerd {} pod 0f7c1a9e-2b3d-4c5e-8f6a-7b8c9d0e1f2a (burstable) \
                 netns ns\\u{{1b}}]0;X\\u{{7}}\\u{{a}}B",
                &id[..12]
            ),
            "{}",
            moved.join("\n")
        );
        assert!(
            moved[row + 2].starts_with("├ v4 dst"),
            "{}",
            moved.join("\n")
        );
        assert!(
            !screen(&view, 200, 50)
                .iter()
                .any(|r| r.starts_with("└ workload: pid")),
            "only the selected interface's workload is shown"
        );
    }

    #[test]
    fn a_removed_interface_keeps_its_workload() {
        let mut view = view();
        let mut with_removal = report();
        let mut gone = with_removal.interfaces.remove(2);
        gone.workload = Some(hostile_workload());
        with_removal.removed.push(gone);
        view.update(with_removal, Instant::now());
        let all = screen(&view, 200, 50).join("\n");
        assert!(
            all.contains(
                "eth1 (ifindex 3) removed; its final counts: 0 matched, 0 dropped; \
                 workload: pid 4242 sl\\u{1b}[31mp netns ns\\u{1b}]0;X\\u{7}\\u{a}B"
            ),
            "{all}"
        );
    }
}
