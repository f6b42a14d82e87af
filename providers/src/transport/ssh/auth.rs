//! Public-key authentication of a fresh SSH connection, with a key file or the ssh-agent. It
//! never prompts (berth runs unattended) and never holds a passphrase.

use std::path::Path;
use std::sync::Arc;

use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::keys::{self, PrivateKeyWithHashAlg};

use super::SshConfig;
use super::host_key::{ClientHandler, describe};
use crate::{ProviderError, Result};

/// Logs in as `config.user` with `config.key_path`, or else with each key of the ssh-agent.
pub(crate) async fn authenticate(
    handle: &mut Handle<ClientHandler>,
    config: &SshConfig,
) -> Result<()> {
    match config.key_file()? {
        Some(path) => with_key_file(handle, config, &path).await,
        None => with_agent(handle, config).await,
    }
}

async fn with_key_file(
    handle: &mut Handle<ClientHandler>,
    config: &SshConfig,
    path: &Path,
) -> Result<()> {
    let shown = path.display().to_string();
    let key_error = |problem: String| ProviderError::KeyFile {
        host: config.host_id.clone(),
        path: shown.clone(),
        problem,
    };
    let key = match keys::load_secret_key(path, None) {
        Ok(key) => key,
        Err(keys::Error::KeyIsEncrypted) => {
            return Err(key_error(format!(
                "is encrypted; berth does not prompt for passphrases: load it into ssh-agent \
                 (ssh-add {shown}) and remove key_path"
            )));
        }
        Err(keys::Error::IO(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(key_error(
                "does not exist; fix key_path, or remove it to use ssh-agent".to_string(),
            ));
        }
        Err(keys::Error::IO(e)) => return Err(key_error(format!("cannot be read: {e}"))),
        Err(e) => {
            return Err(key_error(format!(
                "is not a private key berth can use (ed25519, ECDSA or RSA, OpenSSH or PEM \
                 format): {e}"
            )));
        }
    };
    let hash = rsa_hash(handle, config, key.algorithm().is_rsa()).await?;
    let result = handle
        .authenticate_publickey(
            config.user.as_str(),
            PrivateKeyWithHashAlg::new(Arc::new(key), hash),
        )
        .await
        .map_err(|e| protocol(config, "authentication", e))?;
    match result {
        AuthResult::Success => Ok(()),
        AuthResult::Failure { .. } => Err(auth_failed(config, format!("key {shown}"))),
    }
}

async fn with_agent(handle: &mut Handle<ClientHandler>, config: &SshConfig) -> Result<()> {
    let agent_error = |problem: String| ProviderError::Agent {
        host: config.host_id.clone(),
        problem,
    };
    let mut agent = match AgentClient::connect_env().await {
        Ok(agent) => agent,
        Err(keys::Error::EnvVar(_)) => {
            return Err(agent_error(
                "no key_path is set and SSH_AUTH_SOCK is not set, so there is no agent to ask"
                    .to_string(),
            ));
        }
        Err(keys::Error::BadAuthSock) => {
            return Err(agent_error(format!(
                "SSH_AUTH_SOCK points to {}, which does not exist (a stale agent?)",
                std::env::var("SSH_AUTH_SOCK").unwrap_or_default()
            )));
        }
        Err(e) => return Err(agent_error(format!("cannot talk to the agent: {e}"))),
    };
    // OpenSSH agents show destination-constrained keys only to a bound session; older agents
    // refuse the extension, which is harmless.
    if let Some(binding) = handle.agent_session_binding() {
        let _ = agent.bind_session(binding, false).await;
    }
    let identities = agent
        .request_identities()
        .await
        .map_err(|e| agent_error(format!("cannot list its keys: {e}")))?;
    let keys: Vec<PublicKey> = identities
        .iter()
        .filter_map(|identity| match identity {
            AgentIdentity::PublicKey { key, .. } => Some(key.clone()),
            // Certificates would need authenticate_certificate_with; plain keys cover berth.
            _ => None,
        })
        .collect();
    if keys.is_empty() {
        return Err(agent_error("the agent holds no keys".to_string()));
    }
    let mut tried = Vec::new();
    for key in keys {
        let hash = rsa_hash(handle, config, key.algorithm().is_rsa()).await?;
        tried.push(describe(&key));
        match handle
            .authenticate_publickey_with(config.user.as_str(), key, hash, &mut agent)
            .await
        {
            Ok(AuthResult::Success) => return Ok(()),
            Ok(AuthResult::Failure { .. }) => {}
            // The agent declined to sign (e.g. a confirm-constrained key): try the next one.
            Err(e) => tracing::debug!(host = %config.host_id, "ssh-agent did not sign: {e}"),
        }
        if handle.is_closed() {
            // sshd drops the connection after MaxAuthTries (6 by default) rejected keys.
            break;
        }
    }
    Err(auth_failed(
        config,
        format!("the ssh-agent's keys ({})", tried.join(", ")),
    ))
}

/// SHA-2 for RSA keys when the server supports it (OpenSSH refuses SHA-1 `ssh-rsa` since 8.8).
async fn rsa_hash(
    handle: &Handle<ClientHandler>,
    config: &SshConfig,
    is_rsa: bool,
) -> Result<Option<HashAlg>> {
    if !is_rsa {
        return Ok(None);
    }
    let best = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| protocol(config, "authentication", e))?;
    // `None`: the server did not say what it supports, so assume a modern one (SHA-256);
    // `Some(None)`: it only knows SHA-1 `ssh-rsa`.
    Ok(best.unwrap_or(Some(HashAlg::Sha256)))
}

fn auth_failed(config: &SshConfig, key: String) -> ProviderError {
    ProviderError::AuthFailed {
        host: config.host_id.clone(),
        address: config.endpoint(),
        user: config.user.clone(),
        key,
    }
}

fn protocol(config: &SshConfig, what: &str, e: impl std::fmt::Display) -> ProviderError {
    ProviderError::Ssh {
        host: config.host_id.clone(),
        address: config.endpoint(),
        what: what.to_string(),
        message: e.to_string(),
    }
}
