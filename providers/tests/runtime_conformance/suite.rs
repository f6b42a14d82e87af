//! The conformance suite every [`berth_providers::Runtime`] passes on a host it reaches: start,
//! observe_all, observe, still_mine, stop, claim, logs, secrets only in mode-0600 files, and a
//! record on the host that cannot be read. A runtime proves itself by implementing [`Target`]
//! (the runtime, a transport to a host it runs on, and how a test looks at that host) and
//! instantiating [`runtime_conformance!`] with it. Every check goes through the transport or
//! the target, so the same cases hold for a local process and for a unit over SSH.

use std::any::Any;

use async_trait::async_trait;
use berth_providers::{Instance, LaunchSpec, Runtime, Transport};

/// One runtime on one host, as the suite drives it.
#[async_trait]
pub trait Target: Sized + Send + Sync + 'static {
    type Rt: Runtime;

    /// The runtime on its host, with a run_dir of its own for test `tag`; `None` when this
    /// machine cannot run it (the engine is missing), said on stderr.
    async fn setup(tag: &str) -> Option<Self>;

    fn runtime(&self) -> &Self::Rt;

    fn transport(&self) -> &dyn Transport;

    /// The run_dir on the host, which no other test uses.
    fn run_dir(&self) -> &str;

    /// A launch of `command` (run by `/bin/sh -c`) for `address` on `port`.
    fn launch(&self, address: &str, port: u16, command: &str) -> LaunchSpec;

    /// The model-server stand-in's command line on the host, without flags.
    fn stand_in(&self) -> String;

    /// A value whose drop ends what `instance` runs, so a failing test leaves nothing behind.
    fn guard(&self, instance: &Instance) -> Box<dyn Any + Send>;

    /// Makes the runtime's record of `address` on the host unreadable, the way a full disk or
    /// a hand edit does; false when this runtime's records cannot be damaged (the engine
    /// keeps them, as container labels).
    fn damage_record(&self, address: &str) -> bool;

    /// Every process command line on the host, one a line.
    fn command_lines(&self) -> String;
}

/// Defines module `$name` holding the suite for the [`Target`] `$target`.
#[macro_export]
macro_rules! runtime_conformance {
    ($name:ident, $target:ty) => {
        mod $name {
            // The target type is named in the parent module.
            #[allow(unused_imports)]
            use super::*;

            use std::time::Duration;

            use berth_providers::probe::{GateTiming, Probe, gate};
            use berth_providers::{Command, Liveness, ProviderError, Runtime};
            use tokio_util::sync::CancellationToken;

            use super::common::free_port;
            use super::suite::Target;

            const GRACE: Duration = Duration::from_secs(5);

            async fn setup(tag: &str) -> Option<$target> {
                <$target as Target>::setup(&format!("{}-{tag}", stringify!($name))).await
            }

            fn stand_in(t: &$target, address: &str, port: u16, flags: &str) -> LaunchSpec {
                t.launch(address, port, &format!("{} --port {port} {flags}", t.stand_in()))
            }

            /// Whether something answers on the host's 127.0.0.1:`port`.
            async fn answers(t: &$target, port: u16) -> bool {
                t.transport().connect_loopback(port).await.is_ok()
            }

            async fn ready(t: &$target, inst: &berth_providers::Instance) {
                ready_in(t, t.run_dir(), inst).await
            }

            /// The probe gate of `inst`, started under `run_dir`, passes.
            async fn ready_in(t: &$target, run_dir: &str, inst: &berth_providers::Instance) {
                let timing =
                    GateTiming::fixed(Duration::from_secs(30), Duration::from_millis(100));
                let probe = Probe::Http {
                    path: "/health".into(),
                };
                gate(
                    t.transport(),
                    t.runtime(),
                    run_dir,
                    inst,
                    &probe,
                    timing,
                    CancellationToken::new(),
                    |_| {},
                )
                .await
                .expect("the stand-in becomes ready");
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn start_observe_and_stop() {
                let Some(t) = setup("sos").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let port = free_port();
                let spec = stand_in(&t, "model.sos@local", port, "");
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                assert_eq!(inst.address, spec.address);
                assert_eq!(inst.fingerprint, spec.fingerprint);
                assert_eq!(inst.owner, spec.owner);
                assert_eq!(inst.port, port);
                ready(&t, &inst).await;

                let all = rt.observe_all(t.transport(), run_dir).await.unwrap();
                assert_eq!(all.len(), 1, "{all:?}");
                assert_eq!(all[0].instance, inst);
                assert_eq!(all[0].liveness, Liveness::Running);
                let one = rt.observe(t.transport(), run_dir, &inst.address).await.unwrap();
                assert_eq!(one.as_ref(), Some(&all[0]));
                assert_eq!(
                    rt.observe(t.transport(), run_dir, "model.none@local")
                        .await
                        .unwrap(),
                    None
                );
                assert_eq!(rt.still_mine(t.transport(), run_dir, &inst).await.unwrap(), Some(0));

                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
                assert!(rt.observe_all(t.transport(), run_dir).await.unwrap().is_empty());
                assert_eq!(rt.still_mine(t.transport(), run_dir, &inst).await.unwrap(), None);
                assert!(
                    !answers(&t, port).await,
                    "the service still answers after stop"
                );
                // Stopping what is not running is not an error.
                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_exit_is_observed_and_the_instance_is_no_longer_mine() {
                let Some(t) = setup("exit").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                // A service that ends by itself, successfully: no runtime brings it back.
                let spec = t.launch("model.exit@local", free_port(), "sleep 0.3");
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                let t_ref = &t;
                assert!(
                    eventually(|| async move {
                        t_ref
                            .runtime()
                            .observe(t_ref.transport(), t_ref.run_dir(), "model.exit@local")
                            .await
                            .unwrap()
                            .is_some_and(|o| o.liveness == Liveness::Exited)
                    })
                    .await,
                    "the exit was never observed"
                );
                assert_eq!(rt.still_mine(t.transport(), run_dir, &inst).await.unwrap(), None);
                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
                assert!(rt.observe_all(t.transport(), run_dir).await.unwrap().is_empty());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_restart_is_not_the_instance_that_was_started_first() {
                let Some(t) = setup("restart").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let spec = stand_in(&t, "model.restart@local", free_port(), "");
                let first = rt.start(t.transport(), &spec).await.unwrap();
                let _g1 = t.guard(&first);
                let second = rt.start(t.transport(), &spec).await.unwrap();
                let _g2 = t.guard(&second);
                assert_ne!(first.handle, second.handle);
                assert_eq!(rt.still_mine(t.transport(), run_dir, &first).await.unwrap(), None);
                assert_eq!(rt.still_mine(t.transport(), run_dir, &second).await.unwrap(), Some(0));
                assert_eq!(rt.observe_all(t.transport(), run_dir).await.unwrap().len(), 1);
                rt.stop(t.transport(), run_dir, &spec.address, GRACE)
                    .await
                    .unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn claim_records_the_new_owner_and_nothing_else() {
                let Some(t) = setup("claim").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let spec = stand_in(&t, "model.claim@local", free_port(), "");
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                // An owner that would break a naive edit of the record (no control
                // character: a unit file keeps it on one line, and refuses one).
                let owner = "lineage \"b\" / & \\ $HOME `x`";
                rt.claim(t.transport(), run_dir, &inst, owner).await.unwrap();
                let seen = rt
                    .observe(t.transport(), run_dir, &inst.address)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(seen.instance.owner, owner);
                assert_eq!(
                    berth_providers::Instance {
                        owner: inst.owner.clone(),
                        ..seen.instance.clone()
                    },
                    inst,
                    "claim changed more than the owner"
                );
                assert_eq!(seen.liveness, Liveness::Running);
                assert_eq!(rt.still_mine(t.transport(), run_dir, &inst).await.unwrap(), Some(0));

                // A claim of an instance that was replaced meanwhile leaves the new one's record.
                let again = rt.start(t.transport(), &spec).await.unwrap();
                let _guard2 = t.guard(&again);
                assert!(rt.claim(t.transport(), run_dir, &inst, "stale").await.is_err());
                let seen = rt
                    .observe(t.transport(), run_dir, &inst.address)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(seen.instance, again);
                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_server_that_keeps_failing_fails_the_gate_with_its_log() {
                let Some(t) = setup("crashloop").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                // It ends with an error at once, as a server given a wrong model path does;
                // docker, podman and systemd bring it back (their restart policy), again and
                // again. The gate must fail on that, with the server's own message, not wait
                // out its timeout probing a port nothing ever listens on.
                let spec = t.launch(
                    "model.crashloop@local",
                    free_port(),
                    "echo 'error: cannot open model file' >&2; exit 3",
                );
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                let failure = gate(
                    t.transport(),
                    rt,
                    run_dir,
                    &inst,
                    &Probe::Http {
                        path: "/v1/models".into(),
                    },
                    berth_providers::probe::default_timing(None),
                    CancellationToken::new(),
                    |_| {},
                )
                .await
                .expect_err("a server that never listens passed the gate");
                assert!(
                    matches!(failure, berth_providers::GateFailure::Exited { .. }),
                    "{failure}"
                );
                let tail = failure.log_tail().unwrap_or_default();
                assert!(tail.contains("cannot open model file"), "{tail:?}");
                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn logs_hold_the_service_output() {
                let Some(t) = setup("logs").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let spec = t.launch(
                    "svc.logs@local",
                    free_port(),
                    "echo first-line; echo second-line; exec sleep 60",
                );
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                let (t_ref, address) = (&t, inst.address.as_str());
                assert!(
                    eventually(|| async move {
                        t_ref
                            .runtime()
                            .logs(t_ref.transport(), t_ref.run_dir(), address, 10)
                            .await
                            .unwrap()
                            .contains("second-line")
                    })
                    .await
                );
                let tail = rt.logs(t.transport(), run_dir, &inst.address, 1).await.unwrap();
                assert_eq!(tail.trim(), "second-line", "{tail:?}");
                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
            }

            /// Two berth states share a host through run_dirs of their own, and may place the
            /// same address there: each keeps its own instance, and neither's start, observe or
            /// stop touches the other's.
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_run_dirs_keep_their_own_instances_of_one_address() {
                let Some(t) = setup("twin").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let other_dir = format!("{run_dir}-other");
                let (port, other_port) = (free_port(), free_port());
                let spec = stand_in(&t, "model.twin@local", port, "");
                let mut other = stand_in(&t, "model.twin@local", other_port, "");
                other.run_dir = other_dir.clone();
                other.owner = "another-state".into();
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _g1 = t.guard(&inst);
                let other_inst = rt.start(t.transport(), &other).await.unwrap();
                let _g2 = t.guard(&other_inst);
                ready(&t, &inst).await;
                ready_in(&t, &other_dir, &other_inst).await;
                assert_eq!(rt.still_mine(t.transport(), run_dir, &inst).await.unwrap(), Some(0));

                let mine = rt.observe_all(t.transport(), run_dir).await.unwrap();
                assert_eq!(mine.len(), 1, "{mine:?}");
                assert_eq!(mine[0].instance, inst);
                let theirs = rt.observe_all(t.transport(), &other_dir).await.unwrap();
                assert_eq!(theirs.len(), 1, "{theirs:?}");
                assert_eq!(theirs[0].instance, other_inst);

                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
                assert!(!answers(&t, port).await, "the stopped instance still answers");
                assert!(answers(&t, other_port).await, "the other run_dir's instance was stopped");
                assert_eq!(
                    rt.still_mine(t.transport(), &other_dir, &other_inst).await.unwrap(),
                    Some(0)
                );
                rt.stop(t.transport(), &other_dir, &other_inst.address, GRACE)
                    .await
                    .unwrap();
                assert!(rt.observe_all(t.transport(), &other_dir).await.unwrap().is_empty());
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn secrets_reach_the_service_only_through_private_files() {
                let Some(t) = setup("env").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let secret = "conformance-secret-7d1e";
                let mut spec = t.launch(
                    "svc.env@local",
                    free_port(),
                    "[ \"$TOKEN\" = conformance-secret-7d1e ] && echo env-ok; exec sleep 60",
                );
                spec.env = vec![("TOKEN".into(), secret.into())];
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                let (t_ref, address) = (&t, inst.address.as_str());
                assert!(
                    eventually(|| async move {
                        t_ref
                            .runtime()
                            .logs(t_ref.transport(), t_ref.run_dir(), address, 10)
                            .await
                            .unwrap()
                            .contains("env-ok")
                    })
                    .await,
                    "the service did not get its env"
                );
                // The command itself names the secret: the service's own argv is the test's
                // doing. Every other command line must not.
                let lines = t.command_lines().replace(&spec.command, "");
                assert!(!lines.contains(secret), "a command line holds the secret");
                // The files under the run_dir that hold it, with their modes; the secret goes
                // to grep on stdin, not in its argv.
                let find = format!(
                    "grep -rlF -f /dev/stdin -- {} | while read -r f; do stat -c '%a %n' \"$f\"; done",
                    berth_providers::transport::quote(run_dir).unwrap()
                );
                let out = t
                    .transport()
                    .exec(
                        Command::new(find, Duration::from_secs(30))
                            .stdin(format!("{secret}\n").into_bytes()),
                    )
                    .await
                    .unwrap();
                let holders = out.stdout_text();
                assert!(
                    !holders.trim().is_empty(),
                    "the secret reached no file on the host"
                );
                for line in holders.lines() {
                    assert!(line.starts_with("600 "), "{line} holds the secret");
                }
                let record = serde_json::to_string(&inst).unwrap();
                assert!(!record.contains(secret));
                rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap();
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_unreadable_record_is_reported_and_stopped_only_through_its_handle() {
                let Some(t) = setup("lost").await else { return };
                let (rt, run_dir) = (t.runtime(), t.run_dir());
                let port = free_port();
                let spec = stand_in(&t, "model.lost@local", port, "");
                let inst = rt.start(t.transport(), &spec).await.unwrap();
                let _guard = t.guard(&inst);
                ready(&t, &inst).await;
                if !t.damage_record(&inst.address) {
                    // The engine keeps this runtime's records: what is found is what runs,
                    // and a stop without the handle berth's state holds still finds it.
                    let survey = rt.survey(t.transport(), run_dir).await.unwrap();
                    assert!(survey.problems.is_empty(), "{survey:?}");
                    assert_eq!(survey.found.len(), 1, "{survey:?}");
                    assert_eq!(survey.found[0].instance, inst);
                    rt.stop(t.transport(), run_dir, &inst.address, GRACE)
                        .await
                        .unwrap();
                    assert!(!answers(&t, port).await);
                    return;
                }

                let survey = rt.survey(t.transport(), run_dir).await.unwrap();
                assert!(survey.found.is_empty(), "{survey:?}");
                assert_eq!(survey.problems.len(), 1, "{survey:?}");
                let err = rt
                    .stop(t.transport(), run_dir, &inst.address, GRACE)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, ProviderError::UnreadableMarker { .. }),
                    "{err}"
                );
                assert!(
                    answers(&t, port).await,
                    "stopped without knowing what it stopped"
                );

                rt.stop_with(t.transport(), run_dir, &inst.address, Some(&inst.handle), GRACE)
                    .await
                    .unwrap();
                assert!(!answers(&t, port).await);
                let survey = rt.survey(t.transport(), run_dir).await.unwrap();
                assert!(
                    survey.found.is_empty() && survey.problems.is_empty(),
                    "{survey:?}"
                );
            }

            /// Polls `check` every 50 ms for up to 20 s; whether it came true.
            async fn eventually<F, Fut>(mut check: F) -> bool
            where
                F: FnMut() -> Fut,
                Fut: std::future::Future<Output = bool>,
            {
                let end = tokio::time::Instant::now() + Duration::from_secs(20);
                loop {
                    if check().await {
                        return true;
                    }
                    if tokio::time::Instant::now() >= end {
                        return false;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
}
