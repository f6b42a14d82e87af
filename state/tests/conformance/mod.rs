//! The contract every `StateBackend` keeps, as one test suite each backend runs by naming its
//! constructor:
//!
//! ```ignore
//! #[macro_use]
//! mod conformance;
//! conformance_suite!(sled, |dir: &Path| Box::new(SledBackend::new(dir)) as Box<dyn StateBackend>);
//! ```
//!
//! The constructor gets a fresh temporary directory per test and must return a backend on the
//! same state whenever it is given the same directory (in this process or another), and on a
//! new, empty state for a new directory. It is called in the test process before any child
//! process is started, and must touch nothing of the state itself.
//!
//! Cases that need a berth in another process (killed with SIGKILL, or holding the lock) run this
//! test binary again on the one test (`--exact`), with `BERTH_CONFORMANCE_CHILD` naming the role
//! to play instead of the test.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_state::{
    HistoryChange, HistoryEntry, Intent, LockInfo, LockOptions, ResourceKind, ResourceRecord,
    ResourceStatus, Selection, StateBackend, StateError, StateGuard, StateStore,
};

/// Expands to one `#[test]` per case of the contract, in a module named `$name`, each run
/// against the backends `$make` builds from a directory.
macro_rules! conformance_suite {
    ($name:ident, $make:expr) => {
        conformance_suite!(@cases $name, $make, [
            serial_bumps_on_changes_of_resources_and_selections_only,
            concurrent_writers_each_get_their_own_serial_bump,
            lists_are_ordered_by_address_group_host_and_age,
            every_write_survives_dropping_everything_without_a_flush,
            every_write_survives_a_sigkill_right_after_it_returns,
            a_second_writer_fails_at_once_naming_the_first_holder,
            a_waiting_writer_times_out_then_gets_the_lock_after_release,
            lineage_is_stable_across_reopen_and_new_for_a_new_state,
            history_keeps_every_entry_as_written,
            intents_are_put_replaced_cleared_and_listed,
            selections_are_put_replaced_and_removed,
            the_holder_is_readable_while_held_and_gone_after_release,
            a_holder_killed_on_this_host_is_stale_and_force_takes_it_over,
            a_berth_running_in_another_process_is_never_overridden,
            force_unlock_refuses_a_wrong_id_without_revealing_the_right_one,
            force_unlock_by_the_right_id_clears_a_dead_holder,
            the_guard_opens_one_store_shared_by_its_callers,
        ]);
    };
    (@cases $name:ident, $make:expr, [$($case:ident),* $(,)?]) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            fn make(dir: &::std::path::Path) -> Box<dyn ::berth_state::StateBackend> {
                ($make)(dir)
            }

            $(
                #[test]
                fn $case() {
                    let suite = crate::conformance::Suite::new(make, module_path!(), stringify!($case));
                    if suite.play_child_role() {
                        return;
                    }
                    crate::conformance::$case(&suite);
                }
            )*
        }
    };
}

const CHILD_ENV: &str = "BERTH_CONFORMANCE_CHILD";
const LOCKED_MARKER: &str = "BERTH_CONFORMANCE_CHILD_LOCKED";

/// One case of the suite run against one backend constructor.
pub struct Suite {
    make: fn(&Path) -> Box<dyn StateBackend>,
    /// The test's name as libtest knows it (`sled::lineage_is_...`), for re-running it.
    test: String,
}

impl Suite {
    pub fn new(make: fn(&Path) -> Box<dyn StateBackend>, module: &str, case: &str) -> Suite {
        // libtest names tests without the crate's own name, which module_path! starts with.
        let module = module.split_once("::").map_or("", |(_, rest)| rest);
        Suite {
            make,
            test: format!("{module}::{case}"),
        }
    }

    fn backend(&self, dir: &Path) -> Box<dyn StateBackend> {
        (self.make)(dir)
    }

    /// In a child process, plays the role it was started for and returns true (the test body
    /// must then return); in the test process, returns false.
    pub fn play_child_role(&self) -> bool {
        let Ok(role) = std::env::var(CHILD_ENV) else {
            return false;
        };
        let (mode, dir) = role.split_once(':').expect("role is MODE:DIR");
        let backend = self.backend(Path::new(dir));
        match mode {
            "die" => {
                let _guard = backend.lock("apply", &no_wait()).expect("child locks");
                die();
            }
            "write-then-die" => {
                let guard = backend.lock("apply", &no_wait()).expect("child locks");
                let store = guard.store().expect("child opens the store");
                store.put_resource(&record("model.a@gpu-a")).unwrap();
                store.put_selection(&selection("main", "gpu-a")).unwrap();
                store.put_intent(&intent("model.b@gpu-a")).unwrap();
                store.append_history(&history(1)).unwrap();
                die();
            }
            "hold" => {
                // If the parent never lets go (a bug in the test), do not hang the suite.
                std::thread::spawn(|| {
                    std::thread::sleep(Duration::from_secs(30));
                    std::process::exit(3);
                });
                let guard = backend.lock("drift", &no_wait()).expect("child locks");
                // libtest has already printed "test NAME ... " without a newline.
                println!("\n{LOCKED_MARKER}");
                std::io::stdout().flush().unwrap();
                let mut rest = String::new();
                let _ = std::io::stdin().read_line(&mut rest);
                guard.release().expect("child releases");
            }
            other => panic!("unknown child role {other}"),
        }
        true
    }

    fn spawn(&self, mode: &str, dir: &Path) -> Child {
        // Built once here first, so that whatever a backend sets up on first use for its
        // children to share (a database server) exists before the child looks for it.
        drop(self.backend(dir));
        Command::new(std::env::current_exe().unwrap())
            .args([
                self.test.as_str(),
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{mode}:{}", dir.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the test binary")
    }

    /// Runs a child berth in `mode` that kills itself, and returns its pid.
    fn run_killed_child(&self, mode: &str, dir: &Path) -> u32 {
        let mut child = self.spawn(mode, dir);
        let pid = child.id();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "the child berth should have been killed, not {status}"
        );
        pid
    }

    /// A berth that took the lock and was then killed: its holder record stays, its lock is gone.
    fn leave_lock_of_killed_berth(&self, dir: &Path) -> LockInfo {
        let pid = self.run_killed_child("die", dir);
        let info = self
            .backend(dir)
            .holder()
            .unwrap()
            .expect("the killed berth's holder record stays");
        assert_eq!(info.pid, pid);
        info
    }
}

/// SIGKILL: no destructor runs, as when an operator kills berth or the machine runs out of memory.
fn die() -> ! {
    // SAFETY: signalling our own pid has no memory-safety effect.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    unreachable!("SIGKILL does not return");
}

fn no_wait() -> LockOptions {
    LockOptions::default()
}

fn forced() -> LockOptions {
    LockOptions {
        timeout: Duration::ZERO,
        force: true,
    }
}

fn patient(timeout: Duration) -> LockOptions {
    LockOptions {
        timeout,
        force: false,
    }
}

fn record(address: &str) -> ResourceRecord {
    let mut attributes = BTreeMap::new();
    attributes.insert("port".to_owned(), serde_json::json!(8080));
    ResourceRecord {
        address: address.parse().unwrap(),
        kind: ResourceKind::Model,
        host: "gpu-a".to_owned(),
        status: ResourceStatus::Ready,
        fingerprint: Some("f1".to_owned()),
        attributes,
        updated_at: 1_700_000_000,
    }
}

fn selection(group: &str, host: &str) -> Selection {
    Selection {
        group: group.into(),
        host: host.into(),
        model: "qwen".into(),
        selected_at: 6,
    }
}

fn intent(address: &str) -> Intent {
    Intent {
        address: address.parse().unwrap(),
        action: "replace".into(),
        pid: 42,
        started_at: 5,
    }
}

fn history(serial: u64) -> HistoryEntry {
    HistoryEntry {
        serial,
        operation: "apply".into(),
        user: "ops".into(),
        hostname: "laptop".into(),
        started_at: 1,
        finished_at: 2,
        changes: vec![HistoryChange {
            address: "model.a@gpu-a".parse().unwrap(),
            action: "create".into(),
            outcome: "created".into(),
        }],
        interrupted: true,
    }
}

/// A locked state in a fresh directory, with its store.
struct Open {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store: Arc<dyn StateStore>,
    guard: StateGuard,
}

fn open_fresh(suite: &Suite) -> Open {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let guard = suite.backend(&dir).lock("apply", &no_wait()).unwrap();
    let store = guard.store().unwrap();
    Open {
        _tmp: tmp,
        dir,
        store,
        guard,
    }
}

fn serial(store: &dyn StateStore) -> u64 {
    store.meta().unwrap().serial
}

fn expect_locked(result: berth_state::Result<StateGuard>) -> (LockInfo, StateError) {
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

pub fn serial_bumps_on_changes_of_resources_and_selections_only(suite: &Suite) {
    let s = open_fresh(suite);
    let store = &*s.store;
    assert_eq!(serial(store), 0);
    store.put_resource(&record("model.a@gpu-a")).unwrap();
    assert_eq!(serial(store), 1);
    store.put_resource(&record("model.a@gpu-a")).unwrap();
    assert_eq!(serial(store), 2, "an overwrite is a change");
    assert!(store.remove_resource("model.a@gpu-a").unwrap());
    assert_eq!(serial(store), 3);
    assert!(!store.remove_resource("model.a@gpu-a").unwrap());
    assert_eq!(serial(store), 3, "removing nothing changes nothing");

    store.put_selection(&selection("main", "gpu-a")).unwrap();
    assert_eq!(serial(store), 4);
    assert!(store.remove_selection("main", "gpu-a").unwrap());
    assert_eq!(serial(store), 5);
    assert!(!store.remove_selection("main", "gpu-a").unwrap());
    assert_eq!(serial(store), 5);

    store.put_intent(&intent("model.a@gpu-a")).unwrap();
    store.clear_intent("model.a@gpu-a").unwrap();
    store.append_history(&history(5)).unwrap();
    store.flush().unwrap();
    assert_eq!(
        serial(store),
        5,
        "intents and history are bookkeeping, not state"
    );
}

pub fn concurrent_writers_each_get_their_own_serial_bump(suite: &Suite) {
    let s = open_fresh(suite);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&s.store);
            std::thread::spawn(move || {
                for i in 0..10 {
                    store
                        .put_resource(&record(&format!("model.m{w}-{i}@gpu-a")))
                        .unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(serial(&*s.store), 40);
    assert_eq!(s.store.resources().unwrap().len(), 40);
}

pub fn lists_are_ordered_by_address_group_host_and_age(suite: &Suite) {
    let s = open_fresh(suite);
    let store = &*s.store;
    for address in [
        "model.b@gpu-a",
        "backend.cuda@gpu-a",
        "host.gpu-a",
        "model.a@gpu-b",
    ] {
        store.put_resource(&record(address)).unwrap();
    }
    let addresses: Vec<_> = store
        .resources()
        .unwrap()
        .into_iter()
        .map(|r| r.address)
        .collect();
    assert_eq!(
        addresses,
        [
            "backend.cuda@gpu-a",
            "host.gpu-a",
            "model.a@gpu-b",
            "model.b@gpu-a"
        ]
    );

    // "main" < "main-2" but "main@..." would sort after "main-2@...": the group is compared first.
    for (group, host) in [
        ("main-2", "gpu-a"),
        ("main", "gpu-b"),
        ("aux", "gpu-a"),
        ("main", "gpu-a"),
    ] {
        store.put_selection(&selection(group, host)).unwrap();
    }
    let pairs: Vec<_> = store
        .selections()
        .unwrap()
        .into_iter()
        .map(|s| format!("{}/{}", s.group, s.host))
        .collect();
    assert_eq!(
        pairs,
        ["aux/gpu-a", "main/gpu-a", "main/gpu-b", "main-2/gpu-a"]
    );

    for address in ["model.z@gpu-a", "model.c@gpu-a"] {
        store.put_intent(&intent(address)).unwrap();
    }
    let intents: Vec<_> = store
        .intents()
        .unwrap()
        .into_iter()
        .map(|i| i.address)
        .collect();
    assert_eq!(intents, ["model.c@gpu-a", "model.z@gpu-a"]);

    // More entries than one byte can count, so a little-endian key would misorder them; serials
    // run backwards so that the order cannot come from them.
    for serial in (0..300u64).rev() {
        store.append_history(&history(serial)).unwrap();
    }
    let serials: Vec<_> = store
        .history()
        .unwrap()
        .into_iter()
        .map(|e| e.serial)
        .collect();
    assert_eq!(serials, (0..300).rev().collect::<Vec<_>>());
}

pub fn every_write_survives_dropping_everything_without_a_flush(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let meta_before = {
        let backend = suite.backend(&dir);
        let guard = backend.lock("apply", &no_wait()).unwrap();
        let store = guard.store().unwrap();
        store.put_resource(&record("model.a@gpu-a")).unwrap();
        store.put_intent(&intent("model.b@gpu-a")).unwrap();
        store.put_selection(&selection("main", "gpu-a")).unwrap();
        store.append_history(&history(2)).unwrap();
        store.meta().unwrap()
    };

    let guard = suite.backend(&dir).lock("plan", &no_wait()).unwrap();
    let store = guard.store().unwrap();
    assert_eq!(store.meta().unwrap(), meta_before);
    assert_eq!(store.resources().unwrap(), [record("model.a@gpu-a")]);
    assert_eq!(
        store.resource("model.a@gpu-a").unwrap(),
        Some(record("model.a@gpu-a"))
    );
    assert_eq!(store.resource("model.zz@gpu-a").unwrap(), None);
    assert_eq!(store.intents().unwrap(), [intent("model.b@gpu-a")]);
    assert_eq!(store.selections().unwrap(), [selection("main", "gpu-a")]);
    assert_eq!(store.history().unwrap(), [history(2)]);
}

pub fn every_write_survives_a_sigkill_right_after_it_returns(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("state");
    let pid = suite.run_killed_child("write-then-die", &dir);

    let guard = suite.backend(&dir).lock("apply", &forced()).unwrap();
    assert_eq!(guard.took_over().map(|h| h.pid), Some(pid));
    let store = guard.store().unwrap();
    assert_eq!(store.resources().unwrap(), [record("model.a@gpu-a")]);
    assert_eq!(store.selections().unwrap(), [selection("main", "gpu-a")]);
    assert_eq!(store.intents().unwrap(), [intent("model.b@gpu-a")]);
    assert_eq!(store.history().unwrap(), [history(1)]);
    assert_eq!(serial(&*store), 2);
}

pub fn a_second_writer_fails_at_once_naming_the_first_holder(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let first = suite.backend(tmp.path()).lock("apply", &no_wait()).unwrap();
    assert_eq!(first.info().pid, std::process::id());
    assert_eq!(first.info().operation, "apply");
    assert_eq!(first.took_over(), None);

    let started = Instant::now();
    let (holder, err) = expect_locked(suite.backend(tmp.path()).lock("plan", &no_wait()));
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "a zero timeout must not wait ({:?})",
        started.elapsed()
    );
    assert_eq!(&holder, first.info());

    let msg = err.to_string();
    let who = format!("{}@{}", holder.user, holder.hostname);
    let pid = format!("pid {}", std::process::id());
    for part in [holder.id.as_str(), who.as_str(), pid.as_str(), "(apply)"] {
        assert!(msg.contains(part), "{msg:?} lacks {part:?}");
    }
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

pub fn a_waiting_writer_times_out_then_gets_the_lock_after_release(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let first = suite.backend(tmp.path()).lock("apply", &no_wait()).unwrap();

    let started = Instant::now();
    expect_locked(
        suite
            .backend(tmp.path())
            .lock("apply", &patient(Duration::from_millis(300))),
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");

    let first_id = first.info().id.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(250));
        first.release().unwrap();
    });
    let started = Instant::now();
    let second = suite
        .backend(tmp.path())
        .lock("select", &patient(Duration::from_secs(5)))
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(250));
    releaser.join().unwrap();
    assert_ne!(second.info().id, first_id);
    assert_eq!(
        second.took_over(),
        None,
        "a released lock is not taken over"
    );
    assert_eq!(
        suite.backend(tmp.path()).holder().unwrap().as_ref(),
        Some(second.info())
    );
}

pub fn lineage_is_stable_across_reopen_and_new_for_a_new_state(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let meta_of = |dir: &Path| {
        let guard = suite.backend(dir).lock("plan", &no_wait()).unwrap();
        guard.store().unwrap().meta().unwrap()
    };
    let first = meta_of(&tmp.path().join("a"));
    assert_eq!(first.lineage.len(), 32);
    assert!(first.lineage.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(first.hmac_key.len(), 64);
    assert!(first.hmac_key.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(first.serial, 0);

    assert_eq!(meta_of(&tmp.path().join("a")), first);
    let other = meta_of(&tmp.path().join("b"));
    assert_ne!(other.lineage, first.lineage);
    assert_ne!(other.hmac_key, first.hmac_key);
}

pub fn history_keeps_every_entry_as_written(suite: &Suite) {
    let s = open_fresh(suite);
    assert_eq!(s.store.history().unwrap(), []);
    let mut second = history(2);
    second.operation = "select".into();
    second.changes.push(HistoryChange {
        address: "model.b@gpu-a".parse().unwrap(),
        action: "destroy".into(),
        outcome: "failed at stop".into(),
    });
    s.store.append_history(&history(1)).unwrap();
    s.store.append_history(&second).unwrap();
    // Two entries with the same serial are two entries: history is a log, not a map.
    s.store.append_history(&second).unwrap();
    assert_eq!(
        s.store.history().unwrap(),
        [history(1), second.clone(), second]
    );
}

pub fn intents_are_put_replaced_cleared_and_listed(suite: &Suite) {
    let s = open_fresh(suite);
    let store = &*s.store;
    assert_eq!(store.intents().unwrap(), []);
    store.put_intent(&intent("model.a@gpu-a")).unwrap();
    store.put_intent(&intent("model.b@gpu-a")).unwrap();
    let mut newer = intent("model.a@gpu-a");
    newer.action = "destroy".into();
    store.put_intent(&newer).unwrap();
    assert_eq!(
        store.intents().unwrap(),
        [newer.clone(), intent("model.b@gpu-a")]
    );
    store.clear_intent("model.b@gpu-a").unwrap();
    store.clear_intent("model.b@gpu-a").unwrap();
    store.clear_intent("model.never@gpu-a").unwrap();
    assert_eq!(store.intents().unwrap(), [newer]);
}

pub fn selections_are_put_replaced_and_removed(suite: &Suite) {
    let s = open_fresh(suite);
    let store = &*s.store;
    store.put_selection(&selection("main", "gpu-a")).unwrap();
    store.put_selection(&selection("main", "gpu-b")).unwrap();
    let mut other = selection("main", "gpu-a");
    other.model = "llama".into();
    store.put_selection(&other).unwrap();
    assert_eq!(
        store.selections().unwrap(),
        [other, selection("main", "gpu-b")]
    );
    assert!(store.remove_selection("main", "gpu-a").unwrap());
    assert!(!store.remove_selection("main", "gpu-a").unwrap());
    assert!(!store.remove_selection("aux", "gpu-b").unwrap());
    assert_eq!(store.selections().unwrap(), [selection("main", "gpu-b")]);
}

pub fn the_holder_is_readable_while_held_and_gone_after_release(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let reader = suite.backend(tmp.path());
    assert_eq!(reader.holder().unwrap(), None);
    let guard = suite.backend(tmp.path()).lock("apply", &no_wait()).unwrap();
    let info = guard.info().clone();
    assert_eq!(info.pid, std::process::id());
    assert_eq!(info.operation, "apply");
    assert!(!info.user.is_empty() && !info.hostname.is_empty());
    assert!(!info.id.is_empty());
    assert_eq!(reader.holder().unwrap(), Some(info));
    guard.release().unwrap();
    assert_eq!(reader.holder().unwrap(), None);
    suite.backend(tmp.path()).lock("apply", &no_wait()).unwrap();
}

pub fn a_holder_killed_on_this_host_is_stale_and_force_takes_it_over(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let dead = suite.leave_lock_of_killed_berth(tmp.path());

    let err = suite
        .backend(tmp.path())
        .lock("apply", &no_wait())
        .unwrap_err();
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
    let started = Instant::now();
    assert!(matches!(
        suite
            .backend(tmp.path())
            .lock("apply", &patient(Duration::from_secs(10))),
        Err(StateError::StaleLock { .. })
    ));
    assert!(started.elapsed() < Duration::from_secs(1));

    let guard = suite.backend(tmp.path()).lock("apply", &forced()).unwrap();
    assert_eq!(guard.took_over(), Some(&dead));
    assert_eq!(guard.info().pid, std::process::id());
    assert_ne!(guard.info().id, dead.id);
    assert_eq!(
        suite.backend(tmp.path()).holder().unwrap().as_ref(),
        Some(guard.info())
    );
}

pub fn a_berth_running_in_another_process_is_never_overridden(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = suite.spawn("hold", tmp.path());
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().trim_end() == LOCKED_MARKER),
        "child never took the lock"
    );

    let backend = suite.backend(tmp.path());
    let (holder, _) = expect_locked(backend.lock("apply", &no_wait()));
    assert_eq!(holder.pid, child.id());
    assert_eq!(holder.operation, "drift");
    // --force reclaims only dead holders.
    expect_locked(backend.lock("apply", &forced()));

    let err = backend.force_unlock(&holder.id).unwrap_err();
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
    assert_eq!(backend.holder().unwrap(), Some(holder));

    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    backend.lock("apply", &no_wait()).unwrap();
}

pub fn force_unlock_refuses_a_wrong_id_without_revealing_the_right_one(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let dead = suite.leave_lock_of_killed_berth(tmp.path());
    let backend = suite.backend(tmp.path());

    let err = backend.force_unlock("0badc0de").unwrap_err();
    assert!(matches!(err, StateError::LockIdMismatch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("lock id 0badc0de does not match"), "{msg}");
    assert!(
        msg.contains(&format!("{}@{} pid {}", dead.user, dead.hostname, dead.pid)),
        "the holder is named: {msg}"
    );
    let rendered = format!("{msg}\n{}", help(&err));
    assert!(
        !rendered.contains(&dead.id),
        "the right id must not be handed out: {rendered}"
    );
    assert_eq!(backend.holder().unwrap(), Some(dead));
}

pub fn force_unlock_by_the_right_id_clears_a_dead_holder(suite: &Suite) {
    let tmp = tempfile::tempdir().unwrap();
    let dead = suite.leave_lock_of_killed_berth(tmp.path());
    let backend = suite.backend(tmp.path());

    assert_eq!(backend.force_unlock(&dead.id).unwrap(), dead);
    assert_eq!(backend.holder().unwrap(), None);
    let guard = backend.lock("apply", &no_wait()).unwrap();
    assert_eq!(guard.took_over(), None, "nothing was left to take over");
    guard.release().unwrap();

    let err = backend.force_unlock(&dead.id).unwrap_err();
    assert!(matches!(err, StateError::NotLocked { .. }), "{err:?}");
}

pub fn the_guard_opens_one_store_shared_by_its_callers(suite: &Suite) {
    let s = open_fresh(suite);
    let again = s.guard.store().unwrap();
    s.store.put_resource(&record("model.a@gpu-a")).unwrap();
    assert_eq!(again.resources().unwrap(), [record("model.a@gpu-a")]);
    drop(again);

    let Open {
        _tmp,
        dir,
        store,
        guard,
    } = s;
    drop(store);
    guard.release().unwrap();
    let guard = suite.backend(&dir).lock("plan", &no_wait()).unwrap();
    assert_eq!(
        guard.store().unwrap().resources().unwrap(),
        [record("model.a@gpu-a")]
    );
}
