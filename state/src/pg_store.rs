//! The postgres implementation of `StateStore`: records, selections, intents and history of one
//! workspace in their tables. Every change of records or selections claims the next serial in
//! `berth.versions` in the transaction that makes it, checking the lineage and that this
//! berth's lock is still the workspace's, so a writer that lost its lock cannot write.
//! Must not be used without the lock taken by `pg_backend`.

use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Row};

use crate::error::{Result, StateError};
use crate::pg_backend::Workspace;
use crate::pg_settings::{PgUrl, block_on};
use crate::record::{HistoryEntry, Intent, Meta, ResourceRecord, Selection};
use crate::sled_store::STATE_FORMAT_VERSION;
use crate::snapshot::Snapshot;
use crate::store::StateStore;

/// One workspace's store, reached through a small pool of its own.
pub(crate) struct PgStore {
    pool: PgPool,
    url: PgUrl,
    workspace: Workspace,
    lock_id: String,
    lineage: String,
    /// The serial of the last version this store read or wrote; the next write claims the one
    /// after. The mutex also puts this process's writes in a row.
    serial: Mutex<u64>,
}

/// A change that claims a serial.
#[derive(Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Change<'a> {
    PutResource { record: &'a ResourceRecord },
    RemoveResource { address: &'a str },
    PutSelection { selection: &'a Selection },
    RemoveSelection { group: &'a str, host: &'a str },
}

impl PgStore {
    pub(crate) fn open(url: PgUrl, workspace: Workspace, lock_id: String) -> Result<PgStore> {
        let options = url.connect_options();
        let ws = workspace.clone();
        let url2 = url.clone();
        let (pool, meta) = block_on(async move {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .min_connections(1)
                .connect_with(options)
                .await
                .map_err(|e| url2.error(e))?;
            let mut conn = pool.acquire().await.map_err(|e| url2.error(e))?;
            let meta = read_meta(&mut conn, ws.id, &ws.name, &url2).await?;
            drop(conn);
            Ok::<_, StateError>((pool, meta))
        })?;
        Ok(PgStore {
            pool,
            url,
            workspace,
            lock_id,
            lineage: meta.lineage,
            serial: Mutex::new(meta.serial),
        })
    }

    /// Runs the query `f` builds from the pool, the URL (for errors) and the workspace id.
    fn run<T, Fut>(&self, f: impl FnOnce(PgPool, PgUrl, i32) -> Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        block_on(f(self.pool.clone(), self.url.clone(), self.workspace.id))
    }

    /// Makes `change` and claims the next serial for it in one transaction; `apply` returns
    /// whether it changed anything (a removal of nothing claims no serial).
    fn counted(&self, change: ChangeOwned) -> Result<bool> {
        let mut serial = self.serial.lock().unwrap_or_else(PoisonError::into_inner);
        let expected = *serial;
        let pool = self.pool.clone();
        let url = self.url.clone();
        let ws = self.workspace.clone();
        let lock_id = self.lock_id.clone();
        let lineage = self.lineage.clone();
        let changed = block_on(async move {
            let mut tx = pool.begin().await.map_err(|e| url.error(e))?;
            if !change.apply(&mut tx, ws.id, expected + 1, &url).await? {
                return Ok(false);
            }
            let claimed: Option<i64> = sqlx::query_scalar(
                "UPDATE berth.workspaces SET serial = serial + 1 \
                 WHERE id = $1 AND serial = $2 AND lineage = $3 \
                 AND EXISTS (SELECT 1 FROM berth.locks WHERE workspace_id = $1 AND lock_id = $4) \
                 RETURNING serial",
            )
            .bind(ws.id)
            .bind(expected as i64)
            .bind(&lineage)
            .bind(&lock_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| url.error(e))?;
            if claimed.is_none() {
                drop(tx);
                let mut conn = pool.acquire().await.map_err(|e| url.error(e))?;
                return Err(why_refused(&mut conn, &ws, expected, &lineage, &lock_id, &url).await);
            }
            sqlx::query(
                "INSERT INTO berth.versions (workspace_id, serial, lineage, lock_id, change) \
                 VALUES ($1, $2, $3, $4, $5::jsonb)",
            )
            .bind(ws.id)
            .bind(expected as i64 + 1)
            .bind(&lineage)
            .bind(&lock_id)
            .bind(change.json()?)
            .execute(&mut *tx)
            .await
            .map_err(|e| url.error(e))?;
            tx.commit().await.map_err(|e| url.error(e))?;
            Ok::<_, StateError>(true)
        })?;
        if changed {
            *serial = expected + 1;
        }
        Ok(changed)
    }

    fn list<T: DeserializeOwned + Send + 'static>(&self, table: Table) -> Result<Vec<T>> {
        self.run(move |pool, url, ws| async move {
            let mut conn = pool.acquire().await.map_err(|e| url.error(e))?;
            read_table(&mut conn, table, ws, &url).await
        })
    }

    fn plain(&self, sql: &'static str, key: String, value: Option<String>) -> Result<()> {
        self.run(move |pool, url, ws| async move {
            let mut query = sqlx::query(sql).bind(ws).bind(key);
            if let Some(value) = value {
                query = query.bind(value);
            }
            query.execute(&pool).await.map_err(|e| url.error(e))?;
            Ok(())
        })
    }
}

/// A change, owned so that it can move onto the database runtime.
enum ChangeOwned {
    PutResource(ResourceRecord),
    RemoveResource(String),
    PutSelection(Selection),
    RemoveSelection(String, String),
}

impl ChangeOwned {
    fn json(&self) -> Result<String> {
        let change = match self {
            ChangeOwned::PutResource(record) => Change::PutResource { record },
            ChangeOwned::RemoveResource(address) => Change::RemoveResource { address },
            ChangeOwned::PutSelection(selection) => Change::PutSelection { selection },
            ChangeOwned::RemoveSelection(group, host) => Change::RemoveSelection { group, host },
        };
        encode(&change, "state change")
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        ws: i32,
        serial: u64,
        url: &PgUrl,
    ) -> Result<bool> {
        let result = match self {
            ChangeOwned::PutResource(record) => {
                sqlx::query(
                    "INSERT INTO berth.resources (workspace_id, address, record, serial) \
                 VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT (workspace_id, address) \
                 DO UPDATE SET record = EXCLUDED.record, serial = EXCLUDED.serial",
                )
                .bind(ws)
                .bind(record.address.as_str())
                .bind(encode(record, "resource record")?)
                .bind(serial as i64)
                .execute(&mut *conn)
                .await
            }
            ChangeOwned::RemoveResource(address) => {
                sqlx::query("DELETE FROM berth.resources WHERE workspace_id = $1 AND address = $2")
                    .bind(ws)
                    .bind(address)
                    .execute(&mut *conn)
                    .await
            }
            ChangeOwned::PutSelection(selection) => {
                sqlx::query(
                    "INSERT INTO berth.selections (workspace_id, grp, host, selection) \
                 VALUES ($1, $2, $3, $4::jsonb) ON CONFLICT (workspace_id, grp, host) \
                 DO UPDATE SET selection = EXCLUDED.selection",
                )
                .bind(ws)
                .bind(&selection.group)
                .bind(&selection.host)
                .bind(encode(selection, "selection")?)
                .execute(&mut *conn)
                .await
            }
            ChangeOwned::RemoveSelection(group, host) => sqlx::query(
                "DELETE FROM berth.selections WHERE workspace_id = $1 AND grp = $2 AND host = $3",
            )
            .bind(ws)
            .bind(group)
            .bind(host)
            .execute(&mut *conn)
            .await,
        };
        Ok(result.map_err(|e| url.error(e))?.rows_affected() > 0)
    }
}

/// Why the claim of serial `expected + 1` matched nothing: another writer's serial, another
/// lineage, or a lock that is no longer this berth's.
async fn why_refused(
    conn: &mut PgConnection,
    ws: &Workspace,
    expected: u64,
    lineage: &str,
    lock_id: &str,
    url: &PgUrl,
) -> StateError {
    let row = match sqlx::query("SELECT serial, lineage FROM berth.workspaces WHERE id = $1")
        .bind(ws.id)
        .fetch_optional(&mut *conn)
        .await
    {
        Ok(row) => row,
        Err(e) => return url.error(e),
    };
    let Some(row) = row else {
        return StateError::PgNoWorkspace {
            target: url.to_string(),
            workspace: ws.name.clone(),
            existing: Vec::new(),
        };
    };
    let serial: i64 = row.try_get("serial").unwrap_or_default();
    let found_lineage: String = row.try_get("lineage").unwrap_or_default();
    if found_lineage != lineage {
        return StateError::LineageMismatch {
            workspace: ws.name.clone(),
            expected: lineage.to_owned(),
            found: found_lineage,
        };
    }
    if serial as u64 != expected {
        return StateError::SerialConflict {
            workspace: ws.name.clone(),
            expected: expected + 1,
            found: serial as u64,
        };
    }
    let holder: Option<String> =
        sqlx::query_scalar("SELECT holder::text FROM berth.locks WHERE workspace_id = $1")
            .bind(ws.id)
            .fetch_optional(&mut *conn)
            .await
            .ok()
            .flatten();
    StateError::LockLost {
        workspace: ws.name.clone(),
        lock_id: lock_id.to_owned(),
        holder: holder
            .and_then(|h| serde_json::from_str(&h).ok())
            .map(Box::new),
    }
}

/// A table of records read whole, each row a (key, JSON) pair in a stable order.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Table {
    Resources,
    Intents,
    Selections,
    History,
}

impl Table {
    fn sql(self) -> &'static str {
        match self {
            Table::Resources => {
                "SELECT address, record::text FROM berth.resources WHERE workspace_id = $1 \
                 ORDER BY address COLLATE \"C\""
            }
            Table::Intents => {
                "SELECT address, intent::text FROM berth.intents WHERE workspace_id = $1 \
                 ORDER BY address COLLATE \"C\""
            }
            Table::Selections => {
                "SELECT grp || '@' || host, selection::text FROM berth.selections \
                 WHERE workspace_id = $1 ORDER BY grp COLLATE \"C\", host COLLATE \"C\""
            }
            Table::History => {
                "SELECT seq::text AS key, entry::text FROM berth.history WHERE workspace_id = $1 \
                 ORDER BY history.seq"
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Table::Resources => "resources",
            Table::Intents => "intents",
            Table::Selections => "selections",
            Table::History => "history",
        }
    }
}

/// Every row of `table` in workspace `ws`, decoded.
pub(crate) async fn read_table<T: DeserializeOwned>(
    conn: &mut PgConnection,
    table: Table,
    ws: i32,
    url: &PgUrl,
) -> Result<Vec<T>> {
    let rows = sqlx::query(table.sql())
        .bind(ws)
        .fetch_all(&mut *conn)
        .await
        .map_err(|e| url.error(e))?;
    rows.iter()
        .map(|row| {
            let key: String = row.try_get(0).map_err(|e| url.error(e))?;
            let value: String = row.try_get(1).map_err(|e| url.error(e))?;
            serde_json::from_str(&value).map_err(|e| StateError::corrupt(table.name(), key, e))
        })
        .collect()
}

/// The whole of workspace `ws` as one committed version: the caller runs this inside one
/// `REPEATABLE READ` transaction, so every table is read as of the same moment.
pub(crate) async fn read_snapshot(
    conn: &mut PgConnection,
    ws: &Workspace,
    url: &PgUrl,
) -> Result<Snapshot> {
    Ok(Snapshot {
        meta: read_meta(conn, ws.id, &ws.name, url).await?,
        resources: read_table(conn, Table::Resources, ws.id, url).await?,
        intents: read_table(conn, Table::Intents, ws.id, url).await?,
        selections: read_table(conn, Table::Selections, ws.id, url).await?,
        history: read_table(conn, Table::History, ws.id, url).await?,
        taken_at: crate::ids::now_unix(),
    })
}

/// The meta of workspace `ws`, refusing a state written by a newer berth.
pub(crate) async fn read_meta(
    conn: &mut PgConnection,
    ws: i32,
    name: &str,
    url: &PgUrl,
) -> Result<Meta> {
    let row = sqlx::query(
        "SELECT lineage, serial, format_version, hmac_key FROM berth.workspaces WHERE id = $1",
    )
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| url.error(e))?
    .ok_or_else(|| StateError::PgNoWorkspace {
        target: url.to_string(),
        workspace: name.to_owned(),
        existing: Vec::new(),
    })?;
    let get_err = |e| url.error(e);
    let format_version: i32 = row.try_get("format_version").map_err(get_err)?;
    if format_version as u32 > STATE_FORMAT_VERSION {
        return Err(StateError::NewerFormat {
            place: format!("workspace `{name}` at {url}"),
            found: format_version as u32,
            supported: STATE_FORMAT_VERSION,
        });
    }
    let serial: i64 = row.try_get("serial").map_err(get_err)?;
    Ok(Meta {
        lineage: row.try_get("lineage").map_err(get_err)?,
        serial: serial as u64,
        format_version: format_version as u32,
        hmac_key: row.try_get("hmac_key").map_err(get_err)?,
    })
}

/// Writes `snapshot` into workspace `ws` in one transaction, as the holder of lock `lock_id`:
/// the workspace must be untouched (serial 0, nothing in it) or hold the same lineage.
pub(crate) async fn import(
    conn: &mut PgConnection,
    ws: &Workspace,
    lock_id: &str,
    snapshot: &Snapshot,
    url: &PgUrl,
) -> Result<Meta> {
    let mut tx = conn.begin().await.map_err(|e| url.error(e))?;
    let current = read_meta(&mut tx, ws.id, &ws.name, url).await?;
    let holds_lock: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM berth.locks WHERE workspace_id = $1 AND lock_id = $2)",
    )
    .bind(ws.id)
    .bind(lock_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| url.error(e))?;
    if !holds_lock {
        return Err(StateError::LockLost {
            workspace: ws.name.clone(),
            lock_id: lock_id.to_owned(),
            holder: None,
        });
    }
    let untouched: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM berth.versions WHERE workspace_id = $1) \
         AND NOT EXISTS (SELECT 1 FROM berth.history WHERE workspace_id = $1)",
    )
    .bind(ws.id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| url.error(e))?;
    if current.lineage != snapshot.meta.lineage && !untouched {
        return Err(StateError::LineageMismatch {
            workspace: ws.name.clone(),
            expected: snapshot.meta.lineage.clone(),
            found: current.lineage,
        });
    }
    let target_serial = snapshot.meta.serial.max(current.serial + 1);
    for table in ["resources", "selections", "intents", "history"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM berth.{table} WHERE workspace_id = $1"
        )))
        .bind(ws.id)
        .execute(&mut *tx)
        .await
        .map_err(|e| url.error(e))?;
    }
    let e = |e| url.error(e);
    sqlx::query(
        "UPDATE berth.workspaces SET lineage = $2, hmac_key = $3, serial = $4 WHERE id = $1",
    )
    .bind(ws.id)
    .bind(&snapshot.meta.lineage)
    .bind(&snapshot.meta.hmac_key)
    .bind(target_serial as i64)
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    for record in &snapshot.resources {
        sqlx::query(
            "INSERT INTO berth.resources (workspace_id, address, record, serial) \
             VALUES ($1, $2, $3::jsonb, $4)",
        )
        .bind(ws.id)
        .bind(record.address.as_str())
        .bind(encode(record, "resource record")?)
        .bind(target_serial as i64)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    }
    for selection in &snapshot.selections {
        sqlx::query(
            "INSERT INTO berth.selections (workspace_id, grp, host, selection) \
             VALUES ($1, $2, $3, $4::jsonb)",
        )
        .bind(ws.id)
        .bind(&selection.group)
        .bind(&selection.host)
        .bind(encode(selection, "selection")?)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    }
    for intent in &snapshot.intents {
        sqlx::query(
            "INSERT INTO berth.intents (workspace_id, address, intent) VALUES ($1, $2, $3::jsonb)",
        )
        .bind(ws.id)
        .bind(intent.address.as_str())
        .bind(encode(intent, "intent")?)
        .execute(&mut *tx)
        .await
        .map_err(e)?;
    }
    for entry in &snapshot.history {
        sqlx::query("INSERT INTO berth.history (workspace_id, entry) VALUES ($1, $2::jsonb)")
            .bind(ws.id)
            .bind(encode(entry, "history entry")?)
            .execute(&mut *tx)
            .await
            .map_err(e)?;
    }
    #[derive(Serialize)]
    struct Imported<'a> {
        op: &'static str,
        resources: usize,
        selections: usize,
        history: usize,
        from_serial: u64,
        lineage: &'a str,
    }
    let change = encode(
        &Imported {
            op: "import",
            resources: snapshot.resources.len(),
            selections: snapshot.selections.len(),
            history: snapshot.history.len(),
            from_serial: snapshot.meta.serial,
            lineage: &snapshot.meta.lineage,
        },
        "state change",
    )?;
    sqlx::query(
        "INSERT INTO berth.versions (workspace_id, serial, lineage, lock_id, change) \
         VALUES ($1, $2, $3, $4, $5::jsonb) ON CONFLICT (workspace_id, serial) DO NOTHING",
    )
    .bind(ws.id)
    .bind(target_serial as i64)
    .bind(&snapshot.meta.lineage)
    .bind(lock_id)
    .bind(change)
    .execute(&mut *tx)
    .await
    .map_err(e)?;
    let meta = read_meta(&mut tx, ws.id, &ws.name, url).await?;
    tx.commit().await.map_err(e)?;
    Ok(meta)
}

impl StateStore for PgStore {
    fn meta(&self) -> Result<Meta> {
        let name = self.workspace.name.clone();
        self.run(move |pool, url, ws| async move {
            let mut conn = pool.acquire().await.map_err(|e| url.error(e))?;
            read_meta(&mut conn, ws, &name, &url).await
        })
    }

    fn resources(&self) -> Result<Vec<ResourceRecord>> {
        self.list(Table::Resources)
    }

    fn resource(&self, address: &str) -> Result<Option<ResourceRecord>> {
        let address = address.to_owned();
        self.run(move |pool, url, ws| async move {
            let raw: Option<String> = sqlx::query_scalar(
                "SELECT record::text FROM berth.resources WHERE workspace_id = $1 AND address = $2",
            )
            .bind(ws)
            .bind(&address)
            .fetch_optional(&pool)
            .await
            .map_err(|e| url.error(e))?;
            raw.map(|raw| {
                serde_json::from_str(&raw).map_err(|e| StateError::corrupt("resources", address, e))
            })
            .transpose()
        })
    }

    fn put_resource(&self, record: &ResourceRecord) -> Result<()> {
        self.counted(ChangeOwned::PutResource(record.clone()))
            .map(|_| ())
    }

    fn remove_resource(&self, address: &str) -> Result<bool> {
        self.counted(ChangeOwned::RemoveResource(address.to_owned()))
    }

    fn put_intent(&self, intent: &Intent) -> Result<()> {
        self.plain(
            "INSERT INTO berth.intents (workspace_id, address, intent) VALUES ($1, $2, $3::jsonb) \
             ON CONFLICT (workspace_id, address) DO UPDATE SET intent = EXCLUDED.intent",
            intent.address.to_string(),
            Some(encode(intent, "intent")?),
        )
    }

    fn clear_intent(&self, address: &str) -> Result<()> {
        self.plain(
            "DELETE FROM berth.intents WHERE workspace_id = $1 AND address = $2",
            address.to_owned(),
            None,
        )
    }

    fn intents(&self) -> Result<Vec<Intent>> {
        self.list(Table::Intents)
    }

    fn selections(&self) -> Result<Vec<Selection>> {
        self.list(Table::Selections)
    }

    fn put_selection(&self, selection: &Selection) -> Result<()> {
        self.counted(ChangeOwned::PutSelection(selection.clone()))
            .map(|_| ())
    }

    fn remove_selection(&self, group: &str, host: &str) -> Result<bool> {
        self.counted(ChangeOwned::RemoveSelection(
            group.to_owned(),
            host.to_owned(),
        ))
    }

    fn history(&self) -> Result<Vec<HistoryEntry>> {
        self.list(Table::History)
    }

    fn append_history(&self, entry: &HistoryEntry) -> Result<()> {
        let entry = encode(entry, "history entry")?;
        self.run(move |pool, url, ws| async move {
            sqlx::query("INSERT INTO berth.history (workspace_id, entry) VALUES ($1, $2::jsonb)")
                .bind(ws)
                .bind(entry)
                .execute(&pool)
                .await
                .map_err(|e| url.error(e))?;
            Ok(())
        })
    }

    fn flush(&self) -> Result<()> {
        // Every write above was committed before it returned.
        Ok(())
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let pool = self.pool.clone();
        block_on(async move { pool.close().await });
    }
}

fn encode<T: Serialize>(value: &T, what: &str) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StateError::Encode {
        what: what.to_owned(),
        detail: e.to_string(),
    })
}
