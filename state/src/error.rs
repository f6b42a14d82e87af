//! The one error type of berth-state, with its diagnostic codes and help lines; holds no logic
//! beyond wording.

use std::path::{Path, PathBuf};
use std::time::Duration;

use miette::Diagnostic;
use thiserror::Error;

use crate::ids::format_unix;
use crate::lock::LockInfo;

/// Result alias for this crate.
pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// Everything that can go wrong with the state store, its lock or a saved plan.
#[derive(Debug, Error, Diagnostic)]
pub enum StateError {
    /// A file-system operation failed.
    // The OS error is part of the message and deliberately not a `source`: a report would
    // print it a second time as the cause.
    #[error("cannot {action} {}: {cause}", path.display())]
    #[diagnostic(
        code(berth::state::io),
        help("check that the path exists and that this user may read and write it")
    )]
    Io {
        action: String,
        path: PathBuf,
        cause: std::io::Error,
    },

    /// The operating system refused berth access to the state (EACCES or EPERM).
    #[error(
        "permission denied: cannot {} {}: this user ({}) may not use the state directory {}, which belongs to {}",
        .access.action, path.display(), .access.user, .access.dir.display(), .access.owner
    )]
    #[diagnostic(
        code(berth::state::permission),
        help(
            "this is a permission problem (the store itself is fine): run berth as {}, or give {} the directory (`sudo chown -R {} {}`)",
            access.owner, access.user, access.user, access.dir.display()
        )
    )]
    PermissionDenied {
        path: PathBuf,
        access: Box<Access>,
        #[source]
        source: std::io::Error,
    },

    /// The store's storage engine reported an error (its own type stays inside this crate).
    #[error("state store at {}: {detail}", path.display())]
    #[diagnostic(
        code(berth::state::store),
        help(
            "the store may be damaged; the hosts still carry every deployment, so a fresh state directory re-adopts them on the next plan"
        )
    )]
    Store { path: PathBuf, detail: String },

    /// Another handle (this process or another one) has the sled database open.
    #[error("state store at {} is already open in another process or handle", path.display())]
    #[diagnostic(
        code(berth::state::in_use),
        help(
            "berth's lock normally prevents this: is another tool or an older berth using this state directory?"
        )
    )]
    StoreInUse { path: PathBuf },

    /// The state was written by a newer berth.
    #[error(
        "state at {place} was written by a newer berth (format {found}; this berth reads {supported})"
    )]
    #[diagnostic(
        code(berth::state::newer_format),
        help(
            "upgrade berth to the version that wrote this state; an older berth must not rewrite it"
        )
    )]
    NewerFormat {
        /// Where the state is: its directory, or its workspace and database.
        place: String,
        found: u32,
        supported: u32,
    },

    /// A stored record cannot be decoded.
    #[error("state record `{key}` in {tree} is unreadable: {detail}")]
    #[diagnostic(code(berth::state::corrupt_record))]
    CorruptRecord {
        tree: &'static str,
        key: String,
        detail: String,
        #[help]
        help: String,
    },

    /// A value could not be encoded for storage.
    #[error("cannot encode {what}: {detail}")]
    #[diagnostic(
        code(berth::state::encode),
        help("this is a bug in berth; please report it")
    )]
    Encode { what: String, detail: String },

    /// The operating system's random source failed.
    #[error("cannot read random bytes from the operating system: {detail}")]
    #[diagnostic(
        code(berth::state::random),
        help("berth needs getrandom(2) or /dev/urandom to make lock ids and state keys")
    )]
    Random { detail: String },

    /// Another berth holds the state lock.
    #[error(
        "state is locked: lock {} held by {}@{} pid {} ({}{}), held for {}",
        .holder.id, .holder.user, .holder.hostname, .holder.pid, .holder.operation,
        .holder.ci_suffix(),
        humantime::format_duration(Duration::from_secs(.held_for.as_secs()))
    )]
    #[diagnostic(
        code(berth::state::locked),
        help("wait for it to finish, or pass --lock-timeout 60s to wait; if you are sure it is gone: berth force-unlock {}", holder.id)
    )]
    Locked {
        holder: Box<LockInfo>,
        held_for: Duration,
    },

    /// Another process holds the state lock, but its lock file does not say who.
    #[error("state is locked by another process; its lock file {} does not say who ({detail})", path.display())]
    #[diagnostic(
        code(berth::state::locked),
        help("wait for it to finish, or pass --lock-timeout 60s to wait")
    )]
    LockedByUnknown { path: PathBuf, detail: String },

    /// The lock file names a berth on this host whose process is gone.
    #[error(
        "lock {} held by {}@{} pid {} ({}, since {}) is stale: that process is gone",
        .holder.id, .holder.user, .holder.hostname, .holder.pid, .holder.operation,
        format_unix(.holder.started_at)
    )]
    #[diagnostic(
        code(berth::state::stale_lock),
        help("rerun with --force to take it over, or berth force-unlock {}", holder.id)
    )]
    StaleLock { holder: Box<LockInfo> },

    /// No process holds the lock, but its file holds something berth cannot read.
    #[error("lock file {} is unreadable ({detail}) and no berth on this host holds it", path.display())]
    #[diagnostic(
        code(berth::state::unreadable_lock),
        help(
            "if no berth on another machine uses this state directory, rerun with --force to take the lock over"
        )
    )]
    UnreadableLock { path: PathBuf, detail: String },

    /// `force-unlock` found no lock to remove.
    #[error("there is no lock to remove: {place}")]
    #[diagnostic(code(berth::state::not_locked), help("nothing to do"))]
    NotLocked {
        /// What was found instead of a lock (`.berth/berth.lock is empty or missing`).
        place: String,
    },

    /// `force-unlock` was given an id other than the current lock's. The message names the
    /// holder but never its id: removing a lock takes the id from the error that named it, so
    /// a mistyped or guessed id can never lead to removing a lock nobody looked at.
    #[error(
        "lock id {given} does not match the holder of the lock ({}@{} pid {}, {}); nothing removed",
        .holder.user, .holder.hostname, .holder.pid, .holder.operation
    )]
    #[diagnostic(
        code(berth::state::lock_id_mismatch),
        help(
            "check that this holder is really gone, then give the id shown in the error that named it (`lock ID held by ...`)"
        )
    )]
    LockIdMismatch {
        given: String,
        holder: Box<LockInfo>,
    },

    /// `force-unlock` refused because the holder is still running.
    #[error(
        "lock {} is held by a running berth (pid {} on {}, {}); stop it first",
        .holder.id, .holder.pid, .holder.hostname, .holder.operation
    )]
    #[diagnostic(
        code(berth::state::lock_in_use),
        help("force-unlock only removes locks whose berth is gone; wait for it or stop it")
    )]
    LockInUse { holder: Box<LockInfo> },

    /// The file given as a saved plan is not one.
    #[error("{} is not a berth plan file: {detail}", path.display())]
    #[diagnostic(
        code(berth::state::not_a_plan),
        help("pass a file written by `berth plan --out FILE`")
    )]
    NotAPlan { path: PathBuf, detail: String },

    /// The saved plan was written by a newer berth.
    #[error(
        "plan file {} was written by a newer berth (plan format {found}; this berth reads {supported})",
        path.display()
    )]
    #[diagnostic(
        code(berth::state::newer_plan_format),
        help("apply it with the berth that wrote it, or run berth plan again with this one")
    )]
    NewerPlanFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The saved plan was made against a different state.
    #[error(
        "this plan was made for another state (lineage {plan_lineage}, current {state_lineage})"
    )]
    #[diagnostic(
        code(berth::state::plan_other_state),
        help("run berth plan again against this state directory")
    )]
    PlanForOtherState {
        plan_lineage: String,
        state_lineage: String,
    },

    /// The state moved on since the saved plan was made.
    #[error(
        "the state changed since this plan was made (serial {plan_serial}, now {state_serial}): run berth plan again"
    )]
    #[diagnostic(
        code(berth::state::stale_plan),
        help(
            "a saved plan is only valid for the state it was made from; make a new one and review it"
        )
    )]
    StalePlan { plan_serial: u64, state_serial: u64 },

    /// The postgres backend was chosen but no connection URL was given.
    #[error("the postgres state backend needs a connection URL, and none was given")]
    #[diagnostic(
        code(berth::state::pg_no_url),
        help(
            "export BERTH_PG_URL=postgres://USER:PASSWORD@HOST:5432/DB (or set a URL without password as `url` in `settings {{ state {{ ... }} }}`)"
        )
    )]
    PgNoUrl,

    /// The connection URL cannot be used. The URL itself is never repeated: it may hold a
    /// password.
    #[error("the PostgreSQL connection URL is not valid: {detail}")]
    #[diagnostic(
        code(berth::state::pg_bad_url),
        help(
            "the form is postgres://USER:PASSWORD@HOST:PORT/DATABASE?sslmode=verify-full; percent-encode special characters of the password"
        )
    )]
    PgBadUrl { detail: String },

    /// The server did not answer, or the connection broke.
    #[error("cannot reach the PostgreSQL server at {target}: {detail}")]
    #[diagnostic(
        code(berth::state::pg_unreachable),
        help(
            "check that the server runs and that host, port and sslmode in BERTH_PG_URL are right; nothing was changed"
        )
    )]
    PgUnreachable { target: String, detail: String },

    /// The server refused the login.
    #[error(
        "PostgreSQL at {target} refused the login of user `{user}`: wrong password or unknown user"
    )]
    #[diagnostic(
        code(berth::state::pg_auth),
        help(
            "check the user and password in BERTH_PG_URL (percent-encode special characters); nothing was changed"
        )
    )]
    PgAuth { target: String, user: String },

    /// The database named in the URL does not exist.
    #[error("database `{database}` does not exist on the PostgreSQL server at {target}")]
    #[diagnostic(
        code(berth::state::pg_no_database),
        help("create it (`createdb {database}`) or fix the database name in BERTH_PG_URL")
    )]
    PgNoDatabase { target: String, database: String },

    /// The database user may not create berth's tables.
    #[error("user `{user}` may not create berth's tables in {target}: {detail}")]
    #[diagnostic(
        code(berth::state::pg_schema_permission),
        help(
            "ask a database administrator to run the SQL that `berth state init --print-sql` prints, then run berth again; nothing was changed"
        )
    )]
    PgSchemaPermission {
        target: String,
        user: String,
        detail: String,
    },

    /// The database holds berth tables from a newer berth.
    #[error(
        "berth's tables in {target} were made by a newer berth (schema version {found}; this berth knows up to {supported})"
    )]
    #[diagnostic(
        code(berth::state::pg_schema_too_new),
        help(
            "upgrade berth to the version the rest of the team uses; an older berth must not write this state. Nothing was changed"
        )
    )]
    PgSchemaTooNew {
        target: String,
        found: i64,
        supported: i64,
    },

    /// The configured workspace does not exist in the database.
    #[error("workspace `{workspace}` does not exist in {target}{}", existing_list(.existing))]
    #[diagnostic(
        code(berth::state::pg_no_workspace),
        help(
            "check `workspace` in `settings {{ state {{ ... }} }}`; to start a new state there, run `berth state init` (or `berth state migrate --to postgres` to copy a sled state)"
        )
    )]
    PgNoWorkspace {
        target: String,
        workspace: String,
        existing: Vec<String>,
    },

    /// Another writer wrote the state since this berth read it: nothing was written.
    #[error(
        "workspace `{workspace}` was changed by another writer (serial {found}, this berth expected {expected}): this berth's lock was lost, and nothing was written"
    )]
    #[diagnostic(
        code(berth::state::serial_conflict),
        help(
            "the other writer's changes stand; run berth plan again to see the state as it is now"
        )
    )]
    SerialConflict {
        workspace: String,
        expected: u64,
        found: u64,
    },

    /// This berth's lock was removed (`force-unlock`) or taken over: it may no longer write.
    #[error("workspace `{workspace}`: this berth's lock {lock_id} was removed by another berth{}, so nothing was written", holder_suffix(.holder))]
    #[diagnostic(
        code(berth::state::lock_lost),
        help(
            "someone ran `berth force-unlock` or took the lock over; run berth plan again once they are done"
        )
    )]
    LockLost {
        workspace: String,
        lock_id: String,
        holder: Option<Box<LockInfo>>,
    },

    /// The state holds another lineage than the one this berth read or copies.
    #[error(
        "workspace `{workspace}` holds another state (lineage {found}, not {expected}); nothing was written"
    )]
    #[diagnostic(
        code(berth::state::lineage_mismatch),
        help(
            "this workspace belongs to another state: pick another `workspace`, or remove that one on purpose"
        )
    )]
    LineageMismatch {
        workspace: String,
        expected: String,
        found: String,
    },

    /// Any other error reported by PostgreSQL.
    #[error("PostgreSQL at {target}: {detail}")]
    #[diagnostic(
        code(berth::state::pg),
        help("nothing was changed by the failed statement; see the server's log for more")
    )]
    Pg { target: String, detail: String },
}

fn existing_list(existing: &[String]) -> String {
    if existing.is_empty() {
        " (it has no workspace yet)".to_owned()
    } else {
        format!(" (it has: {})", existing.join(", "))
    }
}

fn holder_suffix(holder: &Option<Box<LockInfo>>) -> String {
    match holder {
        Some(h) => format!(
            " and is now held by {}@{} pid {} ({})",
            h.user, h.hostname, h.pid, h.operation
        ),
        None => String::new(),
    }
}

/// Who was refused what, in a [`StateError::PermissionDenied`].
#[derive(Debug)]
pub struct Access {
    /// What berth tried to do with the path.
    pub action: String,
    /// The state directory the path is in.
    pub dir: PathBuf,
    /// Who owns `dir`.
    pub owner: String,
    /// Who berth runs as.
    pub user: String,
}

impl StateError {
    /// A refused access to `path`, inside the state directory `dir`.
    pub(crate) fn permission(
        action: &str,
        path: &Path,
        dir: &Path,
        source: std::io::Error,
    ) -> Self {
        let owner = std::fs::metadata(dir)
            .map(|m| crate::lock::user_name(std::os::unix::fs::MetadataExt::uid(&m)))
            .unwrap_or_else(|_| "another user".to_owned());
        StateError::PermissionDenied {
            path: path.to_path_buf(),
            access: Box::new(Access {
                action: action.to_owned(),
                dir: dir.to_path_buf(),
                owner,
                user: crate::lock::current_user(),
            }),
            source,
        }
    }

    pub(crate) fn corrupt(
        tree: &'static str,
        key: impl Into<String>,
        detail: impl ToString,
    ) -> Self {
        let key = key.into();
        let help = if tree == "resources" {
            format!(
                "`berth state rm {key}` removes the damaged record; the next plan re-adopts what runs on the host"
            )
        } else {
            "the state store is damaged; the hosts still carry every deployment, so a fresh state directory re-adopts them on the next plan".to_owned()
        };
        StateError::CorruptRecord {
            tree,
            key,
            detail: detail.to_string(),
            help,
        }
    }

    pub(crate) fn io(action: &str, path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::PermissionDenied {
            let dir = if path.is_dir() {
                path
            } else {
                path.parent().unwrap_or(path)
            };
            return StateError::permission(action, path, dir, source);
        }
        StateError::Io {
            action: action.to_owned(),
            path: path.to_path_buf(),
            cause: source,
        }
    }
}
