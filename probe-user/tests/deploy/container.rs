//! deploy/container/Containerfile, as `cargo xtask image` built it: one static binary, labelled,
//! that runs taken out of the image. Containers cannot be run on every machine that builds
//! images (not on this one: its cgroups are hybrid), so the binary is mounted out of the image
//! and run in a test namespace.

use std::{fs, path::Path, process::Command, time::Duration};

use serde_json::Value;
use testbed::{Link, ProbeProcess, RECEIVER_IF, TempDir, interface};

use crate::{VERSION, checked, send_loopback_frames};

/// What `cargo xtask image` tags the image with, beside `<version>-<revision>`.
fn image() -> String {
    format!("localhost/localnet-probe:{VERSION}")
}

/// The image's id, by `tag`.
fn image_id(tag: &str) -> String {
    checked(Command::new("podman").args(["image", "inspect", "--format", "{{.Id}}", tag]))
}

/// The files under `dir`, relative to it.
fn files(dir: &Path, under: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(files(&path, under));
        } else {
            found.push(
                path.strip_prefix(under)
                    .expect("under the root")
                    .display()
                    .to_string(),
            );
        }
    }
    found
}

#[test]
#[ignore = "needs root"]
fn the_image_holds_one_static_binary_that_counts_frames() {
    const FRAMES: u64 = 25;
    let inspected: Value = serde_json::from_str(&checked(Command::new("podman").args([
        "image",
        "inspect",
        &image(),
    ])))
    .unwrap_or_else(|e| panic!("podman image inspect: {e}; build it with `cargo xtask image`"));
    let config = &inspected[0]["Config"];
    let entrypoint = config["Entrypoint"][0].as_str().expect("an entrypoint");
    assert_eq!(config["Entrypoint"].as_array().unwrap().len(), 1);
    assert_eq!(config["Cmd"][0], "run", "{config}");
    assert_eq!(config["User"], "0:0");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.title"], "localnet-probe");
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    let revision = labels["org.opencontainers.image.revision"]
        .as_str()
        .expect("a revision");
    assert!(
        revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
        "revision {revision}"
    );
    eprintln!("image {}: {} bytes", image(), inspected[0]["Size"]);

    let taken = TempDir::new("image");
    let binary = taken.path().join("localnet-probe");
    let root = checked(Command::new("podman").args(["image", "mount", &image()]));
    let root = Path::new(root.trim());
    let contents = files(root, root);
    let copied = fs::copy(root.join(entrypoint.trim_start_matches('/')), &binary);
    checked(Command::new("podman").args(["image", "unmount", &image()]));
    assert_eq!(contents, [entrypoint.trim_start_matches('/')], "one file");
    copied.expect("copy the binary out of the image");

    // Static: no program interpreter, so nothing of the host's libc is used.
    let headers = checked(
        Command::new("readelf")
            .args(["--program-headers", "--wide"])
            .arg(&binary),
    );
    assert!(!headers.contains("INTERP"), "{headers}");

    let binary = binary.to_str().expect("a UTF-8 path");
    let version = checked(Command::new(binary).arg("--version"));
    let mut lines = version.lines();
    assert_eq!(
        lines.next(),
        Some(format!("localnet-probe {VERSION}").as_str())
    );
    let revision = lines
        .next()
        .and_then(|line| line.strip_prefix("revision "))
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no revision: {version}"));
    assert!(
        lines
            .next()
            .is_some_and(|line| line.starts_with("minimum kernel: Linux ")),
        "{version}"
    );
    // Tagged with the revision the binary says too, so a rebuild at the same version is pulled.
    assert_eq!(
        image_id(&format!("{}-{revision}", image())),
        image_id(&image()),
        "cargo xtask image tags the same image <version> and <version>-{revision}"
    );

    let link = Link::new("image");
    let probe = ProbeProcess::start(
        binary,
        &link.receiver,
        &["--iface", RECEIVER_IF, "--duration", "4"],
    );
    probe.wait_ready();
    send_loopback_frames(&link, FRAMES);
    let (status, last) = probe.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "exit status {status}");
    let last = last.expect("a last report");
    assert_eq!(
        interface(&last, RECEIVER_IF)["packets_matched"],
        FRAMES,
        "{last}"
    );
}
