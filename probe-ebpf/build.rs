use which::which;

fn main() {
    // Rebuild when `bpf-linker` changes: building this crate depends on that binary, which cargo
    // cannot express as a dependency.
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.display());
    // Packet data has no alignment guarantee, so the program reads it with `read_unaligned`;
    // this lets LLVM emit those as single loads (which the verifier and the JITs accept) instead
    // of byte by byte.
    println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
}
