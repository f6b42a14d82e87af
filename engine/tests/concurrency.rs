//! How many operations run at once (DESIGN.md section 4): `parallelism` counts operations on
//! hosts, and a model waiting in its probe gate holds no slot, so a slow-loading model never
//! holds back the start of another; `max_parallel_starts` on a host bounds the models loading
//! there at once, each counted until it is ready.

mod common;

use common::{Fleet, Model, free_ports};

/// Where `needle` first appears in `text`, for ordering the lines of an apply.
fn at(text: &str, needle: &str) -> usize {
    text.find(needle)
        .unwrap_or_else(|| panic!("`{needle}` not in the output:\n{text}"))
}

#[test]
fn a_probe_gate_holds_no_parallelism_slot() {
    let ports = free_ports(3);
    let models: Vec<Model> = ["a", "b", "c"]
        .iter()
        .zip(&ports)
        .map(|(id, port)| Model::new(id, *port, "--load-secs 3").probe_interval(100))
        .collect();
    // One operation at a time: each start takes that one slot, then waits for readiness
    // without it.
    let fleet = Fleet::new(&models, 1);
    let run = fleet.berth(&["apply", "--auto-approve"]);
    run.expect(0);
    let out = &run.stdout;
    let first_ready = ["a", "b", "c"]
        .iter()
        .map(|id| at(out, &format!("✓ model.{id}@local: created")))
        .min()
        .unwrap();
    for id in ["a", "b", "c"] {
        assert!(
            at(out, &format!("model.{id}@local: probing")) < first_ready,
            "model {id} was still waiting for a slot when the first model became ready:\n{out}"
        );
    }
    assert_eq!(fleet.stand_ins().len(), 3);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn max_parallel_starts_loads_one_model_at_a_time_on_its_host() {
    let ports = free_ports(2);
    let models = [
        Model::new("a", ports[0], "--load-secs 1").probe_interval(100),
        Model::new("b", ports[1], "--load-secs 1").probe_interval(100),
    ];
    let fleet = Fleet::new(&models, 10);
    let main = fleet.dir().join("main.hcl");
    let text = std::fs::read_to_string(&main).unwrap();
    let text = text.replacen(
        "host \"local\" {\n",
        "host \"local\" {\n  max_parallel_starts = 1\n",
        1,
    );
    std::fs::write(&main, text).unwrap();

    let run = fleet.berth(&["apply", "--auto-approve"]);
    run.expect(0);
    let out = &run.stdout;
    let (first, second) = if at(out, "model.a@local: starting") < at(out, "model.b@local: starting")
    {
        ("a", "b")
    } else {
        ("b", "a")
    };
    assert!(
        at(
            out,
            &format!("model.{second}@local: waiting for another start on the host")
        ) < at(out, &format!("✓ model.{first}@local: created")),
        "the second model said why it waited:\n{out}"
    );
    assert!(
        at(out, &format!("✓ model.{first}@local: created"))
            < at(out, &format!("model.{second}@local: starting")),
        "the second model started while the first was still loading:\n{out}"
    );
    assert_eq!(fleet.stand_ins().len(), 2);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    // The limit is a config key like any other: out of range is a finding.
    let text = std::fs::read_to_string(&main)
        .unwrap()
        .replace("max_parallel_starts = 1", "max_parallel_starts = 0");
    std::fs::write(&main, text).unwrap();
    let run = fleet.berth(&["validate"]);
    run.expect(1);
    assert!(run.stderr.contains("max_parallel_starts"), "{}", run.all());
}
