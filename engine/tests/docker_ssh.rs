//! Docker over SSH: two fleet hosts, each with a private Docker engine in its own network
//! namespace (so a host-network container listens on that host's address, as on a real remote
//! machine). Two models run as containers on both hosts; one host gets its image from the
//! backend's `image_archive`; drift (a container removed, a container stopped, a tag moved to
//! another image) is seen and healed per host; a lost state is re-adopted with no change; and
//! destroy removes every container and env file. Real sshd, real dockerd, real HTTP.

mod common;
mod ssh_common;

use berth_test_support::docker::{self, HostEngine};
use common::free_ports;
use ssh_common::{Fleet, HostSpec, RUN_DIR, shared_fleet};

const ARCHIVE: &str = "/srv/berth/images/stand-in.tar";

fn config(fleet: &Fleet, tag: &str, ports: &[u16]) -> String {
    let mut text = "settings {\n  state_dir   = \".berth\"\n  parallelism = 8\n}\n\n".to_string();
    for k in 1..=2 {
        text.push_str(&HostSpec::fleet(fleet, k).hcl());
    }
    text.push_str(&format!(
        r#"backend "cpu" {{
  runtime = "docker"
  container {{
    image         = "{tag}"
    image_archive = "{ARCHIVE}"
  }}
}}

"#
    ));
    for (id, port) in ["chat", "embed"].iter().zip(ports) {
        text.push_str(&format!(
            r#"model "{id}" {{
  source   = "/models/{id}.gguf"
  size_gib = 0.1
  host_policy {{
    hosts    = ["h1", "h2"]
    replicas = 2
  }}
  runtime_defaults {{
    port = {port}
  }}
  launch {{
    start_cmd         = "berth-model-server --port {{port}} --model {{model}} --load-secs 1"
    probe_http        = "/v1/models"
    probe_interval_ms = 200
  }}
}}

"#
        ));
    }
    text
}

#[test]
fn containers_over_ssh_on_per_host_engines() {
    if !docker::available() {
        eprintln!("skipped: no docker engine answers on this machine");
        return;
    }
    let fleet = shared_fleet('d', 2);
    let engines = [HostEngine::start(&fleet, 1), HostEngine::start(&fleet, 2)];
    let tag = "berth-test-docker-ssh:latest";
    let local = docker::Engine::local();
    local.ok(&["tag", &docker::stand_in_image("a"), tag]);
    // h1 has the image; h2 only has an archive of it.
    engines[0].load_from_local(tag);
    let archive = fleet.scratch("images").join("stand-in.tar");
    local.ok(&["save", "-o", archive.to_str().unwrap(), tag]);
    let _ = local.run(&["rmi", tag]);
    fleet.exec_ok(
        2,
        &format!(
            "mkdir -p /srv/berth/images && cp {} {ARCHIVE}",
            archive.display()
        ),
    );

    let ports = free_ports(2);
    let work = common::Workdir::new("berth-test-docker-ssh-", false);
    std::fs::write(work.dir().join("main.hcl"), config(&fleet, tag, &ports)).unwrap();
    let answers = |k: usize| {
        for (port, model) in ports.iter().zip(["chat", "embed"]) {
            let (status, body) = fleet
                .http_get(k, *port, "/v1/models")
                .unwrap_or_else(|e| panic!("h{k}:{port}: {e}"));
            assert_eq!(status, 200, "h{k}: {body}");
            assert!(body.contains(model), "h{k}: {body}");
        }
    };
    let running = |k: usize| -> Vec<String> {
        let e = &engines[k - 1].engine;
        let mut ids: Vec<String> = e
            .containers(RUN_DIR)
            .into_iter()
            .filter(|id| e.inspect(id, "{{.State.Status}}") == "running")
            .collect();
        ids.sort();
        ids
    };

    let plan = work.berth(&["plan"]);
    plan.expect(0);
    assert!(plan.stdout.contains("Plan: 4 to create"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains(&format!("loaded from {ARCHIVE}")),
        "{}",
        plan.stdout
    );
    work.berth(&["apply", "--auto-approve"]).expect(0);
    answers(1);
    answers(2);
    assert_eq!(running(1).len(), 2);
    assert_eq!(running(2).len(), 2);
    work.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Removed by hand on h1, stopped by hand on h2: drift on each, healed by one apply.
    let e1 = &engines[0].engine;
    let e2 = &engines[1].engine;
    e1.ok(&["rm", "-f", &running(1)[0]]);
    e2.ok(&["stop", "-t", "1", &running(2)[1]]);
    let drift = work.berth(&["drift"]);
    drift.expect(2);
    assert!(
        drift.all().contains("@h1") && drift.all().contains("@h2"),
        "{}",
        drift.all()
    );
    work.berth(&["apply", "--auto-approve"]).expect(0);
    answers(1);
    answers(2);
    work.berth(&["drift"]).expect(0);

    // The tag moves to another image on h1 only: h1's containers drift and are replaced.
    let other = docker::stand_in_image("b");
    engines[0].load_from_local(&other);
    e1.ok(&["tag", &other, tag]);
    let drift = work.berth(&["drift"]);
    drift.expect(2);
    assert!(
        drift.all().contains(&format!("image {tag} now names")),
        "{}",
        drift.all()
    );
    assert!(!drift.all().contains("@h2"), "{}", drift.all());
    let h2_before = running(2);
    work.berth(&["apply", "--auto-approve"]).expect(0);
    let other_id = e1.ok(&["image", "inspect", "--format", "{{.Id}}", &other]);
    for id in running(1) {
        assert_eq!(e1.inspect(&id, "{{.Image}}"), other_id);
    }
    assert_eq!(running(2), h2_before, "h2 was touched");
    answers(1);

    // Lost state: found by labels on both hosts, nothing to change.
    std::fs::remove_dir_all(work.state_dir()).unwrap();
    let plan = work.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout.contains("0 to create, 0 to replace"),
        "{}",
        plan.stdout
    );
    let before = (running(1), running(2));
    work.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!((running(1), running(2)), before);
    work.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Destroy removes containers and env files on both hosts.
    work.berth(&["destroy", "--auto-approve"]).expect(0);
    for k in 1..=2 {
        assert!(engines[k - 1].engine.containers(RUN_DIR).is_empty());
        let left = fleet.exec_ok(
            k,
            &format!("ls -A {RUN_DIR}/containers 2>/dev/null || true"),
        );
        assert!(left.trim().is_empty(), "h{k}: {left}");
    }
}

/// The user rootless Podman runs as: created on first use, with the subordinate id ranges
/// `useradd` gives it.
const ROOTLESS_USER: &str = "berth-test-docker-rl";

/// Rootless Podman over SSH: a host whose `connection.user` is not root runs two models in the
/// user's own Podman (its image loaded by berth from `image_archive`), heals a removed
/// container, and destroys both.
#[test]
fn rootless_podman_over_ssh() {
    if !docker::engine_answers("podman") {
        eprintln!("skipped: podman is not installed");
        return;
    }
    let user_exists = std::process::Command::new("id")
        .arg(ROOTLESS_USER)
        .output()
        .is_ok_and(|o| o.status.success());
    if !user_exists {
        let made = std::process::Command::new("useradd")
            // `*`: no password, but not locked (sshd without PAM refuses locked accounts).
            .args(["-m", "-s", "/bin/sh", "-p", "*", ROOTLESS_USER])
            .status()
            .is_ok_and(|s| s.success());
        assert!(made, "useradd {ROOTLESS_USER} failed");
    }
    let home = format!("/home/{ROOTLESS_USER}");
    let as_user = |script: &str| {
        std::process::Command::new("su")
            .args(["-", ROOTLESS_USER, "-c", script])
            .output()
            .expect("su")
    };
    let fleet = shared_fleet('d', 2);
    // sshd reads the fleet's authorized_keys as the user logging in.
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(&fleet.dir, std::fs::Permissions::from_mode(0o711));
    let _ = std::fs::set_permissions(
        fleet.dir.join("authorized_keys"),
        std::fs::Permissions::from_mode(0o644),
    );
    let pid = std::process::id();
    let run_dir = format!("{home}/berth-run-{pid}");
    let tag = format!("localhost/berth-test-docker-rootless-{pid}:1");
    // The image reaches the user's storage only through the archive berth loads.
    let archive = format!("{home}/stand-in-{pid}.tar");
    let root_podman = docker::Engine::podman();
    root_podman.ok(&["tag", &docker::stand_in_image_for("podman", "a"), &tag]);
    root_podman.ok(&["save", "-o", &archive, &tag]);
    let _ = root_podman.run(&["rmi", &tag]);
    let _ = std::process::Command::new("chown")
        .args([ROOTLESS_USER, &archive])
        .status();

    let ports = free_ports(2);
    let mut host = HostSpec::fleet(&fleet, 1);
    host.user = ROOTLESS_USER.to_string();
    let mut text = config(&fleet, &tag, &ports)
        .replace("runtime = \"docker\"", "runtime = \"podman\"")
        .replace(ARCHIVE, &archive)
        .replace("[\"h1\", \"h2\"]", "[\"h1\"]")
        .replace("replicas = 2", "replicas = 1");
    // Only h1, reached as the user, with a run_dir the user owns.
    let h2_start = text.find("host \"h2\"").unwrap();
    let h2_end = h2_start + text[h2_start..].find("\n}\n").unwrap() + 3;
    text.replace_range(h2_start..h2_end, "");
    let h1_start = text.find("host \"h1\"").unwrap();
    let h1_end = h1_start + text[h1_start..].find("\n}\n").unwrap() + 3;
    let h1 = host.hcl().replace(RUN_DIR, &run_dir);
    text.replace_range(h1_start..h1_end, h1.trim_end());
    let work = common::Workdir::new("berth-test-docker-rootless-", false);
    std::fs::write(work.dir().join("main.hcl"), &text).unwrap();

    let running = || -> Vec<String> {
        let out = as_user(&format!(
            "podman ps -q --no-trunc --filter label=berth.run_dir={run_dir}"
        ));
        let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        ids.sort();
        ids
    };
    let answers = || {
        for (port, model) in ports.iter().zip(["chat", "embed"]) {
            let (status, body) = fleet
                .http_get(1, *port, "/v1/models")
                .unwrap_or_else(|e| panic!("h1:{port}: {e}"));
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(model), "{body}");
        }
    };
    let apply = work.berth(&["apply", "--auto-approve"]);
    let cleanup = || {
        for id in running() {
            as_user(&format!("podman rm -f {id}"));
        }
        as_user(&format!("podman rmi {tag}; rm -rf {run_dir} {archive}"));
    };
    if apply.code != Some(0) {
        cleanup();
        apply.expect(0);
    }
    answers();
    assert_eq!(running().len(), 2);
    let doctor = work.berth(&["hosts", "doctor", "h1"]);
    assert!(doctor.stdout.contains("podman daemon"), "{}", doctor.stdout);

    as_user(&format!("podman rm -f {}", running()[0]));
    work.berth(&["drift"]).expect(2);
    work.berth(&["apply", "--auto-approve"]).expect(0);
    answers();
    work.berth(&["destroy", "--auto-approve"]).expect(0);
    let left = running();
    cleanup();
    assert!(left.is_empty(), "{left:?}");
}
