//! Called from a build script: builds a workspace eBPF crate for the BPF target with the nightly
//! toolchain (aya-build), leaving each of its binaries in `OUT_DIR` under the binary's name, for
//! `aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/<name>"))`.

use anyhow::{Context as _, anyhow};
use aya_build::Toolchain;

/// Builds the workspace package `name`.
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
    aya_build::build_ebpf(
        [aya_build::Package {
            name,
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::default(),
    )
}
