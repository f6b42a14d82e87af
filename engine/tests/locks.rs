//! berth's state lock as two operators see it: a second command fails fast naming the holder,
//! or waits with `--lock-timeout`; an apply killed mid-gate leaves a stale lock that plain
//! commands report and `--force` reclaims, after which apply converges without orphans; and
//! `force-unlock` only removes the lock it is told about, of a holder that is gone.

mod common;

use std::time::Duration;

use berth_state::StateBackend;
use common::{Background, Fleet, Model, addr, free_ports, get_models, wait_until};
use serde_json::Value;

/// The holder's id and pid from the lock file, once an `operation` holds it.
fn wait_for_holder(fleet: &Fleet, operation: &str) -> (String, u64) {
    let mut holder = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            holder = fleet.lock_holder().unwrap_or(Value::Null);
            holder["operation"] == operation
        }),
        "no {operation} took the lock; lock file holds {holder}"
    );
    (
        holder["id"].as_str().expect("lock id").to_string(),
        holder["pid"].as_u64().expect("lock pid"),
    )
}

/// Starts `berth apply` on `fleet` and waits until it holds the lock and gates model `m`. Returns the running apply, its lock id and pid.
fn apply_in_its_gate(fleet: &Fleet) -> (Background, String, u64) {
    let first = fleet.spawn(&["apply", "--auto-approve"]);
    let (id, pid) = wait_for_holder(fleet, "apply");
    assert!(
        wait_until(Duration::from_secs(20), || first
            .stdout_so_far()
            .contains(&format!("{}: probing", addr("m")))),
        "the apply never reached the gate:\n{}",
        first.stdout_so_far()
    );
    (first, id, pid)
}

#[test]
fn a_second_command_fails_fast_naming_the_holder_or_waits_for_it() {
    let ports = free_ports(1);
    // Loading long enough that the apply still holds the lock after every check below, on a
    // machine busy with other tests too.
    let fleet = Fleet::new(
        &[Model::new("m", ports[0], "--load-secs 8").probe_interval(200)],
        2,
    );
    let mut first = fleet.spawn(&["apply", "--auto-approve"]);
    let (id, pid) = wait_for_holder(&fleet, "apply");
    assert_eq!(
        pid,
        u64::from(first.pid()),
        "the lock names another process"
    );

    let rm_address = addr("m");
    for args in [
        &["apply", "--auto-approve"][..],
        &["plan", "--refresh=false"],
        &["state", "rm", rm_address.as_str()],
        &["drift"],
    ] {
        let run = fleet.berth(args);
        assert_eq!(
            run.code,
            Some(1),
            "`berth {}`:\n{}",
            args.join(" "),
            run.all()
        );
        assert!(
            run.elapsed < Duration::from_secs(2),
            "`berth {}` took {:.1}s to fail",
            args.join(" "),
            run.elapsed.as_secs_f64()
        );
        for needle in ["locked", id.as_str(), &pid.to_string(), "apply"] {
            assert!(
                run.stderr.contains(needle),
                "`berth {}` does not say `{needle}`:\n{}",
                args.join(" "),
                run.stderr
            );
        }
    }
    // A short --lock-timeout waits that long, then fails the same way.
    let short = fleet.berth(&["plan", "--refresh=false", "--lock-timeout", "1s"]);
    assert_eq!(short.code, Some(1), "{}", short.all());
    assert!(
        short.elapsed >= Duration::from_millis(900) && short.elapsed < Duration::from_secs(3),
        "waited {:.1}s",
        short.elapsed.as_secs_f64()
    );
    assert!(short.stderr.contains(&id), "{}", short.stderr);
    assert!(!first.finished(), "the first apply ended before the checks");

    // force-unlock refuses to remove the lock of a berth that is still running.
    let unlock = fleet.berth(&["force-unlock", &id]);
    assert_ne!(unlock.code, Some(0), "{}", unlock.all());
    assert!(unlock.stderr.contains(&id), "{}", unlock.stderr);
    assert_eq!(
        fleet.lock_holder().map(|h| h["id"].clone()),
        Some(Value::from(id.clone()))
    );

    // With --lock-timeout a plan waits for the apply, then runs against its result; a
    // read-only `state list` never waits (it reads the last committed state).
    let mut plan = fleet.spawn(&["plan", "--refresh=false", "--lock-timeout", "30s"]);
    assert!(
        !first.finished(),
        "the first apply ended before `state list`"
    );
    let early = fleet.berth(&["state", "--lock-timeout", "10s", "list", "--json"]);
    early.expect(0);
    assert!(
        early.elapsed < Duration::from_secs(1),
        "state list waited {:.1}s",
        early.elapsed.as_secs_f64()
    );
    let plan = plan.wait(Duration::from_secs(30));
    let first = first.wait(Duration::from_secs(30));
    first.expect(0);
    plan.expect(0);
    let list = fleet.berth(&["state", "list", "--json"]);
    list.expect(0);
    assert!(
        plan.stdout.contains("No changes"),
        "the waiting plan did not see the apply's result:\n{}",
        plan.stdout
    );
    let records: Value = list.json();
    assert!(
        records
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == addr("m") && r["status"]["state"] == "ready"),
        "state list after the apply did not see its result: {records:#}"
    );
    assert!(
        plan.elapsed > Duration::from_millis(500),
        "plan did not wait"
    );

    // The lock is free again.
    fleet.berth(&["state", "list"]).expect(0);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

/// The lock flags of `berth state` work where the other subcommands take them: after the
/// subcommand, like the global `--json`.
#[test]
fn state_subcommands_take_lock_flags_after_the_subcommand() {
    let ports = free_ports(1);
    let fleet = Fleet::new(&[Model::new("m", ports[0], "--load-secs 0.2")], 2);
    let run = fleet.berth(&["state", "list", "--lock-timeout", "1s"]);
    run.expect(0);
    let run = fleet.berth(&["state", "history", "--force"]);
    run.expect(0);
}

/// `endpoints` never takes the lock, so it does not accept the flags that say how to wait for
/// one: a user who passes them learns that, instead of having them silently ignored.
#[test]
fn endpoints_refuses_lock_flags_it_would_ignore() {
    let ports = free_ports(1);
    let fleet = Fleet::new(&[Model::new("m", ports[0], "--load-secs 0.2")], 2);
    for flag in [&["--lock-timeout", "1s"][..], &["--force"][..]] {
        let args: Vec<&str> = ["endpoints"].iter().chain(flag).copied().collect();
        let run = fleet.berth(&args);
        run.expect(64);
        assert!(run.stderr.contains(flag[0]), "{}", run.stderr);
    }
    fleet.berth(&["endpoints"]).expect(0);
}

#[test]
fn an_apply_killed_mid_gate_leaves_a_stale_lock_that_force_reclaims() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("m", ports[0], "--load-secs 30")
            .probe_timeout(90)
            .probe_interval(200)],
        2,
    );
    let (mut first, id, pid) = apply_in_its_gate(&fleet);
    let server = fleet.stand_in(ports[0]);
    first.kill9();

    // A plain command reports the stale lock and how to take it over.
    let plan = fleet.berth(&["plan"]);
    assert_eq!(plan.code, Some(1), "{}", plan.all());
    for needle in ["stale", "--force", id.as_str(), &pid.to_string()] {
        assert!(
            plan.stderr.contains(needle),
            "no `{needle}` in:\n{}",
            plan.stderr
        );
    }

    // force-unlock of a wrong id refuses and names the holder, but not the right id: the id
    // proves the operator looked at this holder. The lock stays.
    let wrong = fleet.berth(&["force-unlock", "0badc0de"]);
    assert_ne!(wrong.code, Some(0), "{}", wrong.all());
    assert!(
        wrong.stderr.contains(&format!("pid {pid}")),
        "the holder is not named:\n{}",
        wrong.stderr
    );
    assert!(
        !wrong.stderr.contains(&id),
        "the right id is handed out:\n{}",
        wrong.stderr
    );
    assert_eq!(
        fleet.lock_holder().map(|h| h["id"].clone()),
        Some(Value::from(id.clone()))
    );

    // --force takes the stale lock over; afterwards the lock is free for everyone.
    let reclaimed = fleet.berth(&["plan", "--force"]);
    reclaimed.expect(0);
    assert!(
        reclaimed.stdout.contains(&addr("m")),
        "{}",
        reclaimed.stdout
    );
    fleet.berth(&["plan", "--refresh=false"]).expect(0);

    // The state is readable and does not claim the interrupted model is ready.
    let listed = fleet.berth(&["state", "list"]);
    listed.expect(0);
    let statuses = fleet.statuses();
    assert_ne!(
        statuses.get(&addr("m")).map(String::as_str),
        Some("ready"),
        "{statuses:?}"
    );

    // Apply converges: the model ends ready, served by exactly one process.
    let apply = fleet.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    eprintln!("converging apply took {:.1}s", apply.elapsed.as_secs_f64());
    assert_eq!(
        fleet.statuses().get(&addr("m")).map(String::as_str),
        Some("ready")
    );
    let by_port = fleet.stand_ins_by_port();
    assert_eq!(by_port.get(&ports[0]).map(Vec::len), Some(1), "{by_port:?}");
    eprintln!(
        "server before the kill: pid {}, after: pid {}",
        server.pid,
        fleet.stand_in(ports[0]).pid
    );
    let endpoints = fleet.endpoints();
    assert_eq!(endpoints.len(), 1, "{endpoints:#?}");
    let (status, body) = get_models(endpoints[0]["url"].as_str().unwrap()).expect("answers");
    assert_eq!(status, 200, "{body}");
    fleet.berth(&["drift"]).expect(0);
    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    assert!(plan.stdout.contains("No changes"), "{}", plan.stdout);
    assert!(!plan.stdout.contains("interrupted"), "{}", plan.stdout);

    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty()),
        "{:?}",
        fleet.stand_ins()
    );
}

#[test]
fn force_unlock_removes_the_lock_of_a_killed_apply_and_destroy_finds_what_it_started() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("m", ports[0], "--load-secs 20")
            .probe_timeout(60)
            .probe_interval(200)],
        2,
    );
    let (mut first, id, _) = apply_in_its_gate(&fleet);
    first.kill9();
    assert_eq!(fleet.stand_ins().len(), 1, "{:?}", fleet.stand_ins());

    let unlock = fleet.berth(&["force-unlock", &id]);
    unlock.expect(0);
    assert!(unlock.stdout.contains(&id), "{}", unlock.stdout);
    assert!(fleet.lock_holder().is_none(), "{:?}", fleet.lock_holder());
    // Without the lock, every command runs again without --force.
    fleet.berth(&["plan", "--refresh=false"]).expect(0);
    fleet.berth(&["state", "list"]).expect(0);
    // The id is gone: a second force-unlock has nothing to remove.
    let again = fleet.berth(&["force-unlock", &id]);
    assert_ne!(again.code, Some(0), "{}", again.all());

    // The state never recorded the model, but the host marks it: destroy stops it.
    let destroy = fleet.berth(&["destroy", "--auto-approve"]);
    destroy.expect(0);
    assert!(destroy.stdout.contains(&addr("m")), "{}", destroy.stdout);
    assert!(
        wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty()),
        "destroy left the killed apply's server running: {:?}",
        fleet.stand_ins()
    );
    assert!(fleet.deployments().is_empty(), "{:?}", fleet.deployments());
}

/// Removing a lock takes its id from the message that named the holder; a wrong id is refused
/// without handing out the right one, but says who holds the lock.
#[test]
fn force_unlock_with_a_wrong_id_does_not_print_the_right_one() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("m", ports[0], "--load-secs 20")
            .probe_timeout(60)
            .probe_interval(200)],
        2,
    );
    let (mut first, id, pid) = apply_in_its_gate(&fleet);
    first.kill9();

    let wrong = fleet.berth(&["force-unlock", "0badc0de"]);
    assert_ne!(wrong.code, Some(0), "{}", wrong.all());
    let text = wrong.all();
    assert!(
        !text.contains(&id),
        "the refusal hands out the lock id {id}:\n{text}"
    );
    for needle in [
        "lock id 0badc0de does not match the holder",
        &format!("pid {pid}"),
        "apply",
    ] {
        assert!(text.contains(needle), "no `{needle}` in:\n{text}");
    }
    assert_eq!(
        fleet
            .lock_holder()
            .and_then(|h| h["id"].as_str().map(str::to_string)),
        Some(id.clone()),
        "a wrong id removed the lock"
    );
    fleet.berth(&["force-unlock", &id]).expect(0);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

/// An apply killed between recording a finished resource and clearing its intent leaves an
/// intent that no later change clears: the next apply's refresh finds the resource as the config
/// wants it, settles the intent, and later plans no longer warn. The kill lands in a window of
/// one state write, too narrow to hit on purpose, so the test writes the intent such an apply
/// leaves straight into the store.
#[test]
fn an_intent_left_on_a_resource_in_sync_is_settled_by_the_next_apply() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("m", ports[0], "--load-secs 0.1").probe_interval(100)],
        2,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    {
        let guard = berth_state::SledBackend::new(fleet.state_dir())
            .lock("test", &berth_state::LockOptions::default())
            .expect("lock the state");
        let store = guard.store().expect("open the state");
        store
            .put_intent(&berth_state::Intent {
                address: addr("m").parse().unwrap(),
                action: "replace".into(),
                pid: 1,
                started_at: 0,
            })
            .unwrap();
        store.flush().unwrap();
    }

    let warned = fleet.berth(&["plan"]);
    warned.expect(0);
    assert!(
        warned
            .stdout
            .contains(&format!("interrupted while changing {}", addr("m"))),
        "{}",
        warned.stdout
    );
    // `plan` only reads: the warning stays until an apply has checked the host.
    assert!(fleet.berth(&["plan"]).stdout.contains("interrupted"));

    let apply = fleet.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    assert!(apply.stdout.contains("No changes"), "{}", apply.stdout);
    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    assert!(!plan.stdout.contains("interrupted"), "{}", plan.stdout);

    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}
