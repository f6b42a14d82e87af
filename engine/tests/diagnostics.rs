//! Scenario tests of `berth validate`'s diagnostics. Every folder in `testdata/invalid/` is a
//! config with one kind of mistake; the part of its name before `__` is the code berth must
//! report (`unknown_key__host` -> `berth::config::unknown_key`), and `expected.snap` beside the
//! input holds the narrated diagnostics (line, column, label, help).

use std::path::{Path, PathBuf};

use berth::config::{Findings, Sources, VarInputs};
use berth::error::Error;
use berth::placement::Previous;
use berth::workspace::Workspace;
use miette::NarratableReportHandler;

fn cases(dir: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("testdata")
        .join(dir);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

fn narrate(findings: &Findings, sources: &Sources, case: &Path) -> String {
    let mut out = String::new();
    for finding in findings.iter() {
        NarratableReportHandler::new()
            .render_report(&mut out, &finding.render(sources))
            .unwrap();
    }
    // File names are shown relative to where berth runs; keep snapshots independent of it.
    let prefix = format!("{}/", case.display());
    out.replace(&prefix, "")
}

#[test]
fn every_invalid_config_reports_its_code_with_the_right_span() {
    let cases = cases("invalid");
    assert!(
        cases.len() >= 30,
        "expected at least 30 scenarios, found {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let code = format!("berth::config::{}", name.split("__").next().unwrap());
        let invalid = match Workspace::open(case, &VarInputs::default(), &Previous::default()) {
            Err(Error::InvalidConfig(invalid)) => invalid,
            Err(other) => panic!("{name}: expected config findings, got {other}"),
            Ok(_) => panic!("{name}: the config was accepted"),
        };
        let codes: Vec<&str> = invalid.findings.iter().map(|f| f.code.as_str()).collect();
        if !codes.contains(&code.as_str()) {
            failures.push(format!("{name}: expected {code}, got {codes:?}"));
        }
        for f in invalid.findings.iter() {
            assert!(
                f.help.is_some(),
                "{name}: finding without a way forward: {}",
                f.message
            );
        }
        let rendered = narrate(&invalid.findings, &invalid.sources, case);
        insta::with_settings!({
            snapshot_path => case,
            prepend_module_to_snapshot => false,
            omit_expression => true,
            description => name.clone(),
        }, {
            insta::assert_snapshot!("expected", rendered);
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn all_findings_of_all_files_come_in_one_run() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testdata/invalid/unknown_key__with_more_across_files");
    let Err(Error::InvalidConfig(invalid)) =
        Workspace::open(&case, &VarInputs::default(), &Previous::default())
    else {
        panic!("config accepted");
    };
    let files: std::collections::BTreeSet<String> = invalid
        .findings
        .iter()
        .map(|f| {
            invalid
                .sources
                .get(f.primary.as_ref().unwrap().0.file)
                .name
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        ["backends.hcl", "hosts.hcl", "models.hcl"]
    );
    assert_eq!(invalid.findings.error_count(), 4, "{:#?}", invalid.findings);
}

#[test]
fn the_examples_are_valid() {
    for case in cases("../examples") {
        match Workspace::open(&case, &VarInputs::default(), &Previous::default()) {
            Ok(ws) => assert!(
                ws.warnings.is_empty(),
                "{}: warnings {:?}",
                case.display(),
                ws.warnings
            ),
            Err(e) => panic!("{}: {e}", case.display()),
        }
    }
}
