//! The conformance suite every [`berth_providers::Runtime`] passes over the local transport:
//! start, observe_all, observe, still_mine, stop, claim, logs, secrets only in mode-0600 files,
//! and a record on the host that cannot be read. A runtime proves itself by instantiating
//! [`runtime_conformance!`] with three things:
//!
//! - `runtime`: an expression that makes the runtime;
//! - `guard`: a function from a started [`berth_providers::Instance`] to a value whose drop
//!   kills what the instance runs, so a failing test leaves nothing behind;
//! - `damage_record`: a function `(run_dir, address)` that makes the runtime's record of that
//!   instance on the host unreadable, the way a full disk or a hand edit does.

/// Defines module `$name` holding the suite for one runtime.
#[macro_export]
macro_rules! runtime_conformance {
    ($name:ident, runtime: $make:expr, guard: $guard:expr, damage_record: $damage:expr $(,)?) => {
        mod $name {
            // The instantiation's expressions are written in the parent module.
            #[allow(unused_imports)]
            use super::*;

            use std::os::unix::fs::PermissionsExt;
            use std::time::Duration;

            use berth_providers::probe::{GateTiming, Probe, gate};
            use berth_providers::{LaunchSpec, Liveness, LocalTransport, ProviderError, Runtime};
            use tokio_util::sync::CancellationToken;

            use super::common::{all_command_lines, free_port, stand_in};

            const GRACE: Duration = Duration::from_secs(5);

            fn runtime() -> impl Runtime {
                $make
            }

            fn local() -> LocalTransport {
                LocalTransport::new("conformance")
            }

            fn shell(run_dir: &str, address: &str, command: &str) -> LaunchSpec {
                let mut spec = stand_in(run_dir, address, 1, "");
                spec.command = command.to_string();
                spec
            }

            async fn ready(
                t: &LocalTransport,
                rt: &impl Runtime,
                run_dir: &str,
                inst: &berth_providers::Instance,
            ) {
                let timing = GateTiming {
                    timeout: Duration::from_secs(20),
                    interval: Duration::from_millis(100),
                };
                let probe = Probe::Http {
                    path: "/health".into(),
                };
                gate(
                    t,
                    rt,
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

            #[tokio::test]
            async fn start_observe_and_stop() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let port = free_port();
                let spec = stand_in(run_dir, "model.a@local", port, "");
                let inst = rt.start(&t, &spec).await.unwrap();
                let _guard = ($guard)(&inst);
                assert_eq!(inst.address, spec.address);
                assert_eq!(inst.fingerprint, spec.fingerprint);
                assert_eq!(inst.owner, spec.owner);
                assert_eq!(inst.port, port);
                ready(&t, &rt, run_dir, &inst).await;

                let all = rt.observe_all(&t, run_dir).await.unwrap();
                assert_eq!(all.len(), 1, "{all:?}");
                assert_eq!(all[0].instance, inst);
                assert_eq!(all[0].liveness, Liveness::Running);
                let one = rt.observe(&t, run_dir, &inst.address).await.unwrap();
                assert_eq!(one.as_ref(), Some(&all[0]));
                assert_eq!(
                    rt.observe(&t, run_dir, "model.b@local").await.unwrap(),
                    None
                );
                assert!(rt.still_mine(&t, run_dir, &inst).await.unwrap());

                rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
                assert!(rt.observe_all(&t, run_dir).await.unwrap().is_empty());
                assert!(!rt.still_mine(&t, run_dir, &inst).await.unwrap());
                assert!(
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
                    "the service still answers after stop"
                );
                // Stopping what is not running is not an error.
                rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
            }

            #[tokio::test]
            async fn an_exit_is_observed_and_the_instance_is_no_longer_mine() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let spec = stand_in(
                    run_dir,
                    "model.a@local",
                    free_port(),
                    "--exit-after-secs 0.3",
                );
                let inst = rt.start(&t, &spec).await.unwrap();
                let _guard = ($guard)(&inst);
                let (rt_ref, t_ref) = (&rt, &t);
                assert!(
                    eventually(|| async move {
                        rt_ref
                            .observe(t_ref, run_dir, "model.a@local")
                            .await
                            .unwrap()
                            .is_some_and(|o| o.liveness == Liveness::Exited)
                    })
                    .await,
                    "the exit was never observed"
                );
                assert!(!rt.still_mine(&t, run_dir, &inst).await.unwrap());
                rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
                assert!(rt.observe_all(&t, run_dir).await.unwrap().is_empty());
            }

            #[tokio::test]
            async fn a_restart_is_not_the_instance_that_was_started_first() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let spec = stand_in(run_dir, "model.a@local", free_port(), "");
                let first = rt.start(&t, &spec).await.unwrap();
                let _g1 = ($guard)(&first);
                let second = rt.start(&t, &spec).await.unwrap();
                let _g2 = ($guard)(&second);
                assert_ne!(first.handle, second.handle);
                assert!(!rt.still_mine(&t, run_dir, &first).await.unwrap());
                assert!(rt.still_mine(&t, run_dir, &second).await.unwrap());
                assert_eq!(rt.observe_all(&t, run_dir).await.unwrap().len(), 1);
                rt.stop(&t, run_dir, &spec.address, GRACE).await.unwrap();
            }

            #[tokio::test]
            async fn claim_records_the_new_owner_and_nothing_else() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let spec = stand_in(run_dir, "model.a@local", free_port(), "");
                let inst = rt.start(&t, &spec).await.unwrap();
                let _guard = ($guard)(&inst);
                // An owner that would break a naive edit of the record.
                let owner = "lineage \"b\" / & \\ \n";
                rt.claim(&t, run_dir, &inst, owner).await.unwrap();
                let seen = rt
                    .observe(&t, run_dir, &inst.address)
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
                assert!(rt.still_mine(&t, run_dir, &inst).await.unwrap());

                // A claim of an instance that was replaced meanwhile leaves the new one's record.
                let again = rt.start(&t, &spec).await.unwrap();
                let _guard2 = ($guard)(&again);
                assert!(rt.claim(&t, run_dir, &inst, "stale").await.is_err());
                let seen = rt
                    .observe(&t, run_dir, &inst.address)
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(seen.instance, again);
                rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
            }

            #[tokio::test]
            async fn logs_hold_the_service_output() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let spec = shell(
                    run_dir,
                    "svc.logs@local",
                    "echo first-line; echo second-line; exec sleep 60",
                );
                let inst = rt.start(&t, &spec).await.unwrap();
                let _guard = ($guard)(&inst);
                let (rt_ref, t_ref, address) = (&rt, &t, inst.address.as_str());
                assert!(
                    eventually(|| async move {
                        rt_ref
                            .logs(t_ref, run_dir, address, 10)
                            .await
                            .unwrap()
                            .contains("second-line")
                    })
                    .await
                );
                let tail = rt.logs(&t, run_dir, &inst.address, 1).await.unwrap();
                assert_eq!(tail.trim(), "second-line", "{tail:?}");
                rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
            }

            #[tokio::test]
            async fn secrets_reach_the_service_only_through_private_files() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let secret = "conformance-secret-7d1e";
                let mut spec = shell(
                    run_dir,
                    "svc.env@local",
                    "[ \"$TOKEN\" = conformance-secret-7d1e ] && echo env-ok; exec sleep 60",
                );
                spec.env = vec![("TOKEN".into(), secret.into())];
                let inst = rt.start(&t, &spec).await.unwrap();
                let _guard = ($guard)(&inst);
                let (rt_ref, t_ref, address) = (&rt, &t, inst.address.as_str());
                assert!(
                    eventually(|| async move {
                        rt_ref
                            .logs(t_ref, run_dir, address, 10)
                            .await
                            .unwrap()
                            .contains("env-ok")
                    })
                    .await,
                    "the service did not get its env"
                );
                // The command itself names the secret: the service's own argv is the test's
                // doing. Every other command line must not.
                let lines = all_command_lines().replace(&spec.command, "");
                assert!(!lines.contains(secret), "a command line holds the secret");
                let mut holders = Vec::new();
                let mut dirs = vec![run.path().to_path_buf()];
                while let Some(dir) = dirs.pop() {
                    for entry in std::fs::read_dir(dir).unwrap().flatten() {
                        let meta = entry.metadata().unwrap();
                        if meta.is_dir() {
                            dirs.push(entry.path());
                        } else if std::fs::read(entry.path())
                            .is_ok_and(|b| String::from_utf8_lossy(&b).contains(secret))
                        {
                            holders.push((entry.path(), meta.permissions().mode() & 0o777));
                        }
                    }
                }
                assert!(
                    !holders.is_empty(),
                    "the secret reached no file on the host"
                );
                for (path, mode) in &holders {
                    assert_eq!(*mode, 0o600, "{} holds the secret", path.display());
                }
                let record = serde_json::to_string(&inst).unwrap();
                assert!(!record.contains(secret));
                rt.stop(&t, run_dir, &inst.address, GRACE).await.unwrap();
            }

            #[tokio::test]
            async fn an_unreadable_record_is_reported_and_stopped_only_through_its_handle() {
                let run = tempfile::tempdir().unwrap();
                let run_dir = run.path().to_str().unwrap();
                let (t, rt) = (local(), runtime());
                let port = free_port();
                let spec = stand_in(run_dir, "model.lost@local", port, "");
                let inst = rt.start(&t, &spec).await.unwrap();
                let _guard = ($guard)(&inst);
                ready(&t, &rt, run_dir, &inst).await;
                ($damage)(run_dir, &inst.address);

                let survey = rt.survey(&t, run_dir).await.unwrap();
                assert!(survey.found.is_empty(), "{survey:?}");
                assert_eq!(survey.problems.len(), 1, "{survey:?}");
                let err = rt
                    .stop(&t, run_dir, &inst.address, GRACE)
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, ProviderError::UnreadableMarker { .. }),
                    "{err}"
                );
                assert!(
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                    "stopped without knowing what it stopped"
                );

                rt.stop_with(&t, run_dir, &inst.address, Some(&inst.handle), GRACE)
                    .await
                    .unwrap();
                assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
                let survey = rt.survey(&t, run_dir).await.unwrap();
                assert!(
                    survey.found.is_empty() && survey.problems.is_empty(),
                    "{survey:?}"
                );
            }

            /// Polls `check` every 50 ms for up to 10 s; whether it came true.
            async fn eventually<F, Fut>(mut check: F) -> bool
            where
                F: FnMut() -> Fut,
                Fut: std::future::Future<Output = bool>,
            {
                let end = tokio::time::Instant::now() + Duration::from_secs(10);
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
