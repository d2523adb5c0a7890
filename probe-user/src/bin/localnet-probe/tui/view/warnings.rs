//! The warnings over the table: exploited, exposed and unserved interfaces, removals, and
//! route_localnet changes, most urgent first.

use super::*;

impl LiveView {
    /// One line each: exploited and exposed interfaces, other programs before ours, the last
    /// route_localnet changes, interfaces removed.
    pub(super) fn warnings(&self) -> Vec<(String, Style)> {
        let yellow = Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD);
        if let Some(unserved) = &self.unserved {
            let exposed: Vec<&str> = unserved
                .iter()
                .filter(|interface| interface.exposed)
                .map(|interface| interface.name.as_str())
                .collect();
            // One command for them all: each `run --pin` would take the last one's over.
            let Some(command) = crate::table::pin_dropping_on(&exposed) else {
                return Vec::new();
            };
            return exposed
                .iter()
                .map(|name| {
                    (
                        format!(
                            "EXPOSED {}: route_localnet=1 and nothing drops such frames here: \
                             services bound to 127.0.0.1 are reachable from this link \
                             (`{command}` blocks them)",
                            printable(name)
                        ),
                        yellow,
                    )
                })
                .collect();
        }
        if self.report.is_none() {
            return Vec::new();
        }
        let red = Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD);
        let mut lines = Vec::new();
        for interface in self.ordered() {
            let name = &interface.name;
            if interface.exploited {
                lines.push((
                    format!(
                        "EXPLOITED {name}: {} replies from a loopback address left this link: \
                         {}{}",
                        interface.totals.packets_replied,
                        interface.who_answered(),
                        if interface.mode == "drop" {
                            "; drop mode now blocks the requests"
                        } else {
                            " (d drops the requests)"
                        }
                    ),
                    red,
                ));
            }
            if interface.exposed {
                let via = crate::text::stacked_via(name, &interface.route_localnet_via);
                let state = if interface.mode == "drop" {
                    "drop mode, but other tc programs run first"
                } else {
                    "monitor mode"
                };
                lines.push((
                    format!(
                        "EXPOSED {name}: route_localnet=1{} and {state}: services bound to \
                         127.0.0.1 are reachable from this link (d drops such frames)",
                        if via.is_empty() {
                            String::new()
                        } else {
                            format!(" (via {})", via.join(", "))
                        }
                    ),
                    yellow,
                ));
            }
            let preceded = &interface.tcx_preceded_by;
            if !preceded.ingress.is_empty() || !preceded.egress.is_empty() {
                let ids: Vec<String> = preceded
                    .ingress
                    .iter()
                    .chain(&preceded.egress)
                    .map(u32::to_string)
                    .collect();
                lines.push((
                    format!(
                        "{name}: {} program(s) {} now run before localnet-probe: frames they \
                         pass on are not seen",
                        interface.hook.unwrap_or("tc"),
                        ids.join(", ")
                    ),
                    yellow,
                ));
            }
        }
        if let Some(report) = &self.report {
            for refused in &report.refused {
                lines.push((
                    format!(
                        "NOT SERVED {}: {}; neither counted nor filtered (tried again as \
                         interfaces change)",
                        refused.name, refused.reason
                    ),
                    red,
                ));
            }
        }
        let highlight = Style::new().add_modifier(Modifier::REVERSED);
        // The newest change first: it is the state now.
        for alert in self.alerts.iter().rev() {
            lines.push((alert.clone(), highlight));
        }
        for (line, _) in self.removed.values() {
            lines.push((line.clone(), Style::new()));
        }
        lines
    }

    pub(super) fn draw_warnings(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        warnings: &[(String, Style)],
    ) {
        let rows = usize::from(area.height);
        let mut lines: Vec<Line<'_>> = warnings
            .iter()
            .take(rows)
            // Names are in these lines as they are: here they are made printable.
            .map(|(text, style)| Line::styled(fit(&printable(text), area.width), *style))
            .collect();
        if warnings.len() > rows
            && let Some(last) = lines.last_mut()
        {
            let more = warnings.len() - rows + 1;
            *last = Line::styled(
                fit(
                    &format!("… and {more} more warnings (l shows the logs)"),
                    area.width,
                ),
                Style::new().add_modifier(Modifier::BOLD),
            );
        }
        frame.render_widget(Paragraph::new(lines), area);
    }
}
