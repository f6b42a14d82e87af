//! Secrets stay secret end to end: a sensitive variable reaches the model server's environment
//! and nowhere else berth writes or prints: not the state store's files, not a saved plan, not
//! any command's output, not the server's command line. Changing it still replaces the server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use berth_test_support::procs;
use common::{Fleet, Model, Workdir, addr, all_stand_ins, free_ports};

const SECRET: &str = "sk-berth-e2e-0f1e2d3c";
const ROTATED: &str = "sk-berth-e2e-rotated-77";

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p)
            } else {
                out.push(p)
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn a_sensitive_value_reaches_the_server_and_nothing_else() {
    let ports = free_ports(2);
    let fleet = Fleet::new(&[Model::new("plain", ports[0], "")], 2);
    std::fs::write(
        fleet.dir().join("secret.hcl"),
        format!(
            r#"variable "api_key" {{
  sensitive = true
}}

model "keyed" {{
  source   = "/srv/models/keyed.gguf"
  size_gib = 0.1
  env      = {{ LLAMA_API_KEY = var.api_key }}
  runtime_defaults {{
    port = {}
  }}
  launch {{
    start_cmd  = "berth-model-server --port {{port}} --model {{model}}"
    probe_http = "/v1/models"
  }}
}}
"#,
            ports[1]
        ),
    )
    .unwrap();
    let vars = fleet.dir().parent().unwrap().join("secret.vars");
    std::fs::write(&vars, format!("api_key = \"{SECRET}\"\n")).unwrap();
    let vars = vars.to_str().unwrap();
    let plan_file = fleet.dir().parent().unwrap().join("saved.plan");
    let plan_path = plan_file.to_str().unwrap();
    let cleanup = scopeguard(ports[1]);

    let mut printed = String::new();
    let plan = fleet.berth(&["plan", "--var-file", vars, "--out", plan_path]);
    plan.expect(0);
    printed += &plan.all();
    let apply = fleet.berth(&["apply", plan_path, "--var-file", vars]);
    apply.expect(0);
    printed += &apply.all();
    for args in [
        &["state", "show", &addr("keyed")][..],
        &["state", "list", "--json"],
        &["plan", "--format", "json", "--var-file", vars],
        &["models", "show", "keyed", "--var-file", vars],
    ] {
        let run = fleet.berth(args);
        run.expect(0);
        printed += &run.all();
    }
    assert!(
        !printed.contains(SECRET),
        "a command printed the secret:\n{printed}"
    );
    assert!(
        printed.contains("(sensitive)"),
        "the env value is shown as (sensitive)"
    );
    assert!(
        !contains(&std::fs::read(&plan_file).unwrap(), SECRET),
        "the saved plan holds the secret"
    );
    for f in files_under(&fleet.state_dir().join("db")) {
        assert!(
            !contains(&std::fs::read(&f).unwrap(), SECRET),
            "state file {} holds the secret",
            f.display()
        );
    }

    let server = server_on(ports[1]);
    assert!(
        !server.argv.join(" ").contains(SECRET),
        "the secret is on the server's command line"
    );
    assert!(
        server
            .environ()
            .contains(&format!("LLAMA_API_KEY={SECRET}")),
        "the server did not get its key"
    );
    let env_files: Vec<_> = files_under(&fleet.deployments_dir())
        .into_iter()
        .filter(|p| p.ends_with("env"))
        .collect();
    assert_eq!(env_files.len(), 2, "{env_files:?}");
    for f in &env_files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
    }

    // A new value replaces the server, without showing either value.
    std::fs::write(
        fleet.dir().parent().unwrap().join("secret.vars"),
        format!("api_key = \"{ROTATED}\"\n"),
    )
    .unwrap();
    let plan = fleet.berth(&["plan", "--var-file", vars]);
    plan.expect(0);
    assert!(
        plan.stdout
            .contains("replace: a sensitive value of its launch changed"),
        "{}",
        plan.all()
    );
    assert!(
        !plan.all().contains(SECRET) && !plan.all().contains(ROTATED),
        "{}",
        plan.all()
    );
    fleet
        .berth(&["apply", "--auto-approve", "--var-file", vars])
        .expect(0);
    let server = server_on(ports[1]);
    assert!(
        server
            .environ()
            .contains(&format!("LLAMA_API_KEY={ROTATED}"))
    );
    fleet
        .berth(&["destroy", "--auto-approve", "--var-file", vars])
        .expect(0);
    drop(cleanup);
}

/// The one stand-in serving `port`.
fn server_on(port: u16) -> common::StandIn {
    let found: Vec<_> = all_stand_ins()
        .into_iter()
        .filter(|s| s.port == port)
        .collect();
    assert_eq!(found.len(), 1, "stand-ins on port {port}: {found:?}");
    found.into_iter().next().unwrap()
}

/// Kills the stand-in on `port` when the test ends, whatever happens (the fleet's own guard
/// only knows the ports of its generated models).
fn scopeguard(port: u16) -> impl Drop {
    struct Guard(u16);
    impl Drop for Guard {
        fn drop(&mut self) {
            for s in all_stand_ins().into_iter().filter(|s| s.port == self.0) {
                s.kill9();
            }
        }
    }
    Guard(port)
}

/// `value` as an HCL string literal (for a var file): quotes, backslashes and template
/// introducers escaped, so the variable holds exactly `value`.
fn hcl_string(value: &str) -> String {
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace("${", "$${")
        .replace("%{", "%%{");
    format!("\"{escaped}\"")
}

/// A config that uses the sensitive variable `tok` at every place a value can carry it into a
/// rendered command, env or field berth shows.
fn config_with_secret_everywhere() -> String {
    r#"variable "tok" {
  sensitive = true
}

host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
  labels = { rack = "r1" }
}

backend "cpu" {
  runtime    = "process"
  verify_cmd = "check-gpu {backend_env} {backend_args} ${shellquote(var.tok)}"
  args       = ["--api-key=${var.tok}", "--threads", "4", var.tok]
  env        = { BACKEND_KEY = "k-${var.tok}", PLAIN = "shown" }
}

model "m" {
  source   = "/m/x-${var.tok}.gguf"
  size_gib = 0.1
  env      = { LLAMA_API_KEY = var.tok, OTHER = "visible" }
  host_policy {
    labels = { rack = "r1" }
  }
  runtime_defaults {
    port = 18931
  }
  launch {
    start_cmd = "llama-server -m {source} --port {port} {backend_args} --env {backend_env}"
    probe_cmd = "curl -H ${shellquote("Authorization: ${var.tok}")} http://127.0.0.1:{port}/"
  }
}
"#
    .to_string()
}

/// A config that puts the sensitive variable where berth shows values as they are: every one
/// of these is refused by validation.
fn config_with_secret_where_it_would_show() -> String {
    r#"variable "tok" {
  sensitive = true
}

host "local" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cpu"]
  }
  labels  = { rack = "r-${var.tok}" }
  run_dir = "/tmp/${var.tok}"
}

host "remote" {
  connection {
    host     = "127.0.0.1"
    user     = "u${var.tok}"
    key_path = "/keys/${var.tok}"
  }
  capabilities {
    backends = ["cpu"]
  }
}

backend "cpu" {
  runtime = "process"
  env     = { (var.tok) = "v" }
}

model "m" {
  source = "/m/plain.gguf"
  group  = var.tok
  default = true
  host_policy {
    labels = { rack = var.tok }
  }
  launch {
    start_cmd  = "llama-server -m {source} --port {port}"
    probe_http = "/${var.tok}"
  }
}
"#
    .to_string()
}

/// Every place `config_with_secret_everywhere` puts the secret (source, three backend args,
/// backend env, model env, start_cmd through {source}, {backend_args} and {backend_env},
/// probe_cmd, verify_cmd) and every place `config_with_secret_where_it_would_show` does
/// (host labels, run_dir, user, key_path, env key, group, policy labels, probe_http).
const SITES_TRACKED: usize = 11;
const SITES_REFUSED: usize = 8;

/// Runs every command that shows the config or a plan, and returns all they printed or wrote.
fn everything_shown(work: &Workdir, vars: &str) -> Vec<u8> {
    let plan_file = work.path("saved.plan");
    let plan_path = plan_file.to_str().unwrap();
    let mut shown = Vec::new();
    for args in [
        &["validate", "--var-file", vars][..],
        &["plan", "--var-file", vars],
        &["plan", "--format", "json", "--var-file", vars],
        &["plan", "--format", "markdown", "--var-file", vars],
        &["plan", "--var-file", vars, "--out", plan_path],
        &["models", "show", "m", "--var-file", vars],
        &["models", "show", "m", "--json", "--var-file", vars],
        &["backends", "show", "cpu", "--var-file", vars],
        &["backends", "show", "cpu", "--json", "--var-file", vars],
        &["hosts", "show", "local", "--var-file", vars],
        &["hosts", "show", "local", "--json", "--var-file", vars],
        &["graph", "--format", "json", "--var-file", vars],
    ] {
        let run = work.berth(args);
        run.expect(0);
        shown.extend_from_slice(run.all().as_bytes());
    }
    shown.extend(std::fs::read(&plan_file).expect("the saved plan"));
    shown
}

fn write_vars(work: &Workdir, secret: &str) -> String {
    let vars = work.path("secret.vars");
    std::fs::write(&vars, format!("tok = {}\n", hcl_string(secret))).unwrap();
    vars.to_str().unwrap().to_string()
}

#[test]
fn a_secret_with_quotes_inside_a_larger_word_is_not_shown() {
    // The two shapes that escaped text replacement: a secret inside a larger word (a path, a
    // `--flag=value` argument) whose quoting differs from the secret's own quoted form.
    for secret in ["p@ss'w$rd", "a\\b"] {
        let work = Workdir::new("berth-secret-word-", false);
        std::fs::write(
            work.dir().join("main.hcl"),
            r#"variable "tok" {
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

backend "cpu" {
  args = ["--api-key=${var.tok}"]
}

model "m" {
  source = "/m/x-${var.tok}.gguf"
  size_gib = 0.1
  launch {
    start_cmd = "llama-server -m {source} {backend_args}"
  }
}
"#,
        )
        .unwrap();
        let vars = write_vars(&work, secret);
        let shown = String::from_utf8_lossy(&everything_shown(&work, &vars)).into_owned();
        // The whole quoted word that holds the secret is hidden, not only the secret.
        for leaked in ["p@ss", "w$rd", "a\\b", "/m/x-", "--api-key="] {
            assert!(
                !shown.contains(leaked),
                "`{leaked}` of secret {secret:?} was shown:\n{shown}"
            );
        }
        assert!(
            shown.contains("llama-server -m (sensitive) (sensitive)"),
            "the command is shown with its secret words hidden:\n{shown}"
        );
    }
}

#[test]
fn a_secret_where_berth_shows_values_as_they_are_is_refused() {
    let work = Workdir::new("berth-secret-refused-", false);
    std::fs::write(
        work.dir().join("main.hcl"),
        config_with_secret_where_it_would_show(),
    )
    .unwrap();
    let secret = "zq9secretzq9";
    let vars = write_vars(&work, secret);
    let run = work.berth(&["validate", "--var-file", &vars]);
    assert_ne!(run.code, Some(0), "{}", run.all());
    let all = run.all();
    assert!(!all.contains(secret), "{all}");
    assert_eq!(
        all.matches("berth::config::sensitive_not_allowed").count(),
        SITES_REFUSED,
        "one finding per place:\n{all}"
    );
    assert!(all.contains("cannot hold a sensitive value"), "{all}");
}

/// Alphanumeric runs of 6+ characters joined by printable non-alphanumeric ASCII: if no run
/// shows up anywhere, the secret leaked in no encoding (plain, shell-quoted, JSON-escaped,
/// percent-encoded all keep the runs intact).
fn secret_shapes() -> impl proptest::strategy::Strategy<Value = (String, Vec<String>)> {
    use proptest::prelude::*;
    let run = "[a-zA-Z0-9]{6,10}";
    let special = "[ -/:-@\\[-`{-~]{1,3}";
    (special, prop::collection::vec((run, special), 1..4)).prop_map(|(lead, parts)| {
        let mut secret = lead;
        let mut runs = Vec::new();
        for (r, s) in parts {
            secret.push_str(&r);
            secret.push_str(&s);
            runs.push(r);
        }
        (secret, runs)
    })
}

#[test]
fn no_secret_shape_leaks_from_any_interpolation_site() {
    use proptest::test_runner::{Config, TestRunner};
    let cases = 32;
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let tried = std::sync::atomic::AtomicUsize::new(0);
    runner
        .run(&secret_shapes(), |(secret, runs)| {
            tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let work = Workdir::new("berth-secret-prop-", false);
            std::fs::write(work.dir().join("main.hcl"), config_with_secret_everywhere()).unwrap();
            let vars = write_vars(&work, &secret);
            let shown = everything_shown(&work, &vars);
            for run in &runs {
                proptest::prop_assert!(
                    !contains(&shown, run),
                    "part {run:?} of secret {secret:?} was shown:\n{}",
                    String::from_utf8_lossy(&shown)
                );
            }

            let refused = Workdir::new("berth-secret-prop-refused-", false);
            std::fs::write(
                refused.dir().join("main.hcl"),
                config_with_secret_where_it_would_show(),
            )
            .unwrap();
            let vars = write_vars(&refused, &secret);
            for args in [
                &["validate", "--var-file", &vars][..],
                &["plan", "--var-file", &vars],
            ] {
                let run = refused.berth(args);
                proptest::prop_assert_ne!(run.code, Some(0));
                for part in &runs {
                    proptest::prop_assert!(!run.all().contains(part.as_str()), "{}", run.all());
                }
            }
            Ok(())
        })
        .unwrap();
    let tried = tried.into_inner();
    eprintln!(
        "{tried} secret shapes x {} interpolation sites: 0 leaked",
        SITES_TRACKED + SITES_REFUSED
    );
}

#[test]
fn hostile_secrets_reach_the_server_byte_for_byte_and_nothing_else() {
    let hostile = [
        "p@ss'w$rd",
        "a\\b",
        "'\"$\\`!{}%",
        "${HOME} %{x} $(id) `id`",
        " spaced out ",
        "{port}}{{",
        "line1\nline2",
    ];
    let ports = free_ports(2);
    let fleet = Fleet::new(&[Model::new("plain", ports[0], "")], 2);
    let mut hcl = String::new();
    let mut vars = String::new();
    let mut env = Vec::new();
    for (i, secret) in hostile.iter().enumerate() {
        hcl += &format!("variable \"tok{i}\" {{\n  sensitive = true\n}}\n\n");
        vars += &format!("tok{i} = {}\n", hcl_string(secret));
        env.push(format!("KEY{i} = var.tok{i}"));
    }
    hcl += &format!(
        r#"model "keyed" {{
  source   = "/srv/models/keyed.gguf"
  size_gib = 0.1
  env      = {{ {} }}
  runtime_defaults {{
    port = {}
  }}
  launch {{
    start_cmd  = "berth-model-server --port {{port}} --model {{model}}"
    probe_http = "/v1/models"
  }}
}}
"#,
        env.join(", "),
        ports[1]
    );
    std::fs::write(fleet.dir().join("secret.hcl"), hcl).unwrap();
    let vars_file = fleet.path("secret.vars");
    std::fs::write(&vars_file, vars).unwrap();
    let vars = vars_file.to_str().unwrap();
    let plan_file = fleet.path("saved.plan");
    let plan_path = plan_file.to_str().unwrap();
    let cleanup = scopeguard(ports[1]);

    let mut printed = Vec::new();
    for args in [
        &["plan", "--var-file", vars, "--out", plan_path][..],
        &["apply", plan_path, "--var-file", vars],
        &["state", "show", &addr("keyed")],
        &["plan", "--format", "json", "--var-file", vars],
        &["models", "show", "keyed", "--json", "--var-file", vars],
    ] {
        let run = fleet.berth(args);
        run.expect(0);
        printed.extend_from_slice(run.all().as_bytes());
    }
    printed.extend(std::fs::read(&plan_file).unwrap());

    let server = server_on(ports[1]);
    let environ = server.environ();
    let command_lines = procs::all_command_lines();
    // Only the deployments' env files (mode 0600, sourced by the launcher) may hold a secret.
    let state_files: Vec<_> = files_under(&fleet.state_dir())
        .into_iter()
        .filter(|p| !p.ends_with("env"))
        .collect();
    for (i, secret) in hostile.iter().enumerate() {
        assert!(
            environ.contains(&format!("KEY{i}={secret}")),
            "the server's environment lacks KEY{i}={secret:?}"
        );
        // Whitespace-padded secrets are checked by their inner text, which is what leaks.
        let needle = secret.trim();
        assert!(!contains(&printed, needle), "{secret:?} was shown");
        for f in &state_files {
            assert!(
                !contains(&std::fs::read(f).unwrap(), needle),
                "{} holds {secret:?}",
                f.display()
            );
        }
        assert!(
            !command_lines.contains(needle),
            "a command line holds {secret:?}"
        );
    }
    fleet
        .berth(&["destroy", "--auto-approve", "--var-file", vars])
        .expect(0);
    drop(cleanup);
}

#[test]
fn a_shellquoted_value_with_braces_reaches_the_process_byte_for_byte() {
    let ports = free_ports(2);
    let fleet = Fleet::new(&[Model::new("plain", ports[0], "")], 2);
    let value = "a {b} {{c}} 'd' \"e\" $f `g` {port}";
    std::fs::write(
        fleet.dir().join("quoted.hcl"),
        format!(
            r#"variable "name" {{
  default = {}
}}

model "quoted" {{
  source   = "/srv/models/quoted.gguf"
  size_gib = 0.1
  runtime_defaults {{
    port = {}
  }}
  launch {{
    start_cmd  = "berth-model-server --port {{port}} --model ${{shellquote(var.name)}}"
    probe_http = "/v1/models"
  }}
}}
"#,
            hcl_string(value),
            ports[1]
        ),
    )
    .unwrap();
    let cleanup = scopeguard(ports[1]);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(server_on(ports[1]).flag("--model"), Some(value));
    fleet.berth(&["destroy", "--auto-approve"]).expect(0);
    drop(cleanup);
}
