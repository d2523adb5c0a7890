//! `localnet-probe audit`: which services bound to loopback each link can reach, read from the
//! sysctls, the sockets and what drops such frames, without attaching anything.

use std::{
    ffi::OsString,
    fmt::Write as _,
    io::{self, IsTerminal as _, Write as _},
    os::unix::ffi::OsStrExt as _,
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use clap::Args;
use clap_complete::ArgValueCandidates;
use probe_user::{
    exposure::{self, Audit, Inputs, Setting, Severity, verdict::Verdict},
    net::names::{NamePatterns, name_of_bytes, printable},
    output::json_line,
};
use serde::Serialize;

#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// Write one JSON object even on a terminal (the default when stdout is not one).
    #[arg(long)]
    json: bool,
    /// Audit this interface only (repeatable; a name or a shell-style pattern such as 'veth*').
    /// Default: every interface but loopback.
    #[arg(long = "iface", value_name = "IF|PATTERN",
          add = ArgValueCandidates::new(crate::args::interface_candidates))]
    ifaces: Vec<OsString>,
    #[command(flatten)]
    cri: crate::args::CriArgs,
}

#[derive(Serialize)]
struct AuditReport<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: f64,
    exposed: bool,
    /// Some interface's verdict is `exploited`.
    exploited: bool,
    #[serde(flatten)]
    audit: &'a Audit,
}

/// Audits this network namespace; `Ok(true)` when an exposure was found.
pub(crate) fn audit(args: &AuditArgs) -> anyhow::Result<bool> {
    let only = if args.ifaces.is_empty() {
        None
    } else {
        let patterns = NamePatterns::new(&args.ifaces, "--iface")?;
        Some(patterns)
    };
    let inputs = Inputs::read(&args.cri.client())?;
    if let Some(only) = &only
        && let Some(unknown) =
            only.unknown_literal(inputs.interfaces.iter().map(|i| i.name.as_str()))
    {
        anyhow::bail!(
            "no interface \"{}\" in this network namespace",
            printable(unknown)
        );
    }
    let audit = exposure::audit(&inputs, only.as_ref());
    if only.is_some() && audit.interfaces.is_empty() {
        // A check of nothing must not pass as a clean one.
        anyhow::bail!(
            "--iface {} matches no interface to audit here (loopback is not audited: \
             loopback addresses belong there)",
            printable(
                &args
                    .ifaces
                    .iter()
                    .map(|iface| name_of_bytes(iface.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(" --iface ")
            )
        );
    }
    let view = if args.json || !io::stdout().is_terminal() {
        json_line(&AuditReport {
            kind: "audit",
            timestamp: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |since| since.as_secs_f64()),
            exposed: audit.exposed(),
            exploited: audit.exploited(),
            audit: &audit,
        })
    } else {
        render(&audit).into_bytes()
    };
    let mut stdout = io::stdout().lock();
    match stdout.write_all(&view).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
            Err(error).context("cannot write to stdout")
        }
        _ => Ok(audit.exposed()),
    }
}

fn setting(setting: Option<Setting>) -> String {
    setting.map_or_else(|| "-".to_owned(), |setting| setting.effective.to_string())
}

/// The report for a terminal.
fn render(audit: &Audit) -> String {
    let exposures = audit
        .findings
        .iter()
        .filter(|finding| finding.severity == Severity::Exposure)
        .count();
    let exploited = audit
        .interfaces
        .iter()
        .filter(|interface| interface.verdict == Verdict::Exploited)
        .count();
    let exploited = if exploited == 0 {
        String::new()
    } else {
        format!(" ({exploited} interface(s) exploited)")
    };
    let mut out = format!(
        "localnet-probe audit: {} interface(s), {} loopback socket(s), {exposures} \
         exposure(s){exploited}; conf.all route_localnet={} rp_filter={} accept_local={}, \
         conf.default route_localnet={}\n\n",
        audit.interfaces.len(),
        audit.sockets.len(),
        u8::from(audit.all.route_localnet),
        audit.all.rp_filter,
        audit.all.accept_local,
        u8::from(audit.default.route_localnet),
    );
    let mut rows = vec![[
        "INTERFACE".to_owned(),
        "ROUTE_LOCALNET".to_owned(),
        "RP_FILTER".to_owned(),
        "ACCEPT_LOCAL".to_owned(),
        "LOG_MARTIANS".to_owned(),
        "ARP_IGNORE/ANNOUNCE".to_owned(),
        "LOCALNET-PROBE".to_owned(),
        "REPLIES".to_owned(),
        "VERDICT".to_owned(),
    ]];
    for interface in &audit.interfaces {
        let route_localnet = interface.route_localnet.map_or_else(
            || "- (no IPv4)".to_owned(),
            |value| {
                let mut text = format!(
                    "{} (all={} if={})",
                    u8::from(value.effective),
                    u8::from(value.all),
                    u8::from(value.iface)
                );
                if interface
                    .route_localnet_via
                    .iter()
                    .any(|via| *via != interface.name)
                {
                    let _ = write!(text, " via {}", interface.route_localnet_via.join(","));
                }
                text
            },
        );
        let probe = match (
            &interface.localnet_probe,
            interface.other_xdp_program,
            interface.unidentified_xdp_program,
        ) {
            (Some(probe), other, _) => {
                let mut text = format!(
                    "{} {}{} ({})",
                    probe.mode.unwrap_or("mode unknown"),
                    probe.hook,
                    probe
                        .xdp_mode
                        .map(|mode| format!(" {mode}"))
                        .unwrap_or_default(),
                    probe.how
                );
                if let Some(id) = other {
                    let _ = write!(text, " beside XDP program {id}");
                }
                if !probe.preceded_by.is_empty() {
                    let ids: Vec<String> = probe.preceded_by.iter().map(u32::to_string).collect();
                    let _ = write!(text, " after tcx program {}", ids.join(", "));
                }
                text
            }
            (None, Some(id), _) => format!("no (XDP program {id})"),
            (None, None, Some(id)) => format!("? (XDP program {id}; root tells whose)"),
            (None, None, None) => match interface.unidentified_tcx_programs.as_slice() {
                [] => "no".to_owned(),
                ids => format!(
                    "? (tcx program {}; root tells whose)",
                    ids.iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        let replies = match (interface.replies_seen, &interface.replies_unknown) {
            (Some(replies), _) => replies.to_string(),
            (None, Some(_)) => "?".to_owned(),
            (None, None) => "-".to_owned(),
        };
        rows.push([
            printable(&interface.name).into_owned(),
            printable(&route_localnet).into_owned(),
            setting(interface.rp_filter),
            setting(interface.accept_local),
            setting(interface.log_martians),
            format!(
                "{}/{}",
                setting(interface.arp_ignore),
                setting(interface.arp_announce)
            ),
            probe,
            replies,
            serde_json::to_value(interface.verdict)
                .ok()
                .and_then(|value| value.as_str().map(str::to_uppercase))
                .unwrap_or_default(),
        ]);
    }
    out.push_str(&columns(&rows));
    out.push_str("\nLOOPBACK SOCKETS\n");
    if audit.sockets.is_empty() {
        out.push_str("none\n");
    }
    for socket in &audit.sockets {
        let _ = writeln!(out, "{}", printable(&exposure::describe(socket)));
    }
    if !audit.saw_every_process {
        out.push_str("(some processes could not be inspected: run as root to name every owner)\n");
    }
    if let Some(why) = &audit.nft_unreadable {
        let _ = writeln!(
            out,
            "\nnftables ruleset could not be read: {}",
            printable(why)
        );
    }
    if let Some(why) = &audit.tcx_unqueried {
        let _ = writeln!(
            out,
            "\ntcx hooks could not be queried: {why}; localnet-probe there, and the replies it \
             counts, are not seen"
        );
    }
    let unread: Vec<String> = audit
        .interfaces
        .iter()
        .filter_map(|interface| {
            let why = interface.replies_unknown.as_ref()?;
            Some(printable(&format!("{}: {why}", interface.name)).into_owned())
        })
        .collect();
    if !unread.is_empty() {
        let _ = writeln!(
            out,
            "\nreplies counted by localnet-probe could not be read ({})",
            unread.join("; ")
        );
    }
    out.push_str("\nFINDINGS\n");
    if audit.findings.is_empty() {
        out.push_str("none: route_localnet is in effect on no audited interface\n");
    }
    for finding in &audit.findings {
        let severity = match finding.severity {
            Severity::Exposure => "EXPOSURE",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        };
        let on = finding
            .interface
            .as_ref()
            .map(|name| format!(" {}", printable(name)))
            .unwrap_or_default();
        let _ = writeln!(out, "{severity}{on}: {}", printable(&finding.message));
        for remedy in &finding.remedies {
            let _ = writeln!(out, "  - {}", printable(remedy));
        }
    }
    out
}

/// Left-aligned columns two spaces apart.
fn columns(rows: &[[String; 9]]) -> String {
    let mut widths = [0; 9];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}
