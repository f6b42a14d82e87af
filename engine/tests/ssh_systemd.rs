//! The systemd runtime end to end: the real `berth` binary applies models as units on systemd
//! hosts (containers with systemd as PID 1 and sshd, reached over SSH on a published
//! 127.0.0.1 port), and the tests look at the hosts behind berth's back with `docker exec`:
//! units active, `systemd-analyze verify` clean, drift after a hand stop but not after a crash
//! systemd restarted, heal, re-adoption after a lost state, destroy, secrets only in the 0600
//! env file. Needs root and docker; the image is built by testdata/systemd-host/build-image.

mod common;

use std::time::Duration;

use berth_test_support::systemd_host::{BIN_DIR, SystemdHost};
use common::{Workdir, wait_until};

const SECRET: &str = "s3cret-Unit-Value-8e2f";

/// A model of the config: id, port, the backend it prefers.
struct M {
    id: &'static str,
    port: u16,
    backend: &'static str,
    secret_env: bool,
    /// Extra flags of the stand-in.
    flags: &'static str,
}

/// A config with one host (the systemd host, logging in as `user`), a systemd backend `units`
/// (user scope when `user_scope`) and a process backend `plain`, and `models`.
fn config(host: &SystemdHost, user: &str, run_dir: &str, user_scope: bool, models: &[M]) -> String {
    let mut text = format!(
        r#"settings {{
  state_dir   = ".berth"
  parallelism = 4
}}

{variable}host "sd" {{
  connection {{
    host                = "127.0.0.1"
    port                = {port}
    user                = "{user}"
    key_path            = "{key}"
    host_key            = "{host_key}"
    connect_timeout_sec = 5
  }}
  capabilities {{
    backends = ["units", "plain"]
  }}
  run_dir = "{run_dir}"
}}

backend "units" {{
  runtime    = "systemd"
  verify_cmd = "test -x {BIN_DIR}/berth-model-server"
{scope}}}

backend "plain" {{
  runtime = "process"
}}
"#,
        variable = if models.iter().any(|m| m.secret_env) {
            "variable \"api_key\" {\n  sensitive = true\n}\n\n"
        } else {
            ""
        },
        port = host.ssh_port,
        key = host.key().display(),
        host_key = host.host_key(),
        scope = if user_scope {
            "  systemd {\n    scope = \"user\"\n  }\n"
        } else {
            "  systemd {\n    options = { LimitNOFILE = \"4096\" }\n  }\n"
        },
    );
    for m in models {
        let server = format!("{BIN_DIR}/berth-model-server");
        let env = if m.secret_env {
            "  env = { API_KEY = var.api_key, MODE = \"plain\" }\n"
        } else {
            ""
        };
        text.push_str(&model_hcl(
            m.id,
            m.port,
            m.backend,
            run_dir,
            (&server, m.flags),
            env,
        ));
    }
    text
}

/// A model block: the stand-in `server` with `--port`, `--model`, a 0.3 s load and `flags`;
/// `env` is an `env = {...}` line or nothing.
fn model_hcl(
    id: &str,
    port: u16,
    backend: &str,
    run_dir: &str,
    (server, flags): (&str, &str),
    env: &str,
) -> String {
    format!(
        r#"
model "{id}" {{
  source   = "{run_dir}/{id}.gguf"
  size_gib = 0.1
  backend_policy {{
    prefer = ["{backend}"]
  }}
  runtime_defaults {{
    port = {port}
  }}
  launch {{
    start_cmd         = "{server} --port {{port}} --model {{model}} --load-secs 0.3{flags}"
    probe_http        = "/v1/models"
    probe_interval_ms = 100
    probe_timeout_sec = 60
  }}
{env}}}
"#
    )
}

fn project(text: &str) -> Workdir {
    let work = Workdir::new("berth-systemd-e2e-", false);
    std::fs::write(work.dir().join("main.hcl"), text).expect("main.hcl");
    work
}

/// `systemctl show` of `unit` on the host, as a map.
fn show(
    host: &SystemdHost,
    user_scope: bool,
    unit: &str,
) -> std::collections::BTreeMap<String, String> {
    let sc = if user_scope {
        "runuser -u berth -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user"
    } else {
        "systemctl"
    };
    host.root_ok(&format!(
        "{sc} show -p ActiveState,SubState,MainPID,NRestarts,InvocationID {unit}"
    ))
    .lines()
    .filter_map(|l| l.split_once('='))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The secret is in the environment of process `pid`, and every env file under `run_dir` is
/// mode 0600 and owned by `login`.
fn secret_reaches_the_service_through_its_env_file(
    host: &SystemdHost,
    pid: &str,
    run_dir: &str,
    login: &str,
) {
    let environ = host.root_ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    assert!(
        environ.lines().any(|l| l == format!("API_KEY={SECRET}")),
        "{environ}"
    );
    let env_files = host.root_ok(&format!(
        "find {run_dir}/systemd -name env -printf '%m %u\\n' | sort -u"
    ));
    assert_eq!(env_files.trim(), format!("600 {login}"), "{env_files}");
}

fn answers(host: &SystemdHost, port: u16) -> bool {
    host.root_sh(&format!("curl -fsS http://127.0.0.1:{port}/v1/models"))
        .success()
}

#[test]
fn units_apply_drift_heal_adopt_and_destroy_over_ssh() {
    let host = SystemdHost::start("life");
    let run_dir = "/var/lib/berth";
    host.root_ok(&format!(
        "mkdir -p {run_dir} && head -c 4096 /dev/zero > {run_dir}/alpha.gguf && cp {run_dir}/alpha.gguf {run_dir}/beta.gguf"
    ));
    let models = [
        M {
            id: "alpha",
            port: 8301,
            backend: "units",
            secret_env: false,
            flags: "",
        },
        M {
            id: "beta",
            port: 8302,
            backend: "units",
            secret_env: false,
            flags: "",
        },
    ];
    let work = project(&config(&host, "root", run_dir, false, &models));
    work.berth(&["validate"]).expect(0);
    let plan = work.berth(&["plan"]);
    plan.expect(0);
    assert!(plan.stdout.contains("model.alpha@sd"), "{}", plan.stdout);

    work.berth(&["apply", "--auto-approve"]).expect(0);
    let units = ["berth-alpha.service", "berth-beta.service"];
    let active = host.root_sh(&format!("systemctl is-active {}", units.join(" ")));
    assert!(active.success(), "{active:?}");
    for (unit, port) in units.iter().zip([8301, 8302]) {
        assert!(answers(&host, port), "{unit} does not answer on {port}");
        let path = format!("/etc/systemd/system/{unit}");
        let verify = host.root_sh(&format!("systemd-analyze verify {path}"));
        assert!(
            verify.success() && verify.stderr_text().trim().is_empty(),
            "systemd-analyze verify {path}: {verify:?}\n{}",
            host.root_ok(&format!("cat {path}"))
        );
        let text = host.root_ok(&format!("cat {path}"));
        for key in [
            "X-Berth-Address=model.",
            "X-Berth-Fingerprint=sha256:",
            "X-Berth-Owner=",
            "Restart=on-failure",
            "LimitNOFILE=4096",
            "EnvironmentFile=",
        ] {
            assert!(text.contains(key), "{key} in {path}:\n{text}");
        }
        assert!(
            host.root_ok(&format!("systemctl is-enabled {unit}"))
                .contains("enabled")
        );
    }
    work.berth(&["drift"]).expect(0);

    // A crash that systemd heals (Restart=on-failure) is not drift.
    let before = show(&host, false, units[0]);
    host.root_ok(&format!("kill -9 {}", before["MainPID"]));
    assert!(
        wait_until(Duration::from_secs(20), || {
            let now = show(&host, false, units[0]);
            now["NRestarts"] == "1" && now["ActiveState"] == "active" && answers(&host, 8301)
        }),
        "systemd did not restart the crashed unit: {:?}",
        show(&host, false, units[0])
    );
    let drift = work.berth(&["drift"]);
    drift.expect(0);

    // A unit stopped by hand is drift; apply starts it again.
    host.root_ok(&format!("systemctl stop {}", units[1]));
    let drift = work.berth(&["drift"]);
    drift.expect(2);
    assert!(drift.all().contains("model.beta@sd"), "{}", drift.all());
    assert!(!drift.all().contains("model.alpha@sd"), "{}", drift.all());
    // It says what systemd says of the unit, not what a process runtime would.
    let stopped = format!(
        "unit {} stopped (ActiveState=inactive, SubState=dead)",
        units[1]
    );
    assert!(drift.all().contains(&stopped), "{}", drift.all());
    assert!(!drift.all().contains("process exited"), "{}", drift.all());
    work.berth(&["apply", "--auto-approve"]).expect(0);
    assert!(
        host.root_sh(&format!("systemctl is-active {}", units[1]))
            .success()
    );
    assert!(answers(&host, 8302));
    work.berth(&["drift"]).expect(0);

    // Lost state: the units are found through their X-Berth keys and adopted, not restarted.
    let pids: Vec<String> = units
        .iter()
        .map(|u| show(&host, false, u)["MainPID"].clone())
        .collect();
    std::fs::remove_dir_all(work.state_dir()).unwrap();
    let plan = work.berth(&["plan", "--format", "json"]);
    plan.expect(0);
    for m in ["model.alpha@sd", "model.beta@sd"] {
        let resources = plan.json()["resources"].as_array().cloned().unwrap();
        let r = resources.iter().find(|r| r["address"] == m).unwrap();
        assert_eq!(r["action"], "reuse", "{r:#}");
    }
    work.berth(&["apply", "--auto-approve"]).expect(0);
    let after: Vec<String> = units
        .iter()
        .map(|u| show(&host, false, u)["MainPID"].clone())
        .collect();
    assert_eq!(pids, after, "adopted, not restarted");
    work.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Destroy stops, disables and removes the units and their env files.
    work.berth(&["destroy", "--auto-approve"]).expect(0);
    let left = host.root_ok(
        "ls /etc/systemd/system/ | grep '^berth-' || true; ls /etc/systemd/system/multi-user.target.wants/ | grep '^berth-' || true; find /var/lib/berth/systemd -mindepth 1 2>/dev/null || true",
    );
    assert!(left.trim().is_empty(), "left on the host: {left}");
    let loaded = host.root_ok("systemctl list-units --all --plain --no-legend 'berth-*'");
    assert!(loaded.trim().is_empty(), "units still loaded: {loaded}");
    assert!(!answers(&host, 8301) && !answers(&host, 8302));

    // A server that crashes while loading fails its gate at once (systemd's restart is a new
    // invocation, not the instance berth started), with the journal's tail, and its unit goes.
    let crashing = [M {
        id: "alpha",
        port: 8301,
        backend: "units",
        secret_env: false,
        flags: " --exit-after-secs 0.1",
    }];
    std::fs::write(
        work.dir().join("main.hcl"),
        config(&host, "root", run_dir, false, &crashing),
    )
    .unwrap();
    let failed = work.berth(&["apply", "--auto-approve"]);
    failed.expect(1);
    assert!(
        failed.all().contains("simulated crash") && failed.all().contains("step probe"),
        "{}",
        failed.all()
    );
    let left = host.root_ok("ls /etc/systemd/system/ | grep '^berth-' || true");
    assert!(left.trim().is_empty(), "left on the host: {left}");
}

#[test]
fn user_units_keep_secrets_in_their_env_file_beside_a_process_model() {
    let host = SystemdHost::start("user");
    let run_dir = "/home/berth/run";
    host.root_ok(&format!(
        "mkdir -p {run_dir} && head -c 4096 /dev/zero > {run_dir}/gamma.gguf && cp {run_dir}/gamma.gguf {run_dir}/delta.gguf && chown -R berth:berth {run_dir}"
    ));
    assert!(
        wait_until(Duration::from_secs(30), || host
            .root_sh("test -S /run/user/1000/systemd/private")
            .success()),
        "no user manager for berth: {}",
        host.root_ok("systemctl status user@1000.service --no-pager || true")
    );
    let models = [
        M {
            id: "gamma",
            port: 8311,
            backend: "units",
            secret_env: true,
            flags: "",
        },
        M {
            id: "delta",
            port: 8312,
            backend: "plain",
            secret_env: false,
            flags: "",
        },
    ];
    let work = project(&config(&host, "berth", run_dir, true, &models));
    let var = format!("api_key={SECRET}");
    let doctor = work.berth(&["hosts", "doctor", "--var", &var]);
    doctor.expect(0);
    assert!(
        doctor.all().contains("systemd user manager"),
        "{}",
        doctor.all()
    );
    let plan = work.berth(&["plan", "--var", &var]);
    plan.expect(0);
    work.berth(&["apply", "--auto-approve", "--var", &var])
        .expect(0);

    let unit_path = "/home/berth/.config/systemd/user/berth-gamma.service";
    let unit = host.root_ok(&format!("cat {unit_path}"));
    assert!(unit.contains("WantedBy=default.target"), "{unit}");
    let state = show(&host, true, "berth-gamma.service");
    assert_eq!(state["ActiveState"], "active", "{state:?}");
    assert!(answers(&host, 8311) && answers(&host, 8312));
    let verify = host.root_sh(&format!(
        "runuser -u berth -- env XDG_RUNTIME_DIR=/run/user/1000 systemd-analyze --user verify {unit_path}"
    ));
    assert!(
        verify.success() && verify.stderr_text().trim().is_empty(),
        "{verify:?}"
    );

    secret_reaches_the_service_through_its_env_file(&host, &state["MainPID"], run_dir, "berth");
    let mut seen_by = vec![
        ("the unit file", unit),
        ("ps", host.root_ok("ps -eo args")),
        (
            "journal",
            host.root_ok("journalctl --no-pager -o cat | tail -n 400"),
        ),
        (
            "systemctl show",
            host.root_ok(
                "runuser -u berth -- env XDG_RUNTIME_DIR=/run/user/1000 systemctl --user show berth-gamma.service",
            ),
        ),
    ];
    seen_by.push(("plan", work.berth(&["plan", "--var", &var]).all()));
    seen_by.push(("state", work.berth(&["state", "list", "--json"]).all()));
    seen_by.push((
        "state show",
        work.berth(&["state", "show", "model.gamma@sd"]).all(),
    ));
    for (what, text) in &seen_by {
        assert!(!text.contains(SECRET), "the secret is in {what}:\n{text}");
    }
    let state_files = std::process::Command::new("grep")
        .args(["-r", "-l", SECRET])
        .arg(work.state_dir())
        .output()
        .unwrap();
    assert!(
        state_files.stdout.is_empty(),
        "the secret is in state files: {}",
        String::from_utf8_lossy(&state_files.stdout)
    );

    work.berth(&["drift", "--var", &var]).expect(0);
    work.berth(&["destroy", "--auto-approve", "--var", &var])
        .expect(0);
    let left = host.root_ok(&format!(
        "ls /home/berth/.config/systemd/user | grep '^berth-' || true; find {run_dir}/systemd {run_dir}/deployments -mindepth 1 2>/dev/null || true"
    ));
    assert!(left.trim().is_empty(), "left on the host: {left}");
    assert!(!answers(&host, 8311) && !answers(&host, 8312));
}

/// System units for a login other than root: `deploy` may use sudo without a password, so
/// berth changes units through `sudo -n` (unit files owned by root, the service's secret only in
/// the login's 0600 env file, never in sudo's command lines or log, no sudo to observe); `berth`
/// may not, and gets a clear error from doctor and apply with nothing changed on the host.
#[test]
fn system_units_through_passwordless_sudo_and_a_clear_refusal_without_it() {
    let host = SystemdHost::start("sudo");
    let eta = |flags| M {
        id: "eta",
        port: 8321,
        backend: "units",
        secret_env: true,
        flags,
    };
    let theta = || M {
        id: "theta",
        port: 8322,
        backend: "units",
        secret_env: false,
        flags: "",
    };
    let var = format!("api_key={SECRET}");
    let units = ["berth-eta.service", "berth-theta.service"];
    let unit_path = |unit: &str| format!("/etc/systemd/system/{unit}");

    // Without sudo: doctor and apply say what to do, and nothing is written.
    let refused_dir = "/home/berth/run";
    host.root_ok(&format!(
        "mkdir -p {refused_dir} && head -c 4096 /dev/zero > {refused_dir}/eta.gguf && chown -R berth:berth {refused_dir}"
    ));
    let refused = project(&config(&host, "berth", refused_dir, false, &[eta("")]));
    let doctor = refused.berth(&["hosts", "doctor", "--var", &var]);
    doctor.expect(1);
    assert!(
        doctor.all().contains(
            "system units need root; berth (uid 1000) is not root and may not use sudo without a password"
        ) && doctor.all().contains("NOPASSWD"),
        "{}",
        doctor.all()
    );
    let failed = refused.berth(&["apply", "--auto-approve", "--var", &var]);
    failed.expect(1);
    assert!(
        failed.all().contains(
            "system units need root: berth (uid 1000) is not root and may not use sudo without a password here"
        ),
        "{}",
        failed.all()
    );
    let written = host.root_ok("ls /etc/systemd/system/ | grep '^berth-' || true");
    assert!(written.trim().is_empty(), "written without sudo: {written}");

    // With passwordless sudo.
    let run_dir = "/home/deploy/run";
    host.root_ok(&format!(
        "mkdir -p {run_dir} && head -c 4096 /dev/zero > {run_dir}/eta.gguf && cp {run_dir}/eta.gguf {run_dir}/theta.gguf && chown -R deploy:deploy {run_dir}"
    ));
    let models = [eta(""), theta()];
    let work = project(&config(&host, "deploy", run_dir, false, &models));
    let doctor = work.berth(&["hosts", "doctor", "--var", &var]);
    doctor.expect(0);
    assert!(
        doctor
            .all()
            .contains("reachable through `sudo -n` as deploy; units go to /etc/systemd/system"),
        "{}",
        doctor.all()
    );
    // Observing needs no sudo: a plan leaves nothing in sudo's log.
    let sudo_runs = || {
        host.root_ok("journalctl --no-pager -o cat _COMM=sudo | grep -c 'COMMAND=' || true")
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };
    let before = sudo_runs();
    work.berth(&["plan", "--var", &var]).expect(0);
    assert_eq!(sudo_runs(), before, "plan ran sudo");

    work.berth(&["apply", "--auto-approve", "--var", &var])
        .expect(0);
    assert!(sudo_runs() > before, "apply did not go through sudo");
    for (unit, port) in units.iter().zip([8321, 8322]) {
        let path = unit_path(unit);
        let owner = host.root_ok(&format!("stat -c '%U %a' {path}"));
        assert_eq!(owner.trim(), "root 644", "{path}");
        assert!(
            host.root_sh(&format!("systemctl is-active {unit}"))
                .success()
        );
        assert!(answers(&host, port), "{unit} does not answer on {port}");
        let verify = host.root_sh(&format!("systemd-analyze verify {path}"));
        assert!(
            verify.success() && verify.stderr_text().trim().is_empty(),
            "{verify:?}"
        );
    }
    let state = show(&host, false, units[0]);
    secret_reaches_the_service_through_its_env_file(&host, &state["MainPID"], run_dir, "deploy");
    for (what, text) in [
        (
            "the unit file",
            host.root_ok(&format!("cat {}", unit_path(units[0]))),
        ),
        (
            "the journal, sudo's log too",
            host.root_ok("journalctl --no-pager -o cat"),
        ),
        ("ps", host.root_ok("ps -eo args")),
    ] {
        assert!(!text.contains(SECRET), "the secret is in {what}:\n{text}");
    }
    work.berth(&["drift", "--var", &var]).expect(0);

    // Stopped by hand: drift, and apply heals it through sudo.
    host.root_ok(&format!("systemctl stop {}", units[0]));
    work.berth(&["drift", "--var", &var]).expect(2);
    work.berth(&["apply", "--auto-approve", "--var", &var])
        .expect(0);
    assert!(answers(&host, 8321));

    // A crash while loading: the failure shows the journal's tail, read through sudo (deploy
    // is not in the systemd-journal group), and the unit goes.
    std::fs::write(
        work.dir().join("main.hcl"),
        config(
            &host,
            "deploy",
            run_dir,
            false,
            &[eta(" --exit-after-secs 0.1"), theta()],
        ),
    )
    .unwrap();
    let failed = work.berth(&["apply", "--auto-approve", "--var", &var]);
    failed.expect(1);
    assert!(
        failed.all().contains("simulated crash") && failed.all().contains("step probe"),
        "{}",
        failed.all()
    );
    assert!(
        !host
            .root_sh(&format!("test -e {}", unit_path(units[0])))
            .success()
    );

    // A lost state: the unit whose launch is the same (no secret: a new state keys the
    // fingerprint of a secret anew) is adopted, its owner key rewritten through sudo while it
    // keeps running; the other is started again.
    std::fs::write(
        work.dir().join("main.hcl"),
        config(&host, "deploy", run_dir, false, &models),
    )
    .unwrap();
    let keys = |unit: &str| {
        host.root_ok(&format!(
            "grep -E '^X-Berth-(Owner|Started)=' {}",
            unit_path(unit)
        ))
    };
    let old_keys = keys(units[1]);
    let pid = show(&host, false, units[1])["MainPID"].clone();
    std::fs::remove_dir_all(work.state_dir()).unwrap();
    let plan = work.berth(&["plan", "--format", "json", "--var", &var]);
    plan.expect(0);
    let resources = plan.json()["resources"].as_array().cloned().unwrap();
    let action = |m: &str| {
        resources
            .iter()
            .find(|r| r["address"] == m)
            .map(|r| r["action"].clone())
    };
    assert_eq!(
        action("model.theta@sd"),
        Some("reuse".into()),
        "{resources:#?}"
    );
    assert_eq!(
        action("model.eta@sd"),
        Some("create".into()),
        "{resources:#?}"
    );
    work.berth(&["apply", "--auto-approve", "--var", &var])
        .expect(0);
    assert_eq!(
        show(&host, false, units[1])["MainPID"],
        pid,
        "adopted, not restarted"
    );
    let new_keys = keys(units[1]);
    assert_ne!(old_keys, new_keys, "the owner key was not rewritten");
    assert_eq!(
        old_keys.lines().find(|l| l.starts_with("X-Berth-Started")),
        new_keys.lines().find(|l| l.starts_with("X-Berth-Started"))
    );
    let owner = host.root_ok(&format!("stat -c '%U %a' {}", unit_path(units[1])));
    assert_eq!(owner.trim(), "root 644", "after the claim");
    assert!(answers(&host, 8321) && answers(&host, 8322));
    work.berth(&["plan", "--detailed-exitcode", "--var", &var])
        .expect(0);

    work.berth(&["destroy", "--auto-approve", "--var", &var])
        .expect(0);
    let left = host.root_ok(&format!(
        "ls /etc/systemd/system/ /etc/systemd/system/multi-user.target.wants/ | grep '^berth-' || true; find {run_dir}/systemd -mindepth 1 2>/dev/null || true"
    ));
    assert!(left.trim().is_empty(), "left on the host: {left}");
    assert!(!answers(&host, 8321) && !answers(&host, 8322));
}

/// One host running a model in each kind of runtime at once, as a GPU box often does: a plain
/// process, a systemd unit and a Docker container (the host's engine, the container in the
/// host's network namespace). One apply starts all three, each answers on the host, drift is
/// clean, and destroy removes all three.
#[test]
fn one_host_runs_a_process_a_unit_and_a_container_and_destroy_removes_all_three() {
    if !berth_test_support::docker::available() {
        eprintln!("skipped: no docker engine answers");
        return;
    }
    let image = berth_test_support::docker::stand_in_image("a");
    let host = SystemdHost::start_with_docker("mixed");
    let run_dir = format!("/var/lib/berth-mixed-{}", std::process::id());
    let _containers = berth_test_support::docker::ContainerGuard {
        engine: berth_test_support::docker::Engine::local(),
        run_dir: run_dir.clone(),
    };
    host.root_ok(&format!(
        "mkdir -p {run_dir} && for m in p u c; do head -c 4096 /dev/zero > {run_dir}/$m.gguf; done"
    ));
    let model = |id: &str, port: u16, backend: &str, server: &str| {
        model_hcl(id, port, backend, &run_dir, (server, ""), "")
    };
    let server = format!("{BIN_DIR}/berth-model-server");
    let text = format!(
        r#"settings {{
  state_dir   = ".berth"
  parallelism = 4
}}

host "sd" {{
  connection {{
    host                = "127.0.0.1"
    port                = {port}
    user                = "root"
    key_path            = "{key}"
    host_key            = "{host_key}"
    connect_timeout_sec = 5
  }}
  capabilities {{
    backends = ["plain", "units", "boxes"]
  }}
  run_dir = "{run_dir}"
}}

backend "plain" {{
  runtime = "process"
}}

backend "units" {{
  runtime = "systemd"
}}

backend "boxes" {{
  runtime = "docker"
  container {{
    image   = "{image}"
    network = "container:{name}"
  }}
}}
{p}{u}{c}"#,
        port = host.ssh_port,
        key = host.key().display(),
        host_key = host.host_key(),
        name = host.name,
        p = model("p", 8311, "plain", &server),
        u = model("u", 8312, "units", &server),
        c = model("c", 8313, "boxes", "berth-model-server"),
    );
    let work = project(&text);
    work.berth(&["validate"]).expect(0);
    let apply = work.berth(&["apply", "--auto-approve"]);
    apply.expect(0);

    for port in [8311, 8312, 8313] {
        assert!(
            answers(&host, port),
            "nothing answers on {port}:\n{}",
            apply.all()
        );
    }
    // Each model runs under the runtime its backend names.
    assert!(
        host.root_sh("systemctl is-active berth-u.service")
            .success()
    );
    let engine = berth_test_support::docker::Engine::local();
    let containers = engine.containers(&run_dir);
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(
        engine.inspect(&containers[0], "{{index .Config.Labels \"berth.address\"}}"),
        "model.c@sd"
    );
    let servers = host.root_ok("ps -eo comm,args | grep '^berth-model-ser' || true");
    assert_eq!(
        servers
            .lines()
            .filter(|l| l.contains("--port 8311"))
            .count(),
        1,
        "the process model runs once:\n{servers}"
    );
    // The state records each model's runtime, which later stops and refreshes use.
    for (address, runtime) in [
        ("model.p@sd", "process"),
        ("model.u@sd", "systemd"),
        ("model.c@sd", "docker"),
    ] {
        let shown = work.state_show(address);
        assert_eq!(
            shown["attributes"]["runtime"], runtime,
            "{address}: {shown:#}"
        );
    }
    work.berth(&["drift"]).expect(0);
    work.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Destroy stops each through its own runtime.
    work.berth(&["destroy", "--auto-approve"]).expect(0);
    for port in [8311, 8312, 8313] {
        assert!(!answers(&host, port), "{port} still answers after destroy");
    }
    assert!(engine.containers(&run_dir).is_empty());
    let units = host.root_ok("ls /etc/systemd/system/ | grep '^berth-' || true");
    assert!(units.trim().is_empty(), "unit files left: {units}");
    let left = host.root_ok("ps -eo comm,args | grep '^berth-model-ser' || true");
    assert!(left.trim().is_empty(), "left running: {left}");
}
