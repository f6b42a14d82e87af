//! `berth watch` against real OpenSSH hosts (network namespaces from testdata/fleet): a host
//! lost whole (sshd, sessions and servers killed) is reported unreachable within one interval
//! while the other host goes on being healed, and once its sshd is back the watcher connects
//! again by itself and heals what the loss took. Needs root (see ssh_common).

mod common;
mod ssh_common;

use std::time::{Duration, Instant};

use berth_test_support::procs;
use ssh_common::{HostSpec, ModelSpec, Project, wait_until};

#[test]
fn a_lost_host_is_reported_within_an_interval_and_reconnected_when_it_returns() {
    let fleet = ssh_common::shared_fleet('w', 2);
    let hosts = [HostSpec::fleet(&fleet, 1), HostSpec::fleet(&fleet, 2)];
    let project = Project::new(
        &hosts,
        &[ModelSpec::new("w", 18500, "", &["h1", "h2"], 2)],
        4,
    );
    project.berth(&["apply", "--auto-approve"]).expect(0);
    let interval = Duration::from_secs(2);
    let mut watch = project.spawn(&["watch", "--heal", "--interval", "2s"]);
    assert!(
        wait_until(Duration::from_secs(30), || watch
            .stdout_so_far()
            .contains("2/2 models ready")),
        "{}",
        watch.stdout_so_far()
    );

    // h2 is lost; h1's server crashes at the same moment.
    fleet.kill_host(2);
    let lost = Instant::now();
    for s in fleet.stand_ins(1) {
        fleet.exec_ok(1, &format!("kill -9 {}", s.pid));
    }
    let reported = wait_until(Duration::from_secs(30), || {
        watch.stdout_so_far().contains("unreachable: h2")
    });
    let took = lost.elapsed();
    assert!(reported, "{}", watch.stdout_so_far());
    eprintln!(
        "h2 reported unreachable {:.2}s after it was lost",
        took.as_secs_f64()
    );
    // One interval, one cycle and the connect attempt (refused at once).
    assert!(
        took < interval
            + Duration::from_secs(hosts[1].connect_timeout_sec)
            + Duration::from_secs(3),
        "took {took:?}"
    );
    assert!(
        wait_until(Duration::from_secs(30), || watch
            .stdout_so_far()
            .contains("heal model.w@h1: healed")),
        "{}",
        watch.stdout_so_far()
    );
    assert_eq!(fleet.http_get(1, 18500, "/v1/models").map(|r| r.0), Ok(200));

    // h2 returns: reconnected and healed without a restart of the watcher.
    fleet.start_host(2);
    let healed = wait_until(Duration::from_secs(90), || {
        watch.stdout_so_far().contains("heal model.w@h2: healed")
    });
    procs::signal(watch.pid(), libc::SIGTERM);
    let run = watch.wait(Duration::from_secs(60));
    assert!(healed, "{}", run.all());
    run.expect(0);
    assert_eq!(fleet.http_get(2, 18500, "/v1/models").map(|r| r.0), Ok(200));
    project.berth(&["drift"]).expect(0);
    project.berth(&["destroy", "--auto-approve"]).expect(0);
}
