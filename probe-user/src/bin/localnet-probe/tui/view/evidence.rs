//! The evidence panes: the latest sampled frames and the top senders.

use super::*;

impl LiveView {
    pub(super) fn any_senders(&self) -> bool {
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
    pub(super) fn draw_evidence(&self, frame: &mut Frame<'_>, area: Rect) {
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
                lines.push(format!(
                    "{} {}",
                    printable(&interface.name),
                    sender.describe()
                ));
            }
        }
        lines
    }
}

/// An event on one line, most telling first: time (UTC), interface, action, class, addresses,
/// protocol, then the MACs.
fn event_line(event: &EventReport) -> String {
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
    if let Some(child) = &event.to_child {
        line.push_str(&format!(
            " to {} {}",
            printable(&child.kind),
            printable(&child.name)
        ));
    }
    line
}
