//! The live view on a terminal: a line per interface and a warning per exposed interface.

use std::{collections::VecDeque, fmt::Write as _};

use probe_user::{
    report::{InterfaceReport, Report},
    senders::WINDOW,
};

const HEADERS: [&str; 10] = [
    "INTERFACE",
    "XDP",
    "MODE",
    "ROUTE_LOCALNET",
    "MATCHED",
    "BYTES",
    "RATE",
    "DROPPED",
    "SAMPLES",
    "BREAKDOWN",
];

pub(crate) fn render(report: &Report, interval_secs: f64, events: &VecDeque<String>) -> String {
    let rows: Vec<[String; 10]> = report.interfaces.iter().map(row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    let state = if report.is_final {
        "detached".to_owned()
    } else {
        format!("refresh {interval_secs} s, Ctrl-C to detach")
    };
    let state = format!("{state}; SAMPLES: sent/over the rate/lost");
    let _ = writeln!(
        out,
        "localnet-probe: {} interface(s), {:.0} s attached, {state}",
        report.interfaces.len(),
        report.elapsed_secs,
    );
    out.push('\n');
    let mut push_row = |cells: &[String]| {
        let mut line = String::new();
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index + 1 == cells.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(&HEADERS.map(String::from));
    for row in &rows {
        push_row(row);
    }

    let exposed: Vec<&InterfaceReport> = report.interfaces.iter().filter(|i| i.exposed).collect();
    if !exposed.is_empty() {
        out.push('\n');
    }
    for interface in exposed {
        let _ = writeln!(out, "WARNING {}", exposure_warning(interface));
    }

    let senders: Vec<&InterfaceReport> = report
        .interfaces
        .iter()
        .filter(|i| !i.top_senders_sampled.is_empty())
        .collect();
    if !senders.is_empty() {
        let _ = writeln!(out, "\nTOP SENDERS (sampled, last {} s)", WINDOW.as_secs());
    }
    for interface in senders {
        let list: Vec<String> = interface
            .top_senders_sampled
            .iter()
            .map(|sender| {
                let ip = sender
                    .source_ip
                    .map_or_else(|| "?".to_owned(), |ip| ip.to_string());
                match &sender.source_mac {
                    Some(mac) => format!("{mac} {ip} ({})", sender.samples),
                    None => format!("{ip} ({})", sender.samples),
                }
            })
            .collect();
        let _ = writeln!(out, "{}: {}", interface.name, list.join(", "));
    }
    if !events.is_empty() {
        out.push_str("\nEVENTS (sampled, newest last)\n");
        for line in events {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// One sentence on an exposed interface: where route_localnet is in effect and the fix.
pub(crate) fn exposure_warning(interface: &InterfaceReport) -> String {
    let name = &interface.name;
    let all = interface.route_localnet.is_some_and(|r| r.all);
    let others: Vec<&str> = interface
        .route_localnet_via
        .iter()
        .filter(|via| *via != name)
        .map(String::as_str)
        .collect();
    let own = interface.route_localnet_via.contains(name);
    let cause = match (all, own, others.is_empty()) {
        (true, _, _) => " (net.ipv4.conf.all.route_localnet=1)".to_owned(),
        (false, _, true) => String::new(),
        (false, true, false) => format!(
            " (on {name} itself, and on {}, where {name}'s frames also arrive)",
            others.join(", ")
        ),
        (false, false, false) => format!(
            " (on {}, where {name}'s frames also arrive)",
            others.join(", ")
        ),
    };
    format!(
        "{name}: route_localnet=1{cause} and monitor mode: services bound to 127.0.0.1 on this \
         host are reachable from this link (--drop-on {name} blocks such frames)"
    )
}

fn row(interface: &InterfaceReport) -> [String; 10] {
    let mut route_localnet = match interface.route_localnet {
        Some(r) => format!(
            "{} (all={} if={})",
            u8::from(r.effective),
            u8::from(r.all),
            u8::from(r.iface)
        ),
        None => "n/a".to_owned(),
    };
    let stacked: Vec<&str> = interface
        .route_localnet_via
        .iter()
        .filter(|via| **via != interface.name)
        .map(String::as_str)
        .collect();
    if !stacked.is_empty() {
        let _ = write!(route_localnet, " via {}", stacked.join(","));
    }
    if interface.exposed {
        route_localnet.push_str(" !");
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
        interface.name.clone(),
        interface.xdp_mode.unwrap_or("-").to_owned(),
        interface.mode.to_owned(),
        route_localnet,
        interface.totals.packets_matched.to_string(),
        human_bytes(interface.totals.bytes_matched),
        format!("{:.0} pkt/s", interface.packets_matched_per_sec),
        interface.totals.packets_dropped.to_string(),
        format!(
            "{}/{}/{}",
            interface.samples.emitted, interface.samples.suppressed, interface.samples.lost
        ),
        if breakdown.is_empty() {
            "-".to_owned()
        } else {
            breakdown
        },
    ]
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
    }
}
