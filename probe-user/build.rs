//! Builds `probe-ebpf`; the object lands in `OUT_DIR/localnet-probe-xdp`, where `PROBE_OBJECT`
//! embeds it. Also gives the binary what `--version` says of this build: the git revision
//! (`LOCALNET_PROBE_REVISION`) and the object's SHA-256 (`LOCALNET_PROBE_OBJECT_SHA256`).

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

/// What the binary is built from, relative to the workspace root: a change to any of them
/// makes the build `-dirty`. Changes elsewhere (the README, the tests of other crates) do not
/// change the binary, so they neither mark it nor rerun this script.
const SOURCES: [&str; 7] = [
    "Cargo.toml",
    "Cargo.lock",
    "probe-user/Cargo.toml",
    "probe-user/build.rs",
    "probe-user/src",
    "probe-common",
    "probe-ebpf",
];

fn main() -> anyhow::Result<()> {
    ebpf_build::build("probe-ebpf")?;
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let object = fs::read(out_dir.join("localnet-probe-xdp")).context("read the XDP object")?;
    let digest: String = Sha256::digest(&object)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    println!("cargo:rustc-env=LOCALNET_PROBE_OBJECT_SHA256={digest}");

    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("probe-user sits in the workspace")?;
    let revision = revision(workspace).unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=LOCALNET_PROBE_REVISION={revision}");
    // The manual pages' date: the commit's, so that a rebuild writes the same pages.
    let date =
        git(workspace, &["log", "-1", "--format=%cs"]).unwrap_or_else(|| "undated".to_owned());
    println!("cargo:rustc-env=LOCALNET_PROBE_DATE={date}");
    Ok(())
}

/// What `git args` prints in `workspace`, without its last newline; `None` when git is missing
/// or fails.
fn git(workspace: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("git")
        .args(args)
        .current_dir(workspace)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8(output.stdout).ok())
        .flatten()
        .map(|text| text.trim_end().to_owned())
}

/// The commit checked out, 12 hex digits, `-dirty` when [`SOURCES`] differ from it; `None`
/// outside a git checkout of this workspace (a source archive, or no git).
fn revision(workspace: &Path) -> Option<String> {
    let git = |args: &[&str]| git(workspace, args);
    // Not the revision of some other repository the workspace was copied into.
    let top = git(&["rev-parse", "--show-toplevel"])?;
    if fs::canonicalize(top).ok()? != fs::canonicalize(workspace).ok()? {
        return None;
    }
    // Rerun when the checkout moves or the index is written (a commit, an add), and when the
    // sources change; paths that do not exist are left out, as cargo would rerun every build.
    let mut watched: Vec<PathBuf> = SOURCES.iter().map(|path| workspace.join(path)).collect();
    let mut git_paths = vec![
        "HEAD".to_owned(),
        "index".to_owned(),
        "packed-refs".to_owned(),
    ];
    if let Some(reference) = git(&["symbolic-ref", "--quiet", "HEAD"]) {
        git_paths.push(reference);
    }
    for path in git_paths {
        if let Some(found) = git(&["rev-parse", "--git-path", &path]) {
            watched.push(workspace.join(found));
        }
    }
    for path in watched.iter().filter(|path| path.exists()) {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let mut status = vec!["status", "--porcelain", "--"];
    status.extend(SOURCES);
    let dirty = !git(&status)?.is_empty();
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}
