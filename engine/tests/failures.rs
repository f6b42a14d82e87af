//! Failure isolation during apply: a server that dies during its probe gate fails at once with
//! its log tail, one that never gets ready fails at its timeout, what depends on a failure is
//! skipped, independent models still come up, the state records the failures so the next plan
//! replaces them, and fixing the config converges.

mod common;

use std::time::Duration;

use common::{Fleet, Model, addr, free_ports, get_models, wait_until};
use serde_json::Value;

/// B's probe timeout: the whole failed apply must end well within twice this.
const B_TIMEOUT: u64 = 3;

fn models(ports: &[u16], broken: bool) -> Vec<Model> {
    let (a, b) = if broken {
        ("--exit-after-secs 0.5 --load-secs 5", "--hang")
    } else {
        ("--load-secs 0.5", "--load-secs 0.5")
    };
    vec![
        // A long timeout: A must fail because it exits, not because the gate timed out.
        Model::new("a", ports[0], a).probe_timeout(60),
        Model::new("b", ports[1], b).probe_timeout(B_TIMEOUT),
        Model::new("c", ports[2], "--load-secs 0.2").depends_on("a"),
        Model::new("d", ports[3], "--load-secs 0.5"),
    ]
}

fn plan_actions(plan: &Value) -> Vec<(String, String, String)> {
    plan["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["kind"] == "model")
        .map(|r| {
            (
                r["address"].as_str().unwrap().to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["cause"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The text of the failure report of `address` on stderr: from its `error:` line to the next.
fn failure_report<'a>(stderr: &'a str, address: &str) -> &'a str {
    let start = stderr
        .find(&format!("error: {address} "))
        .unwrap_or_else(|| panic!("no failure reported for {address}:\n{stderr}"));
    let rest = &stderr[start..];
    let end = rest[1..].find("\nerror: ").map_or(rest.len(), |i| i + 1);
    &rest[..end]
}

#[test]
fn failures_are_isolated_reported_recorded_and_replaced() {
    let ports = free_ports(4);
    let fleet = Fleet::new(&models(&ports, true), 4);

    let apply = fleet.berth(&["apply", "--auto-approve"]);
    apply.expect(1);
    eprintln!("failed apply took {:.1}s", apply.elapsed.as_secs_f64());
    // A's exit is noticed at once (its timeout is 60 s); B fails at its 3 s timeout.
    assert!(
        apply.elapsed < Duration::from_secs(2 * B_TIMEOUT + 4),
        "apply took {:.1}s:\n{}",
        apply.elapsed.as_secs_f64(),
        apply.all()
    );

    // The report names A and B with host, step and log tail; C is skipped; D is done.
    let a = failure_report(&apply.stderr, &addr("a"));
    assert!(a.contains("on host local"), "{a}");
    assert!(a.contains("step probe"), "{a}");
    assert!(a.contains("exited"), "{a}");
    assert!(a.contains("log tail"), "{a}");
    assert!(
        a.contains("exiting with status 3") && a.contains("simulated crash"),
        "A's log tail lacks the stand-in's exit message:\n{a}"
    );
    let b = failure_report(&apply.stderr, &addr("b"));
    assert!(b.contains("on host local"), "{b}");
    assert!(b.contains("step probe"), "{b}");
    assert!(b.contains("not ready"), "{b}");
    assert!(b.contains("log tail") && b.contains("hanging"), "{b}");
    assert!(
        apply.stdout.contains(&format!(
            "{}: skipped ({} did not finish)",
            addr("c"),
            addr("a")
        )),
        "{}",
        apply.stdout
    );
    assert!(
        apply.stdout.contains(&format!("{}: created", addr("d"))),
        "{}",
        apply.stdout
    );
    assert!(
        apply.stdout.contains("2 failed, 1 skipped"),
        "{}",
        apply.stdout
    );
    // A failure at 0.5 s is reported before B's at 3 s.
    let a_line = apply
        .stdout
        .find(&format!("{}: failed at probe", addr("a")));
    let b_line = apply
        .stdout
        .find(&format!("{}: failed at probe", addr("b")));
    assert!(
        matches!((a_line, b_line), (Some(x), Some(y)) if x < y),
        "{}",
        apply.stdout
    );

    // D answers; only D is an endpoint.
    let endpoints = fleet.endpoints();
    assert_eq!(endpoints.len(), 1, "{endpoints:#?}");
    assert_eq!(endpoints[0]["address"], addr("d"));
    let (status, body) = get_models(endpoints[0]["url"].as_str().unwrap()).expect("D answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"d\""), "{body}");

    // The state: A and B failed at probe, D ready, C absent.
    let statuses = fleet.statuses();
    assert_eq!(
        statuses.get(&addr("a")).map(String::as_str),
        Some("failed"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(&addr("b")).map(String::as_str),
        Some("failed"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get(&addr("d")).map(String::as_str),
        Some("ready"),
        "{statuses:?}"
    );
    assert!(!statuses.contains_key(&addr("c")), "{statuses:?}");
    for m in ["a", "b"] {
        let record = fleet.state_show(&addr(m));
        assert_eq!(record["status"]["state"], "failed", "{record:#}");
        assert_eq!(record["status"]["step"], "probe", "{record:#}");
    }
    let listed = fleet.berth(&["state", "list"]);
    listed.expect(0);
    assert!(
        listed.stdout.contains("failed at probe"),
        "{}",
        listed.stdout
    );

    // Nothing fixed: the plan replaces A and B because they failed, keeps D, creates C.
    let plan = fleet.berth(&["plan", "--format", "json"]);
    plan.expect(0);
    let mut actions = plan_actions(&plan.json());
    actions.sort();
    assert_eq!(
        actions,
        [
            (addr("a"), "replace".into(), "failed".into()),
            (addr("b"), "replace".into(), "failed".into()),
            (addr("c"), "create".into(), "config".into()),
            (addr("d"), "no_op".into(), "config".into()),
        ],
    );
    // Drift: nothing drifted from what was applied, but the failures are pending changes.
    let drift = fleet.berth(&["drift"]);
    drift.expect(3);
    assert!(drift.stdout.contains(&addr("a")), "{}", drift.stdout);

    // Fix A and B: everything converges.
    let d_pid = fleet.stand_in(ports[3]).pid;
    fleet.set_models(&models(&ports, false));
    let fixed = fleet.berth(&["apply", "--auto-approve"]);
    fixed.expect(0);
    let statuses = fleet.statuses();
    for m in ["a", "b", "c", "d"] {
        assert_eq!(
            statuses.get(&addr(m)).map(String::as_str),
            Some("ready"),
            "{statuses:?}"
        );
    }
    let endpoints = fleet.endpoints();
    assert_eq!(endpoints.len(), 4, "{endpoints:#?}");
    for e in &endpoints {
        let url = e["url"].as_str().unwrap();
        let (status, body) = get_models(url).unwrap_or_else(|err| panic!("{url}: {err}"));
        assert_eq!(status, 200, "{url}: {body}");
    }
    fleet.berth(&["drift"]).expect(0);
    // One server per port: B's hung server was replaced, not left beside the new one; D was
    // not restarted.
    let by_port = fleet.stand_ins_by_port();
    assert_eq!(by_port.len(), 4, "{by_port:?}");
    assert!(by_port.values().all(|p| p.len() == 1), "{by_port:?}");
    assert_eq!(fleet.stand_in(ports[3]).pid, d_pid);

    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty()),
        "{:?}",
        fleet.stand_ins()
    );
    assert!(fleet.state_list().is_empty());
}

/// A server that cannot even start listening (its port is taken) fails the gate with the
/// reason in its log tail, and the model that holds the port is left alone.
#[test]
fn a_port_taken_by_someone_else_fails_with_the_servers_own_message() {
    let ports = free_ports(1);
    // Someone else listens on the port first.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", ports[0])).expect("bind");
    let fleet = Fleet::new(
        &[Model::new("late", ports[0], "--load-secs 0.2").probe_timeout(30)],
        2,
    );
    let apply = fleet.berth(&["apply", "--auto-approve"]);
    apply.expect(1);
    assert!(
        apply.elapsed < Duration::from_secs(15),
        "the exit was not noticed: {:.1}s",
        apply.elapsed.as_secs_f64()
    );
    let report = failure_report(&apply.stderr, &addr("late"));
    assert!(report.contains("cannot listen"), "{report}");
    assert_eq!(
        fleet.statuses().get(&addr("late")).map(String::as_str),
        Some("failed")
    );
    drop(squatter);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(
        fleet.statuses().get(&addr("late")).map(String::as_str),
        Some("ready")
    );
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}
