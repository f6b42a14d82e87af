//! Probes and the probe gate against the real model-server stand-in started by ProcessRuntime
//! over LocalTransport, and source sizes of real files.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_providers::probe::{
    GateFailure, GateTick, GateTiming, Probe, ProbeOutcome, default_timing, gate, probe_once,
    source_size,
};
use berth_providers::transport::quote;
use berth_providers::{Instance, LocalTransport, ProcessRuntime, ProviderError, Runtime};
use common::{KillOnDrop, free_port, pid, stand_in};
use tokio_util::sync::CancellationToken;

const T: Duration = Duration::from_secs(5);

fn local() -> LocalTransport {
    LocalTransport::new("local-test")
}

fn http(path: &str) -> Probe {
    Probe::Http { path: path.into() }
}

/// A stand-in started through the process runtime; stopped (or killed) when dropped.
struct Service {
    run: tempfile::TempDir,
    instance: Instance,
    _guard: KillOnDrop,
}

impl Service {
    async fn start(flags: &str) -> Service {
        let run = tempfile::tempdir().unwrap();
        let spec = stand_in(
            run.path().to_str().unwrap(),
            "model.m@local",
            free_port(),
            flags,
        );
        let instance = ProcessRuntime::new().start(&local(), &spec).await.unwrap();
        Service {
            _guard: KillOnDrop(vec![pid(&instance)]),
            run,
            instance,
        }
    }

    fn run_dir(&self) -> &str {
        self.run.path().to_str().unwrap()
    }

    async fn gate(
        &self,
        probe: &Probe,
        timing: GateTiming,
        cancel: CancellationToken,
    ) -> (Result<Duration, GateFailure>, Vec<GateTick>, Duration) {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&ticks);
        let begun = Instant::now();
        let result = gate(
            &local(),
            &ProcessRuntime::new(),
            self.run_dir(),
            &self.instance,
            probe,
            timing,
            cancel,
            move |tick| sink.lock().unwrap().push(tick),
        )
        .await
        .map(|ready| ready.elapsed);
        let ticks = ticks.lock().unwrap().clone();
        (result, ticks, begun.elapsed())
    }
}

fn timing(timeout_ms: u64, interval_ms: u64) -> GateTiming {
    GateTiming::fixed(
        Duration::from_millis(timeout_ms),
        Duration::from_millis(interval_ms),
    )
}

/// Waits until the stand-in answers at all (it binds a moment after start).
async fn wait_listening(port: u16) {
    for _ in 0..250 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("nothing listens on {port}");
}

#[tokio::test]
async fn http_probe_outcomes() {
    let t = local();
    let closed = free_port();
    assert_eq!(
        probe_once(&t, &http("/health"), closed, T).await,
        ProbeOutcome::Down("connection refused".into())
    );

    let loading = Service::start("--load-secs 30").await;
    wait_listening(loading.instance.port).await;
    let port = loading.instance.port;
    assert_eq!(
        probe_once(&t, &http("/health"), port, T).await,
        ProbeOutcome::Loading("503".into())
    );

    let ready = Service::start("").await;
    let port = ready.instance.port;
    wait_listening(port).await;
    assert_eq!(
        probe_once(&t, &http("/v1/models"), port, T).await,
        ProbeOutcome::Ready
    );
    assert_eq!(
        probe_once(&t, &http("health"), port, T).await,
        ProbeOutcome::Ready
    );
    assert_eq!(
        probe_once(&t, &http("/nope"), port, T).await,
        ProbeOutcome::Down("HTTP 404".into())
    );

    let hung = Service::start("--hang").await;
    wait_listening(hung.instance.port).await;
    let begun = Instant::now();
    let outcome = probe_once(
        &t,
        &http("/health"),
        hung.instance.port,
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(outcome, ProbeOutcome::Down("no answer within 500ms".into()));
    assert!(begun.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn cmd_probe_outcomes() {
    let t = local();
    let cmd = |s: &str| Probe::Cmd(s.to_string());
    assert_eq!(
        probe_once(&t, &cmd("true"), 1, T).await,
        ProbeOutcome::Ready
    );
    assert_eq!(
        probe_once(
            &t,
            &cmd("echo one >&2; echo 'last line' >&2; echo >&2; exit 1"),
            1,
            T
        )
        .await,
        ProbeOutcome::Down("last line".into())
    );
    assert_eq!(
        probe_once(&t, &cmd("exit 4"), 1, T).await,
        ProbeOutcome::Down("exit 4".into())
    );
    assert_eq!(
        probe_once(&t, &cmd("sleep 5"), 1, Duration::from_millis(300)).await,
        ProbeOutcome::Down("no answer within 300ms".into())
    );
}

#[tokio::test]
async fn gate_reports_loading_then_ready() {
    let service = Service::start("--load-secs 1").await;
    let (result, ticks, _) = service
        .gate(
            &http("/health"),
            timing(30_000, 200),
            CancellationToken::new(),
        )
        .await;
    let elapsed = result.unwrap();
    assert!(elapsed >= Duration::from_millis(700), "{elapsed:?}");
    assert!(
        ticks
            .iter()
            .any(|t| t.outcome == ProbeOutcome::Loading("503".into())),
        "{ticks:?}"
    );
    let shown = ticks.last().unwrap().to_string();
    assert!(
        shown.starts_with("probing 0s/30s: ") || shown.starts_with("probing 1s/30s: "),
        "{shown}"
    );
}

/// Without `probe_interval_ms` the gate probes a loading server often at first (100 ms apart,
/// then a sixteenth of the time waited), so a model that loads in a second or two is not kept
/// waiting for the tier's 1 s interval; a set interval is kept from the first probe on.
#[tokio::test]
async fn default_spacing_starts_fast_and_a_set_interval_is_kept() {
    // The not-ready probes of a gate on a stand-in that loads for 1.5 s.
    async fn ticks_until_ready(timing: GateTiming) -> Vec<GateTick> {
        let service = Service::start("--load-secs 1.5").await;
        let (result, ticks, _) = service
            .gate(&http("/v1/models"), timing, CancellationToken::new())
            .await;
        result.unwrap();
        ticks
    }
    let gaps = |ticks: &[GateTick]| -> Vec<Duration> {
        ticks
            .windows(2)
            .map(|w| w[1].elapsed - w[0].elapsed)
            .collect()
    };

    let ticks = ticks_until_ready(default_timing(None)).await;
    assert!(ticks.len() >= 5, "{ticks:?}");
    let first = gaps(&ticks)[0];
    assert!(first < Duration::from_millis(500), "{first:?} {ticks:?}");

    let ticks = ticks_until_ready(timing(120_000, 1_000)).await;
    assert!(!ticks.is_empty() && ticks.len() <= 2, "{ticks:?}");
    for gap in gaps(&ticks) {
        assert!(gap >= Duration::from_millis(900), "{gap:?} {ticks:?}");
    }
}

#[tokio::test]
async fn gate_notices_within_a_second_when_the_service_exits() {
    let service = Service::start("--exit-after-secs 0.5 --load-secs 5").await;
    // The default tier: 120 s timeout, 1 s interval. The crash must be noticed at the next
    // liveness check (at most a second apart), not after the timeout.
    let (result, _, took) = service
        .gate(
            &http("/health"),
            default_timing(None),
            CancellationToken::new(),
        )
        .await;
    match result {
        Err(GateFailure::Exited { log_tail }) => {
            assert!(log_tail.contains("simulated crash"), "{log_tail}");
            assert!(log_tail.contains("listening on"), "{log_tail}");
        }
        other => panic!("expected Exited, got {other:?}"),
    }
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[tokio::test]
async fn gate_fails_when_loading_fails() {
    let service = Service::start("--fail-load --load-secs 0.3").await;
    let (result, _, took) = service
        .gate(
            &http("/v1/models"),
            timing(60_000, 200),
            CancellationToken::new(),
        )
        .await;
    let Err(failure @ GateFailure::Exited { .. }) = result else {
        panic!("expected Exited, got {result:?}");
    };
    assert!(failure.log_tail().unwrap().contains("failed to load model"));
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn gate_times_out_on_a_hung_server() {
    let service = Service::start("--hang").await;
    let (result, ticks, took) = service
        .gate(
            &http("/health"),
            timing(2_000, 250),
            CancellationToken::new(),
        )
        .await;
    match result {
        Err(GateFailure::TimedOut { last, log_tail }) => {
            assert!(
                matches!(&last, ProbeOutcome::Down(why) if why.starts_with("no answer within")),
                "{last:?}"
            );
            assert!(log_tail.contains("hanging"), "{log_tail}");
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    assert!(!ticks.is_empty());
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(6),
        "took {took:?}"
    );
}

#[tokio::test]
async fn gate_can_be_cancelled() {
    let service = Service::start("--load-secs 60").await;
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        trigger.cancel();
    });
    let (result, _, took) = service
        .gate(&http("/health"), timing(60_000, 1_000), cancel)
        .await;
    assert!(matches!(result, Err(GateFailure::Cancelled)), "{result:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[tokio::test]
async fn gate_with_a_command_probe() {
    let service = Service::start("").await;
    let flag = service.run.path().join("ready flag");
    let probe = Probe::Cmd(format!(
        "test -f {}",
        quote(flag.to_str().unwrap()).unwrap()
    ));
    let writer = {
        let flag = flag.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            std::fs::write(flag, b"").unwrap();
        })
    };
    let (result, ticks, _) = service
        .gate(&probe, timing(10_000, 100), CancellationToken::new())
        .await;
    writer.await.unwrap();
    assert!(result.unwrap() >= Duration::from_millis(400));
    assert!(
        ticks
            .iter()
            .all(|t| t.outcome == ProbeOutcome::Down("exit 1".into())),
        "{ticks:?}"
    );
}

#[tokio::test]
async fn source_size_sums_split_gguf_shards() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("qwen 7b's");
    for (k, len) in [(1, 1000), (2, 2000), (3, 3000)] {
        let shard = format!("{}-{k:05}-of-00003.gguf", base.display());
        std::fs::write(shard, vec![0u8; len]).unwrap();
    }
    let first = format!("{}-00001-of-00003.gguf", base.display());
    let t = local();
    assert_eq!(source_size(&t, &first, T).await.unwrap(), Some(6000));

    // A plain file, a missing one, and a missing shard of a split model.
    let single = dir.path().join("single.gguf");
    std::fs::write(&single, vec![0u8; 1234]).unwrap();
    assert_eq!(
        source_size(&t, single.to_str().unwrap(), T).await.unwrap(),
        Some(1234)
    );
    let missing = dir.path().join("missing.gguf");
    assert_eq!(
        source_size(&t, missing.to_str().unwrap(), T).await.unwrap(),
        None
    );
    assert_eq!(
        source_size(&t, "Qwen/Qwen2.5-7B-Instruct", T)
            .await
            .unwrap(),
        None
    );

    let second = format!("{}-00002-of-00003.gguf", base.display());
    std::fs::remove_file(&second).unwrap();
    match source_size(&t, &first, T).await {
        Err(ProviderError::CommandFailed { stderr, .. }) => {
            assert!(stderr.contains(&second), "{stderr}")
        }
        other => panic!("expected a missing shard error, got {other:?}"),
    }
}

#[tokio::test]
async fn source_size_of_a_directory_is_its_disk_usage() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.safetensors"), vec![1u8; 64 * 1024]).unwrap();
    std::fs::write(dir.path().join("b.safetensors"), vec![1u8; 64 * 1024]).unwrap();
    let size = source_size(&local(), dir.path().to_str().unwrap(), T)
        .await
        .unwrap()
        .unwrap();
    assert!(size >= 128 * 1024, "{size}");
}
