//! Memory given back to the kernel. glibc's allocator keeps what is freed inside its heaps for
//! later use, one heap (arena) per thread that allocated: a scrape encoded on a blocking thread,
//! a report written by the writer thread, a thousand interfaces released at once each leave
//! megabytes freed but resident, and a run that served 2,000 interfaces once kept 20 MB more
//! than it needed ever after. `malloc_trim` returns the free pages of every arena.

/// What the allocator may keep free: about what a report over a thousand interfaces takes
/// and frees again each second. Trimming below it would only have the next report fault the
/// same pages in again (at a thousand interfaces, a twentieth of the probe's CPU).
#[cfg(target_env = "gnu")]
const KEPT_FREE: usize = 4 << 20;

/// Gives the allocator's free pages back to the kernel when it holds more than [`KEPT_FREE`];
/// called once a second, it takes well under a millisecond.
#[cfg(target_env = "gnu")]
pub(super) fn give_back() {
    // SAFETY: mallinfo2 only reads the allocator's statistics; malloc_trim only releases
    // pages the allocator holds free; any thread may call either.
    unsafe {
        if libc::mallinfo2().fordblks > KEPT_FREE {
            libc::malloc_trim(0);
        }
    }
}

/// musl's allocator (the static build of `cargo xtask image`) unmaps freed memory itself.
#[cfg(not(target_env = "gnu"))]
pub(super) fn give_back() {}
