//! berth-state: the state store, its lock and the saved-plan file format.
//!
//! Only declares the modules and re-exports their public items.

mod error;
mod ids;
mod lock;
mod plan_file;
mod private_fs;
mod record;
mod sled_store;
mod store;

pub use error::{Access, Result, StateError};
pub use lock::{LockInfo, LockOptions, StateLock, force_unlock, read_lock_info};
pub use plan_file::{PLAN_FORMAT_VERSION, PlanFile};
pub use record::{
    HistoryChange, HistoryEntry, Intent, Meta, ResourceKind, ResourceRecord, ResourceStatus,
    Selection,
};
pub use sled_store::{STATE_FORMAT_VERSION, SledStore};
pub use store::StateStore;
