//! Attachments as BPF links this process owns: XDP, and tcx ingress and egress. Closing the
//! link's file descriptor (on drop, or when the process dies however it dies) detaches the
//! program, unless the link is pinned.
//!
//! Links are created here rather than through aya: its `Xdp::attach` falls back to a netlink
//! attachment when the kernel answers EINVAL, and its tc attachment falls back to a clsact
//! filter on kernels without tcx; both outlive the process, so neither is ever made.

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, OwnedFd},
};

use crate::kernel::bpffs::{bpf, bpf_answering, owned};

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_LINK_TYPE_TCX: u32 = 11;
const BPF_XDP: u32 = 37;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_TCX_EGRESS: u32 = 47;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
/// With no program named relative to it: first in the interface's tcx chain.
const BPF_F_BEFORE: u32 = 1 << 3;
/// The most programs a tcx chain holds (`BPF_MPROG_MAX`).
const TCX_CHAIN_MAX: usize = 64;

/// The XDP mode an attachment gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    /// In the driver, before the kernel allocates a socket buffer.
    Native,
    /// In the stack, after the socket buffer is built; works on every device.
    Generic,
}

impl AttachedMode {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }

    const fn flags(self) -> u32 {
        match self {
            Self::Native => XDP_FLAGS_DRV_MODE,
            Self::Generic => XDP_FLAGS_SKB_MODE,
        }
    }
}

/// Where a tc program runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }

    const fn tcx_attach_type(self) -> u32 {
        match self {
            Self::Ingress => BPF_TCX_INGRESS,
            Self::Egress => BPF_TCX_EGRESS,
        }
    }
}

/// `union bpf_attr` as `BPF_PROG_QUERY` reads and writes it, for a target given by ifindex.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_ifindex: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    /// In: room in `prog_ids`; out: programs attached.
    prog_count: u32,
    _padding: u32,
    prog_attach_flags: u64,
    link_ids: u64,
    link_attach_flags: u64,
    revision: u64,
}

/// The ids of the programs attached to `ifindex`'s tcx hook in `direction`, first to last; none
/// on a kernel without tcx (before Linux 6.6). Takes CAP_NET_ADMIN.
///
/// Not aya's `SchedClassifier::query_tcx`: it also opens every program by id, which takes
/// CAP_SYS_ADMIN, and fails as a whole without it, losing the ids the query itself gave; the
/// audit names a program it cannot identify by its id.
pub fn tcx_programs(ifindex: u32, direction: Direction) -> io::Result<Vec<u32>> {
    let mut ids = [0_u32; TCX_CHAIN_MAX];
    let Some(count) = query_tcx(ifindex, direction, &mut ids)? else {
        // No tcx in this kernel, so nothing is attached there.
        return Ok(Vec::new());
    };
    Ok(ids[..(count as usize).min(TCX_CHAIN_MAX)].to_vec())
}

/// Asks for the programs at `ifindex`'s tcx hook in `direction`, their ids written into `ids`
/// (as many as fit): how many are attached, or `None` on a kernel without tcx, which refuses the
/// attach type. Reads and changes nothing else; takes CAP_NET_ADMIN.
pub fn query_tcx(ifindex: u32, direction: Direction, ids: &mut [u32]) -> io::Result<Option<u32>> {
    let mut attr = QueryAttr {
        target_ifindex: ifindex,
        attach_type: direction.tcx_attach_type(),
        prog_ids: ids.as_mut_ptr() as u64,
        prog_count: u32::try_from(ids.len()).unwrap_or(u32::MAX),
        ..QueryAttr::default()
    };
    // SAFETY: `prog_ids` points at room for `prog_count` ids, alive for the call; the kernel
    // writes the count back into `attr`.
    match unsafe { bpf_answering(BPF_PROG_QUERY, &mut attr) } {
        Ok(_) => Ok(Some(attr.prog_count)),
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(error) => Err(error),
    }
}

/// An attached program; dropping it detaches, unless it is pinned.
#[derive(Debug)]
pub struct Link {
    fd: OwnedFd,
}

/// `union bpf_attr` as `BPF_LINK_CREATE` reads it, for a target given by ifindex; for tcx,
/// `relative` and `expected_revision` are its `tcx` member.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    relative: u32,
    _padding: u32,
    expected_revision: u64,
    /// The rest of the union the kernel may read, zeroed.
    _tail: [u64; 6],
}

/// Where in the kernel a program runs: XDP (arriving frames, in the driver or before the
/// stack), or a tc hook (arriving frames beside another XDP program, or leaving frames), where
/// it runs through a tcx link, or through a clsact qdisc's filter on kernels without tcx: the
/// same program either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Xdp,
    Tc(Direction),
}

impl Stage {
    pub const ALL: [Self; 3] = [
        Self::Xdp,
        Self::Tc(Direction::Ingress),
        Self::Tc(Direction::Egress),
    ];

    /// Its place in [`Self::ALL`].
    pub const fn index(self) -> usize {
        match self {
            Self::Xdp => 0,
            Self::Tc(Direction::Ingress) => 1,
            Self::Tc(Direction::Egress) => 2,
        }
    }
}

impl Link {
    /// Attaches the program behind `program` to `ifindex`'s XDP hook in `mode`. The kernel
    /// refuses with EBUSY or EEXIST when another XDP program is attached there; nothing is
    /// replaced.
    pub fn xdp(program: impl AsFd, ifindex: u32, mode: AttachedMode) -> io::Result<Self> {
        Self::create(&LinkCreateAttr {
            prog_fd: program.as_fd().as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
            ..LinkCreateAttr::default()
        })
    }

    /// Attaches the program behind `program` to `ifindex`'s tcx hook in `direction`, first in
    /// its chain: before any program there, none of which is displaced. First, because a
    /// program that ends the chain (returns `TCX_PASS`, redirects) hides frames from every
    /// program after it; ours always hands frames on, unless it drops them.
    pub fn tcx(program: impl AsFd, ifindex: u32, direction: Direction) -> io::Result<Self> {
        Self::create(&LinkCreateAttr {
            prog_fd: program.as_fd().as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: direction.tcx_attach_type(),
            flags: BPF_F_BEFORE,
            ..LinkCreateAttr::default()
        })
    }

    fn create(attr: &LinkCreateAttr) -> io::Result<Self> {
        // SAFETY: the attribute holds no pointers.
        let fd = unsafe { bpf(BPF_LINK_CREATE, attr) }?;
        Ok(Self { fd: owned(fd) })
    }

    /// Opens a link pinned at `path` (see [`crate::kernel::bpffs`]); `None` when it is not of `stage`.
    pub fn from_pin(path: &std::path::Path, stage: Stage) -> io::Result<Option<Self>> {
        let link = Self {
            fd: crate::kernel::bpffs::get(path)?,
        };
        let info = link.info()?;
        let is_stage = match stage {
            Stage::Xdp => info.link_type == BPF_LINK_TYPE_XDP,
            Stage::Tc(direction) => {
                info.link_type == BPF_LINK_TYPE_TCX
                    && info.attach_type == direction.tcx_attach_type()
            }
        };
        Ok(is_stage.then_some(link))
    }

    /// What the kernel says about the link now.
    pub fn info(&self) -> io::Result<LinkInfo> {
        let mut info = RawLinkInfo::default();
        let attr = InfoAttr {
            bpf_fd: self.fd.as_raw_fd() as u32,
            info_len: size_of::<RawLinkInfo>() as u32,
            info: (&raw mut info) as u64,
        };
        // SAFETY: `attr` points at `info`, a buffer of the size given, alive for the call.
        unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) }?;
        Ok(LinkInfo {
            link_type: info.link_type,
            attach_type: info.attach_type,
            program_id: info.prog_id,
            ifindex: (info.ifindex != 0).then_some(info.ifindex),
        })
    }

    /// Replaces the link's program with `program` at once: the interface never runs without
    /// one.
    pub fn update(&self, program: impl AsFd) -> io::Result<()> {
        let attr = UpdateAttr {
            link_fd: self.fd.as_raw_fd() as u32,
            new_prog_fd: program.as_fd().as_raw_fd() as u32,
            ..UpdateAttr::default()
        };
        // SAFETY: the attribute holds no pointers.
        unsafe { bpf(BPF_LINK_UPDATE, &attr) }.map(drop)
    }
}

/// A link as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    link_type: u32,
    /// For tcx, ingress or egress; 0 for XDP.
    attach_type: u32,
    pub program_id: u32,
    /// `None` once the interface is gone (the link is then defunct).
    pub ifindex: Option<u32>,
}

/// `struct bpf_link_info` up to the XDP and tcx members of its union (`ifindex`, and for tcx
/// `attach_type`), and room for the rest.
#[repr(C)]
#[derive(Default)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _padding: u32,
    ifindex: u32,
    attach_type: u32,
    _rest: [u32; 14],
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
#[derive(Default)]
struct UpdateAttr {
    link_fd: u32,
    new_prog_fd: u32,
    flags: u32,
    old_prog_fd: u32,
}

impl AsFd for Link {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
