//! No input makes berth panic: every prefix of every example file, and thousands of random
//! edits of them, go through load, validate, placement and graph; each must end in a config or
//! in findings, never in a panic.

use std::path::Path;

use berth::config::{VarInputs, load_texts};
use berth::placement::Previous;
use berth::workspace::Workspace;

/// The example configs, as (file name, text).
fn examples() -> Vec<Vec<(String, String)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut configs = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "hcl"))
            .collect();
        files.sort();
        configs.push(
            files
                .iter()
                .map(|f| {
                    (
                        f.file_name().unwrap().to_string_lossy().to_string(),
                        std::fs::read_to_string(f).unwrap(),
                    )
                })
                .collect(),
        );
    }
    assert!(!configs.is_empty());
    configs
}

/// Loads one config from texts all the way to its graph; returns whether it was valid.
fn check(files: &[(String, String)]) -> bool {
    let texts: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    match load_texts(
        Path::new("/nonexistent/berth-fuzz"),
        &texts,
        &VarInputs::default(),
    ) {
        Ok(loaded) => Workspace::from_loaded(loaded, &Previous::default()).is_ok(),
        Err(invalid) => {
            assert!(invalid.findings.has_errors());
            for f in invalid.findings.iter() {
                // Rendering must not panic either (spans must lie inside their files).
                let _ = format!("{:?}", f.render(&invalid.sources));
                let mut out = String::new();
                miette::NarratableReportHandler::new()
                    .render_report(&mut out, &f.render(&invalid.sources))
                    .unwrap();
            }
            false
        }
    }
}

#[test]
fn every_prefix_of_every_example_loads_or_reports() {
    let mut runs = 0;
    for config in examples() {
        assert!(check(&config), "the example itself must be valid");
        for (i, (_, text)) in config.iter().enumerate() {
            for cut in (0..text.len()).filter(|c| text.is_char_boundary(*c)) {
                let mut files = config.clone();
                files[i].1 = text[..cut].to_string();
                check(&files);
                runs += 1;
            }
        }
    }
    assert!(runs > 1000, "only {runs} prefixes checked");
}

/// xorshift64*: deterministic, so a failure can be reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn random_edits_of_the_examples_load_or_report() {
    const TRIALS: usize = 4000;
    const ALPHABET: &[u8] = b"{}[]()\"'=$%\\#/*\n ,.:-_?!<>~0123456789azAZ";
    let configs = examples();
    let mut rng = Rng(0x005e_ed0f_be27);
    let mut invalid = 0;
    for trial in 0..TRIALS {
        let mut files = configs[trial % configs.len()].clone();
        let which = rng.below(files.len());
        let mut bytes = files[which].1.clone().into_bytes();
        for _ in 0..1 + rng.below(4) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => bytes[at] = ALPHABET[rng.below(ALPHABET.len())],
                1 => {
                    bytes.remove(at);
                }
                _ => bytes.insert(at, ALPHABET[rng.below(ALPHABET.len())]),
            }
        }
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        files[which].1 = text;
        if !check(&files) {
            invalid += 1;
        }
    }
    assert!(
        invalid > TRIALS / 4,
        "the edits should break most configs; only {invalid} did"
    );
}
