//! The `berth models --json` and `berth models show ID --json` documents.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::config;
use crate::launch;
use crate::workspace::Workspace;

/// One model. Fields are in alphabetical order, the order the document has always had.
/// Sensitive values in `source`, `env` and `start_cmd` read `(sensitive)`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Model {
    /// Whether the model is its group's default (`null`: not set).
    pub default: Option<bool>,
    /// Addresses of the models it depends on, `model.ID`.
    pub depends_on: Vec<String>,
    pub enabled: bool,
    pub env: BTreeMap<String, String>,
    pub group: Option<String>,
    pub id: String,
    /// Where the model is deployed, running or standby.
    pub placements: Vec<Placement>,
    pub port: u16,
    pub probe: Probe,
    pub size_gib: Option<f64>,
    pub source: String,
    /// The `start_cmd` template as written.
    pub start_cmd: String,
}

/// How readiness is checked.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A command; exit 0 means ready.
    Cmd(String),
    /// The path of an HTTP GET on the model's port.
    Http(String),
}

/// One deployment of a model.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Placement {
    /// `false`: a standby member of its group.
    pub active: bool,
    /// The deployment's address, `model.ID@HOST`.
    pub address: String,
    pub backend: String,
    pub host: String,
    pub port: u16,
    /// The rendered start command and probe, or why they cannot be rendered; for the text view.
    #[serde(skip)]
    pub launch: Result<Launch, String>,
}

/// A deployment's rendered start command and probe, secrets redacted.
#[derive(Debug)]
pub struct Launch {
    pub start: String,
    pub probe: String,
}

impl Model {
    /// The document of `m` in the workspace `ws`.
    pub fn new(ws: &Workspace, m: &config::Model) -> Model {
        Model {
            default: m.default.as_ref().map(|d| d.value),
            depends_on: m
                .depends_on
                .iter()
                .map(|d| format!("model.{}", d.value))
                .collect(),
            enabled: m.enabled,
            env: m
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.display().to_string()))
                .collect(),
            group: m.group.as_ref().map(|g| g.value.clone()),
            id: m.id.value.clone(),
            placements: ws
                .placements_of(&m.id.value)
                .map(|p| Placement {
                    active: p.active,
                    address: p.address().to_string(),
                    backend: p.backend.clone(),
                    host: p.host.clone(),
                    port: p.port,
                    launch: launch::render(&ws.config, p)
                        .map(|r| Launch {
                            start: r.command.display(),
                            probe: r.probe.display().to_string(),
                        })
                        .map_err(|e| e.to_string()),
                })
                .collect(),
            port: m.port,
            probe: match &m.launch.probe {
                config::Probe::Cmd(c) => Probe::Cmd(c.display().to_string()),
                config::Probe::Http(path) => Probe::Http(path.clone()),
            },
            size_gib: m.size_gib,
            source: m.source.display().to_string(),
            start_cmd: m.launch.start_cmd.display().to_string(),
        }
    }

    /// Whether the model is its group's default.
    pub fn is_default(&self) -> bool {
        self.default == Some(true)
    }
}
