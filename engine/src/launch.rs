//! What one placement runs: its start command and probe rendered from the templates (every
//! value shell-quoted, sensitive parts tracked), its environment, and the fingerprint that
//! tells whether a running instance is still the one the config describes. Pure: no I/O.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::template::{self, Value};
use crate::config::{Config, MaybeSecret, Probe, REDACTED, Redactable, RuntimeKind};
use crate::placement::Placement;

/// A placement's launch, ready to hand to a runtime.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub address: String,
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
    pub address: String,
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
    })
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
    let address = crate::graph::backend_address(&backend.id.value, &host.id.value);
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

/// The fingerprint input: everything that changes what runs. Sensitive values enter only as an
/// HMAC keyed per state, so neither the fingerprint nor this struct reveals them.
#[derive(Debug, Serialize)]
struct FingerprintInput<'a> {
    runtime: &'a str,
    backend: &'a str,
    run_dir: &'a str,
    port: u16,
    source: String,
    command: String,
    env: BTreeMap<&'a str, String>,
}

impl Rendered {
    /// A stable hash of the launch spec (`sha256:` + hex).
    pub fn fingerprint(&self, hmac_key: &[u8]) -> String {
        let protect = |v: &MaybeSecret| {
            if v.sensitive {
                format!("hmac:{}", hmac_hex(hmac_key, &v.value))
            } else {
                v.value.clone()
            }
        };
        let input = FingerprintInput {
            runtime: self.runtime.as_str(),
            backend: &self.backend,
            run_dir: &self.run_dir,
            port: self.port,
            source: protect(&self.source),
            command: protect(&MaybeSecret {
                value: self.command.reveal().to_string(),
                sensitive: self.command.is_sensitive(),
            }),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), protect(v)))
                .collect(),
        };
        let json = serde_json::to_vec(&input).expect("serialisable");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }

    /// What berth records about this launch in state and shows in plans; sensitive parts
    /// appear only as `(sensitive)`.
    pub fn attributes(&self) -> BTreeMap<String, serde_json::Value> {
        use serde_json::Value;
        let mut attrs = BTreeMap::from([
            ("model".to_string(), Value::from(self.model.clone())),
            ("backend".to_string(), Value::from(self.backend.clone())),
            ("runtime".to_string(), Value::from(self.runtime.as_str())),
            ("port".to_string(), Value::from(self.port)),
            ("run_dir".to_string(), Value::from(self.run_dir.clone())),
            ("source".to_string(), Value::from(self.source.display())),
            ("command".to_string(), Value::from(self.command.display())),
            ("probe".to_string(), Value::from(self.probe.display())),
        ]);
        if !self.env.is_empty() {
            let env: serde_json::Map<String, Value> = self
                .env_display()
                .into_iter()
                .map(|(k, v)| (k, Value::from(v)))
                .collect();
            attrs.insert("env".to_string(), Value::Object(env));
        }
        if let Some(t) = self.probe_timeout_sec {
            attrs.insert("probe_timeout_sec".to_string(), Value::from(t));
        }
        if let Some(i) = self.probe_interval_ms {
            attrs.insert("probe_interval_ms".to_string(), Value::from(i));
        }
        attrs
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

    #[test]
    fn fingerprint_changes_with_secret_but_never_shows_it() {
        let mut r = Rendered {
            address: "model.m@h".into(),
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
        };
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
    }
}
