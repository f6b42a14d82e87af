//! The executor facing faults during a step, driven through the library as `berth apply`
//! drives it: a service that ignores the first stop (TERM) and must be killed, and a
//! connection that drops after the host carried out a start. Real processes on this machine;
//! only the dropped connection goes through a fake transport.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use berth::apply::{self, ApplyEvent, ApplyOptions, ApplyReport, Outcome, Subscriber};
use berth::config::VarInputs;
use berth::connections::Connections;
use berth::plan::{Action, Cause, Operation, Plan, PlanOptions, StateView, plan};
use berth::refresh::refresh;
use berth::workspace::Workspace;
use berth_providers::transport::{BoxStream, Command, Output};
use berth_providers::{
    Liveness, LocalTransport, ProcessRuntime, ProviderError, Runtime, Transport,
};
use berth_state::{Meta, ResourceRecord, ResourceStatus};
use berth_test_support::{free_port, model_server};

const LINEAGE: &str = "fa017fa017fa017fa017fa017fa017fa";

/// A config with one stand-in model on this machine, its run_dir inside `dir`.
fn write_config(dir: &Path, port: u16, flags: &str) {
    let config = format!(
        r#"host "local" {{
  connection {{
    transport = "local"
  }}
  capabilities {{
    backends = ["cpu"]
  }}
  run_dir = "{run}"
}}

backend "cpu" {{}}

model "m" {{
  source   = "/srv/models/m.gguf"
  size_gib = 0.1
  runtime_defaults {{
    port = {port}
  }}
  launch {{
    start_cmd         = "{server} --port {{port}} --model {{model}} {flags}"
    probe_http        = "/v1/models"
    probe_timeout_sec = 30
    probe_interval_ms = 100
  }}
}}
"#,
        run = dir.join("run").display(),
        server = model_server().display(),
    );
    std::fs::write(dir.join("main.hcl"), config).unwrap();
}

fn empty_state() -> StateView {
    StateView {
        meta: Meta {
            lineage: LINEAGE.into(),
            serial: 1,
            format_version: 1,
            hmac_key: "00".repeat(32),
        },
        records: BTreeMap::new(),
        intents: Vec::new(),
        selections: Vec::new(),
    }
}

/// The records an apply writes, kept as the state writer would keep them.
#[derive(Default)]
struct Records(Mutex<BTreeMap<berth_state::Address, ResourceRecord>>);

impl Subscriber for Records {
    fn on_event(&self, event: &ApplyEvent) -> Result<(), String> {
        let mut records = self.0.lock().unwrap();
        match event {
            ApplyEvent::Record(r) => {
                records.insert(r.address.clone(), r.clone());
            }
            ApplyEvent::Forget { address } => {
                records.remove(address);
            }
            _ => {}
        }
        Ok(())
    }
}

/// Plans `dir` against `view` (refreshed through real connections) and applies the plan.
async fn plan_and_apply(
    dir: &Path,
    view: &mut StateView,
    conns: &Connections,
    options: &ApplyOptions,
) -> (Plan, ApplyReport) {
    let ws = Workspace::open(dir, &VarInputs::default(), &view.previous()).unwrap();
    let observed = refresh(&ws, view, &Connections::new(&ws.config)).await;
    let options_plan = PlanOptions {
        operation: Operation::Apply,
        targets: Vec::new(),
        replace: Vec::new(),
    };
    let the_plan = plan(&ws, view, Some(&observed), &options_plan, "test").unwrap();
    let records = Records(Mutex::new(view.records.clone()));
    let report = apply::execute(
        &ws,
        &the_plan,
        conns,
        &view.hmac_key(),
        &view.records,
        &[&records],
        options,
    )
    .await;
    view.records = records.0.into_inner().unwrap();
    (the_plan, report)
}

/// Stops whatever a test left running under `dir`'s run_dir.
struct Cleanup<'a>(&'a Path);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let run_dir = self.0.join("run").display().to_string();
        // Dropped inside the test's runtime, which cannot be blocked on: stop from a thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let t = LocalTransport::new("local");
                let _ = ProcessRuntime::new()
                    .stop(&t, &run_dir, "model.m@local", Duration::ZERO)
                    .await;
            });
        })
        .join();
    }
}

fn action_of(plan: &Plan, address: &str) -> (Action, Cause) {
    let r = plan
        .resources
        .iter()
        .find(|r| r.address == address)
        .unwrap();
    (r.action, r.cause)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_of_a_server_that_ignores_term_kills_it_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path());
    let port = free_port();
    let grace = Duration::from_secs(1);
    let options = ApplyOptions {
        stop_grace: grace,
        owner: LINEAGE.into(),
        ..ApplyOptions::default()
    };
    let conns = || {
        Connections::new(
            &Workspace::open(dir.path(), &VarInputs::default(), &Default::default())
                .unwrap()
                .config,
        )
    };
    let mut view = empty_state();

    write_config(dir.path(), port, "--ignore-term");
    let (_, report) = plan_and_apply(dir.path(), &mut view, &conns(), &options).await;
    assert!(report.succeeded(), "{report:?}");
    let run_dir = dir.path().join("run").display().to_string();
    let t = LocalTransport::new("local");
    let first = ProcessRuntime::new()
        .observe(&t, &run_dir, "model.m@local")
        .await
        .unwrap()
        .expect("the first instance is recorded on the host");
    assert_eq!(first.liveness, Liveness::Running);

    // Another flag changes the command: the running server must be replaced, and it shrugs
    // off SIGTERM.
    write_config(dir.path(), port, "--ignore-term --load-secs 0.1");
    let started = Instant::now();
    let (the_plan, report) = plan_and_apply(dir.path(), &mut view, &conns(), &options).await;
    assert_eq!(action_of(&the_plan, "model.m@local").0, Action::Replace);
    assert!(report.succeeded(), "the replace must finish: {report:?}");
    // A server that honours TERM stops within a few hundred milliseconds; this one lasted
    // the whole grace, so only the KILL after it ended the server.
    assert!(
        started.elapsed() >= grace,
        "the old server was given its grace before the KILL ({:?})",
        started.elapsed()
    );
    assert!(
        !berth_test_support::procs::alive(pid_of(&first.instance)),
        "the server that ignored TERM (pid {}) still runs",
        pid_of(&first.instance)
    );
    let second = ProcessRuntime::new()
        .observe(&t, &run_dir, "model.m@local")
        .await
        .unwrap()
        .expect("the new instance is recorded on the host");
    assert_eq!(second.liveness, Liveness::Running);
    assert_ne!(pid_of(&second.instance), pid_of(&first.instance));
}

/// A local host whose connection drops right after the host ran a script holding `marker`:
/// the script's effect is real, its answer never arrives, and the connection stays down.
/// A fake, because no real transport loses a connection at a chosen step on demand.
#[derive(Debug)]
struct DropsAfter {
    inner: LocalTransport,
    marker: &'static str,
    dropped: AtomicBool,
}

impl DropsAfter {
    fn lost(&self) -> ProviderError {
        ProviderError::Io {
            host: self.inner.host().to_string(),
            message: "the connection was lost".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        }
    }
}

#[async_trait]
impl Transport for DropsAfter {
    fn host(&self) -> &str {
        self.inner.host()
    }

    async fn exec(&self, cmd: Command) -> berth_providers::Result<Output> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(self.lost());
        }
        let hit = cmd.script.contains(self.marker);
        let out = self.inner.exec(cmd).await;
        if hit {
            self.dropped.store(true, Ordering::SeqCst);
            return Err(self.lost());
        }
        out
    }

    async fn connect_loopback(&self, port: u16) -> berth_providers::Result<BoxStream> {
        if self.dropped.load(Ordering::SeqCst) {
            return Err(self.lost());
        }
        self.inner.connect_loopback(port).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_lost_after_a_start_fails_the_step_and_the_next_plan_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = Cleanup(dir.path());
    let port = free_port();
    write_config(dir.path(), port, "");
    let options = ApplyOptions {
        stop_grace: Duration::from_secs(1),
        owner: LINEAGE.into(),
        ..ApplyOptions::default()
    };
    let ws = Workspace::open(dir.path(), &VarInputs::default(), &Default::default()).unwrap();
    let faulty = Arc::new(DropsAfter {
        inner: LocalTransport::new("local"),
        marker: "# berth: process start",
        dropped: AtomicBool::new(false),
    });
    let conns = Connections::new(&ws.config).with_transport("local", faulty);
    let mut view = empty_state();

    let (_, report) = plan_and_apply(dir.path(), &mut view, &conns, &options).await;
    let result = report
        .results
        .iter()
        .find(|r| r.address == "model.m@local")
        .unwrap();
    let Outcome::Failed(error) = &result.outcome else {
        panic!("the start whose answer was lost must fail: {result:?}");
    };
    assert_eq!(error.step, apply::Step::Start);
    let reason = &error.message;
    assert!(
        reason.contains("local") && reason.contains("connection was lost"),
        "the failure names the host and what happened: {reason}"
    );
    let record = &view.records["model.m@local"];
    assert!(
        matches!(&record.status, ResourceStatus::Failed { step, .. } if step == "start"),
        "the state records the failure: {record:?}"
    );

    // The host did start the server. With the connection back, the next plan sees it and
    // replaces the failed resource (stop, start), so one server runs on the port, not two.
    let healthy = Connections::new(&ws.config);
    let (the_plan, report) = plan_and_apply(dir.path(), &mut view, &healthy, &options).await;
    assert_eq!(
        action_of(&the_plan, "model.m@local"),
        (Action::Replace, Cause::Failed)
    );
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(view.records["model.m@local"].status, ResourceStatus::Ready);
}

/// The process id an instance of the process runtime records.
fn pid_of(instance: &berth_providers::Instance) -> u32 {
    berth_providers::ProcessHandle::of(&instance.handle)
        .expect("a process instance")
        .pid
}
