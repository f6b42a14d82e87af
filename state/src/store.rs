//! The `StateStore` seam between the engine and the storage behind it; holds no implementation.

use crate::error::Result;
use crate::record::{HistoryEntry, Intent, Meta, ResourceRecord, Selection};

/// Where berth keeps what it applied.
///
/// Every method takes `&self` so one store can be shared (`Arc<dyn StateStore>`) by the tasks of
/// an apply. Implementations bump `Meta::serial` atomically with each change of resources or
/// selections and make every change durable before returning, so a crash loses at most the step
/// in flight and a saved plan can tell that the state moved on.
pub trait StateStore: Send + Sync {
    /// Lineage, serial, format version and HMAC key of this state.
    fn meta(&self) -> Result<Meta>;

    /// Every resource record, sorted by address.
    fn resources(&self) -> Result<Vec<ResourceRecord>>;

    /// The record at `address`, if any.
    fn resource(&self, address: &str) -> Result<Option<ResourceRecord>>;

    /// Writes (or overwrites) the record at `record.address` and bumps the serial.
    fn put_resource(&self, record: &ResourceRecord) -> Result<()>;

    /// Removes the record at `address`; bumps the serial and returns true if there was one.
    fn remove_resource(&self, address: &str) -> Result<bool>;

    /// Records that a mutation of `intent.address` is starting (replaces an older intent).
    fn put_intent(&self, intent: &Intent) -> Result<()>;

    /// Clears the intent at `address`; clearing a missing intent is not an error.
    fn clear_intent(&self, address: &str) -> Result<()>;

    /// Intents left behind, sorted by address: changes that may have been half done.
    fn intents(&self) -> Result<Vec<Intent>>;

    /// Every stored selection, sorted by group then host.
    fn selections(&self) -> Result<Vec<Selection>>;

    /// Stores the selection for (`group`, `host`), replacing an older one; bumps the serial.
    fn put_selection(&self, selection: &Selection) -> Result<()>;

    /// Removes the selection for (`group`, `host`); bumps the serial and returns true if there was one.
    fn remove_selection(&self, group: &str, host: &str) -> Result<bool>;

    /// Every history entry, oldest first.
    fn history(&self) -> Result<Vec<HistoryEntry>>;

    /// Appends one history entry.
    fn append_history(&self, entry: &HistoryEntry) -> Result<()>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<()>;
}
