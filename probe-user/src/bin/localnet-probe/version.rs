//! `--version`: what a bug report needs of this build and of this kernel.

use std::{io::Write as _, process::ExitCode};

use probe_user::{kernel::features::KernelReport, net::names::printable};

/// The git revision built, 12 hex digits with `-dirty` when the sources differed from it, or
/// `unknown` outside a git checkout (build.rs).
const REVISION: &str = env!("LOCALNET_PROBE_REVISION");
/// SHA-256 of the embedded XDP object (build.rs): two builds that load the same programs say
/// the same, whatever else changed.
const OBJECT_SHA256: &str = env!("LOCALNET_PROBE_OBJECT_SHA256");

/// The build's lines: the version, then the revision and the object's hash.
fn build_lines() -> String {
    format!(
        "localnet-probe {}\nrevision {REVISION}, eBPF object sha256 {}\n",
        env!("CARGO_PKG_VERSION"),
        &OBJECT_SHA256[..12]
    )
}

/// Prints the build's lines, the minimum kernel and this kernel's features; exit 0 also when
/// they cannot be probed (it says so).
pub(crate) fn print_version() -> ExitCode {
    let mut text = build_lines();
    for line in KernelReport::of_this_kernel().lines().lines() {
        text.push_str(&printable(line));
        text.push('\n');
    }
    match std::io::stdout().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
