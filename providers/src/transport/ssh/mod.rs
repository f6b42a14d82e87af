//! The SSH transport: one russh connection per host, strict host key checking (pin or
//! known_hosts, never trust on first use), key-file or ssh-agent login, commands, loopback
//! tunnels and the host lock (a lease renewed over the connection). It must not know what
//! runs on the host; runtimes decide that.

mod auth;
mod config;
mod host_key;
mod host_lock;
mod remote_process;
mod socket;
mod ssh_transport;
mod tunnel;

pub use config::SshConfig;
pub use host_lock::{HostLock, LEASE_RENEW_EVERY, LEASE_TTL};
pub use ssh_transport::SshTransport;
