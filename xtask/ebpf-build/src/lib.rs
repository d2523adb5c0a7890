//! Builds the workspace's eBPF crates with the pinned nightly toolchain. Called from the build
//! scripts that embed an object (each binary lands in `OUT_DIR` under its own name, for
//! `aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/<name>"))`), and by xtask, which sets the
//! toolchain up and lints with it.

use std::process::Command;

use anyhow::{Context as _, anyhow, bail};
use aya_build::Toolchain;

/// The nightly that builds the eBPF crates, by the date rustup names it with. Its LLVM must be
/// bpf-linker's (22); a newer nightly can move either, so it is pinned here and checked.
pub const NIGHTLY_DATE: &str = "2026-05-19";

/// The rustup toolchain to build with: `nightly-<NIGHTLY_DATE>` when installed under that name,
/// else `nightly` if it is that same build. Any other nightly is refused with what to install.
pub fn nightly() -> anyhow::Result<String> {
    let pinned = format!("nightly-{NIGHTLY_DATE}");
    for toolchain in [pinned.as_str(), "nightly"] {
        if commit_date(toolchain).as_deref() == Some(NIGHTLY_DATE) {
            return Ok(toolchain.to_owned());
        }
    }
    let found = commit_date("nightly").map_or_else(
        || "no nightly toolchain is installed".to_owned(),
        |date| format!("the installed nightly is from {date}"),
    );
    bail!(
        "the eBPF crates build with the nightly of {NIGHTLY_DATE}, and {found}: run `rustup \
         toolchain install {pinned} --component rust-src` (or change NIGHTLY_DATE in \
         xtask/ebpf-build together with bpf-linker's LLVM)"
    )
}

/// The commit date `rustc` of `toolchain` reports, if that toolchain is installed.
fn commit_date(toolchain: &str) -> Option<String> {
    let output = Command::new("rustup")
        .args(["run", toolchain, "rustc", "-vV"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8(output.stdout)
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("commit-date: "))
        .map(str::to_owned)
}

/// Builds the workspace package `name` for the BPF target.
pub fn build(name: &str) -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")?;
    let package = packages
        .into_iter()
        .find(|package| package.name.as_str() == name)
        .ok_or_else(|| anyhow!("{name} package not found"))?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    let nightly = nightly()?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(&nightly),
    )
}
