//! `berth watch` against real OpenSSH hosts (network namespaces from testdata/fleet): a host
//! lost whole (sshd, sessions and servers killed) is reported unreachable within one interval
//! while the other host goes on being healed, and once its sshd is back the watcher connects
//! again by itself and heals what the loss took; and hundreds of cycles over one kept
//! connection leave the watcher's memory, file descriptors and SSH logins where they were.
//! Needs root (see ssh_common).

mod common;
mod ssh_common;

use std::time::{Duration, Instant};

use berth_test_support::procs;
use ssh_common::{HostSpec, ModelSpec, Project, wait_until};

/// The fleet both tests share: the first uses h1 and h2, the second h3 alone.
const HOSTS: usize = 3;

#[test]
fn a_lost_host_is_reported_within_an_interval_and_reconnected_when_it_returns() {
    let fleet = ssh_common::shared_fleet('w', HOSTS);
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

/// The watcher's resident memory in KiB, and its open file descriptors.
fn footprint(pid: u32) -> (u64, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    (rss, fds)
}

fn cycles(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains(r#""event":"cycle""#))
        .count()
}

/// Regression: every `probe_http` opens an SSH tunnel, and berth closed each one before the
/// host did, which left an entry per closed channel in russh's table for the life of the
/// connection. A watcher kept its connections open, so it grew by several KB per placed model
/// per cycle: over 1 GB within minutes on a fleet of 1,000 placements. Counted in cycles, not
/// time: 300 cycles of 10 tunnels grew it by about 20 MB.
#[test]
fn probe_tunnels_of_many_cycles_leave_the_watchers_memory_and_connections_flat() {
    const MODELS: u16 = 10;
    const WARM: usize = 30;
    const MEASURED: usize = 300;
    let fleet = ssh_common::shared_fleet('w', HOSTS);
    let hosts = [HostSpec::fleet(&fleet, 3)];
    let models: Vec<ModelSpec> = (0..MODELS)
        .map(|i| ModelSpec::new(&format!("t{i}"), 18610 + i, "", &["h3"], 1))
        .collect();
    let project = Project::new(&hosts, &models, 4);
    project.berth(&["apply", "--auto-approve"]).expect(0);

    let mut watch = project.spawn(&["watch", "--interval", "10ms", "--log-format", "json"]);
    let warmed = wait_until(Duration::from_secs(60), || {
        cycles(&watch.stdout_so_far()) >= WARM
    });
    assert!(warmed, "{}", watch.stdout_so_far());
    let (rss0, fds0) = footprint(watch.pid());
    let logins0 = fleet.logins(3);
    let done = wait_until(Duration::from_secs(300), || {
        cycles(&watch.stdout_so_far()) >= WARM + MEASURED
    });
    let (rss1, fds1) = footprint(watch.pid());
    let logins1 = fleet.logins(3);
    procs::signal(watch.pid(), libc::SIGTERM);
    let run = watch.wait(Duration::from_secs(60));
    assert!(done, "{}", run.all());
    run.expect(0);
    let log = run.all();
    assert!(
        !["down", "loading", "unknown"]
            .iter()
            .any(|state| log.contains(&format!(r#""state":"{state}""#))),
        "every probe should have found its model ready: {log}"
    );
    eprintln!(
        "after {WARM} cycles {rss0} KiB and {fds0} fds; {MEASURED} cycles later {rss1} KiB and \
         {fds1} fds"
    );
    // The leak grew it by about 6.6 KiB per tunnel: 3,000 tunnels here, some 20 MB.
    assert!(
        rss1 < rss0 + 4 * 1024,
        "the watcher grew from {rss0} KiB to {rss1} KiB over {MEASURED} cycles of {MODELS} probes"
    );
    assert_eq!(fds1, fds0, "open file descriptors of the watcher");
    assert_eq!(
        logins1, logins0,
        "SSH logins on the host while the watcher ran"
    );
    project.berth(&["destroy", "--auto-approve"]).expect(0);
}
