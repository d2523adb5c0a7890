//! localnet-probe's library: loads the embedded XDP programs, serves a selection of interfaces
//! for a session, and turns each reading into the report every view renders. The `localnet-probe`
//! binary's subcommands are thin layers over it.

mod bpffs;
mod counter_map;
pub mod exposure;
pub mod interfaces;
mod link;
pub mod link_events;
mod map_batch;
pub mod metrics;
pub mod occupant;
pub mod pcap;
pub mod pins;
pub mod privileges;
pub mod probe;
pub mod report;
pub mod retry;
pub mod route_localnet;
pub mod samples;
pub mod select;
pub mod senders;
pub mod session;
pub mod standing;

/// The XDP object built by `build.rs` from `probe-ebpf`.
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/localnet-probe-xdp"));
