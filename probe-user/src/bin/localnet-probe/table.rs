//! The live view on a terminal: a line per interface, the last route_localnet changes
//! highlighted, and a warning per exploited or exposed interface.

use std::{collections::VecDeque, fmt::Write as _};

use probe_common::Mode;
use probe_user::{
    exposure::{StandingInterface, pin_switching},
    net::names::{name_argument, printable},
    net::route_localnet::RouteLocalnet,
    output::report::{InterfaceReport, Report, SenderReport},
    output::senders::WINDOW,
    session::UnservedInterface,
};

use crate::text::{human_bytes, stacked_via};

const HEADERS: [&str; 11] = [
    "INTERFACE",
    "HOOK",
    "MODE",
    "ROUTE_LOCALNET",
    "MATCHED",
    "BYTES",
    "RATE",
    "DROPPED",
    "REPLIED",
    "SAMPLES",
    "BREAKDOWN",
];

/// Bold, in reverse video, until [`PLAIN`]: the view is only drawn on a terminal.
const HIGHLIGHT: &str = "\x1b[1;7m";
const PLAIN: &str = "\x1b[0m";

/// The view, headed by `state` (what the probe does now), with the `alerts` (route_localnet
/// changes, highlighted) and as many of the newest `events` as fit a terminal of `size` (rows,
/// columns), each cut to its width; all of them when the size is not known.
pub(crate) fn render(
    report: &Report,
    state: &str,
    events: &[String],
    alerts: &VecDeque<String>,
    size: Option<(usize, usize)>,
) -> String {
    // Interface names are bytes anyone with CAP_NET_ADMIN chose: each goes through `printable`
    // where it is shown, and only there, so names are compared as they are.
    let rows: Vec<[String; 11]> = report.interfaces.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    let state = format!("{state}; SAMPLES: sent/over the rate/lost");
    let _ = writeln!(
        out,
        "localnet-probe: {} interface(s), {:.0} s attached, {state}",
        report.interfaces.len(),
        report.elapsed_secs,
    );
    out.push('\n');
    let line_of = |cells: &[String]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        line.trim_end().to_owned()
    };
    let _ = writeln!(out, "{}", line_of(&HEADERS.map(String::from)));
    for (row, interface) in rows.iter().zip(&report.interfaces) {
        let _ = writeln!(out, "{}", line_of(row));
        if let Some(workload) = &interface.workload {
            // Its text comes from /proc and /run/netns, which anyone may name.
            let _ = writeln!(out, "  └ workload: {}", printable(&workload.summary()));
        }
        for child in &interface.children {
            let _ = writeln!(out, "  └ {}", printable(&child.summary()));
        }
    }
    if !alerts.is_empty() {
        out.push_str("\nROUTE_LOCALNET CHANGES (newest last)\n");
    }
    for alert in alerts {
        let _ = writeln!(out, "{HIGHLIGHT}{alert}{PLAIN}");
    }

    let exploited: Vec<&InterfaceReport> =
        report.interfaces.iter().filter(|i| i.exploited).collect();
    let exposed: Vec<&InterfaceReport> = report.interfaces.iter().filter(|i| i.exposed).collect();
    if !exploited.is_empty() || !exposed.is_empty() || !report.refused.is_empty() {
        out.push('\n');
    }
    for interface in exploited {
        let _ = writeln!(
            out,
            "{HIGHLIGHT}EXPLOITED {}{PLAIN}",
            exploitation_warning(interface)
        );
    }
    for interface in exposed {
        let _ = writeln!(out, "WARNING {}", exposure_warning(interface));
    }
    // A running probe tries them again; `status` only reads what is pinned.
    let retried = if report.kind == "status" {
        ""
    } else {
        " (tried again as interfaces change)"
    };
    for refused in &report.refused {
        let _ = writeln!(
            out,
            "NOT SERVED {}: {}; neither counted nor filtered{retried}",
            printable(&refused.name),
            refused.reason
        );
    }

    if !report.removed.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            if report.standing_filter.is_some() {
                "GONE (pinned, the interface no longer here; `localnet-probe detach` clears them)"
            } else {
                "REMOVED since the last view"
            }
        );
    }
    for removed in &report.removed {
        let _ = writeln!(
            out,
            "{} (ifindex {}): {}",
            printable(&removed.name),
            removed.ifindex,
            removed.totals
        );
        if let Some(workload) = &removed.workload {
            let _ = writeln!(out, "  └ workload: {}", printable(&workload.summary()));
        }
    }

    let senders: Vec<(&InterfaceReport, &[SenderReport])> = report
        .interfaces
        .iter()
        .filter_map(|i| Some((i, i.top_senders_sampled.as_deref()?)))
        .filter(|(_, senders)| !senders.is_empty())
        .collect();
    if !senders.is_empty() {
        let _ = writeln!(out, "\nTOP SENDERS (sampled, last {} s)", WINDOW.as_secs());
    }
    for (interface, senders) in senders {
        let list: Vec<String> = senders.iter().map(SenderReport::describe).collect();
        let behind = interface
            .workload
            .as_ref()
            .map_or_else(String::new, |workload| {
                format!(" ({})", printable(&workload.summary()))
            });
        let _ = writeln!(
            out,
            "{}{behind}: {}",
            printable(&interface.name),
            list.join(", ")
        );
    }
    if events.is_empty() {
        return out;
    }
    let shown = match size {
        None => events.len(),
        Some((rows, columns)) => {
            let used: usize = out
                .lines()
                .map(|line| {
                    let shown = line.replace(HIGHLIGHT, "").replace(PLAIN, "");
                    shown.chars().count().max(1).div_ceil(columns.max(1))
                })
                .sum();
            // The pane's blank line and title, and the cursor's line.
            rows.saturating_sub(used + 3).min(events.len())
        }
    };
    if shown == 0 {
        return out;
    }
    out.push_str("\nEVENTS (sampled, newest last)\n");
    for line in events.iter().skip(events.len() - shown) {
        match size {
            Some((_, columns)) if line.chars().count() > columns => {
                out.extend(line.chars().take(columns.saturating_sub(1)));
                out.push('…');
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// `view` drawn over the previous one, from the top of a cleared screen.
pub(crate) fn redraw(view: &str) -> Vec<u8> {
    format!("\x1b[H\x1b[2J{view}").into()
}

/// The terminal's rows and columns, when stdout is one.
pub(crate) fn terminal_size() -> Option<(usize, usize)> {
    // SAFETY: TIOCGWINSZ fills a winsize for a terminal or fails.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &raw mut size) } == 0;
    (ok && size.ws_row > 0 && size.ws_col > 0)
        .then(|| (usize::from(size.ws_row), usize::from(size.ws_col)))
}

/// One sentence on an exploited interface: what left it, what that means, and what to do.
pub(crate) fn exploitation_warning(interface: &InterfaceReport) -> String {
    let name = printable(&interface.name);
    let argument = name_argument(&interface.name);
    let block = if interface.mode == "drop" {
        "drop mode now blocks the requests".to_owned()
    } else if interface.hook.is_some() && interface.xdp_mode.is_none() {
        format!("--drop-on {argument} --on-conflict tc blocks the requests")
    } else {
        format!("--drop-on {argument} blocks the requests")
    };
    format!(
        "{name}: {} frame(s) with a loopback source left this interface: {} ({block}; \
         `localnet-probe audit` names the exposed services)",
        interface.totals.packets_replied,
        interface.who_answered()
    )
}

/// One sentence on an interface where other programs run before the probe's at tc (tcx, or
/// a clsact qdisc).
pub(crate) fn precedence_warning(interface: &InterfaceReport) -> String {
    let ids = |ids: &[u32]| {
        ids.iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let preceded = &interface.tcx_preceded_by;
    let mut hooks = Vec::new();
    if !preceded.ingress.is_empty() {
        hooks.push(format!(
            "at {} ingress program(s) {} (frames they pass to the stack or redirect are \
             neither counted nor dropped)",
            interface.hook.unwrap_or("tc"),
            ids(&preceded.ingress)
        ));
    }
    if !preceded.egress.is_empty() {
        hooks.push(format!(
            "at {} egress program(s) {} (replies they end the chain for are not counted)",
            interface.egress_hook.unwrap_or("tc"),
            ids(&preceded.egress)
        ));
    }
    format!(
        "{}: attached since, {} now run(s) before localnet-probe; it goes first again when \
         attached anew (`localnet-probe detach --iface {}` first, for a standing filter, whose \
         takeover keeps its place)",
        printable(&interface.name),
        hooks.join(", and "),
        name_argument(&interface.name)
    )
}

/// One sentence on an exposed interface: where route_localnet is in effect and the fix.
pub(crate) fn exposure_warning(interface: &InterfaceReport) -> String {
    let raw_name = &interface.name;
    let others = stacked_via(raw_name, &interface.route_localnet_via);
    let own = interface.route_localnet_via.contains(raw_name);
    let name = printable(raw_name);
    let others = printable(&others.join(", ")).into_owned();
    let argument = name_argument(raw_name);
    let all = interface.route_localnet.is_some_and(|r| r.all);
    let cause = match (all, own, others.is_empty()) {
        (true, _, _) => " (net.ipv4.conf.all.route_localnet=1)".to_owned(),
        (false, _, true) => String::new(),
        (false, true, false) => {
            format!(" (on {name} itself, and on {others}, where {name}'s frames also arrive)")
        }
        (false, false, false) => format!(" (on {others}, where {name}'s frames also arrive)"),
    };
    let (state, fix) = if interface.mode == "drop" {
        (
            "drop mode, but other tc programs run first",
            format!("`localnet-probe detach --iface {argument}` and a new run go first again"),
        )
    } else if interface.hook.is_some() && interface.xdp_mode.is_none() {
        (
            "monitor mode",
            format!("--drop-on {argument} --on-conflict tc blocks such frames"),
        )
    } else {
        (
            "monitor mode",
            format!("--drop-on {argument} blocks such frames"),
        )
    };
    format!(
        "{name}: route_localnet=1{cause} and {state}: services bound to 127.0.0.1 on this host \
         are reachable from this link ({fix})"
    )
}

/// The ROUTE_LOCALNET cell: effective value, both settings, the stacked devices where it is in
/// effect, and `!` when the link is exposed.
fn route_localnet_cell(
    name: &str,
    route_localnet: Option<RouteLocalnet>,
    via: &[String],
    exposed: bool,
) -> String {
    let mut cell = match route_localnet {
        Some(r) => format!(
            "{} (all={} if={})",
            u8::from(r.effective),
            u8::from(r.all),
            u8::from(r.iface)
        ),
        None => "n/a".to_owned(),
    };
    let stacked = stacked_via(name, via);
    if !stacked.is_empty() {
        let _ = write!(cell, " via {}", printable(&stacked.join(",")));
    }
    if exposed {
        cell.push_str(" !");
    }
    cell
}

/// `status` where no standing filter is pinned: each interface's route_localnet.
pub(crate) fn render_unserved(interfaces: &[UnservedInterface], directory: &str) -> String {
    let mut out = format!(
        "localnet-probe: no standing filter in {directory}: nothing of localnet-probe's stays \
         attached here (`localnet-probe run --pin` leaves one)\n\n"
    );
    let rows: Vec<[String; 3]> = interfaces
        .iter()
        .map(|interface| {
            [
                printable(&interface.name).into_owned(),
                interface
                    .xdp_program_id
                    .map_or_else(|| "-".to_owned(), |id| format!("id {id}")),
                route_localnet_cell(
                    &interface.name,
                    interface.route_localnet,
                    &interface.route_localnet_via,
                    interface.exposed,
                ),
            ]
        })
        .collect();
    let headers = ["INTERFACE", "XDP PROGRAM", "ROUTE_LOCALNET"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(headers.map(String::from)).chain(rows) {
        let _ = writeln!(
            out,
            "{:<w0$}  {:<w1$}  {}",
            row[0],
            row[1],
            row[2],
            w0 = widths[0],
            w1 = widths[1]
        );
    }
    let exposed: Vec<&str> = interfaces
        .iter()
        .filter(|interface| interface.exposed)
        .map(|interface| interface.name.as_str())
        .collect();
    if let Some(command) = pin_dropping_on(&exposed) {
        let _ = writeln!(
            out,
            "\nWARNING: route_localnet=1 where frames of {} arrive: services bound to 127.0.0.1 \
             are reachable from those links (`{command}` blocks such frames)",
            printable(&exposed.join(", "))
        );
    }
    out
}

/// The `run --pin` that drops on every interface of `exposed`, where no standing filter is
/// pinned: all in one command, each named with --iface too (`--drop-on` alone drops only on
/// interfaces selected without it), since a second `run --pin` would take the first one's
/// filter over with a selection of its own.
pub(crate) fn pin_dropping_on(exposed: &[&str]) -> Option<String> {
    let first = exposed.first()?;
    let dropping: Vec<StandingInterface> = exposed
        .iter()
        .map(|name| StandingInterface {
            name: (*name).to_owned(),
            mode: Mode::Drop,
            egress: false,
        })
        .collect();
    Some(pin_switching(&dropping, first, Mode::Drop, &[]))
}

/// The standing filter a `status` report shows, as a `run --pin` taking it over must give it
/// again: every interface in its mode, with its replies counted or not.
pub(crate) fn standing_of(report: &Report) -> Vec<StandingInterface> {
    report
        .interfaces
        .iter()
        .map(|interface| StandingInterface {
            name: interface.name.clone(),
            mode: if interface.mode == Mode::Drop.name() {
                Mode::Drop
            } else {
                Mode::Monitor
            },
            egress: interface.egress,
        })
        .collect()
}

fn row(interface: &InterfaceReport) -> [String; 11] {
    let mut route_localnet = route_localnet_cell(
        &interface.name,
        interface.route_localnet,
        &interface.route_localnet_via,
        interface.exposed,
    );
    if interface.exploited {
        route_localnet.push_str(" EXPLOITED");
    }
    let breakdown = interface
        .by_class
        .iter()
        .map(|class| {
            format!(
                "{}/{}/{} {}",
                class.family, class.address, class.action, class.packets
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    [
        printable(&interface.name).into_owned(),
        match (interface.hook, interface.xdp_mode) {
            (Some(_), Some(xdp_mode)) => xdp_mode.to_owned(),
            (Some(hook), None) if !interface.tcx_preceded_by.ingress.is_empty() => {
                format!("{hook} (not first)")
            }
            (Some(hook), None) => hook.to_owned(),
            (None, _) => "-".to_owned(),
        },
        interface.mode.to_owned(),
        route_localnet,
        interface.totals.packets_matched.to_string(),
        human_bytes(interface.totals.bytes_matched),
        format!("{:.0} pkt/s", interface.packets_matched_per_sec),
        interface.totals.packets_dropped.to_string(),
        if interface.egress || interface.totals.packets_replied > 0 {
            interface.totals.packets_replied.to_string()
        } else {
            "off".to_owned()
        },
        interface.samples.map_or_else(
            || "off".to_owned(),
            |samples| {
                format!(
                    "{}/{}/{}",
                    samples.emitted, samples.suppressed, samples.lost
                )
            },
        ),
        if breakdown.is_empty() {
            "-".to_owned()
        } else {
            breakdown
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_pane_fits_the_terminal() {
        let report = Report {
            kind: "counters",
            timestamp: 0.0,
            elapsed_secs: 1.0,
            is_final: false,
            full: true,
            served: 0,
            interfaces: Vec::new(),
            attached: Vec::new(),
            removed: Vec::new(),
            refused: Vec::new(),
            totals: Default::default(),
            standing_filter: None,
        };
        let events: Vec<String> = (0..10)
            .map(|n| format!("event {n} {}", "x".repeat(60)))
            .collect();
        let none = VecDeque::new();
        let all = render(&report, "refresh 1 s", &events, &none, None);
        assert_eq!(all.lines().filter(|l| l.starts_with("event")).count(), 10);

        let small = render(&report, "refresh 1 s", &events, &none, Some((16, 40)));
        let rows: usize = small
            .lines()
            .map(|line| line.chars().count().max(1).div_ceil(40))
            .sum();
        assert!(rows < 16, "{rows} rows:\n{small}");
        let shown: Vec<&str> = small.lines().filter(|l| l.starts_with("event")).collect();
        assert!(!shown.is_empty());
        // The newest, each cut to the width.
        let newest: Vec<String> = events
            .iter()
            .skip(events.len() - shown.len())
            .map(|event| format!("{}…", &event[..39]))
            .collect();
        assert_eq!(shown, newest);
        assert!(!render(&report, "refresh 1 s", &events, &none, Some((5, 40))).contains("EVENTS"));

        // Highlighted alerts take rows, not the columns of their escapes.
        let alerts: VecDeque<String> = ["a".repeat(39), "b".repeat(39)].into();
        let with_alerts = render(&report, "refresh 1 s", &events, &alerts, Some((16, 40)));
        assert!(with_alerts.contains(&format!("\n{HIGHLIGHT}{}{PLAIN}\n", "b".repeat(39))));
        let shown_with_alerts = with_alerts
            .lines()
            .filter(|l| l.starts_with("event"))
            .count();
        // A blank line, the title and two alerts.
        assert_eq!(shown_with_alerts, shown.len() - 4, "{with_alerts}");
    }

    #[test]
    fn with_nothing_pinned_the_warning_drops_on_every_exposed_interface_at_once() {
        let interface = |name: &str, exposed| UnservedInterface {
            name: name.to_owned(),
            ifindex: 2,
            xdp_program_id: None,
            route_localnet: Some(RouteLocalnet::new(false, exposed)),
            route_localnet_via: if exposed {
                vec![name.to_owned()]
            } else {
                Vec::new()
            },
            exposed,
        };
        let table = render_unserved(
            &[
                interface("va", true),
                interface("eth0", false),
                interface("v b", true),
            ],
            "/sys/fs/bpf/localnet-probe/net-1",
        );
        assert!(
            table.contains(
                "(`localnet-probe run --pin --iface va --iface 'v b' --drop-on 'v b' --drop-on \
                 va` blocks such frames)"
            ),
            "{table}"
        );
    }

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
