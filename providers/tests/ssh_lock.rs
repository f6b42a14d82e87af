//! The host lock (DESIGN.md section 7) on real sshd hosts: exclusion, the holder named in the
//! refusal, release on drop, on a lost connection and on SIGKILL of the holder. Needs root.

mod ssh_common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_providers::{HostLock, ProviderError, SshConfig, SshTransport, Transport};
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
    assert_eq!(String::from_utf8_lossy(&on_host), format!("{first}\n"));

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
    // The killed holder's line is still in the file, but flock is what counts.
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

#[tokio::test]
async fn lock_of_a_sigkilled_holder_is_released() {
    let fleet = fleet();
    let path = "/srv/berth/run-d/.lock";
    // Another process (this test binary, running only `lock_holder_child`) holds the lock.
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
    let ready = tokio::task::spawn_blocking(move || {
        // libtest prints "test lock_holder_child ... " before the child's own line.
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .any(|line| line.ends_with("LOCK HELD"))
    });
    let ready = tokio::time::timeout(Duration::from_secs(20), ready).await;
    assert!(
        matches!(ready, Ok(Ok(true))),
        "the child did not take the lock"
    );

    let t = fleet.connect(1).await;
    let err = t.hold_lock(path, "parent").await.unwrap_err();
    let holder = format!("lock child pid {}", child.0.id());
    assert!(
        matches!(&err, ProviderError::HostLocked { holder: h, .. } if *h == holder),
        "{err:?}"
    );

    // SIGKILL: no destructor runs, the kernel closes the TCP connection, sshd closes the
    // lock script's stdin and the flock goes away.
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
        let _lock = t.hold_lock(&var("CHILD_PATH"), &holder).await.unwrap();
        println!("LOCK HELD");
        // The parent kills this process; the limit only matters if the parent died first.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
}
