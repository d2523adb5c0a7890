//! When an interface refused for a passing reason is tried again: on a timer with backoff, not
//! only at the next link event, which may never come.

use std::{error::Error, io, time::Duration};

use crate::probe::ProbeError;

/// The first pause after a passing refusal; it doubles while refusals go on.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause: an interface waits at most this long once the cause has passed.
const LONGEST_PAUSE: Duration = Duration::from_secs(8);

/// Whether refusing an interface for `error` may pass by itself: the process or the system out
/// of file descriptors or memory, a map full until entries are freed.
pub(crate) fn is_passing(error: &ProbeError) -> bool {
    match error {
        ProbeError::Attach(error)
        | ProbeError::PinLink { error, .. }
        | ProbeError::Adopt { error, .. } => is_passing_io(error),
        other => has_passing_source(other),
    }
}

fn is_passing_io(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::E2BIG)
    )
}

/// Whether an [`io::Error`] among `error`'s sources is a passing one (aya's map and program
/// errors carry the system call's error as a source).
fn has_passing_source(error: &(dyn Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.downcast_ref::<io::Error>().is_some_and(is_passing_io) {
            return true;
        }
        next = error.source();
    }
    false
}

/// The pauses before trying refused interfaces again.
#[derive(Debug, Default)]
pub struct Backoff {
    pause: Option<Duration>,
}

impl Backoff {
    /// The pause after an attempt; `None` when nothing was refused for a passing reason.
    pub fn after(&mut self, refused_passing: bool) -> Option<Duration> {
        self.pause = refused_passing.then(|| {
            self.pause
                .map_or(FIRST_PAUSE, |pause| (pause * 2).min(LONGEST_PAUSE))
        });
        self.pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_descriptors_passes_and_the_pause_doubles_up_to_the_longest() {
        let refused = |code| ProbeError::Attach(io::Error::from_raw_os_error(code));
        assert!(is_passing(&refused(libc::EMFILE)));
        assert!(!is_passing(&refused(libc::EBUSY)));
        let mut backoff = Backoff::default();
        assert_eq!(backoff.after(true), Some(FIRST_PAUSE));
        assert_eq!(backoff.after(true), Some(FIRST_PAUSE * 2));
        for _ in 0..10 {
            backoff.after(true);
        }
        assert_eq!(backoff.after(true), Some(LONGEST_PAUSE));
        assert_eq!(backoff.after(false), None);
        assert_eq!(backoff.after(true), Some(FIRST_PAUSE));
    }
}
