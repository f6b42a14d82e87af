//! The `berth` binary: everything happens in the library.

// Loading a large config allocates and frees millions of small nodes; mimalloc needs about a
// fifth fewer instructions for that than the system allocator (see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
