//! Writing to stdout and stderr without ever dying of it. `println!` panics when a write fails,
//! and a SIGPIPE ends the process: either would kill berth mid-apply when its output goes to a
//! pipe that closes (`berth apply | head`, a log collector that dies) or to a terminal that
//! goes away. Here a failed write marks that stream closed and later output to it is dropped;
//! berth keeps working. Everything berth prints goes through these macros.

use std::fmt;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

static STDOUT_CLOSED: AtomicBool = AtomicBool::new(false);
static STDERR_CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes to stdout unless a write to it already failed; flushes, so a line reaches a pipe as
/// soon as it is written.
pub fn write_stdout(args: fmt::Arguments<'_>) {
    write_to(&STDOUT_CLOSED, io::stdout().lock(), args);
}

/// Writes to stderr unless a write to it already failed.
pub fn write_stderr(args: fmt::Arguments<'_>) {
    write_to(&STDERR_CLOSED, io::stderr().lock(), args);
}

/// True once a write to stdout failed (the reader went away).
pub fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(Ordering::Relaxed)
}

fn write_to(closed: &AtomicBool, mut stream: impl Write, args: fmt::Arguments<'_>) {
    if closed.load(Ordering::Relaxed) {
        return;
    }
    if stream
        .write_fmt(args)
        .and_then(|()| stream.flush())
        .is_err()
    {
        closed.store(true, Ordering::Relaxed);
    }
}

/// `print!` that never panics: see the module docs.
macro_rules! out {
    ($($arg:tt)*) => { $crate::console::write_stdout(format_args!($($arg)*)) };
}

/// `println!` that never panics: see the module docs.
macro_rules! outln {
    () => { $crate::console::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `eprint!` that never panics: see the module docs.
macro_rules! err {
    ($($arg:tt)*) => { $crate::console::write_stderr(format_args!($($arg)*)) };
}

/// `eprintln!` that never panics: see the module docs.
macro_rules! errln {
    () => { $crate::console::write_stderr(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::write_stderr(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_broken_stream_is_marked_closed_and_never_panics() {
        let closed = AtomicBool::new(false);
        write_to(&closed, Broken, format_args!("one"));
        assert!(closed.load(Ordering::Relaxed));
        write_to(&closed, Broken, format_args!("two"));
    }
}
