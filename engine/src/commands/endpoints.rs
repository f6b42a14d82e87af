//! `berth endpoints [--json]`: the OpenAI-compatible base URL of every model the state records
//! as ready.

use berth_state::{ResourceKind, ResourceStatus};
use serde_json::Value;

use super::Invocation;
use super::ui::table;
use crate::config::TransportKind;
use crate::error::Result;
use crate::exit_codes;
use crate::output::{self, endpoints::Endpoint};
use crate::session;

pub fn run(inv: &Invocation, json: bool) -> Result<u8> {
    let loaded = crate::config::load(&inv.dir, &inv.vars)
        .map_err(|invalid| crate::error::Error::InvalidConfig(Box::new(invalid)))?;
    let config = &loaded.config;
    let settings = config.settings.state(&config.dir);
    // Read-only: never waits behind an apply (the last committed state is shown then).
    let read =
        session::ReadState::read(session::backend(&settings).as_ref(), "endpoints", &inv.lock)?;
    read.note_if_busy();
    let mut items = Vec::new();
    for r in read.snapshot.resources {
        if r.kind != ResourceKind::Model || r.status != ResourceStatus::Ready {
            continue;
        }
        let Some(host) = config.host(&r.host) else {
            continue;
        };
        let address = match host.connection.transport {
            TransportKind::Local => "127.0.0.1".to_string(),
            TransportKind::Ssh => host.connection.host.clone().unwrap_or_default(),
        };
        let port = r
            .attributes
            .get("port")
            .and_then(Value::as_u64)
            .unwrap_or_default();
        let model = r
            .attributes
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let host_part = if address.contains(':') {
            format!("[{address}]")
        } else {
            address
        };
        items.push(Endpoint {
            address: r.address,
            host: r.host,
            model,
            url: format!("http://{host_part}:{port}/v1"),
        });
    }
    if json {
        outln!("{}", output::to_json(&items));
    } else if items.is_empty() {
        outln!("No model is ready. Run `berth apply` first.");
    } else {
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| vec![i.model.clone(), i.host.clone(), i.url.clone()])
            .collect();
        out!("{}", table(&["MODEL", "HOST", "URL"], &rows));
    }
    Ok(exit_codes::SUCCESS)
}
