//! `SshConfig`: how to reach one host over SSH. Plain data and path helpers; it must not open
//! connections or read files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{ProviderError, Result};

/// How to reach and authenticate to one host over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    /// The host id from the config, used in every message.
    pub host_id: String,
    /// Host name or IP address to connect to.
    pub address: String,
    /// TCP port of the host's sshd.
    pub port: u16,
    /// Remote user to log in as.
    pub user: String,
    /// Private key file (`~` is expanded); `None` asks the ssh-agent at `SSH_AUTH_SOCK`.
    pub key_path: Option<PathBuf>,
    /// Pinned host key, `"ssh-ed25519 AAAA..."`; when set, known_hosts is not consulted.
    pub host_key: Option<String>,
    /// known_hosts file to check the host key against; `None` means `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// Limit for the TCP connect, and separately for the SSH handshake and authentication.
    pub connect_timeout: Duration,
    /// Channels (commands, tunnels, locks) open at once on the one connection to this host.
    pub max_channels: usize,
    /// Longest interval of SSH keepalives while the connection is idle (they are sent at least
    /// every quarter of `connect_timeout`, so a host silent for `connect_timeout` ends the
    /// connection); zero disables them.
    pub keepalive: Duration,
}

impl SshConfig {
    /// Settings with berth's defaults: port 22, user `$USER` (else root), ssh-agent,
    /// `~/.ssh/known_hosts`, 10 s connect timeout, 8 channels (OpenSSH allows 10 sessions per
    /// connection by default) and keepalives every 15 s or a quarter of the connect timeout,
    /// whichever is shorter.
    pub fn new(host_id: impl Into<String>, address: impl Into<String>) -> Self {
        SshConfig {
            host_id: host_id.into(),
            address: address.into(),
            port: 22,
            user: std::env::var("USER")
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| "root".to_string()),
            key_path: None,
            host_key: None,
            known_hosts: None,
            connect_timeout: Duration::from_secs(10),
            max_channels: 8,
            keepalive: Duration::from_secs(15),
        }
    }

    /// `address:port` as messages show it (`[v6]:port` for IPv6 addresses).
    pub fn endpoint(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }

    /// The known_hosts file this connection checks, with `~` expanded.
    pub(crate) fn known_hosts_path(&self) -> Result<PathBuf> {
        match &self.known_hosts {
            Some(path) => expand_tilde(path).ok_or_else(|| self.no_home()),
            None => home_dir()
                .map(|home| home.join(".ssh").join("known_hosts"))
                .ok_or_else(|| self.no_home()),
        }
    }

    /// The private key file, with `~` expanded; `None` means ssh-agent.
    pub(crate) fn key_file(&self) -> Result<Option<PathBuf>> {
        match &self.key_path {
            Some(path) => expand_tilde(path).map(Some).ok_or_else(|| self.no_home()),
            None => Ok(None),
        }
    }

    fn no_home(&self) -> ProviderError {
        ProviderError::InvalidConnection {
            host: self.host_id.clone(),
            message: "a path starts with `~` but $HOME is not set".to_string(),
        }
    }
}

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Expands a leading `~` or `~/` to `$HOME`; `None` when one is needed and HOME is unset.
fn expand_tilde(path: &Path) -> Option<PathBuf> {
    let Ok(rest) = path.strip_prefix("~") else {
        return Some(path.to_path_buf());
    };
    home_dir().map(|home| home.join(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_brackets_ipv6() {
        let mut c = SshConfig::new("h1", "10.0.0.1");
        assert_eq!(c.endpoint(), "10.0.0.1:22");
        c.address = "fd00::1".into();
        c.port = 2222;
        assert_eq!(c.endpoint(), "[fd00::1]:2222");
    }

    #[test]
    fn tilde_is_expanded_only_at_the_start() {
        let Some(home) = home_dir() else { return };
        assert_eq!(
            expand_tilde(Path::new("~/.ssh/id")),
            Some(home.join(".ssh/id"))
        );
        assert_eq!(expand_tilde(Path::new("~")), Some(home.clone()));
        assert_eq!(
            expand_tilde(Path::new("/a/~/b")),
            Some(PathBuf::from("/a/~/b"))
        );
        // `~user` is not ours to resolve: it stays a (relative) path.
        assert_eq!(
            expand_tilde(Path::new("~ops/id")),
            Some(PathBuf::from("~ops/id"))
        );
    }
}
