//! `BPF_MAP_LOOKUP_BATCH` and `BPF_MAP_UPDATE_BATCH`, which aya 0.14 does not offer: one system
//! call for many entries where a tick would otherwise make one per entry.

use std::io;

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// `union bpf_attr` as the batch commands read it.
#[repr(C)]
#[derive(Default)]
pub(crate) struct BatchAttr {
    pub(crate) in_batch: u64,
    pub(crate) out_batch: u64,
    pub(crate) keys: u64,
    pub(crate) values: u64,
    pub(crate) count: u32,
    pub(crate) map_fd: u32,
    pub(crate) elem_flags: u64,
    pub(crate) flags: u64,
}

/// `BPF_MAP_LOOKUP_BATCH`; `attr.count` is updated to the entries read, also on error.
///
/// # Safety
/// `attr` must point at buffers of `count` keys and values of the map's sizes (per-CPU maps:
/// one value per possible CPU, each rounded up to 8 bytes), and at a batch cursor for the map.
pub(crate) unsafe fn lookup(attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: the caller's contract.
    unsafe { batch(BPF_MAP_LOOKUP_BATCH, attr) }
}

/// Writes `values[i]` at `keys[i]` in the map `map_fd`, in one call.
pub(crate) fn update<K: Copy, V: Copy>(map_fd: u32, keys: &[K], values: &[V]) -> io::Result<()> {
    update_per_cpu(map_fd, keys, values, 1)
}

/// Writes `values[i × cpus..][..cpus]`, a value for each CPU, at `keys[i]` in the per-CPU map
/// `map_fd`, in one call; `V` must be a multiple of 8 bytes, as the kernel lays them out.
pub(crate) fn update_per_cpu<K: Copy, V: Copy>(
    map_fd: u32,
    keys: &[K],
    values: &[V],
    cpus: usize,
) -> io::Result<()> {
    assert_eq!(keys.len() * cpus, values.len(), "one value per key and CPU");
    assert!(
        cpus == 1 || size_of::<V>().is_multiple_of(8),
        "per-CPU values are 8-byte aligned"
    );
    if keys.is_empty() {
        return Ok(());
    }
    let mut attr = BatchAttr {
        keys: keys.as_ptr() as u64,
        values: values.as_ptr() as u64,
        count: keys.len() as u32,
        map_fd,
        ..BatchAttr::default()
    };
    // SAFETY: `count` keys and values of the types the caller's map holds.
    unsafe { batch(BPF_MAP_UPDATE_BATCH, &mut attr) }?;
    if attr.count as usize != keys.len() {
        return Err(io::Error::other(format!(
            "wrote {} of {} entries",
            attr.count,
            keys.len()
        )));
    }
    Ok(())
}

unsafe fn batch(command: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr for the batch commands; the buffers are the caller's.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            command,
            std::ptr::from_mut(attr),
            size_of::<BatchAttr>() as u32,
        )
    };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}
