//! Host key verification: the russh client handler and the strict check of a server's key
//! against a pinned key or a known_hosts file. It never trusts a key on first use and never
//! writes known_hosts; it only says which command would.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use russh::client::{self, DisconnectReason};
use russh::keys::ssh_key::{Algorithm, HashAlg, PublicKey};
use russh::keys::{self, PublicKeyOrCertificate};

use super::SshConfig;
use crate::transport::quote;
use crate::{ProviderError, Result};

/// The russh client handler: checks the server's key, and notes when the connection ended
/// because the host stopped answering keepalives.
pub(crate) struct ClientHandler {
    config: SshConfig,
    silent: Arc<Silence>,
}

/// When a host last went silent: its connection died of unanswered keepalives.
#[derive(Debug, Default)]
pub(crate) struct Silence(Mutex<Option<Instant>>);

impl Silence {
    fn mark(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Forgets the silence: a new connection got through.
    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// When the last connection died of silence, if it did.
    pub(crate) fn since(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ClientHandler {
    /// A handler that sets `silent` when its connection dies of unanswered keepalives.
    pub(crate) fn new(config: SshConfig, silent: Arc<Silence>) -> Self {
        ClientHandler { config, silent }
    }
}

/// Why a connection attempt failed: russh's own error, or berth refusing the host key.
#[derive(Debug)]
pub(crate) enum HandlerError {
    Ssh(russh::Error),
    Refused(Box<ProviderError>),
}

impl From<russh::Error> for HandlerError {
    fn from(e: russh::Error) -> Self {
        HandlerError::Ssh(e)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, HandlerError> {
        match server_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => verify(&self.config, key)
                .map(|()| true)
                .map_err(|e| HandlerError::Refused(Box::new(e))),
            // known_hosts @cert-authority lines are not supported by russh's parser, so a host
            // certificate could only be accepted by trusting it blindly.
            PublicKeyOrCertificate::Certificate(_) => {
                Err(HandlerError::Refused(Box::new(ProviderError::Ssh {
                    host: self.config.host_id.clone(),
                    address: self.config.endpoint(),
                    what: "host key check".to_string(),
                    message: "the host presented a certificate; berth only accepts plain host \
                              keys listed in known_hosts or pinned with host_key"
                        .to_string(),
                })))
            }
        }
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<HandlerError>,
    ) -> std::result::Result<(), HandlerError> {
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => {
                if matches!(e, HandlerError::Ssh(russh::Error::KeepaliveTimeout)) {
                    self.silent.mark();
                }
                Err(e)
            }
        }
    }
}

/// Accepts `key` only if it equals the pinned key, or (without a pin) if known_hosts lists it
/// for this address and port.
pub(crate) fn verify(config: &SshConfig, key: &PublicKey) -> Result<()> {
    if let Some(pinned) = &config.host_key {
        let pinned = parse_pinned(config, pinned)?;
        return if pinned.key_data() == key.key_data() {
            Ok(())
        } else {
            Err(ProviderError::HostKeyMismatch {
                host: config.host_id.clone(),
                address: config.endpoint(),
                presented: describe(key),
                pinned: describe(&pinned),
            })
        };
    }
    let path = config.known_hosts_path()?;
    // A missing file lists no host: russh answers Ok(false), which is "unknown host".
    match keys::check_known_hosts_path(&config.address, config.port, key, &path) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ProviderError::HostKeyUnknown {
            host: config.host_id.clone(),
            address: config.endpoint(),
            fingerprint: describe(key),
            fix: keyscan_command(config, key, &path),
        }),
        Err(keys::Error::KeyChanged { line }) => Err(ProviderError::HostKeyChanged {
            host: config.host_id.clone(),
            address: config.endpoint(),
            known_hosts: path.display().to_string(),
            line: file_line(&path, line),
            fingerprint: describe(key),
        }),
        Err(e) => Err(ProviderError::InvalidConnection {
            host: config.host_id.clone(),
            message: format!("cannot read known_hosts {}: {e}", path.display()),
        }),
    }
}

/// russh numbers known_hosts entries without counting `#` comment lines; this turns its number
/// into the line number an editor shows. Falls back to russh's number if the file changed.
fn file_line(path: &Path, entry: usize) -> usize {
    let Ok(text) = std::fs::read_to_string(path) else {
        return entry;
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#'))
        .nth(entry.saturating_sub(1))
        .map_or(entry, |(i, _)| i + 1)
}

/// Parses a pinned `"ssh-ed25519 AAAA... [comment]"`.
pub(crate) fn parse_pinned(config: &SshConfig, pinned: &str) -> Result<PublicKey> {
    PublicKey::from_openssh(pinned.trim()).map_err(|e| ProviderError::InvalidConnection {
        host: config.host_id.clone(),
        message: format!(
            "host_key is not an OpenSSH public key (\"ssh-ed25519 AAAA...\", as in known_hosts \
             without the host name): {e}"
        ),
    })
}

/// "ssh-ed25519 key SHA256:...", the way OpenSSH names a key.
pub(crate) fn describe(key: &PublicKey) -> String {
    format!(
        "{} key {}",
        key.algorithm().as_str(),
        key.fingerprint(HashAlg::Sha256)
    )
}

/// The command that appends the host's key of this type to known_hosts.
fn keyscan_command(config: &SshConfig, key: &PublicKey, path: &Path) -> String {
    let kind = match key.algorithm() {
        Algorithm::Ed25519 => Some("ed25519"),
        Algorithm::Rsa { .. } => Some("rsa"),
        Algorithm::Ecdsa { .. } => Some("ecdsa"),
        _ => None,
    };
    let kind = kind.map(|k| format!(" -t {k}")).unwrap_or_default();
    format!(
        "ssh-keyscan -p {}{kind} {} >> {}",
        config.port,
        shell_word(&config.address),
        shell_word(&path.display().to_string())
    )
}

/// Quotes a word of a command shown to the user; a NUL byte (never in a real path) is shown raw.
fn shell_word(word: &str) -> String {
    quote(word).unwrap_or_else(|_| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Generated with ssh-keygen for these tests only.
    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIC4Mqn8MDtkN3rrM3/N2UTQmmTCy+MKWxHMGDxpDlK9K a";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICsuObSbNdPujqR5AakuogvuH6xuePOuKTnOT/RHLoSc b";

    fn config(dir: &Path) -> SshConfig {
        let mut c = SshConfig::new("h1", "10.0.0.1");
        c.known_hosts = Some(dir.join("known_hosts"));
        c
    }

    /// A key as a server presents it: without a comment (russh compares comments too).
    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(body(s)).expect("test key parses")
    }

    fn body(s: &str) -> &str {
        s.rsplit_once(' ').map(|(k, _)| k).unwrap_or(s)
    }

    #[test]
    fn missing_known_hosts_is_an_unknown_host_with_a_keyscan_hint() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.port = 2222;
        let err = verify(&c, &key(KEY_A)).unwrap_err();
        let ProviderError::HostKeyUnknown {
            fix, fingerprint, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert!(
            fingerprint.starts_with("ssh-ed25519 key SHA256:"),
            "{fingerprint}"
        );
        let expected = format!(
            "ssh-keyscan -p 2222 -t ed25519 10.0.0.1 >> {}",
            dir.path().join("known_hosts").display()
        );
        assert_eq!(fix, &expected);
    }

    #[test]
    fn known_key_is_accepted_and_a_changed_one_names_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        std::fs::write(
            dir.path().join("known_hosts"),
            format!(
                "# comment\n10.0.0.9 {}\n10.0.0.1 {}\n",
                body(KEY_B),
                body(KEY_A)
            ),
        )
        .unwrap();
        verify(&c, &key(KEY_A)).unwrap();
        let err = verify(&c, &key(KEY_B)).unwrap_err();
        match err {
            // russh alone would say 2: it does not count the comment line.
            ProviderError::HostKeyChanged { line, .. } => assert_eq!(line, 3, "{err}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn non_default_port_uses_the_bracket_form() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.port = 2222;
        std::fs::write(
            dir.path().join("known_hosts"),
            format!(
                "10.0.0.1 {}\n[10.0.0.1]:2222 {}\n",
                body(KEY_B),
                body(KEY_A)
            ),
        )
        .unwrap();
        verify(&c, &key(KEY_A)).unwrap();
        c.port = 22;
        assert!(matches!(
            verify(&c, &key(KEY_A)),
            Err(ProviderError::HostKeyChanged { line: 1, .. })
        ));
    }

    #[test]
    fn pinned_key_is_compared_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.host_key = Some(body(KEY_A).to_string());
        verify(&c, &key(KEY_A)).unwrap();
        let err = verify(&c, &key(KEY_B)).unwrap_err();
        let ProviderError::HostKeyMismatch {
            presented, pinned, ..
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(presented, &describe(&key(KEY_B)));
        assert_eq!(pinned, &describe(&key(KEY_A)));
        c.host_key = Some("ssh-ed25519 not-base64".into());
        assert!(matches!(
            verify(&c, &key(KEY_A)),
            Err(ProviderError::InvalidConnection { .. })
        ));
    }
}
