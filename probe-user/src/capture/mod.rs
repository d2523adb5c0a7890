//! Captures read back (`scan`): pcap and pcapng, compressed or not, from a file or stdin, every
//! frame classified by the classifier the kernel runs and counted per file and interface;
//! matched frames can be written out again as pcapng.

pub mod input;
pub mod link;
pub mod matched;
pub mod reader;
pub mod tally;

use std::{io, path::Path};

use probe_common::LoopbackMatch;
use serde::Serialize;

use crate::capture::{
    input::Input,
    reader::{CaptureReader, Interface, Packet, ReadError, Record},
    tally::{InterfaceReport, InterfaceTally},
};

/// Why a capture could not be read to its end.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot open: {0}")]
    Open(#[from] io::Error),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One capture, as `scan` reports it (docs/scan.md describes each field).
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// The file as named on the command line (`-`: stdin).
    pub file: String,
    /// `pcap` or `pcapng`; `null` when it could not be told.
    pub format: Option<&'static str>,
    /// `gzip`, `zstd`, or `null`.
    pub compression: Option<&'static str>,
    pub frames: u64,
    pub packets_matched: u64,
    /// Every interface block of a pcapng file, in order; a pcap file's one.
    pub interfaces: Vec<InterfaceReport>,
    /// Why the file was not read to its end (what was read before is counted); `null` when it
    /// was.
    pub error: Option<String>,
}

/// Scans the capture at `path` (stdin for `-`); `on_match` is given every matched frame with
/// its interface, in the file's order. An error ends the scan of this file, keeping what was
/// counted before it.
pub fn scan(
    path: &Path,
    mut on_match: impl FnMut(&Interface, &Packet<'_>, LoopbackMatch),
) -> FileReport {
    let mut report = FileReport {
        file: path.to_string_lossy().into_owned(),
        format: None,
        compression: None,
        frames: 0,
        packets_matched: 0,
        interfaces: Vec::new(),
        error: None,
    };
    let mut tallies: Vec<InterfaceTally> = Vec::new();
    let result = (|| -> Result<(), ScanError> {
        let input = Input::open(path)?;
        report.compression = input.compression.map(|compression| compression.name());
        let reader = CaptureReader::new(input.reader, input.compression.is_some())?;
        report.format = Some(reader.format.name());
        reader.for_each(|record| match record {
            Record::Interface(interface) => tallies.push(InterfaceTally::new(interface)),
            Record::Packet(packet) => {
                let tally = &mut tallies[packet.interface];
                if let Some(matched) = tally.count(&packet) {
                    on_match(&tally.interface, &packet, matched);
                }
            }
        })?;
        Ok(())
    })();
    report.error = result.err().map(|error| error.to_string());
    report.interfaces = tallies.iter().map(InterfaceTally::report).collect();
    report.frames = report.interfaces.iter().map(|i| i.frames).sum();
    report.packets_matched = report.interfaces.iter().map(|i| i.packets_matched).sum();
    report
}
