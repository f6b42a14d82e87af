//! `berth state list | show A | rm A | history`: inspect and edit the state. `rm` forgets a
//! resource without touching its host.

use super::Invocation;
use super::ui::{Ui, table};
use crate::error::{Error, Result};
use crate::exit_codes;
use crate::output::{self, state};
use crate::session::{ReadState, Session};
use berth_state::StateBackend as _;

/// The configured state's backend, from the `settings` block alone.
fn backend(inv: &Invocation) -> Result<Box<dyn berth_state::StateBackend>> {
    let state = crate::config::state_of(&inv.dir, &inv.vars)
        .map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))?;
    crate::session::backend(&state)
}

fn age(secs: u64) -> String {
    let ago = crate::now().saturating_sub(secs);
    humantime::format_duration(std::time::Duration::from_secs(ago)).to_string() + " ago"
}

/// What `berth state` does.
#[derive(Debug, Clone)]
pub enum StateCommand {
    List,
    Show {
        address: String,
    },
    Rm {
        address: Vec<String>,
    },
    History,
    /// Create berth's tables and the workspace, or print the SQL for them.
    Init {
        print_sql: bool,
    },
    /// Copy the sled state into the configured postgres workspace.
    MigrateToPostgres,
}

pub fn run(inv: &Invocation, command: &StateCommand, json: bool, ui: &Ui) -> Result<u8> {
    match command {
        StateCommand::Rm { address } => return remove(inv, address),
        StateCommand::Init { print_sql } => return init(inv, *print_sql),
        StateCommand::MigrateToPostgres => return migrate_to_postgres(inv),
        _ => {}
    }
    let operation = match command {
        StateCommand::List => "state list",
        StateCommand::Show { .. } => "state show",
        _ => "state history",
    };
    // Read-only: never waits behind an apply (the last committed state is shown then).
    let read = ReadState::read(backend(inv)?.as_ref(), operation, &inv.lock)?;
    read.note_if_busy();
    let state = read.snapshot;
    match command {
        StateCommand::List => {
            let records: Vec<state::ListItem> =
                state.resources.iter().map(state::ListItem::from).collect();
            if json {
                outln!("{}", output::to_json(&records));
            } else if records.is_empty() {
                outln!("The state is empty.");
            } else {
                let rows: Vec<Vec<String>> = records
                    .iter()
                    .map(|r| {
                        let status = match &r.status {
                            state::Status::Ready => ui.green("ready"),
                            state::Status::Failed { step, .. } => {
                                ui.red(&format!("failed at {step}"))
                            }
                        };
                        vec![r.address.clone(), status, age(r.updated_at)]
                    })
                    .collect();
                out!("{}", table(&["ADDRESS", "STATUS", "UPDATED"], &rows));
            }
        }
        StateCommand::Show { address } => {
            let Some(record) = state.resources.iter().find(|r| r.address == *address) else {
                let help = crate::config::did_you_mean(
                    address,
                    state.resources.iter().map(|r| r.address.as_str()),
                )
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "list them with `berth state list`".into());
                return Err(Error::NotFound {
                    kind: "resource",
                    place: "the state",
                    id: address.clone(),
                    help,
                });
            };
            outln!("{}", output::to_json(&state::Record::from(record.clone())));
        }
        StateCommand::Rm { .. } | StateCommand::Init { .. } | StateCommand::MigrateToPostgres => {
            unreachable!("handled above")
        }
        StateCommand::History => {
            let history: Vec<state::HistoryEntry> = state
                .history
                .into_iter()
                .map(state::HistoryEntry::from)
                .collect();
            if json {
                outln!("{}", output::to_json(&history));
            } else if history.is_empty() {
                outln!("Nothing was applied yet.");
            } else {
                for (i, h) in history.iter().enumerate() {
                    if i > 0 {
                        outln!();
                    }
                    let result = if h.interrupted {
                        format!("{}: {}", ui.yellow("interrupted"), h.tally())
                    } else {
                        h.tally()
                    };
                    outln!(
                        "{} {} by {}@{}, {}: {result}",
                        ui.bold(&format!("#{}", h.serial)),
                        h.operation,
                        h.user,
                        h.hostname,
                        age(h.finished_at),
                    );
                    let rows: Vec<Vec<String>> = h
                        .changes
                        .iter()
                        .map(|c| vec![String::new(), c.outcome.clone(), c.address.clone()])
                        .collect();
                    if !rows.is_empty() {
                        let text = table(&["", "OUTCOME", "ADDRESS"], &rows);
                        // The header is for alignment only.
                        out!("{}", text.split_once('\n').map_or("", |(_, rest)| rest));
                    }
                }
            }
        }
    }
    Ok(exit_codes::SUCCESS)
}

/// `berth state rm ADDRESS...`: under the lock, since it changes the state.
fn remove(inv: &Invocation, address: &[String]) -> Result<u8> {
    let session = open_session(backend(inv)?, "state rm", &inv.lock)?;
    let store = session.store.clone();
    for a in address {
        if store.remove_resource(a)? {
            outln!("Removed {a} from the state (what runs on its host was left alone).");
        } else {
            return Err(Error::NotFound {
                kind: "resource",
                place: "the state",
                id: a.clone(),
                help: "list them with `berth state list`".into(),
            });
        }
    }
    Ok(exit_codes::SUCCESS)
}

fn state_settings(inv: &Invocation) -> Result<crate::config::StateSettings> {
    crate::config::state_of(&inv.dir, &inv.vars)
        .map_err(|invalid| Error::InvalidConfig(Box::new(invalid)))
}

/// `berth state init [--print-sql]`
fn init(inv: &Invocation, print_sql: bool) -> Result<u8> {
    let state = state_settings(inv)?;
    if print_sql {
        // The user berth logs in as, when a URL is at hand; the SQL itself needs no connection.
        let user = crate::session::pg_url_text(&state)
            .and_then(|url| berth_state::PgUrl::parse(&url).ok())
            .map(|url| url.user().to_owned())
            .unwrap_or_else(|| "berth".to_owned());
        out!("{}", berth_state::schema_sql(&user));
        return Ok(exit_codes::SUCCESS);
    }
    match state.backend {
        crate::config::StateBackendKind::Postgres => {
            let backend = crate::session::pg_backend(&state, true)?;
            let meta = backend.init()?;
            outln!(
                "The {} is ready (lineage {}, serial {}).",
                backend.describe(),
                meta.lineage,
                meta.serial
            );
        }
        crate::config::StateBackendKind::Sled => {
            let session = open_session(crate::session::backend(&state)?, "state init", &inv.lock)?;
            let meta = session.store.meta()?;
            outln!(
                "The {} is ready (lineage {}, serial {}).",
                session.backend.describe(),
                meta.lineage,
                meta.serial
            );
        }
    }
    Ok(exit_codes::SUCCESS)
}

/// `berth state migrate --to postgres`: copies the sled state in the state directory into the
/// configured postgres workspace, holding both locks; the sled state is left as it was.
fn migrate_to_postgres(inv: &Invocation) -> Result<u8> {
    let state = state_settings(inv)?;
    if state.backend != crate::config::StateBackendKind::Postgres {
        return Err(Error::Usage {
            message: "the configured state backend is not postgres: there is nowhere to copy to"
                .into(),
            help: "set `settings { state { backend = \"postgres\" workspace = \"NAME\" } }` (and BERTH_PG_URL), then run this again".into(),
        });
    }
    if !state.dir.join("db").is_dir() {
        return Err(Error::Usage {
            message: format!("there is no sled state in {} to copy", state.dir.display()),
            help: "run this in the config directory whose `.berth` (or `state { dir }`) holds the sled state".into(),
        });
    }
    let pg = crate::session::pg_backend(&state, true)?;
    let sled = open_session(
        Box::new(berth_state::SledBackend::new(&state.dir)),
        "state migrate",
        &inv.lock,
    )?;
    let snapshot = berth_state::Snapshot::of(&*sled.store)?;
    let meta = pg.import(&snapshot, &inv.lock)?;
    outln!(
        "Copied {} resource(s), {} selection(s) and {} history entr{} from the {} into the {} (lineage {}, serial {}).",
        snapshot.resources.len(),
        snapshot.selections.len(),
        snapshot.history.len(),
        if snapshot.history.len() == 1 {
            "y"
        } else {
            "ies"
        },
        sled.backend.describe(),
        pg.describe(),
        meta.lineage,
        meta.serial
    );
    outln!(
        "The sled state was left as it was; berth now uses the postgres workspace. Remove {} once you no longer need it.",
        state.dir.display()
    );
    Ok(exit_codes::SUCCESS)
}

/// `berth force-unlock ID`
pub fn force_unlock(inv: &Invocation, id: &str) -> Result<u8> {
    let backend = backend(inv)?;
    let info = backend.force_unlock(id)?;
    outln!("Removed {info} from the {}.", backend.describe());
    Ok(exit_codes::SUCCESS)
}

/// `berth force-unlock --host HOST`: removes the host lease on HOST, naming its holder. The
/// holder's next renewal finds the lease gone and fails its remaining steps on that host.
pub fn force_unlock_host(inv: &Invocation, host: &str) -> Result<u8> {
    let ws = crate::workspace::Workspace::open(
        &inv.dir,
        &inv.vars,
        &crate::placement::Previous::default(),
    )?;
    let run_dir = crate::commands::doctor::host_or_err(&ws, host)?
        .run_dir
        .clone();
    let conns = crate::connections::Connections::new(&ws.config);
    let removed = inv
        .block_on(conns.unlock_host(host, &run_dir))
        .map_err(|message| Error::HostUnlock {
            host: host.to_string(),
            message,
        })?;
    match removed {
        Some(holder) => outln!(
            "Removed the host lock on {host} ({run_dir}/.lock), held by {holder}. Its holder \
             fails its remaining steps on {host} at its next renewal."
        ),
        None => outln!("Host {host} has no host lock to remove ({run_dir}/.lock names no one)."),
    }
    Ok(exit_codes::SUCCESS)
}

/// Opens the state under its lock, saying when a stale lock was taken over.
fn open_session(
    backend: Box<dyn berth_state::StateBackend>,
    operation: &str,
    lock: &berth_state::LockOptions,
) -> Result<Session> {
    let session = Session::open(backend, operation, lock)?;
    if let Some(previous) = &session.took_over {
        errln!(
            "warning: {}",
            crate::ops::Notice::StaleStateLockTakenOver {
                previous: previous.clone()
            }
        );
    }
    Ok(session)
}
