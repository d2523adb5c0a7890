//! Where the samples go: event lines or objects, the pcapng file or stream, and the top
//! senders. Each sample reaches every consumer as the same [`SampledFrame`], its bytes shared.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, IsTerminal as _, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    time::{Duration, Instant},
};

use probe_common::Action;
use probe_user::net::workload::{Children, Workloads};
use probe_user::{
    output::pcap::PcapWriter, output::report::EventReport, output::samples::SampledFrame,
    output::senders::TopSenders, session::AttachedInterface,
};

use super::output::{Output, Stream, WAITING_BYTES};
use crate::stream::Format;

/// Events the live view keeps for its pane.
pub(crate) const PANE_LINES: usize = 40;

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

pub(crate) struct Pcap {
    writer: PcapWriter<Vec<u8>>,
    /// Written off the loop; `None` once writing failed or the reader went away: the run goes
    /// on without the pcap.
    to: Option<Output>,
    /// The section header and interface blocks not handed to the writer yet: unlike a batch of
    /// frames, they cannot be skipped, or the frames after them would name no interface.
    unsent_blocks: Vec<u8>,
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
        let mut writer = PcapWriter::new(Vec::new()).expect("writing to a Vec");
        let header = std::mem::take(writer.get_mut());
        // Where the pcap goes, and what of the section header the writer thread is to write.
        let (to, unsent_blocks) = if path == "-" {
            if io::stdout().is_terminal() {
                return Err(PcapOpenError::Terminal);
            }
            (Stream::Stdout, header)
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
            if is_same_file(&file, io::stdout().as_raw_fd()) {
                return Err(PcapOpenError::Stdout(path.to_owned()));
            }
            if is_same_file(&file, io::stderr().as_raw_fd()) {
                return Err(PcapOpenError::Stderr(path.to_owned()));
            }
            if file.is_terminal() {
                return Err(PcapOpenError::TerminalFile(path.to_owned()));
            }
            // The section header now, still without blocking, a few dozen bytes into an empty
            // file or FIFO: a disk already full is an error before attaching. A FIFO whose
            // reader has stopped with its pipe full takes it later, from the writer thread.
            let mut sent = 0;
            while sent < header.len() {
                match file.write(&header[sent..]) {
                    Ok(0) => return Err(create(io::ErrorKind::WriteZero.into())),
                    Ok(written) => sent += written,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(create(error)),
                }
            }
            set_blocking(&file).map_err(create)?;
            let whole = if sent == header.len() { sent as u64 } else { 0 };
            let unsent = header[sent..].to_vec();
            (Stream::Pcap { file, whole }, unsent)
        };
        let mut pcap = Self {
            writer,
            to: Some(Output::spawn(to, WAITING_BYTES)),
            unsent_blocks,
            not_written: 0,
        };
        pcap.flush(0);
        Ok(pcap)
    }

    /// Announces the interfaces served, at start and as they are attached.
    fn add_interfaces(&mut self, attached: &[AttachedInterface]) {
        for attached in attached {
            self.writer
                .add_interface(attached.ifindex, attached.program, &attached.name)
                .expect("writing to a Vec");
        }
        self.unsent_blocks
            .append(&mut std::mem::take(self.writer.get_mut()));
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

    /// Hands the blocks not sent yet and the batch of `frames` just written to the writer
    /// thread; a batch it has no room for is skipped and counted, the blocks kept for the next.
    fn flush(&mut self, frames: u64) {
        let batch = std::mem::take(self.writer.get_mut());
        let Some(output) = &mut self.to else {
            self.not_written += frames;
            return;
        };
        if batch.is_empty() && self.unsent_blocks.is_empty() {
            return;
        }
        let mut bytes = self.unsent_blocks.clone();
        bytes.extend(batch);
        if output.offer(bytes, "pcap blocks") {
            self.unsent_blocks.clear();
        } else {
            self.not_written += frames;
        }
    }

    /// Completes when the pcap's reader goes away or writing it fails, once; never otherwise.
    async fn reader_gone(&mut self) {
        match &self.to {
            Some(output) => output.gone().await,
            None => std::future::pending().await,
        }
        tracing::warn!(
            "the pcap's reader went away, or it could not be written; samples are no longer \
             written to it (counting goes on)"
        );
        self.to = None;
    }
}

pub(crate) struct Evidence {
    events: Option<Events>,
    pcap: Option<Pcap>,
    pub(crate) senders: TopSenders,
    /// Senders a report shows per interface.
    pub(crate) top: usize,
    /// The newest events, for the live view.
    pub(crate) pane: VecDeque<EventReport>,
    /// Event lines skipped because stderr was behind or gone.
    events_not_written: u64,
}

impl Evidence {
    pub(crate) fn new(events: Option<Events>, pcap: Option<Pcap>, top: usize) -> Self {
        Self {
            events,
            pcap,
            senders: TopSenders::default(),
            top,
            pane: VecDeque::new(),
            events_not_written: 0,
        }
    }

    /// Hands a batch of samples to every consumer; returns the event lines to write on the
    /// machine-readable stream (with `--events --json`).
    pub(crate) fn take(
        &mut self,
        frames: &[SampledFrame],
        workloads: &Workloads,
        children: &Children,
        name: impl Fn(u32) -> String,
    ) -> Vec<u8> {
        let event = |frame: &SampledFrame| {
            EventReport::new(frame, &name(frame.ifindex))
                .behind(workloads.get(&frame.ifindex).map(|workload| &**workload))
                .addressed_to(children.get(&frame.ifindex).map_or(&[], Vec::as_slice))
        };
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
                    json.extend(format.line(&event(frame)));
                }
            }
            Some(Events::Pane) => {
                for frame in frames {
                    if self.pane.len() == PANE_LINES {
                        self.pane.pop_front();
                    }
                    self.pane.push_back(event(frame));
                }
            }
            Some(Events::Stderr(output)) => {
                let mut lines = String::new();
                for frame in frames {
                    lines.push_str(&event(frame).line());
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

    /// Completes when the pcap's reader goes away or writing it fails (once): the run goes on.
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
            if let Some(output) = pcap.to {
                output.finish(pcap.unsent_blocks, patience);
            }
        }
    }
}

/// Whether any of `frames` arrived at an interface with children, addressed to one MAC (not
/// broadcast or multicast): to a child, or to one whose MAC the last search did not see.
pub(crate) fn addresses_children(frames: &[SampledFrame], children: &Children) -> bool {
    frames.iter().any(|frame| {
        frame.action != Action::Replied
            && children
                .get(&frame.ifindex)
                .is_some_and(|children| !children.is_empty())
            && frame
                .headers
                .destination_mac
                .is_some_and(|mac| mac[0] & 1 == 0)
    })
}
