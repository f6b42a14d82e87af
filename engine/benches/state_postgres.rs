//! Benchmark: the postgres state backend beside sled, on a private local PostgreSQL server
//! (Unix socket, default durability settings).
//! Goals: `berth plan --refresh=false` of the 5,000-model fleet within 1.5x of sled; `berth
//! apply` of 50 local models within 1.1x of sled; lock acquire and release under 20 ms each.
//!
//! Run: `cargo bench -p berth-engine --bench state_postgres` (as root or a user that can run
//! PostgreSQL's `initdb`; builds the model-server stand-in).

#[allow(dead_code)]
mod common;
#[path = "common/seed.rs"]
mod seed;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth::config::VarInputs;
use berth::placement::Previous;
use berth::workspace::Workspace;
use berth_state::{LockOptions, PgBackend, PgSettings, PgUrl, StateBackend};
use berth_test_support::postgres as pg;
use common::{Fleet, median_ms};

const POSTGRES_SETTINGS: &str = "settings {\n  parallelism = 50\n  state {\n    backend   = \"postgres\"\n    workspace = \"WS\"\n  }\n}";

fn main() {
    let server = pg::server();
    let db = server.fresh_database("bench");
    let url = server.url(&db);
    let backend = |workspace: &str| {
        PgBackend::new(PgSettings {
            url: PgUrl::parse(&url).unwrap(),
            workspace: workspace.to_owned(),
            create_workspace: true,
        })
    };

    // Lock acquire and release.
    let locks = backend("locks");
    locks.lock("bench", &LockOptions::default()).unwrap();
    let (mut acquire, mut release) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let t = Instant::now();
        let guard = locks.lock("bench", &LockOptions::default()).unwrap();
        acquire.push(t.elapsed());
        let t = Instant::now();
        guard.release().unwrap();
        release.push(t.elapsed());
    }
    println!(
        "lock acquire: median {:.1} ms, max {:.1} ms; release: median {:.1} ms, max {:.1} ms (50 each)",
        median_ms(acquire.clone()),
        max_ms(&acquire),
        median_ms(release.clone()),
        max_ms(&release)
    );

    // plan --refresh=false of the large fleet.
    let temp = tempfile::tempdir().unwrap();
    let sled_dir = temp.path().join("sled");
    let pg_dir = temp.path().join("pg");
    Fleet::LARGE.write(&sled_dir);
    Fleet::LARGE.write(&pg_dir);
    set_postgres(&pg_dir, "plan");
    let ws = Workspace::open(&sled_dir, &VarInputs::default(), &Previous::default()).unwrap();
    let snapshot = seed::sled_state_of_every_placement(&sled_dir, &ws);
    backend("plan")
        .import(&snapshot, &LockOptions::default())
        .unwrap();
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let plan = |dir: &Path| {
        let start = Instant::now();
        let out = Command::new(&berth)
            .arg("-C")
            .arg(dir)
            .args(["plan", "--refresh=false", "--detailed-exitcode"])
            .env("BERTH_PG_URL", &url)
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "expected no changes: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        elapsed
    };
    plan(&sled_dir);
    plan(&pg_dir);
    let mut sled_runs = Vec::new();
    let mut pg_runs = Vec::new();
    for _ in 0..7 {
        sled_runs.push(plan(&sled_dir));
        pg_runs.push(plan(&pg_dir));
    }
    let (sled_ms, pg_ms) = (median_ms(sled_runs), median_ms(pg_runs));
    println!(
        "plan --refresh=false, 5,000 models, 7,500 records: sled {sled_ms:.0} ms, postgres {pg_ms:.0} ms ({:.2}x), median of 7",
        pg_ms / sled_ms
    );

    // apply of 50 local models.
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "berth-model-server"])
        .status()
        .unwrap();
    assert!(status.success());
    let path = format!(
        "{}:{}",
        berth.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut sled_apply = Vec::new();
    let mut pg_apply = Vec::new();
    for round in 0..3 {
        for postgres in [false, true] {
            let dir = temp.path().join(format!("apply-{round}-{postgres}"));
            std::fs::create_dir_all(&dir).unwrap();
            let mut config = local_fleet();
            if postgres {
                config = config.replace(
                    "settings {\n  parallelism = 50\n}",
                    &POSTGRES_SETTINGS.replace("WS", &format!("apply{round}")),
                );
                backend(&format!("apply{round}")).init().unwrap();
            }
            std::fs::write(dir.join("main.hcl"), config).unwrap();
            let run = |args: &[&str]| {
                Command::new(&berth)
                    .arg("-C")
                    .arg(&dir)
                    .args(args)
                    .env("PATH", &path)
                    .env("BERTH_PG_URL", &url)
                    .output()
                    .unwrap()
            };
            let start = Instant::now();
            let out = run(&["apply", "--auto-approve"]);
            let wall = start.elapsed();
            let destroyed = run(&["destroy", "--auto-approve"]);
            assert!(
                out.status.success(),
                "apply failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(destroyed.status.success(), "destroy failed");
            if postgres {
                pg_apply.push(wall);
            } else {
                sled_apply.push(wall);
            }
        }
    }
    let (sled_s, pg_s) = (median_ms(sled_apply) / 1000.0, median_ms(pg_apply) / 1000.0);
    println!(
        "apply of {MODELS} local models (2 s load, parallelism 50): sled {sled_s:.2} s, postgres {pg_s:.2} s ({:.3}x), median of 3",
        pg_s / sled_s
    );
}

const MODELS: usize = 50;

fn set_postgres(dir: &Path, workspace: &str) {
    let path = dir.join("hosts.hcl");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "settings {\n  parallelism = 50\n}",
        &POSTGRES_SETTINGS.replace("WS", workspace),
    );
    std::fs::write(path, text).unwrap();
}

fn max_ms(samples: &[Duration]) -> f64 {
    samples
        .iter()
        .map(|d| d.as_secs_f64() * 1000.0)
        .fold(0.0, f64::max)
}

fn local_fleet() -> String {
    let base = free_port_range(MODELS);
    let mut config = String::from(
        "settings {\n  parallelism = 50\n}\n\nhost \"local\" {\n  connection {\n    transport = \"local\"\n  }\n  capabilities {\n    backends = [\"cpu\"]\n  }\n}\n\nbackend \"cpu\" {}\n",
    );
    for i in 0..MODELS {
        config.push_str(&format!(
            "\nmodel \"m{i:02}\" {{\n  source   = \"/srv/models/m{i:02}.gguf\"\n  size_gib = 1\n  runtime_defaults {{\n    port = {}\n  }}\n  launch {{\n    start_cmd         = \"berth-model-server --port {{port}} --model {{model}} --load-secs 2\"\n    probe_http        = \"/v1/models\"\n    probe_interval_ms = 100\n  }}\n}}\n",
            base + i as u16
        ));
    }
    config
}

/// The first port of `n` consecutive free ports.
fn free_port_range(n: usize) -> u16 {
    'outer: for base in (20000..60000).step_by(500) {
        for p in base..base + n as u16 {
            if std::net::TcpListener::bind(("127.0.0.1", p)).is_err() {
                continue 'outer;
            }
        }
        return base;
    }
    panic!("no free port range");
}
