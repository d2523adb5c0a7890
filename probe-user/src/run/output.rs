//! Writes reports on a thread of its own, so a reader that stops reading (a stalled pipe, a
//! suspended terminal) never blocks the loop that handles signals and detaches. A reader that
//! goes away is noticed within [`READER_CHECK`], not at the next write, which may be an
//! interval away: the run then ends and detaches at once.

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

pub(crate) struct Output {
    reports: SyncSender<String>,
    closed: Arc<Closed>,
    written: Receiver<()>,
    /// Reports not written because the previous one was still waiting: each report holds the
    /// totals, so skipping one loses nothing but a refresh.
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

/// Whether the other end of stdout is gone: a pipe whose reader closed it reports POLLERR, a
/// terminal that hung up POLLHUP; a file never does.
fn reader_gone() -> bool {
    let mut stdout = libc::pollfd {
        fd: io::stdout().as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let ready = unsafe { libc::poll(&raw mut stdout, 1, 0) };
    ready > 0 && stdout.revents & (libc::POLLERR | libc::POLLHUP) != 0
}

impl Output {
    pub(crate) fn spawn() -> Self {
        // One report waiting at most: a stalled reader costs one buffered report, not memory.
        let (reports, pending) = mpsc::sync_channel::<String>(1);
        let (done, written) = mpsc::channel();
        let closed = Arc::new(Closed::default());
        let writer_closed = Arc::clone(&closed);
        thread::spawn(move || {
            loop {
                let report = match pending.recv_timeout(READER_CHECK) {
                    Ok(report) => report,
                    Err(RecvTimeoutError::Timeout) if reader_gone() => {
                        writer_closed.close();
                        break;
                    }
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let mut stdout = io::stdout().lock();
                let result = stdout
                    .write_all(report.as_bytes())
                    .and_then(|()| stdout.flush());
                if let Err(error) = result {
                    if error.kind() != io::ErrorKind::BrokenPipe {
                        tracing::warn!("cannot write to stdout: {error}; stopping");
                    }
                    writer_closed.close();
                    break;
                }
            }
            let _ = done.send(());
        });
        Self {
            reports,
            closed,
            written,
            skipped: 0,
        }
    }

    /// Completes when stdout is gone, which ends the run.
    pub(crate) async fn gone(&self) {
        self.closed.notify.notified().await;
    }

    /// Hands a report to the writer without waiting.
    pub(crate) fn offer(&mut self, report: String) {
        match self.reports.try_send(report) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                if self.skipped == 0 {
                    tracing::warn!(
                        "stdout is not being read; skipping reports until it is (counting goes \
                         on)"
                    );
                }
                self.skipped += 1;
            }
            Err(TrySendError::Disconnected(_)) => self.closed.close(),
        }
    }

    /// Writes the last report, waiting at most `patience` for a stalled reader.
    pub(crate) fn finish(self, report: String, patience: Duration) {
        let deadline = Instant::now() + patience;
        let mut report = report;
        loop {
            match self.reports.try_send(report) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    report = back;
                    thread::sleep(Duration::from_millis(10));
                }
                Err(TrySendError::Full(_)) => {
                    tracing::warn!("stdout is not being read; the last report is not written");
                    return;
                }
            }
        }
        drop(self.reports);
        let left = deadline.saturating_duration_since(Instant::now());
        if self.written.recv_timeout(left).is_err() && !self.closed.flag.load(Ordering::Relaxed) {
            tracing::warn!("stdout is not being read; the last report may be cut short");
        }
    }
}
