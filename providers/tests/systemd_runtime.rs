//! `SystemdRuntime` against a real systemd over SSH (a systemd host container from
//! berth-test-support): the runtime's contract, as the process runtime's conformance suite
//! states it, plus what only units have. Start, observe, still_mine across a crash systemd
//! restarts, the port-suffixed name when another address holds the model's unit name, claim,
//! logs from journald, a unit file deleted by hand while its service runs, stop, and env values
//! only in a 0600 file. Needs root and docker.

use std::time::Duration;

use berth_providers::{
    LaunchSpec, Liveness, Runtime, RuntimeSpec, SshTransport, SystemdRuntime, SystemdSpec,
};
use berth_test_support::systemd_host::{BIN_DIR, SystemdHost};
use berth_test_support::wait_until;

const RUN_DIR: &str = "/var/lib/berth";
const GRACE: Duration = Duration::from_secs(5);
const SECRET: &str = "unit-secret 'q' \"dq\" $HOME `x` \\ end";

fn spec(address: &str, port: u16) -> LaunchSpec {
    LaunchSpec {
        owner: "state-a".into(),
        address: address.to_string(),
        run_dir: RUN_DIR.to_string(),
        command: format!("{BIN_DIR}/berth-model-server --port {port} --model m"),
        env: vec![("API_KEY".into(), SECRET.into())],
        port,
        fingerprint: format!("sha256:{port}"),
        runtime: RuntimeSpec::Systemd(SystemdSpec::default()),
    }
}

fn answers(host: &SystemdHost, port: u16) -> bool {
    host.root_sh(&format!("curl -fsS http://127.0.0.1:{port}/health"))
        .success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_keep_the_runtime_contract_over_ssh() {
    let host = tokio::task::spawn_blocking(|| SystemdHost::start("rt"))
        .await
        .unwrap();
    let t = SshTransport::connect(host.config("root")).await.unwrap();
    let rt = SystemdRuntime::new();

    // Two host entries of one machine place the same model: the second unit gets the port.
    let a = spec("model.m@h1", 8501);
    let b = spec("model.m@h2", 8502);
    let ia = rt.start(&t, &a).await.unwrap();
    let ib = rt.start(&t, &b).await.unwrap();
    assert_eq!(
        ia.handle.get("unit").and_then(|v| v.as_str()),
        Some("berth-m.service")
    );
    assert_eq!(
        ib.handle.get("unit").and_then(|v| v.as_str()),
        Some("berth-m-8502.service")
    );
    assert!(wait_until(Duration::from_secs(20), || answers(&host, 8501)
        && answers(&host, 8502)));

    let all = rt.observe_all(&t, RUN_DIR).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].instance, ia);
    assert_eq!(all[1].instance, ib);
    assert!(all.iter().all(|o| o.liveness == Liveness::Running));
    assert!(rt.observe_all(&t, "/elsewhere").await.unwrap().is_empty());
    assert_eq!(rt.still_mine(&t, RUN_DIR, &ia).await.unwrap(), Some(0));
    // Starting the same address again reuses its unit name.
    let ia = rt.start(&t, &a).await.unwrap();
    assert_eq!(
        ia.handle.get("unit").and_then(|v| v.as_str()),
        Some("berth-m.service")
    );

    // Secrets: in the 0600 env file and the service's environment, nowhere else.
    let pid = host
        .root_ok("systemctl show -p MainPID --value berth-m.service")
        .trim()
        .to_string();
    let environ = host.root_ok(&format!("tr '\\0' '\\n' < /proc/{pid}/environ"));
    assert!(
        environ.lines().any(|l| l == format!("API_KEY={SECRET}")),
        "{environ}"
    );
    let modes = host.root_ok(&format!("find {RUN_DIR}/systemd -name env -printf '%m\\n'"));
    assert_eq!(modes.lines().collect::<Vec<_>>(), ["600", "600"]);
    for what in [
        "cat /etc/systemd/system/berth-m*.service",
        "ps -eo args",
        "systemctl show berth-m.service",
    ] {
        assert!(!host.root_ok(what).contains("unit-secret"), "{what}");
    }

    // A crash systemd restarts: still running, but no longer the invocation berth started.
    host.root_ok(&format!("kill -9 {pid}"));
    assert!(wait_until(Duration::from_secs(20), || {
        host.root_ok("systemctl show -p NRestarts --value berth-m.service")
            .trim()
            == "1"
            && answers(&host, 8501)
    }));
    let seen = rt.observe(&t, RUN_DIR, &a.address).await.unwrap().unwrap();
    assert_eq!(seen.liveness, Liveness::Running);
    assert_eq!(seen.instance.fingerprint, a.fingerprint);
    assert_eq!(rt.still_mine(&t, RUN_DIR, &ia).await.unwrap(), None);

    // Logs come from journald.
    let logs = rt.logs(&t, RUN_DIR, &a.address, 20).await.unwrap();
    assert!(logs.contains("listening on"), "{logs}");

    // Claim rewrites the owner key only.
    rt.claim(&t, RUN_DIR, &seen.instance, "state-b")
        .await
        .unwrap();
    let claimed = rt.observe(&t, RUN_DIR, &a.address).await.unwrap().unwrap();
    assert_eq!(claimed.instance.owner, "state-b");
    assert_eq!(claimed.instance.started_at, seen.instance.started_at);
    assert!(
        host.root_ok("systemctl show -p NeedDaemonReload --value berth-m.service")
            .contains("no")
    );

    // A unit file deleted by hand: observe no longer sees it, but the handle the state
    // recorded still stops what systemd runs.
    host.root_ok("rm /etc/systemd/system/berth-m-8502.service");
    let left = rt.observe_all(&t, RUN_DIR).await.unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(answers(&host, 8502));
    rt.stop_with(&t, RUN_DIR, &b.address, Some(&ib.handle), GRACE)
        .await
        .unwrap();
    assert!(!answers(&host, 8502));

    // Stop: the service, the unit file, its enablement and the env file go.
    rt.stop(&t, RUN_DIR, &a.address, GRACE).await.unwrap();
    assert!(!answers(&host, 8501));
    assert!(rt.observe_all(&t, RUN_DIR).await.unwrap().is_empty());
    let left = host.root_ok(&format!(
        "find /etc/systemd/system {RUN_DIR}/systemd -name 'berth-*' -o -name env"
    ));
    assert!(left.trim().is_empty(), "{left}");
    // Stopping what is not there is not an error.
    rt.stop(&t, RUN_DIR, &a.address, GRACE).await.unwrap();
    t.disconnect().await;
}
