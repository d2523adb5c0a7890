//! Where the samples go: event lines or objects, the pcapng file or stream, and the top
//! senders. Each sample reaches every consumer as the same [`SampledFrame`], its bytes shared.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, IsTerminal as _, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    time::{Duration, Instant},
};

use probe_user::{
    output::pcap::PcapWriter, output::report::EventReport, output::samples::SampledFrame,
    output::senders::TopSenders, session::AttachedInterface,
};

use super::output::{Output, Stream};
use crate::stream::Format;

/// Events the live view keeps for its pane.
pub(crate) const PANE_LINES: usize = 40;
/// Event batches that may wait for a slow stderr, and pcap batches for a slow stdout.
const WAITING_BATCHES: usize = 64;

/// Where `--events` go.
pub(crate) enum Events {
    /// Objects on the machine-readable stream (`--json`): handed back to the caller for its
    /// output.
    Stream(Format),
    /// Lines in the live view's pane.
    Pane,
    /// Lines on stderr, when the view is not a terminal or stdout carries the pcap.
    Stderr(Output),
}

pub(crate) enum PcapTo {
    /// With the length written whole so far: a write cut short is cut back to it, so the file
    /// ends with a complete block.
    File(File, u64),
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
    #[error("--pcap {0} is a FIFO nobody reads yet; start its reader first")]
    NoReader(String),
    #[error("--pcap {0} is where the logs go (stderr); give a file")]
    Stderr(String),
    #[error("--pcap {0} is a terminal, and pcapng is binary; give a file or - to pipe it")]
    TerminalFile(String),
    #[error("cannot write the pcap to {path}: {error}; give the path of a file to create, or -")]
    Create { path: String, error: io::Error },
}

fn set_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a valid fd, reading then writing its status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `file` is the same open file as `fd` (`--pcap /dev/stdout`).
fn is_same_file(file: &File, fd: i32) -> bool {
    let stat = |fd: i32| {
        // SAFETY: fstat fills the struct for a valid fd or fails.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        (unsafe { libc::fstat(fd, &raw mut stat) } == 0).then_some((stat.st_dev, stat.st_ino))
    };
    let ours = stat(file.as_raw_fd());
    ours.is_some() && ours == stat(fd)
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
            // Not blocking in open: a FIFO nobody reads is an error now, not a hang before
            // anything attaches.
            let mut file = File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(path)
                .map_err(|error| match error.raw_os_error() {
                    Some(libc::ENXIO) => PcapOpenError::NoReader(path.to_owned()),
                    _ => create(error),
                })?;
            set_blocking(&file).map_err(create)?;
            if is_same_file(&file, io::stdout().as_raw_fd()) {
                return Err(PcapOpenError::Stdout(path.to_owned()));
            }
            if is_same_file(&file, io::stderr().as_raw_fd()) {
                return Err(PcapOpenError::Stderr(path.to_owned()));
            }
            if file.is_terminal() {
                return Err(PcapOpenError::TerminalFile(path.to_owned()));
            }
            let mut writer = PcapWriter::new(Vec::new()).expect("writing to a Vec");
            // The section header now: a disk already full is an error before attaching.
            let header = std::mem::take(writer.get_mut());
            file.write_all(&header).map_err(create)?;
            return Ok(Self {
                writer,
                to: Some(PcapTo::File(file, header.len() as u64)),
                not_written: 0,
            });
        };
        let mut pcap = Self {
            writer: PcapWriter::new(Vec::new()).expect("writing to a Vec"),
            to: Some(to),
            not_written: 0,
        };
        pcap.flush(&[]);
        Ok(pcap)
    }

    /// Announces the interfaces served, at start and as they are attached.
    fn add_interfaces(&mut self, attached: &[AttachedInterface]) {
        for attached in attached {
            self.writer
                .add_interface(attached.ifindex, attached.program, &attached.name)
                .expect("writing to a Vec");
        }
        self.flush(&[]);
    }

    fn write(&mut self, frames: &[SampledFrame], name: &impl Fn(u32) -> String) {
        if self.to.is_none() {
            self.not_written += frames.len() as u64;
            return;
        }
        // Where each frame's blocks end in the batch, so a disk that fills up keeps every
        // whole block that fitted.
        let mut ends = Vec::with_capacity(frames.len());
        for frame in frames {
            self.writer
                .write(frame, &name(frame.ifindex))
                .expect("writing to a Vec");
            ends.push(self.writer.get_mut().len());
        }
        self.flush(&ends);
    }

    /// Hands what was written to the file or stdout; `ends` are where the batch's frames end.
    fn flush(&mut self, ends: &[usize]) {
        let bytes = std::mem::take(self.writer.get_mut());
        let frames = ends.len() as u64;
        match &mut self.to {
            None => self.not_written += frames,
            Some(PcapTo::File(file, written)) => {
                let mut done = 0;
                let error = loop {
                    if done == bytes.len() {
                        break None;
                    }
                    match file.write(&bytes[done..]) {
                        Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                        Ok(n) => done += n,
                        Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                        Err(error) => break Some(error),
                    }
                };
                let Some(error) = error else {
                    *written += bytes.len() as u64;
                    return;
                };
                // Readers stop at a torn block: end the file with the last whole one.
                let kept = ends.iter().take_while(|end| **end <= done).count();
                let whole = if kept == 0 { 0 } else { ends[kept - 1] };
                let cut = file.set_len(*written + whole as u64).err();
                tracing::warn!(
                    "cannot write the pcap: {error}; samples are no longer written to it \
                     (counting goes on){}",
                    cut.map_or_else(String::new, |cut| format!(
                        "; its last block may be cut short ({cut})"
                    ))
                );
                self.not_written += frames - kept as u64;
                self.to = None;
            }
            Some(PcapTo::Stdout(output)) => {
                if !output.offer(bytes, "pcap blocks") {
                    self.not_written += frames;
                }
            }
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
    events: Option<Events>,
    pcap: Option<Pcap>,
    pub(crate) senders: TopSenders,
    /// The newest events, for the live view.
    pub(crate) pane: VecDeque<EventReport>,
    /// Event lines skipped because stderr was behind or gone.
    events_not_written: u64,
}

impl Evidence {
    pub(crate) fn new(events: Option<Events>, pcap: Option<Pcap>) -> Self {
        Self {
            events,
            pcap,
            senders: TopSenders::default(),
            pane: VecDeque::new(),
            events_not_written: 0,
        }
    }

    /// Hands a batch of samples to every consumer; returns the event lines to write on the
    /// machine-readable stream (with `--events --json`).
    pub(crate) fn take(
        &mut self,
        frames: &[SampledFrame],
        name: impl Fn(u32) -> String,
    ) -> Vec<u8> {
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
            Some(Events::Stream(format)) => {
                for frame in frames {
                    json.extend(format.line(&EventReport::new(frame, &name(frame.ifindex))));
                }
            }
            Some(Events::Pane) => {
                for frame in frames {
                    if self.pane.len() == PANE_LINES {
                        self.pane.pop_front();
                    }
                    self.pane
                        .push_back(EventReport::new(frame, &name(frame.ifindex)));
                }
            }
            Some(Events::Stderr(output)) => {
                let mut lines = String::new();
                for frame in frames {
                    lines.push_str(&EventReport::new(frame, &name(frame.ifindex)).line());
                    lines.push('\n');
                }
                if !frames.is_empty() && !output.offer(lines.into_bytes(), "event lines") {
                    self.events_not_written += frames.len() as u64;
                }
            }
        }
        json
    }

    /// Gives the pcap, if any, an interface block for each newly attached interface.
    pub(crate) fn add_interfaces(&mut self, attached: &[AttachedInterface]) {
        if let (Some(pcap), false) = (&mut self.pcap, attached.is_empty()) {
            pcap.add_interfaces(attached);
        }
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
        if self.events_not_written > 0 {
            tracing::warn!(
                "{} events were not written (stderr was behind or gone)",
                self.events_not_written
            );
        }
        if let Some(Events::Stderr(output)) = self.events {
            output.finish(Vec::new(), patience);
        }
        if let Some(pcap) = self.pcap {
            if pcap.not_written > 0 {
                tracing::warn!(
                    "{} samples were not written to the pcap (its reader was behind or gone, or \
                     it could not be written)",
                    pcap.not_written
                );
            }
            if let Some(PcapTo::Stdout(output)) = pcap.to {
                output.finish(Vec::new(), patience);
            }
        }
    }
}
