//! Where the samples go: event lines or objects, the pcapng file or stream, and the top
//! senders. Each sample reaches every consumer as the same [`SampledFrame`], its bytes shared.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, Write as _},
    time::{Duration, Instant},
};

use probe_common::Framing;
use probe_user::{
    pcap::PcapWriter, probe::Program, report::EventReport, samples::SampledFrame,
    senders::TopSenders,
};

use super::output::{Output, Stream};

/// Event lines the live view keeps in its pane.
pub(crate) const PANE_LINES: usize = 10;
/// Event batches that may wait for a slow stderr, and pcap batches for a slow stdout.
const WAITING_BATCHES: usize = 64;

/// Where `--events` go.
pub(crate) enum Events {
    /// Objects on the JSON stream (`--json`): handed back to the caller for its output.
    Json,
    /// Lines in the live view's pane.
    Pane,
    /// Lines on stderr, when the view is not a terminal or stdout carries the pcap.
    Stderr(Output),
}

/// What a program's frames start with.
pub(crate) const fn framing(program: Program) -> Framing {
    match program {
        Program::Ethernet => Framing::Ethernet,
        Program::Ip => Framing::Ip,
    }
}

pub(crate) enum PcapTo {
    File(File),
    Stdout(Output),
}

pub(crate) struct Pcap {
    writer: PcapWriter<Vec<u8>>,
    to: PcapTo,
    /// Samples not written because the reader was behind or gone.
    not_written: u64,
}

impl Pcap {
    /// Opens `path` (`-` for stdout) and writes the pcapng section header.
    pub(crate) fn open(path: &str) -> io::Result<Self> {
        let to = if path == "-" {
            PcapTo::Stdout(Output::spawn(Stream::Stdout, WAITING_BATCHES))
        } else {
            PcapTo::File(File::create(path)?)
        };
        let writer = PcapWriter::new(Vec::new()).map_err(io::Error::other)?;
        let mut pcap = Self {
            writer,
            to,
            not_written: 0,
        };
        pcap.flush(0)?;
        Ok(pcap)
    }

    /// Announces the interfaces served from the start.
    pub(crate) fn add_interfaces(
        &mut self,
        interfaces: impl IntoIterator<Item = (u32, Framing, String)>,
    ) -> io::Result<()> {
        for (ifindex, framing, name) in interfaces {
            self.writer
                .add_interface(ifindex, framing, &name)
                .map_err(io::Error::other)?;
        }
        self.flush(0)
    }

    fn write(&mut self, frames: &[SampledFrame], name: &impl Fn(u32) -> String) -> io::Result<()> {
        for frame in frames {
            self.writer
                .write(frame, &name(frame.ifindex))
                .map_err(io::Error::other)?;
        }
        self.flush(frames.len() as u64)
    }

    /// Hands what was written to the file or stdout; `frames` is how many samples it holds.
    fn flush(&mut self, frames: u64) -> io::Result<()> {
        let bytes = std::mem::take(self.writer.get_mut());
        match &mut self.to {
            PcapTo::File(file) => file.write_all(&bytes),
            PcapTo::Stdout(output) => {
                if output.is_gone() {
                    self.not_written += frames;
                } else if !output.offer(bytes, "pcap blocks") {
                    self.not_written += frames;
                    if output.is_gone() {
                        tracing::warn!(
                            "the pcap reader went away; samples are no longer written (counting \
                             goes on)"
                        );
                    }
                }
                Ok(())
            }
        }
    }
}

pub(crate) struct Evidence {
    pub(crate) events: Option<Events>,
    pub(crate) pcap: Option<Pcap>,
    pub(crate) senders: TopSenders,
    /// The newest event lines, for the live view.
    pub(crate) pane: VecDeque<String>,
}

impl Evidence {
    /// Hands a batch of samples to every consumer; returns the JSON event lines to write on
    /// the report stream (with `--events --json`).
    pub(crate) fn take(
        &mut self,
        frames: &[SampledFrame],
        name: impl Fn(u32) -> String,
    ) -> anyhow::Result<Vec<u8>> {
        let now = Instant::now();
        for frame in frames {
            self.senders.record(frame, now);
        }
        if let Some(pcap) = &mut self.pcap {
            pcap.write(frames, &name)?;
        }
        let mut json = Vec::new();
        match &mut self.events {
            None => {}
            Some(Events::Json) => {
                for frame in frames {
                    serde_json::to_writer(
                        &mut json,
                        &EventReport::new(frame, &name(frame.ifindex)),
                    )?;
                    json.push(b'\n');
                }
            }
            Some(Events::Pane) => {
                for frame in frames {
                    if self.pane.len() == PANE_LINES {
                        self.pane.pop_front();
                    }
                    self.pane
                        .push_back(EventReport::new(frame, &name(frame.ifindex)).line());
                }
            }
            Some(Events::Stderr(output)) => {
                let mut lines = String::new();
                for frame in frames {
                    lines.push_str(&EventReport::new(frame, &name(frame.ifindex)).line());
                    lines.push('\n');
                }
                if !frames.is_empty() {
                    output.offer(lines.into_bytes(), "event lines");
                }
            }
        }
        Ok(json)
    }

    /// Waits at most `patience` for what is still to be written.
    pub(crate) fn finish(self, patience: Duration) {
        if let Some(Events::Stderr(output)) = self.events {
            output.finish(Vec::new(), patience);
        }
        if let Some(pcap) = self.pcap {
            if pcap.not_written > 0 {
                tracing::warn!(
                    "{} samples were not written to the pcap (its reader was behind or gone)",
                    pcap.not_written
                );
            }
            if let PcapTo::Stdout(output) = pcap.to {
                output.finish(Vec::new(), patience);
            }
        }
    }
}
