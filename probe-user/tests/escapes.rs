//! Interface names iproute2 accepts that a terminal, a shell, nft or the command line's own
//! patterns would read otherwise (ESC, BEL, an OSC sequence, `;`, `$(…)`, backquotes, `*`, `"`,
//! `.`, `=`, a byte that is not UTF-8), in a namespace with route_localnet=1 on each: no raw
//! control byte reaches the terminal from `run` (table, events, route_localnet changes),
//! `status`, `detach` or `audit`, and each command the audit suggests, run by `sh -c` in the
//! namespace, does exactly what it says: unsets that interface's route_localnet and no other,
//! adds an nft rule for that interface, drops on that interface alone, and creates none of the
//! marker files an injection would. Needs root.

use std::{
    ffi::OsStr,
    fs,
    net::{Ipv4Addr, TcpListener},
    os::unix::ffi::OsStrExt as _,
    process::{Command, Output},
    thread,
    time::Duration,
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{Netns, ProbeProcess, RawSender};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");

/// Each hostile name and its veth peer's. The peer of `t*` is `tp`, which `t*` as a pattern
/// would match.
const NAMES: [(&[u8], &str); 12] = [
    (b"e\x1b[31m", "p1"),
    (b"b\x07", "p2"),
    (b"o\x1b]0;X\x07", "p3"),
    (b"x;>m1", "p4"),
    (b"x$(>m2)", "p5"),
    (b"x`>m3`", "p6"),
    (b"t*", "tp"),
    (b"q\"x", "p8"),
    (b"a.b", "p9"),
    (b"a=b", "p10"),
    (b"n\xff", "p11"),
    // Five bytes, held as 17 characters: longer than a pinned name can be.
    (b"w\xfe\xfe\xfe\xfe", "p12"),
];

/// Sequences `run --plain` writes itself (highlighted alerts, a cleared screen before each
/// table); nothing else may drive the terminal.
const OWN_SEQUENCES: [&[u8]; 4] = [b"\x1b[1;7m", b"\x1b[0m", b"\x1b[H", b"\x1b[2J"];

fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

fn hostile_namespace() -> Netns {
    let netns = Netns::new("esc");
    for (name, peer) in NAMES {
        let status = Command::new("ip")
            .args(["-n", &netns.name, "link", "add"])
            .arg(os(name))
            .args(["type", "veth", "peer", "name", peer])
            .status()
            .expect("run ip");
        assert!(
            status.success(),
            "ip link add {:?}",
            String::from_utf8_lossy(name)
        );
        for device in [os(name), OsStr::new(peer)] {
            let status = Command::new("ip")
                .args(["-n", &netns.name, "link", "set", "dev"])
                .arg(device)
                .arg("up")
                .status()
                .expect("run ip");
            assert!(status.success());
        }
        set_route_localnet(&netns, name, true);
    }
    netns
}

fn route_localnet_path(name: &[u8]) -> std::path::PathBuf {
    let mut path = b"/proc/sys/net/ipv4/conf/".to_vec();
    path.extend_from_slice(name);
    path.extend_from_slice(b"/route_localnet");
    std::path::PathBuf::from(os(&path))
}

fn set_route_localnet(netns: &Netns, name: &[u8], on: bool) {
    let path = route_localnet_path(name);
    netns.enter(|| fs::write(&path, if on { "1" } else { "0" }).expect("write route_localnet"));
}

/// The hostile names whose route_localnet is 1 now.
fn route_localnet_on(netns: &Netns) -> Vec<&'static [u8]> {
    netns.enter(|| {
        NAMES
            .iter()
            .map(|(name, _)| *name)
            .filter(|name| {
                fs::read_to_string(route_localnet_path(name)).expect("read route_localnet") == "1\n"
            })
            .collect()
    })
}

/// `command` (a shell command line) run in `netns`'s network namespace and the host's mount
/// namespace on a terminal (`script`), as an operator sees it: everything written there. It
/// must exit with `code`.
fn on_terminal(netns: &Netns, command: &str, code: i32) -> Vec<u8> {
    let output = netns
        .command("script")
        .args(["-qec", command, "/dev/null"])
        .output()
        .expect("run script");
    assert_eq!(
        output.status.code(),
        Some(code),
        "{command}: {:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    output.stdout
}

/// Panics at the first control byte in `text` but a line end and `OWN_SEQUENCES`.
fn assert_no_control_bytes(what: &str, text: &[u8]) {
    let mut text = text.to_vec();
    for own in OWN_SEQUENCES {
        while let Some(at) = text.windows(own.len()).position(|window| window == own) {
            text.drain(at..at + own.len());
        }
    }
    let shown = String::from_utf8_lossy(&text);
    if let Some(bad) = shown
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\n' | '\r'))
    {
        panic!(
            "{what} wrote {bad:?} to the terminal:\n{}",
            shown.escape_debug()
        );
    }
}

#[test]
#[ignore = "needs root"]
fn run_status_and_detach_write_no_control_byte() {
    let netns = hostile_namespace();
    let scratch = Scratch::new("run");
    let err = scratch.0.join("stderr");
    let err_path = err.display().to_string();
    let run = thread::scope(|scope| {
        let run = scope.spawn(|| {
            on_terminal(
                &netns,
                &format!("{PROBE} run --plain --events --duration 4 2>>{err_path}"),
                0,
            )
        });
        netns.wait_for_xdp("e\x1b[31m", Duration::from_secs(10));
        let frame = ipv4(Ipv4Addr::new(198, 18, 0, 9), Ipv4Addr::LOCALHOST).build();
        netns.enter(|| {
            for (_, peer) in NAMES {
                let sender = RawSender::open(peer);
                for _ in 0..3 {
                    sender.send(&frame);
                }
            }
        });
        // A route_localnet change is said with the name in it.
        set_route_localnet(&netns, b"o\x1b]0;X\x07", false);
        run.join().expect("run on a terminal")
    });
    let stderr = fs::read(&err).expect("read stderr");
    assert_no_control_bytes("run's stderr", &stderr);
    assert_no_control_bytes("run --plain --events", &run);
    let shown = String::from_utf8_lossy(&run);
    // Events name the interface, escaped.
    assert!(
        shown
            .lines()
            .any(|line| line.contains(" e\\u{1b}[31m ") && line.contains("127.0.0.1")),
        "{}",
        shown.escape_debug()
    );
    assert!(
        shown.contains("o\\u{1b}]0;X\\u{7}"),
        "{}",
        shown.escape_debug()
    );
    // Compared raw, a name is never stacked on itself.
    assert!(
        !shown.lines().any(|line| line.contains(" via ")),
        "{}",
        shown.escape_debug()
    );

    // An error lists the interfaces there are.
    let unknown = netns.output(PROBE, &["run", "--iface", "nosuch", "--json"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("e\\u{1b}[31m"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr).escape_debug()
    );
    assert_no_control_bytes("run's error", &unknown.stderr);

    // Served by a probe started under a name of the operator's choosing: status names its
    // command line, escaped.
    let hostile_binary = scratch.0.join("lnp\x1b[31m\x1b]0;X\x07");
    std::os::unix::fs::symlink(PROBE, &hostile_binary).expect("link the binary");
    let pinned =
        ProbeProcess::start_pinned(hostile_binary.to_str().expect("a UTF-8 path"), &netns, &[]);
    pinned.wait_ready();
    let served = on_terminal(&netns, &format!("{PROBE} status 2>>{err_path}"), 0);
    assert_no_control_bytes("status, served", &served);
    assert!(
        String::from_utf8_lossy(&served).contains("lnp\\u{1b}[31m\\u{1b}]0;X\\u{7}"),
        "{}",
        String::from_utf8_lossy(&served).escape_debug()
    );
    let (status, _) = pinned.stop(libc::SIGTERM);
    assert!(status.success(), "run --pin: {status:?}");
    assert_no_control_bytes(
        "status",
        &on_terminal(&netns, &format!("{PROBE} status 2>>{err_path}"), 0),
    );
    // Its logs go to a file: on a terminal they are coloured.
    assert_no_control_bytes(
        "detach",
        &on_terminal(&netns, &format!("{PROBE} detach 2>{err_path}"), 0),
    );
    let detached = fs::read(&err).expect("read stderr");
    assert_no_control_bytes("detach's stderr", &detached);
    // A name that is not UTF-8 is pinned as its bytes and read back as held.
    for name in ["e\\u{1b}[31m", "n\\xff", "w\\xfe\\xfe\\xfe\\xfe"] {
        assert!(
            String::from_utf8_lossy(&detached).contains(&format!("detached from {name} ")),
            "{}",
            String::from_utf8_lossy(&detached).escape_debug()
        );
    }
}

/// A directory of this test's own, removed on drop.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "localnet-probe-escapes-{tag}-{}",
            std::process::id()
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `sh -c script` in `netns`, in `directory`.
fn sh(netns: &Netns, script: &str, directory: &std::path::Path) -> Output {
    netns
        .command("sh")
        .args(["-c", script])
        .current_dir(directory)
        .output()
        .expect("run sh")
}

/// `name` as localnet-probe holds it: UTF-8 as it is but a backslash, bytes that are not UTF-8
/// as `\xNN`.
fn held(name: &[u8]) -> String {
    let mut text = String::new();
    for chunk in name.utf8_chunks() {
        text.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            text.push_str(&format!("\\x{byte:02x}"));
        }
    }
    text
}

/// `name` as the terminal shows it: control characters as `\u{1b}`.
fn escaped(name: &[u8]) -> String {
    held(name)
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The part of `line` after `start` up to `end` (or the line's end).
fn between<'a>(line: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &line[line.find(start)? + start.len()..];
    Some(rest.find(end).map_or(rest, |at| &rest[..at]))
}

#[test]
#[ignore = "needs root"]
fn suggested_commands_do_exactly_what_they_say() {
    let netns = hostile_namespace();
    let _listener = netns.enter(|| TcpListener::bind("127.0.0.1:6379").expect("bind 6379"));
    // Exit code 1: an exposure was found.
    let audit = on_terminal(&netns, &format!("{PROBE} audit"), 1);
    assert_no_control_bytes("audit", &audit);
    let audit = String::from_utf8_lossy(&audit).replace('\r', "");
    let workdir = Scratch::new("markers");
    let mut checked = 0;
    let mut remedies_of = None;
    for line in audit.lines() {
        if let Some(finding) = line.strip_prefix("EXPOSURE ") {
            let shown = finding.split(": ").next().expect("a name");
            remedies_of = NAMES
                .iter()
                .map(|(name, _)| *name)
                .find(|name| shown == escaped(name));
            continue;
        }
        let Some(remedy) = line.strip_prefix("  - ") else {
            continue;
        };
        let Some(name) = remedies_of else {
            continue;
        };
        let text = held(name);
        if let Some(command) = between(remedy, "unset it: ", "\n") {
            let before = route_localnet_on(&netns);
            assert!(
                before.contains(&name),
                "{text:?} is not on before {command}"
            );
            let output = sh(&netns, command, &workdir.0);
            assert!(output.status.success(), "{command}: {output:?}");
            let expected: Vec<&[u8]> = before.into_iter().filter(|on| *on != name).collect();
            assert_eq!(route_localnet_on(&netns), expected, "{command}");
            set_route_localnet(&netns, name, true);
            checked += 1;
        } else if let Some(command) = between(remedy, "nftables: ", "; kubelet's") {
            let output = sh(&netns, command, &workdir.0);
            assert!(output.status.success(), "{command}: {output:?}");
            let listed = sh(
                &netns,
                "nft list chain inet localnet_guard prerouting",
                &workdir.0,
            );
            let listed = listed.stdout;
            // nft's strings cannot hold a `"`: such a name is matched by its index, which nft
            // lists with the name; a last `*` is written `\*`, else it is a wildcard.
            let mut expected = if name.contains(&b'"') {
                b"iif \"".to_vec()
            } else {
                b"iifname \"".to_vec()
            };
            match name.strip_suffix(b"*") {
                Some(before) => {
                    expected.extend_from_slice(before);
                    expected.extend_from_slice(b"\\*");
                }
                None => expected.extend_from_slice(name),
            }
            expected.extend_from_slice(b"\" ip daddr 127.0.0.0/8 drop");
            assert!(
                listed
                    .windows(expected.len())
                    .any(|window| window == expected),
                "{command}: {}",
                String::from_utf8_lossy(&listed).escape_debug()
            );
            let output = sh(&netns, "nft delete table inet localnet_guard", &workdir.0);
            assert!(output.status.success());
            checked += 1;
        } else if let Some(command) = between(remedy, "before the stack sees them: ", " (with") {
            let command = command.replacen("localnet-probe", PROBE, 1) + " --json --duration 0.5";
            let output = sh(&netns, &command, &workdir.0);
            assert!(output.status.success(), "{command}: {output:?}");
            let last: Value = serde_json::from_slice(
                output
                    .stdout
                    .split(|byte| *byte == b'\n')
                    .rfind(|line| !line.is_empty())
                    .expect("a report"),
            )
            .expect("JSON");
            let dropping: Vec<&str> = last["interfaces"]
                .as_array()
                .expect("interfaces")
                .iter()
                .filter(|interface| interface["mode"] == "drop")
                .map(|interface| interface["name"].as_str().expect("a name"))
                .collect();
            assert_eq!(dropping, [text.as_str()], "{command}");
            checked += 1;
        }
    }
    // Three commands for each name, UTF-8 or not.
    assert_eq!(checked, 3 * NAMES.len(), "{audit}");
    // `--iface` of run and audit take a name that is not UTF-8 as the remedies write it.
    let word = "'n'\"$(printf '\\377')\"";
    let command = format!("{PROBE} run --iface {word} --drop-on {word} --json --duration 0.5");
    let output = sh(&netns, &command, &workdir.0);
    assert!(output.status.success(), "{command}: {output:?}");
    let last: Value = serde_json::from_slice(
        output
            .stdout
            .split(|byte| *byte == b'\n')
            .rfind(|line| !line.is_empty())
            .expect("a report"),
    )
    .expect("JSON");
    let served: Vec<(&Value, &Value)> = last["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|interface| (&interface["name"], &interface["mode"]))
        .collect();
    assert_eq!(
        served,
        [(&Value::from("n\\xff"), &Value::from("drop"))],
        "{command}"
    );
    let command = format!("{PROBE} audit --json --iface {word}");
    let output = sh(&netns, &command, &workdir.0);
    let audited: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let names: Vec<&Value> = audited["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|interface| &interface["name"])
        .collect();
    assert_eq!(names, [&Value::from("n\\xff")], "{command}");
    let markers: Vec<_> = fs::read_dir(&workdir.0)
        .expect("read the directory")
        .map(|entry| entry.expect("an entry").file_name())
        .collect();
    assert!(markers.is_empty(), "an injection ran: {markers:?}");
}
