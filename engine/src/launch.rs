//! What one placement runs: its start command and probe rendered from the templates (every
//! value shell-quoted), its environment, and the fingerprint that tells whether a running
//! instance is still the one the config describes. Pure: no I/O.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::template::{self, Template, Value};
use crate::config::{Config, MaybeSecret, Probe, REDACTED, RuntimeKind};
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
    pub command: MaybeSecret,
    /// Backend env overlaid by model env.
    pub env: BTreeMap<String, MaybeSecret>,
    pub probe: RenderedProbe,
    pub probe_timeout_sec: Option<u64>,
    pub probe_interval_ms: Option<u64>,
}

/// A rendered readiness probe.
#[derive(Debug, Clone, PartialEq)]
pub enum RenderedProbe {
    Cmd(MaybeSecret),
    Http(String),
}

impl RenderedProbe {
    /// How the probe is shown in plans.
    pub fn display(&self, secrets: &[&str]) -> String {
        match self {
            RenderedProbe::Cmd(c) => format!("cmd: {}", scrub(&c.value, secrets)),
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
    let args = template::quote_words(backend.args.iter().map(String::as_str)).map_err(|_| {
        RenderError {
            address: address.clone(),
            field: "backend args",
            source: template::RenderError::Nul("backend_args".into()),
        }
    })?;
    let mut backend_env = String::new();
    for (k, v) in &backend.env {
        let quoted = shlex::try_quote(&v.value).map_err(|_| RenderError {
            address: address.clone(),
            field: "backend env",
            source: template::RenderError::Nul(k.clone()),
        })?;
        if !backend_env.is_empty() {
            backend_env.push(' ');
        }
        backend_env.push_str(&format!("{k}={quoted}"));
    }
    let backend_env_secret = backend.env.values().any(|v| v.sensitive);
    let port = placement.port.to_string();
    let lookup = |name: &str| -> Option<Value> {
        Some(match name {
            "source" => Value::Word(model.source.value.clone()),
            "port" => Value::Word(port.clone()),
            "host" => Value::Word(host.id.value.clone()),
            "model" => Value::Word(model.id.value.clone()),
            "run_dir" => Value::Word(host.run_dir.clone()),
            "backend_args" => Value::Quoted(args.clone()),
            "backend_env" => Value::Quoted(backend_env.clone()),
            _ => return None,
        })
    };
    let uses_secret = |t: &Template, sensitive: bool| {
        sensitive
            || t.placeholders().any(|p| match p.name {
                "source" => model.source.sensitive,
                "backend_env" => backend_env_secret,
                "backend_args" => backend.args_sensitive,
                _ => false,
            })
    };
    let render_cmd =
        |cmd: &crate::config::Command, field: &'static str| -> Result<MaybeSecret, RenderError> {
            let value = cmd.template.render(lookup).map_err(|source| RenderError {
                address: address.clone(),
                field,
                source,
            })?;
            Ok(MaybeSecret {
                value,
                sensitive: uses_secret(&cmd.template, cmd.sensitive),
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

/// Renders a backend's `verify_cmd` for one host.
pub fn render_verify(
    config: &Config,
    backend: &str,
    host: &str,
) -> Option<Result<MaybeSecret, RenderError>> {
    let backend = config.backend(backend)?;
    let host = config.host(host)?;
    let cmd = backend.verify_cmd.as_ref()?;
    let args = template::quote_words(backend.args.iter().map(String::as_str)).unwrap_or_default();
    let address = crate::graph::backend_address(&backend.id.value, &host.id.value);
    let mut env = Vec::new();
    for (k, v) in &backend.env {
        match shlex::try_quote(&v.value) {
            Ok(q) => env.push(format!("{k}={q}")),
            Err(_) => {
                return Some(Err(RenderError {
                    address,
                    field: "backend env",
                    source: template::RenderError::Nul(k.clone()),
                }));
            }
        }
    }
    let env = env.join(" ");
    Some(
        cmd.template
            .render(|name| {
                Some(match name {
                    "host" => Value::Word(host.id.value.clone()),
                    "run_dir" => Value::Word(host.run_dir.clone()),
                    "backend_args" => Value::Quoted(args.clone()),
                    "backend_env" => Value::Quoted(env.clone()),
                    _ => return None,
                })
            })
            .map(|value| MaybeSecret {
                value,
                sensitive: cmd.sensitive || backend.env.values().any(|v| v.sensitive),
            })
            .map_err(|source| RenderError {
                address,
                field: "verify_cmd",
                source,
            }),
    )
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
            command: protect(&self.command),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), protect(v)))
                .collect(),
        };
        let json = serde_json::to_vec(&input).expect("serialisable");
        format!("sha256:{}", hex::encode(Sha256::digest(&json)))
    }

    /// What berth records about this launch in state and shows in plans; secrets appear only
    /// as `(sensitive)`.
    pub fn attributes(&self, secrets: &[&str]) -> BTreeMap<String, serde_json::Value> {
        use serde_json::Value;
        let mut attrs = BTreeMap::from([
            ("model".to_string(), Value::from(self.model.clone())),
            ("backend".to_string(), Value::from(self.backend.clone())),
            ("runtime".to_string(), Value::from(self.runtime.as_str())),
            ("port".to_string(), Value::from(self.port)),
            ("run_dir".to_string(), Value::from(self.run_dir.clone())),
            (
                "source".to_string(),
                Value::from(scrub(self.source.display(), secrets)),
            ),
            (
                "command".to_string(),
                Value::from(self.command_display(secrets)),
            ),
            (
                "probe".to_string(),
                Value::from(self.probe.display(secrets)),
            ),
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

    /// The start command as it may be shown (secrets replaced).
    pub fn command_display(&self, secrets: &[&str]) -> String {
        scrub(&self.command.value, secrets)
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

/// Replaces every occurrence of every secret (and of its shell-quoted form) in `text`.
pub fn scrub(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        if let Ok(quoted) = shlex::try_quote(secret)
            && quoted != *secret
        {
            out = out.replace(quoted.as_ref(), REDACTED);
        }
        out = out.replace(secret, REDACTED);
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
            command: MaybeSecret {
                value: "srv".into(),
                sensitive: false,
            },
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
