//! `localnet-probe scan`: captures from elsewhere (tcpdump, a SPAN port, a cloud mirror) read
//! with the classifier the kernel runs; exit status 1 when a loopback-addressed frame is in them.

use std::{
    fmt::Write as _,
    fs::File,
    io::{self, BufWriter, IsTerminal as _, Write as _},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use clap::Args;
use probe_user::{
    capture::{self, FileReport, matched::MatchedWriter, tally::InterfaceReport},
    net::names::printable,
    output::json_line,
};
use serde::Serialize;

use crate::text::human_bytes;

#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    /// Captures to read: pcap or pcapng, gzip- or zstd-compressed or not (told by their first
    /// bytes), or `-` for stdin.
    #[arg(value_name = "FILE", required = true, value_hint = clap::ValueHint::FilePath)]
    files: Vec<PathBuf>,
    /// Write one JSON document even on a terminal (the default when stdout is not one).
    #[arg(long)]
    json: bool,
    /// Write the matched frames as pcapng to OUT, with their original bytes, timestamps,
    /// link types and interfaces, or to stdout with `-` (then no report goes to stdout).
    #[arg(long, value_name = "OUT", value_hint = clap::ValueHint::FilePath)]
    pcap: Option<PathBuf>,
}

#[derive(Serialize)]
struct ScanReport<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: f64,
    /// Some file holds a frame with a loopback address.
    matched: bool,
    files: &'a [FileReport],
}

/// Scans every file; `Ok(true)` when a loopback-addressed frame was found in one. A file that
/// cannot be read to its end is an error, after the report of what was read.
pub(crate) fn scan(args: &ScanArgs) -> anyhow::Result<bool> {
    let stdin_twice = args
        .files
        .iter()
        .filter(|file| file.as_os_str() == "-")
        .count()
        > 1;
    anyhow::ensure!(!stdin_twice, "stdin (`-`) can be read only once");
    let to_stdout = args
        .pcap
        .as_deref()
        .is_some_and(|out| out.as_os_str() == "-");
    let mut writer = match &args.pcap {
        Some(out) => Some(open_pcap(out, &args.files)?),
        None => None,
    };
    let mut reports = Vec::with_capacity(args.files.len());
    for (index, path) in args.files.iter().enumerate() {
        let file = path.to_string_lossy();
        let mut write_error = None;
        let report = capture::scan(path, |interface, packet, matched| {
            if let Some(writer) = &mut writer
                && write_error.is_none()
                && let Err(error) = writer.write(index, &file, interface, packet, matched)
            {
                write_error = Some(error);
            }
        });
        if let Some(error) = write_error {
            return Err(error).context(format!(
                "cannot write the matched frames to {}",
                printable(
                    &args
                        .pcap
                        .as_deref()
                        .unwrap_or(Path::new("-"))
                        .to_string_lossy()
                )
            ));
        }
        reports.push(report);
    }
    if let Some(writer) = &mut writer {
        writer
            .get_mut()
            .flush()
            .context("cannot write the matched frames")?;
    }
    let matched = reports.iter().any(|report| report.packets_matched > 0);
    if !to_stdout {
        let view = if args.json || !io::stdout().is_terminal() {
            json_line(&ScanReport {
                kind: "scan",
                timestamp: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |since| since.as_secs_f64()),
                matched,
                files: &reports,
            })
        } else {
            render(&reports).into_bytes()
        };
        let mut stdout = io::stdout().lock();
        match stdout.write_all(&view).and_then(|()| stdout.flush()) {
            Err(error) if error.kind() != io::ErrorKind::BrokenPipe => {
                return Err(error).context("cannot write to stdout");
            }
            _ => {}
        }
    }
    let errors: Vec<String> = reports
        .iter()
        .filter_map(|report| {
            let error = report.error.as_ref()?;
            Some(format!("{}: {error}", display_name(&report.file)))
        })
        .collect();
    anyhow::ensure!(errors.is_empty(), "{}", errors.join("; "));
    Ok(matched)
}

type Writer = MatchedWriter<BufWriter<Box<dyn io::Write>>>;

/// Opens `out` for the matched frames, `-` for stdout; never one of the captures being read.
fn open_pcap(out: &Path, files: &[PathBuf]) -> anyhow::Result<Writer> {
    let shown = || printable(&out.to_string_lossy()).into_owned();
    let sink: Box<dyn io::Write> = if out.as_os_str() == "-" {
        anyhow::ensure!(
            !io::stdout().is_terminal(),
            "--pcap - writes pcapng to stdout, which is a terminal: pipe it (`| tcpdump -r -`) \
             or name a file"
        );
        Box::new(io::stdout())
    } else {
        if let Ok(target) = out.metadata() {
            let same = |file: &PathBuf| {
                file.metadata()
                    .is_ok_and(|m| (m.dev(), m.ino()) == (target.dev(), target.ino()))
            };
            anyhow::ensure!(
                !files.iter().any(same),
                "--pcap {} is one of the captures to scan: it would be overwritten",
                shown()
            );
        }
        Box::new(File::create(out).with_context(|| format!("cannot create --pcap {}", shown()))?)
    };
    MatchedWriter::new(BufWriter::with_capacity(1 << 20, sink))
        .with_context(|| format!("cannot write to --pcap {}", shown()))
}

fn display_name(file: &str) -> String {
    if file == "-" {
        "stdin".to_owned()
    } else {
        printable(file).into_owned()
    }
}

/// The report for a terminal.
fn render(reports: &[FileReport]) -> String {
    let mut text = String::new();
    for report in reports {
        let kind = [report.format, report.compression]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            text,
            "{}{}: {} frames, {} with a loopback address",
            display_name(&report.file),
            if kind.is_empty() {
                String::new()
            } else {
                format!(" ({kind})")
            },
            report.frames,
            report.packets_matched,
        );
        for interface in &report.interfaces {
            render_interface(&mut text, interface, report.interfaces.len() > 1);
        }
        if let Some(error) = &report.error {
            let _ = writeln!(text, "  not read to its end: {}", printable(error));
        }
    }
    if reports.len() > 1 {
        let frames: u64 = reports.iter().map(|report| report.frames).sum();
        let matched: u64 = reports.iter().map(|report| report.packets_matched).sum();
        let _ = writeln!(
            text,
            "{} files: {frames} frames, {matched} with a loopback address",
            reports.len()
        );
    }
    text
}

fn render_interface(text: &mut String, interface: &InterfaceReport, several: bool) {
    let name = interface
        .name
        .as_deref()
        .map(|name| format!(" {}", printable(name)))
        .unwrap_or_default();
    let section = if interface.section > 0 {
        format!("section {} ", interface.section)
    } else {
        String::new()
    };
    let _ = writeln!(
        text,
        "  {section}interface {}{name} ({}, snaplen {}): {} frames ({}), {} matched ({})",
        interface.id,
        interface.link_type,
        interface.snaplen,
        interface.frames,
        human_bytes(interface.bytes),
        interface.packets_matched,
        human_bytes(interface.bytes_matched),
    );
    let _ = several;
    for class in &interface.by_class {
        let _ = writeln!(
            text,
            "    {:<12} {:<12} {:>10} frames {:>12}",
            class.family,
            class.address,
            class.packets,
            human_bytes(class.bytes)
        );
    }
    if let (Some(first), Some(last)) = (&interface.first_match, &interface.last_match) {
        let _ = writeln!(text, "    first match {first}, last {last}");
    }
    if !interface.top_senders.is_empty() {
        let senders = interface
            .top_senders
            .iter()
            .map(|sender| {
                let mac = sender.source_mac.as_deref().unwrap_or("-");
                let ip = sender
                    .source_ip
                    .map_or_else(|| "-".to_owned(), |ip| ip.to_string());
                format!("{mac} {ip} ({})", sender.packets)
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(text, "    top senders: {senders}");
    }
    let not = interface.not_classified;
    let mut unread = Vec::new();
    if not.cut_short > 0 {
        unread.push(format!(
            "{} cut short by the snapshot length",
            not.cut_short
        ));
    }
    if not.unknown_link_type > 0 {
        unread.push(format!("{} of a link type not read", not.unknown_link_type));
    }
    if not.loopback_device > 0 {
        unread.push(format!("{} of a loopback device", not.loopback_device));
    }
    if !unread.is_empty() {
        let _ = writeln!(text, "    not classified: {}", unread.join(", "));
    }
}
