//! The BPF file system and the few `bpf` commands aya 0.14 does not offer for it: pinning any
//! object, opening a pin of any kind, and creating the maps only userspace reads.

use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::ffi::OsStrExt as _,
    },
    path::Path,
};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
/// `statfs.f_type` of a BPF file system.
const BPF_FS_MAGIC: libc::c_long = 0xcafe_4a11;

/// The `bpf` system call with a command's attribute; its result, a file descriptor for some
/// commands.
///
/// # Safety
/// `attr` must be the `bpf_attr` prefix `command` reads; every pointer in it must be valid for
/// what the kernel reads or writes there.
pub(crate) unsafe fn bpf<T>(command: libc::c_long, attr: &T) -> io::Result<i64> {
    // SAFETY: the caller's contract; `attr` is alive for the call.
    unsafe { bpf_raw(command, std::ptr::from_ref(attr).cast(), size_of::<T>()) }
}

/// [`bpf`] for a command that writes its answer into the attribute itself (`BPF_PROG_QUERY`
/// writes the number of programs there): through a mutable borrow, so the compiler does not take
/// the attribute for unchanged after the call.
///
/// # Safety
/// As for [`bpf`].
pub(crate) unsafe fn bpf_answering<T>(command: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: the caller's contract; `attr` is alive, and exclusively borrowed, for the call.
    unsafe {
        bpf_raw(
            command,
            std::ptr::from_mut(attr).cast_const().cast(),
            size_of::<T>(),
        )
    }
}

/// # Safety
/// `attr` points at the `size` bytes of the attribute `command` reads, as for [`bpf`]; derived
/// from a mutable borrow when the kernel writes there.
unsafe fn bpf_raw(
    command: libc::c_long,
    attr: *const libc::c_void,
    size: usize,
) -> io::Result<i64> {
    // SAFETY: the caller's contract.
    let result = unsafe { libc::syscall(libc::SYS_bpf, command, attr, size) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// Takes ownership of a file descriptor a `bpf` command returned.
pub(crate) fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path with a NUL byte"))
}

/// Pins the BPF object behind `fd` at `path`, which must not exist.
pub fn pin(fd: impl AsFd, path: &Path) -> io::Result<()> {
    let pathname = c_path(path)?;
    let attr = ObjAttr {
        pathname: pathname.as_ptr() as u64,
        bpf_fd: fd.as_fd().as_raw_fd() as u32,
        ..ObjAttr::default()
    };
    // SAFETY: `pathname` is a NUL-terminated string alive for the call.
    unsafe { bpf(BPF_OBJ_PIN, &attr) }.map(drop)
}

/// Opens the BPF object pinned at `path`.
pub fn get(path: &Path) -> io::Result<OwnedFd> {
    let pathname = c_path(path)?;
    let attr = ObjAttr {
        pathname: pathname.as_ptr() as u64,
        ..ObjAttr::default()
    };
    // SAFETY: `pathname` is a NUL-terminated string alive for the call.
    unsafe { bpf(BPF_OBJ_GET, &attr) }.map(owned)
}

/// Map types [`create_map`] makes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MapKind {
    Hash = 1,
    Array = 2,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    /// The rest of the attribute the kernel may read (`map_ifindex` on), zeroed; no padding
    /// anywhere, whose bytes would be undefined.
    _tail: [u32; 12],
}

/// Creates a map of `max_entries` `V` by `K`, named `name` (at most 15 bytes).
pub(crate) fn create_map<K, V>(kind: MapKind, name: &str, max_entries: u32) -> io::Result<OwnedFd> {
    let mut map_name = [0; 16];
    map_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
    let attr = MapCreateAttr {
        map_type: kind as u32,
        key_size: size_of::<K>() as u32,
        value_size: size_of::<V>() as u32,
        max_entries,
        map_name,
        ..MapCreateAttr::default()
    };
    // SAFETY: the attribute holds no pointers.
    unsafe { bpf(BPF_MAP_CREATE, &attr) }.map(owned)
}

/// Whether a BPF file system is mounted at `path`.
pub fn is_mounted(path: &Path) -> io::Result<bool> {
    let c_path = c_path(path)?;
    // SAFETY: an all-zero statfs is valid; the kernel fills it in.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stat` is writable, both alive for the call.
    if unsafe { libc::statfs(c_path.as_ptr(), &raw mut stat) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_type as libc::c_long == BPF_FS_MAGIC)
}

/// Mounts a BPF file system at `path`, readable by its owner only.
pub fn mount(path: &Path) -> io::Result<()> {
    let target = c_path(path)?;
    let source = c"bpf";
    // SAFETY: every string is NUL-terminated and alive for the call.
    let result = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            source.as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
