//! The config language: loading `*.hcl` files, the typed schema, validation and formatting.

mod decode;
mod diagnostic;
pub mod fmt;
mod functions;
pub mod limits;
mod load;
mod schema;
mod source;
pub mod template;
mod validate;
mod vars;

pub use decode::check_id;
pub use diagnostic::{Code, Finding, FindingJson, Findings, Level, did_you_mean};
pub use functions::NAMES as FUNCTION_NAMES;
pub use load::{Invalid, Loaded, display_name, load, load_texts, state_of};
pub use schema::*;
pub use source::{FileId, SourceFile, Sources, Span, Spanned};
pub use validate::long_start_commands;
pub use vars::{ENV_PREFIX, VarInputs, parse_cli_var};
