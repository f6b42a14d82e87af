//! The state lock against real files and real processes: a second berth in this process, a berth
//! killed with SIGKILL, and a berth still running in another process.
//!
//! Other processes are this test binary run again on one test (`--exact`), with
//! `BERTH_STATE_TEST_CHILD` telling it which role to play instead of the test.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_state::{LockInfo, LockOptions, StateError, StateLock, force_unlock, read_lock_info};

const CHILD_ENV: &str = "BERTH_STATE_TEST_CHILD";
const LOCKED_MARKER: &str = "BERTH_STATE_TEST_CHILD_LOCKED";

fn no_wait() -> LockOptions {
    LockOptions::default()
}

fn forced() -> LockOptions {
    LockOptions {
        timeout: Duration::ZERO,
        force: true,
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// In a child process, plays the role it was started for and returns true (the test body must
/// then return); in the test process, returns false.
fn play_child_role() -> bool {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let (mode, dir) = role.split_once(':').expect("role is MODE:DIR");
    let dir = PathBuf::from(dir);
    match mode {
        "die" => {
            let _lock = StateLock::acquire(&dir, "apply", &no_wait()).expect("child acquires");
            // SIGKILL: no destructor runs, as when an operator kills berth or the machine OOMs.
            // SAFETY: signalling our own pid has no memory-safety effect.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL does not return");
        }
        "hold" => {
            // If the parent never lets go (a bug in the test), do not hang the suite.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_secs(30));
                std::process::exit(3);
            });
            let lock = StateLock::acquire(&dir, "drift", &no_wait()).expect("child acquires");
            // libtest has already printed "test NAME ... " without a newline.
            println!("\n{LOCKED_MARKER}");
            std::io::stdout().flush().unwrap();
            // Hold until the parent closes our stdin.
            let mut rest = String::new();
            let _ = std::io::stdin().read_line(&mut rest);
            lock.release().expect("child releases");
        }
        other => panic!("unknown child role {other}"),
    }
    true
}

fn spawn_child(test_name: &str, mode: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the test binary")
}

/// A berth that took the lock and was then killed: its info stays in the file, its OS lock is gone.
fn leave_lock_of_killed_berth(test_name: &str, dir: &Path) -> LockInfo {
    let mut child = spawn_child(test_name, "die", dir);
    let pid = child.id();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child should have killed itself"
    );
    let info = read_lock_info(dir)
        .unwrap()
        .expect("the killed berth's info stays in the lock file");
    assert_eq!(info.pid, pid);
    info
}

fn expect_locked(result: berth_state::Result<StateLock>) -> (LockInfo, StateError) {
    match result {
        Err(err @ StateError::Locked { .. }) => {
            let StateError::Locked { holder, .. } = &err else {
                unreachable!()
            };
            ((**holder).clone(), err)
        }
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(lock) => panic!("expected Locked, got the lock {:?}", lock.info()),
    }
}

fn help(err: &StateError) -> String {
    miette::Diagnostic::help(err)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

#[test]
fn second_acquire_fails_at_once_naming_the_first_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let first = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
    assert_eq!(first.info().pid, std::process::id());
    assert_eq!(first.info().operation, "apply");
    assert_eq!(first.info().id.len(), 8);

    let started = Instant::now();
    let (holder, err) = expect_locked(StateLock::acquire(tmp.path(), "plan", &no_wait()));
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "timeout 0 must not wait"
    );
    assert_eq!(&holder, first.info());

    let msg = err.to_string();
    let who = format!("{}@{}", holder.user, holder.hostname);
    for part in [holder.id.as_str(), who.as_str(), "apply", "held for 0s"] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
    assert!(
        msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    assert!(
        help(&err).contains(&format!("berth force-unlock {}", holder.id)),
        "{}",
        help(&err)
    );
    assert_eq!(
        miette::Diagnostic::code(&err).unwrap().to_string(),
        "berth::state::locked"
    );
}

#[test]
fn acquire_waits_for_its_timeout_then_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let _first = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
    let opts = LockOptions {
        timeout: Duration::from_millis(300),
        force: false,
    };
    let started = Instant::now();
    expect_locked(StateLock::acquire(tmp.path(), "apply", &opts));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
}

#[test]
fn acquire_succeeds_when_the_holder_releases_while_it_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let first = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
    let first_id = first.info().id.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(250));
        drop(first);
    });
    let opts = LockOptions {
        timeout: Duration::from_secs(5),
        force: false,
    };
    let started = Instant::now();
    let second = StateLock::acquire(tmp.path(), "select", &opts).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    releaser.join().unwrap();
    assert_ne!(second.info().id, first_id);
    assert_eq!(second.took_over(), None);
    assert_eq!(
        read_lock_info(tmp.path()).unwrap().as_ref(),
        Some(second.info())
    );
}

#[test]
fn release_empties_the_lock_file_and_frees_the_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
    let path = lock.path().to_path_buf();
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    lock.release().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    assert_eq!(read_lock_info(tmp.path()).unwrap(), None);
    StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
}

#[test]
fn lock_file_is_owner_only_and_the_missing_state_dir_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh/.berth");
    let lock = StateLock::acquire(&dir, "apply", &no_wait()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(lock.path()), 0o600);
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn lock_of_a_killed_berth_is_stale_and_force_takes_it_over() {
    if play_child_role() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dead = leave_lock_of_killed_berth(
        "lock_of_a_killed_berth_is_stale_and_force_takes_it_over",
        tmp.path(),
    );

    let err = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap_err();
    let StateError::StaleLock { holder } = &err else {
        panic!("expected StaleLock, got {err:?}");
    };
    assert_eq!(**holder, dead);
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!("lock {} held by ", dead.id)),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("pid {} (apply, since ", dead.pid)),
        "{msg}"
    );
    assert!(msg.ends_with("is stale: that process is gone"), "{msg}");
    let help = help(&err);
    assert!(help.contains("--force"), "{help}");
    assert!(
        help.contains(&format!("berth force-unlock {}", dead.id)),
        "{help}"
    );

    // Waiting does not help with a dead holder: fail at once even with a timeout.
    let patient = LockOptions {
        timeout: Duration::from_secs(10),
        force: false,
    };
    let started = Instant::now();
    assert!(matches!(
        StateLock::acquire(tmp.path(), "apply", &patient),
        Err(StateError::StaleLock { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));

    let lock = StateLock::acquire(tmp.path(), "apply", &forced()).unwrap();
    assert_eq!(lock.took_over(), Some(&dead));
    assert_eq!(lock.info().pid, std::process::id());
    assert_eq!(
        read_lock_info(tmp.path()).unwrap().as_ref(),
        Some(lock.info())
    );
}

#[test]
fn force_unlock_removes_a_dead_berths_lock_only_by_its_id() {
    if play_child_role() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dead = leave_lock_of_killed_berth(
        "force_unlock_removes_a_dead_berths_lock_only_by_its_id",
        tmp.path(),
    );

    let err = force_unlock(tmp.path(), "0badc0de").unwrap_err();
    assert!(matches!(err, StateError::LockIdMismatch { .. }), "{err:?}");
    assert!(!err.to_string().contains(&dead.id), "{err}");
    assert_eq!(read_lock_info(tmp.path()).unwrap(), Some(dead.clone()));

    let removed = force_unlock(tmp.path(), &dead.id).unwrap();
    assert_eq!(removed, dead);
    assert_eq!(read_lock_info(tmp.path()).unwrap(), None);
    StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();

    let err = force_unlock(tmp.path(), &dead.id).unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err:?}");
}

#[test]
fn a_berth_running_in_another_process_is_never_overridden() {
    if play_child_role() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut child = spawn_child(
        "a_berth_running_in_another_process_is_never_overridden",
        "hold",
        tmp.path(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().trim_end() == LOCKED_MARKER),
        "child never took the lock"
    );

    let (holder, _) = expect_locked(StateLock::acquire(tmp.path(), "apply", &no_wait()));
    assert_eq!(holder.pid, child.id());
    assert_eq!(holder.operation, "drift");
    // --force reclaims only dead holders.
    expect_locked(StateLock::acquire(tmp.path(), "apply", &forced()));

    let err = force_unlock(tmp.path(), &holder.id).unwrap_err();
    assert!(matches!(err, StateError::LockInUse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "lock {} is held by a running berth (pid {}",
            holder.id,
            child.id()
        )),
        "{msg}"
    );
    assert!(msg.ends_with("stop it first"), "{msg}");
    assert_eq!(read_lock_info(tmp.path()).unwrap(), Some(holder));

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
}

#[test]
fn a_holder_on_another_machine_is_locked_not_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let remote = LockInfo {
        id: "a1b2c3d4".into(),
        // Our pid namespace says nothing about another machine's: this pid is surely dead here.
        pid: u32::MAX - 1,
        hostname: "elsewhere.invalid".into(),
        user: "ops".into(),
        operation: "apply".into(),
        started_at: now_unix() - 60,
    };
    std::fs::write(
        tmp.path().join("berth.lock"),
        serde_json::to_vec(&remote).unwrap(),
    )
    .unwrap();

    let (holder, err) = expect_locked(StateLock::acquire(tmp.path(), "apply", &no_wait()));
    assert_eq!(holder, remote);
    assert!(err.to_string().contains("ops@elsewhere.invalid"), "{err}");
    expect_locked(StateLock::acquire(tmp.path(), "apply", &forced()));

    assert_eq!(force_unlock(tmp.path(), "a1b2c3d4").unwrap(), remote);
    StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
}

#[test]
fn an_unreadable_lock_file_is_reported_not_panicked_on() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("berth.lock");
    std::fs::write(&path, b"\xff\x00 not json at all").unwrap();

    let err = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap_err();
    assert!(matches!(err, StateError::UnreadableLock { .. }), "{err:?}");
    assert!(err.to_string().contains("berth.lock"), "{err}");
    assert!(help(&err).contains("--force"), "{}", help(&err));
    assert!(matches!(
        read_lock_info(tmp.path()),
        Err(StateError::UnreadableLock { .. })
    ));
    assert!(matches!(
        force_unlock(tmp.path(), "whatever"),
        Err(StateError::UnreadableLock { .. })
    ));

    let lock = StateLock::acquire(tmp.path(), "apply", &forced()).unwrap();
    assert_eq!(
        read_lock_info(tmp.path()).unwrap().as_ref(),
        Some(lock.info())
    );
}

#[test]
fn a_held_lock_with_unreadable_content_still_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let lock = StateLock::acquire(tmp.path(), "apply", &no_wait()).unwrap();
    std::fs::write(lock.path(), b"garbage").unwrap();

    for opts in [no_wait(), forced()] {
        let err = StateLock::acquire(tmp.path(), "apply", &opts).unwrap_err();
        assert!(matches!(err, StateError::LockedByUnknown { .. }), "{err:?}");
        assert!(err.to_string().contains("does not say who"), "{err}");
    }
}

#[test]
fn force_unlock_without_a_lock_file_says_there_is_nothing_to_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let err = force_unlock(tmp.path(), "a1b2c3d4").unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err:?}");
    assert_eq!(read_lock_info(tmp.path()).unwrap(), None);
}

#[test]
fn lock_age_is_shown_in_minutes_and_seconds() {
    let err = StateError::Locked {
        holder: Box::new(LockInfo {
            id: "a1b2c3d4".into(),
            pid: 4242,
            hostname: "bastion".into(),
            user: "ops".into(),
            operation: "apply".into(),
            started_at: 0,
        }),
        held_for: Duration::from_millis(184_700),
    };
    assert_eq!(
        err.to_string(),
        "state is locked: lock a1b2c3d4 held by ops@bastion pid 4242 (apply), held for 3m 4s"
    );
}
