//! deploy/systemd/localnet-probe.service: systemd's own parser accepts it, its exposure score
//! is the one docs/standing-filter.md gives, and its ExecStart, run with exactly its capabilities as an unprivileged user
//! without new privileges, pins, serves metrics, counts, is taken over by its restart, and makes
//! no system call its SystemCallFilter refuses. systemd is not PID 1 here, so the unit itself is
//! not started: its sandbox is held against what the probe does instead.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use testbed::{KillOnDrop, Link, RECEIVER_IF, TempDir};

use crate::{PROBE, checked, deploy, send_loopback_frames, wait_for_passed};

/// The exposure level `systemd-analyze security` gives the unit, times ten
/// (docs/standing-filter.md, "Running as a service").
const EXPOSURE_TIMES_TEN: u32 = 18;

/// The `[Service]` settings of the unit, in order, a key as often as it is given.
struct Service(Vec<(String, String)>);

impl Service {
    fn read() -> Self {
        let unit = fs::read_to_string(deploy("systemd/localnet-probe.service")).expect("the unit");
        let mut section = "";
        let mut settings = Vec::new();
        for line in unit.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('[') {
                section = line;
                continue;
            }
            if section == "[Service]" {
                let (key, value) = line.split_once('=').expect("key=value");
                settings.push((key.to_owned(), value.to_owned()));
            }
        }
        Self(settings)
    }

    fn values(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, value)| value.as_str())
            .collect()
    }

    fn value(&self, key: &str) -> &str {
        match self.values(key)[..] {
            [value] => value,
            ref values => panic!("{key} given {} times", values.len()),
        }
    }

    /// The unit's own environment (Environment=, each assignment a word, quotes around one
    /// with spaces).
    fn environment(&self) -> BTreeMap<String, String> {
        let mut environment = BTreeMap::new();
        for value in self.values("Environment") {
            let mut words = Vec::new();
            let mut word = String::new();
            let mut quoted = false;
            for c in value.chars() {
                match c {
                    '"' => quoted = !quoted,
                    c if c.is_whitespace() && !quoted => words.push(std::mem::take(&mut word)),
                    c => word.push(c),
                }
            }
            words.push(word);
            for assignment in words.into_iter().filter(|word| !word.is_empty()) {
                let (name, value) = assignment.split_once('=').expect("NAME=value");
                environment.insert(name.to_owned(), value.to_owned());
            }
        }
        environment
    }

    /// ExecStart's words with the unit's environment put in as systemd does: `${NAME}` as part
    /// of a word, `$NAME` alone split at whitespace.
    fn exec_start(&self) -> Vec<String> {
        let environment = self.environment();
        let mut words = Vec::new();
        for word in self.value("ExecStart").split_whitespace() {
            if let Some(name) = word.strip_prefix('$').filter(|name| !name.starts_with('{')) {
                words.extend(environment[name].split_whitespace().map(str::to_owned));
                continue;
            }
            let mut word = word.to_owned();
            for (name, value) in &environment {
                word = word.replace(&format!("${{{name}}}"), value);
            }
            assert!(!word.contains('$'), "unknown variable in {word}");
            words.push(word);
        }
        words
    }

    /// The capabilities, as setpriv takes them (`+bpf,+net_admin`): the ambient set, which must
    /// be the bounding set.
    fn capabilities(&self) -> String {
        let ambient = self.value("AmbientCapabilities");
        assert_eq!(ambient, self.value("CapabilityBoundingSet"));
        ambient
            .split_whitespace()
            .map(|cap| {
                format!(
                    "+{}",
                    cap.strip_prefix("CAP_")
                        .expect("CAP_ names")
                        .to_ascii_lowercase()
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The system calls SystemCallFilter= allows: its allow list, groups expanded by
    /// `systemd-analyze syscall-filter`, less those of its `~` lines.
    fn allowed_syscalls(&self) -> BTreeSet<String> {
        let mut allowed = BTreeSet::new();
        for line in self.values("SystemCallFilter") {
            let (deny, names) = match line.strip_prefix('~') {
                Some(names) => (true, names),
                None => (false, line),
            };
            let expanded = names.split_whitespace().flat_map(expand_syscalls);
            if deny {
                for name in expanded {
                    allowed.remove(&name);
                }
            } else {
                allowed.extend(expanded);
            }
        }
        allowed
    }
}

/// A system call's name, or the names in a `@group` and the groups it includes.
fn expand_syscalls(name: &str) -> Vec<String> {
    if !name.starts_with('@') {
        return vec![name.to_owned()];
    }
    let listing = checked(Command::new("systemd-analyze").args(["syscall-filter", name]));
    listing
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .flat_map(expand_syscalls)
        .collect()
}

/// A unit that configures the network between network-pre.target and sysinit.target, as
/// cloud-init's network stage does on Debian and Ubuntu images.
const EARLY_NETWORK_UNIT: &str = "[Unit]
DefaultDependencies=no
Wants=network-pre.target
After=network-pre.target
Before=sysinit.target

[Service]
Type=oneshot
ExecStart=/bin/true
";

/// Checked alone, and beside a unit that configures the network before sysinit.target: no
/// ordering cycle (one made systemd drop network-pre.target at boot on such hosts).
#[test]
#[ignore = "needs root"]
fn systemd_analyze_verify_accepts_the_unit() {
    let unit = deploy("systemd/localnet-probe.service");
    let exec_start = Service::read().exec_start();
    let binary = Path::new(&exec_start[0]);
    let units = TempDir::new("units");
    fs::copy(&unit, units.path().join("localnet-probe.service")).expect("copy the unit");
    let early = units.path().join("early-network.service");
    fs::write(&early, EARLY_NETWORK_UNIT).expect("write the early network unit");
    // verify wants the binary where ExecStart names it: there, on a tmpfs in a mount namespace
    // of its own, so the host is left as it was.
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -t tmpfs tmpfs \"$1\" && cp \"$2\" \"$3\" && \
             systemd-analyze verify --man=false \"$4\" && \
             SYSTEMD_UNIT_PATH=\"$5:\" exec systemd-analyze verify --man=false \
               \"$5/early-network.service\" \"$5/localnet-probe.service\"",
        )
        .arg("sh")
        .arg(binary.parent().expect("a directory"))
        .arg(PROBE)
        .arg(binary)
        .arg(&unit)
        .arg(units.path())
        .output()
        .expect("run unshare");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{}: {said}", output.status);
    // Unknown keys and values are warnings, with exit status 0.
    assert!(said.trim().is_empty(), "systemd-analyze verify: {said}");
}

#[test]
#[ignore = "needs root"]
fn the_units_exposure_score_is_the_documented_one() {
    let report = checked(
        Command::new("systemd-analyze")
            .args([
                "security",
                "--offline=true",
                &format!("--threshold={EXPOSURE_TIMES_TEN}"),
            ])
            .arg(deploy("systemd/localnet-probe.service")),
    );
    let level = report
        .lines()
        .find_map(|line| line.strip_prefix("→ Overall exposure level for localnet-probe.service: "))
        .unwrap_or_else(|| panic!("no overall exposure level in\n{report}"));
    eprintln!("systemd-analyze security: {level}");
}

#[test]
#[ignore = "needs root"]
fn the_units_command_runs_with_its_capabilities_and_system_calls() {
    const FRAMES: u64 = 30;
    let service = Service::read();
    let args = &service.exec_start()[1..];
    let metrics = args[args
        .iter()
        .position(|arg| arg == "--metrics")
        .expect("--metrics")
        + 1]
    .clone();
    let allowed = service.allowed_syscalls();
    assert!(allowed.contains("read"), "groups expanded: {allowed:?}");
    assert_eq!(service.value("NoNewPrivileges"), "yes");
    // The dynamic user owns nothing, like nobody.
    assert_eq!(service.value("DynamicUser"), "yes");
    let mut wrapper = testbed::only_caps(&service.capabilities());
    wrapper.push("--no-new-privs".to_owned());

    let link = Link::new("unit");
    let traces = TempDir::new("unit-strace");
    // The first start pins the standing filter; the second, a restart, takes it over and the
    // counts go on.
    for (start, counted) in [(1, FRAMES), (2, 2 * FRAMES)] {
        let trace = traces.path().join(format!("start-{start}"));
        let stderr = fs::File::create(traces.path().join(format!("stderr-{start}"))).unwrap();
        let mut probe = KillOnDrop(
            Command::new("strace")
                .args(["-f", "-qq", "-o"])
                .arg(&trace)
                .arg("nsenter")
                .arg(format!("--net=/run/netns/{}", link.receiver.name))
                .args(&wrapper)
                .arg(PROBE)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .spawn()
                .expect("run strace (cargo xtask test installs it)"),
        );
        let stderr_file = traces.path().join(format!("stderr-{start}"));
        let mut last_words = || {
            let status = probe.last_words();
            let said = fs::read_to_string(&stderr_file).unwrap_or_default();
            format!("(under strace) {status}; stderr: {said}")
        };
        send_after_scrape(&link, &metrics, FRAMES, &mut last_words);
        wait_for_passed(&link.receiver, &metrics, counted, &mut last_words);
        // The probe, not strace, is what systemd signals; strace exits with its status.
        let traced = fs::read_to_string(format!("/proc/{0}/task/{0}/children", probe.0.id()))
            .expect("strace's children");
        let traced: i32 = traced.trim().parse().expect("one traced process");
        // SAFETY: signals the process this test started, by its pid.
        unsafe { libc::kill(traced, libc::SIGTERM) };
        let status = testbed::wait_exit(&mut probe.0, Duration::from_secs(20));
        let said = fs::read_to_string(traces.path().join(format!("stderr-{start}"))).unwrap();
        assert!(status.success(), "start {start}: {status}; stderr: {said}");
        assert!(
            said.contains("the standing filter stays attached"),
            "start {start}: {said}"
        );
        assert!(link.receiver.has_xdp(RECEIVER_IF), "the filter stays");

        let refused: BTreeSet<String> = syscalls_after_exec(&trace)
            .into_iter()
            .filter(|name| !allowed.contains(name))
            .collect();
        assert!(
            refused.is_empty(),
            "start {start}: SystemCallFilter= refuses {refused:?}, which the probe called"
        );
    }
}

/// Sends `count` frames once the probe serves metrics at `address`; gives up with `last_words`.
fn send_after_scrape(
    link: &Link,
    address: &str,
    count: u64,
    last_words: &mut dyn FnMut() -> String,
) {
    crate::scrape(&link.receiver, address, last_words);
    send_loopback_frames(link, count);
}

/// The system calls in strace's output `trace` (`-f`) from the probe's execve on: those of
/// nsenter and setpriv before it are not the service's.
fn syscalls_after_exec(trace: &Path) -> BTreeSet<String> {
    let trace = fs::read_to_string(trace).expect("strace's output");
    let exec = trace
        .lines()
        .position(|line| line.contains(&format!("execve(\"{PROBE}\"")) && line.ends_with("= 0"))
        .unwrap_or_else(|| panic!("no execve of the probe in\n{trace}"));
    trace
        .lines()
        .skip(exec)
        .filter_map(|line| {
            // `1234 name(…`, or `1234 <... name resumed>…`.
            let call = line.split_once(' ')?.1.trim_start();
            let name = call.strip_prefix("<... ").unwrap_or(call);
            let end = name.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            (end > 0 && !name.starts_with("+++") && !name.starts_with("---"))
                .then(|| name[..end].to_owned())
        })
        .collect()
}
