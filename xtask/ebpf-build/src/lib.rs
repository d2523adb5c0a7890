//! Builds the workspace's eBPF crates with the pinned nightly toolchain. Called from the build
//! scripts that embed an object (each binary lands in `OUT_DIR` under its own name, for
//! `aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/<name>"))`), and by xtask, which sets the
//! toolchain up and lints with it.
//!
//! The build runs a cargo of its own, as aya-build does, but keeps its output: a build script can
//! only pass lines on as warnings, and aya-build passes every one, so a first build printed a
//! hundred `warning: …: Compiling …` lines. Here only the compiler's warnings are passed on, and a
//! failed build's error holds everything the inner cargo said.

use std::{
    env,
    io::{BufReader, Read as _},
    path::PathBuf,
    process::{Command, Stdio},
    thread,
};

use anyhow::{Context as _, anyhow, bail};
use cargo_metadata::{
    Artifact, CompilerMessage, Message, Metadata, Package,
    camino::Utf8Path,
    diagnostic::{Diagnostic, DiagnosticLevel},
};

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
    build_with_features(name, &[])
}

/// Builds the workspace package `name` with `features` once more, its object landing in
/// `OUT_DIR/<object>` beside the others: the build has a directory of its own under `OUT_DIR`,
/// since every build of a package names its object the same.
pub fn build_variant(name: &str, features: &[&str], object: &str) -> anyhow::Result<()> {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let variant_dir = out_dir.join(format!("{object}.build"));
    std::fs::create_dir_all(&variant_dir)?;
    // SAFETY: a build script is one thread; OUT_DIR is put back before anything else runs.
    unsafe { env::set_var("OUT_DIR", &variant_dir) };
    let built = build_with_features(name, features);
    // SAFETY: as above.
    unsafe { env::set_var("OUT_DIR", &out_dir) };
    built?;
    let binary = binary_name(name)?;
    std::fs::copy(variant_dir.join(&binary), out_dir.join(object))
        .with_context(|| format!("copy the object of {name} with {features:?}"))?;
    Ok(())
}

/// The name of the (one) binary target of the workspace package `name`: its object's file name.
fn binary_name(name: &str) -> anyhow::Result<String> {
    let package = package(&metadata()?, name)?;
    package
        .targets
        .iter()
        .find(|target| target.is_bin())
        .map(|target| target.name.clone())
        .ok_or_else(|| anyhow!("{name} has no binary target"))
}

/// Source paths as the same names wherever the build ran: the object's BTF and debug info
/// name every source file, and `--version` prints the object's hash, which should say which
/// programs a binary holds, not where it was built.
fn path_remaps(nightly: &str, workspace: &Utf8Path) -> anyhow::Result<Vec<String>> {
    let sysroot = Command::new("rustup")
        .args(["run", nightly, "rustc", "--print", "sysroot"])
        .output()
        .context("rustc --print sysroot")?;
    if !sysroot.status.success() {
        bail!(
            "rustc --print sysroot failed: {}",
            String::from_utf8_lossy(&sysroot.stderr)
        );
    }
    let sysroot = String::from_utf8(sysroot.stdout)?.trim_end().to_owned();
    let cargo_home = match env::var_os("CARGO_HOME") {
        Some(home) => PathBuf::from(home),
        None => PathBuf::from(env::var_os("HOME").context("neither CARGO_HOME nor HOME set")?)
            .join(".cargo"),
    };
    Ok(vec![
        format!("--remap-path-prefix={workspace}=/localnet-probe"),
        format!("--remap-path-prefix={sysroot}=/rust"),
        format!("--remap-path-prefix={}=/cargo", cargo_home.display()),
    ])
}

fn metadata() -> anyhow::Result<Metadata> {
    cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("MetadataCommand::exec")
}

fn package(metadata: &Metadata, name: &str) -> anyhow::Result<Package> {
    metadata
        .packages
        .iter()
        .find(|package| package.name.as_str() == name)
        .cloned()
        .ok_or_else(|| anyhow!("{name} package not found"))
}

fn build_with_features(name: &str, features: &[&str]) -> anyhow::Result<()> {
    let metadata = metadata()?;
    let package = package(&metadata, name)?;
    let root_dir = package
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", package.manifest_path))?;
    // Cargo rebuilds the embedding crate when the eBPF crate's library changes (a build
    // dependency); this covers its binaries too.
    println!("cargo:rerun-if-changed={root_dir}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    let target = match env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() {
        Ok("little") => "bpfel-unknown-none",
        Ok("big") => "bpfeb-unknown-none",
        other => bail!("unsupported CARGO_CFG_TARGET_ENDIAN: {other:?}"),
    };
    let arch = env::var("CARGO_CFG_TARGET_ARCH").context("CARGO_CFG_TARGET_ARCH not set")?;
    let arch = if arch.starts_with("riscv64") {
        "riscv64"
    } else {
        &arch
    };
    let nightly = nightly()?;
    let remaps = path_remaps(&nightly, &metadata.workspace_root)?;
    let mut command = Command::new("rustup");
    command
        .args([
            "run",
            &nightly,
            "cargo",
            "build",
            "--package",
            name,
            "--bins",
        ])
        .args(["--message-format=json", "--release", "--target", target])
        .args(["-Z", "build-std=core", "--features", &features.join(",")])
        // Apart from OUT_DIR's objects: cargo locks its target dir, and a directory named as a
        // binary would stop the copy below.
        .arg("--target-dir")
        .arg(out_dir.join("ebpf-build").join(name))
        .env(
            "CARGO_ENCODED_RUSTFLAGS",
            [
                &format!("--cfg=bpf_target_arch=\"{arch}\""),
                "-Cdebuginfo=2",
                "-Clink-arg=--btf",
            ]
            .into_iter()
            .chain(remaps.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("\x1f"),
        )
        // Else the outer build's stable rustc would compile for the nightly's cargo.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {command:?}"))?;
    let mut stderr = child.stderr.take().expect("piped");
    let said = thread::spawn(move || {
        let mut said = String::new();
        stderr.read_to_string(&mut said).map(|_| said)
    });
    let mut binaries = Vec::new();
    let mut diagnostics: Vec<Diagnostic> = Vec::new();
    for message in Message::parse_stream(BufReader::new(child.stdout.take().expect("piped"))) {
        match message.context("reading the eBPF build's messages")? {
            Message::CompilerArtifact(Artifact {
                executable: Some(executable),
                target,
                ..
            }) => binaries.push((target.name, executable)),
            Message::CompilerMessage(CompilerMessage { message, .. }) => diagnostics.push(message),
            _ => {}
        }
    }
    let status = child.wait().context("waiting for the eBPF build")?;
    let said = said
        .join()
        .map_err(|_| anyhow!("the eBPF build's stderr reader panicked"))?
        .context("reading the eBPF build's stderr")?;
    let rendered = |diagnostic: &Diagnostic| {
        diagnostic
            .rendered
            .clone()
            .unwrap_or_else(|| diagnostic.message.clone())
    };
    if !status.success() {
        let diagnostics: Vec<String> = diagnostics.iter().map(rendered).collect();
        bail!(
            "building {name} for {target} failed ({status}): {command:?}\n{}\n{said}",
            diagnostics.join("\n")
        );
    }
    for warning in diagnostics
        .iter()
        .filter(|diagnostic| diagnostic.level == DiagnosticLevel::Warning)
    {
        for line in rendered(warning).lines() {
            println!("cargo:warning={line}");
        }
    }
    for (binary, built) in binaries {
        std::fs::copy(&built, out_dir.join(&binary))
            .with_context(|| format!("copy {built} to OUT_DIR/{binary}"))?;
    }
    Ok(())
}
