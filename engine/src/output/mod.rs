//! The `--json` documents, one module per document: each is a serde struct deriving
//! `JsonSchema`, built once by its command, serialised for `--json` and rendered for the text
//! view. This module owns the documents' shapes and published schemas; it does no I/O and no
//! rendering to a terminal.

pub mod backends;
pub mod doctor;
pub mod drift;
pub mod endpoints;
pub mod health;
pub mod hosts;
pub mod models;
pub mod select;
pub mod state;
pub mod validate;

use schemars::{Schema, schema_for};
use serde::Serialize;

/// A document as pretty-printed JSON, the form `--json` prints.
pub fn to_json<T: Serialize + ?Sized>(document: &T) -> String {
    serde_json::to_string_pretty(document).expect("documents serialise")
}

/// Every published document: its name (the schema file is `docs/schemas/NAME.schema.json`)
/// and the JSON Schema generated from its struct.
pub fn schemas() -> Vec<(&'static str, Schema)> {
    fn named(name: &'static str, schema: Schema) -> (&'static str, Schema) {
        (name, schema)
    }
    vec![
        named("validate", schema_for!(validate::Report)),
        named("hosts", schema_for!(Vec<hosts::Host>)),
        named("hosts-show", schema_for!(hosts::Host)),
        named("hosts-test", schema_for!(doctor::HostTest)),
        named("hosts-doctor", schema_for!(Vec<doctor::HostDoctor>)),
        named("backends", schema_for!(Vec<backends::Backend>)),
        named("backends-show", schema_for!(backends::Backend)),
        named("models", schema_for!(Vec<models::Model>)),
        named("models-show", schema_for!(models::Model)),
        named("endpoints", schema_for!(Vec<endpoints::Endpoint>)),
        named("state-list", schema_for!(Vec<state::ListItem>)),
        named("state-show", schema_for!(state::Record)),
        named("state-history", schema_for!(Vec<state::HistoryEntry>)),
        named("drift", schema_for!(drift::Report)),
        named("health", schema_for!(health::Report)),
        named("select", schema_for!(select::Report)),
        named("select-status", schema_for!(select::Status)),
    ]
}
