//! Ctrl-C during an apply (DESIGN.md section 4): the first interrupt starts nothing new but lets
//! running steps finish and records them; the second cancels probes at once. Either way berth
//! exits non-zero with the state saved, and the next apply converges. A closed terminal (SIGHUP)
//! is an interrupt like any other, and a closed stdout or stderr only stops the printing.

mod common;

use std::time::Duration;

use berth_test_support::procs::signal;
use common::{Fleet, Model, addr, free_ports, wait_until};

fn interrupt(pid: u32) {
    signal(pid, libc::SIGINT);
}

/// An apply of `first` (loading 2 s) and `second` (depending on it), with one slot, waiting in
/// `first`'s probe gate.
fn first_model_in_its_gate() -> (Fleet, Vec<u16>, common::Background) {
    let ports = free_ports(2);
    let fleet = Fleet::new(
        &[
            Model::new("first", ports[0], "--load-secs 2").probe_interval(100),
            Model::new("second", ports[1], "--load-secs 0.2")
                .probe_interval(100)
                .depends_on("first"),
        ],
        1,
    );
    let apply = fleet.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(20), || apply
            .stdout_so_far()
            .contains("model.first@local: probing")),
        "the first model never reached its gate:\n{}",
        apply.stdout_so_far()
    );
    (fleet, ports, apply)
}

#[test]
fn a_first_interrupt_finishes_running_steps_and_starts_nothing_new() {
    let (fleet, ports, mut apply) = first_model_in_its_gate();
    interrupt(apply.pid());
    let run = apply.wait(Duration::from_secs(30));
    run.expect(1);
    assert!(
        run.stdout.contains("Interrupt: finishing what is running"),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains("✓ model.first@local: created"),
        "the running step finished:\n{}",
        run.all()
    );
    assert!(run.stdout.contains("Apply interrupted"), "{}", run.all());
    let statuses = fleet.statuses();
    assert_eq!(
        statuses.get(&addr("first")).map(String::as_str),
        Some("ready"),
        "{statuses:?}"
    );
    assert!(
        !statuses.contains_key(&addr("second")),
        "nothing new started: {statuses:?}"
    );
    assert!(
        fleet.stand_ins().iter().all(|s| s.port == ports[0]),
        "second never started"
    );

    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(fleet.endpoints().len(), 2);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn a_second_interrupt_cancels_the_gate_and_saves_what_is_known() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("slow", ports[0], "--load-secs 60").probe_interval(100)],
        1,
    );
    let mut apply = fleet.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(20), || apply
            .stdout_so_far()
            .contains("model.slow@local: probing")),
        "never reached the gate:\n{}",
        apply.stdout_so_far()
    );
    interrupt(apply.pid());
    assert!(wait_until(Duration::from_secs(5), || apply
        .stdout_so_far()
        .contains("Interrupt:")));
    interrupt(apply.pid());
    let run = apply.wait(Duration::from_secs(15));
    run.expect(1);
    assert!(
        run.elapsed < Duration::from_secs(20),
        "the gate of a 60 s load was not cancelled: {:?}",
        run.elapsed
    );
    assert!(run.all().contains("Second interrupt"), "{}", run.all());
    assert!(
        run.all().contains("failed at probe (cancelled)"),
        "{}",
        run.all()
    );
    let statuses = fleet.statuses();
    assert_eq!(
        statuses.get(&addr("slow")).map(String::as_str),
        Some("failed"),
        "the state says what happened: {statuses:?}"
    );
    assert!(
        fleet.berth(&["plan", "--format", "json"]).expect(0).json()["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["address"] == addr("slow") && r["action"] == "replace")
    );
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        fleet.stand_ins().is_empty(),
        "destroy stopped the server left by the cancelled gate"
    );
}

#[test]
fn sighup_during_apply_finishes_running_steps_like_ctrl_c() {
    let (fleet, _, mut apply) = first_model_in_its_gate();
    signal(apply.pid(), libc::SIGHUP);
    let run = apply.wait(Duration::from_secs(30));
    run.expect(1);
    assert!(
        run.stdout.contains("✓ model.first@local: created"),
        "the running step finished and was recorded:\n{}",
        run.all()
    );
    assert_eq!(
        fleet.statuses().get(&addr("first")).map(String::as_str),
        Some("ready")
    );
    assert!(fleet.lock_holder().is_none(), "the lock was released");
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(fleet.endpoints().len(), 2);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn a_closed_stdout_does_not_kill_an_apply() {
    let ports = free_ports(3);
    let fleet = Fleet::new(
        &[
            Model::new("a", ports[0], "--load-secs 0.5").probe_interval(100),
            Model::new("b", ports[1], "--load-secs 0.5").probe_interval(100),
            Model::new("c", ports[2], "--load-secs 0.5")
                .probe_interval(100)
                .depends_on("a"),
        ],
        2,
    );
    // `berth apply | head -0`: every line berth prints meets a closed pipe.
    let run = fleet
        .spawn_with_closed_output(&["apply", "--auto-approve"])
        .wait(Duration::from_secs(60));
    assert_eq!(
        run.code,
        Some(0),
        "berth died of its closed output instead of finishing the apply"
    );
    let statuses = fleet.statuses();
    assert_eq!(
        statuses.len(),
        4,
        "three models and their backend: {statuses:?}"
    );
    assert!(statuses.values().all(|s| s == "ready"), "{statuses:?}");
    assert!(fleet.lock_holder().is_none(), "the lock was released");
    assert_eq!(fleet.stand_ins().len(), 3, "every server runs, recorded");
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(0);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}
