//! Where the samples go: event lines or objects, the pcapng file or stream, and the top
//! senders. Each sample reaches every consumer as the same [`SampledFrame`], its bytes shared.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, IsTerminal as _, Write as _},
    os::fd::AsRawFd as _,
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
    /// `None` once writing failed or the reader went away: the run goes on without the pcap.
    to: Option<PcapTo>,
    /// Samples not written because the reader was behind or gone, or writing failed.
    not_written: u64,
}

/// Why `--pcap` cannot be written, said before anything attaches.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PcapOpenError {
    #[error(
        "--pcap - writes binary pcapng to stdout, which is a terminal: pipe it (`| tcpdump -r \
         -`) or give a file"
    )]
    Terminal,
    #[error("--pcap {0} is this process's stdout; give --pcap - to write the pcap there")]
    Stdout(String),
    #[error("cannot write the pcap to {path}: {error}; give the path of a file to create, or -")]
    Create { path: String, error: io::Error },
}

/// Whether `file` is the same open file as stdout (`--pcap /dev/stdout`).
fn is_stdout(file: &File) -> bool {
    let stat = |fd: i32| {
        // SAFETY: fstat fills the struct for a valid fd or fails.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &raw mut stat) } == 0).then_some((stat.st_dev, stat.st_ino))
    };
    let ours = stat(file.as_raw_fd());
    ours.is_some() && ours == stat(io::stdout().as_raw_fd())
}

impl Pcap {
    /// Opens `path` (`-` for stdout) and writes the pcapng section header.
    pub(crate) fn open(path: &str) -> Result<Self, PcapOpenError> {
        let to = if path == "-" {
            if io::stdout().is_terminal() {
                return Err(PcapOpenError::Terminal);
            }
            PcapTo::Stdout(Output::spawn(Stream::Stdout, WAITING_BATCHES))
        } else {
            let create = |error| PcapOpenError::Create {
                path: path.to_owned(),
                error,
            };
            let file = File::create(path).map_err(create)?;
            if is_stdout(&file) {
                return Err(PcapOpenError::Stdout(path.to_owned()));
            }
            PcapTo::File(file)
        };
        let mut pcap = Self {
            writer: PcapWriter::new(Vec::new()).expect("writing to a Vec"),
            to: Some(to),
            not_written: 0,
        };
        pcap.flush(0);
        Ok(pcap)
    }

    /// Announces the interfaces served from the start.
    pub(crate) fn add_interfaces(
        &mut self,
        interfaces: impl IntoIterator<Item = (u32, Framing, String)>,
    ) {
        for (ifindex, framing, name) in interfaces {
            self.writer
                .add_interface(ifindex, framing, &name)
                .expect("writing to a Vec");
        }
        self.flush(0);
    }

    fn write(&mut self, frames: &[SampledFrame], name: &impl Fn(u32) -> String) {
        if self.to.is_none() {
            self.not_written += frames.len() as u64;
            return;
        }
        for frame in frames {
            self.writer
                .write(frame, &name(frame.ifindex))
                .expect("writing to a Vec");
        }
        self.flush(frames.len() as u64);
    }

    /// Hands what was written to the file or stdout; `frames` is how many samples it holds.
    fn flush(&mut self, frames: u64) {
        let bytes = std::mem::take(self.writer.get_mut());
        let written = match &mut self.to {
            None => false,
            Some(PcapTo::File(file)) => match file.write_all(&bytes) {
                Ok(()) => true,
                Err(error) => {
                    tracing::warn!(
                        "cannot write the pcap: {error}; samples are no longer written to it \
                         (counting goes on)"
                    );
                    self.to = None;
                    false
                }
            },
            Some(PcapTo::Stdout(output)) => output.offer(bytes, "pcap blocks"),
        };
        if !written {
            self.not_written += frames;
        }
    }

    /// Completes when the reader of `--pcap -` goes away, once; never otherwise.
    async fn reader_gone(&mut self) {
        match &self.to {
            Some(PcapTo::Stdout(output)) => output.gone().await,
            _ => std::future::pending().await,
        }
        tracing::warn!(
            "the reader of the pcap went away; samples are no longer written (counting goes on)"
        );
        self.to = None;
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
            pcap.write(frames, &name);
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

    /// Completes when the reader of `--pcap -` goes away (once): the run goes on.
    pub(crate) async fn pcap_reader_gone(&mut self) {
        match &mut self.pcap {
            Some(pcap) => pcap.reader_gone().await,
            None => std::future::pending().await,
        }
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
            if let Some(PcapTo::Stdout(output)) = pcap.to {
                output.finish(Vec::new(), patience);
            }
        }
    }
}
