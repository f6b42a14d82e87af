//! The typed config: what `settings`, `variable`, `host`, `backend` and `model` blocks mean once
//! decoded and evaluated. Plain data with spans; decoding lives in `decode`, checks in `validate`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::source::{Sources, Span, Spanned};
use super::template::Template;

/// A whole config: every `*.hcl` file of one directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config directory.
    pub dir: PathBuf,
    pub sources: Sources,
    pub settings: Settings,
    pub variables: Vec<Variable>,
    pub hosts: Vec<Host>,
    pub backends: Vec<Backend>,
    pub models: Vec<Model>,
    /// Id -> position in `hosts`, `backends` and `models`: lookups by id are hot in placement
    /// and planning of large fleets.
    pub(crate) index: Index,
    /// The text of every sensitive variable's value (strings, numbers and bools, and the
    /// scalars inside lists and objects).
    pub(crate) secret_texts: Vec<String>,
}

/// Positions of hosts, backends and models by id.
#[derive(Debug, Clone, Default)]
pub(crate) struct Index {
    hosts: HashMap<String, usize>,
    backends: HashMap<String, usize>,
    models: HashMap<String, usize>,
}

impl Index {
    pub(crate) fn build(hosts: &[Host], backends: &[Backend], models: &[Model]) -> Index {
        Index {
            hosts: hosts
                .iter()
                .enumerate()
                .map(|(i, h)| (h.id.value.clone(), i))
                .collect(),
            backends: backends
                .iter()
                .enumerate()
                .map(|(i, b)| (b.id.value.clone(), i))
                .collect(),
            models: models
                .iter()
                .enumerate()
                .map(|(i, m)| (m.id.value.clone(), i))
                .collect(),
        }
    }
}

impl Config {
    pub fn host(&self, id: &str) -> Option<&Host> {
        self.index.hosts.get(id).map(|&i| &self.hosts[i])
    }

    pub fn backend(&self, id: &str) -> Option<&Backend> {
        self.index.backends.get(id).map(|&i| &self.backends[i])
    }

    pub fn model(&self, id: &str) -> Option<&Model> {
        self.index.models.get(id).map(|&i| &self.models[i])
    }

    /// Values of sensitive variables, so text that comes back from hosts (log tails, stderr)
    /// can be scrubbed of them. Text berth renders itself tracks sensitivity instead.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.secret_texts.iter().map(String::as_str)
    }
}

/// The `settings` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Where the state store and its lock live (relative to the config directory), from
    /// `state { dir }` or `state_dir`.
    pub state_dir: PathBuf,
    /// What keeps the state, from `state { backend }`.
    pub state_backend: StateBackendKind,
    /// The postgres workspace, from `state { workspace }`.
    pub state_workspace: Option<String>,
    /// The postgres connection URL, from `state { url }` (a sensitive variable when it holds a
    /// password); `BERTH_PG_URL` wins over it.
    pub state_url: Option<SecretText>,
    /// Resource operations in flight at once.
    pub parallelism: usize,
    /// How `berth watch` heals, from `watch { ... }`.
    pub watch: WatchSettings,
}

/// `settings { watch { ... } }`: flapping protection of `berth watch --heal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    /// Heals of one resource within `heal_window` after which it is left failed.
    pub max_heals: u32,
    /// The window heals are counted in.
    pub heal_window: std::time::Duration,
    /// The wait before a resource's second heal; it doubles with each heal after that.
    pub heal_backoff: std::time::Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            max_heals: 3,
            heal_window: std::time::Duration::from_secs(600),
            heal_backoff: std::time::Duration::from_secs(10),
        }
    }
}

/// A text that may hold credentials: never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Settings {
    pub const DEFAULT_STATE_DIR: &str = ".berth";
    pub const DEFAULT_PARALLELISM: usize = 10;

    /// The state these settings name, its directory taken relative to `config_dir`.
    pub fn state(&self, config_dir: &Path) -> StateSettings {
        StateSettings {
            backend: self.state_backend,
            dir: config_dir.join(&self.state_dir),
            workspace: self.state_workspace.clone(),
            url: self.state_url.clone(),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            state_dir: Settings::DEFAULT_STATE_DIR.into(),
            state_backend: StateBackendKind::default(),
            state_workspace: None,
            state_url: None,
            parallelism: Settings::DEFAULT_PARALLELISM,
            watch: WatchSettings::default(),
        }
    }
}

/// The storage a state lives in, as named by `state { backend = "..." }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateBackendKind {
    /// The embedded sled store in the state directory.
    #[default]
    Sled,
    /// A workspace in a PostgreSQL database, shared by a team and its CI.
    Postgres,
}

impl StateBackendKind {
    /// The names `backend` accepts today.
    pub const AVAILABLE: &[&str] = &["sled", "postgres"];
    /// Names of backends that are planned but not built into this berth.
    pub const NOT_YET: &[&str] = &[];

    /// The backend called `name`, if this berth has it.
    pub fn from_name(name: &str) -> Option<StateBackendKind> {
        match name {
            "sled" => Some(StateBackendKind::Sled),
            "postgres" => Some(StateBackendKind::Postgres),
            _ => None,
        }
    }
}

/// Which state a command works on: its backend and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSettings {
    pub backend: StateBackendKind,
    /// The state directory, already joined to the config directory (sled's store; the sled
    /// state `state migrate` copies from).
    pub dir: PathBuf,
    /// The postgres workspace.
    pub workspace: Option<String>,
    /// The postgres URL given in the config.
    pub url: Option<SecretText>,
}

/// A `variable` block and the value it ended up with.
#[derive(Debug, Clone)]
pub struct Variable {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub sensitive: bool,
    pub default: Option<hcl::Value>,
    /// The default is written but could not be evaluated (already reported).
    pub default_failed: bool,
    /// The value after `--var`, `--var-file`, `BERTH_VAR_*` and the default.
    pub value: Option<hcl::Value>,
    /// Where the value came from, for `berth validate` and error messages.
    pub origin: VarOrigin,
}

/// Where a variable's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarOrigin {
    CommandLine,
    VarFile,
    Environment,
    Default,
    Unset,
}

/// A string that may hold a secret.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MaybeSecret {
    pub value: String,
    /// Derived from a `sensitive` variable: never shown, stored or logged in plaintext.
    pub sensitive: bool,
}

/// The placeholder shown instead of a sensitive value.
pub const REDACTED: &str = "(sensitive)";

impl MaybeSecret {
    /// The value as it may be shown.
    pub fn display(&self) -> &str {
        if self.sensitive {
            REDACTED
        } else {
            &self.value
        }
    }
}

/// Text assembled from pieces, some of which came from sensitive values. The byte ranges of
/// those pieces are kept with the text, so the text goes to hosts as it is and is shown with
/// each range replaced by `(sensitive)`: berth never has to find a secret in text it built.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Redactable {
    text: String,
    /// Sorted, disjoint and never adjacent (adjacent pieces merge into one range).
    sensitive: Vec<Range<usize>>,
}

impl Redactable {
    /// Text with no sensitive part.
    pub fn plain(text: impl Into<String>) -> Redactable {
        Redactable {
            text: text.into(),
            sensitive: Vec::new(),
        }
    }

    /// Text that is sensitive as a whole.
    pub fn secret(text: impl Into<String>) -> Redactable {
        let text: String = text.into();
        let whole = 0..text.len();
        Redactable {
            text,
            sensitive: Vec::from([whole]),
        }
    }

    /// Appends `piece`, marking it sensitive when `sensitive` is set.
    pub fn push(&mut self, piece: &str, sensitive: bool) {
        let start = self.text.len();
        self.text.push_str(piece);
        if !sensitive {
            return;
        }
        match self.sensitive.last_mut() {
            Some(last) if last.end == start => last.end = self.text.len(),
            _ => self.sensitive.push(start..self.text.len()),
        }
    }

    /// Appends another redactable text, keeping its sensitive ranges.
    pub fn append(&mut self, other: &Redactable) {
        let mut at = 0;
        for range in &other.sensitive {
            self.push(&other.text[at..range.start], false);
            self.push(&other.text[range.clone()], true);
            at = range.end;
        }
        self.push(&other.text[at..], false);
    }

    /// The same text, sensitive as a whole.
    pub fn into_secret(self) -> Redactable {
        Redactable::secret(self.text)
    }

    /// The real text: for the host only, never for output, state or logs.
    pub fn reveal(&self) -> &str {
        &self.text
    }

    /// Whether any part came from a sensitive value.
    pub fn is_sensitive(&self) -> bool {
        !self.sensitive.is_empty()
    }

    /// The text as it may be shown: every sensitive range replaced by `(sensitive)`.
    pub fn display(&self) -> String {
        let mut out = String::with_capacity(self.text.len());
        let mut at = 0;
        for range in &self.sensitive {
            out.push_str(&self.text[at..range.start]);
            out.push_str(REDACTED);
            at = range.end;
        }
        out.push_str(&self.text[at..]);
        out
    }
}

/// A `host` block.
#[derive(Debug, Clone)]
pub struct Host {
    pub id: Spanned<String>,
    pub span: Span,
    pub connection: Connection,
    pub capabilities: Capabilities,
    pub labels: BTreeMap<String, String>,
    /// Pid files, logs and metadata of the process runtime; the host lock.
    pub run_dir: String,
    pub enabled: bool,
    /// Models started at once on this host, each counted from its start until it is ready or
    /// failed (GPU hosts that cannot load several models together); `None`: no limit.
    pub max_parallel_starts: Option<usize>,
}

/// How berth reaches a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Ssh,
    Local,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Ssh => "ssh",
            TransportKind::Local => "local",
        }
    }
}

/// A host's `connection` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub transport: TransportKind,
    pub host: Option<String>,
    pub port: u16,
    pub user: Option<String>,
    pub key_path: Option<String>,
    pub host_key: Option<String>,
    pub known_hosts: Option<String>,
    pub connect_timeout_sec: u64,
}

impl Connection {
    pub const DEFAULT_PORT: u16 = 22;
    pub const DEFAULT_CONNECT_TIMEOUT_SEC: u64 = 10;

    /// A local connection (no `connection` block on a local host).
    pub fn local() -> Self {
        Connection {
            transport: TransportKind::Local,
            host: None,
            port: Self::DEFAULT_PORT,
            user: None,
            key_path: None,
            host_key: None,
            known_hosts: None,
            connect_timeout_sec: Self::DEFAULT_CONNECT_TIMEOUT_SEC,
        }
    }
}

/// A host's `capabilities` block.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Capabilities {
    /// Backend ids this host can run.
    pub backends: Vec<Spanned<String>>,
    pub gpus: u32,
    pub vram_gib: Option<f64>,
}

/// How a backend runs services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuntimeKind {
    Process,
    Systemd,
    Docker,
    Podman,
}

impl RuntimeKind {
    pub const ALL: [&str; 4] = ["process", "systemd", "docker", "podman"];

    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Systemd => "systemd",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Podman => "podman",
        }
    }

    pub fn is_container(self) -> bool {
        matches!(self, RuntimeKind::Docker | RuntimeKind::Podman)
    }
}

/// A `backend` block.
#[derive(Debug, Clone)]
pub struct Backend {
    pub id: Spanned<String>,
    pub span: Span,
    pub runtime: RuntimeKind,
    /// Host ids or globs this backend may run on; empty means every host.
    pub host_filters: Option<Spanned<Vec<Spanned<String>>>>,
    pub verify_cmd: Option<Command>,
    pub env: BTreeMap<String, MaybeSecret>,
    /// Arguments for `{backend_args}`, each sensitive on its own.
    pub args: Vec<MaybeSecret>,
    pub container: Option<Container>,
    pub systemd: Option<SystemdUnit>,
}

/// A backend's `systemd` block (systemd only).
#[derive(Debug, Clone, PartialEq)]
pub struct SystemdUnit {
    pub span: Span,
    /// `scope = "user"`: units of the login's `--user` manager rather than the system's.
    pub user: bool,
    /// Extra `[Service]` options (`options = { LimitMEMLOCK = "infinity" }`), in key order.
    pub options: BTreeMap<String, String>,
}

/// A backend's `container` block (docker and podman).
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    pub span: Span,
    pub image: Option<String>,
    pub image_archive: Option<String>,
    pub gpus: Option<String>,
    pub volumes: Vec<String>,
    /// The `--network` value; without it and without `ports`, the host's network.
    pub network: Option<String>,
    /// `--publish` values.
    pub ports: Vec<String>,
    /// Arguments added to `run` as written.
    pub extra_args: Vec<String>,
}

/// A `*_cmd` attribute: its template and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub template: Template,
    /// The attribute value's span.
    pub span: Span,
    /// The command mentions a sensitive variable: after HCL evaluation nobody can tell where
    /// the value went, so the whole command is sensitive.
    pub sensitive: bool,
}

impl Command {
    /// The template as it may be shown.
    pub fn display(&self) -> &str {
        if self.sensitive {
            REDACTED
        } else {
            self.template.raw()
        }
    }
}

/// A `model` block.
#[derive(Debug, Clone)]
pub struct Model {
    pub id: Spanned<String>,
    pub span: Span,
    pub enabled: bool,
    pub source: MaybeSecret,
    pub source_span: Span,
    pub size_gib: Option<f64>,
    pub host_policy: HostPolicy,
    pub backend_policy: BackendPolicy,
    pub port: u16,
    /// Span of `runtime_defaults.port`, or of the block when it was defaulted.
    pub port_span: Span,
    pub launch: Launch,
    pub env: BTreeMap<String, MaybeSecret>,
    pub group: Option<Spanned<String>>,
    pub default: Option<Spanned<bool>>,
    /// Ids of models this one depends on.
    pub depends_on: Vec<Spanned<String>>,
}

impl Model {
    pub const DEFAULT_PORT: u16 = 8080;
}

/// A model's `host_policy` block.
#[derive(Debug, Clone, PartialEq)]
pub struct HostPolicy {
    /// Host ids or globs; `None` means every host.
    pub hosts: Option<Spanned<Vec<Spanned<String>>>>,
    pub labels: Option<Spanned<BTreeMap<String, String>>>,
    pub replicas: usize,
    pub span: Span,
}

/// A model's `backend_policy` block.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendPolicy {
    /// Backend ids in order of preference; empty means every backend in declaration order.
    pub prefer: Vec<Spanned<String>>,
}

/// A model's `launch` block.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    pub start_cmd: Command,
    pub probe: Probe,
    pub probe_timeout_sec: Option<u64>,
    pub probe_interval_ms: Option<u64>,
}

/// How readiness is checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// Exit 0 means ready.
    Cmd(Command),
    /// HTTP GET of this path on the model's port: 200 ready, 503 loading. When a model sets
    /// neither probe, `GET /health`.
    Http(String),
}

impl Probe {
    pub const DEFAULT_HTTP_PATH: &str = "/health";
}
