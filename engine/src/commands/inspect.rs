//! `berth hosts`, `berth backends`, `berth models` and their `show ID`: the resolved config and
//! placements, as tables or JSON. Read-only; what runs on the hosts is `berth drift`'s job.

use berth_state::{Address, Target};
use serde_json::{Value, json};

use super::Invocation;
use super::ui::{Ui, table};
use crate::config::{Host, Probe, TransportKind, did_you_mean};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::launch;
use crate::placement::Previous;
use crate::workspace::Workspace;

fn open(inv: &Invocation) -> Result<Workspace> {
    Workspace::open(&inv.dir, &inv.vars, &Previous::default())
}

fn not_found<'a>(
    kind: &'static str,
    id: &str,
    known: impl Iterator<Item = &'a str> + Clone,
) -> Error {
    let help = match did_you_mean(id, known.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("known: {}", known.collect::<Vec<_>>().join(", ")),
    };
    Error::NotFound {
        kind,
        id: id.to_string(),
        place: "the config",
        help,
    }
}

fn print_json(value: &Value) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

fn address_of(host: &Host) -> String {
    match host.connection.transport {
        TransportKind::Local => "local".into(),
        TransportKind::Ssh => {
            let user = host
                .connection
                .user
                .as_deref()
                .map(|u| format!("{u}@"))
                .unwrap_or_default();
            let port = if host.connection.port == 22 {
                String::new()
            } else {
                format!(":{}", host.connection.port)
            };
            format!(
                "{user}{}{port}",
                host.connection.host.as_deref().unwrap_or("?")
            )
        }
    }
}

fn gib(v: Option<f64>) -> String {
    v.map(|v| format!("{v} GiB")).unwrap_or_else(|| "-".into())
}

fn host_json(ws: &Workspace, host: &Host) -> Value {
    let c = &host.connection;
    json!({
        "id": host.id.value,
        "enabled": host.enabled,
        "transport": c.transport.as_str(),
        "address": c.host,
        "port": c.port,
        "user": c.user,
        "backends": host.capabilities.backends.iter().map(|b| &b.value).collect::<Vec<_>>(),
        "gpus": host.capabilities.gpus,
        "vram_gib": host.capabilities.vram_gib,
        "labels": host.labels,
        "run_dir": host.run_dir,
        "placements": ws.placements_on(&host.id.value).map(|p| json!({
            "address": p.address(), "model": p.model, "backend": p.backend, "port": p.port, "active": p.active,
        })).collect::<Vec<_>>(),
    })
}

/// `berth hosts`
pub fn hosts(inv: &Invocation, json: bool, _ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    if json {
        print_json(&Value::Array(
            ws.config.hosts.iter().map(|h| host_json(&ws, h)).collect(),
        ));
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = ws
        .config
        .hosts
        .iter()
        .map(|h| {
            vec![
                h.id.value.clone(),
                h.connection.transport.as_str().into(),
                address_of(h),
                h.capabilities
                    .backends
                    .iter()
                    .map(|b| b.value.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                gib(h.capabilities.vram_gib),
                ws.placements_on(&h.id.value)
                    .filter(|p| p.active)
                    .count()
                    .to_string(),
                if h.enabled { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "HOST",
                "TRANSPORT",
                "ADDRESS",
                "BACKENDS",
                "VRAM",
                "MODELS",
                "ENABLED"
            ],
            &rows
        )
    );
    Ok(exit_codes::SUCCESS)
}

/// `berth hosts show ID`
pub fn host(inv: &Invocation, id: &str, json: bool, ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let host = ws.config.host(id).ok_or_else(|| {
        not_found(
            "host",
            id,
            ws.config.hosts.iter().map(|h| h.id.value.as_str()),
        )
    })?;
    if json {
        print_json(&host_json(&ws, host));
        return Ok(exit_codes::SUCCESS);
    }
    let c = &host.connection;
    outln!("{}", ui.bold(&Address::host(&host.id.value)));
    outln!("  transport     {}", c.transport.as_str());
    if c.transport == TransportKind::Ssh {
        outln!("  address       {}", address_of(host));
        outln!(
            "  key           {}",
            c.key_path.as_deref().unwrap_or("ssh-agent")
        );
        outln!(
            "  host key      {}",
            if c.host_key.is_some() {
                "pinned"
            } else {
                c.known_hosts.as_deref().unwrap_or("~/.ssh/known_hosts")
            }
        );
        outln!("  timeout       {} s", c.connect_timeout_sec);
    }
    outln!(
        "  backends      {}",
        host.capabilities
            .backends
            .iter()
            .map(|b| b.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!("  gpus          {}", host.capabilities.gpus);
    outln!("  vram          {}", gib(host.capabilities.vram_gib));
    if !host.labels.is_empty() {
        outln!(
            "  labels        {}",
            host.labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    outln!("  run_dir       {}", host.run_dir);
    outln!("  enabled       {}", host.enabled);
    let rows: Vec<Vec<String>> = ws
        .placements_on(id)
        .map(|p| {
            vec![
                p.model.clone(),
                p.backend.clone(),
                p.port.to_string(),
                if p.active {
                    "running".into()
                } else {
                    "standby (group)".into()
                },
            ]
        })
        .collect();
    outln!();
    if rows.is_empty() {
        outln!("  no models are placed on this host");
    } else {
        out!(
            "{}",
            indent(&table(&["MODEL", "BACKEND", "PORT", "ROLE"], &rows))
        );
    }
    Ok(exit_codes::SUCCESS)
}

/// `berth backends`
pub fn backends(inv: &Invocation, json: bool, _ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    if json {
        let items: Vec<Value> = ws
            .config
            .backends
            .iter()
            .map(|b| backend_json(&ws, b))
            .collect();
        print_json(&Value::Array(items));
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = ws
        .config
        .backends
        .iter()
        .map(|b| {
            let mut hosts: Vec<&str> = ws
                .placements
                .iter()
                .filter(|p| p.backend == b.id.value)
                .map(|p| p.host.as_str())
                .collect();
            hosts.dedup();
            vec![
                b.id.value.clone(),
                b.runtime.as_str().into(),
                if hosts.is_empty() {
                    "-".into()
                } else {
                    hosts.join(",")
                },
                b.verify_cmd
                    .as_ref()
                    .map_or("-", |c| c.display())
                    .to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["BACKEND", "RUNTIME", "HOSTS", "VERIFY"], &rows)
    );
    Ok(exit_codes::SUCCESS)
}

fn backend_json(ws: &Workspace, b: &crate::config::Backend) -> Value {
    json!({
        "id": b.id.value,
        "runtime": b.runtime.as_str(),
        "host_filters": b.host_filters.as_ref().map(|f| f.value.iter().map(|s| &s.value).collect::<Vec<_>>()),
        "verify_cmd": b.verify_cmd.as_ref().map(|c| c.display()),
        "env": b.env.iter().map(|(k, v)| (k.clone(), Value::from(v.display()))).collect::<serde_json::Map<_, _>>(),
        "args": b.args.iter().map(|a| a.display()).collect::<Vec<_>>(),
        "container": b.container.as_ref().map(|c| json!({"image": c.image, "image_archive": c.image_archive, "gpus": c.gpus, "volumes": c.volumes})),
        "placements": ws.placements.iter().filter(|p| p.backend == b.id.value).map(|p| p.address()).collect::<Vec<_>>(),
    })
}

/// `berth backends show ID`
pub fn backend(inv: &Invocation, id: &str, json: bool, ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let b = ws.config.backend(id).ok_or_else(|| {
        not_found(
            "backend",
            id,
            ws.config.backends.iter().map(|b| b.id.value.as_str()),
        )
    })?;
    if json {
        print_json(&backend_json(&ws, b));
        return Ok(exit_codes::SUCCESS);
    }
    outln!(
        "{}",
        ui.bold(&Target::Backend(b.id.value.clone()).to_string())
    );
    outln!("  runtime       {}", b.runtime.as_str());
    let filters = b.host_filters.as_ref().map(|f| {
        f.value
            .iter()
            .map(|s| s.value.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    });
    outln!(
        "  host_filters  {}",
        filters.unwrap_or_else(|| "(every host)".into())
    );
    outln!(
        "  verify_cmd    {}",
        b.verify_cmd.as_ref().map_or("-", |c| c.display())
    );
    if !b.args.is_empty() {
        outln!(
            "  args          {}",
            b.args
                .iter()
                .map(|a| a.display())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    for (k, v) in &b.env {
        outln!("  env           {k}={}", v.display());
    }
    if let Some(c) = &b.container {
        outln!("  image         {}", c.image.as_deref().unwrap_or("-"));
    }
    let rows: Vec<Vec<String>> = ws
        .placements
        .iter()
        .filter(|p| p.backend == b.id.value)
        .map(|p| vec![p.host.clone(), p.model.clone(), p.port.to_string()])
        .collect();
    outln!();
    if rows.is_empty() {
        outln!("  no model is placed on this backend");
    } else {
        out!("{}", indent(&table(&["HOST", "MODEL", "PORT"], &rows)));
    }
    Ok(exit_codes::SUCCESS)
}

/// `berth models`
pub fn models(inv: &Invocation, json: bool, _ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    if json {
        let items: Vec<Value> = ws
            .config
            .models
            .iter()
            .map(|m| model_json(&ws, m))
            .collect();
        print_json(&Value::Array(items));
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = ws
        .config
        .models
        .iter()
        .map(|m| {
            let places: Vec<String> = ws
                .placements_of(&m.id.value)
                .map(|p| {
                    if p.active {
                        format!("{}({})", p.host, p.backend)
                    } else {
                        format!("{}({}, standby)", p.host, p.backend)
                    }
                })
                .collect();
            vec![
                m.id.value.clone(),
                if places.is_empty() {
                    "-".into()
                } else {
                    places.join(",")
                },
                m.port.to_string(),
                m.group
                    .as_ref()
                    .map(|g| {
                        if m.default.as_ref().is_some_and(|d| d.value) {
                            format!("{}*", g.value)
                        } else {
                            g.value.clone()
                        }
                    })
                    .unwrap_or_else(|| "-".into()),
                gib(m.size_gib),
                if m.enabled { "yes".into() } else { "no".into() },
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &["MODEL", "PLACED ON", "PORT", "GROUP", "SIZE", "ENABLED"],
            &rows
        )
    );
    Ok(exit_codes::SUCCESS)
}

fn model_json(ws: &Workspace, m: &crate::config::Model) -> Value {
    json!({
        "id": m.id.value,
        "enabled": m.enabled,
        "source": m.source.display(),
        "size_gib": m.size_gib,
        "port": m.port,
        "group": m.group.as_ref().map(|g| &g.value),
        "default": m.default.as_ref().map(|d| d.value),
        "depends_on": m.depends_on.iter().map(|d| Target::Model(d.value.clone())).collect::<Vec<_>>(),
        "start_cmd": m.launch.start_cmd.display(),
        "probe": match &m.launch.probe { Probe::Cmd(c) => json!({"cmd": c.display()}), Probe::Http(p) => json!({"http": p}) },
        "env": m.env.iter().map(|(k, v)| (k.clone(), Value::from(v.display()))).collect::<serde_json::Map<_, _>>(),
        "placements": ws.placements_of(&m.id.value).map(|p| json!({
            "address": p.address(), "host": p.host, "backend": p.backend, "port": p.port, "active": p.active,
        })).collect::<Vec<_>>(),
    })
}

/// `berth models show ID`
pub fn model(inv: &Invocation, id: &str, json: bool, ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let m = ws.config.model(id).ok_or_else(|| {
        not_found(
            "model",
            id,
            ws.config.models.iter().map(|m| m.id.value.as_str()),
        )
    })?;
    if json {
        print_json(&model_json(&ws, m));
        return Ok(exit_codes::SUCCESS);
    }
    outln!(
        "{}",
        ui.bold(&Target::Model(m.id.value.clone()).to_string())
    );
    outln!("  enabled       {}", m.enabled);
    outln!("  source        {}", m.source.display());
    outln!("  size          {}", gib(m.size_gib));
    outln!("  port          {}", m.port);
    if let Some(g) = &m.group {
        outln!(
            "  group         {}{}",
            g.value,
            if m.default.as_ref().is_some_and(|d| d.value) {
                " (default)"
            } else {
                ""
            }
        );
    }
    if !m.depends_on.is_empty() {
        outln!(
            "  depends_on    {}",
            m.depends_on
                .iter()
                .map(|d| Target::Model(d.value.clone()).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for (k, v) in &m.env {
        outln!("  env           {k}={}", v.display());
    }
    for p in ws.placements_of(id) {
        outln!();
        outln!(
            "  {}{}",
            ui.bold(&p.address()),
            if p.active {
                ""
            } else {
                " (standby member of its group)"
            }
        );
        outln!("    backend     {}", p.backend);
        match launch::render(&ws.config, p) {
            Ok(r) => {
                outln!("    start       {}", r.command.display());
                outln!("    probe       {}", r.probe.display());
            }
            Err(e) => outln!("    cannot render: {e}"),
        }
    }
    if ws.placements_of(id).next().is_none() {
        outln!(
            "\n  not placed ({})",
            if m.enabled { "no host" } else { "disabled" }
        );
    }
    Ok(exit_codes::SUCCESS)
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}\n")).collect()
}
