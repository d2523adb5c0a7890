//! The files in deploy/, each checked by the tool that consumes it and run as a fleet would run
//! it: the systemd unit (`systemd-analyze`, and the probe under the unit's capabilities and
//! system call filter), the image (built by podman, its binary run), the Kubernetes manifests
//! (kubernetes-validate, strict, and the DaemonSet's container as the kubelet would start it),
//! the Prometheus configuration and rules (promtool) and the Grafana dashboard (every query
//! through a real Prometheus scraping the probe), and the Debian package (lintian, and
//! installed into a throwaway root). `cargo xtask test` installs the tools and builds the image
//! and the package first; like the root tests, these are skipped without root.

mod container;
mod kubernetes;
mod monitoring;
mod package;
mod systemd;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    process::Command,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use test_frames::ipv4;
use testbed::{Link, Netns, RECEIVER_IF, RECEIVER_MAC, SENDER_MAC, SENDER_V4, try_http_get};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `deploy/<path>` in the repository.
fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

/// Runs `command` to its end; panics with its output unless it succeeds. Its stdout.
fn checked(command: &mut Command) -> String {
    String::from_utf8(testbed::succeeded(command).stdout).expect("UTF-8 output")
}

/// The virtual environment `cargo xtask test` installs kubernetes-validate (and PyYAML) into.
fn venv_bin(program: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("deploy-tools/venv/bin")
        .join(program)
}

/// The YAML documents of `path`, read by PyYAML, as JSON.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let json = checked(
        Command::new(venv_bin("python"))
            .args([
                "-c",
                "import json, sys, yaml; json.dump(list(yaml.safe_load_all(open(sys.argv[1]))), sys.stdout)",
            ])
            .arg(path),
    );
    serde_json::from_str(&json).expect("JSON from PyYAML")
}

/// Sends `count` frames from the sender to 127.0.0.1 through the receiver's interface.
fn send_loopback_frames(link: &Link, count: u64) {
    let frame = ipv4(SENDER_V4, Ipv4Addr::LOCALHOST)
        .macs(SENDER_MAC, RECEIVER_MAC)
        .build();
    let sender = link.raw_sender();
    for _ in 0..count {
        sender.send(&frame);
    }
}

/// The `/metrics` page at `address` in `netns` once it answers 200, within 30 s; gives up with
/// `last_words` (the probe's exit status and stderr).
fn scrape(netns: &Netns, address: &str, last_words: &mut dyn FnMut() -> String) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match try_http_get(netns, address, "/metrics", None) {
            Ok(page) if page.status == 200 => return page.body,
            _ => {}
        }
        if Instant::now() >= deadline {
            panic!(
                "no metrics at {address} within 30 s; the probe {}",
                last_words()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most 20 s) until the page at `address` counts `count` frames to 127.0.0.1 passed on
/// the receiver's interface; gives up with `last_words`, as [`scrape`].
fn wait_for_passed(
    netns: &Netns,
    address: &str,
    count: u64,
    last_words: &mut dyn FnMut() -> String,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    // The interface's own series, by action: it has counted frames.
    let line_start =
        format!("localnet_probe_packets_total{{interface=\"{RECEIVER_IF}\",action=\"passed\"}} ");
    loop {
        let page = scrape(netns, address, last_words);
        let counted = page
            .lines()
            .find_map(|line| line.strip_prefix(&line_start))
            .map(str::to_owned);
        if counted.as_deref() == Some(&count.to_string()) {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{count} frames not counted within 20 s: {counted:?}; the probe {}",
                last_words()
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}
