//! localnet-probe's loader: loads the embedded XDP program, attaches it, reads its counters, and
//! reports them beside each interface's route_localnet setting.

pub mod interfaces;
pub mod privileges;
pub mod probe;
pub mod report;
pub mod route_localnet;

/// The XDP object built by `build.rs` from `probe-ebpf`.
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/localnet-probe-xdp"));
