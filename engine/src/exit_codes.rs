//! Exit codes of the `berth` binary, in one place. Scripts and CI jobs depend on them.

/// Everything asked for was done (for `plan --detailed-exitcode`: no changes; for `drift`: clean).
pub const SUCCESS: u8 = 0;
/// Something failed: invalid config, an unreachable host, a failed apply, a held lock.
pub const FAILURE: u8 = 1;
/// `plan --detailed-exitcode`: the plan has changes. `drift`: what runs differs from what was
/// applied.
pub const CHANGES: u8 = 2;
/// `drift`: nothing drifted, but the config has changes that were never applied.
pub const UNAPPLIED: u8 = 3;
/// The command line itself was wrong (unknown flag, missing argument).
pub const USAGE: u8 = 64;
/// berth hit a bug (a panic); please report it.
pub const BUG: u8 = 101;
