//! The `berth endpoints --json` document: the OpenAI-compatible base URL of each ready model.

use schemars::JsonSchema;
use serde::Serialize;

/// One ready model's endpoint. Fields are in alphabetical order, the order the document has
/// always had.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Endpoint {
    /// The deployment's address, `model.ID@HOST`.
    pub address: String,
    pub host: String,
    /// The model id.
    pub model: String,
    /// The base URL, `http://ADDRESS:PORT/v1`.
    pub url: String,
}
