//! What the postgres backend is given (the connection URL, kept secret, and the workspace), how
//! it connects, and how a database error becomes a `StateError`; the URL's password never leaves
//! this module in any message.

use std::fmt;
use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use crate::error::{Result, StateError};

/// How long a connection attempt may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL connection URL. It may hold a password: `Debug` and `Display` show only where it
/// points (`postgres://berth@db.internal:5432/berth`), and every error detail is scrubbed of it.
#[derive(Clone)]
pub struct PgUrl {
    options: PgConnectOptions,
    password: Option<String>,
    shown: String,
}

impl PgUrl {
    /// Parses `url` (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...`, or `?host=/socket/dir`
    /// for a Unix socket); TLS settings pass through as the URL's parameters.
    pub fn parse(url: &str) -> Result<PgUrl> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(StateError::PgBadUrl {
                detail: "it must start with postgres:// or postgresql://".to_owned(),
            });
        }
        let password = password_of(url);
        let options: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| StateError::PgBadUrl {
                detail: scrub(&e.to_string(), password.as_deref(), url),
            })?;
        let shown = match options.get_socket() {
            Some(dir) => format!(
                "postgres://{}@{}:{}/{}",
                options.get_username(),
                dir.display(),
                options.get_port(),
                options.get_database().unwrap_or(options.get_username())
            ),
            None => format!(
                "postgres://{}@{}:{}/{}",
                options.get_username(),
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or(options.get_username())
            ),
        };
        Ok(PgUrl {
            options,
            password,
            shown,
        })
    }

    /// The user berth logs in as.
    pub fn user(&self) -> &str {
        self.options.get_username()
    }

    fn database(&self) -> String {
        self.options
            .get_database()
            .unwrap_or(self.options.get_username())
            .to_owned()
    }

    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        self.options
            .clone()
            .application_name("berth")
            .disable_statement_logging()
    }

    /// Removes the password from `text`, in case a driver message quotes it.
    pub(crate) fn scrub(&self, text: &str) -> String {
        scrub(text, self.password.as_deref(), "")
    }

    /// `e` as berth's error: unreachable, refused login, missing database, missing permission,
    /// or the server's own message (scrubbed).
    pub(crate) fn error(&self, e: sqlx::Error) -> StateError {
        let target = self.shown.clone();
        match &e {
            sqlx::Error::Database(db) => match db.code().as_deref() {
                Some("28P01" | "28000") => StateError::PgAuth {
                    target,
                    user: self.user().to_owned(),
                },
                Some("3D000") => StateError::PgNoDatabase {
                    target,
                    database: self.database(),
                },
                Some("42501") => StateError::PgSchemaPermission {
                    target,
                    user: self.user().to_owned(),
                    detail: self.scrub(db.message()),
                },
                _ => StateError::Pg {
                    target,
                    detail: self.scrub(db.message()),
                },
            },
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Protocol(_) => StateError::PgUnreachable {
                target,
                detail: self.scrub(&e.to_string()),
            },
            _ => StateError::Pg {
                target,
                detail: self.scrub(&e.to_string()),
            },
        }
    }

    /// A connection of its own, with keepalives short enough that the server notices within
    /// about half a minute when berth's machine vanishes (and so frees its advisory lock).
    pub(crate) async fn connect(&self) -> Result<PgConnection> {
        let options = self.connect_options().options([
            ("tcp_keepalives_idle", "10"),
            ("tcp_keepalives_interval", "5"),
            ("tcp_keepalives_count", "3"),
        ]);
        match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(StateError::PgUnreachable {
                target: self.shown.clone(),
                detail: format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            }),
        }
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PgUrl").field(&self.shown).finish()
    }
}

/// Which postgres state to use.
#[derive(Debug, Clone)]
pub struct PgSettings {
    /// Where the database is; holds the credentials.
    pub url: PgUrl,
    /// The state's name inside the database (`prod`, `staging`...).
    pub workspace: String,
    /// Create the workspace when it does not exist yet, instead of failing (`state init`,
    /// `state migrate`); otherwise a misspelt name cannot silently start an empty state.
    pub create_workspace: bool,
}

/// The password in `url`'s authority, if any, percent-decoded as the driver uses it.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let userinfo = authority.rsplit_once('@')?.0;
    let raw = userinfo.split_once(':')?.1;
    (!raw.is_empty()).then(|| percent_decode(raw))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len() + 1
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn scrub(text: &str, password: Option<&str>, url: &str) -> String {
    let mut text = text.to_owned();
    if !url.is_empty() {
        text = text.replace(url, "(the URL)");
    }
    if let Some(p) = password.filter(|p| !p.is_empty()) {
        text = text.replace(p, "(password)");
    }
    text
}

/// Runs `fut` to completion on berth's database runtime and waits for it on this thread.
///
/// The state traits are synchronous and called from inside and outside tokio alike; a runtime
/// of its own (two threads, made on first use and kept for the life of the process) serves both
/// without nesting runtimes.
pub(crate) fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-pg")
            .enable_all()
            .build()
            .expect("the database runtime starts")
    });
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().expect("the database task answers")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_shown_nowhere() {
        let url =
            PgUrl::parse("postgres://ops:s3cr%21t@db.internal:6432/berth?sslmode=require").unwrap();
        assert_eq!(url.to_string(), "postgres://ops@db.internal:6432/berth");
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(url.scrub("bad s3cr!t here"), "bad (password) here");
    }

    #[test]
    fn a_socket_url_names_the_socket_directory() {
        let url =
            PgUrl::parse("postgres://postgres:pw@localhost:55401/berth?host=/tmp/pg").unwrap();
        assert_eq!(url.to_string(), "postgres://postgres@/tmp/pg:55401/berth");
    }

    #[test]
    fn a_bad_url_is_refused_without_repeating_it() {
        let err = PgUrl::parse("mysql://ops:hunter2@db/berth").unwrap_err();
        assert!(matches!(err, StateError::PgBadUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
