//! The `mailcode` binary: parse the command line and hand over to the library.

/// mimalloc instead of glibc's malloc, for two measured reasons (docs/benchmarks.md): glibc's
/// malloc and free took ~15 % of the CPU of an authenticated request, and after argon2id's
/// 19 MiB blocks are freed glibc keeps them in per-thread arenas, so a process that verified a
/// few dozen passwords held hundreds of MiB; mimalloc maps such blocks on their own and returns
/// them when freed.
#[global_allocator]
static GLOBAL: alloc::Mimalloc = alloc::Mimalloc;

mod alloc;

fn main() -> std::process::ExitCode {
    mailcode::cli::main()
}
