//! The `berth hosts test ID --json` and `berth hosts doctor [ID] --json` documents.

use schemars::JsonSchema;
use serde::Serialize;

/// Whether berth reached a host and ran a command there. On success `connect_ms`,
/// `command_ms` and `system` are set; on failure `error` is.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostTest {
    /// The round trip of `echo ok; uname -sr`, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_ms: Option<u64>,
    /// How long connecting (and logging in) took, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// Why the host could not be reached or the command failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub host: String,
    pub ok: bool,
    /// The host's `uname -sr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// The checks of one host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HostDoctor {
    pub checks: Vec<Check>,
    pub host: String,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Fail,
    /// Not run because an earlier check failed.
    Skipped,
}

/// One check on a host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Check {
    /// What was checked (`connect`, `run_dir`, `port 8080`...).
    pub check: String,
    pub status: Status,
    pub detail: String,
    /// What to do about a warning or failure.
    pub fix: Option<String>,
}
