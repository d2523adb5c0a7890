//! Writes to stdout, stderr or the `--pcap` file on a thread of its own, so a reader that stops
//! reading (a stalled pipe or FIFO, a suspended terminal, a slow disk) never blocks the loop that
//! handles signals, attaches and detaches. A reader that goes away is noticed within
//! [`READER_CHECK`], not at the next write, which may be an interval away.

use std::{
    fs::File,
    io::{self, Write as _},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, Sender},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// Bytes a writer holds for a reader that is behind (reports, events, pcap blocks): a few
/// seconds of a flood's samples, and the most a stalled reader costs.
pub(crate) const WAITING_BYTES: usize = 4 << 20;

/// How often the writer looks for a reader gone between reports.
const READER_CHECK: Duration = Duration::from_millis(100);

/// What an [`Output`] writes to.
#[derive(Debug)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
    /// The `--pcap` file or FIFO, with the length written whole so far.
    Pcap {
        file: File,
        whole: u64,
    },
}

impl Stream {
    const fn name(&self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
            Self::Pcap { .. } => "the pcap",
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(bytes).and_then(|()| stdout.flush())
            }
            Self::Stderr => io::stderr().lock().write_all(bytes),
            Self::Pcap { file, whole } => {
                file.write_all(bytes)?;
                *whole += bytes.len() as u64;
                Ok(())
            }
        }
    }

    fn raw_fd(&self) -> i32 {
        match self {
            Self::Stdout => io::stdout().as_raw_fd(),
            Self::Stderr => io::stderr().as_raw_fd(),
            Self::Pcap { file, .. } => file.as_raw_fd(),
        }
    }

    /// After a failed write, cuts a file back to what was written whole before it: each write
    /// is whole pcapng blocks, and readers stop at a torn one.
    fn cut_back(&self) -> io::Result<()> {
        match self {
            Self::Pcap { file, whole } if file.metadata()?.is_file() => file.set_len(*whole),
            _ => Ok(()),
        }
    }
}

pub(crate) struct Output {
    name: &'static str,
    pending: Sender<Vec<u8>>,
    /// Bytes handed over and not yet written, and how many may be.
    queued: Arc<AtomicUsize>,
    budget: usize,
    closed: Arc<Closed>,
    written: Receiver<()>,
    /// Writes skipped because earlier ones were still waiting.
    skipped: u64,
}

/// Set when stdout is gone (the reader closed its end, the terminal hung up) or failed.
#[derive(Default)]
struct Closed {
    flag: AtomicBool,
    notify: Notify,
}

impl Closed {
    fn close(&self) {
        self.flag.store(true, Ordering::Relaxed);
        self.notify.notify_one();
    }
}

/// Whether the other end of `fd` is gone: a pipe whose reader closed it reports POLLERR, a
/// terminal that hung up POLLHUP; a file never does.
fn reader_gone(fd: i32) -> bool {
    let mut stream = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let ready = unsafe { libc::poll(&raw mut stream, 1, 0) };
    ready > 0 && stream.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

impl Output {
    /// A writer thread for `stream` that holds at most `budget` bytes for a reader that is
    /// behind (one write more when a single one is larger): a stalled reader costs that much
    /// memory and no more, however large each write is.
    pub(crate) fn spawn(mut stream: Stream, budget: usize) -> Self {
        let name = stream.name();
        let (pending, receiver) = mpsc::channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let writer_queued = Arc::clone(&queued);
        let (done, written) = mpsc::channel();
        let closed = Arc::new(Closed::default());
        let writer_closed = Arc::clone(&closed);
        thread::spawn(move || {
            loop {
                let bytes = match receiver.recv_timeout(READER_CHECK) {
                    Ok(bytes) => bytes,
                    Err(RecvTimeoutError::Timeout) if reader_gone(stream.raw_fd()) => {
                        writer_closed.close();
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let written = stream.write(&bytes);
                writer_queued.fetch_sub(bytes.len(), Ordering::Relaxed);
                if let Err(error) = written {
                    if error.kind() != io::ErrorKind::BrokenPipe {
                        let cut = stream.cut_back().err();
                        tracing::warn!(
                            "cannot write to {name}: {error}; stopping (counting goes on){}",
                            cut.map_or_else(String::new, |cut| format!(
                                "; its last block may be cut short ({cut})"
                            ))
                        );
                    }
                    writer_closed.close();
                    break;
                }
            }
            let _ = done.send(());
        });
        Self {
            name,
            pending,
            queued,
            budget,
            closed,
            written,
            skipped: 0,
        }
    }

    /// Completes when the reader is gone.
    pub(crate) async fn gone(&self) {
        if !self.is_gone() {
            self.closed.notify.notified().await;
        }
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.closed.flag.load(Ordering::Relaxed)
    }

    /// Hands `bytes` to the writer without waiting; `false` when they are skipped because
    /// the reader is behind or gone. `what` names them for the warning.
    pub(crate) fn offer(&mut self, bytes: Vec<u8>, what: &str) -> bool {
        if !self.has_room(bytes.len()) {
            if self.skipped == 0 {
                tracing::warn!(
                    "{} is not keeping up; skipping {what} until it does (counting goes on)",
                    self.name
                );
            }
            self.skipped += 1;
            return false;
        }
        self.hand_over(bytes)
    }

    /// Whether `len` more bytes fit the budget; an empty queue takes any one write.
    fn has_room(&self, len: usize) -> bool {
        let queued = self.queued.load(Ordering::Relaxed);
        queued == 0 || queued.saturating_add(len) <= self.budget
    }

    fn hand_over(&self, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        self.queued.fetch_add(len, Ordering::Relaxed);
        if self.pending.send(bytes).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            self.closed.close();
            return false;
        }
        true
    }

    /// Writes the last bytes, waiting at most `patience` for a stalled reader.
    pub(crate) fn finish(self, bytes: Vec<u8>, patience: Duration) {
        let name = self.name;
        if self.skipped > 0 {
            tracing::warn!("{} writes to {name} were skipped", self.skipped);
        }
        let deadline = Instant::now() + patience;
        while !self.has_room(bytes.len()) && !self.is_gone() {
            if Instant::now() >= deadline {
                tracing::warn!("{name} is not being read; the last output is not written");
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.hand_over(bytes);
        drop(self.pending);
        let left = deadline.saturating_duration_since(Instant::now());
        if self.written.recv_timeout(left).is_err() && !self.closed.flag.load(Ordering::Relaxed) {
            tracing::warn!("{name} is not being read; the last output may be cut short");
        }
    }
}
