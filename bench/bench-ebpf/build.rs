use which::which;

/// Rebuild when `bpf-linker` changes: building this crate depends on that binary, which cargo
/// cannot express as a dependency.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
    // As for probe-ebpf: the header-reading program reads packet data with `read_unaligned`,
    // which must be single loads, not byte by byte, to cost what the probe's reads cost.
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
