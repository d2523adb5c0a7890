//! The kernel interfaces aya does not cover, and nothing of the probe's policy: bpffs and the
//! bpf syscalls on pinned objects, batched map lookups, BPF links (XDP and tcx
//! `BPF_LINK_CREATE`, their info and pins), clsact filters over rtnetlink where there is no tcx,
//! the reader of the per-CPU counter map, and the walk of `/proc` that finds who holds a link or
//! a socket.

pub(crate) mod bpffs;
pub(crate) mod counter_map;
pub mod features;
pub(crate) mod link;
pub(crate) mod map_batch;
pub(crate) mod processes;
pub(crate) mod tc;
