//! The `berth endpoints --json` document: the OpenAI-compatible base URL of each model that
//! answers ready now, the ids it serves, and whether the URL can be reached from elsewhere.

use schemars::JsonSchema;
use serde::Serialize;

/// One ready model's endpoint. Fields are in alphabetical order, the order the document has
/// always had.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Endpoint {
    /// The deployment's address, `model.ID@HOST`.
    pub address: String,
    pub host: String,
    /// How to make the URL reachable, when it is not.
    pub hint: Option<String>,
    /// The server on a remote host listens on 127.0.0.1 only: the URL works on that host
    /// alone (or through an SSH tunnel).
    pub loopback_only: bool,
    /// The model id in the config.
    pub model: String,
    /// The model ids the server lists at `/v1/models` (what clients pass as `model`).
    pub serves: Vec<String>,
    /// The base URL, `http://ADDRESS:PORT/v1`.
    pub url: String,
}
