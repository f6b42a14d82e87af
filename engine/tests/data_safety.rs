//! Config mistakes that must never turn into destroyed servers: a config file berth cannot read
//! is an error naming it, and a plan that would destroy most of what berth manages (or all of a
//! host's) is refused without `--allow-mass-destroy`.

mod common;

use common::{Fleet, Model, Run, addr, free_ports};

/// Whether stderr says `text`, however miette wrapped its lines.
fn says(run: &Run, text: &str) -> bool {
    let flat: Vec<&str> = run
        .stderr
        .split_whitespace()
        .filter(|w| *w != "|")
        .collect();
    flat.join(" ").contains(text)
}

#[test]
fn a_dangling_hcl_symlink_is_an_error_naming_it() {
    let ports = free_ports(2);
    let fleet = Fleet::new(
        &[
            Model::new("a", ports[0], "--load-secs 0.1"),
            Model::new("b", ports[1], "--load-secs 0.1"),
        ],
        2,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    // models.hcl now points at a file that is gone (a checkout on an unmounted disk, say).
    let models = fleet.dir().join("models.hcl");
    std::fs::rename(&models, fleet.dir().join("models.bak")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/models.hcl", &models).unwrap();

    let run = fleet.berth(&["validate"]);
    run.expect(1);
    assert!(
        says(
            &run,
            "models.hcl is a symlink to /nonexistent/models.hcl, which does not exist"
        ),
        "{}",
        run.all()
    );
    let run = fleet.berth(&["apply", "--auto-approve"]);
    run.expect(1);
    assert_eq!(fleet.stand_ins().len(), 2, "nothing was stopped");
    assert_eq!(fleet.statuses().len(), 3, "nothing was forgotten");
    std::fs::remove_file(&models).unwrap();
    std::fs::rename(fleet.dir().join("models.bak"), &models).unwrap();
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
}

#[test]
fn an_hcl_entry_that_is_not_a_file_is_an_error_naming_it() {
    let ports = free_ports(1);
    let fleet = Fleet::new(&[Model::new("a", ports[0], "--load-secs 0.1")], 1);
    std::fs::create_dir(fleet.dir().join("more.hcl")).unwrap();
    let run = fleet.berth(&["validate"]);
    run.expect(1);
    assert!(
        says(&run, "more.hcl is not a regular file"),
        "{}",
        run.all()
    );
}

#[test]
fn an_apply_that_destroys_most_of_the_fleet_asks_for_allow_mass_destroy() {
    let ports = free_ports(3);
    let models = [
        Model::new("a", ports[0], "--load-secs 0.1"),
        Model::new("b", ports[1], "--load-secs 0.1"),
        Model::new("c", ports[2], "--load-secs 0.1"),
    ];
    let fleet = Fleet::new(&models, 3);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);

    // One model fewer is an ordinary change.
    fleet.set_models(&models[..2]);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(fleet.stand_ins().len(), 2);

    // An empty models file destroys both models: refused, saying how many and why.
    fleet.set_models(&[]);
    let run = fleet.berth(&["apply", "--auto-approve"]);
    run.expect(1);
    assert!(
        says(
            &run,
            "refusing to apply: this plan destroys 3 of the 3 resources berth manages"
        ),
        "{}",
        run.all()
    );
    assert!(
        says(&run, "mass-destroy`"),
        "the help names the flag: {}",
        run.all()
    );
    assert!(says(&run, "leaving nothing on"), "{}", run.all());
    assert_eq!(fleet.stand_ins().len(), 2, "nothing was stopped");

    // A saved plan is held to the same rule.
    let plan_file = fleet.dir().join("mass.plan");
    fleet
        .berth(&["plan", "--out", plan_file.to_str().unwrap()])
        .expect(0);
    fleet
        .berth(&["apply", plan_file.to_str().unwrap()])
        .expect(1);
    assert_eq!(fleet.stand_ins().len(), 2, "nothing was stopped");

    fleet
        .berth(&["apply", "--auto-approve", "--allow-mass-destroy"])
        .expect(0);
    assert!(fleet.stand_ins().is_empty());
    assert!(!fleet.statuses().contains_key(&addr("a")));
}

#[test]
fn emptying_one_host_asks_for_allow_mass_destroy_and_destroy_does_not() {
    let ports = free_ports(1);
    let model = Model::new("only", ports[0], "--load-secs 0.1");
    let fleet = Fleet::new(std::slice::from_ref(&model), 1);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    fleet.set_models(&[]);
    let run = fleet.berth(&["apply", "--auto-approve"]);
    run.expect(1);
    assert!(
        says(
            &run,
            "refusing to apply: this plan destroys 2 of the 2 resources"
        ),
        "{}",
        run.all()
    );
    // `destroy` means it: no extra flag.
    fleet.set_models(&[model]);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(fleet.stand_ins().is_empty());
}
