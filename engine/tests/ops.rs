//! The engine as a library: `ops::plan`, `ops::apply` and `ops::drift` called from inside a
//! tokio runtime, as a daemon or a test would, against a real local config running the
//! model-server stand-in. The events the apply emits and the results it returns are what a
//! caller builds on; the stop token is the only way to stop it.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use berth::apply::{ApplyEvent, Counts, Outcome, Step, Subscriber};
use berth::config::VarInputs;
use berth::ops::{
    self, ApplyRequest, DestroyRequest, DriftRequest, DriftStatus, Inputs, PlanRequest, PlanScope,
    PlanSource, Review, Stop, StopLevel,
};
use berth::plan::Action;
use berth_test_support::model_server;
use common::{Fleet, Model, addr, free_ports};

/// Every event of a run, in order.
#[derive(Default)]
struct Recorder(Mutex<Vec<ApplyEvent>>);

impl Recorder {
    fn events(&self) -> Vec<ApplyEvent> {
        self.0.lock().unwrap().clone()
    }
}

impl Subscriber for Recorder {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String> {
        self.0.lock().unwrap().push(event.clone());
        Ok(())
    }
}

/// A review that is never asked: the requests are approved.
struct Approved;
impl Review for Approved {}

/// A fleet whose config names the stand-in by its full path, so the library (not the `berth`
/// binary with its PATH) can start it.
fn fleet(models: &[Model]) -> Fleet {
    let fleet = Fleet::new(models, 4);
    let server = model_server().display().to_string();
    for file in ["main.hcl", "models.hcl"] {
        let path = fleet.dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("berth-model-server", &server)).unwrap();
    }
    fleet
}

fn inputs(fleet: &Fleet) -> Inputs {
    Inputs {
        dir: fleet.dir(),
        vars: VarInputs::default(),
        lock: Default::default(),
        notices: Default::default(),
    }
}

fn apply_request(fleet: &Fleet) -> ApplyRequest {
    ApplyRequest {
        inputs: inputs(fleet),
        source: PlanSource::Fresh(PlanScope::default()),
        parallelism: None,
        allow_mass_destroy: false,
        auto_approve: true,
    }
}

async fn destroy(fleet: &Fleet) {
    let req = DestroyRequest {
        inputs: inputs(fleet),
        auto_approve: true,
        ..Default::default()
    };
    let done = ops::destroy(&req, &Approved, &[], &Stop::new())
        .await
        .unwrap();
    assert!(done.report.is_some_and(|r| r.succeeded()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_apply_and_drift_run_as_a_library_and_report_through_events() {
    let ports = free_ports(2);
    let fleet = fleet(&[
        Model::new("alpha", ports[0], "--load-secs 0.2").probe_interval(100),
        Model::new("beta", ports[1], "--load-secs 0.2")
            .probe_interval(100)
            .depends_on("alpha"),
    ]);
    let stop = Stop::new();

    let plan = ops::plan(
        &PlanRequest {
            inputs: inputs(&fleet),
            ..Default::default()
        },
        &stop,
    )
    .await
    .unwrap();
    let creates: Vec<&str> = plan
        .resources
        .iter()
        .filter(|r| r.action == Action::Create)
        .map(|r| r.address.as_str())
        .collect();
    assert_eq!(creates, [addr("alpha"), addr("beta")]);

    let recorder = Recorder::default();
    let applied = ops::apply(&apply_request(&fleet), &Approved, &[&recorder], &stop)
        .await
        .unwrap();
    let report = applied.report.expect("the plan had changes");
    assert!(report.succeeded(), "{report:?}");
    let events = recorder.events();
    assert!(
        matches!(
            events.first(),
            Some(ApplyEvent::RunStarted { resources: 3, .. })
        ),
        "the run starts first, with its three actions: {events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(ApplyEvent::RunFinished {
                counts: Counts {
                    done: 3,
                    failed: 0,
                    skipped: 0,
                    cancelled: 0
                },
                interrupted: false,
                ..
            })
        ),
        "the run finishes last, with its counts: {events:?}"
    );
    for address in [addr("alpha"), addr("beta"), "backend.cpu@local".to_string()] {
        let started = events
            .iter()
            .position(|e| matches!(e, ApplyEvent::Started { address: a, .. } if *a == address));
        let finished = events.iter().position(|e| {
            matches!(e, ApplyEvent::Finished { address: a, outcome: Outcome::Done { .. }, .. } if *a == address)
        });
        assert!(
            matches!((started, finished), (Some(s), Some(f)) if s < f),
            "{address} started, then finished: {events:?}"
        );
    }
    assert_eq!(fleet.stand_ins().len(), 2, "both servers run");

    let drift = ops::drift(
        &DriftRequest {
            inputs: inputs(&fleet),
            ..DriftRequest::default()
        },
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(drift.status, DriftStatus::Clean, "{drift:?}");

    fleet.stand_in(ports[1]).kill9();
    let drift = ops::drift(
        &DriftRequest {
            inputs: inputs(&fleet),
            ..DriftRequest::default()
        },
        &stop,
    )
    .await
    .unwrap();
    assert_eq!(drift.status, DriftStatus::Drift, "{drift:?}");
    assert!(
        drift.drift.iter().any(|d| d.address == addr("beta")),
        "{drift:?}"
    );

    destroy(&fleet).await;
    assert!(fleet.stand_ins().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_mid_gate_ends_the_gate_and_reports_the_cancel_and_the_cancelled_resource() {
    let ports = free_ports(2);
    let fleet = fleet(&[
        Model::new("slow", ports[0], "--load-secs 60").probe_interval(100),
        Model::new("after", ports[1], "--load-secs 0.2")
            .probe_interval(100)
            .depends_on("slow"),
    ]);
    let stop = Stop::new();
    let recorder = Recorder::default();
    let req = apply_request(&fleet);
    let subscribers: [&dyn Subscriber; 1] = [&recorder];
    let apply = ops::apply(&req, &Approved, &subscribers, &stop);
    let trigger = async {
        // Into the gate of the slow model, then stop twice, as two Ctrl-C would.
        while !recorder.events().iter().any(|e| {
            matches!(e, ApplyEvent::Phase { address, phase: berth::apply::Phase::Probing(_) } if *address == addr("slow"))
        }) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(stop.escalate("test: first stop"), StopLevel::Drain);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(stop.escalate("test: second stop"), StopLevel::Cancel);
    };
    let started = std::time::Instant::now();
    let (applied, ()) = tokio::join!(apply, trigger);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the gate of a 60 s load was cancelled"
    );
    let report = applied.unwrap().report.expect("the plan had changes");
    assert!(report.interrupted);
    let events = recorder.events();
    let began: Vec<(StopLevel, String)> = events
        .iter()
        .filter_map(|e| match e {
            ApplyEvent::CancelBegan { level, reason, .. } => Some((*level, reason.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        began,
        [
            (StopLevel::Drain, "test: first stop".to_string()),
            (StopLevel::Cancel, "test: second stop".to_string())
        ]
    );
    let outcome = |address: String| {
        report
            .results
            .iter()
            .find(|r| r.address == address)
            .map(|r| r.outcome.clone())
    };
    assert!(
        matches!(outcome(addr("slow")), Some(Outcome::Failed(e)) if e.step == Step::Probe && e.cancelled),
        "{report:?}"
    );
    assert!(
        matches!(outcome(addr("after")), Some(Outcome::Skipped { .. })),
        "what depends on the cancelled model never starts: {report:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, ApplyEvent::Finished { address, outcome: Outcome::Failed(e), .. } if *address == addr("slow") && e.cancelled)),
        "the cancelled resource is reported as it ends: {events:?}"
    );
    assert!(
        matches!(
            events.last(),
            Some(ApplyEvent::RunFinished {
                interrupted: true,
                counts: Counts {
                    done: 1,
                    failed: 1,
                    skipped: 1,
                    cancelled: 0
                },
                ..
            })
        ),
        "{events:?}"
    );

    destroy(&fleet).await;
    assert!(fleet.stand_ins().is_empty());
}

/// Whether a process whose command line contains `needle` runs.
fn runs(needle: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .map(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
            .unwrap_or(false)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_stops_a_running_command_on_the_host_instead_of_waiting_for_it() {
    let ports = free_ports(1);
    let fleet = fleet(&[Model::new("m", ports[0], "--load-secs 0.2").probe_interval(100)]);
    // A verify_cmd that would run for a minute: the cancel must end it, not wait for it.
    let marker = format!("sleep 59.{}", ports[0]);
    let main = fleet.dir().join("main.hcl");
    let text = std::fs::read_to_string(&main).unwrap();
    let verify = text.lines().find(|l| l.contains("verify_cmd")).unwrap();
    std::fs::write(
        &main,
        text.replace(verify, &format!("  verify_cmd = \"{marker}; true\"")),
    )
    .unwrap();

    let stop = Stop::new();
    let recorder = Recorder::default();
    let subscribers: [&dyn Subscriber; 1] = [&recorder];
    let req = apply_request(&fleet);
    let apply = ops::apply(&req, &Approved, &subscribers, &stop);
    let trigger = async {
        while !runs(&marker) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel("test: cancel");
    };
    let started = std::time::Instant::now();
    let (applied, ()) = tokio::join!(apply, trigger);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the running verify_cmd was waited for: {:?}",
        started.elapsed()
    );
    let report = applied.unwrap().report.expect("the plan had changes");
    let backend = report
        .results
        .iter()
        .find(|r| r.address == "backend.cpu@local")
        .unwrap();
    assert!(
        matches!(&backend.outcome, Outcome::Failed(e) if e.step == Step::Verify && e.cancelled),
        "{report:?}"
    );
    assert!(!runs(&marker), "the command was killed on the host");
    assert!(
        fleet.stand_ins().is_empty(),
        "nothing started after the cancel"
    );
}
