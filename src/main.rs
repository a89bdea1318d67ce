//! The `mailcode` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    return_large_blocks_to_the_os();
    mailcode::cli::main()
}

/// Each argon2id hash allocates a 19 MiB block. glibc's dynamic mmap threshold rises past that
/// size after the first block is freed, so later blocks come from the blocking threads' arenas,
/// which keep them: a process that verified a few dozen passwords held hundreds of MiB
/// (docs/benchmarks.md, finding 4). A fixed threshold keeps every block above 128 KiB in its own
/// mapping, returned to the OS when freed.
fn return_large_blocks_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; called first thing, before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
