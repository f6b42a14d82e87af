//! The `berth` binary: everything happens in the library.

fn main() -> std::process::ExitCode {
    berth::cli::main()
}
