//! Where the logs go: stderr, except while the full-screen view owns the terminal stderr also
//! writes to. Then they are kept, shown by the view as they come, and written to stderr when it
//! closes, so nothing said during the run is lost and nothing is drawn over the view.

use std::{
    collections::VecDeque,
    io::{self, Write},
    sync::{Mutex, MutexGuard},
};

/// Log lines kept while the view is open; older ones are counted, not kept.
const LINES_KEPT: usize = 1000;

struct Kept {
    lines: VecDeque<String>,
    /// Lines ever kept, the newest's number.
    count: u64,
    /// Lines no longer kept.
    forgotten: u64,
}

static KEPT: Mutex<Option<Kept>> = Mutex::new(None);

fn kept() -> MutexGuard<'static, Option<Kept>> {
    // A panic elsewhere while holding it leaves the lines usable.
    KEPT.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The writer of the logs (each write one formatted line).
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if let Some(kept) = kept().as_mut() {
            kept.count += 1;
            kept.lines
                .push_back(String::from_utf8_lossy(bytes).into_owned());
            if kept.lines.len() > LINES_KEPT {
                kept.lines.pop_front();
                kept.forgotten += 1;
            }
            return Ok(bytes.len());
        }
        io::stderr().write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// Keeps the logs from now on instead of writing them.
pub(crate) fn keep() {
    kept().get_or_insert_with(|| Kept {
        lines: VecDeque::new(),
        count: 0,
        forgotten: 0,
    });
}

/// The lines logged after the `seen`th, without terminal escapes; `seen` becomes the newest's.
pub(crate) fn newer_than(seen: &mut u64) -> Vec<String> {
    let kept = kept();
    let Some(kept) = kept.as_ref() else {
        return Vec::new();
    };
    let new = usize::try_from(kept.count.saturating_sub(*seen))
        .unwrap_or(usize::MAX)
        .min(kept.lines.len());
    *seen = kept.count;
    kept.lines
        .iter()
        .skip(kept.lines.len() - new)
        .map(|line| without_time(&without_escapes(line.trim_end())).to_owned())
        .collect()
}

/// `line` without the time the log puts first (`2026-11-23T20:08:11.943538Z  WARN …`): the
/// view has no room for it.
fn without_time(line: &str) -> &str {
    match line.split_once(' ') {
        Some((time, rest)) if time.ends_with('Z') && time.contains('T') => rest.trim_start(),
        _ => line,
    }
}

/// Writes the kept lines to stderr and writes the logs there again.
pub(crate) fn release() {
    let Some(kept) = kept().take() else {
        return;
    };
    let mut stderr = io::stderr().lock();
    if kept.forgotten > 0 {
        let _ = writeln!(
            stderr,
            "localnet-probe: {} earlier log lines of the live view were not kept",
            kept.forgotten
        );
    }
    for line in kept.lines {
        let _ = stderr.write_all(line.as_bytes());
    }
}

/// `line` without its colours (`ESC [ … letter`) and other control characters.
fn without_escapes(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if !c.is_control() {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_taken_out() {
        assert_eq!(
            without_escapes("\u{1b}[33m WARN\u{1b}[0m veth0: \u{7}attached"),
            " WARN veth0: attached"
        );
        assert_eq!(without_escapes("plain"), "plain");
        assert_eq!(
            without_time("2026-11-23T20:08:11.943538Z  WARN vb: exposed"),
            "WARN vb: exposed"
        );
        assert_eq!(without_time("WARN no time"), "WARN no time");
    }

    #[test]
    fn kept_lines_come_once_and_are_bounded() {
        keep();
        let mut seen = 0;
        for n in 0..LINES_KEPT + 5 {
            Stderr.write_all(format!("line {n}\n").as_bytes()).unwrap();
        }
        let lines = newer_than(&mut seen);
        assert_eq!(lines.len(), LINES_KEPT);
        assert_eq!(lines.last().map(String::as_str), Some("line 1004"));
        assert!(newer_than(&mut seen).is_empty());
        Stderr.write_all(b"one more\n").unwrap();
        assert_eq!(newer_than(&mut seen), ["one more"]);
        assert_eq!(kept().as_ref().map(|kept| kept.forgotten), Some(6));
        kept().take();
    }
}
