//! The `berth` binary as a user runs it: exit codes, `--json` output, variables and messages.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `berth -C DIR ARGS...` with a clean environment for variables and colour.
fn berth(dir: &Path, args: &[&str]) -> assert_cmd::assert::Assert {
    let mut cmd = Command::cargo_bin("berth").unwrap();
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("BERTH_VAR_api_key")
        .env_remove("BERTH_PG_URL");
    cmd.assert()
}

fn stdout_json(assert: &assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).expect("stdout is JSON")
}

#[test]
fn validate_exits_0_on_a_valid_config() {
    let out = berth(&repo().join("examples/local"), &["validate"]).success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        text.contains("The config is valid: 1 host, 1 backend, 3 models, 3 placements."),
        "{text}"
    );
}

#[test]
fn validate_exits_1_and_names_the_code_and_place() {
    let out = berth(
        &repo().join("testdata/invalid/unknown_key__host"),
        &["validate"],
    )
    .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("berth::config::unknown_key"), "{err}");
    assert!(err.contains("main.hcl:8:3"), "{err}");
    assert!(err.contains("did you mean `labels`?"), "{err}");
}

#[test]
fn validate_json_lists_file_line_column_code_message() {
    let out = berth(
        &repo().join("testdata/invalid/unknown_key__with_more_across_files"),
        &["validate", "--json"],
    )
    .code(1);
    let json = stdout_json(&out);
    assert_eq!(json["valid"], false);
    assert_eq!(json["error_count"], 4);
    let first = &json["findings"][0];
    assert!(
        first["file"].as_str().unwrap().ends_with("backends.hcl"),
        "{first}"
    );
    assert_eq!(first["line"], 3);
    assert_eq!(first["column"], 3);
    assert_eq!(first["code"], "berth::config::unknown_key");
    assert_eq!(first["message"], "backend has no attribute `verfy_cmd`");

    let ok = berth(&repo().join("examples/gpu-fleet"), &["validate", "--json"]).success();
    let json = stdout_json(&ok);
    assert_eq!(json["valid"], true);
    assert_eq!(json["findings"].as_array().unwrap().len(), 0);
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let out = berth(Path::new("/nonexistent/berth-config"), &["validate"]).code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(
        err.contains("cannot read config directory /nonexistent/berth-config"),
        "{err}"
    );
}

#[test]
fn usage_errors_exit_64() {
    berth(
        &repo().join("examples/local"),
        &["validate", "--no-such-flag"],
    )
    .code(64);
    berth(&repo().join("examples/local"), &["no-such-command"]).code(64);
}

#[test]
fn graph_json_and_dot() {
    let out = berth(
        &repo().join("examples/local"),
        &["graph", "--format", "json"],
    )
    .success();
    let json = stdout_json(&out);
    let nodes: Vec<&str> = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        nodes,
        [
            "backend.cpu@local",
            "host.local",
            "model.llama3.2-1b@local",
            "model.nomic-embed@local",
            "model.qwen2.5-0.5b@local"
        ]
    );
    let edges = json["edges"].as_array().unwrap();
    assert!(edges.iter().any(|e| e["from"] == "model.nomic-embed@local"
        && e["to"] == "model.llama3.2-1b@local"
        && e["kind"] == "depends_on"));
    let dot = berth(&repo().join("examples/local"), &["graph"]).success();
    let dot = String::from_utf8_lossy(&dot.get_output().stdout).to_string();
    assert!(dot.starts_with("digraph berth {"));
    assert!(
        dot.contains("\"host.local\" -> \"backend.cpu@local\""),
        "{dot}"
    );
}

#[test]
fn show_of_an_unknown_id_suggests_the_right_one() {
    let out = berth(
        &repo().join("examples/gpu-fleet"),
        &["hosts", "show", "gpu-c"],
    )
    .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("no host `gpu-c` in the config"), "{err}");
    assert!(err.contains("did you mean `gpu-"), "{err}");
    berth(
        &repo().join("examples/gpu-fleet"),
        &["models", "show", "qwen2.5-7b"],
    )
    .success();
    berth(
        &repo().join("examples/gpu-fleet"),
        &["backends", "show", "cuda"],
    )
    .success();
}

fn var_config() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.hcl"),
        r#"
variable "dir" {
  default = "/from/default"
}
variable "api_key" {
  sensitive = true
}
host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
}
backend "cpu" {}
model "m" {
  source = "${var.dir}/m.gguf"
  env    = { KEY = var.api_key, PLAIN = "visible" }
  launch {
    start_cmd = "srv --key ${var.api_key} --port {port}"
  }
}
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("vars.hcl.in"),
        "dir = \"/from/file\"\napi_key = \"from-file-secret\"\n",
    )
    .unwrap();
    dir
}

fn source_of(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::cargo_bin("berth").unwrap();
    cmd.arg("-C")
        .arg(dir)
        .args(["models", "show", "m", "--json"])
        .args(extra)
        .env_remove("BERTH_VAR_dir")
        .env_remove("BERTH_VAR_api_key");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.assert().success();
    stdout_json(&out)["source"].as_str().unwrap().to_string()
}

#[test]
fn variables_come_from_cli_then_file_then_env_then_default() {
    let dir = var_config();
    let file = dir.path().join("vars.hcl.in");
    let file = file.to_str().unwrap();
    let key = ("BERTH_VAR_api_key", "k");
    assert_eq!(source_of(dir.path(), &[], &[key]), "/from/default/m.gguf");
    assert_eq!(
        source_of(dir.path(), &[], &[key, ("BERTH_VAR_dir", "/from/env")]),
        "/from/env/m.gguf"
    );
    assert_eq!(
        source_of(
            dir.path(),
            &["--var-file", file],
            &[("BERTH_VAR_dir", "/from/env")]
        ),
        "/from/file/m.gguf"
    );
    assert_eq!(
        source_of(
            dir.path(),
            &["--var-file", file, "--var", "dir=/from/cli"],
            &[("BERTH_VAR_dir", "/from/env")]
        ),
        "/from/cli/m.gguf"
    );
}

#[test]
fn a_variable_without_value_is_named() {
    let dir = var_config();
    let out = berth(dir.path(), &["validate"]).code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("variable `api_key` has no value"), "{err}");
    assert!(err.contains("--var api_key=..."), "{err}");
}

#[test]
fn sensitive_values_are_never_printed() {
    let dir = var_config();
    let secret = "hunter2-very-secret";
    for args in [
        vec!["models", "show", "m"],
        vec!["models", "show", "m", "--json"],
        vec!["models", "--json"],
        vec!["validate", "--json"],
    ] {
        let mut full = args.clone();
        let var = format!("api_key={secret}");
        full.extend(["--var", &var]);
        let out = berth(dir.path(), &full).success();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.get_output().stdout),
            String::from_utf8_lossy(&out.get_output().stderr)
        );
        assert!(!all.contains(secret), "{args:?} printed the secret:\n{all}");
        if args.contains(&"show") {
            assert!(all.contains("(sensitive)"), "{args:?}:\n{all}");
            assert!(all.contains("visible"), "non-secret env is shown: {all}");
        }
    }
}

#[test]
fn fmt_check_lists_unformatted_files_and_fmt_rewrites_them_keeping_comments() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "# the only host\nhost \"a\" {\n connection {\n   transport=\"local\" # this machine\n  }\n  labels = {x=\"1\",yy = \"2\"}\n}\nbackend \"cpu\"{\n}\n";
    std::fs::write(dir.path().join("main.hcl"), messy).unwrap();
    std::fs::write(
        dir.path().join("tidy.hcl"),
        "variable \"x\" {\n  default = 1\n}\n",
    )
    .unwrap();
    let out = berth(dir.path(), &["fmt", "--check"]).code(1);
    let listed = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(
        listed.contains("main.hcl") && !listed.contains("tidy.hcl"),
        "{listed}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("main.hcl")).unwrap(),
        messy,
        "--check writes nothing"
    );

    berth(dir.path(), &["fmt"]).success();
    let formatted = std::fs::read_to_string(dir.path().join("main.hcl")).unwrap();
    assert_eq!(
        formatted,
        "# the only host\nhost \"a\" {\n  connection {\n    transport = \"local\" # this machine\n  }\n  labels = { x = \"1\", yy = \"2\" }\n}\n\nbackend \"cpu\" {}\n"
    );
    berth(dir.path(), &["fmt", "--check"]).success();
}

#[test]
fn fmt_writes_nothing_when_a_file_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let messy = "host \"a\" {\n connection {\n transport=\"local\"\n }\n}\n";
    std::fs::write(dir.path().join("a.hcl"), messy).unwrap();
    std::fs::write(dir.path().join("b.hcl"), "model \"x\" {\n  source = \n}\n").unwrap();
    let out = berth(dir.path(), &["fmt"]).code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("b.hcl:2"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a.hcl")).unwrap(),
        messy
    );
}

#[test]
fn the_examples_are_formatted() {
    for example in ["examples/local", "examples/gpu-fleet"] {
        berth(&repo().join(example), &["fmt", "--check"]).success();
    }
}

/// A config with one local host and no models, under the given `settings` block.
fn config_with_settings(settings: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.hcl"),
        format!(
            r#"{settings}
host "local" {{
  connection {{
    transport = "local"
  }}
  capabilities {{
    backends = ["cpu"]
  }}
}}
backend "cpu" {{}}
"#
        ),
    )
    .unwrap();
    dir
}

#[test]
fn settings_state_block_places_the_state_for_every_command() {
    let dir = config_with_settings(
        "settings {\n  state {\n    backend = \"sled\"\n    dir     = \"custom-state\"\n  }\n}\n",
    );
    let state = dir.path().join("custom-state");

    let out = berth(dir.path(), &["state", "list"]).success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).to_string();
    assert!(text.contains("The state is empty."), "{text}");
    berth(dir.path(), &["plan", "--refresh=false"]).success();
    assert!(
        state.join("berth.lock").is_file(),
        "the lock lives in the state dir"
    );
    assert!(
        state.join("db").is_dir(),
        "the store lives in the state dir"
    );
    assert!(
        !dir.path().join(".berth").exists(),
        "nothing is written to the default state dir"
    );

    let out = berth(dir.path(), &["force-unlock", "0badc0de"]).code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(err.contains("there is no lock to remove"), "{err}");
    assert!(err.contains("custom-state"), "{err}");
}

#[test]
fn a_postgres_state_without_a_url_says_where_to_give_one() {
    let dir = config_with_settings(
        "settings {\n  state {\n    backend   = \"postgres\"\n    workspace = \"prod\"\n  }\n}\n",
    );
    for args in [
        &["state", "list"][..],
        &["plan"],
        &["force-unlock", "a1b2c3d4"],
    ] {
        let out = berth(dir.path(), args).code(1);
        let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
        assert!(
            err.contains("the postgres state backend needs a connection URL"),
            "{args:?}: {err}"
        );
        assert!(err.contains("BERTH_PG_URL"), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!dir.path().join(".berth").exists(), "no state was made");
}

#[test]
fn backends_show_lists_the_container_and_systemd_blocks() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.hcl"),
        r#"
host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["ctr", "units"]
  }
}
backend "ctr" {
  runtime = "docker"
  container {
    image      = "stand-in:1"
    network    = "models-net"
    ports      = ["127.0.0.1:18080:8080"]
    extra_args = ["--shm-size", "1g"]
    volumes    = ["/srv/models:/models:ro"]
  }
}
backend "units" {
  runtime = "systemd"
  systemd {
    scope   = "user"
    options = { LimitNOFILE = "4096" }
  }
}
"#,
    )
    .unwrap();
    let text = berth(dir.path(), &["backends", "show", "ctr"]).success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).to_string();
    for line in [
        "image         stand-in:1",
        "volume        /srv/models:/models:ro",
        "network       models-net",
        "port          127.0.0.1:18080:8080",
        "extra_args    --shm-size 1g",
    ] {
        assert!(text.contains(line), "{line:?} missing from:\n{text}");
    }
    let json = stdout_json(&berth(dir.path(), &["backends", "show", "ctr", "--json"]).success());
    assert_eq!(json["container"]["network"], "models-net");
    assert_eq!(
        json["container"]["ports"],
        serde_json::json!(["127.0.0.1:18080:8080"])
    );
    assert_eq!(
        json["container"]["extra_args"],
        serde_json::json!(["--shm-size", "1g"])
    );
    assert_eq!(json["systemd"], Value::Null);

    let text = berth(dir.path(), &["backends", "show", "units"]).success();
    let text = String::from_utf8_lossy(&text.get_output().stdout).to_string();
    assert!(text.contains("scope         user"), "{text}");
    assert!(text.contains("option        LimitNOFILE=4096"), "{text}");
    let json = stdout_json(&berth(dir.path(), &["backends", "show", "units", "--json"]).success());
    assert_eq!(
        json["systemd"],
        serde_json::json!({"options": {"LimitNOFILE": "4096"}, "scope": "user"})
    );
    assert_eq!(json["container"], Value::Null);
}
