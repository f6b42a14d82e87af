//! berth against a fleet of real OpenSSH hosts (network namespaces from testdata/fleet): a
//! whole lifecycle on six hosts (apply, every endpoint answering through an SSH tunnel, a clean
//! plan, drift after a model process is killed, the healing apply, destroy leaving nothing),
//! `hosts test` and `hosts doctor`, and the host lock between two berths with separate state.
//! Each test works on hosts of its own. Needs root (see ssh_common).

mod common;
mod ssh_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use ssh_common::{Findings, Fleet, HostSpec, MODELS_DIR, ModelSpec, Project, RUN_DIR, wait_until};

/// h1-h6: the lifecycle; h7-h8: host locks; h9-h10: hosts test and doctor; h11: two states
/// on one host; h12: SSH logins per command; h13: force-unlock --host.
fn fleet() -> Arc<Fleet> {
    ssh_common::shared_fleet('f', 13)
}

fn hosts(fleet: &Fleet, ks: impl IntoIterator<Item = usize>) -> Vec<HostSpec> {
    ks.into_iter().map(|k| HostSpec::fleet(fleet, k)).collect()
}

/// Ports of the stand-ins that live in host `k`.
fn ports_on(fleet: &Fleet, k: usize) -> BTreeSet<u16> {
    fleet.stand_ins(k).iter().filter_map(|s| s.port()).collect()
}

/// GETs /v1/models of every endpoint berth lists, through an SSH tunnel to its host; returns
/// how many answered 200 naming their model.
#[track_caller]
fn check_endpoints(fleet: &Fleet, project: &Project, expected: usize) {
    let endpoints = project.endpoints();
    assert_eq!(
        endpoints.len(),
        expected,
        "berth endpoints lists {endpoints:#?}"
    );
    for e in &endpoints {
        let url = e["url"].as_str().expect("url");
        let model = e["model"].as_str().expect("model");
        let host = e["host"].as_str().expect("host");
        let authority = url
            .strip_prefix("http://")
            .and_then(|r| r.strip_suffix("/v1"))
            .unwrap_or_else(|| panic!("endpoint URL {url} is not http://ADDRESS:PORT/v1"));
        let (address, port) = authority.rsplit_once(':').expect("a port in the URL");
        let k = fleet
            .host_number(address)
            .unwrap_or_else(|| panic!("{url} is not on a fleet host address"));
        assert_eq!(host, format!("h{k}"), "{url} is listed for host {host}");
        let port: u16 = port.parse().expect("numeric port");
        let (status, body) = fleet
            .http_get(k, port, "/v1/models")
            .unwrap_or_else(|e| panic!("{url} ({model}): {e}"));
        assert_eq!(status, 200, "{url}: {body}");
        let doc: Value = serde_json::from_str(&body).expect("JSON from /v1/models");
        assert_eq!(doc["data"][0]["id"], model, "{url} serves {body}");
    }
}

#[test]
fn six_hosts_two_models_apply_answer_drift_heal_destroy() {
    let fleet = fleet();
    let ks = 1..=6;
    let models = [
        ModelSpec::new("chat", 18100, "--load-secs 1", &["h*"], 6),
        ModelSpec::new("embed", 18101, "--load-secs 1", &["h*"], 6),
    ];
    let project = Project::new(&hosts(&fleet, ks.clone()), &models, 16);
    for k in ks.clone() {
        assert!(fleet.stand_ins(k).is_empty(), "h{k} runs stand-ins already");
    }

    let apply = project.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    eprintln!(
        "apply of 6 hosts x 2 models (--load-secs 1): {:.2}s",
        apply.elapsed.as_secs_f64()
    );
    let statuses = project.statuses();
    for k in ks.clone() {
        for m in ["chat", "embed"] {
            let address = format!("model.{m}@h{k}");
            assert_eq!(
                statuses.get(&address).map(|s| &s["state"]),
                Some(&Value::from("ready")),
                "{address}: {statuses:#?}"
            );
        }
        // Each host runs exactly its two models, bound to the host's own loopback.
        let running = fleet.stand_ins(k);
        assert_eq!(
            ports_on(&fleet, k),
            BTreeSet::from([18100, 18101]),
            "h{k}: {running:?}"
        );
        assert_eq!(running.len(), 2, "h{k}: {running:?}");
        assert!(running.iter().all(|s| s.flag("--host").is_none()));
        assert_eq!(fleet.deployments(k).len(), 2, "h{k}");
    }
    check_endpoints(&fleet, &project, 12);
    project.berth(&["plan", "--detailed-exitcode"]).expect(0);
    let test = project.berth(&["hosts", "test", "h1"]);
    test.expect(0);
    assert!(
        test.stdout.contains("connected in") && test.stdout.contains("command round trip"),
        "{}",
        test.all()
    );

    // A model process dies on one host (as under the OOM killer).
    let victim = fleet
        .stand_ins(4)
        .into_iter()
        .find(|s| s.port() == Some(18101))
        .expect("embed runs on h4");
    fleet.exec_ok(4, &format!("kill -9 {}", victim.pid));
    assert!(
        wait_until(Duration::from_secs(10), || !ports_on(&fleet, 4)
            .contains(&18101)),
        "the killed stand-in is still there"
    );
    let drift = project.berth(&["drift"]);
    drift.expect(2);
    assert!(drift.stdout.contains("model.embed@h4"), "{}", drift.all());
    let drift = project.berth(&["drift", "--json"]);
    drift.expect(2);
    let doc = drift.json();
    let drifted: Vec<&str> = doc["drift"]
        .as_array()
        .expect("drift list")
        .iter()
        .map(|d| d["address"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(drifted, ["model.embed@h4"], "{doc:#}");
    assert_eq!(doc["status"], "drift");
    project.berth(&["plan", "--detailed-exitcode"]).expect(2);

    // Apply heals exactly that.
    let heal = project.berth(&["apply", "--auto-approve"]);
    heal.expect(0);
    assert!(heal.stdout.contains("model.embed@h4"), "{}", heal.all());
    for k in [1, 2, 3, 5, 6] {
        assert!(
            !heal.stdout.contains(&format!("model.chat@h{k}:"))
                && !heal.stdout.contains(&format!("model.embed@h{k}:")),
            "the healing apply touched h{k}:\n{}",
            heal.stdout
        );
    }
    project.berth(&["drift"]).expect(0);
    assert_eq!(ports_on(&fleet, 4), BTreeSet::from([18100, 18101]));
    check_endpoints(&fleet, &project, 12);

    let destroy = project.berth(&["destroy", "--auto-approve"]);
    destroy.expect(0);
    for k in ks {
        let left = fleet.stand_ins(k);
        assert!(left.is_empty(), "h{k} still runs {left:?}");
        let records = fleet.deployments(k);
        assert!(
            records.is_empty(),
            "h{k} still has {records:?} in {RUN_DIR}"
        );
    }
    let state = project.state_list();
    assert!(state.is_empty(), "the state still holds {state:#?}");
}

#[test]
fn hosts_test_reports_latency_and_doctor_names_a_missing_model_file() {
    let fleet = fleet();
    let models = [
        ModelSpec::new("alpha", 18120, "", &["h9", "h10"], 2),
        ModelSpec::new("beta", 18121, "", &["h9", "h10"], 2),
    ];
    let project = Project::new(&hosts(&fleet, [9, 10]), &models, 4);

    let test = project.berth(&["hosts", "test", "h9"]);
    test.expect(0);
    assert!(
        test.stdout
            .contains(&format!("host h9 ({}:22)", fleet.address(9)))
            && test.stdout.contains("connected in")
            && test.stdout.contains("ms, command round trip"),
        "{}",
        test.all()
    );
    let test = project.berth(&["hosts", "test", "h9", "--json"]);
    test.expect(0);
    let doc = test.json();
    assert_eq!(doc["ok"], true, "{doc}");
    assert!(
        doc["connect_ms"].is_u64() && doc["command_ms"].is_u64(),
        "{doc}"
    );

    for k in [9, 10] {
        for m in ["alpha", "beta"] {
            fleet.put_model_file(k, &format!("{m}.gguf"));
        }
    }
    let doctor = project.berth(&["hosts", "doctor"]);
    doctor.expect(0);
    let doctor = project.berth(&["hosts", "doctor", "--json"]);
    doctor.expect(0);
    let doc = doctor.json();
    let checks = |doc: &Value| -> BTreeMap<(String, String), String> {
        doc.as_array()
            .expect("a list of hosts")
            .iter()
            .flat_map(|h| {
                let host = h["host"].as_str().unwrap_or_default().to_string();
                h["checks"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |c| {
                        (
                            (
                                host.clone(),
                                c["check"].as_str().unwrap_or_default().to_string(),
                            ),
                            c["status"].as_str().unwrap_or_default().to_string(),
                        )
                    })
            })
            .collect()
    };
    let all = checks(&doc);
    for k in ["h9", "h10"] {
        for c in [
            "reachable",
            "run_dir",
            "source alpha",
            "source beta",
            "port 18120",
        ] {
            assert_eq!(
                all.get(&(k.to_string(), c.to_string())).map(String::as_str),
                Some("ok"),
                "{k} {c}: {doc:#}"
            );
        }
    }

    fleet.exec_ok(10, &format!("rm {MODELS_DIR}/beta.gguf"));
    let doctor = project.berth(&["hosts", "doctor"]);
    doctor.expect(1);
    let missing = format!("{MODELS_DIR}/beta.gguf is missing");
    assert!(doctor.stdout.contains(&missing), "{}", doctor.all());
    let h10 = doctor
        .stdout
        .split("host.h10")
        .nth(1)
        .expect("a section for host.h10");
    assert!(h10.contains(&missing), "{}", doctor.stdout);
    let doc = project.berth(&["hosts", "doctor", "--json"]).json();
    let failing: Vec<(String, String)> = checks(&doc)
        .into_iter()
        .filter(|(_, status)| status == "fail")
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        failing,
        [("h10".to_string(), "source beta".to_string())],
        "{doc:#}"
    );

    // Read-only: doctor started nothing and left no record.
    for k in [9, 10] {
        assert!(fleet.stand_ins(k).is_empty(), "h{k}");
        assert!(fleet.deployments(k).is_empty(), "h{k}");
    }
}

#[test]
fn a_second_berth_on_a_locked_host_fails_naming_the_holder_and_starts_nothing_there() {
    let fleet = fleet();
    // Two operators with separate config dirs (so separate state), sharing h7.
    let first = Project::new(
        &hosts(&fleet, [7]),
        &[ModelSpec::new("slow", 18110, "--load-secs 4", &["h7"], 1)],
        4,
    );
    let second = Project::new(
        &hosts(&fleet, [7, 8]),
        &[ModelSpec::new("fast", 18111, "", &["h7", "h8"], 2)],
        4,
    );

    let mut holder_run = first.spawn(&["apply", "--auto-approve"]);
    let mut holder = Value::Null;
    assert!(
        wait_until(Duration::from_secs(20), || {
            holder = first.lock_holder().unwrap_or(Value::Null);
            holder["operation"] == "apply"
        }),
        "the first apply never took its state lock: {holder}"
    );
    let id = holder["id"].as_str().expect("lock id").to_string();
    let pid = holder["pid"].as_u64().expect("lock pid");
    assert_eq!(pid, u64::from(holder_run.pid()));
    let who = format!(
        "{}@{}",
        holder["user"].as_str().expect("user"),
        holder["hostname"].as_str().expect("hostname")
    );
    // The host lock is taken once the plan is made; wait for it on h7 itself.
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(20), || {
            fleet
                .exec(7, &format!("cat {RUN_DIR}/.lock 2>/dev/null"))
                .stdout_text()
                .contains(&id)
        }),
        "h7's host lock never named {id}"
    );
    eprintln!(
        "host lock on h7 seen {:.2}s after the state lock",
        started.elapsed().as_secs_f64()
    );

    let refused = second.berth(&["apply", "--auto-approve"]);
    assert!(
        !holder_run.stdout_so_far().contains("Apply complete"),
        "the first apply ended before the second tried: the test proves nothing"
    );
    refused.expect(1);
    let text = refused.all();
    for needle in [
        "host h7 is locked by".to_string(),
        id.clone(),
        who.clone(),
        format!("pid {pid}"),
        "apply".to_string(),
    ] {
        assert!(text.contains(&needle), "no `{needle}` in:\n{text}");
    }
    // h8 is not locked: the second berth converges there.
    let statuses = second.statuses();
    assert_eq!(
        statuses.get("model.fast@h8").map(|s| &s["state"]),
        Some(&Value::from("ready")),
        "{statuses:#?}"
    );
    assert_eq!(fleet.http_get(8, 18111, "/v1/models").map(|r| r.0), Ok(200));
    // And on h7 it started nothing, stopped nothing and recorded nothing as ready.
    assert_eq!(ports_on(&fleet, 7), BTreeSet::from([18110]));
    assert!(
        !fleet.deployments(7).iter().any(|d| d.contains("fast")),
        "{:?}",
        fleet.deployments(7)
    );
    assert_ne!(
        statuses.get("model.fast@h7").map(|s| &s["state"]),
        Some(&Value::from("ready"))
    );

    let held = holder_run.wait(Duration::from_secs(60));
    held.expect(0);
    assert_eq!(fleet.http_get(7, 18110, "/v1/models").map(|r| r.0), Ok(200));
    assert_eq!(
        fleet
            .exec(7, &format!("cat {RUN_DIR}/.lock"))
            .stdout_text()
            .trim(),
        "",
        "the host lock still names a holder after the apply ended"
    );

    first.berth(&["destroy", "--auto-approve"]).expect(0);
    second.berth(&["destroy", "--auto-approve"]).expect(0);
    for k in [7, 8] {
        assert!(
            fleet.stand_ins(k).is_empty(),
            "h{k}: {:?}",
            fleet.stand_ins(k)
        );
    }
}

/// The host lock exists so that two operators with separate state can share a host: one after
/// the other, neither may undo what the other runs there.
#[test]
fn a_second_state_leaves_what_another_state_runs_on_a_shared_host_alone() {
    let fleet = fleet();
    let theirs = Project::new(
        &hosts(&fleet, [11]),
        &[ModelSpec::new("theirs", 18130, "", &["h11"], 1)],
        4,
    );
    let ours = Project::new(
        &hosts(&fleet, [11]),
        &[ModelSpec::new("ours", 18131, "", &["h11"], 1)],
        4,
    );
    theirs.berth(&["apply", "--auto-approve"]).expect(0);

    let plan = ours.berth(&["plan", "--format", "json"]);
    plan.expect(0);
    let doc = plan.json();
    let destroys: Vec<String> = doc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter(|r| r["action"] == "destroy")
        .map(|r| format!("{}: {}", r["address"], r["reason"]))
        .collect();
    let apply = ours.berth(&["apply", "--auto-approve"]);
    let survived = fleet.http_get(11, 18130, "/v1/models").map(|r| r.0);
    let their_drift = theirs.berth(&["drift"]);

    // Clean up before judging, so a failure leaves h11 empty for the next run.
    ours.berth(&["destroy", "--auto-approve"]);
    theirs.berth(&["destroy", "--auto-approve"]);
    ours.berth(&["destroy", "--auto-approve"]);
    assert!(
        destroys.is_empty(),
        "a plan of another state destroys what the first state runs on h11: {destroys:?}\n\
         apply:\n{}\nthe first state's model afterwards answers {survived:?}; its drift exits \
         {:?}:\n{}",
        apply.all(),
        their_drift.code,
        their_drift.all()
    );
    apply.expect(0);
    assert_eq!(survived, Ok(200));
    their_drift.expect(0);
}

/// DESIGN.md section 4: one SSH connection per host for a whole command (refresh, host lock,
/// every step), so that a fleet pays one handshake per host and a host's sshd sees one login.
#[test]
fn every_command_logs_in_to_a_host_once() {
    let fleet = fleet();
    let project = Project::new(
        &hosts(&fleet, [12]),
        &[
            ModelSpec::new("one", 18140, "", &["h12"], 1),
            ModelSpec::new("two", 18141, "", &["h12"], 1),
        ],
        4,
    );
    let mut findings = Findings::default();
    for args in [
        &["plan"][..],
        &["apply", "--auto-approve"],
        &["drift"],
        &["destroy", "--auto-approve"],
    ] {
        let before = fleet.logins(12);
        let run = project.berth(args);
        let after = fleet.logins(12);
        assert!(
            matches!(run.code, Some(0 | 2)),
            "`berth {}`:\n{}",
            args.join(" "),
            run.all()
        );
        findings.check(after - before == 1, || {
            format!(
                "`berth {}` logged in to h12 {} times (expected once)",
                args.join(" "),
                after - before
            )
        });
    }
    assert!(fleet.stand_ins(12).is_empty());
    findings.assert_none();
}

/// `berth force-unlock --host` removes a live host lease, naming its holder, and the berth that
/// held it stops changing that host at its next renewal instead of carrying on unprotected.
#[test]
fn force_unlock_host_removes_a_lease() {
    let fleet = fleet();
    let holder = Project::new(
        &hosts(&fleet, [13]),
        &[ModelSpec::new("slow", 18140, "--load-secs 50", &["h13"], 1)],
        4,
    );
    let other = Project::new(&hosts(&fleet, [13]), &[], 4);
    let mut run = holder.spawn(&["apply", "--auto-approve"]);
    let mut id = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            id = holder
                .lock_holder()
                .and_then(|h| h["id"].as_str().map(str::to_string))
                .unwrap_or_default();
            !id.is_empty()
                && run.stdout_so_far().contains("model.slow@h13: probing")
                && fleet
                    .exec(13, &format!("cat {RUN_DIR}/.lock 2>/dev/null"))
                    .stdout_text()
                    .contains(&id)
        }),
        "the apply never held h13's host lock while gating:\n{}",
        run.stdout_so_far()
    );

    let unlock = other.berth(&["force-unlock", "--host", "h13"]);
    unlock.expect(0);
    let removed = Instant::now();
    for needle in [
        "Removed the host lock on h13",
        &format!("lock {id} held by"),
        &format!("pid {}", run.pid()),
    ] {
        assert!(
            unlock.stdout.contains(needle),
            "no `{needle}` in:\n{}",
            unlock.all()
        );
    }
    assert_eq!(
        fleet
            .exec(13, &format!("cat {RUN_DIR}/.lock"))
            .stdout_text()
            .trim(),
        "",
        "the lease is still on h13"
    );
    // Nothing left to remove.
    let again = other.berth(&["force-unlock", "--host", "h13"]);
    again.expect(0);
    assert!(
        again.stdout.contains("no host lock to remove"),
        "{}",
        again.all()
    );

    // The holder finds out at its next renewal (every 10 s), not when its gate times out.
    let ended = run.wait(Duration::from_secs(60));
    ended.expect(1);
    let text = ended.all();
    let lost = "✗ model.slow@h13: failed at host lock: the host lock on h13 was removed (berth force-unlock --host h13)";
    assert!(text.contains(lost), "no `{lost}` in:\n{text}");
    assert!(
        removed.elapsed() < Duration::from_secs(20),
        "the holder went on {:?} after its lease was removed",
        removed.elapsed()
    );
    holder.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(fleet.stand_ins(13).is_empty(), "{:?}", fleet.stand_ins(13));
}
