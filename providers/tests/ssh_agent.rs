//! Authentication through ssh-agent against a real sshd host: no agent, a stale socket, an
//! empty agent, an agent without the right key, and an agent holding a decrypted passphrase
//! key. One test only: it changes SSH_AUTH_SOCK, which is process-wide. Needs root.

mod ssh_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::Duration;

use berth_providers::{ProviderError, SshTransport};
use ssh_common::run_ok;

/// An `ssh-agent -D` of its own, killed on drop.
struct Agent {
    socket: PathBuf,
    process: Child,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let process = Process::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent");
        for _ in 0..100 {
            if socket.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            socket.exists(),
            "ssh-agent did not create {}",
            socket.display()
        );
        Agent { socket, process }
    }

    /// `ssh-add KEY`, answering a passphrase prompt with `passphrase` through SSH_ASKPASS.
    fn add(&self, key: &Path, passphrase: Option<&str>) {
        let mut cmd = Process::new("ssh-add");
        cmd.arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null());
        if let Some(passphrase) = passphrase {
            let askpass = key.with_extension("askpass");
            std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o700)).unwrap();
            cmd.env("SSH_ASKPASS", &askpass)
                .env("SSH_ASKPASS_REQUIRE", "force")
                .env("DISPLAY", ":0");
        }
        let out = cmd.output().expect("ssh-add");
        assert!(
            out.status.success(),
            "ssh-add {}: {}",
            key.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn keygen(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Process::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success());
    path
}

fn set_agent(socket: Option<&Path>) {
    // SAFETY: this binary has a single test, which runs its async code on a current-thread
    // runtime in this thread; nothing else reads the environment concurrently.
    unsafe {
        match socket {
            Some(socket) => std::env::set_var("SSH_AUTH_SOCK", socket),
            None => std::env::remove_var("SSH_AUTH_SOCK"),
        }
    }
}

#[test]
fn ssh_agent_authentication() {
    let fleet = ssh_common::shared_fleet('g', 1);
    let dir = fleet.scratch("agent");
    let stranger = keygen(&dir, "stranger", "");
    let locked = keygen(&dir, "locked", "s3cret");
    fleet.authorize(&locked.with_extension("pub"));

    let mut config = fleet.config(1);
    config.key_path = None;
    let connect = || {
        let config = config.clone();
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let t = SshTransport::connect(config).await?;
                Ok::<_, ProviderError>(run_ok(&t, "echo agent").await)
            })
    };

    set_agent(None);
    let err = connect().unwrap_err();
    assert!(matches!(err, ProviderError::Agent { .. }), "{err:?}");
    assert!(
        err.to_string().contains("SSH_AUTH_SOCK is not set"),
        "{err}"
    );

    let gone = dir.join("no-agent.sock");
    set_agent(Some(&gone));
    let err = connect().unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "host h1: ssh-agent: SSH_AUTH_SOCK points to {}, which does not exist (a stale agent?)",
            gone.display()
        )
    );

    let agent = Agent::start(&dir);
    set_agent(Some(&agent.socket));
    let err = connect().unwrap_err();
    assert_eq!(
        err.to_string(),
        "host h1: ssh-agent: the agent holds no keys"
    );

    agent.add(&stranger, None);
    let err = connect().unwrap_err();
    match &err {
        ProviderError::AuthFailed { key, user, .. } => {
            assert_eq!(user, "root");
            assert!(
                key.starts_with("the ssh-agent's keys (ssh-ed25519 key SHA256:"),
                "{key}"
            );
        }
        other => panic!("{other:?}"),
    }

    // The way out the encrypted-key error points to: ssh-add it, drop key_path. The
    // unauthorized key is offered first and refused; the next one logs in.
    agent.add(&locked, Some("s3cret"));
    assert_eq!(connect().unwrap(), "agent\n");
}
