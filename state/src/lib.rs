//! berth-state: the state store, its lock and the saved-plan file format.
