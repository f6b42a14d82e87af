//! A local model server starts the way one started over SSH does: with a login's environment
//! (PATH, HOME, ...) plus what its config declares, in its deployment directory. Nothing else of
//! berth's own environment reaches it: not the BERTH_VAR_* inputs (sensitive or not), not the
//! operator's ssh-agent socket, not cloud credentials, not berth's working directory. Real
//! berth, real processes, read back from /proc.

mod common;

use std::collections::BTreeMap;

use common::{Fleet, Model, all_stand_ins, free_ports};

#[test]
fn a_local_service_gets_a_login_environment_and_its_deployment_dir() {
    let ports = free_ports(2);
    // Registers the ports with the fleet's guard; models.hcl is rewritten below with env.
    let fleet = Fleet::new(
        &[
            Model::new("plain", ports[0], ""),
            Model::new("keyed", ports[1], ""),
        ],
        2,
    );
    let model = |id: &str, port: u16, env: &str| {
        format!(
            r#"model "{id}" {{
  source   = "/srv/models/{id}.gguf"
  size_gib = 0.1
  env      = {{ {env} }}
  runtime_defaults {{
    port = {port}
  }}
  launch {{
    start_cmd         = "berth-model-server --port {{port}} --model {{model}}"
    probe_http        = "/v1/models"
    probe_interval_ms = 100
  }}
}}
"#
        )
    };
    std::fs::write(
        fleet.dir().join("models.hcl"),
        format!(
            "variable \"tok\" {{\n  sensitive = true\n}}\n\n{}\n{}",
            model("plain", ports[0], "MODEL_MODE = \"fast\""),
            model("keyed", ports[1], "TOK = var.tok"),
        ),
    )
    .unwrap();
    let home = fleet.path("home");
    std::fs::create_dir_all(&home).unwrap();
    let elsewhere = fleet.path("out");

    fleet
        .spawn_with(&["apply", "--auto-approve"], |cmd| {
            cmd.env("BERTH_VAR_tok", "tok-value-4711")
                .env("SSH_AUTH_SOCK", "/tmp/operator-agent.sock")
                .env("AWS_SECRET_ACCESS_KEY", "aws-secret-0815")
                .env("HOME", &home)
                .current_dir(&elsewhere);
        })
        .wait(common::COMMAND_DEADLINE)
        .expect(0);

    let server = all_stand_ins()
        .into_iter()
        .find(|s| s.port == ports[0])
        .expect("the plain model runs");
    let env: BTreeMap<String, String> = server
        .environ()
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    eprintln!(
        "environment of a local model: {:?}",
        env.keys().collect::<Vec<_>>()
    );
    // Nor do the variables of the start script that launched it (it sources the env file in a
    // subshell of that script).
    for leaked in [
        "BERTH_VAR_tok",
        "TOK",
        "SSH_AUTH_SOCK",
        "AWS_SECRET_ACCESS_KEY",
        "dir",
        "pid",
        "berth_l",
        "berth_script",
    ] {
        assert!(
            !env.contains_key(leaked),
            "{leaked} reached the server: {env:?}"
        );
    }
    assert!(
        !env.values()
            .any(|v| v.contains("tok-value-4711") || v.contains("aws-secret-0815")),
        "{env:?}"
    );
    assert!(env.contains_key("PATH"), "{env:?}");
    assert_eq!(
        env.get("HOME"),
        Some(&home.display().to_string()),
        "{env:?}"
    );
    assert_eq!(
        env.get("MODEL_MODE").map(String::as_str),
        Some("fast"),
        "{env:?}"
    );

    let cwd = std::fs::read_link(format!("/proc/{}/cwd", server.pid)).unwrap();
    let prefix = "model.plain_local_";
    let dir = fleet
        .deployments()
        .into_iter()
        .find(|d| d.starts_with(prefix))
        .expect("a deployment directory");
    assert_eq!(cwd, fleet.deployments_dir().join(dir));

    // The model that declares the sensitive value gets it, under its own name only.
    let keyed = all_stand_ins()
        .into_iter()
        .find(|s| s.port == ports[1])
        .expect("the keyed model runs");
    let environ = keyed.environ();
    assert!(environ.iter().any(|kv| kv == "TOK=tok-value-4711"));
    assert!(!environ.iter().any(|kv| kv.contains("BERTH_VAR_tok")));

    fleet
        .spawn_with(&["destroy", "--auto-approve"], |cmd| {
            cmd.env("BERTH_VAR_tok", "tok-value-4711");
        })
        .wait(common::COMMAND_DEADLINE)
        .expect(0);
}
