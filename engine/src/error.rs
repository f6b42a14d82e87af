//! The one error type of berth-engine: every way a command can fail, as a miette diagnostic
//! with a code and a way forward.

use std::path::PathBuf;

use miette::Diagnostic;
use thiserror::Error;

use crate::config::Invalid;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every way a berth command can fail.
#[derive(Debug, Error, Diagnostic)]
pub enum Error {
    /// The config has errors; each finding is rendered on its own.
    #[error("the config has {} error{}", .0.findings.error_count(), if .0.findings.error_count() == 1 { "" } else { "s" })]
    #[diagnostic(
        code(berth::config::invalid),
        help("fix the errors above, then run `berth validate` again")
    )]
    InvalidConfig(Box<Invalid>),

    // The OS error is part of the message and deliberately not a `source`: a report would
    // print it a second time as the cause.
    #[error("cannot {what} {}: {cause}", path.display())]
    #[diagnostic(code(berth::io))]
    Io {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },

    #[error("no {kind} `{id}` in {place}")]
    #[diagnostic(code(berth::not_found), help("{help}"))]
    NotFound {
        kind: &'static str,
        id: String,
        place: &'static str,
        help: String,
    },

    /// `select` of a model the config does not have (or has disabled).
    #[error("model not found: `{id}`")]
    #[diagnostic(code(berth::select::model_not_found), help("{help}"))]
    ModelNotFound { id: String, help: String },

    /// `select` of a model outside any group.
    #[error("model `{id}` is in no group: select switches the running member of a model group")]
    #[diagnostic(
        code(berth::select::not_grouped),
        help(
            "give the models that take turns on a host the same `group = \"...\"` (one of them `default = true`); a model outside groups runs whenever it is enabled: use `berth apply`"
        )
    )]
    NotGrouped { id: String },

    #[error("{message}")]
    #[diagnostic(code(berth::usage), help("{help}"))]
    Usage { message: String, help: String },

    #[error("refusing to apply: {reason}")]
    #[diagnostic(
        code(berth::plan::mass_destroy),
        help(
            "a config file that is missing or unreadable looks like this: check `berth validate` and the files in the config directory; if the plan is what you want, run `berth apply --allow-mass-destroy` (or `berth destroy` to remove everything)"
        )
    )]
    MassDestroy { reason: String },

    #[error("the resource graph has a cycle: {}", .0.join(" -> "))]
    #[diagnostic(
        code(berth::graph::cycle),
        help("remove one of the depends_on entries on this path")
    )]
    Cycle(Vec<berth_state::Address>),

    #[error(transparent)]
    #[diagnostic(
        code(berth::render),
        help("check the template values of this placement")
    )]
    Render(crate::launch::RenderError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    State(#[from] berth_state::StateError),

    #[error(transparent)]
    #[diagnostic(transparent)]
    Provider(#[from] berth_providers::ProviderError),

    /// The caller's stop token cancelled the operation before it finished.
    #[error("cancelled ({reason}) before it finished")]
    #[diagnostic(
        code(berth::cancelled),
        help("nothing was changed on the hosts; run the command again")
    )]
    Cancelled { reason: String },

    /// `force-unlock --host` could not remove a host lock.
    #[error("cannot remove the host lock on {host}: {message}")]
    #[diagnostic(
        code(berth::host_unlock),
        help("`berth hosts test {host}` checks that berth can reach and log in to the host")
    )]
    HostUnlock { host: String, message: String },
}
