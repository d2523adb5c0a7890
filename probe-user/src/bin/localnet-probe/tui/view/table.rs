//! The table of interfaces and their classes, and of route_localnet alone where nothing is
//! served.

use super::*;

impl LiveView {
    pub(super) fn draw_table(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        interfaces: &[&InterfaceReport],
    ) {
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
        // The selected interface's workload, on a row left blank for it: a line across the
        // table's width, not cut to the name column.
        let mut workload_lines = Vec::new();
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
                for text in behind_lines(interface, usize::from(area.height)) {
                    workload_lines.push((rows.len(), text));
                    rows.push(Row::new(Vec::<Cell<'static>>::new()));
                }
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
        for (row, text) in workload_lines {
            if !(offset..offset + visible).contains(&row) {
                continue;
            }
            let line = Rect {
                y: area.y + 1 + (row - offset) as u16,
                height: 1,
                ..area
            };
            frame.render_widget(
                Paragraph::new(Line::styled(
                    fit(&text, line.width),
                    Style::new().fg(Color::Cyan),
                )),
                line,
            );
        }
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
                let mark = if interface.exploited {
                    "!!"
                } else if interface.exposed {
                    "!"
                } else {
                    ""
                };
                localnet_cell(
                    &interface.name,
                    interface.route_localnet,
                    &interface.route_localnet_via,
                    mark,
                    width,
                )
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
        let localnet = localnet_cell(
            &interface.name,
            interface.route_localnet,
            &interface.route_localnet_via,
            if interface.exposed { "!" } else { "" },
            widths[2],
        );
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

/// The LOCALNET cell as `width` allows: the effective value (with both settings when there is
/// room), the stacked devices it is in effect through (named when they fit), and `mark`.
fn localnet_cell(
    name: &str,
    route_localnet: Option<RouteLocalnet>,
    via: &[String],
    mark: &str,
    width: u16,
) -> String {
    let mut text = match route_localnet {
        Some(r) if width >= 15 => format!(
            "{} all={} if={}",
            u8::from(r.effective),
            u8::from(r.all),
            u8::from(r.iface)
        ),
        Some(r) => u8::from(r.effective).to_string(),
        None => "n/a".to_owned(),
    };
    let stacked = crate::text::stacked_via(name, via);
    if !stacked.is_empty() {
        let named = format!(" via {}", printable(&stacked.join(",")));
        let marked = if mark.is_empty() { 0 } else { mark.len() + 1 };
        if text.chars().count() + named.chars().count() + marked <= usize::from(width) {
            text.push_str(&named);
        } else {
            text.push_str(" via");
        }
    }
    if !mark.is_empty() {
        text.push(' ');
        text.push_str(mark);
    }
    text
}

fn cell(text: &str, width: u16, right_aligned: bool) -> Cell<'static> {
    let line = Line::raw(fit(text, width));
    Cell::from(if right_aligned {
        line.right_aligned()
    } else {
        line
    })
}

/// The lines under the selected interface that say who is behind it: its workload, then its
/// children, as many as leave its classes in view in a table `height` rows high, and a line
/// counting the rest (none where the classes alone fill it). Their text comes from /proc,
/// /run/netns and the CRI, which anyone may name, so it is escaped.
pub(super) fn behind_lines(interface: &InterfaceReport, height: usize) -> Vec<String> {
    let mut lines: Vec<String> = interface
        .workload
        .iter()
        .map(|workload| format!("└ workload: {}", printable(&workload.summary())))
        .collect();
    // The header, the interface's own row, its workload and its classes stay in view.
    let room = height.saturating_sub(2 + lines.len() + interface.by_class.len().max(1));
    let children = &interface.children;
    let shown = if children.len() > room {
        room.saturating_sub(1)
    } else {
        children.len()
    };
    lines.extend(
        children[..shown]
            .iter()
            .map(|child| format!("└ {}", printable(&child.summary()))),
    );
    if shown < children.len() && room > 0 {
        lines.push(format!(
            "└ … {} more children (the JSON and --plain list them all)",
            children.len() - shown
        ));
    }
    lines
}
