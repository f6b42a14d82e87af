//! berth when SSH goes wrong, against real OpenSSH hosts (testdata/fleet): host keys that are
//! unknown, changed or not the pinned one; credentials that cannot log in; a host that is down
//! before apply and one lost in the middle of it. The failing host fails alone, with a message
//! that says what to fix, and nothing is started on it; every other host converges. Each test
//! works on hosts of its own. Needs root (see ssh_common).

mod common;
mod ssh_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ssh_common::{Findings, Fleet, HostSpec, ModelSpec, Project, wait_until};

/// h1-h4: host keys; h5: credentials; h6-h9: unreachable and lost hosts; h10: a host blocked
/// mid-apply.
fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('x', 10)
}

/// Unblocks a host however the test ends, so the fleet's teardown and later tests find it up.
struct Unblock<'a>(&'a Fleet, usize);

impl Drop for Unblock<'_> {
    fn drop(&mut self) {
        self.0.run_quietly(&["unblock-host", &self.1.to_string()]);
    }
}

/// A host whose packets vanish mid-apply (a partition: no FIN, no RST) holds the apply for at
/// most its `connect_timeout_sec`, and fails as unreachable, not as a probe that timed out.
#[test]
fn a_blocked_host_fails_within_its_timeout_as_unreachable() {
    let fleet = fleet();
    let host = HostSpec::fleet(&fleet, 10);
    let timeout = Duration::from_secs(host.connect_timeout_sec);
    let project = Project::new(
        &[host],
        &[ModelSpec::new("a", 18400, "--load-secs 60", &["h10"], 1)],
        4,
    );
    let mut apply = project.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(30), || apply
            .stdout_so_far()
            .contains("model.a@h10: probing")),
        "the model never reached its probe gate:\n{}",
        apply.stdout_so_far()
    );
    fleet.block_host(10);
    let unblock = Unblock(&fleet, 10);
    let blocked = Instant::now();
    let run = apply.wait(Duration::from_secs(120));
    let held = blocked.elapsed();
    eprintln!(
        "a blocked host held the apply {:.2}s (connect_timeout_sec {})",
        held.as_secs_f64(),
        timeout.as_secs()
    );
    run.expect(1);
    let text = run.all();
    let unreachable = format!(
        "✗ model.a@h10: failed at host lock: host h10 ({}:22) unreachable: the host did not \
         answer for {}s (connect_timeout_sec)",
        fleet.address(10),
        timeout.as_secs()
    );
    assert!(
        text.contains(&unreachable),
        "no `{unreachable}` in:\n{text}"
    );
    assert!(!text.contains("failed at probe"), "{text}");
    assert!(
        held < timeout + Duration::from_secs(3),
        "the blocked host held the apply {held:?}, its timeout is {timeout:?}"
    );

    drop(unblock);
    // The host never heard that the apply ended: its lease lives until it expires, unless
    // removed, as the help says.
    project.berth(&["force-unlock", "--host", "h10"]).expect(0);
    project.berth(&["destroy", "--auto-approve"]).expect(0);
    nothing_on(&fleet, 10);
}

fn state_of(statuses: &BTreeMap<String, Value>, address: &str) -> String {
    statuses
        .get(address)
        .and_then(|s| s["state"].as_str())
        .unwrap_or("absent")
        .to_string()
}

/// Asserts that host `k` runs no stand-in and holds no deployment record, looking with the
/// fleet's right key and known_hosts.
#[track_caller]
fn nothing_on(fleet: &Fleet, k: usize) {
    let running = fleet.stand_ins(k);
    assert!(running.is_empty(), "h{k} runs {running:?}");
    let records = fleet.deployments(k);
    assert!(records.is_empty(), "h{k} holds deployments {records:?}");
}

#[test]
fn host_key_problems_fail_their_host_alone_and_start_nothing_there() {
    let fleet = fleet();
    let known_hosts = fleet.scratch("trust").join("known_hosts");
    // h1 is missing; h2's address is listed with h1's key (as after a reinstall); h4 is right.
    let h1_key = fleet.host_key(1);
    std::fs::write(
        &known_hosts,
        format!(
            "# hosts of the test\n{} {}\n{} {h1_key}\n",
            fleet.address(4),
            fleet.host_key(4),
            fleet.address(2),
        ),
    )
    .expect("write known_hosts");
    let mut hosts: Vec<HostSpec> = (1..=4)
        .map(|k| {
            let mut h = HostSpec::fleet(&fleet, k);
            h.known_hosts = Some(known_hosts.clone());
            h
        })
        .collect();
    // h3 pins h1's key: no known_hosts is consulted.
    hosts[2].known_hosts = None;
    hosts[2].host_key = Some(h1_key.clone());
    let project = Project::new(&hosts, &[ModelSpec::new("m", 18200, "", &["h*"], 4)], 8);
    let kh = known_hosts.display().to_string();
    let expected: [(usize, Vec<String>); 3] = [
        (
            1,
            vec![
                format!("host h1 ({}:22) is unknown", fleet.address(1)),
                fleet.host_fingerprint(1),
                format!("ssh-keyscan -p 22 -t ed25519 {} >> {kh}", fleet.address(1)),
            ],
        ),
        (
            2,
            vec![
                format!(
                    "host h2 ({}:22) presented ssh-ed25519 key {}",
                    fleet.address(2),
                    fleet.host_fingerprint(2)
                ),
                format!("does not match line 3 of {kh}"),
            ],
        ),
        (
            3,
            vec![
                format!(
                    "host h3 ({}:22) presented ssh-ed25519 key {}",
                    fleet.address(3),
                    fleet.host_fingerprint(3)
                ),
                format!("pins ssh-ed25519 key {}", fleet.host_fingerprint(1)),
            ],
        ),
    ];

    let apply = project.berth(&["apply", "--auto-approve"]);
    apply.expect(1);
    let text = apply.all();
    for (k, needles) in &expected {
        for needle in needles {
            assert!(
                text.contains(needle.as_str()),
                "h{k}: no `{needle}` in:\n{text}"
            );
        }
        nothing_on(&fleet, *k);
    }
    let statuses = project.statuses();
    assert_eq!(state_of(&statuses, "model.m@h4"), "ready", "{statuses:#?}");
    assert_eq!(fleet.http_get(4, 18200, "/v1/models").map(|r| r.0), Ok(200));
    for k in 1..=3 {
        assert_ne!(
            state_of(&statuses, &format!("model.m@h{k}")),
            "ready",
            "{statuses:#?}"
        );
    }

    // `hosts test` says the same, host by host.
    for (k, needles) in &expected {
        let test = project.berth(&["hosts", "test", &format!("h{k}")]);
        test.expect(1);
        for needle in needles {
            assert!(
                test.stderr.contains(needle.as_str()),
                "hosts test h{k}: no `{needle}` in:\n{}",
                test.all()
            );
        }
    }
    project.berth(&["hosts", "test", "h4"]).expect(0);
    // Still nothing on the refused hosts, and known_hosts was not "helpfully" updated.
    for k in 1..=3 {
        nothing_on(&fleet, k);
    }
    assert!(
        !std::fs::read_to_string(&known_hosts)
            .expect("known_hosts")
            .contains(&fleet.address(1)),
        "berth wrote h1 into known_hosts"
    );
    project.berth(&["destroy", "--auto-approve"]);
    nothing_on(&fleet, 4);
}

/// A new key pair in the fleet's scratch space.
fn keygen(fleet: &Fleet, name: &str, passphrase: &str) -> PathBuf {
    let path = fleet.scratch("keys").join(name);
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let status = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-C", name, "-N", passphrase, "-f"])
        .arg(&path)
        .status()
        .expect("ssh-keygen");
    assert!(status.success(), "ssh-keygen {name}");
    path
}

#[test]
fn bad_credentials_fail_hosts_test_with_a_clear_message() {
    let fleet = fleet();
    let stranger = keygen(&fleet, "stranger", "");
    let locked = keygen(&fleet, "locked", "secret");
    // The encrypted key is authorized: only the passphrase stands in the way.
    fleet.authorize(&locked.with_extension("pub"));
    let missing = fleet.dir.join("no-such-key");
    let address = fleet.address(5);
    let host = |id: &str, user: &str, key: &Path| {
        let mut h = HostSpec::fleet(&fleet, 5).id(id);
        h.user = user.to_string();
        h.key_path = key.to_path_buf();
        h
    };
    let hosts = [
        host("wrong-user", "berth-nosuchuser", &fleet.key()),
        host("wrong-key", "root", &stranger),
        host("missing-key", "root", &missing),
        host("encrypted-key", "root", &locked),
        host("right", "root", &fleet.key()),
    ];
    let project = Project::new(&hosts, &[], 4);
    let cases: [(&str, Vec<String>); 4] = [
        (
            "wrong-user",
            vec![format!(
                "authentication failed for user berth-nosuchuser at host wrong-user ({address}:22) with key {}",
                fleet.key().display()
            )],
        ),
        (
            "wrong-key",
            vec![format!(
                "authentication failed for user root at host wrong-key ({address}:22) with key {}",
                stranger.display()
            )],
        ),
        (
            "missing-key",
            vec![format!("key {} does not exist", missing.display())],
        ),
        (
            "encrypted-key",
            vec![
                format!("key {} is encrypted", locked.display()),
                format!("ssh-add {}", locked.display()),
            ],
        ),
    ];
    for (id, needles) in &cases {
        let test = project.berth(&["hosts", "test", id]);
        test.expect(1);
        assert!(
            test.elapsed < Duration::from_secs(5),
            "hosts test {id} took {:.1}s",
            test.elapsed.as_secs_f64()
        );
        for needle in needles {
            assert!(
                test.stderr.contains(needle.as_str()),
                "hosts test {id}: no `{needle}` in:\n{}",
                test.all()
            );
        }
        let json = project.berth(&["hosts", "test", id, "--json"]);
        json.expect(1);
        let doc = json.json();
        assert_eq!(doc["ok"], false, "{doc}");
        assert!(
            doc["error"]
                .as_str()
                .is_some_and(|e| e.contains(needles[0].as_str())),
            "{doc}"
        );
    }
    project.berth(&["hosts", "test", "right"]).expect(0);
}

#[test]
fn unreachable_and_lost_hosts_fail_alone_and_converge_after_restart() {
    let fleet = fleet();
    let mut findings = Findings::default();
    let hosts: Vec<HostSpec> = (6..=9).map(|k| HostSpec::fleet(&fleet, k)).collect();
    let models = [
        ModelSpec::new("a", 18300, "--load-secs 5", &["h*"], 4),
        ModelSpec::new("b", 18301, "--load-secs 5", &["h*"], 4),
    ];
    let project = Project::new(&hosts, &models, 16);

    // h7's sshd is down before apply; h8 dies (sshd, sessions, services) while its gates poll.
    fleet.stop_host(7);
    let mut apply = project.spawn(&["apply", "--auto-approve"]);
    assert!(
        wait_until(Duration::from_secs(30), || {
            let out = apply.stdout_so_far();
            out.contains("model.a@h8: probing") && out.contains("model.b@h8: probing")
        }),
        "h8's models never reached their probe gate:\n{}",
        apply.stdout_so_far()
    );
    fleet.kill_host(8);
    let killed = Instant::now();
    let run = apply.wait(Duration::from_secs(120));
    eprintln!(
        "apply with h7 down and h8 lost: {:.2}s in all, {:.2}s after the kill",
        run.elapsed.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    run.expect(1);
    let text = run.all();
    let down = format!(
        "host h7 ({}:22) unreachable: connection refused",
        fleet.address(7)
    );
    assert!(text.contains(&down), "no `{down}` in:\n{text}");
    for m in ["a", "b"] {
        let address = format!("model.{m}@h8");
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("✗ {address}: failed")))
            .unwrap_or_else(|| panic!("no failure line for {address}:\n{text}"));
        assert!(
            line.contains(&format!("h8 ({}:22)", fleet.address(8))),
            "the failure of {address} does not name the host: {line}"
        );
    }
    // The gate's deadline is 60 s: losing the host must fail fast, not wait it out.
    assert!(
        killed.elapsed() < Duration::from_secs(20),
        "the apply ran {:.1}s after h8 was lost",
        killed.elapsed().as_secs_f64()
    );

    let statuses = project.statuses();
    for k in [6, 9] {
        for m in ["a", "b"] {
            assert_eq!(
                state_of(&statuses, &format!("model.{m}@h{k}")),
                "ready",
                "{statuses:#?}"
            );
        }
        for port in [18300, 18301] {
            assert_eq!(fleet.http_get(k, port, "/v1/models").map(|r| r.0), Ok(200));
        }
    }
    for m in ["a", "b"] {
        let address = format!("model.{m}@h8");
        assert_eq!(state_of(&statuses, &address), "failed", "{statuses:#?}");
        assert!(
            statuses[&address]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("h8")),
            "{statuses:#?}"
        );
    }
    // The host that was down before apply: its resources fail and are recorded as failed.
    let h7: Vec<(&String, &Value)> = statuses
        .iter()
        .filter(|(a, _)| a.ends_with("@h7"))
        .collect();
    findings.check(
        !h7.is_empty() && h7.iter().all(|(_, s)| s["state"] == "failed"),
        || {
            format!(
                "h7 was unreachable during apply, but `berth state list --json` records for it \
                 only {h7:?} (expected its resources as failed, DESIGN.md section 4: \"a failed \
                 node is recorded as failed\"); all records: {statuses:#?}"
            )
        },
    );
    findings.check(
        ["a", "b"]
            .iter()
            .all(|m| text.contains(&format!("model.{m}@h7"))),
        || format!("the apply output does not name model.a@h7 and model.b@h7:\n{text}"),
    );

    // While a host cannot be observed, drift is an error naming it, not "clean".
    let drift = project.berth(&["drift"]);
    drift.expect(1);
    assert!(
        drift.stderr.contains("host h7 could not be observed")
            && drift.stderr.contains("host h8 could not be observed"),
        "{}",
        drift.all()
    );

    // Back up: a second apply converges everything.
    fleet.start_host(7);
    fleet.start_host(8);
    let again = project.berth(&["apply", "--auto-approve"]);
    again.expect(0);
    let statuses = project.statuses();
    for k in 6..=9 {
        for (m, port) in [("a", 18300), ("b", 18301)] {
            assert_eq!(
                state_of(&statuses, &format!("model.{m}@h{k}")),
                "ready",
                "{statuses:#?}"
            );
            assert_eq!(fleet.http_get(k, port, "/v1/models").map(|r| r.0), Ok(200));
        }
        assert_eq!(
            fleet.stand_ins(k).len(),
            2,
            "h{k}: {:?}",
            fleet.stand_ins(k)
        );
    }
    project.berth(&["drift"]).expect(0);
    project.berth(&["destroy", "--auto-approve"]).expect(0);
    for k in 6..=9 {
        nothing_on(&fleet, k);
    }
    findings.assert_none();
}
