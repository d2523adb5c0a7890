//! The full-screen live view as a user meets it: the real binary in a terminal (tmux) of 80×24
//! in a test namespace, frames sent, keys pressed, the screen read back. Needs root and tmux.

use std::{
    net::{Ipv4Addr, SocketAddr},
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use test_frames::ipv4;
use testbed::{Link, Netns, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, receive};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const QUIET: Duration = Duration::from_millis(300);
const SCREEN_WAIT: Duration = Duration::from_secs(10);
/// Printed by the pane's shell once the probe has exited, with the terminal's modes after it.
const EXITED: &str = "probe exited with";

/// A tmux server of the test's own (its own socket), ended when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A detached session of `width`×`height` running `PROBE args…` in `netns`, then, once it
    /// exits, printing its exit status and the terminal's modes and waiting.
    fn start(netns: &Netns, width: u16, height: u16, args: &str) -> Self {
        let socket = format!("lnp-test-{}-{}", std::process::id(), netns.name);
        let script = format!(
            "nsenter --net=/run/netns/{} {PROBE} {args}; echo \"{EXITED} $?\"; stty -a; sleep 60",
            netns.name
        );
        let tmux = Self { socket };
        let output = tmux.run(&[
            "new-session",
            "-d",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "sh",
            "-c",
            &script,
        ]);
        assert!(output.status.success(), "tmux new-session: {output:?}");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p"]).stdout).into_owned()
    }

    /// The screen with what scrolled off it.
    fn history(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-S", "-1000"]).stdout)
            .into_owned()
    }

    fn press(&self, keys: &[&str]) {
        let mut args = vec!["send-keys"];
        args.extend_from_slice(keys);
        assert!(self.run(&args).status.success());
    }

    /// `#{…}` of the pane, such as `alternate_on`.
    fn pane(&self, format: &str) -> String {
        String::from_utf8_lossy(&self.run(&["display-message", "-p", format]).stdout)
            .trim()
            .to_owned()
    }

    /// The screen once `done` holds for it, or a panic showing the last one.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + SCREEN_WAIT;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never showed {what}:\n{screen}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// The pid of the probe: the child of the pane's shell.
    fn probe_pid(&self) -> i32 {
        let shell = self.pane("#{pane_pid}");
        let children = std::fs::read_to_string(format!("/proc/{shell}/task/{shell}/children"))
            .expect("the shell's children");
        children
            .split_whitespace()
            .next()
            .and_then(|pid| pid.parse().ok())
            .expect("the probe runs under the shell")
    }

    /// After the probe exited: its status was 0, the alternate screen is left, the cursor
    /// shown, and the terminal is out of raw mode (canonical input and echo back on).
    fn assert_given_back(&self) -> String {
        let screen = self.wait_for("the probe's exit", |screen| screen.contains(EXITED));
        assert!(screen.contains(&format!("{EXITED} 0")), "{screen}");
        assert_eq!(self.pane("#{alternate_on}"), "0", "{screen}");
        assert_eq!(self.pane("#{cursor_flag}"), "1", "{screen}");
        let modes = screen.split(EXITED).nth(1).expect("stty's output");
        let words: Vec<&str> = modes.split_whitespace().collect();
        for mode in ["icanon", "echo", "isig", "icrnl", "opost"] {
            assert!(words.contains(&mode), "{mode} not restored:\n{screen}");
        }
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // Our server only: its socket is this test's.
        let _ = self.run(&["kill-server"]);
    }
}

fn spoofed_to_localhost(port: u16) -> Vec<u8> {
    ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .ports(40000, port)
        .build()
}

/// The row of `interface` in the table.
fn row<'a>(screen: &'a str, interface: &str) -> &'a str {
    screen
        .lines()
        .find(|line| line.starts_with(&format!("{interface} ")))
        .unwrap_or_else(|| panic!("no row for {interface}:\n{screen}"))
}

fn cells(row: &str) -> Vec<&str> {
    row.split_whitespace().collect()
}

/// Frames show up on the screen as they arrive; `d` then `y` switches the interface to drop
/// mode live and the next frames no longer reach the service bound to 127.0.0.1; the view
/// fits the terminal as it is resized; `q` detaches and gives the terminal back.
#[test]
#[ignore = "needs root"]
fn shows_frames_and_switches_to_drop_mode_on_a_key() {
    let link = Link::new("tui");
    link.receiver
        .sysctl(&format!("net/ipv4/conf/{RECEIVER_IF}/route_localnet"), "1");
    let server = link.receiver_udp(SocketAddr::from((Ipv4Addr::LOCALHOST, 5353)));
    let tmux = Tmux::start(
        &link.receiver,
        80,
        24,
        &format!("run --iface {RECEIVER_IF} --interval 0.2"),
    );
    let screen = tmux.wait_for("the interface and its exposure", |screen| {
        screen.contains(&format!("EXPOSED {RECEIVER_IF}: route_localnet=1"))
            && screen.contains(&format!("{RECEIVER_IF} "))
    });
    assert_eq!(
        &cells(row(&screen, RECEIVER_IF))[..5],
        ["vrx", "native", "monitor", "1", "!"],
        "{screen}"
    );
    assert_eq!(tmux.pane("#{alternate_on}"), "1");

    let sender = link.raw_sender();
    for _ in 0..10 {
        sender.send(&spoofed_to_localhost(5353));
    }
    assert_eq!(
        receive(&server, 10, QUIET),
        10,
        "monitor mode lets them through"
    );
    let screen = tmux.wait_for("ten frames passed", |screen| {
        screen.contains(&format!("{RECEIVER_IF} "))
            && cells(row(screen, RECEIVER_IF)).get(5) == Some(&"10")
            && screen.contains("127.0.0.1:5353 udp")
    });
    // The breakdown under the row, one class.
    let class = screen
        .lines()
        .find(|line| line.starts_with("└ v4 dst"))
        .unwrap_or_else(|| panic!("no class row:\n{screen}"));
    assert_eq!(cells(class)[3..5], ["passed", "10"], "{screen}");
    assert!(screen.lines().count() <= 24);
    for line in screen.lines() {
        assert!(line.chars().count() <= 80, "{line:?}");
    }

    // Wider: more columns; back to 80×24: as before.
    assert!(
        tmux.run(&["resize-window", "-x", "200", "-y", "50"])
            .status
            .success()
    );
    tmux.wait_for("the wide layout", |screen| {
        screen
            .lines()
            .any(|line| line.starts_with("INTERFACE") && line.contains("SAMPLES"))
    });
    assert!(
        tmux.run(&["resize-window", "-x", "80", "-y", "24"])
            .status
            .success()
    );
    tmux.wait_for("the narrow layout", |screen| {
        screen
            .lines()
            .any(|line| line.starts_with("INTERFACE") && !line.contains("SAMPLES"))
    });

    // Text pasted into the wrong window is no key (the terminal brackets pastes): no quit.
    assert!(tmux.run(&["set-buffer", "dy q"]).status.success());
    assert!(tmux.run(&["paste-buffer", "-p"]).status.success());
    tmux.wait_for("the paste ignored", |screen| {
        screen.contains("pasted text ignored")
    });
    assert_eq!(tmux.pane("#{alternate_on}"), "1");

    tmux.press(&["d"]);
    tmux.wait_for("the question", |screen| {
        screen.contains(&format!(
            "Drop loopback-address frames arriving on {RECEIVER_IF} from now on?"
        )) && screen.contains("y: yes, any other key: no")
    });
    tmux.press(&["y"]);
    let screen = tmux.wait_for("drop mode", |screen| {
        screen.contains(&format!("{RECEIVER_IF} "))
            && cells(row(screen, RECEIVER_IF)).get(2) == Some(&"drop")
    });
    assert!(!screen.contains("EXPOSED"), "{screen}");
    for _ in 0..10 {
        sender.send(&spoofed_to_localhost(5353));
    }
    assert_eq!(receive(&server, 0, QUIET), 0, "drop mode stops them");
    let screen = tmux.wait_for("ten frames dropped", |screen| {
        screen.contains(&format!("{RECEIVER_IF} "))
            && cells(row(screen, RECEIVER_IF)).get(4..6) == Some(&["20", "10"])
    });
    assert!(
        screen
            .lines()
            .any(|line| line.starts_with("└ v4 dst") && line.contains("dropped")),
        "{screen}"
    );

    tmux.press(&["q"]);
    tmux.assert_given_back();
    // The final table stays, and the logs kept while the view was open follow it.
    let history = tmux.history();
    assert!(
        history.contains("localnet-probe: 1 interface(s)") && history.contains("detached"),
        "{history}"
    );
    assert!(
        history.contains(&format!(
            "{RECEIVER_IF}: switched to drop mode from the live view"
        )),
        "{history}"
    );
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}

/// SIGTERM ends the view like `q`: detached, the terminal given back.
#[test]
#[ignore = "needs root"]
fn sigterm_gives_the_terminal_back() {
    let link = Link::new("tuiterm");
    let tmux = Tmux::start(
        &link.receiver,
        80,
        24,
        &format!("run --iface {RECEIVER_IF}"),
    );
    tmux.wait_for("the view", |screen| {
        screen.contains(&format!("{RECEIVER_IF} "))
    });
    assert_eq!(tmux.pane("#{alternate_on}"), "1");
    // SAFETY: a signal to the probe this test started.
    assert_eq!(unsafe { libc::kill(tmux.probe_pid(), libc::SIGTERM) }, 0);
    tmux.assert_given_back();
    assert!(!link.receiver.has_xdp(RECEIVER_IF));
}

/// `--plain` keeps the line table, on the normal screen.
#[test]
#[ignore = "needs root"]
fn plain_keeps_the_line_table() {
    let link = Link::new("tuiplain");
    let tmux = Tmux::start(
        &link.receiver,
        80,
        24,
        &format!("run --plain --iface {RECEIVER_IF} --duration 30"),
    );
    let screen = tmux.wait_for("the table", |screen| {
        screen.contains("localnet-probe: 1 interface(s)")
            && screen
                .lines()
                .any(|line| line.starts_with("INTERFACE  HOOK"))
    });
    assert!(screen.contains(&format!("{RECEIVER_IF} ")), "{screen}");
    assert_eq!(tmux.pane("#{alternate_on}"), "0");
    // Not Ctrl-C in the pane: that would end its shell too.
    // SAFETY: a signal to the probe this test started.
    assert_eq!(unsafe { libc::kill(tmux.probe_pid(), libc::SIGINT) }, 0);
    tmux.assert_given_back();
}
