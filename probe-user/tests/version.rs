//! `--version` carries what a bug report needs: the version, the git revision built (dirty or
//! not), the embedded eBPF object's hash, the minimum kernel the docs state, this kernel.

use std::{
    io::Write as _,
    path::Path,
    process::{Command, Stdio},
};

const PROBE: &str = env!("CARGO_BIN_EXE_localnet-probe");

/// Runs git in the workspace; `None` outside a git checkout.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).expect("UTF-8"))
}

/// `sha256sum` of `bytes`, in hex.
fn sha256sum(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(bytes)
        .expect("write to sha256sum");
    let output = child.wait_with_output().expect("sha256sum's output");
    String::from_utf8(output.stdout).expect("UTF-8")[..64].to_owned()
}

#[test]
fn version_says_the_revision_the_object_hash_and_the_minimum_kernel() {
    let output = Command::new(PROBE)
        .arg("--version")
        .output()
        .expect("run localnet-probe --version");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(
        lines[0],
        format!("localnet-probe {}", env!("CARGO_PKG_VERSION"))
    );

    let (revision, object) = lines[1]
        .strip_prefix("revision ")
        .and_then(|rest| rest.split_once(", eBPF object sha256 "))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        object,
        &sha256sum(probe_user::PROBE_OBJECT)[..12],
        "the embedded object's hash"
    );
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(commit) => {
            let (commit_said, dirty) = revision
                .strip_suffix("-dirty")
                .map_or((revision, false), |commit| (commit, true));
            assert_eq!(commit_said, commit.trim(), "{text}");
            // What the binary is built from, as build.rs checks it: a change there rebuilds it.
            let status = git(&[
                "status",
                "--porcelain",
                "--",
                "Cargo.toml",
                "Cargo.lock",
                "probe-user/Cargo.toml",
                "probe-user/build.rs",
                "probe-user/src",
                "probe-common",
                "probe-ebpf",
            ])
            .expect("git status");
            assert_eq!(dirty, !status.is_empty(), "{text}\n{status}");
        }
        None => assert_eq!(revision, "unknown"),
    }

    // The minimum the docs state.
    let kernels =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/kernels.md"))
            .expect("docs/kernels.md");
    let stated = kernels
        .split("**Linux ")
        .nth(1)
        .and_then(|rest| rest.split_once(" or newer**"))
        .map(|(version, _)| version)
        .expect("docs/kernels.md states the minimum as **Linux X or newer**");
    assert!(
        lines[2].starts_with(&format!("minimum kernel: Linux {stated};")),
        "{text}"
    );
    assert!(lines[3].starts_with("kernel "), "{text}");
}
