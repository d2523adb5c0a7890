//! Writes reports on a thread of its own, so a reader that stops reading (a stalled pipe, a
//! suspended terminal) never blocks the loop that handles signals and detaches.

use std::{
    io::{self, Write as _},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc::{self, Receiver, SyncSender, TrySendError},
    },
    thread,
    time::{Duration, Instant},
};

pub(crate) struct Output {
    reports: SyncSender<String>,
    /// Set when stdout is gone (a closed pipe) or failed.
    closed: Arc<AtomicBool>,
    written: Receiver<()>,
    /// Reports not written because the previous one was still waiting: each report holds the
    /// totals, so skipping one loses nothing but a refresh.
    pub(crate) skipped: u64,
}

impl Output {
    pub(crate) fn spawn() -> Self {
        // One report waiting at most: a stalled reader costs one buffered report, not memory.
        let (reports, pending) = mpsc::sync_channel::<String>(1);
        let (done, written) = mpsc::channel();
        let closed = Arc::new(AtomicBool::new(false));
        let writer_closed = Arc::clone(&closed);
        thread::spawn(move || {
            for report in pending {
                let mut stdout = io::stdout().lock();
                let result = stdout
                    .write_all(report.as_bytes())
                    .and_then(|()| stdout.flush());
                if let Err(error) = result {
                    if error.kind() != io::ErrorKind::BrokenPipe {
                        tracing::warn!("cannot write to stdout: {error}; stopping");
                    }
                    writer_closed.store(true, Ordering::Relaxed);
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
            Err(TrySendError::Disconnected(_)) => self.closed.store(true, Ordering::Relaxed),
        }
    }

    /// Whether stdout is gone, which ends the run.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
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
        if self.written.recv_timeout(left).is_err() && !self.closed.load(Ordering::Relaxed) {
            tracing::warn!("stdout is not being read; the last report may be cut short");
        }
    }
}
