//! The one error type of berth-providers. Messages name the host and the step, never a secret
//! value: env values, file contents and command output that may hold them stay out of here
//! (stderr of a failed command is included; berth never puts secrets in argv or scripts).

use miette::Diagnostic;
use thiserror::Error;

/// Result alias for this crate.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// Everything that can go wrong while reaching a host or running a service on it.
#[derive(Debug, Error, Diagnostic)]
pub enum ProviderError {
    /// A command ran and failed.
    #[error("{host}: {what} failed ({}): {stderr}", match status { Some(s) => format!("exit {s}"), None => "killed by a signal".to_string() })]
    #[diagnostic(code(berth::providers::command_failed))]
    CommandFailed {
        host: String,
        what: String,
        status: Option<i32>,
        stderr: String,
    },

    /// A command ran longer than its deadline and was killed.
    #[error("{host}: `{what}` did not finish within {secs} s")]
    #[diagnostic(code(berth::providers::timeout))]
    Timeout {
        host: String,
        what: String,
        secs: u64,
    },

    /// A command was stopped (its process group killed) because its caller cancelled it.
    #[error("{host}: `{what}` was stopped: the operation was cancelled")]
    #[diagnostic(code(berth::providers::cancelled))]
    Cancelled { host: String, what: String },

    /// A value could not be put into a shell script.
    #[error("value cannot be shell-quoted (it holds a NUL byte): {0:?}")]
    #[diagnostic(code(berth::providers::unquotable))]
    Unquotable(String),

    /// The operating system refused something (spawning, connecting, reading).
    #[error("{host}: {message}")]
    #[diagnostic(code(berth::providers::io))]
    Io {
        host: String,
        message: String,
        #[source]
        source: std::io::Error,
    },

    // --- SSH (transport::ssh) ---
    /// An SSH host could not be reached at all (refused, timed out, no route).
    #[error("host {host} ({address}) unreachable: {reason}")]
    #[diagnostic(
        code(berth::providers::ssh::unreachable),
        help(
            "check that the host is up, that sshd listens there and that address and port are right"
        )
    )]
    Unreachable {
        host: String,
        address: String,
        reason: String,
    },

    /// The host's key is in neither the pin nor known_hosts; berth never trusts on first use.
    #[error(
        "host {host} ({address}) is unknown: it presented {fingerprint}; to trust it, check the fingerprint with the host's owner, then run `{fix}`"
    )]
    #[diagnostic(
        code(berth::providers::ssh::host_key_unknown),
        help(
            "berth never trusts a host key on first use; pinning the key with host_key works too"
        )
    )]
    HostKeyUnknown {
        host: String,
        address: String,
        fingerprint: String,
        /// The command that appends the host's key to the known_hosts file berth reads.
        fix: String,
    },

    /// known_hosts holds another key of the same type for this host.
    #[error(
        "host {host} ({address}) presented {fingerprint}, which does not match line {line} of {known_hosts}; refused"
    )]
    #[diagnostic(
        code(berth::providers::ssh::host_key_changed),
        help(
            "if the host was reinstalled, delete that line (ssh-keygen -R ADDRESS -f FILE) and record the new key; otherwise someone may be intercepting the connection"
        )
    )]
    HostKeyChanged {
        host: String,
        address: String,
        known_hosts: String,
        line: usize,
        fingerprint: String,
    },

    /// The host's key differs from the one pinned in its connection block.
    #[error(
        "host {host} ({address}) presented {presented}, but its connection pins {pinned}; refused"
    )]
    #[diagnostic(
        code(berth::providers::ssh::host_key_mismatch),
        help(
            "if the host was rekeyed on purpose, update host_key; otherwise someone may be intercepting the connection"
        )
    )]
    HostKeyMismatch {
        host: String,
        address: String,
        presented: String,
        pinned: String,
    },

    /// The server rejected every key berth offered.
    #[error("authentication failed for user {user} at host {host} ({address}) with {key}")]
    #[diagnostic(
        code(berth::providers::ssh::auth_failed),
        help(
            "check that the user exists on the host and that the public key is in its authorized_keys"
        )
    )]
    AuthFailed {
        host: String,
        address: String,
        user: String,
        /// The key file, or a description of the ssh-agent keys tried.
        key: String,
    },

    /// A private key file cannot be used (missing, unreadable, encrypted, unknown format).
    #[error("host {host}: key {path} {problem}")]
    #[diagnostic(code(berth::providers::ssh::key_file))]
    KeyFile {
        host: String,
        path: String,
        problem: String,
    },

    /// No usable ssh-agent (no SSH_AUTH_SOCK, dead socket, no keys).
    #[error("host {host}: ssh-agent: {problem}")]
    #[diagnostic(
        code(berth::providers::ssh::agent),
        help(
            "set key_path in the host's connection block, or start an agent and add a key (eval \"$(ssh-agent)\"; ssh-add KEY)"
        )
    )]
    Agent { host: String, problem: String },

    /// The SSH connection died while a command or stream was using it.
    #[error("connection to {host} ({address}) lost during `{what}`: {reason}")]
    #[diagnostic(
        code(berth::providers::ssh::connection_lost),
        help(
            "the command may or may not have completed on the host; berth reconnects on the next operation"
        )
    )]
    ConnectionLost {
        host: String,
        address: String,
        what: String,
        reason: String,
    },

    /// The SSH protocol failed in a way the other variants do not cover.
    #[error("host {host} ({address}): {what}: {message}")]
    #[diagnostic(code(berth::providers::ssh::protocol))]
    Ssh {
        host: String,
        address: String,
        what: String,
        message: String,
    },

    /// Another berth holds the host lock (DESIGN.md section 7).
    #[error("host {host} is locked by {holder}")]
    #[diagnostic(
        code(berth::providers::host_locked),
        help(
            "wait for that operation to finish; its lease ends when it does, or 60 s after its holder stops renewing it (a crashed or cut-off berth); `berth force-unlock --host HOST` removes it at once"
        )
    )]
    HostLocked { host: String, holder: String },

    /// A host's connection settings cannot be used as given.
    #[error("host {host}: invalid connection settings: {message}")]
    #[diagnostic(code(berth::providers::ssh::invalid_connection))]
    InvalidConnection { host: String, message: String },

    /// A host answered with something berth cannot read (a damaged record, unexpected output).
    #[error("{host}: {what}: unexpected output: {message}")]
    #[diagnostic(
        code(berth::providers::malformed),
        help("this is a bug in berth or a record on the host was edited by hand")
    )]
    Malformed {
        host: String,
        what: String,
        message: String,
    },

    /// A deployment's marker on the host cannot be read, and nothing else says which process
    /// is the service: berth will not signal a process it cannot identify.
    #[error(
        "{host}: cannot stop {address}: its marker {path} is unreadable ({detail}) and no process identity was recorded for it"
    )]
    #[diagnostic(
        code(berth::providers::unreadable_marker),
        help("stop the server by hand, then remove its deployment directory {dir}")
    )]
    UnreadableMarker {
        host: String,
        address: String,
        /// The marker file (`meta.json`).
        path: String,
        /// The deployment directory that holds it.
        dir: String,
        detail: String,
    },

    /// A launch spec cannot be run as given; the message names keys, never values.
    #[error("{address}: {message}")]
    #[diagnostic(code(berth::providers::invalid_spec))]
    InvalidSpec { address: String, message: String },

    /// What a launch needs on the host (an image) is missing and cannot be brought there;
    /// nothing was stopped.
    #[error("{host}: {address}: {message}; nothing was stopped")]
    #[diagnostic(code(berth::providers::missing_prerequisite), help("{help}"))]
    MissingPrerequisite {
        host: String,
        address: String,
        message: String,
        help: String,
    },
}
