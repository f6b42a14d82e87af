//! berth-state: the state behind the `StateBackend` seam (lock + store), its sled and postgres
//! implementations, and the saved-plan file format.
//!
//! Only declares the modules and re-exports their public items.

mod address;
mod backend;
mod error;
mod ids;
mod lock;
mod pg_backend;
mod pg_schema;
mod pg_settings;
mod pg_store;
mod plan_file;
mod private_fs;
mod record;
mod sled_backend;
mod sled_store;
mod snapshot;
mod store;

pub use address::{Address, AddressError, MAX_ID_LEN, Target, is_valid_id};
pub use backend::{InterruptRelease, StateBackend, StateGuard};
pub use error::{Access, Result, StateError};
pub use lock::{CiRun, LockInfo, LockOptions};
pub use pg_backend::PgBackend;
pub use pg_schema::schema_sql;
pub use pg_settings::{PgSettings, PgUrl};
pub use plan_file::{PLAN_FORMAT_VERSION, PlanFile};
pub use record::{
    HistoryChange, HistoryEntry, Intent, Meta, ResourceKind, ResourceRecord, ResourceStatus,
    Selection,
};
pub use sled_backend::SledBackend;
pub use sled_store::STATE_FORMAT_VERSION;
pub use snapshot::Snapshot;
pub use store::StateStore;
