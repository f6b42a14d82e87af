//! The postgres backend on a real PostgreSQL server (a private one per test process): the shared
//! conformance suite, plus what only postgres has: the errors a team meets (server down, wrong
//! password, missing workspace, schema from a newer berth, no right to create tables), a writer
//! whose lock was taken from it, and the lock's holder row and advisory lock.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use berth_state::{
    LockOptions, PgBackend, PgSettings, PgUrl, ResourceKind, ResourceRecord, ResourceStatus,
    StateBackend, StateError,
};
use berth_test_support::postgres as pg;

#[macro_use]
mod conformance;

/// The database all conformance cases of this process share; each directory is a workspace.
fn conformance_db() -> &'static str {
    static DB: OnceLock<String> = OnceLock::new();
    DB.get_or_init(|| {
        if let Ok(db) = std::env::var("BERTH_TEST_PG_CONFORMANCE_DB") {
            return db;
        }
        let db = pg::server().fresh_database("conformance");
        // SAFETY: set once before any child is spawned; see `postgres::server`.
        unsafe { std::env::set_var("BERTH_TEST_PG_CONFORMANCE_DB", &db) };
        db
    })
}

/// A workspace name for a directory: the same directory always gives the same name.
fn workspace_for(dir: &Path) -> String {
    // FNV-1a: stable across processes, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("t{hash:016x}")
}

fn backend_in(db: &str, workspace: &str, create: bool) -> PgBackend {
    PgBackend::new(PgSettings {
        url: PgUrl::parse(&pg::server().url(db)).unwrap(),
        workspace: workspace.to_owned(),
        create_workspace: create,
    })
}

conformance_suite!(postgres, |dir: &Path| Box::new(backend_in(
    conformance_db(),
    &workspace_for(dir),
    true
)) as Box<dyn StateBackend>);

fn no_wait() -> LockOptions {
    LockOptions::default()
}

fn record(address: &str) -> ResourceRecord {
    ResourceRecord {
        address: address.parse().unwrap(),
        kind: ResourceKind::Model,
        host: "gpu-a".to_owned(),
        status: ResourceStatus::Ready,
        fingerprint: Some("f1".to_owned()),
        attributes: Default::default(),
        updated_at: 1_700_000_000,
    }
}

fn help(err: &StateError) -> String {
    miette::Diagnostic::help(err)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

fn code(err: &StateError) -> String {
    miette::Diagnostic::code(err).unwrap().to_string()
}

#[test]
fn describe_names_the_workspace_and_the_server_but_not_the_password() {
    let server = pg::server();
    let backend = backend_in("berth", "prod", false);
    let shown = backend.describe();
    assert!(
        shown.starts_with("postgres workspace `prod` at postgres://postgres@"),
        "{shown}"
    );
    assert!(!shown.contains(&server.password), "{shown}");
    assert!(!format!("{backend:?}").contains(&server.password));
}

#[test]
fn an_unreachable_server_is_named_and_nothing_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!(
        "postgres://ops:hunter2-secret@localhost:5999/berth?host={}",
        tmp.path().display()
    );
    let backend = PgBackend::new(PgSettings {
        url: PgUrl::parse(&url).unwrap(),
        workspace: "prod".into(),
        create_workspace: true,
    });
    let err = backend.lock("apply", &no_wait()).unwrap_err();
    assert_eq!(code(&err), "berth::state::pg_unreachable", "{err:?}");
    let msg = format!("{err}\n{}", help(&err));
    assert!(
        msg.contains("cannot reach the PostgreSQL server at postgres://ops@"),
        "{msg}"
    );
    assert!(!msg.contains("hunter2"), "{msg}");
}

#[test]
fn a_wrong_password_is_a_refused_login_and_the_password_is_not_shown() {
    let server = pg::server();
    let url = server.url_as("postgres", "not-the-password", "postgres");
    let backend = PgBackend::new(PgSettings {
        url: PgUrl::parse(&url).unwrap(),
        workspace: "prod".into(),
        create_workspace: true,
    });
    let err = backend.lock("apply", &no_wait()).unwrap_err();
    assert_eq!(code(&err), "berth::state::pg_auth", "{err:?}");
    let msg = format!("{err}\n{}", help(&err));
    assert!(
        msg.contains("refused the login of user `postgres`"),
        "{msg}"
    );
    assert!(msg.contains("BERTH_PG_URL"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");
    assert!(!format!("{err:?}").contains("not-the-password"));
}

#[test]
fn a_missing_database_says_how_to_create_it() {
    let err = backend_in("no_such_db", "prod", true)
        .lock("apply", &no_wait())
        .unwrap_err();
    assert_eq!(code(&err), "berth::state::pg_no_database", "{err:?}");
    assert!(help(&err).contains("createdb no_such_db"), "{}", help(&err));
}

#[test]
fn a_missing_workspace_is_refused_naming_the_ones_that_exist() {
    let db = pg::server().fresh_database("missing_ws");
    backend_in(&db, "staging", true).init().unwrap();
    let err = backend_in(&db, "prdo", false)
        .lock("plan", &no_wait())
        .unwrap_err();
    assert_eq!(code(&err), "berth::state::pg_no_workspace", "{err:?}");
    assert!(
        err.to_string()
            .ends_with("workspace `prdo` does not exist in ".to_owned().as_str())
            || err.to_string().contains("(it has: staging)"),
        "{err}"
    );
    assert!(help(&err).contains("berth state init"), "{}", help(&err));
    let count = pg::server().psql(&db, "SELECT count(*) FROM berth.workspaces");
    assert_eq!(count.trim(), "1", "nothing was created");
}

#[test]
fn a_schema_from_a_newer_berth_is_refused_and_left_alone() {
    let db = pg::server().fresh_database("newer");
    let backend = backend_in(&db, "prod", true);
    backend.init().unwrap();
    pg::server().psql(
        &db,
        "INSERT INTO berth.schema_version (version) VALUES (99)",
    );
    let err = backend.lock("apply", &no_wait()).unwrap_err();
    assert_eq!(code(&err), "berth::state::pg_schema_too_new", "{err:?}");
    assert!(err.to_string().contains("schema version 99"), "{err}");
    assert!(help(&err).contains("upgrade berth"), "{}", help(&err));
    let versions = pg::server().psql(&db, "SELECT count(*) FROM berth.schema_version");
    assert_eq!(versions.trim(), "2");
}

#[test]
fn a_user_who_may_not_create_tables_is_told_what_a_dba_must_run() {
    let server = pg::server();
    let db = server.fresh_database("no_create");
    server.psql(
        &db,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'app') THEN \
         CREATE ROLE app LOGIN PASSWORD 'app-pw'; END IF; END $$; \
         REVOKE CREATE ON DATABASE {db} FROM PUBLIC"
            .replace("{db}", &db)
            .as_str(),
    );
    let app = PgBackend::new(PgSettings {
        url: PgUrl::parse(&server.url_as("app", "app-pw", &db)).unwrap(),
        workspace: "prod".into(),
        create_workspace: true,
    });
    let err = app.lock("apply", &no_wait()).unwrap_err();
    assert_eq!(code(&err), "berth::state::pg_schema_permission", "{err:?}");
    assert!(
        err.to_string().contains("user `app` may not create"),
        "{err}"
    );
    assert!(
        help(&err).contains("berth state init --print-sql"),
        "{}",
        help(&err)
    );
    let schemas = server.psql(
        &db,
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'berth'",
    );
    assert_eq!(schemas.trim(), "0", "nothing was created");

    // The DBA runs the printed SQL; then the app user works without creating anything.
    let sql = berth_state::schema_sql("app");
    let script = server.dir.join(format!("{db}.sql"));
    std::fs::write(&script, &sql).unwrap();
    server.psql(&db, &format!("\\i {}", script.display()));
    server.psql(&db, "INSERT INTO berth.workspaces (name, lineage, serial, format_version, hmac_key) VALUES ('prod', repeat('a', 32), 0, 1, repeat('b', 64))");
    let guard = app.lock("apply", &no_wait()).unwrap();
    guard
        .store()
        .unwrap()
        .put_resource(&record("model.a@gpu-a"))
        .unwrap();
}

#[test]
fn a_writer_whose_lock_was_taken_cannot_write_and_the_new_holder_keeps_its_changes() {
    let db = pg::server().fresh_database("stolen");
    let first = backend_in(&db, "prod", true);
    let guard = first.lock("apply", &no_wait()).unwrap();
    let store = guard.store().unwrap();
    store.put_resource(&record("model.a@gpu-a")).unwrap();

    // The first berth's lock connection is cut (a network loss, or a DBA ending the session):
    // the server frees the advisory lock, and a second berth takes the lock over with --force.
    pg::server().psql(
        &db,
        "SELECT pg_terminate_backend(backend_pid) FROM berth.locks",
    );
    let second = backend_in(&db, "prod", false);
    let taken = loop {
        match second.lock(
            "apply",
            &LockOptions {
                timeout: Duration::ZERO,
                force: true,
            },
        ) {
            Ok(guard) => break guard,
            Err(StateError::Locked { .. }) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(
        taken.took_over().map(|h| h.id.as_str()),
        Some(guard.info().id.as_str())
    );
    taken
        .store()
        .unwrap()
        .put_resource(&record("model.b@gpu-a"))
        .unwrap();

    let err = store.put_resource(&record("model.c@gpu-a")).unwrap_err();
    assert_eq!(code(&err), "berth::state::serial_conflict", "{err:?}");
    assert!(err.to_string().contains("nothing was written"), "{err}");
    let err = store.remove_resource("model.a@gpu-a").unwrap_err();
    assert_eq!(code(&err), "berth::state::serial_conflict", "{err:?}");

    let now = taken.store().unwrap();
    let addresses: Vec<_> = now
        .resources()
        .unwrap()
        .into_iter()
        .map(|r| r.address)
        .collect();
    assert_eq!(addresses, ["model.a@gpu-a", "model.b@gpu-a"]);
    assert_eq!(now.meta().unwrap().serial, 2);
    let versions = pg::server().psql(
        &db,
        "SELECT string_agg(serial::text, ',' ORDER BY serial) FROM berth.versions",
    );
    assert_eq!(
        versions.trim(),
        "1,2",
        "one version per write, none lost or doubled"
    );
    drop(store);
    drop(guard);
}

#[test]
fn a_lock_taken_over_before_any_write_still_stops_the_old_writer() {
    let db = pg::server().fresh_database("lost_lock");
    let guard = backend_in(&db, "prod", true)
        .lock("apply", &no_wait())
        .unwrap();
    let store = guard.store().unwrap();
    pg::server().psql(
        &db,
        "SELECT pg_terminate_backend(backend_pid) FROM berth.locks",
    );
    let second = backend_in(&db, "prod", false);
    let _taken = loop {
        match second.lock(
            "select",
            &LockOptions {
                timeout: Duration::ZERO,
                force: true,
            },
        ) {
            Ok(guard) => break guard,
            Err(StateError::Locked { .. }) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => panic!("{e:?}"),
        }
    };
    let err = store.put_resource(&record("model.a@gpu-a")).unwrap_err();
    assert_eq!(code(&err), "berth::state::lock_lost", "{err:?}");
    assert!(
        err.to_string().contains("(select)"),
        "names the new holder: {err}"
    );
}

#[test]
fn the_holder_row_shows_who_holds_the_lock_with_the_ci_run() {
    let db = pg::server().fresh_database("holder");
    let guard = backend_in(&db, "prod", true)
        .lock("apply", &no_wait())
        .unwrap();
    let row = pg::server().psql(
        &db,
        "SELECT holder->>'operation', holder->>'pid', backend_pid = (SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND objid = workspace_id::oid) FROM berth.locks",
    );
    assert_eq!(row.trim(), format!("apply|{}|t", std::process::id()));
    drop(guard);
    let rows = pg::server().psql(&db, "SELECT count(*) FROM berth.locks");
    assert_eq!(rows.trim(), "0");
}

#[test]
fn a_sled_state_imports_whole_and_another_lineage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = berth_state::SledBackend::new(tmp.path().join("sled"));
    let snapshot = {
        let guard = sled.lock("apply", &no_wait()).unwrap();
        let store = guard.store().unwrap();
        store.put_resource(&record("model.a@gpu-a")).unwrap();
        store.put_resource(&record("model.b@gpu-a")).unwrap();
        store
            .put_selection(&berth_state::Selection {
                group: "main".into(),
                host: "gpu-a".into(),
                model: "a".into(),
                selected_at: 7,
            })
            .unwrap();
        store
            .append_history(&berth_state::HistoryEntry {
                serial: 3,
                operation: "select".into(),
                user: "ops".into(),
                hostname: "laptop".into(),
                started_at: 1,
                finished_at: 2,
                changes: vec![],
                interrupted: false,
            })
            .unwrap();
        berth_state::Snapshot::of(&*store).unwrap()
    };
    let db = pg::server().fresh_database("import");
    let meta = backend_in(&db, "prod", false)
        .import(&snapshot, &no_wait())
        .unwrap();
    assert_eq!(meta.lineage, snapshot.meta.lineage);
    assert_eq!(
        meta.hmac_key, snapshot.meta.hmac_key,
        "fingerprints stay valid"
    );
    assert!(meta.serial >= snapshot.meta.serial);

    let guard = backend_in(&db, "prod", false)
        .lock("plan", &no_wait())
        .unwrap();
    let copy = berth_state::Snapshot::of(&*guard.store().unwrap()).unwrap();
    assert_eq!(copy.resources, snapshot.resources);
    assert_eq!(copy.selections, snapshot.selections);
    assert_eq!(copy.history, snapshot.history);
    guard.release().unwrap();

    // The same state again is a fresh copy; another state is refused and changes nothing.
    backend_in(&db, "prod", false)
        .import(&snapshot, &no_wait())
        .unwrap();
    let mut other = snapshot.clone();
    other.meta.lineage = "f".repeat(32);
    other.resources.clear();
    let err = backend_in(&db, "prod", false)
        .import(&other, &no_wait())
        .unwrap_err();
    assert_eq!(code(&err), "berth::state::lineage_mismatch", "{err:?}");
    let guard = backend_in(&db, "prod", false)
        .lock("plan", &no_wait())
        .unwrap();
    assert_eq!(
        guard.store().unwrap().resources().unwrap(),
        snapshot.resources
    );
}

#[test]
fn a_snapshot_taken_while_another_berth_writes_has_as_many_records_as_its_serial() {
    const WRITES: usize = 300;
    let db = pg::server().fresh_database("snapshot_burst");
    let writer = backend_in(&db, "prod", true);
    let guard = writer.lock("apply", &no_wait()).unwrap();
    let store = guard.store().unwrap();
    let writing = std::thread::spawn(move || {
        // Each write adds one record and claims one serial: serial n holds exactly n records.
        for i in 0..WRITES {
            store
                .put_resource(&record(&format!("model.m{i:04}@gpu-a")))
                .unwrap();
        }
    });
    let reader = backend_in(&db, "prod", false);
    let mut mid_write = 0;
    while !writing.is_finished() {
        let snapshot = reader.snapshot().unwrap().expect("the workspace exists");
        let serial = snapshot.meta.serial;
        assert_eq!(
            snapshot.resources.len() as u64,
            serial,
            "the records and the serial of one snapshot come from one version"
        );
        let expected: Vec<String> = (0..serial)
            .map(|i| format!("model.m{i:04}@gpu-a"))
            .collect();
        let found: Vec<String> = snapshot
            .resources
            .iter()
            .map(|r| r.address.to_string())
            .collect();
        assert_eq!(found, expected);
        if serial > 0 && serial < WRITES as u64 {
            mid_write += 1;
        }
    }
    writing.join().unwrap();
    assert!(
        mid_write >= 3,
        "the reader saw the writer mid-way only {mid_write} times: the test proved nothing"
    );
    let last = reader.snapshot().unwrap().unwrap();
    assert_eq!(last.meta.serial, WRITES as u64);
    assert_eq!(last.resources.len(), WRITES);
    drop(guard);
}

#[test]
fn the_release_for_an_interrupt_deletes_the_holder_row_and_only_it() {
    let db = pg::server().fresh_database("interrupt_release");
    let backend = backend_in(&db, "prod", true);
    let guard = backend.lock("plan", &no_wait()).unwrap();
    let release = guard
        .interrupt_release()
        .expect("a postgres lock names how to clear its row");
    assert_eq!(
        pg::server()
            .psql(&db, "SELECT count(*) FROM berth.locks")
            .trim(),
        "1"
    );
    release();
    assert_eq!(
        pg::server()
            .psql(&db, "SELECT count(*) FROM berth.locks")
            .trim(),
        "0",
        "the holder row is gone while the process still runs"
    );
    // The normal release afterwards finds nothing to delete and does not fail.
    guard.release().unwrap();

    // A release left over from an earlier lock does not touch the next holder's row.
    let next = backend.lock("apply", &no_wait()).unwrap();
    release();
    assert_eq!(
        pg::server()
            .psql(&db, "SELECT lock_id FROM berth.locks")
            .trim(),
        next.info().id
    );
    drop(next);
}
