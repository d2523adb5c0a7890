//! Drawing the live view: the layout, the title and footer, the logs, the help and the questions
//! (the table, the warnings and the evidence have their own files).

use super::{
    table::{behind_lines, draw_unserved},
    *,
};

impl LiveView {
    /// Draws the whole view into `frame`.
    pub(crate) fn draw(&self, frame: &mut Frame<'_>) {
        let area = frame.area();
        let height = usize::from(area.height);
        let warnings = self.warnings();
        let interfaces = self.ordered();
        let sub_rows = self.selected_interface().map_or(0, |i| {
            i.by_class.len().max(1) + behind_lines(i, height).len()
        });
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
                "d              (status only reads: says the run --pin that switches it)"
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
            "classes  v4 v6 mapped (::ffff:127/104) arp; src dst both loopback".to_owned(),
            "         (arp: src sender, tgt target protocol address)".to_owned(),
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
