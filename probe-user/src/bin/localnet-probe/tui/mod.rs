//! The full-screen live view of `run` and `status --watch` on a terminal: the terminal taken
//! (raw mode, alternate screen, no cursor) and always given back, on exit, on a signal and on a
//! panic; frames drawn into memory and handed to the caller, who writes them without ever
//! blocking on a stalled terminal.

mod trend;
pub(crate) mod view;

use std::{
    cell::RefCell,
    io::{self, IsTerminal as _, Write as _},
    rc::Rc,
    sync::Once,
    time::Instant,
};

use crossterm::{
    cursor::{Hide, Show},
    event::{DisableBracketedPaste, EnableBracketedPaste, Event, EventStream},
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use futures_util::StreamExt as _;
use ratatui::{Terminal, backend::CrosstermBackend};

pub(crate) use self::view::{Command, LiveView, Switching};

/// What the backend writes, kept for the caller to write.
#[derive(Clone, Default)]
struct Drawn(Rc<RefCell<Vec<u8>>>);

impl Drawn {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.0.borrow_mut())
    }
}

impl io::Write for Drawn {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The terminal, taken for the view.
pub(crate) struct Screen {
    terminal: Terminal<CrosstermBackend<Drawn>>,
    drawn: Drawn,
    /// `None` once the keys have ended (stdin closed).
    keys: Option<EventStream>,
    /// The last frame was not written: draw the next one whole.
    draw_whole: bool,
    /// Not yet given back.
    taken: bool,
}

impl Screen {
    /// Takes the terminal: raw mode now; the alternate screen and the hidden cursor come with
    /// the first frame.
    pub(crate) fn take() -> io::Result<Self> {
        give_back_on_panic();
        enable_raw_mode()?;
        let mut drawn = Drawn::default();
        crossterm::queue!(drawn, EnterAlternateScreen, Hide, EnableBracketedPaste)?;
        let terminal = match Terminal::new(CrosstermBackend::new(drawn.clone())) {
            Ok(terminal) => terminal,
            Err(error) => {
                let _ = disable_raw_mode();
                return Err(error);
            }
        };
        Ok(Self {
            terminal,
            drawn,
            keys: Some(EventStream::new()),
            draw_whole: false,
            taken: true,
        })
    }

    /// The bytes that draw `view` over the last frame: only the cells that changed, or all of
    /// them after a frame that was not written or a resize.
    pub(crate) fn draw(&mut self, view: &LiveView) -> io::Result<Vec<u8>> {
        if std::mem::take(&mut self.draw_whole) {
            self.terminal.clear()?;
        }
        self.terminal.draw(|frame| view.draw(frame))?;
        Ok(self.drawn.take())
    }

    /// Says that the last frame's bytes were not written.
    pub(crate) fn not_written(&mut self) {
        self.draw_whole = true;
    }

    /// The next key press or resize. Once the keys cannot be read (stdin ended, no terminal
    /// to read them from), says why, once, and waits forever: the view goes on without keys.
    pub(crate) async fn next_event(&mut self) -> Result<Event, String> {
        let Some(keys) = &mut self.keys else {
            return std::future::pending().await;
        };
        let ended = match keys.next().await {
            Some(Ok(event)) => return Ok(event),
            Some(Err(error)) => format!("cannot read keys ({error}): q and d do not work"),
            None => "no more keys (stdin closed): q and d do not work".to_owned(),
        };
        self.keys = None;
        // Out of raw mode, Ctrl-C is SIGINT again.
        let _ = disable_raw_mode();
        Err(format!("{ended}; Ctrl-C or SIGTERM ends the view"))
    }

    /// Gives the terminal back: raw mode off now; the bytes that leave the alternate screen and
    /// show the cursor, to be written before anything else.
    pub(crate) fn give_back(mut self) -> Vec<u8> {
        self.taken = false;
        let _ = disable_raw_mode();
        let _ = crossterm::queue!(
            self.drawn,
            DisableBracketedPaste,
            LeaveAlternateScreen,
            Show
        );
        self.drawn.take()
    }
}

impl Drop for Screen {
    /// On an error that ends the command early: the terminal is given back at once, then the
    /// logs kept meanwhile are written.
    fn drop(&mut self) {
        if self.taken {
            give_back_now();
            crate::logs::release();
        }
    }
}

fn give_back_now() {
    let _ = disable_raw_mode();
    let mut stdout = io::stdout().lock();
    let _ = crossterm::execute!(stdout, DisableBracketedPaste, LeaveAlternateScreen, Show);
    let _ = stdout.flush();
}

/// A panic gives the terminal back before its message is written, so the message is readable
/// and the shell usable.
fn give_back_on_panic() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if crossterm::terminal::is_raw_mode_enabled().unwrap_or(false) {
                give_back_now();
                crate::logs::release();
            }
            previous(info);
        }));
    });
}

/// The next key press or resize of the view, or why there will be none (said in its footer);
/// never without a view.
pub(crate) async fn next_event(live: Option<&mut Live>) -> Result<Event, String> {
    match live {
        Some(live) => live.screen.next_event().await,
        None => std::future::pending().await,
    }
}

/// The view on the screen, with the logs it shows as they come.
pub(crate) struct Live {
    screen: Screen,
    pub(crate) view: LiveView,
    /// The newest log line shown.
    logs_seen: u64,
}

impl Live {
    /// Takes the terminal for `view`. Logs are kept from now on when they would go to the
    /// terminal, and written out by [`crate::logs::release`] once the screen is given back.
    pub(crate) fn start(view: LiveView) -> io::Result<Self> {
        let screen = Screen::take()?;
        if io::stderr().is_terminal() {
            crate::logs::keep();
        }
        Ok(Self {
            screen,
            view,
            logs_seen: 0,
        })
    }

    /// The bytes of the next frame, with the logs since the last one.
    pub(crate) fn frame(&mut self) -> io::Result<Vec<u8>> {
        let logs = crate::logs::newer_than(&mut self.logs_seen);
        self.view.add_logs(logs, Instant::now());
        self.screen.draw(&self.view)
    }

    /// Says that the last frame's bytes were not written.
    pub(crate) fn not_written(&mut self) {
        self.screen.not_written();
    }

    /// What a key asks for; a resize or another event only redraws, and keys that cannot be
    /// read are said.
    pub(crate) fn on_event(&mut self, event: Result<Event, String>) -> Option<Command> {
        match event {
            Ok(Event::Key(key)) => self.view.on_key(key),
            Ok(Event::Paste(_)) => {
                self.view.ignore_paste();
                None
            }
            Ok(_) => None,
            Err(why) => {
                tracing::warn!("{why}");
                self.view.say(why);
                None
            }
        }
    }

    /// The bytes that give the terminal back.
    pub(crate) fn close(self) -> Vec<u8> {
        self.screen.give_back()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::{TerminalOptions, Viewport, layout::Rect};

    use super::*;

    /// Frames after the first write only the cells that changed: no clearing, no flicker.
    #[test]
    fn only_changes_are_written() {
        let drawn = Drawn::default();
        let mut terminal = Terminal::with_options(
            CrosstermBackend::new(drawn.clone()),
            TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, 80, 24)),
            },
        )
        .expect("a terminal in memory");
        let mut view = LiveView::new(
            String::new(),
            Switching::Allowed { pinned: false },
            Duration::from_secs(1),
        );
        terminal.draw(|frame| view.draw(frame)).expect("draw");
        let first = drawn.take();
        terminal.draw(|frame| view.draw(frame)).expect("draw");
        let same = drawn.take();
        view.say("eth0: drop mode from now on".to_owned());
        terminal.draw(|frame| view.draw(frame)).expect("draw");
        let changed = drawn.take();
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        assert!(text(&first).contains("INTERFACE HOOK"), "{}", text(&first));
        // Nothing but where the cursor is left.
        assert!(same.len() < 40, "{}", text(&same));
        assert!(text(&changed).contains("eth0: drop mode from now on"));
        assert!(!text(&changed).contains("INTERFACE"), "{}", text(&changed));
        for frame in [&first, &same, &changed] {
            assert!(
                !text(frame).contains("\u{1b}[2J"),
                "a frame clears the screen"
            );
        }
    }
}
