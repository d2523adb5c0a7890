//! Memory given back to the kernel. glibc's allocator keeps what is freed inside its heaps for
//! later use, one heap (arena) per thread that allocated: a scrape encoded on a blocking thread,
//! a report written by the writer thread, a thousand interfaces released at once each leave
//! megabytes freed but resident, and a run that served 2,000 interfaces once kept 20 MB more
//! than it needed ever after. `malloc_trim` returns the free pages of every arena.

/// Gives the allocator's free pages back to the kernel; called once a second, it takes well
/// under a millisecond.
#[cfg(target_env = "gnu")]
pub(super) fn give_back() {
    // SAFETY: malloc_trim only releases pages the allocator holds free; any thread may call it.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// musl's allocator (the static build of `cargo xtask image`) unmaps freed memory itself.
#[cfg(not(target_env = "gnu"))]
pub(super) fn give_back() {}
