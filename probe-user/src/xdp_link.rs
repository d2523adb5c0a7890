//! XDP attachments as BPF links this process owns: closing the link's file descriptor (on drop,
//! or when the process dies however it dies) detaches the program.
//!
//! The link is created here rather than through aya's `Xdp::attach`, which falls back to a
//! netlink attachment when the kernel answers EINVAL; such an attachment outlives the process,
//! so it is never made.

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, OwnedFd},
};

use crate::bpffs::{bpf, owned};

const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_LINK_UPDATE: libc::c_long = 29;
const BPF_LINK_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

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

/// An attached XDP program; dropping it detaches.
#[derive(Debug)]
pub struct XdpLink {
    fd: OwnedFd,
}

/// `union bpf_attr` as `BPF_LINK_CREATE` reads it, for a target given by ifindex.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    /// The rest of the union the kernel may read, zeroed.
    _tail: [u64; 8],
}

impl XdpLink {
    /// Attaches the program behind `program` to `ifindex` in `mode`. The kernel refuses with
    /// EBUSY or EEXIST when another XDP program is attached there; nothing is replaced.
    pub fn create(program: impl AsFd, ifindex: u32, mode: AttachedMode) -> io::Result<Self> {
        let attr = LinkCreateAttr {
            prog_fd: program.as_fd().as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags: mode.flags(),
            ..LinkCreateAttr::default()
        };
        // SAFETY: the attribute holds no pointers.
        let fd = unsafe { bpf(BPF_LINK_CREATE, &attr) }?;
        Ok(Self { fd: owned(fd) })
    }

    /// Opens a link pinned at `path` (see [`crate::bpffs`]); `None` when it is not an XDP link.
    pub fn from_pin(path: &std::path::Path) -> io::Result<Option<Self>> {
        let link = Self {
            fd: crate::bpffs::get(path)?,
        };
        Ok((link.info()?.link_type == BPF_LINK_TYPE_XDP).then_some(link))
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

/// An XDP link as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    link_type: u32,
    pub program_id: u32,
    /// `None` once the interface is gone (the link is then defunct).
    pub ifindex: Option<u32>,
}

/// `struct bpf_link_info` up to the XDP member of its union, and room for the rest.
#[repr(C)]
#[derive(Default)]
struct RawLinkInfo {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _padding: u32,
    ifindex: u32,
    _rest: [u32; 15],
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

impl AsFd for XdpLink {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
