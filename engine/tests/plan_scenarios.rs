//! Planner scenarios as data: every folder of `testdata/plan/` holds a config, the state, what
//! refresh observed and the options, and beside them the expected plan as insta snapshots
//! (`text.snap`, `json.snap`). `testdata/plan/README.md` describes the files.
//!
//! Accept a reviewed change with `INSTA_UPDATE=always cargo test -p berth-engine --test
//! plan_scenarios`, then read the diff of the snapshots.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use berth::config::VarInputs;
use berth::launch;
use berth::plan::{
    HostObservation, Observations, ObservedInstance, Operation, Plan, PlanOptions, StateView, plan,
    render,
};
use berth::workspace::Workspace;
use berth_providers::{Liveness, ProbeOutcome};
use berth_state::{Intent, Meta, ResourceKind, ResourceRecord, ResourceStatus, Selection};
use serde::Deserialize;
use serde_json::Value;

/// The lineage of every scenario's state.
const LINEAGE: &str = "5ca1ab1e5ca1ab1e5ca1ab1e5ca1ab1e";
/// The HMAC key of every scenario's state.
const HMAC_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
/// When every record was written.
const UPDATED_AT: u64 = 1_700_000_000;

/// `state.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    #[serde(default = "one")]
    serial: u64,
    #[serde(default)]
    records: Vec<RecordSpec>,
    #[serde(default)]
    intents: Vec<Intent>,
    #[serde(default)]
    selections: Vec<Selection>,
}

fn one() -> u64 {
    1
}

/// One state record. `"applied": "config"` takes the fingerprint and attributes from what the
/// config renders for the address now; `fingerprint` and `attributes` beside it override that
/// (attributes key by key, `null` removes a key).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSpec {
    address: String,
    #[serde(default)]
    applied: Option<String>,
    #[serde(default)]
    status: Option<ResourceStatus>,
    #[serde(default)]
    fingerprint: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
}

/// One host in `observed.json`: unreachable, or the instances found there by address.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum HostSpec {
    Unreachable { unreachable: String },
    Reached(BTreeMap<String, InstanceSpec>),
}

/// One instance found on a host. `fingerprint` may be `"=config"` (the launch the config wants
/// now) or `"=state"` (the recorded one); `owner` defaults to this state's lineage and `port`
/// to the recorded or wanted port.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceSpec {
    fingerprint: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default = "running")]
    liveness: Liveness,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    probe: Option<ProbeSpec>,
    /// The digest of what it runs (a container's image id).
    #[serde(default)]
    pinned: Option<String>,
    /// How its runtime says it stands, when it says more than running or exited.
    #[serde(default)]
    state: Option<String>,
}

fn running() -> Liveness {
    Liveness::Running
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum ProbeSpec {
    Ready,
    Loading(String),
    Down(String),
}

/// `options.json`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptionsFile {
    #[serde(default)]
    destroy: bool,
    #[serde(default)]
    targets: Vec<berth_state::Target>,
    #[serde(default)]
    replace: Vec<berth_state::Target>,
    #[serde(default = "yes")]
    refresh: bool,
}

fn yes() -> bool {
    true
}

impl Default for OptionsFile {
    fn default() -> Self {
        OptionsFile {
            destroy: false,
            targets: Vec::new(),
            replace: Vec::new(),
            refresh: true,
        }
    }
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> T {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => T::default(),
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

/// The planner's inputs for one case folder, built the way `berth plan` builds them: the
/// workspace placed with the state's earlier placements, the state view, and (with refresh)
/// one observation per host that refresh would visit.
fn inputs(case: &Path) -> (Workspace, StateView, Option<Observations>, PlanOptions) {
    let state_file: StateFile = read_json(&case.join("state.json"));
    let options: OptionsFile = read_json(&case.join("options.json"));
    let key = hex::decode(HMAC_KEY).unwrap();

    // Placement keeps earlier placements, so it needs the records' hosts before the config
    // is rendered; the records' contents come after.
    let mut view = StateView {
        meta: Meta {
            lineage: LINEAGE.into(),
            serial: state_file.serial,
            format_version: 1,
            hmac_key: HMAC_KEY.into(),
        },
        records: BTreeMap::new(),
        intents: state_file.intents,
        selections: state_file.selections,
    };
    for spec in &state_file.records {
        let (kind, host) = kind_and_host(&spec.address);
        let model = spec
            .address
            .strip_prefix("model.")
            .map(|m| m.split('@').next().unwrap());
        let address: berth_state::Address = spec.address.parse().unwrap();
        view.records.insert(
            address.clone(),
            ResourceRecord {
                address,
                kind,
                host,
                status: ResourceStatus::Ready,
                fingerprint: None,
                attributes: model
                    .map(|m| BTreeMap::from([("model".to_string(), Value::from(m))]))
                    .unwrap_or_default(),
                updated_at: UPDATED_AT,
            },
        );
    }
    let ws = Workspace::open(case, &VarInputs::default(), &view.previous())
        .unwrap_or_else(|e| panic!("{}: the config does not load: {e:?}", case.display()));
    let wanted: BTreeMap<String, launch::Rendered> = ws
        .placements
        .iter()
        .filter(|p| p.active)
        .map(|p| launch::render(&ws.config, p).unwrap())
        .map(|r| (r.address.to_string(), r))
        .collect();

    for spec in state_file.records {
        let rec = view.records.get_mut(spec.address.as_str()).unwrap();
        if let Some(applied) = &spec.applied {
            assert_eq!(
                applied, "config",
                "{}: applied must be \"config\"",
                spec.address
            );
            let r = wanted.get(&spec.address).unwrap_or_else(|| {
                panic!(
                    "{}: applied = config, but the config does not place it",
                    spec.address
                )
            });
            rec.fingerprint = Some(r.fingerprint(&key));
            rec.attributes = r.attributes();
        }
        if let Some(status) = spec.status {
            rec.status = status;
        }
        if spec.fingerprint.is_some() {
            rec.fingerprint = spec.fingerprint;
        }
        for (k, v) in spec.attributes {
            if v.is_null() {
                rec.attributes.remove(&k);
            } else {
                rec.attributes.insert(k, v);
            }
        }
    }

    let observed = options.refresh.then(|| {
        let specs: BTreeMap<String, HostSpec> = read_json(&case.join("observed.json"));
        // The hosts refresh visits: those of the active placements and of the records, while
        // the config still has them enabled.
        let mut visited: BTreeSet<String> = ws
            .placements
            .iter()
            .filter(|p| p.active)
            .map(|p| p.host.clone())
            .collect();
        visited.extend(view.records.values().map(|r| r.host.clone()));
        visited.retain(|h| ws.config.host(h).is_some_and(|h| h.enabled));
        for host in specs.keys() {
            assert!(
                visited.contains(host),
                "observed.json names host {host}, which refresh would not visit"
            );
        }
        let mut specs = specs;
        let hosts = visited
            .into_iter()
            .map(|host| {
                let o = match specs.remove(&host) {
                    Some(HostSpec::Unreachable { unreachable }) => {
                        HostObservation::Unreachable(unreachable)
                    }
                    Some(HostSpec::Reached(found)) => HostObservation::Reached(
                        found
                            .into_iter()
                            .map(|(address, i)| {
                                let instance = observed_instance(&address, i, &wanted, &view, &key);
                                (address, instance)
                            })
                            .collect(),
                    ),
                    None => HostObservation::Reached(BTreeMap::new()),
                };
                (host, o)
            })
            .collect();
        // What the wanted launches need on their hosts, by address (prerequisites.json).
        let prerequisites: BTreeMap<String, berth_providers::Prerequisite> =
            if case.join("prerequisites.json").exists() {
                read_json(&case.join("prerequisites.json"))
            } else {
                BTreeMap::new()
            };
        Observations {
            hosts,
            warnings: Vec::new(),
            prerequisites,
        }
    });

    let options = PlanOptions {
        operation: if options.destroy {
            Operation::Destroy
        } else {
            Operation::Apply
        },
        targets: options.targets,
        replace: options.replace,
    };
    (ws, view, observed, options)
}

fn kind_and_host(address: &str) -> (ResourceKind, String) {
    let kind = match address.split('.').next() {
        Some("model") => ResourceKind::Model,
        Some("backend") => ResourceKind::Backend,
        Some("host") => ResourceKind::Host,
        _ => panic!("{address}: not a resource address"),
    };
    let host = match address.rsplit_once('@') {
        Some((_, host)) => host.to_string(),
        None => address.trim_start_matches("host.").to_string(),
    };
    (kind, host)
}

fn observed_instance(
    address: &str,
    spec: InstanceSpec,
    wanted: &BTreeMap<String, launch::Rendered>,
    view: &StateView,
    key: &[u8],
) -> ObservedInstance {
    let record = view.records.get(address);
    let fingerprint = match spec.fingerprint.as_str() {
        "=config" => wanted
            .get(address)
            .unwrap_or_else(|| panic!("{address}: =config, but the config does not place it"))
            .fingerprint(key),
        "=state" => record
            .and_then(|r| r.fingerprint.clone())
            .unwrap_or_else(|| panic!("{address}: =state, but the state has no fingerprint")),
        literal => literal.to_string(),
    };
    let port = spec
        .port
        .or_else(|| wanted.get(address).map(|r| r.port))
        .or_else(|| {
            record
                .and_then(|r| r.attributes.get("port"))
                .and_then(Value::as_u64)
                .and_then(|p| u16::try_from(p).ok())
        })
        .unwrap_or_else(|| panic!("{address}: give the port it listens on"));
    ObservedInstance {
        fingerprint,
        owner: spec.owner.unwrap_or_else(|| LINEAGE.to_string()),
        liveness: spec.liveness,
        port,
        probe: spec.probe.map(|p| match p {
            ProbeSpec::Ready => ProbeOutcome::Ready,
            ProbeSpec::Loading(s) => ProbeOutcome::Loading(s),
            ProbeSpec::Down(s) => ProbeOutcome::Down(s),
        }),
        pinned: spec.pinned,
        state: spec.state,
    }
}

fn plan_of(case: &Path) -> Plan {
    let (ws, view, observed, options) = inputs(case);
    let mut plan = plan(
        &ws,
        &view,
        observed.as_ref(),
        &options,
        "scenario-config-hash",
    )
    .unwrap_or_else(|e| panic!("{}: the planner failed: {e:?}", case.display()));
    // Snapshots outlive version bumps.
    plan.berth_version = "(version)".into();
    plan
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/plan");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    cases
}

#[test]
fn every_scenario_plans_as_its_snapshots_say() {
    let cases = cases();
    for case in &cases {
        let plan = plan_of(case);
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        insta::with_settings!({
            snapshot_path => case.clone(),
            prepend_module_to_snapshot => false,
            input_file => case.join("main.hcl"),
            description => name,
            omit_expression => true,
        }, {
            insta::assert_snapshot!("text", render::text(&plan, render::Style::default()));
            insta::assert_json_snapshot!("json", plan);
        });
    }
    // The list in testdata/plan/README.md names what they cover.
    assert!(cases.len() >= 20, "only {} scenarios", cases.len());
}
