//! `berth hosts`, `berth backends`, `berth models` and their `show ID`: the resolved config and
//! placements, as tables or JSON. Read-only; what runs on the hosts is `berth drift`'s job.

use super::Invocation;
use super::ui::{Ui, table};
use crate::config::did_you_mean;
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::{self, backends::Backend, hosts::Host, hosts::Recorded, models::Model};
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

fn print_json<T: serde::Serialize + ?Sized>(document: &T) {
    outln!("{}", output::to_json(document));
}

fn gib(v: Option<f64>) -> String {
    v.map(|v| format!("{v} GiB")).unwrap_or_else(|| "-".into())
}

/// `berth hosts`
pub fn hosts(inv: &Invocation, json: bool, _ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let hosts: Vec<Host> = ws.config.hosts.iter().map(|h| Host::new(&ws, h)).collect();
    if json {
        print_json(&hosts);
        return Ok(exit_codes::SUCCESS);
    }
    if hosts.is_empty() {
        outln!(
            "The config in {} defines no hosts: add a `host` block (see docs/language.md).",
            inv.dir.display()
        );
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.id.clone(),
                h.transport.clone(),
                h.login(),
                h.backends.join(","),
                gib(h.vram_gib),
                h.placements.iter().filter(|p| p.active).count().to_string(),
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
    let mut host = Host::new(&ws, host);
    // What the state records, not what the config intends (a destroyed model is not running).
    // Read-only: never waits behind an apply.
    let settings = ws.config.settings.state(&ws.config.dir);
    let read = crate::session::ReadState::read(
        crate::session::backend(&settings)?.as_ref(),
        "hosts show",
        &inv.lock,
    )?;
    read.note_if_busy();
    for p in &mut host.placements {
        let record = read
            .snapshot
            .resources
            .iter()
            .find(|r| r.address == p.address);
        p.recorded = Recorded::Read(record.map(|r| match &r.status {
            berth_state::ResourceStatus::Ready => "ready".to_string(),
            berth_state::ResourceStatus::Failed { step, .. } => format!("failed at {step}"),
        }));
    }
    if json {
        print_json(&host);
        return Ok(exit_codes::SUCCESS);
    }
    outln!("{}", ui.bold(&format!("host.{}", host.id)));
    outln!("  transport     {}", host.transport);
    if let Some(ssh) = &host.ssh {
        outln!("  address       {}", host.login());
        outln!(
            "  key           {}",
            ssh.key_path.as_deref().unwrap_or("ssh-agent")
        );
        outln!(
            "  host key      {}",
            if ssh.host_key_pinned {
                "pinned"
            } else {
                ssh.known_hosts.as_deref().unwrap_or("~/.ssh/known_hosts")
            }
        );
        outln!("  timeout       {} s", ssh.connect_timeout_sec);
    }
    outln!("  backends      {}", host.backends.join(", "));
    outln!("  gpus          {}", host.gpus);
    outln!("  vram          {}", gib(host.vram_gib));
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
    let rows: Vec<Vec<String>> = host
        .placements
        .iter()
        .map(|p| {
            vec![
                p.model.clone(),
                p.backend.clone(),
                p.port.to_string(),
                if p.active {
                    "active"
                } else {
                    "standby (group)"
                }
                .to_string(),
                match &p.recorded {
                    Recorded::Read(Some(status)) if status == "ready" => ui.green(status),
                    Recorded::Read(Some(status)) => ui.red(status),
                    _ => ui.dim("not applied"),
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
            indent(&table(
                &["MODEL", "BACKEND", "PORT", "ROLE", "STATE"],
                &rows
            ))
        );
    }
    Ok(exit_codes::SUCCESS)
}

/// `berth backends`
pub fn backends(inv: &Invocation, json: bool, _ui: &Ui) -> Result<u8> {
    let ws = open(inv)?;
    let backends: Vec<Backend> = ws
        .config
        .backends
        .iter()
        .map(|b| Backend::new(&ws, b))
        .collect();
    if json {
        print_json(&backends);
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = backends
        .iter()
        .map(|b| {
            let mut hosts: Vec<&str> = b.placed.iter().map(|p| p.host.as_str()).collect();
            hosts.dedup();
            vec![
                b.id.clone(),
                b.runtime.clone(),
                if hosts.is_empty() {
                    "-".into()
                } else {
                    hosts.join(",")
                },
                b.verify_cmd.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out!(
        "{}",
        table(&["BACKEND", "RUNTIME", "HOSTS", "VERIFY"], &rows)
    );
    Ok(exit_codes::SUCCESS)
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
    let b = Backend::new(&ws, b);
    if json {
        print_json(&b);
        return Ok(exit_codes::SUCCESS);
    }
    outln!("{}", ui.bold(&format!("backend.{}", b.id)));
    outln!("  runtime       {}", b.runtime);
    outln!(
        "  host_filters  {}",
        b.host_filters
            .as_ref()
            .map(|f| f.join(", "))
            .unwrap_or_else(|| "(every host)".into())
    );
    outln!("  verify_cmd    {}", b.verify_cmd.as_deref().unwrap_or("-"));
    if !b.args.is_empty() {
        outln!("  args          {}", b.args.join(" "));
    }
    for (k, v) in &b.env {
        outln!("  env           {k}={v}");
    }
    if let Some(c) = &b.container {
        outln!("  image         {}", c.image.as_deref().unwrap_or("-"));
        if let Some(archive) = &c.image_archive {
            outln!("  image_archive {archive}");
        }
        if let Some(gpus) = &c.gpus {
            outln!("  gpus          {gpus}");
        }
        for v in &c.volumes {
            outln!("  volume        {v}");
        }
        let network = match (&c.network, c.ports.is_empty()) {
            (Some(n), _) => n.clone(),
            (None, true) => "host (the host's own network)".into(),
            (None, false) => "the engine's default bridge".into(),
        };
        outln!("  network       {network}");
        for p in &c.ports {
            outln!("  port          {p}");
        }
        if !c.extra_args.is_empty() {
            outln!("  extra_args    {}", c.extra_args.join(" "));
        }
    }
    if let Some(s) = &b.systemd {
        outln!("  scope         {}", s.scope);
        for (k, v) in &s.options {
            outln!("  option        {k}={v}");
        }
    }
    let rows: Vec<Vec<String>> = b
        .placed
        .iter()
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
    let models: Vec<Model> = ws
        .config
        .models
        .iter()
        .map(|m| Model::new(&ws, m))
        .collect();
    if json {
        print_json(&models);
        return Ok(exit_codes::SUCCESS);
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            let places: Vec<String> = m
                .placements
                .iter()
                .map(|p| {
                    if p.active {
                        format!("{}({})", p.host, p.backend)
                    } else {
                        format!("{}({}, standby)", p.host, p.backend)
                    }
                })
                .collect();
            vec![
                m.id.clone(),
                if places.is_empty() {
                    "-".into()
                } else {
                    places.join(",")
                },
                m.port.to_string(),
                m.group
                    .as_ref()
                    .map(|g| {
                        if m.is_default() {
                            format!("{g}*")
                        } else {
                            g.clone()
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
    let m = Model::new(&ws, m);
    if json {
        print_json(&m);
        return Ok(exit_codes::SUCCESS);
    }
    outln!("{}", ui.bold(&format!("model.{}", m.id)));
    outln!("  enabled       {}", m.enabled);
    outln!("  source        {}", m.source);
    outln!("  size          {}", gib(m.size_gib));
    outln!("  port          {}", m.port);
    if let Some(g) = &m.group {
        outln!(
            "  group         {g}{}",
            if m.is_default() { " (default)" } else { "" }
        );
    }
    if !m.depends_on.is_empty() {
        outln!("  depends_on    {}", m.depends_on.join(", "));
    }
    for (k, v) in &m.env {
        outln!("  env           {k}={v}");
    }
    for p in &m.placements {
        outln!();
        outln!(
            "  {}{}",
            ui.bold(&p.address),
            if p.active {
                ""
            } else {
                " (standby member of its group)"
            }
        );
        outln!("    backend     {}", p.backend);
        match &p.launch {
            Ok(launch) => {
                outln!("    start       {}", launch.start);
                outln!("    probe       {}", launch.probe);
            }
            Err(e) => outln!("    cannot render: {e}"),
        }
    }
    if m.placements.is_empty() {
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
