//! One module per command: each turns parsed arguments into calls on the engine and prints the
//! result through `cli::ui`.

pub mod apply;
pub mod doctor;
pub mod drift;
pub mod endpoints;
pub mod fmt;
pub mod graph;
pub mod inspect;
pub mod plan;
pub mod state;
pub mod validate;
