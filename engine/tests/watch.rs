//! `berth watch` end to end on the local host: real stand-in processes killed as a crash would
//! kill them, the real berth binary watching and healing, a real Prometheus (Debian package)
//! scraping it and `promtool` checking what it serves.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_test_support::procs;
use common::{Fleet, Model, addr, free_ports, heals_logged, wait_until};
use serde_json::Value;

/// Sets `settings { watch { ... } }` in the fleet's main.hcl.
fn watch_settings(fleet: &Fleet, body: &str) {
    let path = fleet.dir().join("main.hcl");
    let text = std::fs::read_to_string(&path).expect("main.hcl");
    let text = text.replacen(
        "settings {",
        &format!("settings {{\n  watch {{\n{body}\n  }}"),
        1,
    );
    std::fs::write(&path, text).expect("main.hcl");
}

/// The history entries whose operation is `heal`.
fn heals_in_history(fleet: &Fleet) -> Vec<Value> {
    let run = fleet.berth(&["state", "history", "--json"]);
    run.expect(0);
    run.json()
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|h| h["operation"] == "heal")
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn a_killed_server_is_healed_and_a_config_change_nobody_applied_is_left_alone() {
    let ports = free_ports(2);
    let a = Model::new("alpha", ports[0], "--load-secs 0");
    let b = Model::new("beta", ports[1], "--load-secs 0");
    let fleet = Fleet::new(&[a.clone(), b.clone()], 4);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let beta_before = fleet.stand_in(ports[1]);
    let fingerprint = fleet.state_show(&addr("beta"))["fingerprint"].clone();

    // alpha crashes; beta's config changes but nobody applies it.
    fleet.stand_in(ports[0]).kill9();
    wait_until(Duration::from_secs(5), || {
        !fleet.stand_ins_by_port().contains_key(&ports[0])
    });
    fleet.set_models(&[a, Model::new("beta", ports[1], "--load-secs 0.5")]);

    let run = fleet.berth(&["watch", "--heal", "--once"]);
    run.expect(0);
    assert!(
        run.stdout
            .contains(&format!("heal {}: healed", addr("alpha"))),
        "{}",
        run.all()
    );
    assert!(
        run.stdout.contains(&format!("unapplied {}", addr("beta"))),
        "{}",
        run.all()
    );
    // alpha answers again; beta is the very process that ran before, as applied.
    fleet.stand_in(ports[0]);
    assert_eq!(fleet.stand_in(ports[1]).pid, beta_before.pid);
    assert_eq!(
        fleet.state_show(&addr("beta"))["fingerprint"],
        fingerprint,
        "the unapplied change reached the state"
    );
    let heals = heals_in_history(&fleet);
    assert_eq!(heals.len(), 1, "one history entry per heal: {heals:?}");
    let changed: Vec<String> = heals[0]["changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["address"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(changed, [addr("alpha")]);

    // Without --heal the watcher only reports.
    fleet.stand_in(ports[0]).kill9();
    wait_until(Duration::from_secs(5), || {
        !fleet.stand_ins_by_port().contains_key(&ports[0])
    });
    let run = fleet.berth(&["watch", "--once"]);
    run.expect(0);
    assert!(
        run.stdout.contains(&format!("drift {}", addr("alpha"))),
        "{}",
        run.all()
    );
    assert!(!fleet.stand_ins_by_port().contains_key(&ports[0]));
}

#[test]
fn a_server_that_keeps_dying_is_healed_at_most_max_heals_times_then_left_failed() {
    let port = free_ports(1)[0];
    let fleet = Fleet::new(
        &[Model::new(
            "flappy",
            port,
            "--load-secs 0 --exit-after-secs 1.5",
        )],
        4,
    );
    watch_settings(
        &fleet,
        "    max_heals        = 2\n    heal_window_sec  = 600\n    heal_backoff_sec = 0",
    );
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let mut watch = fleet.spawn(&["watch", "--heal", "--interval", "1s"]);
    let flapped = wait_until(Duration::from_secs(60), || {
        watch.stdout_so_far().contains(": flapping:")
    });
    // A few more cycles: still left alone.
    std::thread::sleep(Duration::from_secs(4));
    procs::signal(watch.pid(), libc::SIGTERM);
    let run = watch.wait(Duration::from_secs(30));
    assert!(flapped, "{}", run.all());
    run.expect(0);
    assert_eq!(heals_logged(&run.stdout), 2, "{}", run.all());
    assert!(count(&run.stdout, ": flapping:") >= 2, "{}", run.all());
    assert_eq!(heals_in_history(&fleet).len(), 2);
}

#[test]
fn two_watchers_on_one_state_heal_a_drift_once() {
    let port = free_ports(1)[0];
    let fleet = Fleet::new(&[Model::new("solo", port, "--load-secs 1")], 4);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    fleet.stand_in(port).kill9();
    wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty());
    let mut first = fleet.spawn(&["watch", "--heal", "--once"]);
    let mut second = fleet.spawn(&["watch", "--heal", "--once"]);
    let runs = [
        first.wait(Duration::from_secs(60)),
        second.wait(Duration::from_secs(60)),
    ];
    let healed: usize = runs.iter().map(|r| heals_logged(&r.stdout)).sum();
    assert_eq!(healed, 1, "{}\n---\n{}", runs[0].all(), runs[1].all());
    assert_eq!(fleet.stand_ins().len(), 1, "one server runs");
    assert_eq!(heals_in_history(&fleet).len(), 1);
}

#[test]
fn sigterm_during_a_heal_lets_it_finish_and_exits_zero() {
    let port = free_ports(1)[0];
    let fleet = Fleet::new(&[Model::new("slow", port, "--load-secs 3")], 4);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    fleet.stand_in(port).kill9();
    wait_until(Duration::from_secs(5), || fleet.stand_ins().is_empty());
    let mut watch = fleet.spawn(&["watch", "--heal", "--interval", "30s"]);
    let healing = wait_until(Duration::from_secs(30), || {
        fleet
            .lock_holder()
            .is_some_and(|h| h["operation"] == "heal")
    });
    assert!(healing, "the heal never took the lock");
    procs::signal(watch.pid(), libc::SIGTERM);
    let run = watch.wait(Duration::from_secs(60));
    run.expect(0);
    assert!(run.stdout.contains(": healed"), "{}", run.all());
    assert!(run.stdout.contains("stopping on SIGTERM"), "{}", run.all());
    // The lock is free, the state says ready, and the server answers.
    fleet.berth(&["plan", "--lock-timeout", "0s"]).expect(0);
    assert_eq!(fleet.statuses()[&addr("slow")], "ready");
    fleet.stand_in(port);
}

#[test]
fn sighup_re_reads_the_config_and_the_watcher_goes_on() {
    let port = free_ports(1)[0];
    let fleet = Fleet::new(&[Model::new("kept", port, "--load-secs 0")], 4);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let mut watch = fleet.spawn(&["watch", "--interval", "1s"]);
    assert!(wait_until(Duration::from_secs(30), || watch
        .stdout_so_far()
        .contains("cycle 1:")));
    procs::signal(watch.pid(), libc::SIGHUP);
    assert!(
        wait_until(Duration::from_secs(30), || watch
            .stdout_so_far()
            .contains("reload: re-read the config")),
        "{}",
        watch.stdout_so_far()
    );
    let cycles_then = count(&watch.stdout_so_far(), "cycle ");
    assert!(
        wait_until(Duration::from_secs(30), || count(
            &watch.stdout_so_far(),
            "cycle "
        ) > cycles_then),
        "no cycle after the reload: {}",
        watch.stdout_so_far()
    );
    procs::signal(watch.pid(), libc::SIGINT);
    let run = watch.wait(Duration::from_secs(30));
    run.expect(0);
    assert!(run.stdout.contains("stopping on SIGINT"), "{}", run.all());
    fleet.stand_in(port);
}

/// A Prometheus server of the test's own on a free loopback port, scraping `target` every
/// 500 ms; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let bin = Path::new("/usr/bin/prometheus");
        assert!(
            bin.exists(),
            "Prometheus is not installed: `apt-get install prometheus` (scripts/test does it)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\nscrape_configs:\n  - job_name: berth\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let port = free_ports(1)[0];
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The value of an instant query that yields one series, if it does.
    fn value(&self, query: &str) -> Option<f64> {
        let url = format!(
            "http://127.0.0.1:{}/api/v1/query?query={}",
            self.port,
            encode(query)
        );
        let answer = berth_test_support::http::get(&url).ok()?;
        let v: Value = serde_json::from_str(&answer.1).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes a query for a URL.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn prometheus_scrapes_a_crash_and_its_heal() {
    let port = free_ports(2);
    let fleet = Fleet::new(&[Model::new("scraped", port[0], "--load-secs 0")], 4);
    fleet.berth(&["apply", "--auto-approve"]).expect(0);
    let metrics = format!("127.0.0.1:{}", port[1]);
    let _watch = fleet.spawn(&[
        "watch",
        "--heal",
        "--interval",
        "3s",
        "--metrics",
        &metrics,
        "--log-format",
        "json",
    ]);
    let prometheus = Prometheus::start(&metrics);
    let ready = r#"berth_model_state{model="scraped",host="local",state="ready"}"#;
    assert!(
        wait_until(Duration::from_secs(60), || prometheus.value(ready)
            == Some(1.0)),
        "Prometheus never saw the model ready"
    );
    assert_eq!(
        prometheus.value(r#"berth_model_desired{model="scraped",host="local"}"#),
        Some(1.0)
    );
    assert_eq!(
        prometheus.value(r#"berth_host_up{host="local"}"#),
        Some(1.0)
    );
    assert_eq!(prometheus.value("berth_build_info"), Some(1.0));

    fleet.stand_in(port[0]).kill9();
    let down = r#"max_over_time(berth_model_state{model="scraped",state="down"}[1m])"#;
    assert!(
        wait_until(Duration::from_secs(30), || prometheus.value(down)
            == Some(1.0)),
        "the scraped series never showed the model down"
    );
    let healed = r#"berth_heals_total{result="healed"}"#;
    assert!(
        wait_until(Duration::from_secs(30), || prometheus
            .value(healed)
            .is_some_and(|n| n >= 1.0)),
        "the heal counter never rose"
    );
    assert!(
        wait_until(Duration::from_secs(30), || prometheus.value(ready)
            == Some(1.0)),
        "the model never came back ready"
    );
    fleet.stand_in(port[0]);

    // What berth serves passes promtool's checks.
    let body = berth_test_support::http::get(&format!("http://{metrics}/metrics"))
        .expect("scrape")
        .1;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    use std::io::Write as _;
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_shipped_alert_rules_and_prometheus_config_pass_promtool() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/local/monitoring");
    for args in [
        ["check", "rules", "berth-alerts.yml"],
        ["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
