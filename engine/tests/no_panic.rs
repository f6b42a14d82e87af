//! No input makes berth panic: every prefix of every example file, and thousands of random
//! edits of them, go through load, validate, placement and graph; each must end in a config or
//! in findings, never in a panic. The random edits are proptest cases, so a config that makes
//! berth panic is shrunk to a small one before it is reported.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use berth::config::{VarInputs, load_texts};
use berth::placement::Previous;
use berth::workspace::Workspace;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config as ProptestConfig, RngSeed, TestRunner};

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

/// The bytes random edits put in: HCL's punctuation, quotes, template introducers, digits.
const ALPHABET: &[u8] = b"{}[]()\"'=$%\\#/*\n ,.:-_?!<>~0123456789azAZ";

/// One change of a text's bytes at a position (relative to the text's length when applied).
#[derive(Debug, Clone)]
enum Edit {
    Replace(Index, u8),
    Remove(Index),
    Insert(Index, u8),
}

/// A random edit of one example: one to four byte edits of one file, then some lines of its
/// files dropped. Lines are kept by a `true` that shrinks to `false`, so a failing case shrinks
/// towards the fewest lines that still fail (the byte edits come first, so dropping a line
/// does not move them), and its edits towards fewer and simpler ones.
fn edited_example(
    configs: Vec<Vec<(String, String)>>,
) -> impl Strategy<Value = Vec<(String, String)>> {
    let byte = || prop::sample::select(ALPHABET);
    let edit = prop_oneof![
        (any::<Index>(), byte()).prop_map(|(at, b)| Edit::Replace(at, b)),
        any::<Index>().prop_map(Edit::Remove),
        (any::<Index>(), byte()).prop_map(|(at, b)| Edit::Insert(at, b)),
    ];
    let edits = prop::collection::vec(edit, 1..=4);
    prop::sample::select(configs).prop_flat_map(move |config| {
        // One more line for each newline the edits may insert.
        let masks: Vec<_> = config
            .iter()
            .map(|(_, text)| {
                prop::collection::vec(prop::bool::weighted(0.995), text.lines().count() + 4)
            })
            .collect();
        (Just(config.clone()), 0..config.len(), edits.clone(), masks).prop_map(
            |(mut files, which, edits, masks)| {
                let mut bytes = std::mem::take(&mut files[which].1).into_bytes();
                for edit in &edits {
                    if bytes.is_empty() {
                        break;
                    }
                    let len = bytes.len();
                    match *edit {
                        Edit::Replace(at, b) => bytes[at.index(len)] = b,
                        Edit::Remove(at) => {
                            bytes.remove(at.index(len));
                        }
                        Edit::Insert(at, b) => bytes.insert(at.index(len), b),
                    }
                }
                // An edit inside a multi-byte character leaves no text: that file is left empty.
                files[which].1 = String::from_utf8(bytes).unwrap_or_default();
                for ((_, text), keep) in files.iter_mut().zip(&masks) {
                    let kept: Vec<&str> = text
                        .lines()
                        .zip(keep)
                        .filter_map(|(line, keep)| keep.then_some(line))
                        .collect();
                    *text = kept.join("\n");
                }
                files
            },
        )
    })
}

#[test]
fn random_edits_of_the_examples_load_or_report() {
    const TRIALS: u32 = 4000;
    let config = ProptestConfig {
        cases: TRIALS,
        // A fixed seed: every run checks the same cases, and a failure reproduces as it is.
        rng_seed: RngSeed::Fixed(0x005e_ed0f_be27),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let invalid = AtomicU32::new(0);
    let outcome = TestRunner::new(config).run(&edited_example(examples()), |files| {
        if !check(&files) {
            invalid.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    let invalid = invalid.into_inner();
    assert!(
        invalid > TRIALS / 4,
        "the edits should break most configs; only {invalid} did"
    );
}
