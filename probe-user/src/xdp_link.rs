//! XDP attachments as BPF links this process owns: closing the link's file descriptor (on drop,
//! or when the process dies however it dies) detaches the program.
//!
//! The link is created here rather than through aya's `Xdp::attach`, which falls back to a
//! netlink attachment when the kernel answers EINVAL; such an attachment outlives the process,
//! so it is never made.

use std::{
    io,
    os::fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd},
};

const BPF_LINK_CREATE: libc::c_long = 28;
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
        // SAFETY: `attr` is a valid `bpf_attr` prefix of the size given, alive for the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_LINK_CREATE,
                &raw const attr,
                size_of::<LinkCreateAttr>() as u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel returned a new file descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        Ok(Self { fd })
    }
}

impl AsFd for XdpLink {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
