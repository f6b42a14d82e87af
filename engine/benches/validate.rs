//! Benchmark: load + validate + placement + graph of a generated fleet of 1,000 hosts,
//! 50 backends and 5,000 models. Goal: under 300 ms and 200 MB peak memory.
//!
//! Run: `cargo bench -p berth-engine --bench validate`

#[allow(dead_code)]
mod common;

use std::time::Instant;

use berth::config::VarInputs;
use berth::placement::Previous;
use berth::workspace::Workspace;
use common::{Fleet, median_ms, peak_rss_mib};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    Fleet::LARGE.write(dir.path());
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    const RUNS: usize = 10;
    let mut total = Vec::new();
    let mut load = Vec::new();
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let loaded = berth::config::load(dir.path(), &VarInputs::default())
            .expect("generated config is valid");
        load.push(start.elapsed());
        let ws = Workspace::from_loaded(loaded, &Previous::default()).expect("placeable");
        total.push(start.elapsed());
        last = Some(ws);
    }
    let ws = last.unwrap();
    println!(
        "fleet: {} hosts, {} backends, {} models, {} placements, {} graph nodes, {:.1} MiB of HCL",
        ws.config.hosts.len(),
        ws.config.backends.len(),
        ws.config.models.len(),
        ws.placements.len(),
        ws.graph.len(),
        bytes as f64 / 1048576.0
    );
    println!(
        "load + validate:                         median {:.1} ms",
        median_ms(load)
    );
    println!(
        "load + validate + placement + graph:     median {:.1} ms over {RUNS} runs",
        median_ms(total)
    );
    println!(
        "peak memory (VmHWM):                     {:.1} MiB",
        peak_rss_mib()
    );
}
