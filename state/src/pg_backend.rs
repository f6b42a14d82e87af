//! The postgres backend: a workspace in a PostgreSQL database, locked by a visible holder row
//! plus a session advisory lock on a dedicated connection, so that a berth that dies or loses its
//! network releases the lock with its connection. Joins `pg_schema` and `pg_store` behind
//! `StateBackend`; must not write records itself.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Connection;
use sqlx::Row;
use sqlx::postgres::PgConnection;

use crate::backend::{HeldLock, InterruptRelease, StateBackend, StateGuard};
use crate::error::{Result, StateError};
use crate::ids::{now_unix, random_hex};
use crate::lock::{self, LockInfo, LockOptions};
use crate::pg_schema::{self, LOCK_CLASS};
use crate::pg_settings::{PgSettings, PgUrl, block_on};
use crate::pg_store::PgStore;
use crate::record::Meta;
use crate::sled_store::STATE_FORMAT_VERSION;
use crate::snapshot::Snapshot;
use crate::store::StateStore;

const RETRY_EVERY: Duration = Duration::from_millis(100);

/// How long a berth ending on a signal waits to delete its holder row.
const INTERRUPT_RELEASE_WITHIN: Duration = Duration::from_secs(3);

/// How long a holder on this machine whose process is gone may keep its advisory lock: the
/// server frees it as soon as it sees the connection closed, a moment after the process died.
const DEAD_HOLDER_GRACE: Duration = Duration::from_secs(3);

/// A state kept in PostgreSQL: one workspace of one database.
#[derive(Debug, Clone)]
pub struct PgBackend {
    settings: Arc<PgSettings>,
}

/// A workspace row: its id (the advisory lock's second key) and name.
#[derive(Debug, Clone)]
pub(crate) struct Workspace {
    pub(crate) id: i32,
    pub(crate) name: String,
}

impl PgBackend {
    /// The workspace `settings.workspace` of the database `settings.url`; nothing is touched
    /// until it is locked.
    pub fn new(settings: PgSettings) -> PgBackend {
        PgBackend {
            settings: Arc::new(settings),
        }
    }

    /// Connects, applies missing schema migrations and creates the workspace when it is missing
    /// (`berth state init`); returns the workspace's meta.
    pub fn init(&self) -> Result<Meta> {
        let settings = Arc::clone(&self.settings);
        block_on(async move {
            let url = &settings.url;
            let mut conn = url.connect().await?;
            pg_schema::ensure(&mut conn, url).await?;
            let ws = workspace(&mut conn, &settings.workspace, true, url).await?;
            let meta = crate::pg_store::read_meta(&mut conn, ws.id, &ws.name, url).await;
            let _ = conn.close().await;
            meta
        })
    }

    /// The schema version of the database and the one this berth writes.
    pub fn schema_versions(&self) -> Result<(i64, i64)> {
        let url = self.settings.url.clone();
        block_on(async move {
            let mut conn = url.connect().await?;
            let found = pg_schema::current_version(&mut conn, &url).await;
            let _ = conn.close().await;
            Ok((found?, pg_schema::SCHEMA_VERSION))
        })
    }

    /// Copies a whole state (meta, records, selections, intents, history) into this workspace
    /// under its lock, in one transaction. The workspace must be new, empty, or already hold
    /// the same lineage (a copy made again); another lineage is refused and nothing is written.
    pub fn import(&self, snapshot: &Snapshot, opts: &LockOptions) -> Result<Meta> {
        let mut settings = (*self.settings).clone();
        settings.create_workspace = true;
        let backend = PgBackend::new(settings);
        let guard = backend.lock("state migrate", opts)?;
        let settings = Arc::clone(&backend.settings);
        let snapshot = snapshot.clone();
        let lock_id = guard.info().id.clone();
        let meta = block_on(async move {
            let url = &settings.url;
            let mut conn = url.connect().await?;
            let ws = workspace(&mut conn, &settings.workspace, false, url).await?;
            let result = crate::pg_store::import(&mut conn, &ws, &lock_id, &snapshot, url).await;
            let _ = conn.close().await;
            result
        })?;
        guard.release()?;
        Ok(meta)
    }
}

impl StateBackend for PgBackend {
    fn lock(&self, operation: &str, opts: &LockOptions) -> Result<StateGuard> {
        let info = LockInfo::for_this_process(operation)?;
        let settings = Arc::clone(&self.settings);
        let opts = *opts;
        let held = block_on(acquire(settings, info.clone(), opts))?;
        let took_over = held.took_over.clone();
        Ok(StateGuard::new(Box::new(held), info, took_over))
    }

    fn holder(&self) -> Result<Option<LockInfo>> {
        let settings = Arc::clone(&self.settings);
        block_on(async move {
            let url = &settings.url;
            let mut conn = url.connect().await?;
            let result = async {
                if pg_schema::current_version(&mut conn, url).await? == 0 {
                    return Ok(None);
                }
                let Some(ws) = find_workspace(&mut conn, &settings.workspace, url).await? else {
                    return Ok(None);
                };
                Ok(holder_row(&mut conn, ws.id, url)
                    .await?
                    .map(|(info, _)| info))
            }
            .await;
            let _ = conn.close().await;
            result
        })
    }

    fn force_unlock(&self, id: &str) -> Result<LockInfo> {
        let settings = Arc::clone(&self.settings);
        let id = id.to_owned();
        block_on(async move {
            let url = &settings.url;
            let mut conn = url.connect().await?;
            let result = force_unlock(&mut conn, &settings, &id).await;
            let _ = conn.close().await;
            result
        })
    }

    /// The workspace as it stands, read without the lock: one connection and one read-only
    /// `REPEATABLE READ` transaction, so meta, records, selections, intents and history all
    /// belong to the same committed version even while a writer commits between the reads.
    fn snapshot(&self) -> Result<Option<Snapshot>> {
        let settings = Arc::clone(&self.settings);
        block_on(async move {
            let url = &settings.url;
            let mut conn = url.connect().await?;
            let result = async {
                let mut tx = conn.begin().await.map_err(|e| url.error(e))?;
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| url.error(e))?;
                if pg_schema::current_version(&mut tx, url).await? == 0 {
                    return Ok(None);
                }
                let Some(ws) = find_workspace(&mut tx, &settings.workspace, url).await? else {
                    return Ok(None);
                };
                let snapshot = crate::pg_store::read_snapshot(&mut tx, &ws, url).await?;
                tx.commit().await.map_err(|e| url.error(e))?;
                Ok(Some(snapshot))
            }
            .await;
            let _ = conn.close().await;
            result
        })
    }

    fn describe(&self) -> String {
        format!(
            "postgres workspace `{}` at {}",
            self.settings.workspace, self.settings.url
        )
    }
}

/// The held lock: its dedicated connection (holding the advisory lock) and what the store needs.
struct PgLock {
    conn: Option<PgConnection>,
    settings: Arc<PgSettings>,
    workspace: Workspace,
    lock_id: String,
    took_over: Option<LockInfo>,
}

impl HeldLock for PgLock {
    fn open_store(&self) -> Result<Arc<dyn StateStore>> {
        let store = PgStore::open(
            self.settings.url.clone(),
            self.workspace.clone(),
            self.lock_id.clone(),
        )?;
        Ok(Arc::new(store))
    }

    fn release(&mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let url = self.settings.url.clone();
        let ws = self.workspace.id;
        let lock_id = self.lock_id.clone();
        block_on(async move {
            // The row goes first, while the advisory lock still keeps everyone else out.
            let deleted = delete_holder_row(&mut conn, &url, ws, &lock_id).await;
            // Ending the session releases its advisory lock.
            let _ = conn.close().await;
            deleted
        })
    }

    fn interrupt_fd(&self) -> Option<RawFd> {
        // The server releases the advisory lock when the process dies and its socket closes.
        None
    }

    /// The holder row stays when the process dies, and would make the next berth report a stale
    /// lock: it is deleted through a connection of its own, since the lock's connection belongs
    /// to a thread the signal interrupts. Only this lock's row (its id) can match, so a run
    /// after a normal release deletes nothing.
    fn interrupt_release(&self) -> Option<InterruptRelease> {
        self.conn.as_ref()?;
        let url = self.settings.url.clone();
        let ws = self.workspace.id;
        let lock_id = self.lock_id.clone();
        Some(Arc::new(move || {
            let (url, lock_id) = (url.clone(), lock_id.clone());
            block_on(async move {
                let delete = async {
                    let mut conn = url.connect().await?;
                    let deleted = delete_holder_row(&mut conn, &url, ws, &lock_id).await;
                    let _ = conn.close().await;
                    deleted
                };
                // A server that does not answer in time keeps the row: the next berth then
                // names the holder as gone, and `--force` takes it over.
                let _ = tokio::time::timeout(INTERRUPT_RELEASE_WITHIN, delete).await;
            });
        }))
    }
}

/// Deletes the holder row of lock `lock_id` in workspace `ws` (no other row can match).
async fn delete_holder_row(
    conn: &mut PgConnection,
    url: &PgUrl,
    ws: i32,
    lock_id: &str,
) -> Result<()> {
    sqlx::query("DELETE FROM berth.locks WHERE workspace_id = $1 AND lock_id = $2")
        .bind(ws)
        .bind(lock_id)
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(|e| url.error(e))
}

async fn acquire(settings: Arc<PgSettings>, info: LockInfo, opts: LockOptions) -> Result<PgLock> {
    let url = &settings.url;
    let mut conn = url.connect().await?;
    pg_schema::ensure(&mut conn, url).await?;
    let ws = workspace(
        &mut conn,
        &settings.workspace,
        settings.create_workspace,
        url,
    )
    .await?;
    let started = Instant::now();
    let deadline = started + opts.timeout;
    loop {
        // One round trip: the attempt, and the holder row as it was at that moment.
        let attempt = sqlx::query(
            "SELECT pg_try_advisory_lock($1, $2) AS got, \
             (SELECT holder::text FROM berth.locks WHERE workspace_id = $2) AS holder, \
             (SELECT max(version)::bigint FROM berth.schema_version) AS schema",
        )
        .bind(LOCK_CLASS)
        .bind(ws.id)
        .fetch_one(&mut conn)
        .await
        .map_err(|e| url.error(e))?;
        let got: bool = attempt.try_get("got").map_err(|e| url.error(e))?;
        let schema: Option<i64> = attempt.try_get("schema").map_err(|e| url.error(e))?;
        if let Err(e) = pg_schema::check_not_newer(schema.unwrap_or(0), url) {
            if got {
                let _ = unlock(&mut conn, ws.id, url).await;
            }
            return Err(e);
        }
        let holder: Option<String> = attempt.try_get("holder").map_err(|e| url.error(e))?;
        let row = holder
            .map(|text| {
                serde_json::from_str::<LockInfo>(&text)
                    .map(|info| (info, 0))
                    .map_err(|e| StateError::corrupt("locks", "holder", e))
            })
            .transpose()?;
        if got {
            let took_over = match row {
                None => None,
                // Nobody holds the advisory lock, so the session that wrote this row is gone:
                // the holder died or lost its connection.
                Some((prev, _)) if opts.force => Some(prev),
                Some((prev, _)) => {
                    unlock(&mut conn, ws.id, url).await?;
                    return Err(StateError::StaleLock {
                        holder: Box::new(prev),
                    });
                }
            };
            if let Err(e) = write_holder(&mut conn, ws.id, &info, url).await {
                let _ = unlock(&mut conn, ws.id, url).await;
                return Err(e);
            }
            return Ok(PgLock {
                conn: Some(conn),
                settings,
                workspace: ws,
                lock_id: info.id,
                took_over,
            });
        }
        let now = Instant::now();
        let dying = row
            .as_ref()
            .is_some_and(|(holder, _)| lock::is_stale(holder));
        let grace = dying && now < started + DEAD_HOLDER_GRACE;
        // The holder may be between taking the advisory lock and writing its row.
        let unnamed = row.is_none() && now < started + DEAD_HOLDER_GRACE;
        if now >= deadline && !grace && !unnamed {
            let _ = conn.close().await;
            return Err(match row {
                Some((holder, _)) => StateError::Locked {
                    held_for: Duration::from_secs(now_unix().saturating_sub(holder.started_at)),
                    holder: Box::new(holder),
                },
                None => StateError::Pg {
                    target: url.to_string(),
                    detail: format!(
                        "workspace `{}` is locked by a session that names no holder",
                        ws.name
                    ),
                },
            });
        }
        let wait = if grace || unnamed {
            Duration::from_millis(20)
        } else {
            RETRY_EVERY.min(deadline - now)
        };
        tokio::time::sleep(wait).await;
    }
}

async fn write_holder(
    conn: &mut PgConnection,
    ws: i32,
    info: &LockInfo,
    url: &PgUrl,
) -> Result<()> {
    let holder = serde_json::to_string(info).map_err(|e| StateError::Encode {
        what: "lock info".to_owned(),
        detail: e.to_string(),
    })?;
    sqlx::query(
        "INSERT INTO berth.locks (workspace_id, lock_id, holder, backend_pid) \
         VALUES ($1, $2, $3::jsonb, pg_backend_pid()) \
         ON CONFLICT (workspace_id) DO UPDATE SET lock_id = EXCLUDED.lock_id, \
         holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid",
    )
    .bind(ws)
    .bind(&info.id)
    .bind(holder)
    .execute(&mut *conn)
    .await
    .map_err(|e| url.error(e))?;
    Ok(())
}

async fn unlock(conn: &mut PgConnection, ws: i32, url: &PgUrl) -> Result<()> {
    sqlx::query("SELECT pg_advisory_unlock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(ws)
        .execute(&mut *conn)
        .await
        .map_err(|e| url.error(e))?;
    Ok(())
}

/// The holder row of workspace `ws` and the server pid of its session.
async fn holder_row(
    conn: &mut PgConnection,
    ws: i32,
    url: &PgUrl,
) -> Result<Option<(LockInfo, i32)>> {
    let row = sqlx::query(
        "SELECT holder::text AS holder, backend_pid FROM berth.locks WHERE workspace_id = $1",
    )
    .bind(ws)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| url.error(e))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let text: String = row.try_get("holder").map_err(|e| url.error(e))?;
    let pid: i32 = row.try_get("backend_pid").map_err(|e| url.error(e))?;
    let info =
        serde_json::from_str(&text).map_err(|e| StateError::corrupt("locks", "holder", e))?;
    Ok(Some((info, pid)))
}

async fn force_unlock(
    conn: &mut PgConnection,
    settings: &PgSettings,
    id: &str,
) -> Result<LockInfo> {
    let url = &settings.url;
    let nothing = || StateError::NotLocked {
        place: format!(
            "workspace `{}` at {} has no lock holder",
            settings.workspace, url
        ),
    };
    if pg_schema::current_version(conn, url).await? == 0 {
        return Err(nothing());
    }
    let Some(ws) = find_workspace(conn, &settings.workspace, url).await? else {
        return Err(nothing());
    };
    let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(LOCK_CLASS)
        .bind(ws.id)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| url.error(e))?;
    let row = holder_row(conn, ws.id, url).await?;
    if !got {
        return Err(match row {
            Some((holder, _)) if holder.id == id => StateError::LockInUse {
                holder: Box::new(holder),
            },
            Some((holder, _)) => StateError::LockIdMismatch {
                given: id.to_owned(),
                holder: Box::new(holder),
            },
            None => nothing(),
        });
    }
    let result = match row {
        None => Err(nothing()),
        Some((holder, _)) if holder.id != id => Err(StateError::LockIdMismatch {
            given: id.to_owned(),
            holder: Box::new(holder),
        }),
        Some((holder, _)) => {
            sqlx::query("DELETE FROM berth.locks WHERE workspace_id = $1 AND lock_id = $2")
                .bind(ws.id)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map(|_| holder)
                .map_err(|e| url.error(e))
        }
    };
    unlock(conn, ws.id, url).await?;
    result
}

pub(crate) async fn find_workspace(
    conn: &mut PgConnection,
    name: &str,
    url: &PgUrl,
) -> Result<Option<Workspace>> {
    let id: Option<i32> = sqlx::query_scalar("SELECT id FROM berth.workspaces WHERE name = $1")
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| url.error(e))?;
    Ok(id.map(|id| Workspace {
        id,
        name: name.to_owned(),
    }))
}

/// The workspace `name`, created (with a fresh lineage and key) when `create` is set.
pub(crate) async fn workspace(
    conn: &mut PgConnection,
    name: &str,
    create: bool,
    url: &PgUrl,
) -> Result<Workspace> {
    if let Some(ws) = find_workspace(conn, name, url).await? {
        return Ok(ws);
    }
    if !create {
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT name FROM berth.workspaces ORDER BY name LIMIT 20")
                .fetch_all(&mut *conn)
                .await
                .map_err(|e| url.error(e))?;
        return Err(StateError::PgNoWorkspace {
            target: url.to_string(),
            workspace: name.to_owned(),
            existing,
        });
    }
    // Two berths creating one workspace at once: the second insert does nothing.
    sqlx::query(
        "INSERT INTO berth.workspaces (name, lineage, serial, format_version, hmac_key) \
         VALUES ($1, $2, 0, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(random_hex(16)?)
    .bind(STATE_FORMAT_VERSION as i32)
    .bind(random_hex(32)?)
    .execute(&mut *conn)
    .await
    .map_err(|e| url.error(e))?;
    find_workspace(conn, name, url)
        .await?
        .ok_or_else(|| StateError::Pg {
            target: url.to_string(),
            detail: format!("workspace `{name}` vanished right after it was created"),
        })
}
