//! The sled backend: the shared conformance suite, plus what only sled has (the lock file and
//! its modes, what happens when that file is damaged or held by a forked child).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_state::{LockInfo, LockOptions, SledBackend, StateBackend, StateError};

#[macro_use]
mod conformance;

conformance_suite!(sled, |dir: &Path| Box::new(SledBackend::new(dir))
    as Box<dyn StateBackend>);

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

fn expect_locked(result: berth_state::Result<berth_state::StateGuard>) -> (LockInfo, StateError) {
    match result {
        Err(err @ StateError::Locked { .. }) => {
            let StateError::Locked { holder, .. } = &err else {
                unreachable!()
            };
            ((**holder).clone(), err)
        }
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(guard) => panic!("expected Locked, got the lock {:?}", guard.info()),
    }
}

fn help(err: &StateError) -> String {
    miette::Diagnostic::help(err)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

#[test]
fn describe_names_sled_and_the_directory() {
    assert_eq!(
        SledBackend::new(".berth").describe(),
        "sled state in .berth"
    );
}

#[test]
fn release_empties_the_lock_file_and_nothing_is_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = SledBackend::new(tmp.path());
    let guard = backend.lock("apply", &no_wait()).unwrap();
    let path = tmp.path().join("berth.lock");
    assert!(std::fs::metadata(&path).unwrap().len() > 0);
    guard.release().unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
}

#[test]
fn lock_file_is_owner_only_and_the_missing_state_dir_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("fresh/.berth");
    let _guard = SledBackend::new(&dir).lock("apply", &no_wait()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.join("berth.lock")), 0o600);
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn a_holder_on_another_machine_is_locked_not_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = SledBackend::new(tmp.path());
    let remote = LockInfo {
        id: "a1b2c3d4".into(),
        // Our pid namespace says nothing about another machine's: this pid is surely dead here.
        pid: u32::MAX - 1,
        hostname: "elsewhere.invalid".into(),
        user: "ops".into(),
        operation: "apply".into(),
        started_at: now_unix() - 60,
        ci: None,
    };
    std::fs::write(
        tmp.path().join("berth.lock"),
        serde_json::to_vec(&remote).unwrap(),
    )
    .unwrap();

    let (holder, err) = expect_locked(backend.lock("apply", &no_wait()));
    assert_eq!(holder, remote);
    assert!(err.to_string().contains("ops@elsewhere.invalid"), "{err}");
    expect_locked(backend.lock("apply", &forced()));

    assert_eq!(backend.force_unlock("a1b2c3d4").unwrap(), remote);
    backend.lock("apply", &no_wait()).unwrap();
}

#[test]
fn an_unreadable_lock_file_is_reported_not_panicked_on() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = SledBackend::new(tmp.path());
    let path = tmp.path().join("berth.lock");
    std::fs::write(&path, b"\xff\x00 not json at all").unwrap();

    let err = backend.lock("apply", &no_wait()).unwrap_err();
    assert!(matches!(err, StateError::UnreadableLock { .. }), "{err:?}");
    assert!(err.to_string().contains("berth.lock"), "{err}");
    assert!(help(&err).contains("--force"), "{}", help(&err));
    assert!(matches!(
        backend.holder(),
        Err(StateError::UnreadableLock { .. })
    ));
    assert!(matches!(
        backend.force_unlock("whatever"),
        Err(StateError::UnreadableLock { .. })
    ));

    let guard = backend.lock("apply", &forced()).unwrap();
    assert_eq!(backend.holder().unwrap().as_ref(), Some(guard.info()));
}

#[test]
fn a_held_lock_with_unreadable_content_still_blocks() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = SledBackend::new(tmp.path());
    let _guard = backend.lock("apply", &no_wait()).unwrap();
    std::fs::write(tmp.path().join("berth.lock"), b"garbage").unwrap();

    for opts in [no_wait(), forced()] {
        let err = backend.lock("apply", &opts).unwrap_err();
        assert!(matches!(err, StateError::LockedByUnknown { .. }), "{err:?}");
        assert!(err.to_string().contains("does not say who"), "{err}");
    }
}

#[test]
fn force_unlock_without_a_lock_file_says_there_is_nothing_to_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let backend = SledBackend::new(tmp.path());
    let err = backend.force_unlock("a1b2c3d4").unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err:?}");
    assert_eq!(backend.holder().unwrap(), None);
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
            ci: None,
        }),
        held_for: Duration::from_millis(184_700),
    };
    assert_eq!(
        err.to_string(),
        "state is locked: lock a1b2c3d4 held by ops@bastion pid 4242 (apply), held for 3m 4s"
    );
}

/// A failed acquire must leave the lock free at once, even while another thread of the same
/// process forks children: between fork and exec a child shares every open file description,
/// flock included, so a lock released only by closing its file stayed held by such a child
/// (a long-running berth forks constantly: the local transport runs every command that way).
/// Each child here lingers 20 ms before exec, so one almost always holds copies of the
/// parent's descriptors.
#[test]
fn a_failed_acquire_leaves_the_lock_free_while_other_threads_fork() {
    use std::os::unix::process::CommandExt;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let tmp = tempfile::tempdir().unwrap();
    let backend = SledBackend::new(tmp.path());
    let done = Arc::new(AtomicBool::new(false));
    let forker = {
        let done = done.clone();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let mut cmd = Command::new("true");
                // SAFETY: the closure only calls usleep, which is async-signal-safe.
                unsafe {
                    cmd.pre_exec(|| {
                        libc::usleep(20_000);
                        Ok(())
                    });
                }
                if let Ok(mut child) = cmd.spawn() {
                    let _ = child.wait();
                }
            }
        })
    };
    let mut failures = Vec::new();
    for round in 0..100 {
        std::fs::write(tmp.path().join("berth.lock"), b"garbled").unwrap();
        let err = backend.lock("apply", &no_wait()).unwrap_err();
        assert!(matches!(err, StateError::UnreadableLock { .. }), "{err:?}");
        match backend.lock("apply", &forced()) {
            Ok(guard) => guard.release().unwrap(),
            Err(err) => failures.push(format!("round {round}: {err}")),
        }
    }
    done.store(true, Ordering::Relaxed);
    forker.join().unwrap();
    assert!(failures.is_empty(), "the lock stayed held: {failures:#?}");
}
