//! Benchmark: `berth apply` of 50 local models whose servers take 2 s to load, parallelism 50.
//! Goal: wall time within 1.3x of the 2 s critical path (under 2.6 s).
//!
//! Run: `cargo bench -p berth-engine --bench apply_local` (builds the model-server stand-in).

#[allow(dead_code)]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const MODELS: usize = 50;
const LOAD_SECS: f64 = 2.0;

fn main() {
    let berth = PathBuf::from(env!("CARGO_BIN_EXE_berth"));
    let bin_dir = berth.parent().unwrap().to_path_buf();
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "-p", "berth-model-server"])
        .status()
        .unwrap();
    assert!(status.success());
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let dir = tempfile::tempdir().unwrap();
    let base = free_port_range(MODELS);
    let mut config = format!(
        "settings {{\n  parallelism = {MODELS}\n}}\n\nhost \"local\" {{\n  connection {{\n    transport = \"local\"\n  }}\n  capabilities {{\n    backends = [\"cpu\"]\n  }}\n}}\n\nbackend \"cpu\" {{}}\n"
    );
    for i in 0..MODELS {
        config.push_str(&format!(
            "\nmodel \"m{i:02}\" {{\n  source   = \"/srv/models/m{i:02}.gguf\"\n  size_gib = 1\n  runtime_defaults {{\n    port = {}\n  }}\n  launch {{\n    start_cmd         = \"berth-model-server --port {{port}} --model {{model}} --load-secs {LOAD_SECS}\"\n    probe_http        = \"/v1/models\"\n    probe_interval_ms = 100\n  }}\n}}\n",
            base + i as u16
        ));
    }
    std::fs::write(dir.path().join("main.hcl"), config).unwrap();

    let start = Instant::now();
    let out = Command::new(&berth)
        .arg("-C")
        .arg(dir.path())
        .args(["apply", "--auto-approve"])
        .env("PATH", &path)
        .output()
        .unwrap();
    let wall = start.elapsed().as_secs_f64();
    let ok = out.status.success();
    let destroy = Command::new(&berth)
        .arg("-C")
        .arg(dir.path())
        .args(["destroy", "--auto-approve"])
        .env("PATH", &path)
        .output()
        .unwrap();
    assert!(
        ok,
        "apply failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(destroy.status.success(), "destroy failed");
    println!(
        "apply of {MODELS} local models loading {LOAD_SECS} s each, parallelism {MODELS}: {wall:.2} s wall ({:.2}x the critical path)",
        wall / LOAD_SECS
    );
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
