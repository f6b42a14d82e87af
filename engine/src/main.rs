//! The `berth` binary: everything happens in the library.

// Loading a large config allocates and frees millions of small nodes; mimalloc needs about a
// fifth fewer instructions for that than the system allocator (see docs/performance.md). Built
// without transparent huge pages (the workspace's `no_thp`), which cost more than they save in
// a process that lives seconds and starts a thread per core.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
