//! The whole life of a fleet on the local host, as a user drives it: plan, apply, endpoints
//! answering over HTTP, a config change replacing exactly one model, a killed process showing
//! up as drift and being healed, saved plans (and stale ones refused), and destroy leaving
//! nothing behind. Real `berth`, real stand-in processes, real HTTP.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{Fleet, Model, addr, free_ports, get_models, wait_until};
use serde_json::Value;

const ALPHA: &str = "alpha-0.5b";
const BETA: &str = "beta.embed";
const GAMMA: &str = "gamma_chat";

fn models(ports: &[u16], beta_flags: &str, alpha_flags: &str) -> Vec<Model> {
    vec![
        Model::new(ALPHA, ports[0], alpha_flags).probe_interval(200),
        Model::new(BETA, ports[1], beta_flags).probe_interval(200),
        // The chat model needs the embedder first.
        Model::new(GAMMA, ports[2], "--load-secs 1")
            .depends_on(BETA)
            .probe_interval(200),
    ]
}

/// Every endpoint `berth endpoints --json` lists answers 200 on /v1/models with its model id;
/// returns the listed addresses.
#[track_caller]
fn endpoints_answer(fleet: &Fleet) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for e in fleet.endpoints() {
        let url = e["url"].as_str().expect("url");
        let model = e["model"].as_str().expect("model");
        let (status, body) =
            get_models(url).unwrap_or_else(|err| panic!("{url} does not answer: {err}"));
        assert_eq!(status, 200, "{url}/models: {body}");
        let json: Value = serde_json::from_str(&body).expect("JSON body");
        assert_eq!(json["data"][0]["id"], model, "{url}/models: {body}");
        seen.insert(e["address"].as_str().unwrap().to_string());
    }
    seen
}

/// Resources a JSON plan would change (neither `no_op` nor `verify`).
fn changed(plan: &Value) -> Vec<Value> {
    plan["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["action"] != "no_op" && r["action"] != "verify")
        .cloned()
        .collect()
}

#[test]
fn a_fleet_is_planned_applied_changed_healed_and_destroyed() {
    let ports = free_ports(3);
    let fleet = Fleet::new(&models(&ports, "--load-secs 1", "--load-secs 1"), 4);
    let all: BTreeSet<String> = [ALPHA, BETA, GAMMA].iter().map(|m| addr(m)).collect();

    // A first plan shows three creates, and says so in its exit code when asked.
    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout
            .contains("Plan: 3 to create, 0 to replace, 0 to update, 0 to destroy."),
        "{}",
        plan.stdout
    );
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(2);

    // Without --auto-approve and without a terminal, apply refuses and starts nothing.
    let refused = fleet.berth(&["apply"]);
    assert_ne!(refused.code, Some(0), "{}", refused.all());
    assert!(
        refused.stderr.contains("stdin is not a terminal")
            && refused.stderr.contains("--auto-approve"),
        "{}",
        refused.stderr
    );
    assert!(fleet.stand_ins().is_empty(), "{:?}", fleet.stand_ins());
    assert!(fleet.state_list().is_empty());

    // Apply brings all three up.
    let apply = fleet.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    assert!(apply.stdout.contains("Apply complete"), "{}", apply.stdout);
    eprintln!("first apply: {:.1}s", apply.elapsed.as_secs_f64());
    assert_eq!(endpoints_answer(&fleet), all);
    let by_port = fleet.stand_ins_by_port();
    assert_eq!(
        by_port.keys().copied().collect::<Vec<_>>(),
        {
            let mut p = ports.clone();
            p.sort();
            p
        },
        "{by_port:?}"
    );
    assert!(by_port.values().all(|pids| pids.len() == 1), "{by_port:?}");
    let statuses = fleet.statuses();
    for a in &all {
        assert_eq!(
            statuses.get(a).map(String::as_str),
            Some("ready"),
            "{statuses:?}"
        );
    }

    // Nothing changed: no changes, and drift is clean.
    let again = fleet.berth(&["plan", "--detailed-exitcode"]);
    again.expect(0);
    assert!(again.stdout.contains("No changes."), "{}", again.stdout);
    fleet.berth(&["drift"]).expect(0);

    // One model's command changes: exactly one replace, for that model, with the diff.
    let alpha_pid = fleet.stand_in(ports[0]).pid;
    let gamma_pid = fleet.stand_in(ports[2]).pid;
    let beta_pid = fleet.stand_in(ports[1]).pid;
    fleet.set_models(&models(&ports, "--load-secs 2", "--load-secs 1"));
    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    let replaced: Vec<&str> = plan
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("-/+"))
        .collect();
    assert_eq!(replaced.len(), 1, "{}", plan.stdout);
    assert!(replaced[0].contains(&addr(BETA)), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("replace: command changed"),
        "{}",
        plan.stdout
    );
    let minus = plan
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("- ") && l.contains("--load-secs"));
    let plus = plan
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("+ ") && l.contains("--load-secs"));
    assert!(
        minus.is_some_and(|l| l.trim_end().trim_end_matches(']').ends_with('1'))
            && plus.is_some_and(|l| l.trim_end().trim_end_matches(']').ends_with('2')),
        "the command diff is missing:\n{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 1 to replace, 0 to update, 0 to destroy."),
        "{}",
        plan.stdout
    );
    let json = fleet.berth(&["plan", "--format", "json"]);
    json.expect(0);
    let json = json.json();
    let changes = changed(&json);
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["address"], addr(BETA));
    assert_eq!(changes[0]["action"], "replace");
    let command = changes[0]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "command")
        .cloned()
        .unwrap_or_else(|| panic!("no command change: {:#}", changes[0]));
    assert!(
        command["before"]
            .as_str()
            .is_some_and(|b| b.ends_with("--load-secs 1")),
        "{command}"
    );
    assert!(
        command["after"]
            .as_str()
            .is_some_and(|a| a.ends_with("--load-secs 2")),
        "{command}"
    );
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(2);
    // Drift is clean but the config has unapplied changes: exit 3.
    let drift = fleet.berth(&["drift"]);
    drift.expect(3);
    assert!(drift.stdout.contains(&addr(BETA)), "{}", drift.stdout);

    let apply = fleet.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    assert_eq!(endpoints_answer(&fleet), all);
    // Only the changed model was restarted.
    assert_ne!(fleet.stand_in(ports[1]).pid, beta_pid);
    assert_eq!(fleet.stand_in(ports[0]).pid, alpha_pid);
    assert_eq!(fleet.stand_in(ports[2]).pid, gamma_pid);
    fleet.berth(&["drift"]).expect(0);

    // A model process dies: drift names it (exit 2), apply heals it.
    let victim = fleet.stand_in(ports[2]);
    common::kill_pid9(victim.pid);
    assert!(
        wait_until(Duration::from_secs(10), || fleet
            .stand_ins()
            .iter()
            .all(|s| s.port != ports[2])),
        "the killed stand-in is still there"
    );
    let drift = fleet.berth(&["drift"]);
    drift.expect(2);
    assert!(drift.stdout.contains(&addr(GAMMA)), "{}", drift.stdout);
    assert!(!drift.stdout.contains(&addr(ALPHA)), "{}", drift.stdout);
    let drift_json = fleet.berth(&["drift", "--json"]);
    drift_json.expect(2);
    let drift_json = drift_json.json();
    assert_eq!(drift_json["status"], "drift");
    let drifted: Vec<&str> = drift_json["drift"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["address"].as_str().unwrap())
        .collect();
    assert_eq!(drifted, [addr(GAMMA).as_str()], "{drift_json:#}");
    let heal = fleet.berth(&["apply", "--auto-approve"]);
    heal.expect(0);
    fleet.berth(&["drift"]).expect(0);
    assert_eq!(endpoints_answer(&fleet), all);
    assert_ne!(fleet.stand_in(ports[2]).pid, victim.pid);

    // A saved plan applies; applied again after the state moved on, it is refused as stale.
    fleet.set_models(&models(&ports, "--load-secs 2", "--load-secs 0.5"));
    let plan_file = fleet.dir().join("alpha.plan");
    let plan_file = plan_file.to_str().unwrap();
    let saved = fleet.berth(&["plan", "--out", plan_file]);
    saved.expect(0);
    assert!(saved.stdout.contains("Saved the plan"), "{}", saved.stdout);
    let old_alpha = fleet.stand_in(ports[0]).pid;
    let applied = fleet.berth(&["apply", plan_file]);
    applied.expect(0);
    assert_ne!(fleet.stand_in(ports[0]).pid, old_alpha);
    let shown = fleet.state_show(&addr(ALPHA));
    assert!(
        shown["attributes"]["command"]
            .as_str()
            .is_some_and(|c| c.ends_with("--load-secs 0.5")),
        "{shown:#}"
    );
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(0);
    let stale = fleet.berth(&["apply", plan_file]);
    assert_ne!(stale.code, Some(0), "{}", stale.all());
    assert!(
        stale.stderr.contains("state changed") && stale.stderr.contains("plan again"),
        "{}",
        stale.stderr
    );
    fleet.berth(&["drift"]).expect(0);
    assert_eq!(endpoints_answer(&fleet), all);

    // A saved plan is also refused when the config changed since it was made.
    let saved = fleet.berth(&["plan", "--out", plan_file]);
    saved.expect(0);
    fleet.set_models(&models(&ports, "--load-secs 2", "--load-secs 0.6"));
    let changed_config = fleet.berth(&["apply", plan_file]);
    assert_ne!(changed_config.code, Some(0), "{}", changed_config.all());
    assert!(
        changed_config.stderr.contains("config"),
        "{}",
        changed_config.stderr
    );
    assert_eq!(fleet.stand_in(ports[0]).flag("--load-secs"), Some("0.5"));
    fleet.set_models(&models(&ports, "--load-secs 2", "--load-secs 0.5"));
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Hosts carry the truth: a record removed from the state is re-adopted, not restarted.
    let beta_pid = fleet.stand_in(ports[1]).pid;
    let rm = fleet.berth(&["state", "rm", &addr(BETA)]);
    rm.expect(0);
    assert!(!fleet.statuses().contains_key(&addr(BETA)));
    let plan = fleet.berth(&["plan", "--format", "json"]);
    plan.expect(0);
    let changes = changed(&plan.json());
    assert_eq!(changes.len(), 1, "{changes:#?}");
    assert_eq!(changes[0]["address"], addr(BETA));
    assert_eq!(changes[0]["action"], "reuse", "{:#}", changes[0]);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(
        fleet.stand_in(ports[1]).pid,
        beta_pid,
        "the adopted server was restarted"
    );
    assert_eq!(endpoints_answer(&fleet), all);

    // A model dropped from the config is stopped and forgotten; the others keep running.
    let gamma_pid = fleet.stand_in(ports[2]).pid;
    let mut two = models(&ports, "--load-secs 2", "--load-secs 0.5");
    two.truncate(2);
    fleet.set_models(&two);
    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout
            .contains("Plan: 0 to create, 0 to replace, 0 to update, 1 to destroy."),
        "{}",
        plan.stdout
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert!(
        wait_until(Duration::from_secs(5), || !common::all_stand_ins()
            .iter()
            .any(|s| s.pid == gamma_pid)),
        "the dropped model still runs"
    );
    let two_addrs: BTreeSet<String> = [addr(ALPHA), addr(BETA)].into_iter().collect();
    assert_eq!(endpoints_answer(&fleet), two_addrs);
    assert!(!fleet.statuses().contains_key(&addr(GAMMA)));
    fleet.berth(&["drift"]).expect(0);
    fleet.set_models(&models(&ports, "--load-secs 2", "--load-secs 0.5"));

    // History has one entry per apply, readable.
    let history = fleet.berth(&["state", "history", "--json"]);
    history.expect(0);
    assert_eq!(history.json().as_array().map(Vec::len), Some(6));

    // Destroy leaves nothing: no process, no record, no deployment on the host.
    let destroy = fleet.berth(&["destroy", "--auto-approve"]);
    destroy.expect(0);
    assert!(
        destroy.stdout.contains("Destroy complete"),
        "{}",
        destroy.stdout
    );
    assert!(
        wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty()),
        "left running: {:?}",
        fleet.stand_ins()
    );
    assert!(fleet.state_list().is_empty(), "{:?}", fleet.state_list());
    assert!(fleet.endpoints().is_empty());
    assert!(fleet.deployments().is_empty(), "{:?}", fleet.deployments());
    for p in &ports {
        assert!(
            berth_test_support::http::get(&format!("http://127.0.0.1:{p}/v1/models")).is_err(),
            "port {p} still answers"
        );
    }
    // And the state agrees with the (empty) hosts.
    fleet.berth(&["drift"]).expect(3);
}

/// DESIGN.md section 4: "Destroy runs in reverse dependency order": a model is stopped before
/// the model it depends on.
#[test]
fn destroy_stops_a_dependent_before_what_it_depends_on() {
    let ports = free_ports(2);
    let models = [
        Model::new("embedder", ports[0], "--load-secs 0.2").probe_interval(100),
        Model::new("chat", ports[1], "--load-secs 0.2")
            .depends_on("embedder")
            .probe_interval(100),
    ];
    let fleet = Fleet::new(&models, 4);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(fleet.stand_ins().len(), 2, "{:?}", fleet.stand_ins());

    let destroy = fleet.berth(&["destroy", "--auto-approve"]);
    destroy.expect(0);
    let at = |needle: &str| {
        destroy
            .stdout
            .find(needle)
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{}", destroy.stdout))
    };
    let chat_done = at(&format!("{}: destroyed", addr("chat")));
    let embedder_starts = at(&format!("{}: destroying", addr("embedder")));
    assert!(
        chat_done < embedder_starts,
        "the embedder was stopped while the chat model that depends on it still ran:\n{}",
        destroy.stdout
    );
    assert!(fleet.stand_ins().is_empty(), "{:?}", fleet.stand_ins());
}
