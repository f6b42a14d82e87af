//! Waiting for a condition: polling a check until it holds or a timeout passes.

use std::time::{Duration, Instant};

/// Polls `check` every `every` until it holds or `timeout` passes; returns whether it held.
pub fn poll_until(timeout: Duration, every: Duration, mut check: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}
