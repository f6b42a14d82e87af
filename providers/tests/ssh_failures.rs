//! Hosts that fail: sshd stopped, packets dropped, a host killed or cut off mid-command, and
//! reconnecting once it is back. Needs root (see ssh_common).

mod ssh_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_providers::{Command, ProviderError, SshTransport, Transport};
use ssh_common::{Fleet, run_ok};

/// One host per test, since each one breaks its host: h1 stopped, h2 blocked, h3 killed.
fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('f', 3)
}

/// Runs `fleet ARGS` again when dropped, so a failing test still restores its host.
struct Restore<'a>(&'a Fleet, &'a [&'a str]);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        self.0.run_quietly(self.1);
    }
}

#[tokio::test]
async fn stopped_sshd_is_refused_at_once_naming_the_address() {
    let fleet = fleet();
    fleet.stop_host(1);
    let _restore = Restore(&fleet, &["start-host", "1"]);
    let started = Instant::now();
    let err = SshTransport::connect(fleet.config(1)).await.unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "host h1 ({}:22) unreachable: connection refused",
            fleet.address(1)
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn silent_host_times_out_and_a_partition_mid_command_is_noticed() {
    let fleet = fleet();
    let mut config = fleet.config(2);
    config.connect_timeout = Duration::from_secs(1);
    config.keepalive = Duration::from_secs(1);
    let t = SshTransport::connect(config.clone()).await.unwrap();

    // The link goes away while a command runs: no FIN, no RST, just silence. Keepalives
    // (1 s, 3 unanswered) find out.
    let running = tokio::spawn(async move {
        let started = Instant::now();
        let result = t
            .exec(Command::new("sleep 30", Duration::from_secs(60)))
            .await;
        (result, started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    fleet.block_host(2);
    let _restore = Restore(&fleet, &["unblock-host", "2"]);
    let (result, elapsed) = running.await.unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(&err, ProviderError::ConnectionLost { host, what, .. } if host == "h2" && what == "sleep 30"),
        "{err:?}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "noticed after {elapsed:?}"
    );
    eprintln!("partition noticed after {elapsed:?}: {err}");

    // A new connection to the silent host gives up after connect_timeout.
    let started = Instant::now();
    let err = SshTransport::connect(config).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(
        err.to_string(),
        format!(
            "host h2 ({}:22) unreachable: connection timed out after 1s",
            fleet.address(2)
        )
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1500),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn host_killed_mid_command_is_a_clear_error_and_the_next_command_reconnects() {
    let fleet = fleet();
    let t = Arc::new(fleet.connect(3).await);
    let running = {
        let t = Arc::clone(&t);
        tokio::spawn(async move {
            t.exec(Command::new(
                "# berth: start model.x@h3\nsleep 30",
                Duration::from_secs(60),
            ))
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    fleet.kill_host(3);
    let _restore = Restore(&fleet, &["start-host", "3"]);
    let err = running.await.unwrap().unwrap_err();
    assert!(
        killed.elapsed() < Duration::from_secs(3),
        "{:?}",
        killed.elapsed()
    );
    assert!(
        matches!(err, ProviderError::ConnectionLost { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.starts_with(&format!(
            "connection to h3 ({}:22) lost during `berth: start model.x@h3`",
            fleet.address(3)
        )),
        "{message}"
    );

    // While h3 is down, the next operation tries to reconnect and says why it cannot.
    let err = t
        .exec(Command::new("true", Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Unreachable { .. }), "{err:?}");

    // Once h3 is back, the same transport reconnects by itself.
    fleet.start_host(3);
    assert_eq!(run_ok(&*t, "echo back").await, "back\n");
}
