//! CPU affinity: which CPUs the benchmark may use, and pinning to one.

use anyhow::bail;

fn affinity(pid: i32) -> anyhow::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data, filled by the kernel.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(pid, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            bail!("sched_getaffinity: {}", std::io::Error::last_os_error());
        }
        Ok(set)
    }
}

fn set_affinity(pid: i32, set: &libc::cpu_set_t) -> anyhow::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t.
    if unsafe { libc::sched_setaffinity(pid, size_of::<libc::cpu_set_t>(), set) } != 0 {
        bail!(
            "sched_setaffinity({pid}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Pins `pid` (0: the calling thread) to `cpu`.
pub fn pin(pid: i32, cpu: usize) -> anyhow::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays within it for cpu < CPU_SETSIZE.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    set_affinity(pid, &set)
}

/// Runs `f` with the calling thread pinned to `cpu`, then restores its affinity.
pub fn pinned<T>(cpu: usize, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let saved = affinity(0)?;
    pin(0, cpu)?;
    let result = f();
    set_affinity(0, &saved)?;
    result
}

/// Two CPUs this process may run on: the traffic generator's and the receiver's.
pub fn two() -> anyhow::Result<(usize, usize)> {
    let set = affinity(0)?;
    // SAFETY: reads within the set.
    let allowed: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .collect();
    match allowed[..] {
        [first, second, ..] => Ok((first, second)),
        _ => bail!("the benchmark needs two CPUs, this process may use {allowed:?}"),
    }
}
