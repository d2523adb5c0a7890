//! Writes to stdout or stderr on a thread of its own, so a reader that stops reading (a stalled
//! pipe, a suspended terminal) never blocks the loop that handles signals and detaches. A reader
//! that goes away is noticed within [`READER_CHECK`], not at the next write, which may be an
//! interval away.

use std::{
    io::{self, Write as _},
    os::fd::AsRawFd as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

use tokio::sync::Notify;

/// How often the writer looks for a reader gone between reports.
const READER_CHECK: Duration = Duration::from_millis(100);

/// Which standard stream an [`Output`] writes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    const fn name(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }

    fn write(self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut stdout = io::stdout().lock();
                stdout.write_all(bytes).and_then(|()| stdout.flush())
            }
            Self::Stderr => io::stderr().lock().write_all(bytes),
        }
    }

    fn raw_fd(self) -> i32 {
        match self {
            Self::Stdout => io::stdout().as_raw_fd(),
            Self::Stderr => io::stderr().as_raw_fd(),
        }
    }
}

pub(crate) struct Output {
    stream: Stream,
    pending: SyncSender<Vec<u8>>,
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
    /// A writer thread for `stream` with room for `waiting` writes: a stalled reader costs at
    /// most that many buffered writes, not memory.
    pub(crate) fn spawn(stream: Stream, waiting: usize) -> Self {
        let (pending, receiver) = mpsc::sync_channel::<Vec<u8>>(waiting);
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
                if let Err(error) = stream.write(&bytes) {
                    if error.kind() != io::ErrorKind::BrokenPipe {
                        tracing::warn!("cannot write to {}: {error}; stopping", stream.name());
                    }
                    writer_closed.close();
                    break;
                }
            }
            let _ = done.send(());
        });
        Self {
            stream,
            pending,
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
        match self.pending.try_send(bytes) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                if self.skipped == 0 {
                    tracing::warn!(
                        "{} is not keeping up; skipping {what} until it does (counting goes on)",
                        self.stream.name()
                    );
                }
                self.skipped += 1;
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.closed.close();
                false
            }
        }
    }

    /// Writes the last bytes, waiting at most `patience` for a stalled reader.
    pub(crate) fn finish(self, bytes: Vec<u8>, patience: Duration) {
        let name = self.stream.name();
        if self.skipped > 0 {
            tracing::warn!("{} writes to {name} were skipped", self.skipped);
        }
        let deadline = Instant::now() + patience;
        let mut bytes = bytes;
        loop {
            match self.pending.try_send(bytes) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    bytes = back;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Full(_)) => {
                    tracing::warn!("{name} is not being read; the last output is not written");
                    return;
                }
            }
        }
        drop(self.pending);
        let left = deadline.saturating_duration_since(Instant::now());
        if self.written.recv_timeout(left).is_err() && !self.closed.flag.load(Ordering::Relaxed) {
            tracing::warn!("{name} is not being read; the last output may be cut short");
        }
    }
}
