//! Two `berth watch --heal` on one postgres workspace (a private PostgreSQL server, two
//! checkouts of one config on the local host): each drift is healed by exactly one of them,
//! recorded once in the shared history, and leaves one server on its port.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_test_support::postgres as pg;
use berth_test_support::procs;
use common::{
    Background, Run, StandIn, Workdir, all_stand_ins, free_ports, heals_logged, wait_until,
};
use serde_json::Value;

/// One checkout of the config, with its own directory, on the shared workspace.
struct Checkout {
    work: Workdir,
    url: String,
}

impl Checkout {
    fn new(url: &str, run_dir: &Path, port: u16) -> Checkout {
        let work = Workdir::new("berth-pg-watch-", true);
        std::fs::write(work.dir().join("main.hcl"), config(run_dir, port)).unwrap();
        Checkout {
            work,
            url: url.to_owned(),
        }
    }

    fn spawn(&self, args: &[&str]) -> Background {
        let url = self.url.clone();
        self.work.spawn_with(args, move |cmd| {
            cmd.env("BERTH_PG_URL", url);
        })
    }

    fn berth(&self, args: &[&str]) -> Run {
        self.spawn(args).wait(common::COMMAND_DEADLINE)
    }

    /// The history entries whose operation is `heal`.
    fn heals(&self) -> Vec<Value> {
        let run = self.berth(&["state", "history", "--json"]);
        run.expect(0);
        run.json()
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|h| h["operation"] == "heal")
            .collect()
    }
}

fn config(run_dir: &Path, port: u16) -> String {
    format!(
        "settings {{\n  parallelism = 4\n  state {{\n    backend   = \"postgres\"\n    workspace = \"prod\"\n  }}\n}}\n\n\
         host \"local\" {{\n  connection {{\n    transport = \"local\"\n  }}\n  capabilities {{\n    backends = [\"cpu\"]\n  }}\n  run_dir = \"{}\"\n}}\n\n\
         backend \"cpu\" {{\n  runtime = \"process\"\n}}\n\n\
         model \"solo\" {{\n  source   = \"/srv/models/solo.gguf\"\n  size_gib = 0.1\n  runtime_defaults {{\n    port = {port}\n  }}\n  launch {{\n    start_cmd         = \"berth-model-server --port {{port}} --model {{model}} --load-secs 0.5\"\n    probe_http        = \"/v1/models\"\n    probe_timeout_sec = 30\n    probe_interval_ms = 100\n  }}\n}}\n",
        run_dir.display()
    )
}

/// Kills the stand-ins on this test's port when the test ends, however it ends.
struct Port(u16);

impl Port {
    fn stand_ins(&self) -> Vec<StandIn> {
        all_stand_ins()
            .into_iter()
            .filter(|s| s.port == self.0)
            .collect()
    }
}

impl Drop for Port {
    fn drop(&mut self) {
        for s in self.stand_ins() {
            s.kill9();
        }
    }
}

/// Heals each watcher logged as done, by watcher.
fn healed(watchers: &[Background]) -> Vec<usize> {
    watchers
        .iter()
        .map(|w| heals_logged(&w.stdout_so_far()))
        .collect()
}

#[test]
fn two_watchers_with_heal_on_one_postgres_workspace_heal_each_drift_exactly_once() {
    const DRIFTS: usize = 3;
    let server = pg::server();
    let db = server.fresh_database("two_watchers");
    let url = server.url(&db);
    let port = Port(free_ports(1)[0]);
    let tmp = tempfile::Builder::new()
        .prefix("berth-pg-watch-run-")
        .tempdir()
        .unwrap();
    let run_dir: PathBuf = tmp.path().join("run");
    let first = Checkout::new(&url, &run_dir, port.0);
    let second = Checkout::new(&url, &run_dir, port.0);
    first.berth(&["state", "init"]).expect(0);
    first.berth(&["apply", "--auto-approve"]).expect(0);
    assert_eq!(port.stand_ins().len(), 1);

    let watchers = [
        first.spawn(&["watch", "--heal", "--interval", "1s"]),
        second.spawn(&["watch", "--heal", "--interval", "1s"]),
    ];
    let mut seen = BTreeMap::new();
    for drift in 1..=DRIFTS {
        let victim = port.stand_ins().pop().expect("a server to kill");
        victim.kill9();
        // Healed: a new server answers on the port, and the history has the heal.
        let back = wait_until(Duration::from_secs(60), || {
            let now = port.stand_ins();
            now.len() == 1 && now[0].pid != victim.pid && first.heals().len() >= drift
        });
        let logs = || {
            watchers
                .iter()
                .map(Background::stdout_so_far)
                .collect::<Vec<_>>()
                .join("\n---\n")
        };
        assert!(back, "drift {drift} was not healed:\n{}", logs());
        // Let both watchers see the healed server for a few more cycles: neither heals again.
        std::thread::sleep(Duration::from_secs(3));
        let servers = port.stand_ins();
        assert_eq!(
            servers.len(),
            1,
            "drift {drift}: servers on the port: {servers:?}\n{}",
            logs()
        );
        assert_eq!(
            first.heals().len(),
            drift,
            "drift {drift}: heal entries in the shared history\n{}",
            logs()
        );
        let by_watcher = healed(&watchers);
        assert_eq!(
            by_watcher.iter().sum::<usize>(),
            drift,
            "drift {drift}: heals logged by the watchers {by_watcher:?}\n{}",
            logs()
        );
        seen.insert(drift, by_watcher);
    }
    eprintln!("heals logged by each watcher after each drift: {seen:?}");
    // Both see the same history: one entry per drift, each healed.
    let history = second.heals();
    assert_eq!(history.len(), DRIFTS, "{history:?}");

    for w in &watchers {
        procs::signal(w.pid(), libc::SIGTERM);
    }
    for mut w in watchers {
        w.wait(Duration::from_secs(60)).expect(0);
    }
    first.berth(&["drift"]).expect(0);
    first.berth(&["destroy", "--auto-approve"]).expect(0);
}
