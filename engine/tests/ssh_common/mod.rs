//! The harness of the engine's SSH end-to-end tests: one fleet of real OpenSSH hosts per test
//! binary (berth-test-support's testbed from `testdata/fleet/fleet`, under a prefix and subnet
//! of its own, torn down when the binary exits, pass or fail), configs that point berth at
//! those hosts, and the real `berth` binary run as a user runs it (through `common`'s
//! [`Workdir`]). The fleet looks at the hosts through SSH with its own key (what runs in a
//! host's network namespace, its deployment records, its loopback ports through a
//! `direct-tcpip` tunnel). Real sshd, real processes, never mocks. It needs root.

#![allow(dead_code)] // each test binary uses a different part of it

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use berth_test_support::fleet::FleetSpace;
pub use berth_test_support::fleet::{Fleet, MODELS_DIR, RUN_DIR};
use serde_json::Value;

use crate::common::Workdir;
#[allow(unused_imports)] // not every test binary that has this module asks for it
pub use crate::common::wait_until;

// --- the fleet ---------------------------------------------------------------------------------

/// This test binary's fleet of `hosts` hosts in the engine's space (apart from the providers'
/// tests), brought up on first use. `tag` (a lowercase letter) and the process id make its
/// names and subnet unique.
pub fn shared_fleet(tag: char, hosts: usize) -> Arc<Fleet> {
    Fleet::shared(&FleetSpace::ENGINE, tag, hosts)
}

/// The `berth-model-server` stand-in, built once per test process. Fleet hosts share this
/// machine's file system (all but /srv/berth and root's home), so configs name it by its
/// absolute path.
fn model_server() -> PathBuf {
    berth_test_support::model_server()
}

// --- configs -----------------------------------------------------------------------------------

/// One `host` block of a test config.
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub id: String,
    pub address: String,
    pub user: String,
    pub key_path: PathBuf,
    /// `None` leaves known_hosts out (for a pinned `host_key`).
    pub known_hosts: Option<PathBuf>,
    pub host_key: Option<String>,
    pub connect_timeout_sec: u64,
}

impl HostSpec {
    /// Fleet host `k` under the id `hK`, reached with the fleet's key and known_hosts.
    pub fn fleet(fleet: &Fleet, k: usize) -> HostSpec {
        HostSpec {
            id: format!("h{k}"),
            address: fleet.address(k),
            user: "root".to_string(),
            key_path: fleet.key(),
            known_hosts: Some(fleet.known_hosts()),
            host_key: None,
            connect_timeout_sec: 5,
        }
    }

    pub fn id(mut self, id: &str) -> HostSpec {
        self.id = id.to_string();
        self
    }

    /// The `host` block (its backends: `cpu`).
    pub fn hcl(&self) -> String {
        let mut out = format!("host \"{}\" {{\n  connection {{\n", self.id);
        let _ = writeln!(out, "    host = \"{}\"", self.address);
        let _ = writeln!(out, "    user = \"{}\"", self.user);
        let _ = writeln!(out, "    key_path = \"{}\"", self.key_path.display());
        if let Some(k) = &self.known_hosts {
            let _ = writeln!(out, "    known_hosts = \"{}\"", k.display());
        }
        if let Some(k) = &self.host_key {
            let _ = writeln!(out, "    host_key = \"{k}\"");
        }
        let _ = writeln!(
            out,
            "    connect_timeout_sec = {}\n  }}",
            self.connect_timeout_sec
        );
        out.push_str("  capabilities {\n    backends = [\"cpu\"]\n  }\n");
        let _ = writeln!(out, "  run_dir = \"{RUN_DIR}\"\n}}\n");
        out
    }
}

/// One `model` block: the stand-in on `port` with extra `flags`, on every host its
/// `host_policy` names.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub id: String,
    pub port: u16,
    pub flags: String,
    /// Host ids or globs (`host_policy.hosts`).
    pub hosts: Vec<String>,
    pub replicas: usize,
    pub probe_interval_ms: u64,
    pub probe_timeout_sec: u64,
    /// The model group, and whether this member is its default.
    pub group: Option<(String, bool)>,
    /// The server binary on the host; `None`: the stand-in.
    pub server: Option<String>,
}

impl ModelSpec {
    /// A model on `replicas` of the hosts matching `hosts`.
    pub fn new(id: &str, port: u16, flags: &str, hosts: &[&str], replicas: usize) -> ModelSpec {
        ModelSpec {
            id: id.to_string(),
            port,
            flags: flags.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            replicas,
            probe_interval_ms: 200,
            probe_timeout_sec: 60,
            group: None,
            server: None,
        }
    }

    /// The same model started through `path` on the host (which execs a server) instead of
    /// the stand-in itself.
    pub fn server(mut self, path: &str) -> ModelSpec {
        self.server = Some(path.to_string());
        self
    }

    /// The same model as a member of `group` (its default when `default`).
    pub fn group(mut self, group: &str, default: bool) -> ModelSpec {
        self.group = Some((group.to_string(), default));
        self
    }

    /// The same model with another probe timeout.
    pub fn probe_timeout(mut self, secs: u64) -> ModelSpec {
        self.probe_timeout_sec = secs;
        self
    }

    fn hcl(&self) -> String {
        let hosts: Vec<String> = self.hosts.iter().map(|h| format!("\"{h}\"")).collect();
        format!(
            r#"model "{id}" {{
  source   = "{MODELS_DIR}/{id}.gguf"
  size_gib = 0.1
  host_policy {{
    hosts    = [{hosts}]
    replicas = {replicas}
  }}
  runtime_defaults {{
    port = {port}
  }}
  launch {{
    start_cmd         = "{server} --port {{port}} --model {{model}}{flags}"
    probe_http        = "/v1/models"
    probe_interval_ms = {interval}
    probe_timeout_sec = {timeout}
  }}{group}
}}

"#,
            id = self.id,
            hosts = hosts.join(", "),
            replicas = self.replicas,
            port = self.port,
            server = self
                .server
                .clone()
                .unwrap_or_else(|| model_server().display().to_string()),
            flags = if self.flags.is_empty() {
                String::new()
            } else {
                format!(" {}", self.flags)
            },
            interval = self.probe_interval_ms,
            timeout = self.probe_timeout_sec,
            group = match &self.group {
                Some((g, true)) => format!("\n  group   = \"{g}\"\n  default = true"),
                Some((g, false)) => format!("\n  group   = \"{g}\""),
                None => String::new(),
            },
        )
    }
}

/// The backend every test config shares: plain processes, checked by a `verify_cmd` that
/// looks for the stand-in (so apply runs a command on each host before starting models).
fn backend_hcl() -> String {
    format!(
        "backend \"cpu\" {{\n  runtime    = \"process\"\n  verify_cmd = \"test -x {}\"\n}}\n\n",
        model_server().display()
    )
}

/// One config directory with its own state, and the berth commands run against it (those of
/// its [`Workdir`]).
pub struct Project {
    work: Workdir,
}

impl std::ops::Deref for Project {
    type Target = Workdir;

    fn deref(&self) -> &Workdir {
        &self.work
    }
}

impl Project {
    /// A config dir holding `hosts`, the shared backend and `models`.
    pub fn new(hosts: &[HostSpec], models: &[ModelSpec], parallelism: usize) -> Project {
        let project = Project {
            work: Workdir::new("berth-ssh-e2e-", false),
        };
        project.write(hosts, models, parallelism);
        project
    }

    /// Rewrites the config.
    pub fn write(&self, hosts: &[HostSpec], models: &[ModelSpec], parallelism: usize) {
        let mut text = format!(
            "settings {{\n  state_dir   = \".berth\"\n  parallelism = {parallelism}\n}}\n\n"
        );
        for h in hosts {
            text.push_str(&h.hcl());
        }
        text.push_str(&backend_hcl());
        for m in models {
            text.push_str(&m.hcl());
        }
        std::fs::write(self.dir().join("main.hcl"), text).expect("main.hcl");
    }

    /// Address -> status object (`{"state": "ready"}`, `{"state": "failed", "step", "reason"}`).
    pub fn statuses(&self) -> std::collections::BTreeMap<String, Value> {
        self.state_list()
            .into_iter()
            .map(|r| {
                (
                    r["address"].as_str().unwrap_or_default().to_string(),
                    r["status"].clone(),
                )
            })
            .collect()
    }
}

/// Checks that must all be reported, not just the first: a test notes each broken promise and
/// fails at its end with the whole list, so that one bug does not hide the behaviour after it.
#[derive(Debug, Default)]
pub struct Findings(Vec<String>);

impl Findings {
    /// Notes `message` unless `ok`.
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            let message = message();
            eprintln!("FINDING: {message}");
            self.0.push(message);
        }
    }

    /// Panics listing every finding.
    #[track_caller]
    pub fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} broken promise(s):\n\n{}",
            self.0.len(),
            self.0.join("\n\n")
        );
    }
}
