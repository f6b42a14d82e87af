//! The one error type of berth-providers.

use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Everything that can go wrong while reaching a host or running a service on it.
#[derive(Debug, Error)]
pub enum ProviderError {
    #[error("{host}: {what} failed (exit {status:?}): {stderr}")]
    CommandFailed {
        host: String,
        what: String,
        status: Option<i32>,
        stderr: String,
    },

    #[error("{host}: `{what}` did not finish within {secs} s")]
    Timeout {
        host: String,
        what: String,
        secs: u64,
    },

    #[error("value cannot be shell-quoted (it holds a NUL byte): {0:?}")]
    Unquotable(String),

    #[error("{host}: {message}")]
    Io {
        host: String,
        message: String,
        #[source]
        source: std::io::Error,
    },
}
