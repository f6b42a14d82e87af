//! Benchmark: `berth validate` wall time and peak memory on configs at and past the config
//! size limits (docs/language.md, "Limits"): the largest accepted fleet, and each input that
//! once took time or memory out of proportion to its size. Each case runs the release binary
//! under `/usr/bin/time -v`, so its memory is its own.
//!
//! Run: `cargo bench -p berth-engine --bench config_limits`

#[allow(dead_code)]
mod common;
#[allow(dead_code)]
#[path = "common/oversized.rs"]
mod oversized;

use std::process::Command;

use common::Fleet;

const MIB: usize = 1024 * 1024;

/// Writes one case's config into a directory.
type Writer = Box<dyn Fn(&std::path::Path)>;

fn main() {
    let cases: Vec<(&str, Writer)> = vec![
        (
            "fleet benchmark: 1,000 hosts, 5,000 models",
            Box::new(|d| Fleet::LARGE.write(d)),
        ),
        (
            "largest accepted: 140,000 models, ~30 MiB in 9 MiB files",
            Box::new(|d| oversized::write(&oversized::fleet(140_000, 9 * MIB), d)),
        ),
        (
            "one file of 9.5 MiB (accepted)",
            Box::new(|d| oversized::write(&oversized::big_file(9 * MIB + MIB / 2), d)),
        ),
        (
            "one file of 50 MiB (refused)",
            Box::new(|d| oversized::write(&oversized::big_file(50 * MIB), d)),
        ),
        (
            "object of 10,000 keys (accepted)",
            Box::new(|d| oversized::write(&oversized::wide_object(10_000), d)),
        ),
        (
            "object of 100,000 keys (refused)",
            Box::new(|d| oversized::write(&oversized::wide_object(100_000), d)),
        ),
        (
            "depends_on of 200,000 items (refused)",
            Box::new(|d| oversized::write(&oversized::long_depends_on(200_000, true), d)),
        ),
        (
            "depends_on of 10,000 undefined models (10,000 errors)",
            Box::new(|d| oversized::write(&oversized::long_depends_on(10_000, false), d)),
        ),
        (
            "20,000 models on one port, one group (accepted)",
            Box::new(|d| oversized::write(&oversized::shared_port(20_000, true), d)),
        ),
        (
            "5,000 models on one port, no group (4,999 errors)",
            Box::new(|d| oversized::write(&oversized::shared_port(5_000, false), d)),
        ),
        (
            "start_cmd of 200 KiB (warning)",
            Box::new(|d| oversized::write(&oversized::long_start_cmd(200 * 1024), d)),
        ),
    ];
    println!(
        "{:<58} {:>6} {:>9} {:>10}",
        "case", "exit", "wall s", "peak MiB"
    );
    for (name, write) in cases {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path());
        let out = Command::new("/usr/bin/time")
            .arg("-v")
            .arg(env!("CARGO_BIN_EXE_berth"))
            .arg("-C")
            .arg(dir.path())
            .arg("validate")
            .env("NO_COLOR", "1")
            .output()
            .expect("/usr/bin/time runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let field = |key: &str| {
            stderr
                .lines()
                .find_map(|l| l.trim().strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let wall = field("Elapsed (wall clock) time (h:mm:ss or m:ss):");
        let seconds: f64 = wall.split(':').fold(0.0, |acc, part| {
            acc * 60.0 + part.parse::<f64>().unwrap_or(0.0)
        });
        let rss_kib: f64 = field("Maximum resident set size (kbytes):")
            .parse()
            .unwrap_or(0.0);
        println!(
            "{name:<58} {:>6} {seconds:>9.2} {:>10.1}",
            field("Exit status:"),
            rss_kib / 1024.0
        );
    }
}
