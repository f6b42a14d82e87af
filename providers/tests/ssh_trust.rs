//! Host key verification against real sshd hosts: known_hosts (unknown, changed, missing) and
//! pinned keys. berth must never trust on first use. Needs root (see ssh_common).

mod ssh_common;

use std::sync::Arc;

use berth_providers::{ProviderError, SshTransport};
use ssh_common::{Fleet, run_ok};

fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('t', 1)
}

/// `SHA256:...` of host k's key, as `ssh-keygen -l` prints it.
fn fingerprint(fleet: &Fleet, k: usize) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(
            fleet
                .dir
                .join(format!("hosts/h{k}/ssh_host_ed25519_key.pub")),
        )
        .output()
        .expect("ssh-keygen");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

#[tokio::test]
async fn unknown_host_is_refused_with_the_command_that_trusts_it() {
    let fleet = fleet();
    let dir = fleet.scratch("unknown");
    let known_hosts = dir.join("known_hosts");
    std::fs::write(&known_hosts, "").unwrap();
    let mut config = fleet.config(1);
    config.known_hosts = Some(known_hosts.clone());

    let err = SshTransport::connect(config.clone()).await.unwrap_err();
    let message = err.to_string();
    let ProviderError::HostKeyUnknown {
        host,
        address,
        fingerprint: presented,
        fix,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(host, "h1");
    assert_eq!(address, &format!("{}:22", fleet.address(1)));
    assert_eq!(
        presented,
        &format!("ssh-ed25519 key {}", fingerprint(&fleet, 1))
    );
    assert_eq!(
        fix,
        &format!(
            "ssh-keyscan -p 22 -t ed25519 {} >> {}",
            fleet.address(1),
            known_hosts.display()
        )
    );
    assert!(
        message.contains(fix.as_str()) && message.contains(presented.as_str()),
        "{message}"
    );
    // Refusing wrote nothing: no trust on first use.
    assert_eq!(std::fs::read_to_string(&known_hosts).unwrap(), "");

    // The suggested command is exact: after running it, the host is known.
    let status = std::process::Command::new("sh")
        .args(["-c", fix])
        .status()
        .unwrap();
    assert!(status.success());
    let t = SshTransport::connect(config).await.unwrap();
    assert_eq!(run_ok(&t, "echo in").await, "in\n");
}

#[tokio::test]
async fn missing_known_hosts_file_means_unknown_host() {
    let fleet = fleet();
    let mut config = fleet.config(1);
    config.known_hosts = Some(fleet.scratch("missing").join("no_such_known_hosts"));
    let err = SshTransport::connect(config).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::HostKeyUnknown { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn changed_key_is_refused_naming_file_and_line() {
    let fleet = fleet();
    let dir = fleet.scratch("changed");
    let known_hosts = dir.join("known_hosts");
    // Another ed25519 key recorded for h1's address, on line 3 (after a comment line).
    let other = dir.join("other");
    let keygen = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(keygen.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    std::fs::write(
        &known_hosts,
        format!(
            "# hosts\n10.255.255.1 {}\n{} {}\n",
            other_key.join(" "),
            fleet.address(1),
            other_key.join(" ")
        ),
    )
    .unwrap();
    let mut config = fleet.config(1);
    config.known_hosts = Some(known_hosts.clone());

    let err = SshTransport::connect(config).await.unwrap_err();
    let message = err.to_string();
    match &err {
        ProviderError::HostKeyChanged {
            line,
            known_hosts: file,
            fingerprint: presented,
            ..
        } => {
            assert_eq!(*line, 3, "{message}");
            assert_eq!(file, &known_hosts.display().to_string());
            assert!(presented.contains(&fingerprint(&fleet, 1)), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        message.contains(&format!("line 3 of {}", known_hosts.display())),
        "{message}"
    );
}

#[tokio::test]
async fn pinned_key_is_required_exactly() {
    let fleet = fleet();
    let mut config = fleet.config(1);
    // A pin replaces known_hosts entirely: an empty one does not matter.
    let empty = fleet.scratch("pinned").join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    config.known_hosts = Some(empty);

    config.host_key = Some(fleet.host_key_line(1));
    let t = SshTransport::connect(config.clone()).await.unwrap();
    assert_eq!(run_ok(&t, "echo pinned").await, "pinned\n");

    // The public half of the fleet's client key is a valid key, but not h1's.
    let wrong = std::fs::read_to_string(fleet.dir.join("id_ed25519.pub")).unwrap();
    config.host_key = Some(wrong.trim().to_string());
    let err = SshTransport::connect(config.clone()).await.unwrap_err();
    let message = err.to_string();
    let ProviderError::HostKeyMismatch {
        presented, pinned, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert!(presented.contains(&fingerprint(&fleet, 1)), "{message}");
    assert_ne!(presented, pinned);
    assert!(message.contains(pinned.as_str()), "{message}");

    config.host_key = Some("ssh-ed25519 garbage".to_string());
    let err = SshTransport::connect(config).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::InvalidConnection { .. }),
        "{err:?}"
    );
}
