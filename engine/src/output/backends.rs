//! The `berth backends --json` and `berth backends show ID --json` documents.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::config;
use crate::workspace::Workspace;

/// One backend. Fields are in alphabetical order, the order the document has always had.
/// Sensitive values in `args`, `env` and `verify_cmd` read `(sensitive)`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Backend {
    pub args: Vec<String>,
    pub container: Option<Container>,
    pub env: BTreeMap<String, String>,
    /// The `host_filters` patterns (`null`: every host).
    pub host_filters: Option<Vec<String>>,
    pub id: String,
    /// Addresses of the deployments that use the backend.
    pub placements: Vec<String>,
    /// `process`, `systemd`, `docker` or `podman`.
    pub runtime: String,
    /// A systemd backend's `systemd` block.
    pub systemd: Option<Systemd>,
    pub verify_cmd: Option<String>,
    /// The same deployments with their host, model and port, for the text view.
    #[serde(skip)]
    pub placed: Vec<Placed>,
}

/// A container backend's settings.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Container {
    /// Arguments added to `run` as written.
    pub extra_args: Vec<String>,
    pub gpus: Option<String>,
    pub image: Option<String>,
    pub image_archive: Option<String>,
    /// The `--network` value (`null`: the host's network, unless `ports` are published).
    pub network: Option<String>,
    /// The `--publish` values.
    pub ports: Vec<String>,
    pub volumes: Vec<String>,
}

/// A systemd backend's unit settings.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Systemd {
    /// Extra `[Service]` options, by key.
    pub options: BTreeMap<String, String>,
    /// `system` or `user`.
    pub scope: String,
}

/// A deployment on a backend.
#[derive(Debug)]
pub struct Placed {
    pub host: String,
    pub model: String,
    pub port: u16,
}

impl Backend {
    /// The document of `b` in the workspace `ws`.
    pub fn new(ws: &Workspace, b: &config::Backend) -> Backend {
        let placements = || ws.placements.iter().filter(|p| p.backend == b.id.value);
        Backend {
            args: b.args.iter().map(|a| a.display().to_string()).collect(),
            container: b.container.as_ref().map(|c| Container {
                extra_args: c.extra_args.clone(),
                gpus: c.gpus.clone(),
                image: c.image.clone(),
                image_archive: c.image_archive.clone(),
                network: c.network.clone(),
                ports: c.ports.clone(),
                volumes: c.volumes.clone(),
            }),
            env: b
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.display().to_string()))
                .collect(),
            host_filters: b
                .host_filters
                .as_ref()
                .map(|f| f.value.iter().map(|s| s.value.clone()).collect()),
            id: b.id.value.clone(),
            placements: placements().map(|p| p.address().to_string()).collect(),
            runtime: b.runtime.as_str().to_string(),
            systemd: b.systemd.as_ref().map(|s| Systemd {
                options: s.options.clone(),
                scope: if s.user { "user" } else { "system" }.to_string(),
            }),
            verify_cmd: b.verify_cmd.as_ref().map(|c| c.display().to_string()),
            placed: placements()
                .map(|p| Placed {
                    host: p.host.clone(),
                    model: p.model.clone(),
                    port: p.port,
                })
                .collect(),
        }
    }
}
