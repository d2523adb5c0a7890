use which::which;

/// Rebuild when `bpf-linker` changes: building this crate depends on that binary, which cargo
/// cannot express as a dependency.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
}
