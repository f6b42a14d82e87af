//! The host lock (DESIGN.md section 7) on real sshd hosts: exclusion, the holder named in the
//! refusal, release on drop, on a lost connection and on SIGKILL of the holder, the lease of a
//! frozen holder taken over once it expired, and a lease removed by force. Needs root.

mod ssh_common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_providers::{
    HostLock, LEASE_RENEW_EVERY, LEASE_TTL, ProviderError, SshConfig, SshTransport, Transport,
};
use ssh_common::Fleet;

fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('l', 2)
}

const T: Duration = Duration::from_secs(10);

/// Takes the lock, retrying while it is still held (a release reaches the host a moment
/// after the holder lets go).
async fn take_soon(t: &SshTransport, path: &str, holder: &str) -> HostLock {
    let started = Instant::now();
    loop {
        match t.hold_lock(path, holder).await {
            Ok(lock) => return lock,
            Err(ProviderError::HostLocked { .. }) if started.elapsed() < Duration::from_secs(5) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("lock {path}: {e}"),
        }
    }
}

#[tokio::test]
async fn second_holder_is_refused_naming_the_first_until_it_lets_go() {
    let fleet = fleet();
    let (t1, t2) = (fleet.connect(1).await, fleet.connect(1).await);
    let path = "/srv/berth/run-a/.lock";
    let first = "lock 1f2e ops@laptop pid 4242 apply";

    let lock = t1.hold_lock(path, first).await.unwrap();
    assert!(lock.is_held());
    assert_eq!(lock.path(), path);
    let on_host = t2.read_file(path, T).await.unwrap().unwrap();
    let on_host = String::from_utf8_lossy(&on_host);
    let mut lines = on_host.lines();
    assert_eq!(lines.next(), Some(first), "{on_host}");
    assert!(
        lines.next().is_some_and(|l| l.starts_with("lease ")),
        "the lease file names no expiry: {on_host}"
    );

    // Another connection, and the same one, are both refused with the holder's line.
    for t in [&t2, &t1] {
        let err = t
            .hold_lock(path, "lock 2 ci@runner pid 7 apply")
            .await
            .unwrap_err();
        match &err {
            ProviderError::HostLocked { host, holder } => {
                assert_eq!(host, "h1");
                assert_eq!(holder, first);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.to_string(), format!("host h1 is locked by {first}"));
    }

    // An explicit release waits for the host, which empties the file.
    lock.release().await;
    assert_eq!(t2.read_file(path, T).await.unwrap().unwrap(), b"");
    let second = t2
        .hold_lock(path, "lock 2 ci@runner pid 7 apply")
        .await
        .unwrap();

    // Dropping the lock releases it too.
    drop(second);
    let third = take_soon(&t1, path, "lock 3").await;
    drop(third);
}

#[tokio::test]
async fn lock_goes_away_with_its_connection() {
    let fleet = fleet();
    let path = "/srv/berth/run-b/.lock";
    let t1 = fleet.connect(1).await;
    let lock = t1
        .hold_lock(path, "lock on a connection that closes")
        .await
        .unwrap();
    t1.disconnect().await;
    tokio::time::timeout(Duration::from_secs(5), lock.lost())
        .await
        .expect("the lock notices its connection closed");
    assert!(!lock.is_held());
    let t2 = fleet.connect(1).await;
    take_soon(&t2, path, "next").await;
}

#[tokio::test]
async fn lock_is_lost_when_the_host_dies_and_free_when_it_is_back() {
    let fleet = fleet();
    let path = "/srv/berth/run-c/.lock";
    let t = fleet.connect(2).await;
    let lock = t.hold_lock(path, "lock on h2").await.unwrap();
    fleet.kill_host(2);
    tokio::time::timeout(Duration::from_secs(5), lock.lost())
        .await
        .expect("the lock notices the host died");
    assert!(!lock.is_held());
    fleet.start_host(2);
    // The killed holder's line is still in the file, but its script is gone: the lease is free.
    let again = t.hold_lock(path, "lock after restart").await.unwrap();
    assert!(again.is_held());
}

#[tokio::test]
async fn unusable_lock_path_is_a_command_failure() {
    let fleet = fleet();
    let t = fleet.connect(1).await;
    let err = t
        .hold_lock("/etc/hostname/sub/.lock", "x")
        .await
        .unwrap_err();
    match &err {
        ProviderError::CommandFailed { what, stderr, .. } => {
            assert_eq!(what, "take host lock /etc/hostname/sub/.lock");
            assert!(stderr.contains("Not a directory"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
}

/// Environment variables that make `lock_holder_child` take a lock and hold it.
const CHILD_ENV: &str = "BERTH_TEST_LOCK_CHILD";

/// Starts another process (this test binary, running only `lock_holder_child`) that takes the
/// lock at `path` on h1 and holds it; returns once it holds it, with its stdout lines.
async fn spawn_holder(
    fleet: &Fleet,
    path: &str,
) -> (KillOnDrop, std::sync::mpsc::Receiver<String>) {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .env("CHILD_ADDRESS", fleet.address(1))
        .env("CHILD_KEY", fleet.key())
        .env("CHILD_KNOWN_HOSTS", fleet.known_hosts())
        .env("CHILD_PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let ready = tokio::task::spawn_blocking(move || {
        // libtest prints "test lock_holder_child ... " before the child's own line.
        let held = lines.iter().any(|line: String| line.ends_with("LOCK HELD"));
        (held, lines)
    });
    let ready = tokio::time::timeout(Duration::from_secs(20), ready).await;
    let Ok(Ok((true, lines))) = ready else {
        panic!("the child did not take the lock");
    };
    (child, lines)
}

#[tokio::test]
async fn lock_of_a_sigkilled_holder_is_released() {
    let fleet = fleet();
    let path = "/srv/berth/run-d/.lock";
    let (mut child, _lines) = spawn_holder(&fleet, path).await;

    let t = fleet.connect(1).await;
    let err = t.hold_lock(path, "parent").await.unwrap_err();
    let holder = format!("lock child pid {}", child.0.id());
    assert!(
        matches!(&err, ProviderError::HostLocked { holder: h, .. } if *h == holder),
        "{err:?}"
    );

    // SIGKILL: no destructor runs, the kernel closes the TCP connection, sshd closes the
    // lock script's stdin and the script ends the lease.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let lock = take_soon(&t, path, "parent").await;
    assert!(lock.is_held());
}

/// Kills the helper process however the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Helper process for `lock_of_a_sigkilled_holder_is_released`; does nothing on its own.
#[test]
#[ignore = "run by lock_of_a_sigkilled_holder_is_released in a child process"]
fn lock_holder_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let var = |name: &str| std::env::var(name).expect(name);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = SshConfig::new("h1", var("CHILD_ADDRESS"));
        config.user = "root".into();
        config.key_path = Some(var("CHILD_KEY").into());
        config.known_hosts = Some(var("CHILD_KNOWN_HOSTS").into());
        let t = SshTransport::connect(config).await.unwrap();
        let holder = format!("lock child pid {}", std::process::id());
        let lock = t.hold_lock(&var("CHILD_PATH"), &holder).await.unwrap();
        println!("LOCK HELD");
        // The parent kills this process; the limit only matters if the parent died first.
        if let Ok(reason) = tokio::time::timeout(Duration::from_secs(180), lock.lost()).await {
            println!("LOCK LOST: {reason}");
        }
    });
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

/// A frozen holder is what a partition looks like from the host: its TCP connection stays up
/// (the kernel still acknowledges), sshd keeps its session and the script's stdin open, but
/// no renewal comes. Its lease must expire within a minute, not when sshd gives up (hours).
#[tokio::test]
async fn a_partitioned_holder_loses_its_lease_within_a_minute() {
    let fleet = fleet();
    let path = "/srv/berth/run-e/.lock";
    let (child, lines) = spawn_holder(&fleet, path).await;
    let holder = format!("lock child pid {}", child.0.id());
    signal(child.0.id(), "STOP");
    let frozen = Instant::now();

    let t = fleet.connect(1).await;
    let mut refusals = 0;
    let lock = loop {
        match t.hold_lock(path, "lock parent").await {
            Ok(lock) => break lock,
            Err(ProviderError::HostLocked { holder: h, .. }) => {
                assert_eq!(h, holder);
                refusals += 1;
            }
            Err(e) => panic!("{e}"),
        }
        assert!(
            frozen.elapsed() < LEASE_TTL + Duration::from_secs(15),
            "the frozen holder's lease is still live {:?} after it stopped renewing",
            frozen.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let taken = frozen.elapsed();
    eprintln!("lease of a frozen holder taken over {taken:?} after it froze ({refusals} refusals)");
    // Refused while the lease was live: the last renewal came at most one period before it
    // froze, so the lease lives at least TTL minus that.
    assert!(
        refusals > 0 && taken >= LEASE_TTL - LEASE_RENEW_EVERY,
        "{taken:?}"
    );
    let previous = lock
        .took_over()
        .expect("the takeover names the expired holder");
    assert!(previous.starts_with(&holder), "{previous}");
    assert!(previous.contains("was not renewed for"), "{previous}");
    let on_host = t.read_file(path, T).await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&on_host).starts_with("lock parent\n"),
        "{}",
        String::from_utf8_lossy(&on_host)
    );

    // Woken up, the old holder learns at once that it lost the host.
    signal(child.0.id(), "CONT");
    let lost = tokio::task::spawn_blocking(move || {
        lines
            .iter()
            .find_map(|l| l.split_once("LOCK LOST: ").map(|(_, r)| r.to_string()))
    });
    let lost = tokio::time::timeout(Duration::from_secs(15), lost)
        .await
        .expect("the old holder never noticed it lost the lock")
        .unwrap()
        .expect("the old holder ended without a word");
    assert!(lost.contains("host lock"), "{lost}");
    assert!(
        lock.is_held(),
        "the new holder lost the lease: {:?}",
        lock.lost_reason()
    );
    lock.release().await;
}

#[tokio::test]
async fn a_removed_lease_is_lost_by_its_holder_and_free_for_the_next() {
    let fleet = fleet();
    let path = "/srv/berth/run-f/.lock";
    let (t1, t2) = (fleet.connect(1).await, fleet.connect(1).await);
    let lock = t1
        .hold_lock(path, "lock 9 ops@a pid 1 (apply)")
        .await
        .unwrap();
    assert_eq!(
        t2.remove_lock(path).await.unwrap().as_deref(),
        Some("lock 9 ops@a pid 1 (apply)")
    );
    assert_eq!(t2.remove_lock(path).await.unwrap(), None);
    // Free at once for another berth...
    let next = t2.hold_lock(path, "lock 10").await.unwrap();
    // ...and the old holder finds out at its next renewal.
    let reason = tokio::time::timeout(LEASE_RENEW_EVERY + T, lock.lost())
        .await
        .expect("the holder of a removed lease never noticed");
    // (Removed, or already held by the next one, depending on when its renewal came.)
    assert!(
        reason.contains("is held by lock 10") || reason.contains("was removed"),
        "{reason}"
    );
    assert!(next.is_held());
}
