//! One snapshot per `--json` document, from a real run of the binary: the config-only
//! documents on a one-host local config, `endpoints`, `state` and `drift` after a real apply
//! of one stand-in model. Values that differ between runs (paths, ports, times, timings) are
//! replaced before the snapshot.

mod common;

use common::{Fleet, Model, free_ports};
use serde_json::Value;

/// Replaces what differs from run to run with fixed markers.
fn normalise(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "updated_at" | "started_at" | "finished_at" | "connect_ms" | "command_ms"
                    | "ready_after_ms" | "duration_ms" | "elapsed_ms" | "elapsed_secs"
                    | "selected_at" | "running_since" => {
                        if !v.is_null() {
                            *v = Value::from(0)
                        }
                    }
                    "fingerprint" | "user" | "hostname" | "system" | "detail" | "pid"
                    | "start_ticks" => {
                        if !v.is_null() {
                            *v = Value::from(format!("[{key}]"));
                        }
                    }
                    _ => normalise(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalise),
        _ => {}
    }
}

/// `berth ARGS` on `fleet`, expecting `code`, as normalised JSON.
fn document(fleet: &Fleet, port: u16, args: &[&str], code: i32) -> Value {
    let run = fleet.berth(args);
    run.expect(code);
    let text = run
        .stdout
        .replace(&fleet.dir().display().to_string(), "[config]")
        .replace(&port.to_string(), "18080");
    let mut value: Value = serde_json::from_str(&text).expect("stdout is JSON");
    normalise(&mut value);
    value
}

#[test]
fn config_documents() {
    let port = free_ports(1)[0];
    let fleet = Fleet::new(&[Model::new("m", port, "")], 1);
    for (name, args) in [
        ("validate", vec!["validate", "--json"]),
        ("hosts", vec!["hosts", "--json"]),
        ("hosts-show", vec!["hosts", "show", "local", "--json"]),
        ("hosts-test", vec!["hosts", "test", "local", "--json"]),
        ("backends", vec!["backends", "--json"]),
        ("backends-show", vec!["backends", "show", "cpu", "--json"]),
        ("models", vec!["models", "--json"]),
        ("models-show", vec!["models", "show", "m", "--json"]),
    ] {
        insta::assert_json_snapshot!(name, document(&fleet, port, &args, 0));
    }
}

#[test]
fn applied_documents() {
    let port = free_ports(1)[0];
    let fleet = Fleet::new(&[Model::new("m", port, "")], 1);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    for (name, args) in [
        ("endpoints", vec!["endpoints", "--json"]),
        ("state-list", vec!["state", "list", "--json"]),
        (
            "state-show",
            vec!["state", "show", "model.m@local", "--json"],
        ),
        ("state-history", vec!["state", "history", "--json"]),
        ("drift", vec!["drift", "--json"]),
    ] {
        insta::assert_json_snapshot!(name, document(&fleet, port, &args, 0));
    }
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn group_documents() {
    let ports = free_ports(2);
    let (port, stray) = (ports[0], ports[1]);
    let fleet = Fleet::new(
        &[
            Model::new("a", port, "").group("g", true),
            Model::new("b", port, "").group("g", false),
        ],
        1,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    insta::assert_json_snapshot!(
        "select-dry-run",
        document(
            &fleet,
            port,
            &["select", "--model", "b", "--dry-run", "--json"],
            0
        )
    );
    insta::assert_json_snapshot!(
        "select",
        document(&fleet, port, &["select", "--model", "b", "--json"], 0)
    );
    insta::assert_json_snapshot!(
        "select-status",
        document(&fleet, port, &["select", "status", "--json"], 0)
    );
    let scan = stray.to_string();
    let health = document(
        &fleet,
        port,
        &["health", "--scan-ports", &scan, "--json"],
        0,
    );
    let text = health.to_string().replace(&scan, "18081");
    insta::assert_json_snapshot!(
        "health",
        serde_json::from_str::<Value>(&text).expect("JSON")
    );
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}
