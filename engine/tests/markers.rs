//! The markers the process runtime leaves on a host (`meta.json` in each deployment directory)
//! and what berth does when one is lost: the default local run_dir lives beside the state
//! directory, not inside it; a missing or garbled marker is stopped through the pid and start
//! ticks the state recorded; a garbled marker is a warning the user sees, and a destroy that
//! cannot identify the server fails instead of reporting success. Also the state store's
//! permission error. Real berth runs and real processes.

mod common;

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::time::Duration;

use berth_state::{LockOptions, SledBackend, StateBackend};
use common::{Fleet, Model, addr, free_ports, wait_until};

/// The deployment directory of model `id` on the local host.
fn deployment(fleet: &Fleet, id: &str) -> PathBuf {
    let prefix = format!("model.{id}_local_");
    let name = fleet
        .deployments()
        .into_iter()
        .find(|d| d.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no deployment of {id}: {:?}", fleet.deployments()));
    fleet.deployments_dir().join(name)
}

fn port_accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Removes `start_ticks` from the record of `address`, as a berth that did not record it left
/// it: the state then holds no usable process identity.
fn forget_identity(fleet: &Fleet, address: &str) {
    let guard = SledBackend::new(fleet.state_dir())
        .lock("test", &LockOptions::default())
        .expect("lock the state");
    let store = guard.store().expect("open the state");
    let mut record = store.resource(address).unwrap().expect("a record");
    assert!(
        record.attributes.remove("start_ticks").is_some(),
        "{record:?}"
    );
    store.put_resource(&record).unwrap();
    store.flush().unwrap();
}

#[test]
fn deleting_the_state_dir_keeps_the_markers() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("kept", ports[0], "--load-secs 0.2").probe_interval(100)],
        2,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let before = fleet.stand_in(ports[0]).pid;
    assert!(
        deployment(&fleet, "kept").join("meta.json").is_file(),
        "the marker is beside the state directory, in .berth-run"
    );

    // What the store-error help used to suggest: start afresh.
    std::fs::remove_dir_all(fleet.state_dir()).unwrap();

    let plan = fleet.berth(&["plan", "--format", "json"]);
    plan.expect(0);
    let resources = plan.json()["resources"].as_array().unwrap().clone();
    let kept = resources
        .iter()
        .find(|r| r["address"] == addr("kept"))
        .unwrap();
    assert_eq!(kept["action"], "reuse", "{kept:#}");
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(
        fleet.stand_in(ports[0]).pid,
        before,
        "adopted, not restarted"
    );
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(0);

    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(fleet.stand_ins().is_empty());
    assert!(!port_accepts(ports[0]));
}

#[test]
fn a_missing_marker_is_stopped_through_the_record() {
    let ports = free_ports(1);
    let fleet = Fleet::new(
        &[Model::new("lost", ports[0], "--load-secs 0.2").probe_interval(100)],
        2,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let dir = deployment(&fleet, "lost");
    std::fs::remove_file(dir.join("meta.json")).unwrap();

    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout.contains("warning:") && plan.stdout.contains("has no meta.json"),
        "{}",
        plan.stdout
    );

    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty()),
        "the server still runs: {:?}",
        fleet.stand_ins()
    );
    assert!(!port_accepts(ports[0]), "port {} is still taken", ports[0]);
    assert!(fleet.state_list().is_empty());
    assert!(!dir.exists(), "the deployment directory is left behind");
}

#[test]
fn a_garbled_marker_is_a_warning_and_destroy_fails() {
    let ports = free_ports(2);
    let fleet = Fleet::new(
        &[
            Model::new("known", ports[0], "--load-secs 0.2").probe_interval(100),
            Model::new("unknown", ports[1], "--load-secs 0.2").probe_interval(100),
        ],
        2,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    // Both markers are cut short (a full disk, a crash mid-copy); only `known` keeps its
    // identity in the state.
    let garble = |id: &str| {
        let marker = deployment(&fleet, id).join("meta.json");
        let text = std::fs::read_to_string(&marker).unwrap();
        std::fs::write(&marker, &text[..20]).unwrap();
        marker
    };
    garble("known");
    let unknown_marker = garble("unknown");
    forget_identity(&fleet, &addr("unknown"));

    let plan = fleet.berth(&["plan"]);
    plan.expect(0);
    let marker = unknown_marker.display().to_string();
    assert!(
        plan.stdout
            .lines()
            .any(|l| l.starts_with("warning: host local:")
                && l.contains(&marker)
                && l.contains("is unreadable")),
        "{}",
        plan.stdout
    );
    let drift = fleet.berth(&["drift"]);
    assert!(drift.stderr.contains(&marker), "{}", drift.stderr);

    let destroy = fleet.berth(&["destroy", "--auto-approve"]);
    destroy.expect(1);
    let text = destroy.all();
    assert!(
        text.contains(&format!("cannot stop {}", addr("unknown")))
            && text.contains(&marker)
            && text.contains(&format!("port {}", ports[1]))
            && text.contains("berth state rm"),
        "{text}"
    );
    // The one with an identity was stopped and forgotten; the other still runs, still
    // recorded, so that berth does not lose track of it.
    assert!(!port_accepts(ports[0]));
    assert_eq!(fleet.stand_ins().len(), 1, "{:?}", fleet.stand_ins());
    assert!(port_accepts(ports[1]));
    let statuses = fleet.statuses();
    assert!(!statuses.contains_key(&addr("known")), "{statuses:?}");
    assert!(statuses.contains_key(&addr("unknown")), "{statuses:?}");
}

#[test]
fn a_permission_denied_store_says_permission() {
    let fleet = Fleet::new(&[], 1);
    fleet.berth(&["state", "list"]).expect(0);
    // Another user may read the config, but not the state directory (0700, root's).
    for dir in [fleet.dir().parent().unwrap().to_path_buf(), fleet.dir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let run = fleet
        .spawn_with(&["plan"], |cmd| {
            cmd.uid(65534)
                .gid(65534)
                .env("HOME", "/")
                .env("USER", "nobody");
        })
        .wait(common::COMMAND_DEADLINE);
    run.expect(1);
    let text = run.all();
    let state_dir = fleet.state_dir().display().to_string();
    assert!(
        text.contains("permission denied") && text.contains(&state_dir),
        "{text}"
    );
    assert!(
        text.contains("berth::state::permission")
            && text.contains("run berth as root")
            && text.contains("chown"),
        "{text}"
    );
    assert!(!text.contains("damaged"), "{text}");
}
