//! A model whose start_cmd is not a simple command runs under a shell that stays its parent:
//! the service is the whole process group, so the shell dying is not the service dying.
//! Real `berth`, real stand-in processes, real HTTP.

mod common;

use std::time::Duration;

use berth_test_support::procs::alive;
use common::{Fleet, Model, addr, free_ports, get_models, kill_pid9, wait_until};

#[test]
fn killing_the_shell_wrapper_is_not_reported_as_exit_while_the_server_answers() {
    let port = free_ports(1)[0];
    // `||` keeps a shell around the server (no shell execs the left side of `||`), so the
    // group leader berth records is that shell, not the server.
    let fleet = Fleet::new(
        &[Model::new("wrapped", port, "|| exit 3").probe_interval(200)],
        1,
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let record = fleet.state_show(&addr("wrapped"));
    let leader = record["attributes"]["pid"].as_u64().expect("recorded pid") as u32;
    let server = fleet.stand_in(port).pid;
    assert_ne!(leader, server, "the recorded pid is already the server's");

    kill_pid9(leader);
    assert!(wait_until(Duration::from_secs(5), || !alive(leader)));
    let url = format!("http://127.0.0.1:{port}/v1");
    let (status, body) = get_models(&url).expect("the server still answers");
    assert_eq!(status, 200, "{body}");

    let drift = fleet.berth(&["drift"]);
    assert!(!drift.all().contains("process exited"), "{}", drift.all());
    drift.expect(0);
    fleet.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Destroy still stops the server that outlived its shell.
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(
        wait_until(Duration::from_secs(5), || !alive(server)),
        "the server survived destroy"
    );
}
