//! The config size limits: inputs that once took minutes or gigabytes are refused with the
//! limit they pass, and the largest inputs inside the limits load. Timings are the bench's job
//! (`cargo bench -p berth-engine --bench config_limits`), not these tests'.

#[path = "../benches/common/oversized.rs"]
#[allow(dead_code)]
mod oversized;

use std::path::Path;
use std::time::Duration;

use berth::config::limits::{MAX_COMMAND_BYTES, MAX_FILE_BYTES, MAX_ITEMS, MAX_TOTAL_BYTES};
use berth::config::{Code, Findings, Level, VarInputs, load, load_texts};
use berth::placement::Previous;
use berth::workspace::Workspace;
use oversized::Files;

fn open(files: &Files) -> Result<Workspace, Findings> {
    let texts: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let loaded = load_texts(
        Path::new("/nonexistent/limits"),
        &texts,
        &VarInputs::default(),
    )
    .map_err(|invalid| invalid.findings)?;
    Workspace::from_loaded(loaded, &Previous::default()).map_err(|err| match err {
        berth::error::Error::InvalidConfig(invalid) => invalid.findings,
        other => panic!("unexpected error: {other}"),
    })
}

fn only_finding(findings: &Findings) -> &berth::config::Finding {
    assert_eq!(findings.len(), 1, "{findings:#?}");
    findings.iter().next().unwrap()
}

#[test]
fn object_with_100k_keys_is_refused_at_its_opening_brace() {
    let files = oversized::wide_object(100_000);
    let findings = open(&files).unwrap_err();
    let f = only_finding(&findings);
    assert_eq!(f.code, Code::TooLarge);
    assert_eq!(
        f.message,
        "this object holds 100,000 items, over the limit of 10,000 in one list, object or block"
    );
    let (span, _) = f.primary.as_ref().unwrap();
    assert_eq!(&files[0].1[span.start..span.end], "{");
    assert!(files[0].1[..span.start].ends_with("env = "));
}

#[test]
fn object_at_the_item_limit_loads() {
    let ws = open(&oversized::wide_object(MAX_ITEMS)).unwrap();
    assert_eq!(ws.config.models[0].env.len(), MAX_ITEMS);
}

#[test]
fn depends_on_with_200k_items_is_refused() {
    let findings = open(&oversized::long_depends_on(200_000, true)).unwrap_err();
    let f = only_finding(&findings);
    assert_eq!(f.code, Code::TooLarge);
    assert!(
        f.message.starts_with("this list holds 200,000 items"),
        "{}",
        f.message
    );
}

#[test]
fn depends_on_with_10k_undefined_models_names_each_one() {
    let findings = open(&oversized::long_depends_on(MAX_ITEMS, false)).unwrap_err();
    assert_eq!(findings.len(), MAX_ITEMS);
    assert!(findings.iter().all(|f| f.code == Code::UndefinedModel));
    let last = findings.iter().last().unwrap();
    assert_eq!(last.message, "model `x9999` is not defined");
}

#[test]
fn twenty_thousand_group_members_on_one_port_are_placed() {
    let ws = open(&oversized::shared_port(20_000, true)).unwrap();
    assert_eq!(ws.placements.len(), 20_000);
    assert_eq!(ws.placements.iter().filter(|p| p.active).count(), 1);
}

#[test]
fn models_on_one_port_outside_a_group_conflict_with_the_first() {
    let findings = open(&oversized::shared_port(2_000, false)).unwrap_err();
    assert_eq!(findings.len(), 1_999);
    assert!(
        findings
            .iter()
            .all(|f| f.code == Code::PortConflict && f.message.starts_with("models `m0` and "))
    );
}

/// A file of `bytes` bytes that is never read: sizes are checked before reading.
fn sparse(dir: &Path, name: &str, bytes: u64) {
    std::fs::File::create(dir.join(name))
        .unwrap()
        .set_len(bytes)
        .unwrap();
}

#[test]
fn file_over_10_mib_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    sparse(dir.path(), "big.hcl", 50 * 1024 * 1024);
    let findings = load(dir.path(), &VarInputs::default())
        .unwrap_err()
        .findings;
    let f = only_finding(&findings);
    assert_eq!(f.code, Code::TooLarge);
    assert!(
        f.message
            .ends_with("big.hcl is 50 MiB, over the limit of 10 MiB for one config file"),
        "{}",
        f.message
    );
    assert_eq!(MAX_FILE_BYTES, 10 * 1024 * 1024);
}

#[test]
fn config_over_32_mib_in_all_is_refused_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..4 {
        sparse(dir.path(), &format!("part-{i}.hcl"), 9 * 1024 * 1024);
    }
    let findings = load(dir.path(), &VarInputs::default())
        .unwrap_err()
        .findings;
    let f = only_finding(&findings);
    assert_eq!(f.code, Code::TooLarge);
    assert!(
        f.message.contains("config files in")
            && f.message
                .ends_with("are 36 MiB together, over the limit of 32 MiB for one config"),
        "{}",
        f.message
    );
    assert_eq!(MAX_TOTAL_BYTES, 32 * 1024 * 1024);
}

#[test]
fn file_just_under_10_mib_loads() {
    let files = oversized::fleet(45_000, MAX_FILE_BYTES as usize);
    let largest = files.iter().map(|(_, t)| t.len()).max().unwrap();
    assert!(
        largest > 9 * 1024 * 1024 && largest as u64 <= MAX_FILE_BYTES,
        "{largest}"
    );
    let ws = open(&files).unwrap();
    assert_eq!(ws.placements.len(), 45_000);
}

#[test]
fn start_cmd_over_128_kib_gets_a_warning_naming_model_and_host() {
    let ws = open(&oversized::long_start_cmd(200 * 1024)).unwrap();
    let f = only_finding(&ws.warnings);
    assert_eq!((f.code, f.level), (Code::TooLarge, Level::Warning));
    assert!(
        f.message.starts_with(
            "the start command of model `long` is 201 KiB on host `h0`, over the 128 KiB"
        ),
        "{}",
        f.message
    );
    let fits = open(&oversized::long_start_cmd(MAX_COMMAND_BYTES - 1024)).unwrap();
    assert!(fits.warnings.is_empty());
}

/// The start script carries the start command as an argument of `sh -c`; one over the OS limit
/// fails to spawn with E2BIG, and the step's error says so.
#[tokio::test]
async fn command_over_the_argument_limit_fails_with_the_os_error() {
    use berth_providers::{Command, LocalTransport, Transport};
    let transport = LocalTransport::new("local");
    let script = format!("true # {}", "x".repeat(200 * 1024));
    let err = transport
        .exec(Command::new(script, Duration::from_secs(10)))
        .await
        .unwrap_err();
    let text = berth::connections::error_text(&err);
    assert!(text.starts_with("local: "), "{text}");
    assert!(text.contains("Argument list too long"), "{text}");
    assert!(text.contains("128 KiB on Linux"), "{text}");
}
