//! Models as Docker containers on the local host, as a user drives them: apply two models,
//! endpoints answering over HTTP, containers labelled with their address, a secret reaching the
//! container only through its 0600 env file; a crashed server restarted by the engine and not
//! reported as drift; drift when a container is removed, stopped, or its
//! image tag is moved to another image, each healed by apply; a lost state re-adopted with no
//! change; `image_archive` loading a missing image, and a missing image failing before anything
//! is stopped; destroy removing containers and env files. Real `berth`, this machine's real
//! Docker engine, the stand-in image from `testdata/images/build-stand-in`.

mod common;

use std::os::unix::fs::PermissionsExt;

use berth_test_support::docker::{self, ContainerGuard, Engine};
use common::{Workdir, free_ports, get_models};
use serde_json::Value;

const SECRET: &str = "sk-berth-test-docker-5be2";

/// One test's config: a local host, a docker backend, two models on `ports`.
struct Setup {
    work: Workdir,
    engine: Engine,
    _guard: ContainerGuard,
    ports: Vec<u16>,
    tag: String,
    /// Arguments the backend adds to `run`.
    extra_args: Vec<String>,
}

impl Setup {
    /// A config whose backend runs `tag` (a tag of this test's own, pointing at the stand-in).
    fn new(name: &str) -> Option<Setup> {
        Setup::with_engine(Engine::local(), name, &[])
    }

    fn with_engine(engine: Engine, name: &str, extra_args: &[&str]) -> Option<Setup> {
        if !docker::engine_answers(engine.cli) {
            eprintln!(
                "skipped: {} is missing or its engine does not answer",
                engine.cli
            );
            return None;
        }
        let work = Workdir::new(&format!("berth-test-docker-{name}-"), false);
        let tag = format!("berth-test-docker-{name}-{}:latest", std::process::id());
        engine.ok(&["tag", &docker::stand_in_image_for(engine.cli, "a"), &tag]);
        let run_dir = work.dir().join(".berth-run/local").display().to_string();
        let setup = Setup {
            _guard: ContainerGuard {
                engine: engine.clone(),
                run_dir,
            },
            work,
            engine,
            ports: free_ports(2),
            tag,
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        };
        setup.write_config(&setup.tag.clone(), None);
        Some(setup)
    }

    fn write_config(&self, image: &str, archive: Option<&str>) {
        self.write_config_with(image, archive, "var.token");
    }

    /// The config, with `token` as the value of the models' API_TOKEN.
    fn write_config_with(&self, image: &str, archive: Option<&str>, token: &str) {
        let mut archive =
            archive.map_or(String::new(), |a| format!("    image_archive = \"{a}\"\n"));
        if !self.extra_args.is_empty() {
            let args: Vec<String> = self.extra_args.iter().map(|a| format!("\"{a}\"")).collect();
            archive.push_str(&format!("    extra_args = [{}]\n", args.join(", ")));
        }
        let model = |id: &str, port: u16| {
            format!(
                r#"model "{id}" {{
  source   = "/models/{id}.gguf"
  size_gib = 0.1
  env      = {{ API_TOKEN = {token}, MODEL_NOTE = "plain" }}
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
            )
        };
        let text = format!(
            r#"settings {{
  state_dir   = ".berth"
  parallelism = 4
}}

variable "token" {{
  sensitive = true
}}

host "local" {{
  connection {{
    transport = "local"
  }}
  capabilities {{
    backends = ["ctr"]
  }}
}}

backend "ctr" {{
  runtime = "{cli}"
  container {{
    image = "{image}"
{archive}  }}
}}

{}
{}"#,
            model("chat", self.ports[0]),
            model("embed", self.ports[1]),
            cli = self.engine.cli,
        );
        std::fs::write(self.work.dir().join("main.hcl"), text).unwrap();
    }

    fn run_dir(&self) -> String {
        self.work
            .dir()
            .join(".berth-run/local")
            .display()
            .to_string()
    }

    fn berth(&self, args: &[&str]) -> common::Run {
        self.work
            .spawn_with(args, |cmd| {
                cmd.env("BERTH_VAR_token", SECRET);
            })
            .wait(common::COMMAND_DEADLINE)
    }

    /// Address -> container id of this test's running containers.
    fn running(&self) -> Vec<(String, String)> {
        let mut found: Vec<(String, String)> = self
            .engine
            .containers(&self.run_dir())
            .into_iter()
            .filter(|id| self.engine.inspect(id, "{{.State.Status}}") == "running")
            .map(|id| {
                (
                    self.engine
                        .inspect(&id, "{{index .Config.Labels \"berth.address\"}}"),
                    id,
                )
            })
            .collect();
        found.sort();
        found
    }

    /// Kills container `id`'s server from outside, as a crash would.
    #[track_caller]
    fn crash(&self, id: &str) {
        let pid = self.engine.inspect(id, "{{.State.Pid}}");
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(killed.success(), "kill -KILL {pid}");
    }

    /// Kills container `id`'s server from outside, as a crash would, and waits until the
    /// engine has restarted it and it answers again.
    #[track_caller]
    fn crash_and_wait(&self, id: &str) {
        self.crash(id);
        let back = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            self.engine
                .inspect(id, "{{.RestartCount}} {{.State.Status}}")
                == "1 running"
        });
        assert!(back, "the engine did not restart the crashed container");
        for _ in 0..50 {
            let up = self.ports.iter().all(|port| {
                get_models(&format!("http://127.0.0.1:{port}/v1")).is_ok_and(|(s, _)| s == 200)
            });
            if up {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    #[track_caller]
    fn answers(&self) {
        for (port, model) in self.ports.iter().zip(["chat", "embed"]) {
            let url = format!("http://127.0.0.1:{port}/v1");
            let (status, body) = get_models(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(status, 200, "{body}");
            assert!(body.contains(model), "{body}");
        }
    }
}

const CHAT: &str = "model.chat@local";
const EMBED: &str = "model.embed@local";

#[test]
fn containers_are_applied_drift_is_healed_lost_state_adopted_and_destroyed() {
    let Some(s) = Setup::new("life") else { return };

    let plan = s.berth(&["plan"]);
    plan.expect(0);
    assert!(plan.stdout.contains("Plan: 2 to create"), "{}", plan.stdout);
    // The plan shows the digest the tag resolves to on the host.
    let image_id = s
        .engine
        .ok(&["image", "inspect", "--format", "{{.Id}}", &s.tag]);
    assert!(plan.stdout.contains(&image_id), "{}", plan.stdout);

    let apply = s.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    s.answers();
    let running = s.running();
    assert_eq!(
        running.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        [CHAT, EMBED]
    );

    // Labels carry the truth; the secret reaches the container's environment through a 0600
    // env file and is on no command line, in no label and in no state record.
    let (_, chat_id) = &running[0];
    let labels = s.engine.inspect(chat_id, "{{json .Config.Labels}}");
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["berth.address"], CHAT);
    assert!(
        labels["berth.fingerprint"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(!labels["berth.owner"].as_str().unwrap().is_empty());
    let env = s.engine.ok(&["exec", chat_id, "env"]);
    assert!(env.contains(&format!("API_TOKEN={SECRET}")), "{env}");
    let argv = s.engine.inspect(
        chat_id,
        "{{json .Path}} {{json .Args}} {{json .Config.Cmd}} {{json .Config.Entrypoint}} {{json .Config.Labels}}",
    );
    assert!(!argv.contains(SECRET), "{argv}");
    assert!(argv.contains("berth-model-server"), "{argv}");
    let env_files: Vec<_> = std::fs::read_dir(format!("{}/containers", s.run_dir()))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("env"))
        .collect();
    assert_eq!(env_files.len(), 2);
    for f in &env_files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let mut printed = plan.all() + &apply.all();
    for args in [
        &["state", "list", "--json"][..],
        &["state", "show", CHAT],
        &["plan", "--format", "json"],
    ] {
        let run = s.berth(args);
        run.expect(0);
        printed += &run.all();
    }
    assert!(!printed.contains(SECRET), "printed the secret:\n{printed}");
    let show = s.berth(&["state", "show", CHAT]).json();
    assert_eq!(
        show["attributes"]["image_digest"],
        image_id.as_str(),
        "{show}"
    );

    // Doctor: the daemon answers and the image is there, with its id.
    let doctor = s.berth(&["hosts", "doctor"]);
    doctor.expect(0);
    assert!(
        doctor.stdout.contains("docker daemon") && doctor.stdout.contains(&image_id),
        "{}",
        doctor.stdout
    );

    // Nothing changed.
    let again = s.berth(&["plan", "--detailed-exitcode"]);
    again.expect(0);
    s.berth(&["drift"]).expect(0);

    // A server that crashes is brought back by the engine (berth's default restart policy):
    // the same container, so not drift.
    assert_eq!(
        s.engine
            .inspect(chat_id, "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure"
    );
    s.crash_and_wait(chat_id);
    s.berth(&["drift"]).expect(0);
    assert_eq!(s.running(), running, "a restart replaced a container");
    s.answers();

    // A container removed by hand is drift; apply heals it.
    s.engine.ok(&["rm", "-f", chat_id]);
    let drift = s.berth(&["drift"]);
    drift.expect(2);
    assert!(drift.all().contains(CHAT), "{}", drift.all());
    s.berth(&["apply", "--auto-approve"]).expect(0);
    s.answers();
    s.berth(&["drift"]).expect(0);

    // A container stopped by hand is drift; apply heals it.
    let (_, embed_id) = s.running()[1].clone();
    s.engine.ok(&["stop", "-t", "1", &embed_id]);
    let drift = s.berth(&["drift"]);
    drift.expect(2);
    assert!(drift.all().contains(EMBED), "{}", drift.all());
    s.berth(&["apply", "--auto-approve"]).expect(0);
    s.answers();
    assert_eq!(s.running().len(), 2);
    s.berth(&["drift"]).expect(0);

    // The tag moved to another image: both containers drift and are replaced onto it.
    let other = docker::stand_in_image("b");
    s.engine.ok(&["tag", &other, &s.tag]);
    let other_id = s
        .engine
        .ok(&["image", "inspect", "--format", "{{.Id}}", &other]);
    let drift = s.berth(&["drift"]);
    drift.expect(2);
    assert!(
        drift.all().contains(&format!("image {} now names", s.tag)),
        "{}",
        drift.all()
    );
    let heal = s.berth(&["apply", "--auto-approve"]);
    heal.expect(0);
    for (_, id) in s.running() {
        assert_eq!(s.engine.inspect(&id, "{{.Image}}"), other_id);
    }
    s.answers();
    s.berth(&["drift"]).expect(0);

    // The state is lost: the next plan finds both containers by their labels and changes
    // nothing; apply adopts them without a restart. (A sensitive value enters fingerprints
    // through a key of the lost state, so a launch holding one cannot be recognised: these
    // launches hold none.)
    s.write_config_with(&s.tag, None, "\"not-secret\"");
    s.berth(&["apply", "--auto-approve"]).expect(0);
    let before = s.running();
    std::fs::remove_dir_all(s.work.state_dir()).unwrap();
    let plan = s.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout.contains("0 to create, 0 to replace"),
        "{}",
        plan.stdout
    );
    s.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(s.running(), before, "adoption restarted a container");
    let plan = s.berth(&["plan", "--detailed-exitcode"]);
    plan.expect(0);

    // Destroy removes the containers and their env files.
    s.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(s.engine.containers(&s.run_dir()).is_empty());
    let left: Vec<_> = std::fs::read_dir(format!("{}/containers", s.run_dir()))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_missing_image_is_loaded_from_its_archive_or_fails_before_anything_stops() {
    let Some(s) = Setup::new("archive") else {
        return;
    };
    // An image this host lacks, saved to an archive.
    let pid = std::process::id();
    let missing = format!("berth-test-docker-archived-{pid}:1");
    let archive = s.work.path("image.tar").display().to_string();
    s.engine
        .ok(&["tag", &docker::stand_in_image("a"), &missing]);
    s.engine.ok(&["save", "-o", &archive, &missing]);
    s.engine.ok(&["rmi", &missing]);
    s.write_config(&missing, Some(&archive));

    let plan = s.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout.contains(&format!("loaded from {archive}")),
        "{}",
        plan.stdout
    );
    s.berth(&["apply", "--auto-approve"]).expect(0);
    s.answers();
    let running = s.running();
    assert_eq!(running.len(), 2);

    // A new image nobody can load: the plan names the host and the image, and apply fails
    // naming the archive path without stopping the running containers.
    let gone = format!("berth-test-docker-nowhere-{pid}:1");
    let nowhere = s.work.path("nowhere.tar").display().to_string();
    s.write_config(&gone, None);
    let plan = s.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.all()
            .contains(&format!("host local lacks image {gone}")),
        "{}",
        plan.all()
    );
    let doctor = s.berth(&["hosts", "doctor"]);
    doctor.expect(1);
    assert!(
        doctor
            .stdout
            .contains("missing, and the backend sets no image_archive"),
        "{}",
        doctor.stdout
    );
    let apply = s.berth(&["apply", "--auto-approve"]);
    apply.expect(1);
    assert!(
        apply.all().contains("nothing was stopped"),
        "{}",
        apply.all()
    );
    s.write_config(&gone, Some(&nowhere));
    let apply = s.berth(&["apply", "--auto-approve"]);
    apply.expect(1);
    assert!(
        apply.all().contains(&nowhere) && apply.all().contains("local"),
        "{}",
        apply.all()
    );
    assert_eq!(s.running(), running, "a failed apply stopped a container");
    s.answers();

    s.write_config(&missing, Some(&archive));
    s.berth(&["destroy", "--auto-approve"]).expect(0);
    let _ = s.engine.run(&["rmi", &missing]);
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.engine.run(&["rmi", &self.tag]);
    }
}

/// The same lifecycle under rootful Podman. This machine withholds CAP_SYS_RESOURCE, so its
/// containers need explicit low limits (`extra_args`); a host with the usual capabilities needs
/// none.
#[test]
fn podman_containers_are_applied_healed_adopted_and_destroyed() {
    let Some(s) = Setup::with_engine(
        Engine::podman(),
        "podman",
        &[
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ],
    ) else {
        return;
    };
    s.write_config_with(&s.tag, None, "\"not-secret\"");
    s.berth(&["apply", "--auto-approve"]).expect(0);
    s.answers();
    let running = s.running();
    assert_eq!(
        running.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        [CHAT, EMBED]
    );
    s.berth(&["plan", "--detailed-exitcode"]).expect(0);

    // Podman restarts a crashed server too: not drift.
    assert_eq!(
        s.engine
            .inspect(&running[0].1, "{{.HostConfig.RestartPolicy.Name}}"),
        "on-failure"
    );
    s.crash_and_wait(&running[0].1);
    s.berth(&["drift"]).expect(0);
    assert_eq!(s.running(), running, "a restart replaced a container");
    s.answers();
    // A crash the engine recovered from before berth looked is no failure: with the state
    // lost, apply adopts the restarted container through its probe gate and keeps it.
    std::fs::remove_dir_all(s.work.state_dir()).unwrap();
    s.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(
        s.running(),
        running,
        "adoption replaced a restarted container"
    );

    s.engine.ok(&["rm", "-f", &running[0].1]);
    s.engine.ok(&["stop", "-t", "1", &running[1].1]);
    let drift = s.berth(&["drift"]);
    drift.expect(2);
    assert!(
        drift.all().contains(CHAT) && drift.all().contains(EMBED),
        "{}",
        drift.all()
    );
    s.berth(&["apply", "--auto-approve"]).expect(0);
    s.answers();
    s.berth(&["drift"]).expect(0);

    let before = s.running();
    std::fs::remove_dir_all(s.work.state_dir()).unwrap();
    let plan = s.berth(&["plan"]);
    plan.expect(0);
    assert!(
        plan.stdout.contains("0 to create, 0 to replace"),
        "{}",
        plan.stdout
    );
    s.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(s.running(), before);

    s.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(s.engine.containers(&s.run_dir()).is_empty());
}

/// A server that fails as it starts (a wrong flag here; a wrong model path in real life) is
/// brought back by the engine's restart policy again and again, and never listens: apply fails
/// at once with the server's own error, not after the probe timeout, and removes the container,
/// while the other model comes up. Once applied, a server that the engine keeps restarting
/// after crashes is drift that says so, and apply replaces its container.
#[test]
fn a_failing_server_fails_apply_with_its_error_and_a_crash_loop_is_replaced() {
    let Some(s) = Setup::new("crashloop") else {
        return;
    };
    let path = s.work.dir().join("main.hcl");
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, good.replacen("--load-secs 1", "--no-such-flag", 1)).unwrap();
    let apply = s.berth(&["apply", "--auto-approve"]);
    apply.expect(1);
    let out = apply.all();
    assert!(out.contains("exited before it was ready"), "{out}");
    assert!(
        out.contains("unexpected argument '--no-such-flag'"),
        "{out}"
    );
    assert!(!out.contains("after the gate timeout"), "{out}");
    let running = s.running();
    assert_eq!(
        running.iter().map(|(a, _)| a.as_str()).collect::<Vec<_>>(),
        [EMBED],
        "the failed server's container was left, or the other model did not come up"
    );

    // The chat server refuses to start while its container holds /tmp/broken (as a server
    // whose model file got corrupted would).
    let guarded = good.replacen(
        "start_cmd         = \"berth-model-server",
        "start_cmd         = \"if [ -e /tmp/broken ]; then echo error: model file is corrupt >&2; exit 3; fi; exec berth-model-server",
        1,
    );
    assert_ne!(guarded, good);
    std::fs::write(&path, guarded).unwrap();
    s.berth(&["apply", "--auto-approve"]).expect(0);
    s.answers();
    let (address, chat_id) = s.running()[0].clone();
    assert_eq!(address, CHAT);
    s.engine
        .ok(&["exec", &chat_id, "/bin/sh", "-c", ": > /tmp/broken"]);
    s.crash(&chat_id);
    let looping = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        s.engine
            .inspect(&chat_id, "{{.RestartCount}}")
            .parse::<u32>()
            .is_ok_and(|n| n >= 4)
    });
    assert!(
        looping,
        "the engine did not keep restarting the crashed server"
    );
    // Between two restarts the container runs for a few milliseconds; refresh may land in
    // one of them, and then it sees a running server that refuses its probe.
    let drift = (0..3)
        .map(|_| s.berth(&["drift"]))
        .find(|d| d.all().contains("restarting after a crash"))
        .expect("drift never said the container is restarting after a crash");
    drift.expect(2);
    assert!(
        drift
            .all()
            .contains("container restarting after a crash (exit code 3)"),
        "{}",
        drift.all()
    );
    let apply = s.berth(&["apply", "--auto-approve"]);
    apply.expect(0);
    assert!(apply.all().contains("replace"), "{}", apply.all());
    s.answers();
    assert_ne!(
        s.running()[0].1,
        chat_id,
        "the crash-looping container was kept"
    );
    s.berth(&["drift"]).expect(0);

    s.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(s.engine.containers(&s.run_dir()).is_empty());
}

/// One host running a plain process and a container at once: both answer, both are observed
/// (no drift), and destroy removes both.
#[test]
fn a_process_and_a_container_share_a_host_and_destroy_removes_both() {
    if !docker::available() {
        eprintln!("skipped: no docker engine answers on this machine");
        return;
    }
    let engine = Engine::local();
    let work = Workdir::new("berth-test-docker-mixed-", true);
    let tag = format!("berth-test-docker-mixed-{}:latest", std::process::id());
    engine.ok(&["tag", &docker::stand_in_image("a"), &tag]);
    let run_dir = work.dir().join(".berth-run/local").display().to_string();
    let _guard = ContainerGuard {
        engine: engine.clone(),
        run_dir: run_dir.clone(),
    };
    let ports = free_ports(2);
    let text = format!(
        r#"host "local" {{
  connection {{
    transport = "local"
  }}
  capabilities {{
    backends = ["ctr", "cpu"]
  }}
}}

backend "ctr" {{
  runtime = "docker"
  container {{
    image = "{tag}"
  }}
}}

backend "cpu" {{
  runtime = "process"
}}

model "boxed" {{
  source   = "/models/boxed.gguf"
  size_gib = 0.1
  backend_policy {{
    prefer = ["ctr"]
  }}
  runtime_defaults {{
    port = {}
  }}
  launch {{
    start_cmd  = "berth-model-server --port {{port}} --model {{model}}"
    probe_http = "/v1/models"
  }}
}}

model "plain" {{
  source   = "/models/plain.gguf"
  size_gib = 0.1
  backend_policy {{
    prefer = ["cpu"]
  }}
  runtime_defaults {{
    port = {}
  }}
  launch {{
    start_cmd  = "berth-model-server --port {{port}} --model {{model}}"
    probe_http = "/v1/models"
  }}
}}
"#,
        ports[0], ports[1]
    );
    std::fs::write(work.dir().join("main.hcl"), text).unwrap();
    work.berth(&["apply", "--auto-approve"]).expect(0);
    for (port, model) in ports.iter().zip(["boxed", "plain"]) {
        let (status, body) = get_models(&format!("http://127.0.0.1:{port}/v1")).unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(model), "{body}");
    }
    assert_eq!(engine.containers(&run_dir).len(), 1);
    let plain = common::all_stand_ins()
        .into_iter()
        .filter(|s| s.port == ports[1])
        .count();
    assert_eq!(plain, 1, "the process model does not run as a process");
    work.berth(&["drift"]).expect(0);

    work.berth(&["destroy", "--auto-approve"]).expect(0);
    assert!(engine.containers(&run_dir).is_empty());
    assert!(
        common::all_stand_ins()
            .iter()
            .all(|s| !ports.contains(&s.port)),
        "a server still runs"
    );
    let _ = engine.run(&["rmi", &tag]);
}
