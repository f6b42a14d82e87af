//! The `berth hosts --json` and `berth hosts show ID --json` documents: a host as the config
//! resolves it, with the models placed on it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use crate::config::{self, TransportKind};
use crate::workspace::Workspace;

/// One host. Fields are in alphabetical order, the order the document has always had.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Host {
    /// The SSH address (`null` for a local host).
    pub address: Option<String>,
    /// Backend ids the host can run.
    pub backends: Vec<String>,
    pub enabled: bool,
    pub gpus: u32,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    /// The models placed on the host, running or standby.
    pub placements: Vec<Placement>,
    /// The SSH port (22 unless set; also given for a local host).
    pub port: u16,
    pub run_dir: String,
    /// `local` or `ssh`.
    pub transport: String,
    /// The SSH user (`null`: the current user).
    pub user: Option<String>,
    pub vram_gib: Option<f64>,
    /// How berth logs in, for the text view; not part of the document.
    #[serde(skip)]
    pub ssh: Option<SshLogin>,
}

/// One model placed on a host.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Placement {
    /// `false`: a standby member of its group.
    pub active: bool,
    /// The deployment's address, `model.ID@HOST`.
    pub address: String,
    pub backend: String,
    pub model: String,
    pub port: u16,
    /// What the state records for it (`hosts show` only): `ready`, or `failed at STEP`;
    /// `null` when it is not in the state (never applied, or destroyed).
    #[serde(skip_serializing_if = "Recorded::is_unread")]
    pub recorded: Recorded,
}

/// What the state says of a placement, when the command read the state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Recorded {
    /// The state was not read (`berth hosts`).
    #[default]
    Unread,
    /// The state's record, or `null` when there is none.
    Read(Option<String>),
}

impl Recorded {
    fn is_unread(&self) -> bool {
        *self == Recorded::Unread
    }
}

/// An SSH host's login settings, shown by `hosts show`.
#[derive(Debug)]
pub struct SshLogin {
    /// The key file (`None`: ssh-agent).
    pub key_path: Option<String>,
    /// Whether the host key is pinned in the config.
    pub host_key_pinned: bool,
    pub known_hosts: Option<String>,
    pub connect_timeout_sec: u64,
}

impl Host {
    /// The document of `host` in the workspace `ws`.
    pub fn new(ws: &Workspace, host: &config::Host) -> Host {
        let c = &host.connection;
        Host {
            address: c.host.clone(),
            backends: host
                .capabilities
                .backends
                .iter()
                .map(|b| b.value.clone())
                .collect(),
            enabled: host.enabled,
            gpus: host.capabilities.gpus,
            id: host.id.value.clone(),
            labels: host.labels.clone(),
            placements: ws
                .placements_on(&host.id.value)
                .map(|p| Placement {
                    active: p.active,
                    address: p.address().to_string(),
                    backend: p.backend.clone(),
                    model: p.model.clone(),
                    port: p.port,
                    recorded: Recorded::Unread,
                })
                .collect(),
            port: c.port,
            run_dir: host.run_dir.clone(),
            transport: c.transport.as_str().to_string(),
            user: c.user.clone(),
            vram_gib: host.capabilities.vram_gib,
            ssh: (c.transport == TransportKind::Ssh).then(|| SshLogin {
                key_path: c.key_path.clone(),
                host_key_pinned: c.host_key.is_some(),
                known_hosts: c.known_hosts.clone(),
                connect_timeout_sec: c.connect_timeout_sec,
            }),
        }
    }

    /// Where berth reaches the host: `local`, or `user@address:port` for SSH (the port only
    /// when it is not 22).
    pub fn login(&self) -> String {
        if self.ssh.is_none() {
            return "local".into();
        }
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let port = if self.port == config::Connection::DEFAULT_PORT {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("{user}{}{port}", self.address.as_deref().unwrap_or("?"))
    }
}
