//! Hosts carry the truth: after the state store is lost, the next apply re-adopts what runs on
//! the hosts with the wanted launch (same processes, no restart) instead of starting it again.

mod common;

use common::{Fleet, Model, addr, free_ports};

#[test]
fn a_lost_state_re_adopts_running_instances_without_restarting_them() {
    let ports = free_ports(2);
    let fleet = Fleet::new(
        &[
            Model::new("one", ports[0], "--load-secs 0.2").probe_interval(100),
            Model::new("two", ports[1], "--load-secs 0.2").probe_interval(100),
        ],
        2,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let before: Vec<u32> = ports.iter().map(|p| fleet.stand_in(*p).pid).collect();

    // The state directory is gone (the run directory with the instances' records is kept).
    let db = fleet.state_dir().join("db");
    std::fs::remove_dir_all(&db).unwrap();
    std::fs::remove_file(fleet.state_dir().join("berth.lock")).unwrap();

    let plan = fleet.berth(&["plan", "--format", "json"]);
    plan.expect(0);
    let resources = plan.json()["resources"].as_array().unwrap().clone();
    for m in ["one", "two"] {
        let r = resources.iter().find(|r| r["address"] == addr(m)).unwrap();
        assert_eq!(r["action"], "reuse", "{r:#}");
        assert!(
            r["reason"]
                .as_str()
                .unwrap()
                .contains("another berth state"),
            "{r:#}"
        );
    }
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let after: Vec<u32> = ports.iter().map(|p| fleet.stand_in(*p).pid).collect();
    assert_eq!(before, after, "adopted, not restarted");
    let ready = fleet
        .statuses()
        .into_iter()
        .filter(|(a, s)| a.starts_with("model.") && s == "ready")
        .count();
    assert_eq!(ready, 2);

    // Adopted for good: the instances now carry the new state's lineage.
    let plan = fleet.berth(&["plan", "--detailed-exitcode"]);
    plan.expect(0);
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(fleet.stand_ins().is_empty());
}
