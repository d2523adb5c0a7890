use std::{env, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// Builds `bench-ebpf`, whose object lands in `OUT_DIR/bench-xdp`, where `BENCH_OBJECT` embeds
/// it; the builds of `probe-ebpf` that stop after one step of a matched frame's path, each in
/// `OUT_DIR/<its feature>`, for `kernel_cost::STEPS`, and the build that holds the interface's
/// entry in the program, for `ENTRY_IN_PROGRAM`; and the C reference programs, in
/// `OUT_DIR/c-reference`, for `C_REFERENCE_OBJECT`.
fn main() -> anyhow::Result<()> {
    ebpf_build::build("bench-ebpf")?;
    for step in [
        "stop-after-classify",
        "stop-after-entry",
        "stop-after-counter",
    ] {
        ebpf_build::build_variant("probe-ebpf", &[step], step)?;
    }
    ebpf_build::build_variant("probe-ebpf", &["entry-in-program"], "entry-in-program")?;
    build_c_reference()
}

/// `c-reference/loopback.c` with clang, as C XDP programs are built: `-O2`, BTF for its maps.
fn build_c_reference() -> anyhow::Result<()> {
    let source = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("no CARGO_MANIFEST_DIR")?)
        .join("../c-reference/loopback.c");
    println!("cargo::rerun-if-changed={}", source.display());
    let out = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?).join("c-reference");
    // linux/bpf.h includes asm/types.h, which Debian keeps under the host's multiarch directory;
    // clang does not look there when building for the BPF target.
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .context("gcc -print-multiarch")?;
    let multiarch = String::from_utf8(multiarch.stdout)?;
    let status = Command::new("clang")
        .args([
            "-O2", "-g", "-target", "bpf", "-mcpu=v3", "-Wall", "-Werror",
        ])
        .arg(format!("-I/usr/include/{}", multiarch.trim()))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&out)
        .status()
        .context(
            "cannot run clang, which builds the benchmark's C reference programs: install Debian's \
             clang (`cargo xtask bench` and `cargo xtask test` do)",
        )?;
    if !status.success() {
        bail!("clang failed on {}", source.display());
    }
    Ok(())
}
