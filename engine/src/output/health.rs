//! The `berth health --json` document: each placed model's live state on its host, what the
//! port scan found that the config does not place, and the hosts that could not be reached.

use schemars::JsonSchema;
use serde::Serialize;

/// What `berth health` found.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Report {
    /// Every host with placed models, in config order.
    pub hosts: Vec<Host>,
    /// Model servers answering on scanned ports the config does not place there: **Loaded
    /// (discovered)**.
    pub discovered: Vec<Discovered>,
    /// What the reader should know about how the check was made.
    pub warnings: Vec<String>,
}

/// One host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Host {
    pub host: String,
    /// False when berth could not connect; its models are then `unknown`.
    pub reachable: bool,
    /// Why the host could not be reached.
    pub error: Option<String>,
    /// The placed models that should run there.
    pub models: Vec<Model>,
    /// The ports scanned for servers the config does not place there.
    pub scanned_ports: Vec<u16>,
}

/// One placed model, probed through the host's transport at its 127.0.0.1 port.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Model {
    /// The deployment's address, `model.ID@HOST`.
    pub address: String,
    /// The model id in the config.
    pub model: String,
    pub port: u16,
    pub state: State,
    /// The HTTP status of the answer that decided the state, when there was one.
    pub http_status: Option<u16>,
    /// What the probe saw: `200 /v1/models`, `connection refused`, `no answer within 3s`.
    pub detail: String,
    /// The model ids the server lists at `/v1/models`.
    pub serves: Vec<String>,
}

/// A model's live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// It answers 200.
    Ready,
    /// It answers 503: still loading.
    Loading,
    /// Nothing answers: the connection is refused or times out.
    Down,
    /// It answers something else (the status is in `http_status`), or the host is unreachable.
    Unknown,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "ready",
            State::Loading => "loading",
            State::Down => "down",
            State::Unknown => "unknown",
        }
    }
}

/// A server on a port the config does not place on that host.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct Discovered {
    pub host: String,
    pub port: u16,
    /// The model ids it lists at `/v1/models`.
    pub models: Vec<String>,
}

impl Report {
    /// True when every placed model answers ready.
    pub fn all_ready(&self) -> bool {
        self.hosts
            .iter()
            .all(|h| h.models.iter().all(|m| m.state == State::Ready))
    }

    /// True when a host could not be reached.
    pub fn any_unreachable(&self) -> bool {
        self.hosts.iter().any(|h| !h.reachable)
    }
}
