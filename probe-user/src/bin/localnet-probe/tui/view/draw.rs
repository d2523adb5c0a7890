//! Drawing the live view: the title, the warnings, the table of interfaces and their classes,
//! the evidence pane, the logs, the help and the questions.

use super::*;

impl LiveView {
    /// Draws the whole view into `frame`.
    pub(crate) fn draw(&self, frame: &mut Frame<'_>) {
        let area = frame.area();
        let height = usize::from(area.height);
        let warnings = self.warnings();
        let interfaces = self.ordered();
        let sub_rows = self
            .selected_interface()
            .map_or(0, |i| i.by_class.len().max(1));
        let table_wanted = 1 + match &self.unserved {
            Some(unserved) => unserved.len(),
            None => interfaces.len() + sub_rows,
        };
        let free = height.saturating_sub(2);
        // The evidence panes only where there is room for them beside the table.
        let evidence = (!self.events.is_empty() || self.any_senders()) && free >= 12;
        let evidence_wanted = if evidence { 6 } else { 0 };
        // Warnings get what the table and the evidence leave, at least a fifth.
        let warnings_height = warnings.len().min(
            (height / 5)
                .max(1)
                .max(free.saturating_sub(table_wanted + evidence_wanted)),
        );
        let free = free.saturating_sub(warnings_height);
        let table_height = if evidence {
            table_wanted.min(free.saturating_sub(evidence_wanted).max(free / 2))
        } else {
            free
        };
        let [title, warnings_area, table_area, evidence_area, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(warnings_height as u16),
            Constraint::Length(table_height as u16),
            Constraint::Fill(1),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(self.title_line(title.width)), title);
        self.draw_warnings(frame, warnings_area, &warnings);
        match &self.unserved {
            Some(unserved) => draw_unserved(frame, table_area, unserved),
            None => self.draw_table(frame, table_area, &interfaces),
        }
        if evidence {
            self.draw_evidence(frame, evidence_area);
        }
        frame.render_widget(Paragraph::new(self.footer_line(footer.width)), footer);
        if let Some(confirm) = &self.confirm {
            draw_question(frame, area, &confirm.question);
        }
        match self.overlay {
            Some(Overlay::Help) => self.draw_help(frame, area),
            Some(Overlay::Logs) => self.draw_logs(frame, area),
            None => {}
        }
    }

    fn title_line(&self, width: u16) -> Line<'static> {
        let text = match &self.report {
            Some(report) => {
                let served = report.interfaces.len();
                let dropping = report
                    .interfaces
                    .iter()
                    .filter(|i| i.mode == "drop")
                    .count();
                format!(
                    "localnet-probe  {served} interface{} ({dropping} dropping)  {} {}  \
                     matched {}  dropped {}  {}",
                    if served == 1 { "" } else { "s" },
                    match self.switching {
                        Switching::Allowed { .. } => "up",
                        Switching::ReadOnly => "pinned",
                    },
                    short_duration(Duration::from_secs_f64(report.elapsed_secs)),
                    report.totals.packets_matched,
                    report.totals.packets_dropped,
                    self.state
                )
            }
            None => format!("localnet-probe  {}", self.state),
        };
        Line::styled(fit(&text, width), Style::new().add_modifier(Modifier::BOLD))
    }

    fn draw_table(&self, frame: &mut Frame<'_>, area: Rect, interfaces: &[&InterfaceReport]) {
        let columns = Columns::for_width(area.width, interfaces, self.trends.bucket());
        let sorted = match self.sort {
            Sort::Name => Column::Name,
            Sort::Rate => Column::Rate,
            Sort::Matched => Column::Matched,
            Sort::Dropped => Column::Dropped,
        };
        let header = Row::new(columns.list.iter().map(|(column, width)| {
            let mut title = column.title(&columns);
            if *column == sorted && title.chars().count() < usize::from(*width) {
                title.push('▾');
            }
            cell(&title, *width, column.right_aligned())
        }))
        .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let mut rows = Vec::new();
        let mut selected_row = None;
        let mut sub_rows = 0;
        for interface in interfaces {
            let is_selected = Some(interface.ifindex) == self.selected;
            if is_selected {
                selected_row = Some(rows.len());
            }
            let style = if interface.exploited {
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)
            } else if interface.exposed {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            };
            rows.push(
                Row::new(columns.list.iter().map(|(column, width)| {
                    cell(
                        &self.interface_cell(*column, interface, *width),
                        *width,
                        column.right_aligned(),
                    )
                }))
                .style(style),
            );
            if is_selected {
                let before = rows.len();
                rows.extend(self.class_rows(interface, &columns));
                sub_rows = rows.len() - before;
            }
        }
        // The selected interface with its classes in view, from the top when they fit.
        let visible = usize::from(area.height).saturating_sub(1);
        let offset = selected_row.map_or(0, |row| {
            (row + sub_rows + 1).saturating_sub(visible).min(row)
        });
        let mut state = TableState::default()
            .with_offset(offset)
            .with_selected(selected_row);
        let table = Table::new(
            rows,
            columns
                .list
                .iter()
                .map(|(_, width)| Constraint::Length(*width)),
        )
        .header(header)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        frame.render_stateful_widget(table, area, &mut state);
    }

    fn interface_cell(&self, column: Column, interface: &InterfaceReport, width: u16) -> String {
        let totals = &interface.totals;
        match column {
            Column::Name => printable(&interface.name).into_owned(),
            Column::Hook => match (interface.hook, interface.xdp_mode) {
                (Some(_), Some(xdp_mode)) => xdp_mode.to_owned(),
                (Some(hook), None) if !interface.tcx_preceded_by.ingress.is_empty() => {
                    format!("{hook}!")
                }
                (Some(hook), None) => hook.to_owned(),
                (None, _) => "-".to_owned(),
            },
            Column::Mode => interface.mode.to_owned(),
            Column::RouteLocalnet => {
                let mut text = match interface.route_localnet {
                    Some(r) if width >= 15 => format!(
                        "{} all={} if={}",
                        u8::from(r.effective),
                        u8::from(r.all),
                        u8::from(r.iface)
                    ),
                    Some(r) => u8::from(r.effective).to_string(),
                    None => "n/a".to_owned(),
                };
                if interface
                    .route_localnet_via
                    .iter()
                    .any(|via| *via != interface.name)
                {
                    text.push_str(" via");
                }
                if interface.exploited {
                    text.push_str(" !!");
                } else if interface.exposed {
                    text.push_str(" !");
                }
                text
            }
            Column::Matched => count(totals.packets_matched, width),
            Column::Bytes => human_bytes(totals.bytes_matched),
            Column::Dropped => count(totals.packets_dropped, width),
            Column::Replied if interface.egress || totals.packets_replied > 0 => {
                count(totals.packets_replied, width)
            }
            Column::Replied => "off".to_owned(),
            Column::Rate => rate(interface.packets_matched_per_sec),
            Column::Samples => interface.samples.map_or_else(
                || "off".to_owned(),
                |s| format!("{}/{}/{}", s.emitted, s.suppressed, s.lost),
            ),
            Column::Trend => self.trends.sparkline(
                Series::Interface(interface.ifindex),
                usize::from(width),
                self.now,
            ),
        }
    }

    /// The selected interface's classes, under its row.
    fn class_rows(&self, interface: &InterfaceReport, columns: &Columns) -> Vec<Row<'static>> {
        let dim = Style::new().fg(Color::Cyan);
        if interface.by_class.is_empty() {
            return vec![
                Row::new(columns.list.iter().map(|(column, width)| {
                    let text = match column {
                        Column::Name => "└ nothing",
                        _ => "",
                    };
                    cell(text, *width, false)
                }))
                .style(dim),
            ];
        }
        let last = interface.by_class.len() - 1;
        interface
            .by_class
            .iter()
            .enumerate()
            .map(|(index, class)| {
                let series =
                    Series::Class(interface.ifindex, class.family, class.address, class.action);
                Row::new(columns.list.iter().map(|(column, width)| {
                    let text = match column {
                        Column::Name => format!(
                            "{} {} {}",
                            if index == last { "└" } else { "├" },
                            short_family(class.family),
                            short_address(class.address)
                        ),
                        Column::Mode => class.action.to_owned(),
                        Column::Matched
                            if class.action != "replied" || !columns.has(Column::Replied) =>
                        {
                            count(class.packets, *width)
                        }
                        Column::Dropped if class.action == "dropped" => {
                            count(class.packets, *width)
                        }
                        Column::Replied if class.action == "replied" => {
                            count(class.packets, *width)
                        }
                        Column::Bytes => human_bytes(class.bytes),
                        Column::Trend => {
                            self.trends.sparkline(series, usize::from(*width), self.now)
                        }
                        _ => String::new(),
                    };
                    cell(&text, *width, column.right_aligned())
                }))
                .style(dim)
            })
            .collect()
    }

    fn any_senders(&self) -> bool {
        self.report.as_ref().is_some_and(|report| {
            report.interfaces.iter().any(|i| {
                i.top_senders_sampled
                    .as_ref()
                    .is_some_and(|senders| !senders.is_empty())
            })
        })
    }

    /// The latest sampled frames and the top senders: side by side on a wide terminal, one
    /// above the other on a narrow one.
    fn draw_evidence(&self, frame: &mut Frame<'_>, area: Rect) {
        let senders = self.sender_lines();
        let (events_area, senders_area) = if area.width >= 120 {
            let [events, senders] =
                Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)])
                    .spacing(1)
                    .areas(area);
            (events, senders)
        } else {
            // The border, the title and the senders, in at most a third of the room.
            let senders_height = (senders.len() as u16 + 2).min(area.height / 3).max(3);
            let [events, senders] =
                Layout::vertical([Constraint::Fill(1), Constraint::Length(senders_height)])
                    .areas(area);
            (events, senders)
        };
        let title = Style::new().add_modifier(Modifier::BOLD);
        let mut events = vec![Line::styled(
            fit("EVENTS (sampled, newest first, UTC)", events_area.width),
            title,
        )];
        events.extend(
            self.events
                .iter()
                .rev()
                .map(|event| Line::raw(fit(&event_line(event), events_area.width))),
        );
        if self.events.is_empty() {
            events.push(Line::raw("none in this run yet"));
        }
        frame.render_widget(
            Paragraph::new(events).block(Block::new().borders(Borders::TOP)),
            events_area,
        );
        let mut lines = vec![Line::styled(
            fit(
                &format!(
                    "TOP SENDERS (sampled, last {} s)",
                    probe_user::output::senders::WINDOW.as_secs()
                ),
                senders_area.width,
            ),
            title,
        )];
        lines.extend(
            senders
                .iter()
                .map(|line| Line::raw(fit(line, senders_area.width))),
        );
        if senders.is_empty() {
            lines.push(Line::raw("none in the last minute"));
        }
        frame.render_widget(
            Paragraph::new(lines).block(Block::new().borders(Borders::TOP)),
            senders_area,
        );
    }

    /// The selected interface's senders first, then the others'.
    fn sender_lines(&self) -> Vec<String> {
        let mut interfaces = self.ordered();
        interfaces.sort_by_key(|i| Some(i.ifindex) != self.selected);
        let mut lines = Vec::new();
        for interface in interfaces {
            for sender in interface.top_senders_sampled.iter().flatten() {
                let ip = sender
                    .source_ip
                    .map_or_else(|| "?".to_owned(), |ip| ip.to_string());
                lines.push(match &sender.source_mac {
                    Some(mac) => format!(
                        "{} {ip} {mac} ({})",
                        printable(&interface.name),
                        sender.samples
                    ),
                    None => format!("{} {ip} ({})", printable(&interface.name), sender.samples),
                });
            }
        }
        lines
    }

    /// The result of the last key, else the newest log line, else the keys.
    fn footer_line(&self, width: u16) -> Line<'static> {
        let fresh = |at: &Instant| at.elapsed() < NOTICE_SHOWN;
        if let Some((notice, at)) = &self.notice
            && fresh(at)
        {
            return Line::styled(
                fit(notice, width),
                Style::new().add_modifier(Modifier::BOLD),
            );
        }
        if let (Some(line), Some(at)) = (self.logs.back(), &self.newest_log)
            && fresh(at)
        {
            return Line::styled(fit(line, width), Style::new().add_modifier(Modifier::BOLD));
        }
        let switch = match self.switching {
            Switching::Allowed { .. } => "d drop/monitor  ",
            Switching::ReadOnly => "",
        };
        let logs = match self.unread_warnings {
            0 => "l logs".to_owned(),
            n => format!("l logs ({n} new warning{})", if n == 1 { "" } else { "s" }),
        };
        let style = if self.unread_warnings > 0 {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new().add_modifier(Modifier::DIM)
        };
        Line::styled(
            fit(
                &format!(
                    "↑↓ select  {switch}s sort ({})  {logs}  ? help  q quit",
                    self.sort.name()
                ),
                width,
            ),
            style,
        )
    }

    /// The newest log lines that fit, newest last.
    fn draw_logs(&self, frame: &mut Frame<'_>, area: Rect) {
        let popup = Rect {
            x: area.x,
            y: area.y + 1,
            width: area.width,
            height: area.height.saturating_sub(2),
        };
        let inner_width = popup.width.saturating_sub(2);
        let shown = usize::from(popup.height.saturating_sub(2));
        // Whole, wrapped: the newest that fit.
        let wrapped: Vec<Line<'_>> = self
            .logs
            .iter()
            .flat_map(|line| {
                let style = if line.starts_with("WARN") || line.starts_with("ERROR") {
                    Style::new().fg(Color::Yellow)
                } else {
                    Style::new()
                };
                wrap(line, usize::from(inner_width))
                    .into_iter()
                    .map(move |part| Line::styled(part, style))
            })
            .collect();
        let mut lines: Vec<Line<'_>> = wrapped
            .iter()
            .skip(wrapped.len().saturating_sub(shown))
            .cloned()
            .collect();
        if lines.is_empty() {
            lines.push(Line::raw("nothing logged since the view opened"));
        }
        frame.render_widget(Clear, popup);
        frame.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(Span::styled(
                " logs, newest last (all of them are written to stderr at exit; any key closes) ",
                Style::new().add_modifier(Modifier::BOLD),
            ))),
            popup,
        );
    }

    fn draw_help(&self, frame: &mut Frame<'_>, area: Rect) {
        let quit = match self.switching {
            Switching::Allowed { pinned: true } => "quit (the standing filter stays attached)",
            Switching::Allowed { pinned: false } => "quit and detach",
            Switching::ReadOnly => "quit (the standing filter stays attached)",
        };
        let bucket = self.trends.bucket().as_secs();
        let switch = match self.switching {
            Switching::Allowed { .. } => {
                "d              switch it between monitor and drop (asks first)"
            }
            Switching::ReadOnly => {
                "d              (status only reads: run --pin --drop-on IF switches)"
            }
        };
        let lines = [
            "↑ ↓ j k        select an interface; its classes show under it".to_owned(),
            "PgUp PgDn g G  move by ten, to the first, to the last".to_owned(),
            switch.to_owned(),
            "s              sort by name, rate, matched, dropped".to_owned(),
            "l              the logs (held back while the view is open)".to_owned(),
            format!("q Ctrl-C       {quit}"),
            String::new(),
            "HOOK     native or generic XDP; tcx beside another XDP program".to_owned(),
            "         (tc: a clsact filter, where the kernel has no tcx)".to_owned(),
            "         (tcx! or tc! another program now runs before it)".to_owned(),
            "MODE     monitor counts and passes; drop drops".to_owned(),
            "LOCALNET effective route_localnet (via: on a device stacked on it)".to_owned(),
            "         ! exposed: 127.0.0.1 services reachable; !! exploited".to_owned(),
            format!("TREND    matched frames per {bucket} s, oldest left"),
            "SAMPLES  sent / over the rate / lost".to_owned(),
            "classes  v4 v6 mapped (::ffff:127/104); src dst both loopback".to_owned(),
            String::new(),
            "any key closes this".to_owned(),
        ];
        let width = (lines.iter().map(|l| l.chars().count()).max().unwrap_or(0) + 2) as u16;
        let [popup] = Layout::horizontal([Constraint::Length(width.min(area.width))])
            .flex(Flex::Center)
            .areas(area);
        let [popup] = Layout::vertical([Constraint::Length(
            (lines.len() as u16 + 2).min(area.height),
        )])
        .flex(Flex::Center)
        .areas(popup);
        frame.render_widget(Clear, popup);
        let inner_width = popup.width.saturating_sub(2);
        frame.render_widget(
            Paragraph::new(
                lines
                    .iter()
                    .map(|line| Line::raw(fit(line, inner_width)))
                    .collect::<Vec<_>>(),
            )
            .block(Block::bordered().title(Span::styled(
                " localnet-probe keys ",
                Style::new().add_modifier(Modifier::BOLD),
            ))),
            popup,
        );
    }
}

/// With no standing filter (`status --watch`): each interface's route_localnet and whether
/// another XDP program is attached.
pub(super) fn draw_unserved(frame: &mut Frame<'_>, area: Rect, interfaces: &[UnservedInterface]) {
    let name = interfaces
        .iter()
        .map(|i| printable(&i.name).chars().count())
        .max()
        .unwrap_or(0)
        .clamp(9, 24) as u16;
    let widths = [name, 11, area.width.saturating_sub(name + 13)];
    let header = Row::new(
        ["INTERFACE", "XDP PROGRAM", "LOCALNET"]
            .iter()
            .zip(widths)
            .map(|(title, width)| cell(title, width, false)),
    )
    .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = interfaces.iter().map(|interface| {
        let localnet = match interface.route_localnet {
            Some(r) => format!(
                "{} all={} if={}{}",
                u8::from(r.effective),
                u8::from(r.all),
                u8::from(r.iface),
                if interface.exposed { " !" } else { "" }
            ),
            None => "n/a".to_owned(),
        };
        let cells = [
            printable(&interface.name).into_owned(),
            interface
                .xdp_program_id
                .map_or_else(|| "-".to_owned(), |id| format!("id {id}")),
            localnet,
        ];
        let style = if interface.exposed {
            Style::new().fg(Color::Yellow)
        } else {
            Style::new()
        };
        Row::new(
            cells
                .iter()
                .zip(widths)
                .map(|(text, width)| cell(text, width, false)),
        )
        .style(style)
    });
    frame.render_widget(
        Table::new(rows, widths.map(Constraint::Length))
            .header(header)
            .column_spacing(1),
        area,
    );
}

/// A question over the view, wrapped to fit, until a key answers it.
pub(super) fn draw_question(frame: &mut Frame<'_>, area: Rect, question: &str) {
    let width = area.width.min(64);
    let inner = width.saturating_sub(2).max(1);
    let lines: Vec<Line<'_>> = question
        .lines()
        .flat_map(|paragraph| wrap(paragraph, usize::from(inner)))
        .map(Line::raw)
        .collect();
    let [popup] = Layout::horizontal([Constraint::Length(width)])
        .flex(Flex::Center)
        .areas(area);
    let [popup] = Layout::vertical([Constraint::Length(
        (lines.len() as u16 + 2).min(area.height),
    )])
    .flex(Flex::Center)
    .areas(popup);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .border_style(Style::new().fg(Color::Yellow))
                .title(Span::styled(
                    " switch? ",
                    Style::new().add_modifier(Modifier::BOLD),
                )),
        ),
        popup,
    );
}

pub(super) fn cell(text: &str, width: u16, right_aligned: bool) -> Cell<'static> {
    let line = Line::raw(fit(text, width));
    Cell::from(if right_aligned {
        line.right_aligned()
    } else {
        line
    })
}

/// An event on one line, most telling first: time (UTC), interface, action, class, addresses,
/// protocol, then the MACs.
pub(super) fn event_line(event: &EventReport) -> String {
    let of_day = event.timestamp as u64 % 86_400;
    let mut line = format!(
        "{:02}:{:02}:{:02} {} {} {}/{} {} > {}",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        printable(&event.interface),
        event.action,
        short_family(event.family),
        short_address(event.address),
        endpoint(event.source_ip, event.source_port),
        endpoint(event.destination_ip, event.destination_port),
    );
    if let Some(protocol) = &event.protocol {
        line.push(' ');
        line.push_str(protocol);
    }
    if let Some(flags) = &event.tcp_flags {
        line.push_str(&format!(" [{flags}]"));
    }
    if event.fragment {
        line.push_str(" fragment");
    }
    for vlan in &event.vlans {
        line.push_str(&format!(" vlan {vlan}"));
    }
    if let Some(mac) = &event.source_mac {
        line.push_str(&format!(" from {mac}"));
    }
    line
}
