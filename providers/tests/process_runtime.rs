//! ProcessRuntime over LocalTransport against the real model-server stand-in: start, observe,
//! secrets, stop, pid reuse, restarts, a stop outliving its berth and hostile names.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use berth_providers::probe::{GateTiming, Probe, gate};
use berth_providers::{
    Handle, LaunchSpec, Liveness, LocalTransport, ProcessHandle, ProcessRuntime, ProviderError,
    Runtime,
};
use berth_test_support::procs::{self, signal};
use common::{
    KillOnDrop, alive, all_command_lines, free_port, group_members, pid, stand_in, start_ticks,
    stat_fields, ticks, wait_until,
};
use tokio_util::sync::CancellationToken;

const GRACE: Duration = Duration::from_secs(5);

fn local() -> LocalTransport {
    LocalTransport::new("local-test")
}

/// A service that runs the shell `command` (no env, no port to probe).
fn shell_service(run_dir: &str, address: &str, command: &str) -> LaunchSpec {
    LaunchSpec {
        owner: "test-state".into(),
        address: address.into(),
        run_dir: run_dir.into(),
        command: command.into(),
        env: vec![],
        port: 1,
        fingerprint: "f".into(),
        runtime: Default::default(),
    }
}

fn fast(timeout_secs: u64) -> GateTiming {
    GateTiming::fixed(
        Duration::from_secs(timeout_secs),
        Duration::from_millis(200),
    )
}

#[tokio::test]
async fn start_observe_secrets_stop() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let port = free_port();
    let secret = "s3cr3t-value-4f9a1c";
    let mut spec = stand_in(run_dir, "model.qwen@local", port, "--load-secs 1");
    spec.env = vec![
        ("HF_TOKEN".to_string(), secret.to_string()),
        ("QUOTED".to_string(), "it's \"$HOME\" `x`".to_string()),
    ];

    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    assert_eq!(inst.address, "model.qwen@local");
    assert_eq!(inst.fingerprint, spec.fingerprint);
    assert_eq!(inst.port, port);
    assert_eq!(Some(ticks(&inst)), start_ticks(pid(&inst)));
    // The recorded pid leads its own process group (and session), apart from berth's.
    let fields = common::stat_fields(pid(&inst)).unwrap();
    assert_eq!(fields[2], pid(&inst).to_string(), "pgrp");
    assert_eq!(fields[3], pid(&inst).to_string(), "session");

    let observed = rt.observe_all(&t, run_dir).await.unwrap();
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].instance, inst);
    assert_eq!(observed[0].liveness, Liveness::Running);
    let one = rt
        .observe(&t, run_dir, &inst.address)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one, observed[0]);
    assert_eq!(
        rt.observe(&t, run_dir, "model.other@local").await.unwrap(),
        None
    );

    let ready = gate(
        &t,
        &rt,
        run_dir,
        &inst,
        &Probe::Http {
            path: "/v1/models".into(),
        },
        fast(30),
        CancellationToken::new(),
        |_| {},
    )
    .await
    .unwrap();
    assert!(ready.elapsed >= Duration::from_millis(500), "{ready:?}");

    // The service got the env, exactly.
    let environ = procs::environ(pid(&inst)).unwrap();
    assert!(environ.contains(&format!("HF_TOKEN={secret}")));
    assert!(environ.contains(&"QUOTED=it's \"$HOME\" `x`".to_string()));

    // The secret is in the mode-0600 env file and nowhere else.
    let dir = ProcessRuntime::deployment_dir(run_dir, &inst.address);
    let env_file = std::path::Path::new(&dir).join("env");
    assert_eq!(
        std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(&env_file).unwrap().contains(secret));
    assert!(
        !all_command_lines().contains(secret),
        "secret in a command line"
    );
    let log = std::fs::read_to_string(format!("{dir}/log")).unwrap();
    assert!(
        log.contains("listening on") && log.contains("loaded after 1 s"),
        "{log}"
    );
    assert!(!log.contains(secret));
    let meta = std::fs::read_to_string(format!("{dir}/meta.json")).unwrap();
    assert!(!meta.contains(secret));
    let rendered = rt.render(&spec);
    assert!(
        rendered.contains("HF_TOKEN") && !rendered.contains(secret),
        "{rendered}"
    );
    let tail = rt.logs(&t, run_dir, &inst.address, 1).await.unwrap();
    assert_eq!(tail.lines().count(), 1, "{tail:?}");

    rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
    assert!(!alive(pid(&inst)), "the service survived stop");
    assert!(
        group_members(pid(&inst)).is_empty(),
        "its group survived stop"
    );
    assert!(!std::path::Path::new(&dir).exists());
    assert!(rt.observe_all(&t, run_dir).await.unwrap().is_empty());
    // Stopping again, or stopping what never existed, is fine.
    rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
}

#[tokio::test]
async fn stop_reaches_children_and_escalates_to_kill() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    // A service that ignores SIGTERM and has a child in its group.
    let spec = shell_service(
        run_dir,
        "svc.stubborn@local",
        "trap '' TERM; sleep 300 & while :; do sleep 1; done",
    );
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    assert!(wait_until(Duration::from_secs(2), || group_members(pid(
        &inst
    ))
    .len()
        >= 2));
    let begun = std::time::Instant::now();
    rt.stop(&t, run_dir, &spec.address, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        begun.elapsed() < Duration::from_secs(8),
        "{:?}",
        begun.elapsed()
    );
    assert!(group_members(pid(&inst)).is_empty());
}

#[tokio::test]
async fn stop_gives_the_service_its_grace_period() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let marker = run.path().join("shut down");
    let q = berth_providers::transport::quote(marker.to_str().unwrap()).unwrap();
    // Takes 0.5 s to shut down after SIGTERM, well within the grace period.
    let spec = shell_service(
        run_dir,
        "svc.graceful@local",
        &format!(
            "trap \"sleep 0.5; echo cleanly > {q}; exit 0\" TERM; while :; do sleep 0.1; done"
        ),
    );
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    let begun = std::time::Instant::now();
    rt.stop(&t, run_dir, &spec.address, Duration::from_secs(5))
        .await
        .unwrap();
    let took = begun.elapsed();
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "cleanly\n");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert!(group_members(pid(&inst)).is_empty());
}

#[tokio::test]
async fn kill_9_is_observed_as_exited() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let spec = stand_in(run_dir, "model.a@local", free_port(), "");
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    assert_eq!(
        rt.observe_all(&t, run_dir).await.unwrap()[0].liveness,
        Liveness::Running
    );

    // Kill the server itself: depending on the shell, the recorded group leader is the server
    // or the `sh -c` running it, which then exits with it.
    let server = server_pid(pid(&inst));
    signal(server, libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(2), || !alive(pid(&inst))));
    let observed = rt.observe_all(&t, run_dir).await.unwrap();
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].liveness, Liveness::Exited);
    assert_eq!(observed[0].instance, inst);

    rt.stop(&t, run_dir, &spec.address, GRACE).await.unwrap();
    assert!(rt.observe_all(&t, run_dir).await.unwrap().is_empty());
}

/// The stand-in process in the group led by `leader`.
fn server_pid(leader: u32) -> u32 {
    let mut found = None;
    assert!(wait_until(Duration::from_secs(2), || {
        found = group_members(leader).into_iter().find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.starts_with("berth-model"))
        });
        found.is_some()
    }));
    found.unwrap()
}

#[tokio::test]
async fn killing_the_group_leader_leaves_nothing_for_the_next_start() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let port = free_port();
    let spec = stand_in(run_dir, "model.a@local", port, "");
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    let server = server_pid(pid(&inst));
    signal(pid(&inst), libc::SIGKILL);
    assert!(wait_until(Duration::from_secs(2), || !alive(pid(&inst))));
    let observed = rt
        .observe(&t, run_dir, &spec.address)
        .await
        .unwrap()
        .unwrap();
    // Where the shell execs the server, the leader was the server and the instance exited;
    // where the leader was a shell around it, the server runs on in its group.
    let expected = if alive(server) {
        Liveness::Running
    } else {
        Liveness::Exited
    };
    assert_eq!(observed.liveness, expected);
    // Restarting on the same port works: what was left of the old group is stopped first.
    let again = rt.start(&t, &spec).await.unwrap();
    let _guard2 = KillOnDrop(vec![pid(&again)]);
    assert!(!alive(server), "the old server survived the restart");
    let ready = gate(
        &t,
        &rt,
        run_dir,
        &again,
        &Probe::Http {
            path: "/health".into(),
        },
        fast(10),
        CancellationToken::new(),
        |_| {},
    )
    .await;
    assert!(ready.is_ok(), "{ready:?}");
    rt.stop(&t, run_dir, &spec.address, GRACE).await.unwrap();
}

#[tokio::test]
async fn a_reused_pid_is_reported_and_spared() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    // An unrelated process, leader of its own group, that happens to have the recorded pid.
    let mut bystander = std::process::Command::new("sleep")
        .arg("100")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = bystander.id();
    let ticks = start_ticks(pid).unwrap();
    let address = "model.old@local";
    let dir = ProcessRuntime::deployment_dir(run_dir, address);
    std::fs::create_dir_all(&dir).unwrap();
    // Written by hand, the way an older berth would have left it (with spaces, across lines).
    std::fs::write(
        format!("{dir}/meta.json"),
        format!(
            "{{\n  \"address\": \"{address}\",\n  \"fingerprint\": \"old\",\n  \"port\": 9,\n  \
             \"pid\": {pid},\n  \"start_ticks\": {},\n  \"started_at\": 1\n}}\n",
            ticks + 1
        ),
    )
    .unwrap();

    let observed = rt.observe_all(&t, run_dir).await.unwrap();
    assert_eq!(observed.len(), 1);
    assert_eq!(common::pid(&observed[0].instance), pid);
    assert_eq!(observed[0].liveness, Liveness::Replaced);

    rt.stop(&t, run_dir, address, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(alive(pid), "stop killed a process berth did not start");
    assert!(bystander.try_wait().unwrap().is_none());
    assert!(!std::path::Path::new(&dir).exists());
    bystander.kill().unwrap();
    bystander.wait().unwrap();
}

#[tokio::test]
async fn a_stop_that_outlives_its_berth_spares_the_next_instance() {
    // A berth killed during a stop leaves its stop script running on the host. When a later
    // apply has meanwhile stopped the same instance and started a new one, the old script must
    // not remove the new instance's directory when it carries on. The old script is paused
    // (SIGSTOP) while the later apply works, and resumed after: the order of a real race.
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let spec = |command: &str| shell_service(run_dir, "svc.contended@local", command);
    // Ignores SIGTERM: only a SIGKILL ends it.
    let old = rt
        .start(&t, &spec("trap '' TERM; exec sleep 300"))
        .await
        .unwrap();
    let next = spec("exec sleep 300");
    let (lingering, new) = tokio::join!(
        // The killed berth's stop: its grace is long, so it is still waiting when paused.
        rt.stop(&t, run_dir, &next.address, Duration::from_secs(30)),
        async {
            // Paused once it waits for the old process to go (a nap of its is running): it has
            // read the old record by then, as the stop of a killed berth would have.
            let mut script = Vec::new();
            assert!(wait_until(Duration::from_secs(5), || {
                script = processes_with(&["berth_stop", run_dir]);
                processes_with(&["sleep"]).into_iter().any(|nap| {
                    stat_fields(nap).is_some_and(|f| script.iter().any(|p| f[1] == p.to_string()))
                })
            }));
            signal_all(&script, libc::SIGSTOP);
            // The next apply: stops the old process (SIGKILL after 1 s), starts the new one.
            rt.stop(&t, run_dir, &next.address, Duration::from_secs(1))
                .await
                .unwrap();
            let new = rt.start(&t, &next).await.unwrap();
            signal_all(&script, libc::SIGCONT);
            new
        }
    );
    let _guard = KillOnDrop(vec![pid(&old), pid(&new)]);
    lingering.unwrap();
    assert!(!alive(pid(&old)));
    let seen = rt
        .observe(&t, run_dir, &next.address)
        .await
        .unwrap()
        .expect("the lingering stop removed the new instance's record");
    assert_eq!(common::pid(&seen.instance), pid(&new));
    assert_eq!(seen.liveness, Liveness::Running);
    rt.stop(&t, run_dir, &next.address, GRACE).await.unwrap();
    assert!(!alive(pid(&new)));
}

#[tokio::test]
async fn a_stop_leaves_a_start_in_progress_and_clears_one_that_died() {
    // A deployment directory without meta.json is a start still running (its `starting` file
    // names a live start command) or the leftovers of one that died.
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let address = "svc.half@local";
    let dir = ProcessRuntime::deployment_dir(run_dir, address);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(format!("{dir}/env"), "export A='1'\n").unwrap();
    let mut starter = std::process::Command::new("sleep")
        .arg("100")
        .spawn()
        .unwrap();
    std::fs::write(format!("{dir}/starting"), format!("{}\n", starter.id())).unwrap();

    rt.stop(&t, run_dir, address, GRACE).await.unwrap();
    assert!(
        std::path::Path::new(&format!("{dir}/env")).exists(),
        "a stop removed the directory of a start in progress"
    );

    starter.kill().unwrap();
    starter.wait().unwrap();
    rt.stop(&t, run_dir, address, GRACE).await.unwrap();
    assert!(
        !std::path::Path::new(&dir).exists(),
        "a dead start's leftovers were kept"
    );
}

/// Processes whose command line contains every one of `needles`.
fn processes_with(needles: &[&str]) -> Vec<u32> {
    procs::pids()
        .expect("read /proc")
        .into_iter()
        .filter(|&pid| {
            procs::cmdline(pid).is_some_and(|args| {
                let line = args.join(" ");
                needles.iter().all(|n| line.contains(n))
            })
        })
        .collect()
}

fn signal_all(pids: &[u32], signal: libc::c_int) {
    for &pid in pids {
        procs::signal(pid, signal);
    }
}

#[tokio::test]
async fn missing_run_dir_observes_nothing() {
    let run = tempfile::tempdir().unwrap();
    let missing = run.path().join("nope");
    let rt = ProcessRuntime::new();
    let all = rt
        .observe_all(&local(), missing.to_str().unwrap())
        .await
        .unwrap();
    assert!(all.is_empty());
}

#[tokio::test]
async fn start_replaces_what_runs_for_the_address() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let first = rt
        .start(&t, &stand_in(run_dir, "model.a@local", free_port(), ""))
        .await
        .unwrap();
    let _g1 = KillOnDrop(vec![pid(&first)]);
    let other = rt
        .start(&t, &stand_in(run_dir, "model.b@local", free_port(), ""))
        .await
        .unwrap();
    let _g2 = KillOnDrop(vec![pid(&other)]);
    let second = rt
        .start(&t, &stand_in(run_dir, "model.a@local", free_port(), ""))
        .await
        .unwrap();
    let _g3 = KillOnDrop(vec![pid(&second)]);
    assert!(!alive(pid(&first)), "the first instance still runs");
    let all = rt.observe_all(&t, run_dir).await.unwrap();
    let summary: Vec<(&str, u32, Liveness)> = all
        .iter()
        .map(|o| {
            (
                o.instance.address.as_str(),
                common::pid(&o.instance),
                o.liveness,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("model.a@local", pid(&second), Liveness::Running),
            ("model.b@local", pid(&other), Liveness::Running),
        ]
    );
    for address in ["model.a@local", "model.b@local"] {
        rt.stop(&t, run_dir, address, GRACE).await.unwrap();
    }
    assert!(!alive(pid(&second)) && !alive(pid(&other)));
}

#[tokio::test]
async fn a_command_that_dies_at_once_still_starts() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let spec = LaunchSpec {
        owner: "test-state".into(),
        address: "model.broken@local".into(),
        run_dir: run_dir.into(),
        command: "echo 'no such model' >&2; exit 7".into(),
        env: vec![],
        port: free_port(),
        fingerprint: "f".into(),
        runtime: Default::default(),
    };
    let inst = rt.start(&t, &spec).await.unwrap();
    assert!(wait_until(Duration::from_secs(2), || !alive(pid(&inst))));
    let observed = rt
        .observe(&t, run_dir, &spec.address)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(observed.liveness, Liveness::Exited);
    let log = rt.logs(&t, run_dir, &spec.address, 20).await.unwrap();
    assert_eq!(log, "no such model\n");
    rt.stop(&t, run_dir, &spec.address, GRACE).await.unwrap();
}

#[tokio::test]
async fn hostile_names_are_quoted() {
    let run = tempfile::tempdir().unwrap();
    // A run dir and an address full of shell syntax; nothing must run but the service.
    let run_dir = run.path().join("run dir 'x' $(touch pwned-a)");
    let run_dir = run_dir.to_str().unwrap();
    let address = "model.x@h;touch pwned-b;$(touch pwned-c)`touch pwned-d`\"'\n..";
    let (t, rt) = (local(), ProcessRuntime::new());
    let mut spec = stand_in(run_dir, address, free_port(), "--model 'it'\"'\"'s'");
    spec.fingerprint = "fp \"quoted\" 'x'".into();
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    let observed = rt.observe_all(&t, run_dir).await.unwrap();
    assert_eq!(observed.len(), 1);
    assert_eq!(observed[0].instance, inst);
    assert_eq!(observed[0].instance.address, address);
    assert_eq!(observed[0].liveness, Liveness::Running);
    // The deployment directory stays inside the run dir.
    let dir = ProcessRuntime::deployment_dir(run_dir, address);
    assert!(
        std::path::Path::new(&dir)
            .parent()
            .unwrap()
            .ends_with("deployments")
    );
    rt.stop(&t, run_dir, address, GRACE).await.unwrap();
    assert!(!alive(pid(&inst)));
    for name in ["pwned-a", "pwned-b", "pwned-c", "pwned-d"] {
        assert!(!std::path::Path::new(name).exists(), "{name} was created");
        assert!(!run.path().join(name).exists(), "{name} was created");
    }
}

#[tokio::test]
async fn render_shows_command_and_env_keys_only() {
    let rt = ProcessRuntime::new();
    let spec = LaunchSpec {
        owner: "test-state".into(),
        address: "model.a@h".into(),
        run_dir: "/var/lib/berth".into(),
        command: "llama-server --port 8080".into(),
        env: vec![
            ("HF_TOKEN".into(), "hunter2".into()),
            ("CUDA_VISIBLE_DEVICES".into(), "0".into()),
        ],
        port: 8080,
        fingerprint: "f".into(),
        runtime: Default::default(),
    };
    let text = rt.render(&spec);
    assert!(text.contains("llama-server --port 8080"), "{text}");
    assert!(text.contains("HF_TOKEN, CUDA_VISIBLE_DEVICES"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert_eq!(rt.name(), "process");
}

#[tokio::test]
async fn an_invalid_env_key_is_refused_without_its_value() {
    let run = tempfile::tempdir().unwrap();
    let rt = ProcessRuntime::new();
    let mut spec = stand_in(run.path().to_str().unwrap(), "m@h", 1, "");
    spec.env = vec![("BAD KEY".into(), "hunter2".into())];
    let err = rt.start(&local(), &spec).await.unwrap_err().to_string();
    assert!(err.contains("BAD KEY") && !err.contains("hunter2"), "{err}");
}

/// A deployment whose `meta.json` was deleted is stopped through the identity berth's state
/// recorded (pid and start ticks), and its directory goes with it.
#[tokio::test]
async fn a_missing_marker_is_stopped_through_the_recorded_identity() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let spec = shell_service(run_dir, "svc.lost@local", "while :; do sleep 0.1; done");
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    let dir = ProcessRuntime::deployment_dir(run_dir, &spec.address);
    std::fs::remove_file(format!("{dir}/meta.json")).unwrap();

    let survey = rt.survey(&t, run_dir).await.unwrap();
    assert!(survey.found.is_empty());
    assert_eq!(survey.problems.len(), 1, "{survey:?}");
    assert_eq!(survey.problems[0].path, dir);
    assert_eq!(survey.problems[0].detail, "has no meta.json");

    rt.stop_with(&t, run_dir, &spec.address, Some(&inst.handle), GRACE)
        .await
        .unwrap();
    assert!(group_members(pid(&inst)).is_empty(), "the service survived");
    assert!(!std::path::Path::new(&dir).exists());
}

/// An identity whose start ticks differ from the live process with that pid is someone else's
/// (the pid was reused): a stop through it signals nothing.
#[tokio::test]
async fn a_recorded_identity_never_signals_a_reused_pid() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    // A process berth did not start, in a group of its own, posing as the recorded pid.
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .process_group(0)
        .spawn()
        .unwrap();
    let pid = other.id();
    let _guard = KillOnDrop(vec![pid]);
    let ticks = start_ticks(pid).unwrap();
    let stale = Handle::from(ProcessHandle {
        pid,
        start_ticks: ticks + 1,
    });
    rt.stop_with(&t, run_dir, "svc.gone@local", Some(&stale), GRACE)
        .await
        .unwrap();
    assert!(alive(pid), "an unrelated process was signalled");
    other.kill().unwrap();
    other.wait().unwrap();
}

/// A garbled marker is a problem the survey reports, and without a recorded identity a stop
/// refuses (naming the marker) rather than leaving the service running unseen.
#[tokio::test]
async fn a_garbled_marker_without_identity_is_reported_and_not_stopped() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let spec = shell_service(run_dir, "svc.garbled@local", "while :; do sleep 0.1; done");
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    let marker = format!(
        "{}/meta.json",
        ProcessRuntime::deployment_dir(run_dir, &spec.address)
    );
    std::fs::write(&marker, "{\"address\":\"svc.garb").unwrap();

    let survey = rt.survey(&t, run_dir).await.unwrap();
    assert!(survey.found.is_empty());
    assert_eq!(survey.problems.len(), 1, "{survey:?}");
    assert_eq!(survey.problems[0].path, marker);
    assert!(
        survey.problems[0].detail.starts_with("is unreadable"),
        "{survey:?}"
    );

    let err = rt
        .stop(&t, run_dir, &spec.address, GRACE)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ProviderError::UnreadableMarker { path, .. } if *path == marker),
        "{err:?}"
    );
    assert!(err.to_string().contains("no pid and start_ticks"), "{err}");
    assert!(alive(pid(&inst)), "stopped without knowing what it stopped");
    assert!(std::path::Path::new(&marker).exists());

    // With the identity the state recorded, the same stop succeeds.
    rt.stop_with(&t, run_dir, &spec.address, Some(&inst.handle), GRACE)
        .await
        .unwrap();
    assert!(group_members(pid(&inst)).is_empty());
}

/// Services run in their deployment directory with a login's environment, whatever berth's
/// own working directory and environment hold.
#[tokio::test]
async fn a_service_runs_in_its_deployment_directory() {
    let run = tempfile::tempdir().unwrap();
    let run_dir = run.path().to_str().unwrap();
    let (t, rt) = (local(), ProcessRuntime::new());
    let spec = shell_service(run_dir, "svc.cwd@local", "pwd > where; sleep 30");
    let inst = rt.start(&t, &spec).await.unwrap();
    let _guard = KillOnDrop(vec![pid(&inst)]);
    let dir = ProcessRuntime::deployment_dir(run_dir, &spec.address);
    assert!(wait_until(Duration::from_secs(2), || {
        std::fs::read_to_string(format!("{dir}/where")).is_ok_and(|w| w.trim() == dir)
    }));
    rt.stop(&t, run_dir, &spec.address, GRACE).await.unwrap();
}
