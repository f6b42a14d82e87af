//! Shell completion that knows the config: `--target`, `--replace`, `state show`, `models show`
//! (and any argument given [`model_ids`]) complete the addresses and ids of the config in the
//! `-C` directory of the command line being completed, through clap_complete's dynamic
//! completion (the shell asks `berth` itself, with `COMPLETE=SHELL` set). A config that does not
//! load completes nothing.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap_complete::engine::CompletionCandidate;

use crate::config::VarInputs;
use crate::placement::Previous;
use crate::workspace::Workspace;

/// The environment variable the registration script sets when it asks for completions.
pub const COMPLETE_ENV: &str = "COMPLETE";

/// The config directory of the command line being completed: its `-C DIR`/`--dir DIR`, or `.`.
fn config_dir() -> PathBuf {
    let args: Vec<String> = std::env::args().collect();
    let mut dir = PathBuf::from(".");
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if (arg == "-C" || arg == "--dir") && i + 1 < args.len() {
            dir = PathBuf::from(&args[i + 1]);
            i += 1;
        } else if let Some(d) = arg.strip_prefix("--dir=") {
            dir = PathBuf::from(d);
        } else if let Some(d) = arg.strip_prefix("-C").filter(|d| !d.is_empty()) {
            dir = PathBuf::from(d);
        }
        i += 1;
    }
    dir
}

/// What completion knows of the config: its placements when it loads (a sensitive variable
/// without a value is usual at a prompt, and then only the block labels are known).
struct Known {
    addresses: Vec<String>,
    hosts: Vec<String>,
    backends: Vec<String>,
    models: Vec<String>,
}

fn known() -> Known {
    let dir = config_dir();
    let vars = VarInputs {
        env: VarInputs::env_from_process(),
        ..VarInputs::default()
    };
    if let Ok(ws) = Workspace::open(&dir, &vars, &Previous::default()) {
        return Known {
            addresses: ws
                .placements
                .iter()
                .map(|p| p.address().to_string())
                .collect(),
            hosts: ws.config.hosts.iter().map(|h| h.id.value.clone()).collect(),
            backends: ws
                .config
                .backends
                .iter()
                .map(|b| b.id.value.clone())
                .collect(),
            models: ws
                .config
                .models
                .iter()
                .map(|m| m.id.value.clone())
                .collect(),
        };
    }
    let mut known = Known {
        addresses: Vec::new(),
        hosts: Vec::new(),
        backends: Vec::new(),
        models: Vec::new(),
    };
    let files = std::fs::read_dir(&dir).into_iter().flatten().flatten();
    for path in files.map(|e| e.path()) {
        if path.extension().is_none_or(|e| e != "hcl") {
            continue;
        }
        let Some(body) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| hcl_edit::parser::parse_body(&text).ok())
        else {
            continue;
        };
        for block in body.blocks() {
            let Some(label) = block.labels.first().map(|l| l.as_str().to_string()) else {
                continue;
            };
            match block.ident.as_str() {
                "host" => known.hosts.push(label),
                "backend" => known.backends.push(label),
                "model" => known.models.push(label),
                _ => {}
            }
        }
    }
    known
}

fn matching(current: &OsStr, items: impl IntoIterator<Item = String>) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    let mut items: Vec<String> = items
        .into_iter()
        .filter(|i| i.starts_with(current.as_ref()))
        .collect();
    items.sort();
    items.dedup();
    items.into_iter().map(CompletionCandidate::new).collect()
}

/// Resource addresses and the `model.ID`/`host.ID` shorthands `--target` and `--replace` take.
pub fn targets(current: &OsStr) -> Vec<CompletionCandidate> {
    let known = known();
    let mut items = known.addresses;
    items.extend(known.models.iter().map(|m| format!("model.{m}")));
    items.extend(known.hosts.iter().map(|h| format!("host.{h}")));
    matching(current, items)
}

/// The addresses of the config's placements and of the state's records (`state show`).
pub fn addresses(current: &OsStr) -> Vec<CompletionCandidate> {
    let mut items = known().addresses;
    items.extend(recorded());
    matching(current, items)
}

/// The addresses the state records, from its last committed snapshot (never waits for a lock).
fn recorded() -> Vec<String> {
    let Ok(settings) = crate::config::state_of(&config_dir(), &VarInputs::default()) else {
        return Vec::new();
    };
    let Ok(backend) = crate::session::backend(&settings) else {
        return Vec::new();
    };
    match backend.snapshot() {
        Ok(Some(snapshot)) => snapshot
            .resources
            .into_iter()
            .map(|r| r.address.into())
            .collect(),
        _ => Vec::new(),
    }
}

/// The ids of the config's models (`models show`, `select --model`).
pub fn model_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    matching(current, known().models)
}

/// The ids of the config's hosts (`hosts show`, `hosts test`, `hosts doctor`).
pub fn host_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    matching(current, known().hosts)
}

/// The ids of the config's backends (`backends show`).
pub fn backend_ids(current: &OsStr) -> Vec<CompletionCandidate> {
    matching(current, known().backends)
}

/// The script that registers berth's completions with `shell`: it calls `berth` back with
/// `COMPLETE=SHELL` each time the user presses Tab.
pub fn registration(shell: clap_complete::Shell) -> Result<String, String> {
    let name = shell.to_string();
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells
        .completer(&name)
        .ok_or_else(|| format!("no dynamic completion for {name}"))?;
    let exe = std::env::current_exe()
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "berth".to_string());
    let mut script = Vec::new();
    completer
        .write_registration(COMPLETE_ENV, "berth", "berth", &exe, &mut script)
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&script).into_owned())
}
