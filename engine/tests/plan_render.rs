//! Snapshots of the text, JSON and markdown renderings of one plan that holds every kind of
//! action: create, replace (config change, failure), update, destroy, drift, reuse and adopt.

use std::collections::BTreeMap;
use std::path::Path;

use berth::config::{VarInputs, load_texts};
use berth::launch;
use berth::plan::{
    HostObservation, Observations, ObservedInstance, Operation, PlanOptions, StateView, plan,
    render,
};
use berth::workspace::Workspace;
use berth_providers::{Liveness, ProbeOutcome};
use berth_state::{Meta, ResourceKind, ResourceRecord, ResourceStatus};

const CONFIG: &str = r#"
variable "api_key" {
  default   = "s3cret-key"
  sensitive = true
}
host "gpu-a" {
  connection {
    transport = "local"
  }
  capabilities {
    backends = ["cuda"]
  }
  run_dir = "/srv/berth"
}
backend "cuda" {
  verify_cmd = "nvidia-smi -L"
  args       = ["--n-gpu-layers", "999"]
}
model "fresh" {
  source = "/m/fresh.gguf"
  runtime_defaults {
    port = 8001
  }
  launch {
    start_cmd = "llama-server -m {source} --port {port} {backend_args}"
  }
}
model "changed" {
  source = "/m/changed.gguf"
  runtime_defaults {
    port = 8002
  }
  launch {
    start_cmd = "llama-server -m {source} --port {port} --ctx-size 8192 {backend_args}"
  }
  env = { LLAMA_API_KEY = var.api_key }
}
model "broken" {
  source = "/m/broken.gguf"
  runtime_defaults {
    port = 8003
  }
  launch {
    start_cmd = "llama-server -m {source} --port {port}"
  }
}
model "probed" {
  source = "/m/probed.gguf"
  runtime_defaults {
    port = 8004
  }
  launch {
    start_cmd         = "llama-server -m {source} --port {port}"
    probe_timeout_sec = 600
  }
}
model "crashed" {
  source = "/m/crashed.gguf"
  runtime_defaults {
    port = 8005
  }
  launch {
    start_cmd = "llama-server -m {source} --port {port}"
  }
}
model "loading" {
  source = "/m/loading.gguf"
  runtime_defaults {
    port = 8006
  }
  launch {
    start_cmd = "llama-server -m {source} --port {port}"
  }
}
"#;

const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn record(ws: &Workspace, model: &str, tweak: impl FnOnce(&mut ResourceRecord)) -> ResourceRecord {
    let p = ws.placements_of(model).next().unwrap();
    let r = launch::render(&ws.config, p).unwrap();
    let mut rec = ResourceRecord {
        address: r.address.clone(),
        kind: ResourceKind::Model,
        host: r.host.clone(),
        status: ResourceStatus::Ready,
        fingerprint: Some(r.fingerprint(&hex::decode(KEY).unwrap())),
        attributes: r.attributes(),
        updated_at: 1_700_000_000,
    };
    tweak(&mut rec);
    rec
}

fn the_plan() -> berth::plan::Plan {
    let loaded = load_texts(
        Path::new("/cfg"),
        &[("main.hcl", CONFIG)],
        &VarInputs::default(),
    )
    .unwrap();
    let ws = Workspace::from_loaded(loaded, &Default::default()).unwrap();
    let mut records = BTreeMap::new();
    let mut add = |r: ResourceRecord| {
        records.insert(r.address.clone(), r);
    };
    add(record(&ws, "changed", |r| {
        r.fingerprint = Some("sha256:old".into());
        r.attributes.insert(
            "command".into(),
            "llama-server -m /m/changed.gguf --port 8002 --ctx-size 4096 --n-gpu-layers 999".into(),
        );
    }));
    add(record(&ws, "broken", |r| {
        r.status = ResourceStatus::Failed {
            step: "probe".into(),
            reason: "the service exited before it was ready".into(),
        }
    }));
    add(record(&ws, "probed", |r| {
        r.attributes.remove("probe_timeout_sec");
    }));
    add(record(&ws, "crashed", |_| {}));
    add(record(&ws, "loading", |_| {}));
    add(ResourceRecord {
        address: "model.retired@gpu-a".parse().unwrap(),
        kind: ResourceKind::Model,
        host: "gpu-a".into(),
        status: ResourceStatus::Ready,
        fingerprint: Some("sha256:retired".into()),
        attributes: BTreeMap::from([
            ("model".into(), "retired".into()),
            ("port".into(), 8009.into()),
            (
                "command".into(),
                "llama-server -m /m/retired.gguf --port 8009".into(),
            ),
        ]),
        updated_at: 1_700_000_000,
    });
    let fp = |m: &str| {
        records
            .get(format!("model.{m}@gpu-a").as_str())
            .and_then(|r| r.fingerprint.clone())
            .unwrap()
    };
    let found = BTreeMap::from([
        (
            "model.changed@gpu-a".to_string(),
            ObservedInstance {
                owner: String::new(),
                fingerprint: "sha256:old".into(),
                liveness: Liveness::Running,
                port: 8002,
                probe: Some(ProbeOutcome::Ready),
                pinned: None,
                state: None,
            },
        ),
        (
            "model.probed@gpu-a".to_string(),
            ObservedInstance {
                owner: String::new(),
                fingerprint: fp("probed"),
                liveness: Liveness::Running,
                port: 8004,
                probe: Some(ProbeOutcome::Ready),
                pinned: None,
                state: None,
            },
        ),
        (
            "model.crashed@gpu-a".to_string(),
            ObservedInstance {
                owner: String::new(),
                fingerprint: fp("crashed"),
                liveness: Liveness::Exited,
                port: 8005,
                probe: None,
                pinned: None,
                state: None,
            },
        ),
        (
            "model.loading@gpu-a".to_string(),
            ObservedInstance {
                owner: String::new(),
                fingerprint: fp("loading"),
                liveness: Liveness::Running,
                port: 8006,
                probe: Some(ProbeOutcome::Loading("503".into())),
                pinned: None,
                state: None,
            },
        ),
        (
            "model.retired@gpu-a".to_string(),
            ObservedInstance {
                owner: String::new(),
                fingerprint: "sha256:retired".into(),
                liveness: Liveness::Running,
                port: 8009,
                probe: None,
                pinned: None,
                state: None,
            },
        ),
        (
            "model.stray@gpu-a".to_string(),
            ObservedInstance {
                owner: String::new(),
                fingerprint: "sha256:stray".into(),
                liveness: Liveness::Running,
                port: 8010,
                probe: None,
                pinned: None,
                state: None,
            },
        ),
    ]);
    let observed = Observations {
        hosts: BTreeMap::from([("gpu-a".to_string(), HostObservation::Reached(found))]),
        warnings: Vec::new(),
        prerequisites: BTreeMap::new(),
    };
    let state = StateView {
        meta: Meta {
            lineage: "0123456789abcdef0123456789abcdef".into(),
            serial: 7,
            format_version: 1,
            hmac_key: KEY.into(),
        },
        records,
        intents: Vec::new(),
        selections: Vec::new(),
    };
    let options = PlanOptions {
        operation: Operation::Apply,
        targets: Vec::new(),
        replace: Vec::new(),
    };
    plan(&ws, &state, Some(&observed), &options, "sha256:config").unwrap()
}

#[test]
fn text_plan() {
    let text = render::text(&the_plan(), render::Style { color: false });
    assert!(!text.contains("s3cret-key"));
    insta::assert_snapshot!(text);
}

#[test]
fn json_plan() {
    let plan = the_plan();
    let json = render::json(&plan);
    assert!(!json.contains("s3cret-key"));
    let back: berth::plan::Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan, "the JSON form reads back to the same plan");
    insta::assert_snapshot!(json.replace(env!("CARGO_PKG_VERSION"), "VERSION"));
}

#[test]
fn markdown_plan() {
    let md = render::markdown(&the_plan());
    assert!(!md.contains("s3cret-key"));
    insta::assert_snapshot!(md);
}

#[test]
fn every_action_appears_once_where_expected() {
    let plan = the_plan();
    let action = |a: &str| {
        plan.resources
            .iter()
            .find(|r| r.address == a)
            .map(|r| r.action.as_str())
            .unwrap_or("absent")
    };
    assert_eq!(action("model.fresh@gpu-a"), "create");
    assert_eq!(action("model.changed@gpu-a"), "replace");
    assert_eq!(action("model.broken@gpu-a"), "replace");
    assert_eq!(action("model.probed@gpu-a"), "update");
    assert_eq!(action("model.crashed@gpu-a"), "replace");
    assert_eq!(action("model.loading@gpu-a"), "reuse");
    assert_eq!(action("model.retired@gpu-a"), "destroy");
    assert_eq!(action("model.stray@gpu-a"), "destroy");
    assert_eq!(action("backend.cuda@gpu-a"), "verify");
    let drifted: Vec<&str> = plan.drift.iter().map(|d| d.address.as_str()).collect();
    // The stray instance is drift too: it runs on the host with this state's marks and is
    // destroyed, and `drift` must say so.
    assert_eq!(
        drifted,
        [
            "model.crashed@gpu-a",
            "model.loading@gpu-a",
            "model.stray@gpu-a"
        ]
    );
}
