//! The postgres backend's tables and their migrations, versioned in the binary: applied on first
//! use, refused when the database is newer than this berth, and printable for a DBA. Knows
//! nothing of locks or records beyond their columns.

use std::sync::{Mutex, PoisonError};

use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::error::{Result, StateError};
use crate::pg_settings::PgUrl;

/// The first key of every advisory lock berth takes ("bert"); the second is a workspace id, or
/// 0 for migrations.
pub(crate) const LOCK_CLASS: i32 = 0x6265_7274;

/// Each migration in order; the version of the schema is the number of migrations applied.
/// Each can run again over its own result: a berth that waited for another's migration may not
/// see the new tables in its catalog snapshot yet.
const MIGRATIONS: &[&str] = &[r#"
CREATE SCHEMA IF NOT EXISTS berth;

CREATE TABLE IF NOT EXISTS berth.schema_version (
    version     integer PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per state: its identity and the serial of its current version.
CREATE TABLE IF NOT EXISTS berth.workspaces (
    id              serial PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    lineage         text NOT NULL,
    serial          bigint NOT NULL,
    format_version  integer NOT NULL,
    hmac_key        text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Append-only: every change of resources or selections claims the next serial here, in the
-- transaction that makes it, so two writers can never both write serial n+1.
CREATE TABLE IF NOT EXISTS berth.versions (
    workspace_id  integer NOT NULL REFERENCES berth.workspaces (id),
    serial        bigint NOT NULL,
    lineage       text NOT NULL,
    lock_id       text,
    change        jsonb NOT NULL,
    written_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, serial)
);

CREATE TABLE IF NOT EXISTS berth.resources (
    workspace_id  integer NOT NULL REFERENCES berth.workspaces (id),
    address       text COLLATE "C" NOT NULL,
    record        jsonb NOT NULL,
    serial        bigint NOT NULL,
    PRIMARY KEY (workspace_id, address)
);

CREATE TABLE IF NOT EXISTS berth.selections (
    workspace_id  integer NOT NULL REFERENCES berth.workspaces (id),
    grp           text COLLATE "C" NOT NULL,
    host          text COLLATE "C" NOT NULL,
    selection     jsonb NOT NULL,
    PRIMARY KEY (workspace_id, grp, host)
);

CREATE TABLE IF NOT EXISTS berth.intents (
    workspace_id  integer NOT NULL REFERENCES berth.workspaces (id),
    address       text COLLATE "C" NOT NULL,
    intent        jsonb NOT NULL,
    PRIMARY KEY (workspace_id, address)
);

CREATE TABLE IF NOT EXISTS berth.history (
    workspace_id  integer NOT NULL REFERENCES berth.workspaces (id),
    seq           bigserial,
    entry         jsonb NOT NULL,
    PRIMARY KEY (workspace_id, seq)
);

-- Who holds a workspace's lock; the lock itself is the session advisory lock
-- (LOCK_CLASS, workspace id) of the connection whose pid is backend_pid.
CREATE TABLE IF NOT EXISTS berth.locks (
    workspace_id  integer PRIMARY KEY REFERENCES berth.workspaces (id),
    lock_id       text NOT NULL,
    holder        jsonb NOT NULL,
    backend_pid   integer NOT NULL
);
"#];

/// The schema version this berth writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The SQL that brings an empty database to this berth's schema, for a DBA to run, with the
/// grants `user` then needs.
pub fn schema_sql(user: &str) -> String {
    let mut sql = String::from(
        "-- berth state schema: run as a user that may create schemas in this database.\nBEGIN;\n",
    );
    for (i, migration) in MIGRATIONS.iter().enumerate() {
        sql.push_str(&format!("\n-- version {}\n", i + 1));
        sql.push_str(migration.trim());
        sql.push_str(&format!(
            "\nINSERT INTO berth.schema_version (version) VALUES ({});\n",
            i + 1
        ));
    }
    let user = quote_ident(user);
    sql.push_str(&format!(
        "\n-- what berth's own user needs\nGRANT USAGE ON SCHEMA berth TO {user};\n\
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA berth TO {user};\n\
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA berth TO {user};\nCOMMIT;\n"
    ));
    sql
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The schema version in the database; 0 when berth's tables do not exist.
pub(crate) async fn current_version(conn: &mut PgConnection, url: &PgUrl) -> Result<i64> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('berth.schema_version') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| url.error(e))?;
    if !exists {
        return Ok(0);
    }
    let version: Option<i64> =
        sqlx::query_scalar("SELECT max(version)::bigint FROM berth.schema_version")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| url.error(e))?;
    Ok(version.unwrap_or(0))
}

/// Checks the schema and applies the missing migrations, one transaction for all of them, under
/// an advisory lock so that two berths starting at once do not both migrate.
///
/// A database found up to date is not migrated again by this process; the version is still
/// checked by every lock (`newest_version` in the lock's query).
pub(crate) async fn ensure(conn: &mut PgConnection, url: &PgUrl) -> Result<()> {
    static CURRENT: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let key = url.to_string();
    if CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&key)
    {
        return Ok(());
    }
    migrate(conn, url).await?;
    CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(key);
    Ok(())
}

async fn migrate(conn: &mut PgConnection, url: &PgUrl) -> Result<()> {
    let version = current_version(conn, url).await?;
    check_not_newer(version, url)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let mut tx = conn.begin().await.map_err(|e| url.error(e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(LOCK_CLASS)
        .execute(&mut *tx)
        .await
        .map_err(|e| url.error(e))?;
    let version = current_version(&mut tx, url).await?;
    check_not_newer(version, url)?;
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        sqlx::raw_sql(*migration)
            .execute(&mut *tx)
            .await
            .map_err(|e| url.error(e))?;
        sqlx::query(
            "INSERT INTO berth.schema_version (version) VALUES ($1) ON CONFLICT (version) DO NOTHING",
        )
            .bind(i as i32 + 1)
            .execute(&mut *tx)
            .await
            .map_err(|e| url.error(e))?;
    }
    tx.commit().await.map_err(|e| url.error(e))
}

pub(crate) fn check_not_newer(version: i64, url: &PgUrl) -> Result<()> {
    if version > SCHEMA_VERSION {
        return Err(StateError::PgSchemaTooNew {
            target: url.to_string(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}
