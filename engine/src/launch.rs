//! What one placement runs: its start command and probe rendered from the templates (every
//! value shell-quoted, sensitive parts tracked), its environment, its runtime's own part, and
//! the launch record: one table of fields, each declared `replace`, `update` or `display`, from
//! which the fingerprint, the attributes that plans show and state stores, and the planner's
//! replace and update fields all derive. Pure: no I/O.

use std::collections::BTreeMap;

use berth_providers::{ContainerSpec, LaunchSpec, RuntimeSpec, SystemdSpec};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::config::template::{self, Value};
use crate::config::{Backend, Config, MaybeSecret, Probe, REDACTED, Redactable, RuntimeKind};
use crate::placement::Placement;
use berth_state::Address;

/// A placement's launch, ready to hand to a runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub address: Address,
    pub model: String,
    pub host: String,
    pub backend: String,
    pub runtime: RuntimeKind,
    pub run_dir: String,
    pub port: u16,
    pub source: MaybeSecret,
    pub size_gib: Option<f64>,
    /// The start command, every template value quoted.
    pub command: Redactable,
    /// Backend env overlaid by model env.
    pub env: BTreeMap<String, MaybeSecret>,
    pub probe: RenderedProbe,
    pub probe_timeout_sec: Option<u64>,
    pub probe_interval_ms: Option<u64>,
    /// What only the backend's runtime reads (a container's image, a unit's options).
    pub runtime_spec: RuntimeSpec,
}

/// A rendered readiness probe.
#[derive(Debug, Clone, PartialEq)]
pub enum RenderedProbe {
    Cmd(Redactable),
    Http(String),
}

impl RenderedProbe {
    /// How the probe is shown in plans.
    pub fn display(&self) -> String {
        match self {
            RenderedProbe::Cmd(c) => format!("cmd: {}", c.display()),
            RenderedProbe::Http(p) => format!("http: GET {p}"),
        }
    }
}

/// A template that could not be rendered for a placement.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{address}: {field}: {source}")]
pub struct RenderError {
    pub address: Address,
    pub field: &'static str,
    #[source]
    pub source: template::RenderError,
}

/// Renders the launch of `placement`.
pub fn render(config: &Config, placement: &Placement) -> Result<Rendered, RenderError> {
    let model = config
        .model(&placement.model)
        .expect("placement of a known model");
    let host = config
        .host(&placement.host)
        .expect("placement on a known host");
    let backend = config
        .backend(&placement.backend)
        .expect("placement with a known backend");
    let address = placement.address();
    let args = template::quote_args(&backend.args).map_err(|i| RenderError {
        address: address.clone(),
        field: "backend args",
        source: template::RenderError::Nul(format!("backend_args (argument {})", i + 1)),
    })?;
    let backend_env = template::quote_env(&backend.env).map_err(|k| RenderError {
        address: address.clone(),
        field: "backend env",
        source: template::RenderError::Nul(k),
    })?;
    let port = placement.port.to_string();
    let lookup = |name: &str| -> Option<Value> {
        Some(match name {
            "source" => Value::Word(model.source.clone()),
            "port" => Value::plain(port.clone()),
            "host" => Value::plain(host.id.value.clone()),
            "model" => Value::plain(model.id.value.clone()),
            "run_dir" => Value::plain(host.run_dir.clone()),
            "backend_args" => Value::Quoted(args.clone()),
            "backend_env" => Value::Quoted(backend_env.clone()),
            _ => return None,
        })
    };
    let render_cmd =
        |cmd: &crate::config::Command, field: &'static str| -> Result<Redactable, RenderError> {
            render_command(cmd, &lookup).map_err(|source| RenderError {
                address: address.clone(),
                field,
                source,
            })
        };
    let command = render_cmd(&model.launch.start_cmd, "start_cmd")?;
    let probe = match &model.launch.probe {
        Probe::Cmd(cmd) => RenderedProbe::Cmd(render_cmd(cmd, "probe_cmd")?),
        Probe::Http(path) => RenderedProbe::Http(path.clone()),
    };
    let mut env = backend.env.clone();
    env.extend(model.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(Rendered {
        address,
        model: model.id.value.clone(),
        host: host.id.value.clone(),
        backend: backend.id.value.clone(),
        runtime: backend.runtime,
        run_dir: host.run_dir.clone(),
        port: placement.port,
        source: model.source.clone(),
        size_gib: model.size_gib,
        command,
        env,
        probe,
        probe_timeout_sec: model.launch.probe_timeout_sec,
        probe_interval_ms: model.launch.probe_interval_ms,
        runtime_spec: runtime_spec(backend),
    })
}

/// The runtime's own part of a launch, from the backend's config.
pub fn runtime_spec(backend: &Backend) -> RuntimeSpec {
    match backend.runtime {
        RuntimeKind::Process => RuntimeSpec::Process,
        RuntimeKind::Systemd => {
            let unit = backend.systemd.as_ref();
            RuntimeSpec::Systemd(SystemdSpec {
                user: unit.is_some_and(|u| u.user),
                options: unit
                    .map(|u| u.options.clone().into_iter().collect())
                    .unwrap_or_default(),
            })
        }
        RuntimeKind::Docker | RuntimeKind::Podman => {
            let c = backend.container.as_ref();
            RuntimeSpec::Container(ContainerSpec {
                image: c.and_then(|c| c.image.clone()).unwrap_or_default(),
                image_archive: c.and_then(|c| c.image_archive.clone()),
                gpus: c.and_then(|c| c.gpus.clone()),
                volumes: c.map(|c| c.volumes.clone()).unwrap_or_default(),
                network: c.and_then(|c| c.network.clone()),
                ports: c.map(|c| c.ports.clone()).unwrap_or_default(),
                extra_args: c.map(|c| c.extra_args.clone()).unwrap_or_default(),
            })
        }
    }
}

/// Renders a `*_cmd`; a command whose own text holds a secret (HCL interpolated it) is
/// sensitive whole, since nothing tells where in the text the secret went.
fn render_command(
    cmd: &crate::config::Command,
    lookup: &dyn Fn(&str) -> Option<Value>,
) -> Result<Redactable, template::RenderError> {
    let rendered = cmd.template.render(lookup)?;
    Ok(if cmd.sensitive {
        rendered.into_secret()
    } else {
        rendered
    })
}

/// Renders a backend's `verify_cmd` for one host.
pub fn render_verify(
    config: &Config,
    backend: &str,
    host: &str,
) -> Option<Result<Redactable, RenderError>> {
    let backend = config.backend(backend)?;
    let host = config.host(host)?;
    let cmd = backend.verify_cmd.as_ref()?;
    let address = Address::backend(&backend.id.value, &host.id.value);
    let fail = |field: &'static str, source| RenderError {
        address: address.clone(),
        field,
        source,
    };
    let args = match template::quote_args(&backend.args) {
        Ok(args) => args,
        Err(i) => {
            return Some(Err(fail(
                "backend args",
                template::RenderError::Nul(format!("backend_args (argument {})", i + 1)),
            )));
        }
    };
    let env = match template::quote_env(&backend.env) {
        Ok(env) => env,
        Err(k) => return Some(Err(fail("backend env", template::RenderError::Nul(k)))),
    };
    let lookup = |name: &str| {
        Some(match name {
            "host" => Value::plain(host.id.value.clone()),
            "run_dir" => Value::plain(host.run_dir.clone()),
            "backend_args" => Value::Quoted(args.clone()),
            "backend_env" => Value::Quoted(env.clone()),
            _ => return None,
        })
    };
    Some(render_command(cmd, &lookup).map_err(|source| fail("verify_cmd", source)))
}

/// How a change to one field of the launch record reaches a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// It changes what runs: it enters the fingerprint, and a change replaces the instance.
    Replace,
    /// Only berth reads it (probe settings): a change is recorded in place, nothing restarts.
    Update,
    /// Shown in plans and stored, never compared.
    Display,
}

/// The value of one launch field, as the field's reader finds it.
enum Part<'a> {
    /// Shown and hashed as is.
    Plain(serde_json::Value),
    /// Text that may be sensitive: shown redacted, hashed through the state's HMAC.
    Text {
        shown: String,
        value: &'a str,
        sensitive: bool,
    },
    /// The environment: each value like `Text`; not shown when empty.
    Env(&'a BTreeMap<String, MaybeSecret>),
}

/// One field of the launch record: its name (in plans, state and fingerprints), its role, and
/// how to read it from a rendered launch (`None`: the launch has no such field).
struct Field {
    name: &'static str,
    role: Role,
    read: fn(&Rendered) -> Option<Part<'_>>,
}

fn plain(v: impl Into<serde_json::Value>) -> Option<Part<'static>> {
    Some(Part::Plain(v.into()))
}

fn container(r: &Rendered) -> Option<&ContainerSpec> {
    match &r.runtime_spec {
        RuntimeSpec::Container(c) => Some(c),
        _ => None,
    }
}

fn systemd(r: &Rendered) -> Option<&SystemdSpec> {
    match &r.runtime_spec {
        RuntimeSpec::Systemd(s) => Some(s),
        _ => None,
    }
}

/// A list of a container's, shown only when it holds something.
fn list(items: &[String]) -> Option<Part<'static>> {
    (!items.is_empty()).then(|| Part::Plain(items.into()))
}

/// The launch record. The replace fields enter the fingerprint in this order: changing the
/// order, a name or how a value is written changes every fingerprint, and so replaces every
/// deployment on the next apply.
const FIELDS: &[Field] = &[
    Field {
        name: "runtime",
        role: Role::Replace,
        read: |r| plain(r.runtime.as_str()),
    },
    Field {
        name: "backend",
        role: Role::Replace,
        read: |r| plain(r.backend.clone()),
    },
    Field {
        name: "run_dir",
        role: Role::Replace,
        read: |r| plain(r.run_dir.clone()),
    },
    Field {
        name: "port",
        role: Role::Replace,
        read: |r| plain(r.port),
    },
    Field {
        name: "source",
        role: Role::Replace,
        read: |r| {
            Some(Part::Text {
                shown: r.source.display().to_string(),
                value: &r.source.value,
                sensitive: r.source.sensitive,
            })
        },
    },
    Field {
        name: "command",
        role: Role::Replace,
        read: |r| {
            Some(Part::Text {
                shown: r.command.display(),
                value: r.command.reveal(),
                sensitive: r.command.is_sensitive(),
            })
        },
    },
    Field {
        name: "env",
        role: Role::Replace,
        read: |r| Some(Part::Env(&r.env)),
    },
    Field {
        name: "image",
        role: Role::Replace,
        read: |r| plain(container(r)?.image.clone()),
    },
    Field {
        name: "gpus",
        role: Role::Replace,
        read: |r| plain(container(r)?.gpus.clone()?),
    },
    Field {
        name: "volumes",
        role: Role::Replace,
        read: |r| list(&container(r)?.volumes),
    },
    Field {
        name: "network",
        role: Role::Replace,
        read: |r| plain(container(r)?.network.clone()?),
    },
    Field {
        name: "ports",
        role: Role::Replace,
        read: |r| list(&container(r)?.ports),
    },
    Field {
        name: "extra_args",
        role: Role::Replace,
        read: |r| list(&container(r)?.extra_args),
    },
    Field {
        name: "systemd_scope",
        role: Role::Replace,
        read: |r| plain(if systemd(r)?.user { "user" } else { "system" }),
    },
    Field {
        name: "unit_options",
        role: Role::Replace,
        read: |r| {
            let options = &systemd(r)?.options;
            (!options.is_empty()).then(|| {
                Part::Plain(
                    options
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
                        .collect::<serde_json::Map<_, _>>()
                        .into(),
                )
            })
        },
    },
    // Where a missing image is loaded from: the image itself is what runs.
    Field {
        name: "image_archive",
        role: Role::Update,
        read: |r| plain(container(r)?.image_archive.clone()?),
    },
    Field {
        name: "model",
        role: Role::Display,
        read: |r| plain(r.model.clone()),
    },
    Field {
        name: "probe",
        role: Role::Update,
        read: |r| plain(r.probe.display()),
    },
    Field {
        name: "probe_timeout_sec",
        role: Role::Update,
        read: |r| plain(r.probe_timeout_sec?),
    },
    Field {
        name: "probe_interval_ms",
        role: Role::Update,
        read: |r| plain(r.probe_interval_ms?),
    },
];

/// The names of the launch fields of `role`, in declaration order.
pub fn field_names(role: Role) -> impl Iterator<Item = &'static str> {
    FIELDS
        .iter()
        .filter(move |f| f.role == role)
        .map(|f| f.name)
}

/// The fingerprint input: the replace fields in declaration order, written as one JSON object.
struct FingerprintInput(Vec<(&'static str, serde_json::Value)>);

impl serde::Serialize for FingerprintInput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl Rendered {
    /// A stable hash of the launch's replace fields (`sha256:` + hex). Sensitive values enter
    /// only as an HMAC keyed per state, so the fingerprint reveals none of them.
    pub fn fingerprint(&self, hmac_key: &[u8]) -> String {
        let protect = |value: &str, sensitive: bool| {
            serde_json::Value::from(if sensitive {
                format!("hmac:{}", hmac_hex(hmac_key, value))
            } else {
                value.to_string()
            })
        };
        let input = FingerprintInput(
            FIELDS
                .iter()
                .filter(|f| f.role == Role::Replace)
                .filter_map(|f| {
                    let hashed = match (f.read)(self)? {
                        Part::Plain(v) => v,
                        Part::Text {
                            value, sensitive, ..
                        } => protect(value, sensitive),
                        Part::Env(env) => env
                            .iter()
                            .map(|(k, v)| (k.clone(), protect(&v.value, v.sensitive)))
                            .collect::<serde_json::Map<_, _>>()
                            .into(),
                    };
                    Some((f.name, hashed))
                })
                .collect(),
        );
        let json = serde_json::to_vec(&input).expect("serialisable");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }

    /// What berth records about this launch in state and shows in plans: every field of the
    /// launch record it has; sensitive parts appear only as `(sensitive)`.
    pub fn attributes(&self) -> BTreeMap<String, serde_json::Value> {
        FIELDS
            .iter()
            .filter_map(|f| {
                let shown = match (f.read)(self)? {
                    Part::Plain(v) => v,
                    Part::Text { shown, .. } => shown.into(),
                    Part::Env(env) if env.is_empty() => return None,
                    Part::Env(_) => self
                        .env_display()
                        .into_iter()
                        .map(|(k, v)| (k, serde_json::Value::from(v)))
                        .collect::<serde_json::Map<_, _>>()
                        .into(),
                };
                Some((f.name.to_string(), shown))
            })
            .collect()
    }

    /// What the runtime needs to start this launch for the state of lineage `owner`.
    pub fn launch_spec(&self, owner: &str, fingerprint: &str) -> LaunchSpec {
        LaunchSpec {
            owner: owner.to_string(),
            address: self.address.to_string(),
            run_dir: self.run_dir.clone(),
            command: self.command.reveal().to_string(),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect(),
            port: self.port,
            fingerprint: fingerprint.to_string(),
            runtime: self.runtime_spec.clone(),
        }
    }

    /// The environment as it may be shown.
    pub fn env_display(&self) -> BTreeMap<String, String> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.display().to_string()))
            .collect()
    }
}

fn hmac_hex(key: &[u8], value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(value.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Replaces every occurrence of every secret in `text`: plain, shell-quoted and JSON-escaped.
/// Only for text that comes back from hosts (log tails, stderr), which berth cannot track;
/// text berth renders itself carries its sensitive ranges in a [`Redactable`].
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let mut forms = Vec::new();
        if let Ok(quoted) = shlex::try_quote(secret) {
            forms.push(quoted.into_owned());
        }
        for form in forms.clone().iter().map(String::as_str).chain([*secret]) {
            let json = serde_json::to_string(form).expect("a string serialises");
            forms.push(json[1..json.len() - 1].to_string());
        }
        forms.push(secret.to_string());
        // Longest first, so a form that contains another is replaced whole.
        forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
        for form in forms.iter().filter(|f| !f.is_empty()) {
            out = out.replace(form.as_str(), REDACTED);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrub_hides_plain_and_quoted_secrets() {
        let text = "srv --api-key 's3cr3t value' --other s3cr3t";
        let out = scrub(text, &["s3cr3t value", "s3cr3t"]);
        assert!(!out.contains("s3cr3t"), "{out}");
        assert_eq!(out, "srv --api-key (sensitive) --other (sensitive)");
    }

    #[test]
    fn scrub_hides_json_escaped_secrets() {
        let text = r#"{"log":"key=a\\b\"c"}"#;
        let out = scrub(text, &["a\\b\"c"]);
        assert_eq!(out, r#"{"log":"key=(sensitive)"}"#);
    }

    fn rendered() -> Rendered {
        Rendered {
            address: Address::model("m", "h"),
            model: "m".into(),
            host: "h".into(),
            backend: "cpu".into(),
            runtime: RuntimeKind::Process,
            run_dir: "/r".into(),
            port: 8080,
            source: MaybeSecret {
                value: "/m.gguf".into(),
                sensitive: false,
            },
            size_gib: None,
            command: Redactable::plain("srv"),
            env: BTreeMap::from([(
                "KEY".to_string(),
                MaybeSecret {
                    value: "hunter2".into(),
                    sensitive: true,
                },
            )]),
            probe: RenderedProbe::Http("/health".into()),
            probe_timeout_sec: None,
            probe_interval_ms: None,
            runtime_spec: RuntimeSpec::Process,
        }
    }

    #[test]
    fn fingerprint_changes_with_secret_but_never_shows_it() {
        let mut r = rendered();
        let a = r.fingerprint(b"key-one");
        assert_eq!(a, r.fingerprint(b"key-one"), "stable");
        assert_ne!(a, r.fingerprint(b"key-two"), "keyed per state");
        r.env.get_mut("KEY").unwrap().value = "hunter3".into();
        assert_ne!(
            a,
            r.fingerprint(b"key-one"),
            "a new secret changes the fingerprint"
        );
        r.port = 9090;
        assert_ne!(r.fingerprint(b"key-one"), a);
        let attrs = serde_json::to_string(&r.attributes()).unwrap();
        assert!(!attrs.contains("hunter"), "{attrs}");
    }

    /// Deployments started by earlier versions keep their fingerprint: a new version of berth
    /// alone replaces nothing.
    #[test]
    fn process_fingerprints_are_those_of_earlier_versions() {
        let mut r = rendered();
        r.command = Redactable::plain("srv --port 8080");
        r.env = BTreeMap::from([
            (
                "K".to_string(),
                MaybeSecret {
                    value: "v".into(),
                    sensitive: false,
                },
            ),
            (
                "S".to_string(),
                MaybeSecret {
                    value: "hunter2".into(),
                    sensitive: true,
                },
            ),
        ]);
        assert_eq!(
            r.fingerprint(b"key-one"),
            "sha256:3007f24ad945cb19f276b132998ac7041898d21b9d4bc596a1c99fc39a26b1d7"
        );
    }

    /// Every field of the record declared `update` leaves the fingerprint alone, and every one
    /// declared `replace` changes it.
    #[test]
    fn update_fields_change_no_fingerprint_and_replace_fields_do() {
        let base = || {
            let mut r = rendered();
            r.runtime = RuntimeKind::Docker;
            r.runtime_spec = RuntimeSpec::Container(ContainerSpec {
                image: "srv:1".into(),
                ..ContainerSpec::default()
            });
            r
        };
        let before = base().fingerprint(b"k");
        let changed = |name: &str| -> Rendered {
            let mut r = base();
            let RuntimeSpec::Container(c) = &mut r.runtime_spec else {
                unreachable!()
            };
            match name {
                "runtime" => r.runtime = RuntimeKind::Podman,
                "backend" => r.backend = "gpu".into(),
                "run_dir" => r.run_dir = "/other".into(),
                "port" => r.port = 9,
                "source" => r.source.value = "/n.gguf".into(),
                "command" => r.command = Redactable::plain("srv2"),
                "env" => r.env.clear(),
                "image" => c.image = "srv:2".into(),
                "gpus" => c.gpus = Some("all".into()),
                "volumes" => c.volumes = vec!["/m:/m".into()],
                "network" => c.network = Some("host".into()),
                "ports" => c.ports = vec!["8080:8080".into()],
                "extra_args" => c.extra_args = vec!["--ipc=host".into()],
                "image_archive" => c.image_archive = Some("/srv.tar".into()),
                "systemd_scope" | "unit_options" => {
                    r.runtime = RuntimeKind::Systemd;
                    r.runtime_spec = RuntimeSpec::Systemd(SystemdSpec {
                        user: name == "systemd_scope",
                        options: if name == "unit_options" {
                            vec![("LimitNOFILE".into(), "65536".into())]
                        } else {
                            Vec::new()
                        },
                    });
                }
                "model" => r.model = "n".into(),
                "probe" => r.probe = RenderedProbe::Http("/ready".into()),
                "probe_timeout_sec" => r.probe_timeout_sec = Some(5),
                "probe_interval_ms" => r.probe_interval_ms = Some(50),
                other => panic!("launch field {other} has no case in this test"),
            }
            r
        };
        for name in field_names(Role::Replace) {
            assert_ne!(changed(name).fingerprint(b"k"), before, "{name}");
        }
        for name in field_names(Role::Update).chain(field_names(Role::Display)) {
            let r = changed(name);
            assert_eq!(r.fingerprint(b"k"), before, "{name}");
            assert_ne!(r.attributes(), base().attributes(), "{name} is not shown");
        }
    }
}
