//! What `run` shows each interval: one JSON object, or a table on a terminal.

use std::fmt::Write as _;

use probe_common::{Action, Mode};
use serde::Serialize;

use crate::{probe::InterfaceCounters, route_localnet::RouteLocalnet};

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Unix time of the reading, in seconds.
    pub timestamp: f64,
    /// Seconds since the probe attached.
    pub elapsed_secs: f64,
    /// True for the last report, written as the probe detaches.
    #[serde(rename = "final")]
    pub is_final: bool,
    pub interfaces: Vec<InterfaceReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct InterfaceReport {
    pub name: String,
    pub ifindex: u32,
    pub mode: &'static str,
    pub xdp_mode: &'static str,
    /// `null` when the interface has no IPv4 configuration to read.
    pub route_localnet: Option<RouteLocalnet>,
    /// route_localnet is in effect and matched frames pass: loopback-bound services on this host
    /// are reachable from this link.
    pub exposed: bool,
    pub packets_matched: u64,
    pub bytes_matched: u64,
    pub packets_dropped: u64,
    pub bytes_dropped: u64,
    /// Matched packets per second over the last interval.
    pub packets_matched_per_sec: f64,
    pub bytes_matched_per_sec: f64,
    /// Non-zero classes only.
    pub by_class: Vec<ClassReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClassReport {
    pub family: &'static str,
    pub address: &'static str,
    pub action: &'static str,
    pub packets: u64,
    pub bytes: u64,
}

/// One interface's reading, with the previous one to derive rates from.
pub struct InterfaceReading<'a> {
    pub name: &'a str,
    pub ifindex: u32,
    pub mode: Mode,
    pub xdp_mode: &'static str,
    pub route_localnet: Option<RouteLocalnet>,
    pub counters: &'a InterfaceCounters,
    pub previous: Option<&'a InterfaceCounters>,
    pub seconds_since_previous: f64,
}

impl InterfaceReport {
    pub fn new(reading: InterfaceReading<'_>) -> Self {
        let matched = reading.counters.total(None);
        let dropped = reading.counters.total(Some(Action::Dropped));
        let (packets_rate, bytes_rate) = match reading.previous {
            Some(previous) if reading.seconds_since_previous > 0.0 => {
                let before = previous.total(None);
                (
                    matched.packets.saturating_sub(before.packets) as f64
                        / reading.seconds_since_previous,
                    matched.bytes.saturating_sub(before.bytes) as f64
                        / reading.seconds_since_previous,
                )
            }
            _ => (0.0, 0.0),
        };
        Self {
            name: reading.name.to_owned(),
            ifindex: reading.ifindex,
            mode: reading.mode.name(),
            xdp_mode: reading.xdp_mode,
            exposed: reading.mode == Mode::Monitor
                && reading.route_localnet.is_some_and(|r| r.effective),
            route_localnet: reading.route_localnet,
            packets_matched: matched.packets,
            bytes_matched: matched.bytes,
            packets_dropped: dropped.packets,
            bytes_dropped: dropped.bytes,
            packets_matched_per_sec: packets_rate,
            bytes_matched_per_sec: bytes_rate,
            by_class: reading
                .counters
                .classes()
                .map(|(matched, action, counter)| ClassReport {
                    family: matched.family.name(),
                    address: matched.address.name(),
                    action: action.name(),
                    packets: counter.packets,
                    bytes: counter.bytes,
                })
                .collect(),
        }
    }
}

const HEADERS: [&str; 9] = [
    "INTERFACE",
    "XDP",
    "MODE",
    "ROUTE_LOCALNET",
    "MATCHED",
    "BYTES",
    "RATE",
    "DROPPED",
    "BREAKDOWN",
];

/// The live view: a table with a line per interface and a warning per exposed interface.
pub fn render_table(report: &Report, interval_secs: f64) -> String {
    let rows: Vec<[String; 9]> = report.interfaces.iter().map(table_row).collect();
    let mut widths = HEADERS.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "localnet-probe: {} interface(s), {:.0} s attached, refresh {interval_secs} s, Ctrl-C to detach",
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
        let _ = writeln!(
            out,
            "WARNING {}: route_localnet=1 and monitor mode: services bound to 127.0.0.1 on this \
             host are reachable from this link (--drop-on {} blocks such frames)",
            interface.name, interface.name
        );
    }
    out
}

fn table_row(interface: &InterfaceReport) -> [String; 9] {
    let route_localnet = match interface.route_localnet {
        Some(r) => format!(
            "{} (all={} if={})",
            u8::from(r.effective),
            u8::from(r.all),
            u8::from(r.iface)
        ),
        None => "n/a".to_owned(),
    };
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
        interface.xdp_mode.to_owned(),
        interface.mode.to_owned(),
        if interface.exposed {
            format!("{route_localnet} !")
        } else {
            route_localnet
        },
        interface.packets_matched.to_string(),
        human_bytes(interface.bytes_matched),
        format!("{:.0} pkt/s", interface.packets_matched_per_sec),
        interface.packets_dropped.to_string(),
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
