//! Free TCP ports on 127.0.0.1 for the servers a test starts.

use std::sync::Mutex;

/// A TCP port that was free a moment ago (bound to port 0, then released), never handed out
/// before in this test process: tests run side by side, and a server binds its port only a
/// moment after its start returns.
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Ports handed out by [`free_ports`] in this test process, so that two tests never get the
/// same one.
static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());

/// `n` distinct TCP ports that were free a moment ago (bound to port 0, then released), none
/// of them handed out before in this test process.
pub fn free_ports(n: usize) -> Vec<u16> {
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
        let port = listener.local_addr().expect("local addr").port();
        // Hold every listener until all are picked, so the kernel hands out distinct ports.
        held.push(listener);
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
    }
    ports
}
