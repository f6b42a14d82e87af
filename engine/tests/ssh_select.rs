//! `select`, `health` and `endpoints` against real OpenSSH hosts (network namespaces from
//! testdata/fleet) running the stand-in model server: a group switched on one host (reuse
//! with the same pid, restart after a kill, `--restart`, `--dry-run`, rollback after a member
//! that exits or never becomes ready), a group on two hosts that rolls back on one of them
//! only, and health's states, port scan, discovery and exit codes, with endpoints flagging a
//! server that listens on 127.0.0.1 only. Needs root (see ssh_common).

mod common;
mod ssh_common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ssh_common::{Fleet, HostSpec, ModelSpec, Project};

/// h1: one host with a group; h2-h3: a group on two hosts; h4-h5: health (h5 unreachable).
fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('s', 5)
}

/// The stand-in's path (hosts share this machine's file system outside /srv/berth).
fn server() -> std::path::PathBuf {
    berth_test_support::model_server()
}

/// The model ids answering at `port` on host `k` (empty when nothing answers ready).
fn serves(fleet: &Fleet, k: usize, port: u16) -> Vec<String> {
    match fleet.http_get(k, port, "/v1/models") {
        Ok((200, body)) => {
            let doc: Value = serde_json::from_str(&body).unwrap_or_default();
            doc["data"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .filter_map(|i| i["id"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// The stand-ins running on host `k` as (model, pid).
fn running(fleet: &Fleet, k: usize) -> Vec<(String, u32)> {
    let mut all: Vec<(String, u32)> = fleet
        .stand_ins(k)
        .into_iter()
        .map(|s| (s.flag("--model").unwrap_or_default().to_string(), s.pid))
        .collect();
    all.sort();
    all
}

fn group_row<'a>(status: &'a Value, host: &str) -> &'a Value {
    status["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|r| r["host"] == host))
        .unwrap_or_else(|| panic!("no group row for {host}: {status:#}"))
}

#[test]
fn a_group_on_one_host_switches_reuses_restarts_and_rolls_back() {
    let fleet = fleet();
    let port = 18200;
    let member = |id: &str, flags: &str, default: bool| {
        ModelSpec::new(id, port, flags, &["h1"], 1).group("main", default)
    };
    let models = [
        member("qwen", "--load-secs 1", true),
        member("llama", "--load-secs 1", false),
        member("mistral", "--load-secs 1", false),
        member("crashes", "--load-secs 0.5 --fail-load", false),
        member("stuck", "--load-secs 3600", false).probe_timeout(3),
    ];
    let project = Project::new(&[HostSpec::fleet(&fleet, 1)], &models, 4);
    project.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(serves(&fleet, 1, port), ["qwen"]);

    let before = project.berth(&["select", "status", "--json"]);
    before.expect(0);
    let doc = before.json();
    let row = group_row(&doc, "h1");
    assert_eq!(row["selected"], "qwen", "{doc:#}");
    assert_eq!(row["selected_by"], "default", "{doc:#}");
    assert_eq!(row["ready"], true, "{doc:#}");

    // A switch: the plan stops qwen, then starts llama; only llama runs and answers.
    let switch = project.berth(&["select", "--model", "llama"]);
    switch.expect(0);
    assert!(
        switch.stdout.contains("- model.qwen@h1") && switch.stdout.contains("+ model.llama@h1"),
        "{}",
        switch.all()
    );
    let llama: Vec<(String, u32)> = running(&fleet, 1);
    assert_eq!(llama.len(), 1, "{llama:?}");
    assert_eq!(llama[0].0, "llama");
    assert_eq!(serves(&fleet, 1, port), ["llama"]);
    let after = project.berth(&["select", "status", "--json"]).json();
    let row = group_row(&after, "h1");
    assert_eq!(row["selected"], "llama", "{after:#}");
    assert_eq!(row["selected_by"], "select", "{after:#}");
    assert_eq!(row["ready"], true, "{after:#}");
    assert_eq!(row["running"], serde_json::json!(["llama"]), "{after:#}");

    // Selecting the running member reuses it: the plan shows the probe, nothing restarts.
    let again = project.berth(&["select", "--model", "llama"]);
    again.expect(0);
    assert!(
        again.stdout.contains("= model.llama@h1") && again.stdout.contains("reuse"),
        "{}",
        again.all()
    );
    assert_eq!(running(&fleet, 1), llama, "the reuse restarted llama");

    // A dry run shows the switch and changes nothing.
    let dry = project.berth(&["select", "--model", "qwen", "--dry-run", "--json"]);
    dry.expect(0);
    let doc = dry.json();
    assert_eq!(doc["dry_run"], true, "{doc:#}");
    let actions: Vec<(String, String)> = doc["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["address"].as_str().unwrap().to_string(),
                s["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        actions.contains(&("model.llama@h1".into(), "destroy".into()))
            && actions.contains(&("model.qwen@h1".into(), "create".into())),
        "{doc:#}"
    );
    assert_eq!(running(&fleet, 1), llama, "the dry run changed the host");
    assert_eq!(
        group_row(&project.berth(&["select", "status", "--json"]).json(), "h1")["selected"],
        "llama"
    );

    // After its server was killed, a select restarts it.
    fleet.exec_ok(1, &format!("kill -9 {}", llama[0].1));
    assert!(ssh_common::wait_until(Duration::from_secs(10), || running(
        &fleet, 1
    )
    .is_empty()));
    let healed = project.berth(&["select", "--model", "llama"]);
    healed.expect(0);
    assert!(
        healed.stdout.contains("-/+ model.llama@h1"),
        "{}",
        healed.all()
    );
    let restarted = running(&fleet, 1);
    assert_eq!(restarted.len(), 1, "{restarted:?}");
    assert_ne!(restarted[0].1, llama[0].1);
    assert_eq!(serves(&fleet, 1, port), ["llama"]);

    // --restart stops and starts it although it answers.
    let forced = project.berth(&["select", "--model", "llama", "--restart"]);
    forced.expect(0);
    let now = running(&fleet, 1);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].1, restarted[0].1, "--restart kept the old process");
    assert_eq!(serves(&fleet, 1, port), ["llama"]);

    // A member whose server exits during its gate: llama comes back, exit 1, both named.
    let failed = project.berth(&["select", "--model", "crashes"]);
    failed.expect(1);
    let all = failed.all();
    assert!(
        all.contains("crashes failed; rolled back to llama"),
        "{all}"
    );
    assert!(
        all.contains("--fail-load"),
        "the log tail is missing: {all}"
    );
    assert_eq!(serves(&fleet, 1, port), ["llama"]);
    assert_eq!(running(&fleet, 1).len(), 1);

    // A member that never becomes ready: the same.
    let stuck = project.berth(&["select", "--model", "stuck", "--json"]);
    stuck.expect(1);
    let doc = stuck.json();
    assert_eq!(doc["hosts"][0]["outcome"], "rolled_back", "{doc:#}");
    assert_eq!(doc["hosts"][0]["from"], "llama", "{doc:#}");
    assert_eq!(doc["hosts"][0]["failure"]["step"], "probe", "{doc:#}");
    assert_eq!(serves(&fleet, 1, port), ["llama"]);
    let row = group_row(&project.berth(&["select", "status", "--json"]).json(), "h1").clone();
    assert_eq!(row["selected"], "llama");
    assert_eq!(row["ready"], true);

    // The selection holds for later plans: nothing switches back to the default.
    project.berth(&["plan", "--detailed-exitcode"]).expect(0);
    project.berth(&["drift"]).expect(0);

    // Unknown and ungrouped models.
    let unknown = project.berth(&["select", "--model", "lama"]);
    unknown.expect(1);
    assert!(
        unknown.stderr.contains("model not found: `lama`")
            && unknown.stderr.contains("did you mean `llama`?")
            && unknown.stderr.contains("qwen, llama, mistral"),
        "{}",
        unknown.all()
    );

    // Every select left a history entry: who, when, from, to, outcome.
    let history = project.berth(&["state", "history", "--json"]);
    history.expect(0);
    let entries = history.json();
    let selects: Vec<&Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "select")
        .collect();
    assert_eq!(selects.len(), 6, "{entries:#}");
    let last = selects.last().unwrap();
    let line = last["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["action"]
                .as_str()
                .unwrap_or_default()
                .starts_with("select")
        })
        .unwrap_or_else(|| panic!("{last:#}"));
    assert_eq!(line["address"], "model.stuck@h1");
    assert_eq!(line["action"], "select (from llama, group main)");
    assert_eq!(line["outcome"], "failed; rolled back to llama");
    assert!(
        last["user"].is_string() && last["finished_at"].as_u64() >= last["started_at"].as_u64()
    );

    project.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(running(&fleet, 1).is_empty());
}

#[test]
fn a_group_on_two_hosts_switches_both_and_rolls_back_only_the_host_that_failed() {
    let fleet = fleet();
    let port = 18210;
    // `flaky` runs through a script in each host's own /srv/berth: it loads on h2 and fails to
    // load on h3.
    let script = |k: usize, name: &str, extra: &str| {
        fleet.exec_ok(
            k,
            &format!(
                "mkdir -p /srv/berth && printf '#!/bin/sh\\nexec {} \"$@\"{extra}\\n' > /srv/berth/{name} && chmod +x /srv/berth/{name}",
                server().display()
            ),
        );
    };
    for (k, extra) in [(2, ""), (3, " --fail-load")] {
        script(k, "flaky-server", extra);
        script(k, "gamma-server", "");
    }
    let member = |id: &str, flags: &str, default: bool| {
        ModelSpec::new(id, port, flags, &["h2", "h3"], 2).group("pair", default)
    };
    let models = [
        member("alpha", "--load-secs 0.5", true),
        member("beta", "--load-secs 0.5", false),
        member("flaky", "--load-secs 0.5", false).server("/srv/berth/flaky-server"),
        member("gamma", "--load-secs 0.5", false).server("/srv/berth/gamma-server"),
    ];
    let project = Project::new(
        &[HostSpec::fleet(&fleet, 2), HostSpec::fleet(&fleet, 3)],
        &models,
        4,
    );
    project.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(serves(&fleet, 2, port), ["alpha"]);
    assert_eq!(serves(&fleet, 3, port), ["alpha"]);

    project.berth(&["select", "--model", "beta"]).expect(0);
    for k in [2, 3] {
        assert_eq!(serves(&fleet, k, port), ["beta"], "h{k}");
        assert_eq!(running(&fleet, k).len(), 1, "h{k}");
    }

    let split = project.berth(&["select", "--model", "flaky", "--json"]);
    split.expect(1);
    let doc = split.json();
    let outcome = |host: &str| {
        doc["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .map(|h| h["outcome"].clone())
    };
    assert_eq!(outcome("h2"), Some(Value::from("switched")), "{doc:#}");
    assert_eq!(outcome("h3"), Some(Value::from("rolled_back")), "{doc:#}");
    assert_eq!(serves(&fleet, 2, port), ["flaky"]);
    assert_eq!(serves(&fleet, 3, port), ["beta"]);

    let status = project.berth(&["select", "status", "--json"]).json();
    assert_eq!(group_row(&status, "h2")["selected"], "flaky", "{status:#}");
    assert_eq!(group_row(&status, "h3")["selected"], "beta", "{status:#}");
    assert_eq!(group_row(&status, "h2")["ready"], true, "{status:#}");
    assert_eq!(group_row(&status, "h3")["ready"], true, "{status:#}");
    let text = project.berth(&["select", "status"]);
    text.expect(0);
    assert!(
        text.stdout.contains("flaky (select)") && text.stdout.contains("beta (select)"),
        "{}",
        text.stdout
    );
    project.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // A rollback that fails too: gamma runs on both hosts, then stops loading on h3 (its script
    // changed underneath it); flaky fails on h3 and gamma cannot come back there. Both failures
    // are reported, the state says so, and `drift` names the member to bring back.
    project.berth(&["select", "--model", "gamma"]).expect(0);
    for k in [2, 3] {
        assert_eq!(serves(&fleet, k, port), ["gamma"], "h{k}");
    }
    script(3, "gamma-server", " --fail-load");
    let both = project.berth(&["select", "--model", "flaky", "--json"]);
    both.expect(1);
    let doc = both.json();
    let h3 = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "h3")
        .unwrap_or_else(|| panic!("{doc:#}"));
    assert_eq!(h3["outcome"], "rollback_failed", "{doc:#}");
    assert_eq!(h3["from"], "gamma", "{doc:#}");
    assert!(h3["failure"]["step"].is_string(), "{doc:#}");
    assert!(h3["rollback_failure"]["step"].is_string(), "{doc:#}");
    assert_eq!(serves(&fleet, 2, port), ["flaky"]);
    assert!(running(&fleet, 3).is_empty(), "{:?}", running(&fleet, 3));
    let text = project.berth(&["select", "--model", "flaky"]);
    text.expect(1);
    let all = text.all();
    assert!(
        all.contains("flaky failed, and the rollback to gamma failed too")
            && all.contains("error: flaky on host h3")
            && all.contains("error: gamma on host h3"),
        "{all}"
    );
    let history = project.berth(&["state", "history", "--json"]).json();
    let outcomes: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "select")
        .flat_map(|e| e["changes"].as_array().unwrap())
        .filter(|c| c["address"] == "model.flaky@h3")
        .filter_map(|c| c["outcome"].as_str())
        .collect();
    assert!(
        outcomes.contains(&"failed; rollback to gamma failed too"),
        "{outcomes:?}"
    );
    let status = project.berth(&["select", "status", "--json"]).json();
    assert_eq!(group_row(&status, "h3")["ready"], false, "{status:#}");
    // The failed member is what the next apply converges: once its server loads again, it
    // runs there.
    let drift = project.berth(&["drift"]);
    drift.expect(3);
    assert!(
        drift
            .stdout
            .contains("model.gamma@h3: the last apply failed"),
        "{}",
        drift.stdout
    );
    script(3, "gamma-server", "");
    project.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(serves(&fleet, 3, port), ["gamma"]);
    assert_eq!(serves(&fleet, 2, port), ["flaky"]);
    project.berth(&["destroy", "--auto-approve"]).expect(0);
}

/// Starts a stand-in by hand on host `k` (not through berth); returns its pid.
fn start_by_hand(fleet: &Fleet, k: usize, args: &str) -> u32 {
    let out = fleet.exec_ok(
        k,
        &format!(
            "setsid {} {args} >/dev/null 2>&1 </dev/null & echo $!",
            server().display()
        ),
    );
    out.trim().parse().expect("a pid")
}

#[test]
fn health_classifies_scans_discovers_and_endpoints_flag_loopback_servers() {
    let fleet = fleet();
    let on_h4 = |id: &str, port: u16| ModelSpec::new(id, port, "", &["h4"], 1);
    let models = [
        on_h4("ready", 18220),
        on_h4("loading", 18221),
        on_h4("down", 18222),
        on_h4("broken", 18223),
        on_h4("open", 18224),
    ];
    let pids: Vec<u32> = [
        "--port 18220 --model ready",
        "--port 18221 --model loading --load-secs 3600",
        "--port 18223 --model broken --answer-status 500",
        "--port 18224 --model open --host 0.0.0.0",
        "--port 18230 --model stray",
    ]
    .iter()
    .map(|a| start_by_hand(&fleet, 4, a))
    .collect();
    assert!(ssh_common::wait_until(Duration::from_secs(10), || {
        serves(&fleet, 4, 18230) == ["stray"] && serves(&fleet, 4, 18224) == ["open"]
    }));
    let project = Project::new(&[HostSpec::fleet(&fleet, 4)], &models, 4);

    let health = project.berth(&["health", "--scan-ports", "18228-18232", "--json"]);
    health.expect(2);
    let doc = health.json();
    let state = |model: &str| {
        doc["hosts"][0]["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model"] == model)
            .map(|m| (m["state"].clone(), m["http_status"].clone()))
            .unwrap_or_else(|| panic!("{model} missing: {doc:#}"))
    };
    assert_eq!(state("ready"), ("ready".into(), 200.into()), "{doc:#}");
    assert_eq!(state("loading"), ("loading".into(), 503.into()), "{doc:#}");
    assert_eq!(state("down"), ("down".into(), Value::Null), "{doc:#}");
    assert_eq!(state("broken"), ("unknown".into(), 500.into()), "{doc:#}");
    assert_eq!(
        doc["discovered"],
        serde_json::json!([{"host": "h4", "port": 18230, "models": ["stray"]}]),
        "{doc:#}"
    );
    insta::assert_json_snapshot!("health_h4", doc);

    // The text view: a table and the discovered section; a list works as well as a range.
    let text = project.berth(&["health", "--scan-ports", "18230,18231"]);
    text.expect(2);
    assert!(
        text.stdout.contains("Loaded (discovered)") && text.stdout.contains("stray"),
        "{}",
        text.all()
    );
    let missed = project.berth(&["health", "--scan-ports", "18231,18232", "--json"]);
    assert_eq!(missed.json()["discovered"], serde_json::json!([]));

    // Endpoints: exactly the ready models; the one bound to 127.0.0.1 is flagged.
    let endpoints = project.endpoints();
    let listed: Vec<(&str, bool)> = endpoints
        .iter()
        .map(|e| {
            (
                e["model"].as_str().unwrap(),
                e["loopback_only"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, [("open", false), ("ready", true)], "{endpoints:#?}");
    let ready = endpoints.iter().find(|e| e["model"] == "ready").unwrap();
    assert!(
        ready["hint"].as_str().unwrap().contains("--host 0.0.0.0"),
        "{ready:#}"
    );
    assert_eq!(ready["serves"], serde_json::json!(["ready"]));
    let text = project.berth(&["endpoints"]);
    text.expect(0);
    assert!(text.stdout.contains("(127.0.0.1 only)"), "{}", text.all());

    // Only ready models: exit 0.
    let ready_only = Project::new(
        &[HostSpec::fleet(&fleet, 4)],
        &[on_h4("ready", 18220), on_h4("open", 18224)],
        4,
    );
    ready_only.berth(&["health"]).expect(0);

    // An unreachable host costs its connect timeout, not the whole command: exit 1.
    fleet.block_host(5);
    let mut h5 = HostSpec::fleet(&fleet, 5);
    h5.connect_timeout_sec = 2;
    let with_unreachable = Project::new(
        &[HostSpec::fleet(&fleet, 4), h5],
        &[
            on_h4("ready", 18220),
            ModelSpec::new("far", 18225, "", &["h5"], 1),
        ],
        4,
    );
    let started = Instant::now();
    let run = with_unreachable.berth(&["health", "--json"]);
    let took = started.elapsed();
    fleet.unblock_host(5);
    run.expect(1);
    let doc = run.json();
    let h5 = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "h5")
        .unwrap();
    assert_eq!(h5["reachable"], false, "{doc:#}");
    assert_eq!(h5["models"][0]["state"], "unknown", "{doc:#}");
    let h4 = doc["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["host"] == "h4")
        .unwrap();
    assert_eq!(h4["models"][0]["state"], "ready", "{doc:#}");
    assert!(took < Duration::from_secs(6), "health took {took:?}");

    for pid in pids {
        fleet.exec(4, &format!("kill -9 {pid}"));
    }
}
