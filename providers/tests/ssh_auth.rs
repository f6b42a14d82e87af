//! Authentication against real sshd hosts with key files: wrong user, wrong key, missing and
//! encrypted key files, and RSA and ECDSA keys. Needs root (see ssh_common).

mod ssh_common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_providers::{ProviderError, SshTransport};
use ssh_common::{Fleet, run_ok};

fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('a', 1)
}

/// A new key pair in the fleet's scratch space.
fn keygen(fleet: &Fleet, name: &str, args: &[&str]) -> PathBuf {
    let path = fleet.scratch("keys").join(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-C", name])
        .args(args)
        .arg("-f")
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen {args:?}");
    path
}

fn pub_of(key: &Path) -> PathBuf {
    key.with_extension("pub")
}

#[tokio::test]
async fn wrong_user_is_named_in_the_failure() {
    let fleet = fleet();
    let mut config = fleet.config(1);
    config.user = "berth-nosuchuser".to_string();
    let err = SshTransport::connect(config).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ProviderError::AuthFailed { .. }), "{err:?}");
    assert_eq!(
        message,
        format!(
            "authentication failed for user berth-nosuchuser at host h1 ({}:22) with key {}",
            fleet.address(1),
            fleet.key().display()
        )
    );
}

#[tokio::test]
async fn unauthorized_key_fails_naming_the_key() {
    let fleet = fleet();
    let key = keygen(&fleet, "stranger", &["-t", "ed25519", "-N", ""]);
    let mut config = fleet.config(1);
    config.key_path = Some(key.clone());
    let err = SshTransport::connect(config).await.unwrap_err();
    match &err {
        ProviderError::AuthFailed { user, key: k, .. } => {
            assert_eq!(user, "root");
            assert_eq!(k, &format!("key {}", key.display()));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_key_file_is_named() {
    let fleet = fleet();
    let mut config = fleet.config(1);
    let missing = fleet.dir.join("no-such-key");
    config.key_path = Some(missing.clone());
    let err = SshTransport::connect(config).await.unwrap_err();
    assert!(matches!(err, ProviderError::KeyFile { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "host h1: key {} does not exist; fix key_path, or remove it to use ssh-agent",
            missing.display()
        )
    );
}

#[tokio::test]
async fn encrypted_key_asks_for_ssh_agent_instead_of_a_passphrase() {
    let fleet = fleet();
    let key = keygen(&fleet, "locked", &["-t", "ed25519", "-N", "secret"]);
    fleet.authorize(&pub_of(&key));
    let mut config = fleet.config(1);
    config.key_path = Some(key.clone());
    let err = SshTransport::connect(config).await.unwrap_err();
    assert!(matches!(err, ProviderError::KeyFile { .. }), "{err:?}");
    let shown = key.display();
    assert_eq!(
        err.to_string(),
        format!(
            "host h1: key {shown} is encrypted; berth does not prompt for passphrases: load it \
             into ssh-agent (ssh-add {shown}) and remove key_path"
        )
    );
}

#[tokio::test]
async fn rsa_and_ecdsa_keys_authenticate() {
    let fleet = fleet();
    // OpenSSH 8.8+ refuses SHA-1 `ssh-rsa` signatures, so the RSA login proves SHA-2 is used.
    let rsa = keygen(&fleet, "rsa", &["-t", "rsa", "-b", "3072", "-N", ""]);
    let ecdsa = keygen(&fleet, "ecdsa", &["-t", "ecdsa", "-b", "256", "-N", ""]);
    // A PEM (PKCS#1) RSA key, the format of many older deployments.
    let pem = keygen(
        &fleet,
        "rsa-pem",
        &["-t", "rsa", "-b", "2048", "-m", "PEM", "-N", ""],
    );
    for key in [&rsa, &ecdsa, &pem] {
        fleet.authorize(&pub_of(key));
    }
    for key in [rsa, ecdsa, pem] {
        let mut config = fleet.config(1);
        config.key_path = Some(key.clone());
        let t = SshTransport::connect(config)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", key.display()));
        assert_eq!(run_ok(&t, "whoami").await, "root\n");
    }
}
