//! Secrets stay secret end to end: a sensitive variable reaches the model server's environment
//! and nowhere else berth writes or prints: not the state store's files, not a saved plan, not
//! any command's output, not the server's command line. Changing it still replaces the server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Fleet, Model, addr, all_stand_ins, free_ports, kill9};

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
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", server.pid)).unwrap();
    assert!(
        !contains(&cmdline, SECRET),
        "the secret is on the server's command line"
    );
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid)).unwrap();
    assert!(
        contains(&environ, &format!("LLAMA_API_KEY={SECRET}")),
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
    let environ = std::fs::read(format!("/proc/{}/environ", server.pid)).unwrap();
    assert!(contains(&environ, &format!("LLAMA_API_KEY={ROTATED}")));
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
                kill9(&s);
            }
        }
    }
    Guard(port)
}
