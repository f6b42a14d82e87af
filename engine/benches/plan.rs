//! Benchmark: `berth plan --refresh=false` of the 5,000-model fleet against a state that holds
//! every placement (7,500 records). Goal: under 500 ms.
//!
//! Run: `cargo bench -p berth-engine --bench plan`

#[allow(dead_code)]
mod common;
#[path = "common/seed.rs"]
mod seed;

use std::process::Command;
use std::time::{Duration, Instant};

use berth::config::VarInputs;
use berth::placement::Previous;
use berth::workspace::Workspace;
use common::{Fleet, median_ms};

fn main() {
    // BERTH_BENCH_DIR keeps the generated config and state for profiling.
    let kept = std::env::var_os("BERTH_BENCH_DIR").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().unwrap();
    let dir = kept.as_deref().unwrap_or(temp.path());
    let _ = std::fs::remove_dir_all(dir.join(".berth"));
    Fleet::LARGE.write(dir);
    let ws = Workspace::open(dir, &VarInputs::default(), &Previous::default()).unwrap();
    let setup = Instant::now();
    seed::sled_state_of_every_placement(dir, &ws);
    println!(
        "state: {} records written in {:.1} s",
        ws.placements.len(),
        setup.elapsed().as_secs_f64()
    );

    let berth = env!("CARGO_BIN_EXE_berth");
    let run = || {
        let start = Instant::now();
        let out = Command::new(berth)
            .arg("-C")
            .arg(dir)
            .args(["plan", "--refresh=false", "--detailed-exitcode"])
            .output()
            .unwrap();
        let elapsed = start.elapsed();
        assert_eq!(
            out.status.code(),
            Some(0),
            "expected no changes: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        elapsed
    };
    run();
    let samples: Vec<Duration> = (0..7).map(|_| run()).collect();
    println!(
        "berth plan --refresh=false (5,000 models, 7,500 records): median {:.1} ms over {} runs",
        median_ms(samples),
        7
    );
}
