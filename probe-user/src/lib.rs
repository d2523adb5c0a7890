//! localnet-probe's library: loads the embedded XDP programs, serves a selection of interfaces
//! for a session, and turns each reading into the report every view renders. The `localnet-probe`
//! binary's subcommands are thin layers over it.
//!
//! The modules are layers, lowest first; each imports only from the layers below it:
//!
//! - `kernel`: the bpf syscalls and bpffs that aya does not cover, BPF links, the counter map.
//! - [`net`]: the network namespace as the probe sees it: interfaces and their stacking, link
//!   events, sysctls (route_localnet), privileges.
//! - [`probe`]: the loaded object, its attachments and pins, the standing filter it takes over,
//!   and the other programs it finds on an interface.
//! - [`exposure`]: facts about a link → whether it reaches services bound to loopback; the one
//!   decision every view shows ([`exposure::verdict::decide`]), and the audit's findings.
//! - [`session`]: which interfaces are served, the session that serves them, its snapshots.
//! - [`output`]: what a snapshot becomes: the report, the metrics page, samples, senders, pcap.
//! - [`capture`]: captures read back (`scan`): pcap and pcapng classified by the kernel's
//!   classifier, counted per interface, the matched frames written out again.
//!
//! See `docs/architecture.md` for the picture and where to add a hook, an output or a
//! subcommand.

pub mod capture;
pub mod exposure;
pub mod kernel;
pub mod net;
pub mod output;
pub mod probe;
pub mod session;

/// The XDP object built by `build.rs` from `probe-ebpf`.
pub static PROBE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/localnet-probe-xdp"));
